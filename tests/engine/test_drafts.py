"""Drafts on FLUX.2 [klein]: a /draw while the model trains answers at once from the owner's own photos as
reference pictures, marked as a draft; nobody else's photos are ever used; other families cannot draw one."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tests.helpers import add_photos, photo_image, queued_training

PROMPT = "a photo of sks dog in paris"


def test_reference_photos_change_the_klein_picture_and_other_families_refuse_them(family_pipe, session_pipe,
                                                                                   runtime):
    from engine.drawing import Drawer, DrawError, DrawRequest

    drawer = Drawer(family_pipe("flux2-klein"), runtime)
    plain = drawer.draw(DrawRequest(prompt=PROMPT, seeds=[5], steps=2))
    mine = [photo_image(seed, (64, 64)) for seed in (1, 2)]
    drafted = drawer.draw(DrawRequest(prompt=PROMPT, seeds=[5], steps=2, references=mine))
    other = drawer.draw(DrawRequest(prompt=PROMPT, seeds=[5], steps=2, references=[photo_image(9, (64, 64))]))
    a, b, c = (np.asarray(r.images[0]).astype(int) for r in (plain, drafted, other))
    assert not np.array_equal(a, b) and not np.array_equal(b, c)
    with pytest.raises(DrawError, match="reference"):
        Drawer(session_pipe, runtime).draw(DrawRequest(prompt=PROMPT, steps=2, references=mine))


async def test_a_draft_arrives_while_the_model_trains_and_uses_only_its_owners_photos(
        store, tmp_path, tiny_family_dir, family_pipe, runtime, monkeypatch):
    from engine import worker as worker_module
    from engine.worker import Engine, Worker, WorkerOptions
    from storage import DrawPayload, Settings

    folder = tiny_family_dir("flux2-klein")
    engine = Engine(folder, runtime, family_pipe("flux2-klein"))
    assert engine.info().takes_references
    settings = Settings(data_dir=tmp_path / "data", base_model=folder, device="cpu", num_class_images=0,
                        train_steps=40)
    mine = await add_photos(store, 1, [1, 2, 3], size=(96, 96))
    theirs = await add_photos(store, 2, [7, 8, 9], size=(96, 96))
    train_job = await queued_training(store, 1, mine)
    other_job = await queued_training(store, 2, theirs)
    used: list[list[str]] = []
    from engine import photos as photos_module

    original = photos_module.load_photo_set

    def spy(sources, resolution):
        used.append([name for name, _ in sources])
        return original(sources, resolution)

    monkeypatch.setattr(photos_module, "load_photo_set", spy)
    monkeypatch.setattr(worker_module, "load_photo_set", spy, raising=False)
    worker = Worker(store, settings, engine, WorkerOptions(worker_id="w", once=True, poll_s=0.05))
    running = asyncio.create_task(worker.run())
    while (progress := (job := await store.jobs.get(train_job.id)).progress) is None or progress.stage != "training":
        assert not running.done(), job.error
        await asyncio.sleep(0.01)
    used.clear()
    draft = await store.lifecycle.enqueue(DrawPayload(model_id=None, draft_of=train_job.model_id, prompt=PROMPT, n=1,
                                                 steps=2, seeds=[3]), owner_id=1, chat_id=1)
    stolen = await store.lifecycle.enqueue(DrawPayload(model_id=None, draft_of=other_job.model_id, prompt=PROMPT, n=1,
                                                  steps=2, seeds=[3]), owner_id=1, chat_id=1)
    while (await store.jobs.get(draft.id)).status in ("queued", "running") or \
            (await store.jobs.get(stolen.id)).status in ("queued", "running"):
        await asyncio.sleep(0.01)
    done = await store.jobs.get(draft.id)
    assert done.status == "done", done.error
    assert done.result.draft is True
    assert (await store.jobs.get(train_job.id)).status == "running"  # the draft came before the training ended
    refused = await store.jobs.get(stolen.id)
    assert refused.status == "failed"  # another user's model: refused, none of their photos read
    model = await store.models.get(train_job.model_id)
    their_model = await store.models.get(other_job.model_id)
    mine_names = {key.rsplit("/", 1)[-1] for key in model.photo_keys}
    theirs_names = {key.rsplit("/", 1)[-1] for key in their_model.photo_keys}
    drafted_from = [set(names) for names in used if names]
    assert drafted_from and all(names <= mine_names for names in drafted_from)
    assert not any(names & theirs_names for names in drafted_from)
    worker.stop()
    await asyncio.wait_for(running, timeout=300)
