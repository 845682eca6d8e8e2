"""`python -m storage bench`: queue throughput and claim latency through real worker processes."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from storage import Storage


def _worker(data_dir: str, worker_id: str, results: Any) -> None:
    asyncio.run(_work(data_dir, worker_id, results))


async def _work(data_dir: str, worker_id: str, results: Any) -> None:
    store = await Storage.open(data_dir)
    latencies: list[float] = []
    done = 0
    idle_since: float | None = None
    try:
        while True:
            t0 = time.perf_counter()
            job = await store.jobs.claim(worker_id, lease_s=30)
            if job is None:
                # The producer enqueues in parallel: stop only after a quiet spell with the stop marker set.
                if (store.files.root / "producer.done").exists():
                    idle_since = idle_since or time.perf_counter()
                    if time.perf_counter() - idle_since > 0.2:
                        break
                await asyncio.sleep(0.001)
                continue
            idle_since = None
            latencies.append((time.perf_counter() - t0) * 1000)
            await store.jobs.complete(job.id, worker_id, {"ok": True})
            done += 1
    finally:
        await store.close()
    results.put((worker_id, done, latencies))


async def _produce(data_dir: str, n_jobs: int) -> None:
    store = await Storage.open(data_dir)
    try:
        for i in range(n_jobs):
            await store.jobs.enqueue("draw" if i % 4 == 0 else "train", {"i": i})
    finally:
        await store.close()
    (Path(data_dir) / "producer.done").touch()


async def _count_done(data_dir: str) -> tuple[int, int]:
    store = await Storage.open(data_dir)
    try:
        done = await store.db.fetchone("SELECT count(*) FROM jobs WHERE status = 'done'")
        total = await store.db.fetchone("SELECT count(*) FROM jobs")
        return int(done[0]), int(total[0])
    finally:
        await store.close()


def run_queue(n_workers: int, n_jobs: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="kabina-bench-") as data_dir:
        asyncio.run(_count_done(data_dir))  # creates the schema before the workers race for it
        results = ctx.Queue()
        workers = [ctx.Process(target=_worker, args=(data_dir, f"w{i}", results)) for i in range(n_workers)]
        for w in workers:
            w.start()
        time.sleep(1.0)  # interpreter start-up is not queue time
        t0 = time.perf_counter()
        asyncio.run(_produce(data_dir, n_jobs))
        per_worker = [results.get(timeout=300) for _ in workers]
        elapsed = time.perf_counter() - t0 - 0.2  # minus the workers' quiet spell before stopping
        for w in workers:
            w.join()
        done, total = asyncio.run(_count_done(data_dir))
    completed = sum(n for _, n, _ in per_worker)
    latencies = [ms for _, _, lat in per_worker for ms in lat]
    return {
        "jobs": total,
        "completed_once": completed == done == total,
        "jobs_per_s": round(completed / elapsed, 1),
        "claim_latency_ms_median": round(statistics.median(latencies), 3),
        "claim_latency_ms_p95": round(statistics.quantiles(latencies, n=20)[-1], 3),
    }


def main(n_jobs: int = 2000) -> dict[str, Any]:
    one = run_queue(1, n_jobs)
    four = run_queue(4, n_jobs)
    return {
        "jobs_per_s_1_worker": one["jobs_per_s"],
        "jobs_per_s_4_workers": four["jobs_per_s"],
        "claim_latency_ms_median": one["claim_latency_ms_median"],
        "claim_latency_ms_p95": one["claim_latency_ms_p95"],
        "claim_latency_ms_median_4_workers": four["claim_latency_ms_median"],
        "every_job_completed_once": one["completed_once"] and four["completed_once"],
        "jobs_per_run": n_jobs,
        "cpu_count": mp.cpu_count(),
    }
