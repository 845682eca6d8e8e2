"""The worker draws from a picture the bot kept and upscales a result: real storage, the tiny model, one job each."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from storage import DrawPayload
from storage.contract import UPSCALE_CHANGE
from tests.helpers import photo_bytes


@pytest.fixture
def settings(tmp_path, tiny_model_dir):
    from storage import Settings

    return Settings(data_dir=tmp_path / "data", base_model=tiny_model_dir, device="cpu", num_class_images=2)


@pytest.fixture
def run_worker(store, settings, tiny_model_dir, runtime, pipe):
    from engine.worker import Engine, Worker, WorkerOptions

    engine = Engine(tiny_model_dir, runtime, pipe)

    async def run() -> None:
        await Worker(store, settings, engine, WorkerOptions(worker_id="w", once=True, poll_s=0.05)).run()

    yield run
    engine.drawer.forget_loras()


async def test_an_upscaled_result_is_twice_the_size_of_the_picture_it_enlarges(store, run_worker):
    kept = await store.photos.keep_input(1, photo_bytes(3, size=(96, 64)))
    first = await store.lifecycle.enqueue(DrawPayload(model_id=None, prompt="a photo of dog", steps=2, seeds=[4],
                                                 init_image=kept, image_change=0.5), owner_id=1, chat_id=1)
    await run_worker()
    first = await store.jobs.get(first.id)
    assert first.status == "done", first.error
    drawn = Image.open(io.BytesIO(await store.blobs.get(first.result.images[0])))
    assert drawn.width > drawn.height  # the picture's shape
    bigger = await store.lifecycle.enqueue(DrawPayload(model_id=None, prompt="a photo of dog", steps=2, seeds=[4],
                                                  init_image=first.result.images[0], image_change=UPSCALE_CHANGE,
                                                  upscale=True), owner_id=1, chat_id=1)
    await run_worker()
    bigger = await store.jobs.get(bigger.id)
    assert bigger.status == "done", bigger.error
    upscaled = Image.open(io.BytesIO(await store.blobs.get(bigger.result.images[0])))
    assert upscaled.size == (2 * drawn.width, 2 * drawn.height) == (bigger.result.width, bigger.result.height)


async def test_a_picture_no_longer_kept_fails_the_draw_with_a_clear_reason(store, run_worker):
    job = await store.lifecycle.enqueue(DrawPayload(model_id=None, prompt="a photo of dog", steps=2,
                                               init_image="photos/u1/inputs/" + "a" * 64 + ".img"),
                                   owner_id=1, chat_id=1)
    await run_worker()
    job = await store.jobs.get(job.id)
    assert job.status == "failed" and job.error == "picture_gone"
