"""Fixtures for the storage tests: queue workers as real OS processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("queue_worker.py")


@pytest.fixture
def start_worker():
    """Start a queue worker in its own OS process, as an engine would be; all are killed at the end."""
    started: list[subprocess.Popen[str]] = []

    def start(data_dir: Path, worker_id: str, mode: str, lease_s: float = 30.0) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), str(data_dir), worker_id, mode, str(lease_s)],
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
