"""The worker in-process with real storage and the tiny model: jobs end cleanly, failures never stop it."""

from __future__ import annotations

import pytest
import torch

from storage import FailureCode
from tests.helpers import TightDisk, add_photos, queued_training


@pytest.fixture
def settings(tmp_path, tiny_model_dir):
    from storage import Settings

    return Settings(data_dir=tmp_path / "data", base_model=tiny_model_dir, device="cpu", prior="class-images",
                    num_class_images=2, train_steps=6)


@pytest.fixture
def engine(tiny_model_dir, runtime, pipe):
    from engine.worker import Engine

    e = Engine(tiny_model_dir, runtime, pipe)
    yield e
    e.drawer.forget_loras()


@pytest.fixture
def make_worker(store, settings, engine):
    from engine.worker import Worker, WorkerOptions

    def build(**options):
        return Worker(store, settings, engine, WorkerOptions(worker_id="test-worker", once=True, poll_s=0.05, **options))

    return build


def _draw_payload(prompt: str = "a photo of dog", **extra):
    from storage import DrawPayload

    values = {"model_id": None, "prompt": prompt, "n": 1, "steps": 2, "seeds": [3], "width": 64, "height": 64}
    values.update(extra)
    return DrawPayload(**values)


async def _add_photos(store, owner: int, make_photo, seeds) -> list[int]:
    return await add_photos(store, owner, seeds, size=(96, 96))


async def test_a_job_that_raises_does_not_stop_the_worker(store, make_worker, engine, monkeypatch):
    from engine.worker import Engine

    real_draw = Engine.draw

    def flaky(self, request, lighter=False):
        if "explode" in request.prompt:
            raise ValueError("engine bug")
        return real_draw(self, request, lighter)

    monkeypatch.setattr(Engine, "draw", flaky)
    bad = await store.lifecycle.enqueue(_draw_payload("explode a photo of dog"), owner_id=1, chat_id=1)
    good = await store.lifecycle.enqueue(_draw_payload(), owner_id=1, chat_id=1)
    await make_worker().run()

    bad, good = await store.jobs.get(bad.id), await store.jobs.get(good.id)
    assert bad.status == "failed" and bad.error == FailureCode.INTERNAL
    assert "engine bug" not in bad.error  # no internals shown to users
    assert good.status == "done"
    assert good.result.seeds == [3] and len(good.result.images) == 1
    assert store.files.inside(good.result.images[0]).is_file()


async def test_out_of_memory_is_retried_once_lighter_then_fails_with_a_user_fit_message(store, make_worker, monkeypatch):
    from engine.worker import Engine

    calls: list[tuple[str, bool]] = []
    real_draw = Engine.draw

    def tight_gpu(self, request, lighter=False):
        calls.append((request.prompt, lighter))
        if "huge" in request.prompt or ("big" in request.prompt and not lighter):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real_draw(self, request, lighter)

    monkeypatch.setattr(Engine, "draw", tight_gpu)
    huge = await store.lifecycle.enqueue(_draw_payload("huge a photo of dog"), owner_id=1, chat_id=1)
    big = await store.lifecycle.enqueue(_draw_payload("big a photo of dog"), owner_id=1, chat_id=1)
    await make_worker().run()

    assert calls == [("huge a photo of dog", False), ("huge a photo of dog", True),
                     ("big a photo of dog", False), ("big a photo of dog", True)]
    huge, big = await store.jobs.get(huge.id), await store.jobs.get(big.id)
    assert huge.status == "failed" and huge.error == FailureCode.OUT_OF_MEMORY
    assert big.status == "done" and len(big.result.images) == 1


async def test_train_job_makes_a_ready_model_and_a_second_model_gets_another_token(store, make_worker, make_photo):
    owner = 42
    photo_ids = await _add_photos(store, owner, make_photo, (1, 2, 3))
    jobs = [await queued_training(store, owner, photo_ids)]
    await make_worker(checkpoint_every=3).run()
    # One training at a time per owner; the second only has to show its token, so it is short.
    jobs.append(await queued_training(store, owner, photo_ids, steps=1, num_class_images=0))
    await make_worker(checkpoint_every=3).run()
    first = await store.models.get(jobs[0].model_id)

    done = [await store.jobs.get(j.id) for j in jobs]
    assert [j.status for j in done] == ["done", "done"], [j.error for j in done]
    assert [j.result.token for j in done] == ["sks", "ohwx"]
    model = await store.models.get(first.id)
    assert model.status == "ready" and model.token == "sks"
    assert model.weights_key == f"models/{first.id}/lora.safetensors" and len(model.sample_keys) == 4
    # On the default install the blobs are DATA_DIR's own files: the engine wrote each once and copied nothing.
    assert (store.files.root / model.weights_key).is_file() and not (store.files.root / "cache").exists()
    assert done[0].result.steps == 6
    # the report card: the bare class prompt before and after, with the drift figure the bot shows
    from PIL import Image

    with Image.open(store.files.root / done[0].result.report_card_key) as card:
        assert card.width > card.height > 0
    # the drift the bot shows is the card's own figure, and the warning follows it by the one rule
    from engine.report_card import drift_warning

    assert -0.1 < done[0].result.class_drift < 1  # an energy distance: about 0 when the class did not move
    assert done[0].result.drift_warning is drift_warning(done[0].result.class_drift)
    assert model.params["class_drift"] == done[0].result.class_drift
    events = await store.jobs.events_after(0, limit=1000)
    stages = {e.data.get("stage") for e in events if e.kind == "progress" and e.job_id == jobs[0].id}
    assert {"class_images", "training"} <= stages  # PRIOR=class-images is honoured (the family's own is output)
    # Both models trained the class "dog" on one base model: the report card's "before" pictures were drawn once.
    assert len(list((store.files.root / "report_before").rglob("*.png"))) == 16


async def test_draw_with_a_deleted_model_fails_with_a_clear_message(store, make_worker, make_photo):
    photo_ids = await _add_photos(store, 7, make_photo, (4, 5, 6))
    model_id = (await queued_training(store, 7, photo_ids, "cat")).model_id
    await store.lifecycle.delete_model(model_id)
    job = await store.lifecycle.enqueue(_draw_payload(model_id=model_id), owner_id=7, chat_id=7)
    await make_worker().run()
    job = await store.jobs.get(job.id)
    assert job.status == "failed" and job.error == FailureCode.MODEL_GONE


async def test_cancelling_a_running_training_stops_it_and_marks_the_model(store, make_worker, make_photo):
    import asyncio

    photo_ids = await _add_photos(store, 9, make_photo, (7, 8, 9))
    job = await queued_training(store, 9, photo_ids, steps=5000)
    worker = make_worker(heartbeat_s=0.05)  # learns of the cancel within a heartbeat, whatever the lease
    running = asyncio.create_task(worker.run())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 120
    while True:
        current = await store.jobs.get(job.id)
        if current.progress and current.progress.stage == "training":
            break
        assert loop.time() < deadline, "training never started"
        await asyncio.sleep(0.05)
    await store.lifecycle.cancel(job.id)
    await asyncio.wait_for(running, 60)
    job = await store.jobs.get(job.id)
    assert job.status == "cancelled"
    assert job.progress.step < 5000
    model = await store.models.get(job.model_id)
    assert model.status == "deleted"  # a cancelled training leaves no model behind


async def test_a_draw_job_gets_the_shape_sampler_and_strength_it_asked_for(store, make_worker, engine):
    from PIL import Image

    wide = await store.lifecycle.enqueue(_draw_payload(width=None, height=None, aspect_ratio="16:9", sampler="euler-a"),
                                    owner_id=1, chat_id=1)
    base = await store.lifecycle.enqueue(_draw_payload(), owner_id=1, chat_id=1)
    await make_worker().run()
    wide, base = await store.jobs.get(wide.id), await store.jobs.get(base.id)
    assert wide.status == "done", wide.error
    expected = engine.info().sizes["16:9"]
    assert (wide.result.width, wide.result.height) == expected and expected[0] > expected[1]
    with Image.open(store.files.inside(wide.result.images[0])) as picture:
        assert picture.size == expected
    assert (wide.result.sampler, base.result.sampler) == ("euler-a", "dpm++2m-karras")


@pytest.mark.skipif(not TightDisk.possible(), reason="needs root and mount to make a real full filesystem")
async def test_a_full_disk_fails_the_draw_with_a_clear_message_and_the_worker_serves_the_next(
    store, make_worker, caplog
):
    with TightDisk(store.files.root / "jobs", size=256 * 1024) as disk:
        disk.fill()
        doomed = await store.lifecycle.enqueue(_draw_payload(), owner_id=1, chat_id=1)
        await make_worker().run()
        doomed = await store.jobs.get(doomed.id)
        assert doomed.status == "failed"
        assert doomed.error == FailureCode.NO_ROOM, doomed.error
        assert not any((store.files.root / "jobs").rglob("*.png"))  # nothing half-saved left behind
        assert sum("cannot save: no space left" in r.getMessage() for r in caplog.records) == 1
        disk.free()
        good = await store.lifecycle.enqueue(_draw_payload(), owner_id=1, chat_id=1)
        await make_worker().run()
        assert (await store.jobs.get(good.id)).status == "done"


async def test_a_cache_sweep_between_a_trainings_publishes_leaves_its_files_be(store, settings, engine, tmp_path):
    """The engine's periodic sweep drops local copies whose blobs the store no longer has. A finished training's
    files are local until each is published, so a sweep landing between two publishes must not take the rest for a
    deleted model's. Here the sweep runs after every publish (the worst interleaving, every time), against a blob
    store that is not this machine's folder (as S3: only then does the sweep delete anything)."""
    from engine.blob_cache import BlobCache
    from engine.worker import Worker, WorkerOptions
    from storage import Storage
    from tests.engine.test_blob_cache import FarBlobs

    class SweepAfterEachPublish(BlobCache):
        def __init__(self, *args) -> None:
            super().__init__(*args)
            self.swept: list[str] = []

        async def publish(self, key, path):
            published = await super().publish(key, path)
            self.swept += await self.sweep()
            return published

    far_store = Storage(store.db, store.files, FarBlobs(tmp_path / "bucket"))
    photo_ids = await add_photos(far_store, 7, (1, 2, 3), size=(96, 96))
    job = await queued_training(far_store, 7, photo_ids, steps=3)  # with a class set (PRIOR=class-images) to push
    cache = SweepAfterEachPublish(far_store.blobs, tmp_path / "cache", 10**9)
    await Worker(far_store, settings, engine, WorkerOptions(worker_id="w", once=True, poll_s=0.05),
                 cache=cache).run()

    job = await far_store.jobs.get(job.id)
    assert job.status == "done", job.error
    model = await far_store.models.get(job.model_id)
    for key in (model.weights_key, job.result.kohya_key, *model.sample_keys, job.result.report_card_key):
        assert await far_store.blobs.get(key), key
    assert len(await far_store.blobs.list("class_images")) == settings.num_class_images
    assert len(await far_store.blobs.list("report_before")) > 0
    assert cache.swept == []  # nothing the training wrote was taken for deleted


async def test_a_model_deleted_just_before_its_training_begins_fails_as_gone_not_as_an_engine_error(
        store, settings, tiny_model_dir, runtime, pipe):
    """The owner deletes the model while the engine picks its identifier (between reading the model and starting
    its training): the job ends as the model's being gone, never as an internal error."""
    import asyncio

    from engine.worker import Engine, Worker, WorkerOptions

    photo_ids = await add_photos(store, 8, (1, 2, 3), size=(96, 96))
    job = await queued_training(store, 8, photo_ids, steps=2)
    loop = asyncio.get_running_loop()

    class DeletedMeanwhile(Engine):
        def identifier_pool(self):
            asyncio.run_coroutine_threadsafe(store.lifecycle.delete_model(job.model_id), loop).result()
            return super().identifier_pool()

    engine = DeletedMeanwhile(tiny_model_dir, runtime, pipe)
    await Worker(store, settings, engine, WorkerOptions(worker_id="w", once=True, poll_s=0.05)).run()
    done = await store.jobs.get(job.id)
    assert (done.status, done.error) == ("failed", FailureCode.MODEL_GONE), (done.status, done.error)
    events = [e for e in await store.jobs.events_after(0, limit=1000) if e.job_id == job.id]
    assert not any(e.data.get("error") == FailureCode.INTERNAL for e in events)
