"""The lifecycle of models and jobs: each change one use case in one transaction, and nothing left half-way —
a training whose engine dies at every attempt ends its model too, and the queue position a user is told is the
order the engine takes the jobs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from storage import DrawPayload, FailureCode, JobStatus, ModelStatus, Storage, TrainingStarted, TrainPayload
from tests.helpers import ManualClock, add_photos

LEASE = 30.0


@pytest.fixture
def store(clocked_store: Storage) -> Storage:
    return clocked_store


async def _start(store: Storage, owner_id: int, seed: int = 0) -> TrainingStarted:
    ids = await add_photos(store, owner_id, [seed * 10 + i for i in range(3)])
    started = await store.lifecycle.start_training(owner_id, owner_id, "dog", ids)
    assert started is not None
    return started


async def test_a_training_whose_engine_dies_at_every_attempt_fails_its_model_and_frees_its_token(
    store: Storage, clock: ManualClock
) -> None:
    started = await _start(store, 1)
    for attempt in (1, 2, 3):
        job = await store.lifecycle.claim(f"engine-{attempt}", lease_s=LEASE)
        assert job is not None and job.id == started.job.id and job.attempts == attempt
        assert await store.lifecycle.begin_training(started.model.id, ["sks", "zwx"]) == "sks"
        # the engine dies: no heartbeat renews the lease; another claimer watches it lapse for a whole lease
        clock.advance(LEASE + 1)
        assert await store.lifecycle.claim("watcher") is None
        clock.advance(LEASE)
    assert await store.lifecycle.claim("survivor") is None  # out of attempts: given up, not handed out
    job = await store.jobs.get(started.job.id)
    model = await store.models.get(started.model.id)
    assert job.status == JobStatus.FAILED and (job.error, job.error_params) == (FailureCode.GAVE_UP, {"attempts": 3})
    assert model.status == ModelStatus.FAILED and model.error == FailureCode.GAVE_UP
    # the owner is told: the bot follows the feed's final event
    assert [e.kind for e in await store.jobs.events_after(0) if e.job_id == job.id][-1] == "failed"
    assert await store.models.tokens_in_use(1) == set()
    again = await store.lifecycle.start_training(1, 1, "dog", [p.id for p in await store.photos.list(1)])
    assert again is not None
    assert (await store.lifecycle.claim("engine-4")).id == again.job.id
    assert await store.lifecycle.begin_training(again.model.id, ["sks", "zwx"]) == "sks"


async def test_a_training_cancelled_while_its_engine_was_dead_leaves_no_model(
    store: Storage, clock: ManualClock
) -> None:
    started = await _start(store, 1)
    await store.lifecycle.claim("dead", lease_s=LEASE)
    await store.lifecycle.begin_training(started.model.id, ["sks"])
    await store.lifecycle.cancel_for_user(1)
    clock.advance(LEASE + 1)
    assert await store.lifecycle.claim("w") is None
    clock.advance(LEASE)
    assert await store.lifecycle.claim("w") is None
    assert (await store.jobs.get(started.job.id)).status == JobStatus.CANCELLED
    assert (await store.models.get(started.model.id)).status == ModelStatus.DELETED
    assert await store.models.list_for_owner(1) == [] and await store.models.tokens_in_use(1) == set()


async def test_one_training_at_a_time_and_its_update_marked_with_it(store: Storage) -> None:
    started = await _start(store, 1)
    ids = [p.id for p in await store.photos.list(1)]
    assert await store.lifecycle.start_training(1, 1, "cat", ids, update_id=77) is None
    assert await store.updates.seen(77)  # the refusal is that update's effect too
    assert [m.id for m in await store.models.list_for_owner(1)] == [started.model.id]  # no stray model
    assert started.model.photo_keys and all([await store.blobs.exists(k) for k in started.model.photo_keys])


async def test_the_queue_position_a_user_is_told_is_the_order_the_engine_takes_the_jobs(
    store: Storage, clock: ManualClock
) -> None:
    # Ann floods the queue and was served a moment ago; Boris and Cleo come later with a few each; trainings
    # and ownerless work wait below the drawings.
    ann = [await store.lifecycle.enqueue(_draw(f"ann {i}"), owner_id=1) for i in range(4)]
    assert (await store.lifecycle.claim("w")).id == ann[0].id
    clock.advance(1)
    queued = ann[1:]
    queued += [await store.lifecycle.enqueue(_draw(f"boris {i}"), owner_id=2) for i in range(3)]
    queued.append(await store.lifecycle.enqueue(TrainPayload(model_id=1), owner_id=3))
    queued.append(await store.lifecycle.enqueue(_draw("cleo"), owner_id=3))
    queued.append(await store.lifecycle.enqueue(TrainPayload(model_id=2), owner_id=2))
    queued.append(await store.lifecycle.enqueue(_draw("nobody's"), owner_id=None))
    queued.append(await store.lifecycle.enqueue(_draw("ann again"), owner_id=1))
    told = {job.id: await store.jobs.queue_position(job.id) for job in queued}
    taken = []
    while (job := await store.lifecycle.claim("w")) is not None:
        taken.append(job.id)
        clock.advance(1)
    assert sorted(taken) == sorted(told)
    assert [told[job_id] for job_id in taken] == list(range(len(taken)))


def _draw(prompt: str) -> DrawPayload:
    return DrawPayload(model_id=None, prompt=prompt)


ROOT = Path(__file__).resolve().parents[2]
# SQL that makes a job or a model, or changes its status.
STATUS_WRITE = re.compile(r"INSERT INTO (jobs|models)\b|UPDATE (jobs|models) SET[^;\"]*\bstatus\s*=", re.S)


def test_nothing_but_the_lifecycle_writes_a_model_or_job_status() -> None:
    writers = sorted(
        str(path.relative_to(ROOT)) for part in ("bot", "engine", "storage", "tools") for path in (ROOT / part).rglob("*.py")
        if "lifecycle" not in path.relative_to(ROOT).parts and STATUS_WRITE.search(path.read_text(encoding="utf-8"))
    )
    assert writers == []
