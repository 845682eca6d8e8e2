"""The durable job queue: priorities, atomic claims across processes, leases, cancels and the event feed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from storage import (
    ClassImagesPayload,
    ContractError,
    DrawPayload,
    DrawResult,
    FailureCode,
    JobCancelled,
    JobStatus,
    LeaseLost,
    Progress,
    Storage,
    TrainPayload,
)
from tests.helpers import ManualClock

LEASE = 30.0
HOLD_LEASE = 2.0  # the lease of the worker processes that are killed (real time passes for them)


def train(model_id: int = 1) -> TrainPayload:
    return TrainPayload(model_id=model_id)


def draw(prompt: str = "sks dog") -> DrawPayload:
    return DrawPayload(model_id=None, prompt=prompt)


@pytest.fixture
def store(clocked_store: Storage) -> Storage:
    return clocked_store


async def test_draw_jobs_are_claimed_before_trainings_queued_earlier(store: Storage) -> None:
    first = await store.lifecycle.enqueue(train())
    drawing = await store.lifecycle.enqueue(draw())
    assert (await store.lifecycle.claim("w")).id == drawing.id
    assert (await store.lifecycle.claim("w")).id == first.id
    assert await store.lifecycle.claim("w") is None


async def test_queue_position_counts_the_jobs_ahead(store: Storage) -> None:
    jobs = [await store.lifecycle.enqueue(train()) for _ in range(3)]
    assert [await store.jobs.queue_position(j.id) for j in jobs] == [0, 1, 2]
    await store.lifecycle.claim("w")
    assert await store.jobs.queue_position(jobs[2].id) == 1


async def test_a_worker_can_filter_the_kinds_it_takes(store: Storage) -> None:
    await store.lifecycle.enqueue(draw())
    training = await store.lifecycle.enqueue(train())
    assert (await store.lifecycle.claim("w", kinds=["train"])).id == training.id


async def test_payloads_and_results_come_back_typed_and_a_wrong_result_is_refused(store: Storage) -> None:
    job = await store.lifecycle.enqueue(DrawPayload(model_id=3, prompt="sks dog in Paris", n=2, seeds=[4, 5]))
    claimed = await store.lifecycle.claim("w")
    assert claimed.payload == job.payload and isinstance(claimed.payload, DrawPayload)
    assert claimed.payload.n == 2 and claimed.payload.seeds == [4, 5]
    with pytest.raises(ContractError):
        await store.lifecycle.complete(job.id, "w", _train_result())
    await store.lifecycle.complete(job.id, "w", DrawResult(images=["a.png"], seeds=[4, 5]))
    assert (await store.jobs.get(job.id)).result == DrawResult(images=["a.png"], seeds=[4, 5])


def _train_result():
    from storage import TrainResult

    return TrainResult(model_id=1, token="sks", class_word="dog", weights_key="w", kohya_key="k", sample_keys=[],
                       steps=1, seconds=1.0, report_card_key="r", class_drift=0.0, drift_warning=False)


async def test_jobs_claimed_by_several_processes_are_each_completed_exactly_once(
    data_dir: Path, database_url: str | None, start_worker
) -> None:
    store = await Storage.open(data_dir, database_url=database_url)
    try:
        workers = [start_worker(data_dir, f"w{i}", "drain") for i in range(3)]
        jobs = []
        for i in range(300):  # enqueued while the workers race for them
            jobs.append(await store.lifecycle.enqueue(draw(f"p{i}") if i % 3 else ClassImagesPayload(class_word="dog")))
            if i % 10 == 0:
                await asyncio.sleep(0.01)
        outputs = [json.loads(w.communicate(timeout=60)[0]) for w in workers]
        claimed = [job_id for out in outputs for job_id in out["claimed"]]
        doubles = [job_id for job_id, n in Counter(claimed).items() if n > 1]
        assert doubles == [], f"{len(doubles)} jobs were handed to two workers"
        assert [job_id for out in outputs for job_id in out["lost"]] == []
        assert sorted(claimed) == sorted(j.id for j in jobs)  # none was lost
        assert sum(1 for out in outputs if out["claimed"]) >= 2  # the work really was shared
        for job in jobs:
            assert (await store.jobs.get(job.id)).status == JobStatus.DONE
        done_events = Counter(e.job_id for e in await store.jobs.events_after(0, limit=10_000) if e.kind == "done")
        assert set(done_events.values()) == {1} and len(done_events) == len(jobs)
    finally:
        await store.close()


async def test_a_job_whose_worker_was_killed_is_claimed_again_and_fails_clearly_past_its_attempts(
    data_dir: Path, database_url: str | None, start_worker
) -> None:
    clock = ManualClock(time.time())  # the worker processes use the real clock; this one jumps past their leases
    store = await Storage.open(data_dir, database_url=database_url, clock=clock, monotonic=clock.monotonic)
    try:
        job = await store.lifecycle.enqueue(train(), max_attempts=2)
        for attempt in (1, 2):
            worker = start_worker(data_dir, f"doomed{attempt}", "hold", lease_s=HOLD_LEASE)
            line = json.loads(worker.stdout.readline())
            assert line == {"claimed": job.id, "attempts": attempt}
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            # the lease is still held: nobody may take the job yet
            assert await store.lifecycle.claim("other") is None
            clock.advance(time.time() - clock() + HOLD_LEASE + 1)
            # expired, but this claimer has only now begun to watch it lapse
            assert await store.lifecycle.claim("other") is None
            if attempt == 1:
                assert (await store.jobs.get(job.id)).status == JobStatus.RUNNING
        clock.advance(HOLD_LEASE + 1)
        # past max_attempts: the next claim does not hand it out but fails it with a reason the bot can say
        assert await store.lifecycle.claim("survivor") is None
        failed = await store.jobs.get(job.id)
        assert failed.status == JobStatus.FAILED and failed.attempts == 2
        assert (failed.error, failed.error_params) == (FailureCode.GAVE_UP, {"attempts": 2})
        kinds = [e.kind for e in await store.jobs.events_after(0)]
        assert kinds == ["queued", "started", "started", "failed"]
    finally:
        await store.close()


async def test_an_expired_lease_is_resumed_by_another_worker_with_the_attempt_counted(
    store: Storage, clock: ManualClock
) -> None:
    job = await store.lifecycle.enqueue(train())
    await store.lifecycle.claim("dead", lease_s=LEASE)
    clock.advance(LEASE - 1)
    assert await store.lifecycle.claim("alive") is None  # not expired yet
    clock.advance(2)
    assert await store.lifecycle.claim("alive") is None  # expired: from now on "alive" watches it stay un-renewed
    clock.advance(LEASE)
    again = await store.lifecycle.claim("alive")
    assert again is not None, "an expired lease was not taken over"
    assert again.id == job.id and again.attempts == 2 and again.lease_owner == "alive"
    started = [e for e in await store.jobs.events_after(0) if e.kind == "started"]
    assert started[-1].data["resumed"] is True
    # the dead worker waking up finds it no longer holds the job
    with pytest.raises(LeaseLost):
        await store.lifecycle.complete(job.id, "dead", _train_result())
    with pytest.raises(LeaseLost):
        await store.jobs.heartbeat(job.id, "dead")


async def test_heartbeat_keeps_a_long_job_from_being_taken(store: Storage, clock: ManualClock) -> None:
    job = await store.lifecycle.enqueue(train())
    await store.lifecycle.claim("w", lease_s=LEASE)
    for _ in range(5):  # five whole leases pass, each renewed before it ran out
        clock.advance(LEASE * 0.8)
        await store.jobs.heartbeat(job.id, "w", lease_s=LEASE)
        assert await store.lifecycle.claim("thief") is None
    assert (await store.jobs.get(job.id)).lease_owner == "w"


async def test_a_forward_jump_of_the_wall_clock_lets_nobody_take_a_healthy_job(
    store: Storage, clock: ManualClock
) -> None:
    job = await store.lifecycle.enqueue(train())
    await store.lifecycle.claim("w", lease_s=LEASE)
    clock.jump(3600)  # every lease now looks an hour overdue
    assert await store.lifecycle.claim("thief") is None
    for _ in range(4):  # the owner keeps beating on its own schedule (a third of a lease)
        clock.advance(LEASE / 3)
        await store.jobs.heartbeat(job.id, "w", lease_s=LEASE)
        assert await store.lifecycle.claim("thief") is None
    assert (await store.jobs.get(job.id)).lease_owner == "w"


async def test_a_forward_jump_of_the_wall_clock_never_fails_a_job_on_its_last_attempt(
    store: Storage, clock: ManualClock
) -> None:
    job = await store.lifecycle.enqueue(draw(), max_attempts=1)
    await store.lifecycle.claim("w", lease_s=LEASE)
    clock.jump(3600)
    assert await store.lifecycle.claim("other") is None
    assert (await store.jobs.get(job.id)).status == JobStatus.RUNNING
    clock.advance(LEASE / 3)
    await store.jobs.heartbeat(job.id, "w", lease_s=LEASE)
    clock.advance(LEASE)
    assert await store.lifecycle.claim("other") is None
    await store.lifecycle.complete(job.id, "w", DrawResult(images=[], seeds=[]))
    assert (await store.jobs.get(job.id)).status == JobStatus.DONE


async def test_cancelling_a_queued_job_cancels_it_at_once(store: Storage) -> None:
    job = await store.lifecycle.enqueue(train())
    cancelled = await store.lifecycle.cancel(job.id)
    assert cancelled.status == JobStatus.CANCELLED
    assert await store.lifecycle.claim("w") is None
    assert [e.kind for e in await store.jobs.events_after(0)] == ["queued", "cancelled"]


async def test_a_running_job_learns_of_its_cancel_at_the_next_heartbeat(store: Storage) -> None:
    job = await store.lifecycle.enqueue(train())
    await store.lifecycle.claim("w")
    asked = await store.lifecycle.cancel(job.id)
    assert asked.status == JobStatus.RUNNING and asked.cancel_requested
    with pytest.raises(JobCancelled):
        await store.jobs.heartbeat(job.id, "w")
    await store.lifecycle.cancelled(job.id, "w")
    assert (await store.jobs.get(job.id)).status == JobStatus.CANCELLED


async def test_a_cancelled_job_whose_worker_died_ends_cancelled_not_retried(store: Storage, clock: ManualClock) -> None:
    job = await store.lifecycle.enqueue(train())
    await store.lifecycle.claim("dead", lease_s=LEASE)
    await store.lifecycle.cancel(job.id)
    clock.advance(LEASE + 1)
    assert await store.lifecycle.claim("w") is None
    clock.advance(LEASE)
    assert await store.lifecycle.claim("w") is None
    assert (await store.jobs.get(job.id)).status == JobStatus.CANCELLED


async def test_released_jobs_go_back_to_the_queue_without_using_an_attempt(store: Storage) -> None:
    job = await store.lifecycle.enqueue(train(), max_attempts=1)
    await store.lifecycle.claim("stopping")
    await store.lifecycle.release(job.id, "stopping")
    again = await store.lifecycle.claim("next")
    assert again.id == job.id and again.attempts == 1


async def test_progress_result_and_failure_reach_the_job_and_the_feed(store: Storage) -> None:
    ok = await store.lifecycle.enqueue(draw())
    bad = await store.lifecycle.enqueue(draw())
    await store.lifecycle.claim("w")
    await store.jobs.report_progress(ok.id, "w", Progress(stage="samples", step=3, total=10))
    assert (await store.jobs.get(ok.id)).progress == Progress(stage="samples", step=3, total=10)
    await store.lifecycle.complete(ok.id, "w", DrawResult(images=["a.png"], seeds=[1]))
    await store.lifecycle.claim("w")
    await store.lifecycle.fail(bad.id, "w", "The prompt was empty.")
    assert (await store.jobs.get(ok.id)).result.images == ["a.png"]
    assert (await store.jobs.get(bad.id)).error == "The prompt was empty."
    feed = [(e.job_id, e.kind) for e in await store.jobs.events_after(0)]
    assert (ok.id, "progress") in feed and (ok.id, "done") in feed and (bad.id, "failed") in feed


async def test_a_follower_restarted_from_its_cursor_sees_every_event_exactly_once(
    data_dir: Path, database_url: str | None
) -> None:
    producer = await Storage.open(data_dir, database_url=database_url)
    seen: list[int] = []

    async def follow_for_a_while(stop_after: int) -> None:
        # A fresh connection each time, as a restarted bot process would have.
        follower = await Storage.open(data_dir, database_url=database_url)
        try:
            cursor = await follower.cursors.get("bot")
            async for event in follower.jobs.follow(cursor, poll_s=0.01):
                seen.append(event.id)
                await follower.cursors.set("bot", event.id)
                if len(seen) >= stop_after:
                    return
        finally:
            await follower.close()

    async def produce() -> None:
        for i in range(60):
            job = await producer.lifecycle.enqueue(draw(f"p{i}"))
            if i % 2:
                await producer.lifecycle.cancel(job.id)
            await asyncio.sleep(0.001)

    try:
        production = asyncio.create_task(produce())
        for stop_after in (25, 50, 90):  # two "crashes" of the follower while events keep coming
            await asyncio.wait_for(follow_for_a_while(stop_after), timeout=30)
        await production
        all_ids = [e.id for e in await producer.jobs.events_after(0, limit=1000)]
        assert len(all_ids) == 90
        assert seen == all_ids
    finally:
        await producer.close()


async def test_daily_counts_and_active_jobs_are_per_owner(store: Storage, clock: ManualClock) -> None:
    since = clock() - 1
    a = await store.lifecycle.enqueue(train(), owner_id=1)
    await store.lifecycle.enqueue(train(), owner_id=2)
    cancelled = await store.lifecycle.enqueue(train(), owner_id=1)
    await store.lifecycle.cancel(cancelled.id)
    assert await store.jobs.count_since(1, "train", since) == 1
    assert [j.id for j in await store.jobs.active_for_owner(1, "train")] == [a.id]


async def test_users_take_turns_so_a_backlog_delays_another_user_by_at_most_one_job(
    store: Storage, clock: ManualClock
) -> None:
    flood = [await store.lifecycle.enqueue(draw(f"ann {i}"), owner_id=1) for i in range(5)]
    first = await store.lifecycle.claim("w")
    assert first.id == flood[0].id
    clock.advance(1)
    boris = await store.lifecycle.enqueue(draw("boris"), owner_id=2)
    cleo = await store.lifecycle.enqueue(draw("cleo"), owner_id=3)
    assert await store.jobs.queue_position(boris.id) == 0 and await store.jobs.queue_position(cleo.id) == 1
    await store.lifecycle.complete(first.id, "w", DrawResult(images=[], seeds=[]))
    order = []
    while (job := await store.lifecycle.claim("w")) is not None:
        order.append(job.owner_id)
        clock.advance(1)
        await store.lifecycle.complete(job.id, "w", DrawResult(images=[], seeds=[]))
    assert order == [2, 3, 1, 1, 1, 1]


async def test_pending_work_is_bounded_per_user_at_enqueue(store: Storage) -> None:
    made = [await store.lifecycle.request_drawing(1, 1, draw(), limit=3) for _ in range(5)]
    assert [job is not None for job in made] == [True, True, True, False, False]
    assert await store.lifecycle.request_drawing(2, 2, draw(), limit=3) is not None
    await store.lifecycle.claim("w")
    await store.lifecycle.complete(made[0].id, "w", DrawResult(images=[], seeds=[]))
    assert await store.lifecycle.request_drawing(1, 1, draw(), limit=3) is not None


async def test_the_daily_count_is_of_trainings_that_started_cancelled_ones_included(store: Storage,
                                                                                     clock: ManualClock) -> None:
    since = clock() - 1
    never_started = await store.lifecycle.enqueue(train(), owner_id=1)
    await store.lifecycle.cancel(never_started.id)
    for _ in range(2):
        cancelled = await store.lifecycle.enqueue(train(), owner_id=1)
        await store.lifecycle.claim("w")
        await store.lifecycle.cancel(cancelled.id)
        await store.lifecycle.cancelled(cancelled.id, "w")
    failed = await store.lifecycle.enqueue(train(), owner_id=1)
    await store.lifecycle.claim("w")
    await store.lifecycle.fail(failed.id, "w", "the engine crashed")
    done = await store.lifecycle.enqueue(train(), owner_id=1)
    await store.lifecycle.claim("w")
    await store.lifecycle.complete(done.id, "w", _train_result())
    assert await store.jobs.count_since(1, "train", since) == 3  # the two cancelled after they started, and done


async def test_a_transaction_cancelled_at_any_moment_leaves_the_database_usable(store: Storage) -> None:
    """A heartbeat cancelled mid-statement (the worker's pump is cancelled when its job ends) must not leave the
    shared connection inside a transaction: the next write would fail with "transaction within a transaction"."""
    job = await store.lifecycle.enqueue(draw())
    await store.lifecycle.claim("w", lease_s=LEASE)
    for delay in range(40):
        beat = asyncio.create_task(store.jobs.heartbeat(job.id, "w", lease_s=LEASE))
        for _ in range(delay % 8):
            await asyncio.sleep(0)
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
        await store.jobs.heartbeat(job.id, "w", lease_s=LEASE)  # raises if a transaction was left open
    await store.lifecycle.complete(job.id, "w", DrawResult(images=[], seeds=[]))
    assert (await store.jobs.get(job.id)).status == JobStatus.DONE
