"""The scheduling figure of `python -m engine bench`: draw latency through the worker, idle vs during a training."""

from __future__ import annotations

import asyncio
import io
import statistics
import time
from pathlib import Path
from typing import Any

from PIL import Image


async def _until_finished(store, job_id: int, timeout_s: float = 600.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = await store.jobs.get(job_id)
        if job.status in ("done", "failed", "cancelled"):
            return job
        await asyncio.sleep(0.002)
    raise TimeoutError(f"job {job_id} did not finish")


async def _timed_draw(store, payload) -> float:
    started = time.perf_counter()
    job = await store.lifecycle.enqueue(payload, owner_id=1, chat_id=1)
    done = await _until_finished(store, job.id)
    if done.status != "done":
        raise RuntimeError(f"bench draw failed: {done.error}")
    return (time.perf_counter() - started) * 1000


async def draw_latency_figures(
    pipe, runtime, base_model: Path | None, work: Path, photos: list[Image.Image], draw_steps: int, rounds: int = 3
) -> dict[str, Any]:
    """End-to-end latency (enqueue → result stored) of a one-image draw, first with the GPU idle, then while a
    training runs on the same worker: the second shows how long a /draw waits for the training to step aside."""
    from engine.worker import Engine, Worker, WorkerOptions
    from storage import DrawPayload, Settings, Storage

    # A training far longer than the measurement; it is cancelled once the draws are timed.
    settings = Settings(data_dir=work / "sched-data", base_model=base_model, device=str(runtime.device),
                        num_class_images=2, train_steps=20_000)
    # A random full-size pipeline has no folder to key its caches by: its own key, so no cache is ever shared.
    engine = Engine(base_model or work / "random", runtime, pipe, key=None if base_model else "random-weights")
    payload = DrawPayload(model_id=None, prompt="a photo of dog", n=1, steps=draw_steps, seeds=[7])
    store = await Storage.open(work / "sched-data")
    try:
        worker = Worker(store, settings, engine, WorkerOptions(worker_id="bench", poll_s=0.005))
        running = asyncio.create_task(worker.run())
        await _timed_draw(store, payload)  # warm-up
        idle = [await _timed_draw(store, payload) for _ in range(rounds)]

        ids = []
        for i, photo in enumerate(photos):
            out = io.BytesIO()
            photo.save(out, format="PNG")
            ids.append((await store.photos.add(1, file_unique_id=f"b{i}", data=out.getvalue(),
                                               width=photo.width, height=photo.height)).id)
        started = await store.lifecycle.start_training(1, 1, "dog", ids)
        assert started is not None
        train = started.job
        while (progress := (job := await store.jobs.get(train.id)).progress) is None or progress.stage != "training":
            if job.status in ("done", "failed", "cancelled"):
                raise RuntimeError(f"bench training ended early: {job.error}")
            await asyncio.sleep(0.01)
        busy = [await _timed_draw(store, payload) for _ in range(rounds)]
        step_during = (await store.jobs.get(train.id)).progress
        await store.lifecycle.cancel(train.id)
        await _until_finished(store, train.id)
        worker.stop()
        await running
    finally:
        await store.close()
    return {
        "draw_latency_ms_idle": round(statistics.median(idle), 1),
        "draw_latency_ms_during_training": round(statistics.median(busy), 1),
        "draw_latency_training_step_at_end": step_during.step if step_during else None,
    }
