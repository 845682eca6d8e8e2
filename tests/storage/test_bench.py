"""`python -m storage bench` measures the backend it was given and leaves nothing behind there."""

from __future__ import annotations

import psycopg
import pytest

from storage.bench import run_queue
from tests.postgres import SKIP_REASON, configured_url


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_bench_completes_every_job_once_on_its_backend_and_drops_its_schema(backend: str) -> None:
    url = None
    if backend == "postgres":
        url = configured_url()
        if url is None:
            pytest.skip(SKIP_REASON)

    def bench_schemas() -> set[str]:
        with psycopg.connect(url) as conn:
            rows = conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'kabina_bench_%'").fetchall()
        return {r[0] for r in rows}

    before = bench_schemas() if url else set()
    result = run_queue(2, 40, url)
    assert result["jobs"] == 40 and result["completed_once"]
    if url:
        assert bench_schemas() == before
