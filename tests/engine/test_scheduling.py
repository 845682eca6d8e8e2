"""A draw that arrives during a training is served between two training steps, and the training does not notice."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from safetensors.torch import load_file

from engine.gpu_lane import GpuLane
from storage import DrawPayload
from tests.helpers import add_photos, queued_training


async def test_a_short_item_runs_at_the_next_pause_point_not_after_the_long_item() -> None:
    lane = GpuLane()
    log: list[str] = []
    short_submitted = threading.Event()

    def long_item(pause_point) -> str:
        for step in range(50):
            log.append(f"step {step}")
            if step == 5:
                short_submitted.wait(timeout=10)
            pause_point()
        return "trained"

    async def submit_short() -> str:
        while "step 5" not in log:
            await asyncio.sleep(0.001)
        pending = asyncio.create_task(lane.run(lambda: log.append("draw") or "drawn"))
        await asyncio.sleep(0.01)  # the short item is waiting in the lane now
        short_submitted.set()
        return await pending

    try:
        trained, drawn = await asyncio.gather(lane.run_long(long_item), submit_short())
    finally:
        lane.shutdown()
    assert (trained, drawn) == ("trained", "drawn")
    assert log.index("draw") == log.index("step 5") + 1  # served at the very next step boundary


async def test_short_items_left_waiting_when_the_long_item_ends_still_run() -> None:
    lane = GpuLane()
    started = threading.Event()
    release = threading.Event()

    def long_item(pause_point) -> None:
        started.set()
        release.wait(timeout=10)  # never reaches another pause point

    try:
        long_task = asyncio.create_task(lane.run_long(long_item))
        while not started.is_set():
            await asyncio.sleep(0.001)
        short = asyncio.create_task(lane.run(lambda: "late but served"))
        await asyncio.sleep(0.01)
        release.set()
        await long_task
        assert await asyncio.wait_for(short, timeout=10) == "late but served"
    finally:
        lane.shutdown()


async def test_an_error_in_a_short_item_reaches_its_caller_and_not_the_training() -> None:
    lane = GpuLane()
    go = threading.Event()

    def long_item(pause_point) -> str:
        go.wait(timeout=10)
        for _ in range(20):
            pause_point()
            time.sleep(0.001)
        return "still trained"

    def broken() -> None:
        raise ValueError("bad draw")

    try:
        long_task = asyncio.create_task(lane.run_long(long_item))
        await asyncio.sleep(0.01)
        short = asyncio.create_task(lane.run(broken))
        await asyncio.sleep(0.01)
        go.set()
        with pytest.raises(ValueError, match="bad draw"):
            await short
        assert await long_task == "still trained"
    finally:
        lane.shutdown()


async def _training_for(store, owner: int, make_photo):
    ids = await add_photos(store, owner, (1, 2, 3), size=(96, 96))
    return await queued_training(store, owner, ids)


async def test_a_draw_during_training_is_served_between_steps_and_the_training_ends_bit_for_bit_the_same(
    store, tmp_path, tiny_model_dir, runtime, pipe, make_photo
) -> None:
    from engine.worker import Engine, Worker, WorkerOptions
    from storage import Settings

    settings = Settings(data_dir=tmp_path / "data", base_model=tiny_model_dir, device="cpu", num_class_images=2,
                        train_steps=160)
    engine = Engine(tiny_model_dir, runtime, pipe)
    # Two owners, same photos: both models get `sks`, so their trainings are the same computation.
    alone_job = await _training_for(store, 2, make_photo)
    alone = alone_job.model_id
    await Worker(store, settings, engine, WorkerOptions(worker_id="w", once=True, poll_s=0.05)).run()

    train_job = await _training_for(store, 1, make_photo)
    interrupted = train_job.model_id
    worker = Worker(store, settings, engine, WorkerOptions(worker_id="w", once=True, poll_s=0.05))
    running = asyncio.create_task(worker.run())
    # Wait until the training loop itself runs, then ask for a picture with another LoRA and a base one.
    while True:
        job = await store.jobs.get(train_job.id)
        if job.progress and job.progress.stage == "training":
            break
        assert not running.done()
        await asyncio.sleep(0.01)
    # One draw with another model's LoRA, then (after it is done) one with the bare base model: each must leave
    # the training exactly as it found it, with training steps running in between.
    requests = [DrawPayload(prompt="a photo of sks dog", model_id=alone, n=1, steps=2, seeds=[3]),
                DrawPayload(prompt="a photo of dog", model_id=None, n=1, steps=2, seeds=[3])]
    for payload in requests:
        draw = await store.lifecycle.enqueue(payload, owner_id=3, chat_id=3)
        while (done := await store.jobs.get(draw.id)).status in ("queued", "running"):
            await asyncio.sleep(0.01)
        assert done.status == "done", done.error
        training = await store.jobs.get(train_job.id)
        assert training.progress.stage == "training"  # served between steps, not after the training
        assert training.progress.step < training.progress.total
    await asyncio.wait_for(running, timeout=600)

    train_done = await store.jobs.get(train_job.id)
    assert train_done.status == "done", train_done.error
    weights = store.files.root / (await store.models.get(interrupted)).weights_key
    a = load_file(weights)
    b = load_file(store.files.root / (await store.models.get(alone)).weights_key)
    assert a.keys() == b.keys()
    assert all((a[k] == b[k]).all() for k in a)
