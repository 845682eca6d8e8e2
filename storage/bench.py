"""`python -m storage bench`: queue throughput and claim latency through real worker processes, on SQLite or on the
PostgreSQL server `--database-url` names (in a schema of its own, dropped afterwards: the bench never touches
an installation's rows)."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import secrets
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from storage import ClassImagesPayload, ClassImagesResult, ConfigError, DrawPayload, DrawResult, Storage
from storage.pg import with_search_path

_DRAWN = DrawResult(images=[], seeds=[])
_CLASS_IMAGES = ClassImagesResult(count=0, folder="")


def backend_of(database_url: str | None) -> str:
    return "postgresql" if database_url and database_url.startswith(("postgresql://", "postgres://")) else "sqlite"


@contextmanager
def bench_database(database_url: str | None) -> Iterator[str | None]:
    """The URL the bench runs on: SQLite in a temporary DATA_DIR (None), or a fresh schema on the server."""
    if backend_of(database_url) == "sqlite":
        yield None
        return
    import psycopg

    schema = f"kabina_bench_{secrets.token_hex(4)}"
    try:
        with psycopg.connect(database_url, autocommit=True, connect_timeout=15) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
    except psycopg.Error as exc:
        raise ConfigError(f"the bench cannot create its schema on the database: {exc}") from None
    try:
        yield with_search_path(database_url, schema)
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def _worker(data_dir: str, database_url: str | None, worker_id: str, results: Any) -> None:
    asyncio.run(_work(data_dir, database_url, worker_id, results))


async def _work(data_dir: str, database_url: str | None, worker_id: str, results: Any) -> None:
    store = await Storage.open(data_dir, database_url=database_url)
    latencies: list[float] = []
    done = 0
    idle_since: float | None = None
    try:
        while True:
            t0 = time.perf_counter()
            job = await store.lifecycle.claim(worker_id, lease_s=30)
            if job is None:
                # The producer enqueues in parallel: stop only after a quiet spell with the stop marker set.
                if (Path(data_dir) / "producer.done").exists():
                    idle_since = idle_since or time.perf_counter()
                    if time.perf_counter() - idle_since > 0.2:
                        break
                await asyncio.sleep(0.001)
                continue
            idle_since = None
            latencies.append((time.perf_counter() - t0) * 1000)
            await store.lifecycle.complete(job.id, worker_id, _DRAWN if job.kind == "draw" else _CLASS_IMAGES)
            done += 1
    finally:
        await store.close()
    results.put((worker_id, done, latencies))


async def _produce(data_dir: str, database_url: str | None, n_jobs: int) -> None:
    store = await Storage.open(data_dir, database_url=database_url)
    try:
        for i in range(n_jobs):
            payload = DrawPayload(model_id=None, prompt=f"p{i}") if i % 4 == 0 else ClassImagesPayload(class_word="dog")
            await store.lifecycle.enqueue(payload, owner_id=i % 7)
    finally:
        await store.close()
    (Path(data_dir) / "producer.done").touch()


async def _count_done(data_dir: str, database_url: str | None) -> tuple[int, int]:
    store = await Storage.open(data_dir, database_url=database_url)
    try:
        done = await store.db.fetchone("SELECT count(*) FROM jobs WHERE status = 'done'")
        total = await store.db.fetchone("SELECT count(*) FROM jobs")
        return int(done[0]), int(total[0])
    finally:
        await store.close()


def run_queue(n_workers: int, n_jobs: int, database_url: str | None = None) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="kabina-bench-") as data_dir, bench_database(database_url) as url:
        asyncio.run(_count_done(data_dir, url))  # creates the schema before the workers race for it
        results = ctx.Queue()
        workers = [ctx.Process(target=_worker, args=(data_dir, url, f"w{i}", results)) for i in range(n_workers)]
        for w in workers:
            w.start()
        time.sleep(1.0)  # interpreter start-up is not queue time
        t0 = time.perf_counter()
        asyncio.run(_produce(data_dir, url, n_jobs))
        per_worker = [results.get(timeout=300) for _ in workers]
        elapsed = time.perf_counter() - t0 - 0.2  # minus the workers' quiet spell before stopping
        for w in workers:
            w.join()
        done, total = asyncio.run(_count_done(data_dir, url))
    completed = sum(n for _, n, _ in per_worker)
    latencies = [ms for _, _, lat in per_worker for ms in lat]
    return {
        "jobs": total,
        "completed_once": completed == done == total,
        "jobs_per_s": round(completed / elapsed, 1),
        "claim_latency_ms_median": round(statistics.median(latencies), 3),
        "claim_latency_ms_p95": round(statistics.quantiles(latencies, n=20)[-1], 3),
    }


def main(n_jobs: int = 2000, database_url: str | None = None) -> dict[str, Any]:
    one = run_queue(1, n_jobs, database_url)
    four = run_queue(4, n_jobs, database_url)
    return {
        "backend": backend_of(database_url),
        "jobs_per_s_1_worker": one["jobs_per_s"],
        "jobs_per_s_4_workers": four["jobs_per_s"],
        "claim_latency_ms_median": one["claim_latency_ms_median"],
        "claim_latency_ms_p95": one["claim_latency_ms_p95"],
        "claim_latency_ms_median_4_workers": four["claim_latency_ms_median"],
        "claim_latency_ms_p95_4_workers": four["claim_latency_ms_p95"],
        "every_job_completed_once": one["completed_once"] and four["completed_once"],
        "jobs_per_run": n_jobs,
        "cpu_count": mp.cpu_count(),
    }
