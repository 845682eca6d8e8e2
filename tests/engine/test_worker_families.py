"""The worker, unchanged, serves a FLUX model: a training with a draw slipped in between its steps.

FLUX is the family furthest from SD1 (a transformer, not a UNet; no negative prompt; flow matching). The worker's
own samples and report card draw 12 pictures at 25 steps, which for the SDXL tiny model costs ~20 s on a CI core,
so SDXL's worker path (its photos' crop geometry) is covered by tests/engine/test_family_training.py instead.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from tests.helpers import add_photos, queued_training


def _held_engine(folder, runtime, pipe):
    """The worker's Engine, its training held after its first step until `release` is set: a draw asked for then
    is served between two steps however fast a tiny model trains (tiny Qwen-Image's 30 steps take ~0.1 s)."""
    from engine.worker import Engine

    class HeldAfterFirstStep(Engine):
        def __init__(self, *args) -> None:
            super().__init__(*args)
            self.release = threading.Event()

        def train(self, spec, on_progress, should_stop, pause_point=None):
            def report(progress: dict) -> None:
                on_progress(progress)
                if progress["stage"] == "training" and progress.get("step") == 1:
                    self.release.wait(timeout=120)

            return super().train(spec, report, should_stop, pause_point)

    return HeldAfterFirstStep(folder, runtime, pipe)


@pytest.mark.parametrize("name", ["flux", "flux2-klein", "z-image-turbo", "qwen-image"])
async def test_a_family_model_trains_through_the_worker_with_a_draw_in_between(name, store, tmp_path, tiny_family_dir,
                                                                             family_pipe, runtime, make_photo):
    from engine.detection import family_of
    from engine.worker import Worker, WorkerOptions
    from storage import DrawPayload, Settings

    folder = tiny_family_dir(name)
    pipe = family_pipe(name)
    settings = Settings(data_dir=tmp_path / "data", base_model=folder, device="cpu", num_class_images=1, train_steps=30)
    engine = _held_engine(folder, runtime, pipe)
    assert engine.resolution == 64 and engine.identifier_pool()[:2] == ["sks", "ohwx"]
    # what the bot will be told this model allows: FLUX's own defaults, no negative prompt, its sizes
    info = engine.info()
    assert (info.family, info.resolution, info.negative_prompt) == (family_of(pipe).name, 64,
                                                                     family_of(pipe).negative_prompt)
    assert info.default_draw_steps == family_of(pipe).draw_steps and info.sizes["1:1"] == (64, 64)
    ids = []
    for seed, size in ((1, (96, 80)), (2, (80, 96)), (3, (96, 96))):  # not square: the crop geometry matters
        ids += await add_photos(store, 1, [seed], size=size)
    train_job = await queued_training(store, 1, ids)
    model = await store.models.get(train_job.model_id)
    worker = Worker(store, settings, engine, WorkerOptions(worker_id="w", once=True, poll_s=0.05))
    running = asyncio.create_task(worker.run())
    while (progress := (job := await store.jobs.get(train_job.id)).progress) is None or progress.stage != "training":
        assert not running.done(), job.error
        await asyncio.sleep(0.01)
    draw = await store.lifecycle.enqueue(DrawPayload(model_id=None, prompt="a photo of dog", n=1, steps=2, seeds=[3]),
                                    owner_id=2, chat_id=2)
    while (await store.jobs.get(draw.id)).status == "queued":  # claimed while the training holds the GPU
        assert not running.done()
        await asyncio.sleep(0.01)
    engine.release.set()
    while (done := await store.jobs.get(draw.id)).status in ("queued", "running"):
        await asyncio.sleep(0.01)
    assert done.status == "done", done.error
    await asyncio.wait_for(running, timeout=300)
    trained = await store.jobs.get(train_job.id)
    assert trained.status == "done", trained.error
    # Asked for once the steps had begun and done before the training was: served between two steps.
    assert done.finished_at < trained.finished_at
    assert trained.result.token == "sks" and trained.result.steps == 30
    ready = await store.models.get(model.id)
    assert ready.status == "ready" and ready.params["family"] == family_of(pipe).name
    after = await store.lifecycle.enqueue(DrawPayload(model_id=model.id, prompt="a photo of sks dog", n=1, steps=2,
                                                 seeds=[3]), owner_id=1, chat_id=1)
    await Worker(store, settings, engine, WorkerOptions(worker_id="w", once=True, poll_s=0.05)).run()
    assert (await store.jobs.get(after.id)).status == "done"
