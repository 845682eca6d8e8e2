"""Deletion and retention in storage: a deleted model's files go at once and it stays deleted, and the sweep keeps
files and records bounded (deleted models' late files, finished trainings' checkpoints, old pictures and records)."""

from __future__ import annotations

from pathlib import Path

from storage import DrawPayload, DrawResult, Storage, TrainingStarted, TrainPayload, TrainResult
from tests.helpers import files_under, make_ready_model, photo_bytes, put_blob

DAY = 24 * 3600.0


async def _drawing(store: Storage, owner_id: int, model_id: int, prompt: str = "sks dog") -> int:
    job = await store.lifecycle.enqueue(DrawPayload(model_id=model_id, prompt=prompt), owner_id=owner_id,
                                   chat_id=owner_id, model_id=model_id)
    await store.lifecycle.claim("w", kinds=["draw"])
    picture = await put_blob(store, f"jobs/{job.id}/0.png", photo_bytes(1, (64, 64), "PNG"))
    await store.lifecycle.complete(job.id, "w", DrawResult(images=[picture], seeds=[1]))
    return job.id


async def _training_with_checkpoint(store: Storage, owner_id: int, model_id: int) -> int:
    job = await store.lifecycle.enqueue(TrainPayload(model_id=model_id), owner_id=owner_id, chat_id=owner_id,
                                   model_id=model_id)
    await store.lifecycle.claim("w", kinds=["train"])
    step = _job_dir(store, job.id) / "checkpoints" / "step-000004"
    store.files.write_atomic(step / "lora.safetensors", b"lora")
    store.files.write_atomic(step / "optimizer.pt", b"adam")
    return job.id


async def _started_training(store: Storage, owner_id: int) -> TrainingStarted:
    for seed in (1, 2, 3):
        await store.photos.add(owner_id, file_unique_id=f"p{seed}", data=photo_bytes(seed), width=320, height=320)
    started = await store.lifecycle.start_training(owner_id, owner_id, "dog", [p.id for p in await store.photos.list(owner_id)])
    assert started is not None
    return started


def _trained(model_id: int, weights: str) -> TrainResult:
    return TrainResult(model_id=model_id, token="sks", class_word="dog", weights_key=weights, kohya_key=weights,
                       sample_keys=[], steps=1, seconds=1.0, report_card_key=weights, class_drift=0.0,
                       drift_warning=False)


def _job_dir(store: Storage, job_id: int) -> Path:
    return store.files.root / "jobs" / str(job_id)


def _model_dir(store: Storage, model_id: int) -> Path:
    return store.files.root / "models" / str(model_id)


def _under(store: Storage, *parts: str) -> list[Path]:
    return [p for p in files_under(store.files.root) if p.relative_to(store.files.root).parts[:len(parts)] == parts]


async def test_deleting_a_model_removes_its_files_and_every_picture_drawn_with_it_at_once(store: Storage) -> None:
    model = await make_ready_model(store, 1)
    other = await make_ready_model(store, 2)
    training = await _training_with_checkpoint(store, 1, model.id)
    await store.lifecycle.fail(training, "w", "stopped")
    drawings = [await _drawing(store, 1, model.id), await _drawing(store, 3, model.id)]
    kept = await _drawing(store, 2, other.id)
    await store.lifecycle.delete_model(model.id)
    assert _under(store, "models", str(model.id)) == []
    assert [_under(store, "jobs", str(j)) for j in (training, *drawings)] == [[], [], []]
    assert _under(store, "jobs", str(kept)) and _under(store, "models", str(other.id))


async def test_a_deleted_model_stays_deleted_whatever_a_worker_still_reports(store: Storage) -> None:
    started = await _started_training(store, 1)
    job = await store.lifecycle.claim("w", kinds=["train"])
    assert await store.lifecycle.begin_training(started.model.id, ["sks"]) == "sks"
    await store.lifecycle.delete_model(started.model.id)
    weights = await put_blob(store, f"models/{started.model.id}/lora.safetensors", b"late")
    assert await store.lifecycle.complete(job.id, "w", _trained(started.model.id, weights)) is False
    assert (await store.models.get(started.model.id)).status == "deleted"
    assert (await store.jobs.get(job.id)).status == "cancelled"  # nothing to deliver
    assert await store.models.list_for_owner(1) == []
    assert not await store.blobs.exists(weights)  # what the worker wrote late goes with the model


async def test_the_sweep_removes_what_a_worker_wrote_after_a_delete(store: Storage) -> None:
    model = await make_ready_model(store, 1)
    training = await _training_with_checkpoint(store, 1, model.id)
    await store.lifecycle.delete_model(model.id)
    # The engine, still running, writes the weights, samples and another checkpoint afterwards.
    store.files.write_atomic(_model_dir(store, model.id) / "lora.safetensors", b"late")
    store.files.write_atomic(_model_dir(store, model.id) / "sample-0.png", b"late")
    store.files.write_atomic(_job_dir(store, training) / "checkpoints" / "step-000008" / "optimizer.pt", b"x")
    report = await store.retention.sweep(retention_days=30)
    assert model.id in report.model_folders and training in report.job_folders
    assert _under(store, "models") == [] and _under(store, "jobs") == []


async def test_a_finished_model_keeps_neither_its_training_checkpoints_nor_its_copies_of_the_photos(
    store: Storage,
) -> None:
    await store.users.upsert(7, first_name="Ann")
    started = await _started_training(store, 7)
    job = await store.lifecycle.claim("w", kinds=["train"])
    store.files.write_atomic(_job_dir(store, job.id) / "checkpoints" / "step-000004" / "optimizer.pt", b"adam")
    await store.photos.clear(7)
    running = await store.retention.sweep(retention_days=30)
    assert running.job_folders == [] and running.photo_copies == []  # a training in progress needs both
    weights = await put_blob(store, f"models/{started.model.id}/lora.safetensors", b"w")
    assert await store.lifecycle.complete(job.id, "w", _trained(started.model.id, weights))
    await store.retention.sweep(retention_days=30)
    assert [p.name for p in _under(store, "models", str(started.model.id))] == ["lora.safetensors"]
    assert _under(store, "jobs") == [] and _under(store, "photos") == []


async def test_pictures_and_records_are_kept_for_the_retention_time_and_then_go(store: Storage) -> None:
    model = await make_ready_model(store, 1)
    await store.users.upsert(1)
    old = await _drawing(store, 1, model.id, "an old private prompt")
    await store.deliveries.save(old, "result", chat_id=1, state="sent")
    await store.updates.mark(10)
    await store.updates.mark(11)
    last_event = (await store.jobs.events_after(0))[-1].id
    await store.cursors.set("bot.events", last_event)
    now = (await store.jobs.get(old)).finished_at
    kept = await store.retention.sweep(retention_days=30, now=now + 29 * DAY)
    assert kept.jobs == 0 and _under(store, "jobs", str(old)) and kept.updates == 1  # 10 goes, the newest stays
    report = await store.retention.sweep(retention_days=30, now=now + 31 * DAY)
    assert report.jobs == 1 and await store.jobs.get(old) is None
    assert _under(store, "jobs") == [] and await store.deliveries.get(old, "result") is None
    assert await store.jobs.events_after(0) == []
    assert await store.updates.last_id() == 11
    assert (await store.models.get(model.id)).status == "ready"  # the model itself is the owner's to delete


async def test_events_a_follower_has_not_passed_are_never_pruned(store: Storage) -> None:
    await store.cursors.set("bot.events", 0)
    job = await store.lifecycle.enqueue(DrawPayload(model_id=None, prompt="x"), owner_id=None)
    now = (await store.jobs.get(job.id)).created_at
    await store.retention.sweep(retention_days=30, now=now + 5 * DAY)
    assert [e.job_id for e in await store.jobs.events_after(0)] == [job.id]


async def test_a_picture_drawn_from_goes_with_the_last_drawing_that_names_it(store: Storage) -> None:
    model = await make_ready_model(store, 1)
    picture = await store.photos.keep_input(1, photo_bytes(5))

    async def drawing_from_it() -> int:
        job = await store.lifecycle.enqueue(DrawPayload(model_id=model.id, prompt="sks dog", init_image=picture),
                                       owner_id=1, chat_id=1, model_id=model.id)
        await store.lifecycle.claim("w", kinds=["draw"])
        await store.lifecycle.complete(job.id, "w", DrawResult(images=[], seeds=[1]))
        return job.id

    first = await drawing_from_it()
    now = (await store.jobs.get(first)).finished_at
    queued = await store.lifecycle.enqueue(DrawPayload(model_id=model.id, prompt="sks dog again", init_image=picture),
                                      owner_id=1, chat_id=1, model_id=model.id)
    report = await store.retention.sweep(retention_days=30, now=now + 31 * DAY)
    assert report.inputs == [] and await store.blobs.exists(picture)  # a queued drawing still needs it
    await store.lifecycle.cancel(queued.id)
    later = (await store.jobs.get(queued.id)).finished_at
    report = await store.retention.sweep(retention_days=30, now=later + 31 * DAY)
    assert report.inputs == [picture] and not await store.blobs.exists(picture)
