"""Fixtures for the storage tests: every database test on both backends, and queue workers as real OS processes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from storage import Storage
from tests.helpers import ManualClock
from tests.postgres import SKIP_REASON, configured_url, fresh_schema

WORKER = Path(__file__).with_name("queue_worker.py")


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """The same contract on both backends: SQLite in DATA_DIR, and PostgreSQL (a fresh schema per test) when
    KABINA_TEST_DATABASE_URL names a server."""
    if request.param == "sqlite":
        yield None
        return
    url = configured_url()
    if url is None:
        pytest.skip(SKIP_REASON)
    with fresh_schema(url) as schema_url:
        yield schema_url


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def clocked_store(data_dir: Path, database_url: str | None, clock: ManualClock) -> AsyncIterator[Storage]:
    """Storage whose queue and leases read the test's clocks: a lease expires when the test moves time on."""
    opened = await Storage.open(data_dir, database_url=database_url, clock=clock, monotonic=clock.monotonic)
    yield opened
    await opened.close()


@pytest.fixture
def start_worker(database_url: str | None):
    """Start a queue worker in its own OS process, as an engine would be; all are killed at the end."""
    started: list[subprocess.Popen[str]] = []

    def start(data_dir: Path, worker_id: str, mode: str, lease_s: float = 30.0) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), str(data_dir), worker_id, mode, str(lease_s), database_url or ""],
            stdout=subprocess.PIPE, text=True,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout:
            proc.stdout.close()
