from __future__ import annotations

import asyncio
import json
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from storage import JobCancelled, JobStatus, LeaseLost, Storage


async def test_draw_jobs_are_claimed_before_trainings_queued_earlier(store: Storage) -> None:
    train = await store.jobs.enqueue("train", {"model_id": 1})
    draw = await store.jobs.enqueue("draw", {"prompt": "sks dog"})
    assert (await store.jobs.claim("w")).id == draw.id
    assert (await store.jobs.claim("w")).id == train.id
    assert await store.jobs.claim("w") is None


async def test_queue_position_counts_the_jobs_ahead(store: Storage) -> None:
    first = await store.jobs.enqueue("train", {})
    second = await store.jobs.enqueue("train", {})
    third = await store.jobs.enqueue("train", {})
    assert [await store.jobs.position(j.id) for j in (first, second, third)] == [0, 1, 2]
    await store.jobs.claim("w")
    assert await store.jobs.position(third.id) == 1


async def test_a_worker_can_filter_the_kinds_it_takes(store: Storage) -> None:
    await store.jobs.enqueue("draw", {})
    train = await store.jobs.enqueue("train", {})
    assert (await store.jobs.claim("w", kinds=["train"])).id == train.id


async def test_jobs_claimed_by_several_processes_are_each_completed_exactly_once(
    tmp_path: Path, start_worker
) -> None:
    store = await Storage.open(tmp_path)
    try:
        workers = [start_worker(tmp_path, f"w{i}", "drain") for i in range(3)]
        jobs = []
        for i in range(300):  # enqueued while the workers race for them
            jobs.append(await store.jobs.enqueue("draw" if i % 3 else "train", {"i": i}))
            if i % 10 == 0:
                await asyncio.sleep(0.01)
        outputs = [json.loads(w.communicate(timeout=120)[0]) for w in workers]
        claimed = [job_id for out in outputs for job_id in out]
        assert sorted(claimed) == sorted(j.id for j in jobs)  # nobody got the same job twice, none was lost
        assert sum(1 for out in outputs if out) >= 2  # the work really was shared
        for job in jobs:
            assert (await store.jobs.get(job.id)).status == JobStatus.DONE
        done_events = Counter(e.job_id for e in await store.jobs.events_after(0, limit=10_000) if e.kind == "done")
        assert set(done_events.values()) == {1} and len(done_events) == len(jobs)
    finally:
        await store.close()


async def test_a_job_whose_worker_was_killed_is_claimed_again_and_fails_clearly_past_its_attempts(
    tmp_path: Path, start_worker
) -> None:
    store = await Storage.open(tmp_path)
    try:
        job = await store.jobs.enqueue("train", {"model_id": 1}, max_attempts=2)
        for attempt in (1, 2):
            worker = start_worker(tmp_path, f"doomed{attempt}", "hold", lease_s=0.5)
            line = json.loads(worker.stdout.readline())
            assert line == {"claimed": job.id, "attempts": attempt}
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            # the lease is still held: nobody may take the job yet
            assert await store.jobs.claim("other", lease_s=0.5) is None or attempt == 2
            await asyncio.sleep(0.7)
            if attempt == 1:
                assert (await store.jobs.get(job.id)).status == JobStatus.RUNNING
        # past max_attempts: the next claim does not hand it out but fails it with a user-facing reason
        assert await store.jobs.claim("survivor") is None
        failed = await store.jobs.get(job.id)
        assert failed.status == JobStatus.FAILED and failed.attempts == 2
        assert "stopped unexpectedly 2 times" in failed.error
        kinds = [e.kind for e in await store.jobs.events_after(0)]
        assert kinds == ["queued", "started", "started", "failed"]
    finally:
        await store.close()


async def test_an_expired_lease_is_resumed_by_another_worker_with_the_attempt_counted(store: Storage) -> None:
    job = await store.jobs.enqueue("train", {})
    await store.jobs.claim("dead", lease_s=0.05)
    await asyncio.sleep(0.1)
    again = await store.jobs.claim("alive")
    assert again.id == job.id and again.attempts == 2 and again.lease_owner == "alive"
    started = [e for e in await store.jobs.events_after(0) if e.kind == "started"]
    assert started[-1].data["resumed"] is True
    # the dead worker waking up finds it no longer holds the job
    with pytest.raises(LeaseLost):
        await store.jobs.complete(job.id, "dead", {})
    with pytest.raises(LeaseLost):
        await store.jobs.heartbeat(job.id, "dead")


async def test_heartbeat_keeps_a_long_job_from_being_taken(store: Storage) -> None:
    job = await store.jobs.enqueue("train", {})
    await store.jobs.claim("w", lease_s=0.2)
    for _ in range(4):
        await asyncio.sleep(0.1)
        await store.jobs.heartbeat(job.id, "w", lease_s=0.2)
    assert await store.jobs.claim("thief") is None


async def test_cancelling_a_queued_job_cancels_it_at_once(store: Storage) -> None:
    job = await store.jobs.enqueue("train", {})
    cancelled = await store.jobs.cancel(job.id)
    assert cancelled.status == JobStatus.CANCELLED
    assert await store.jobs.claim("w") is None
    assert [e.kind for e in await store.jobs.events_after(0)] == ["queued", "cancelled"]


async def test_a_running_job_learns_of_its_cancel_at_the_next_heartbeat(store: Storage) -> None:
    job = await store.jobs.enqueue("train", {})
    await store.jobs.claim("w")
    asked = await store.jobs.cancel(job.id)
    assert asked.status == JobStatus.RUNNING and asked.cancel_requested
    with pytest.raises(JobCancelled):
        await store.jobs.heartbeat(job.id, "w")
    await store.jobs.cancelled(job.id, "w")
    assert (await store.jobs.get(job.id)).status == JobStatus.CANCELLED


async def test_a_cancelled_job_whose_worker_died_ends_cancelled_not_retried(store: Storage) -> None:
    job = await store.jobs.enqueue("train", {})
    await store.jobs.claim("dead", lease_s=0.05)
    await store.jobs.cancel(job.id)
    await asyncio.sleep(0.1)
    assert await store.jobs.claim("w") is None
    assert (await store.jobs.get(job.id)).status == JobStatus.CANCELLED


async def test_released_jobs_go_back_to_the_queue_without_using_an_attempt(store: Storage) -> None:
    job = await store.jobs.enqueue("train", {}, max_attempts=1)
    await store.jobs.claim("stopping")
    await store.jobs.release(job.id, "stopping")
    again = await store.jobs.claim("next")
    assert again.id == job.id and again.attempts == 1


async def test_progress_result_and_failure_reach_the_job_and_the_feed(store: Storage) -> None:
    ok = await store.jobs.enqueue("draw", {})
    bad = await store.jobs.enqueue("draw", {})
    await store.jobs.claim("w")
    await store.jobs.report_progress(ok.id, "w", {"step": 3, "total": 10})
    assert (await store.jobs.get(ok.id)).progress == {"step": 3, "total": 10}
    await store.jobs.complete(ok.id, "w", {"images": ["a.png"]})
    await store.jobs.claim("w")
    await store.jobs.fail(bad.id, "w", "The prompt was empty.")
    assert (await store.jobs.get(ok.id)).result == {"images": ["a.png"]}
    assert (await store.jobs.get(bad.id)).error == "The prompt was empty."
    feed = [(e.job_id, e.kind) for e in await store.jobs.events_after(0)]
    assert (ok.id, "progress") in feed and (ok.id, "done") in feed and (bad.id, "failed") in feed


async def test_a_follower_restarted_from_its_cursor_sees_every_event_exactly_once(tmp_path: Path) -> None:
    producer = await Storage.open(tmp_path)
    seen: list[int] = []

    async def follow_for_a_while(stop_after: int) -> None:
        # A fresh connection each time, as a restarted bot process would have.
        follower = await Storage.open(tmp_path)
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
            job = await producer.jobs.enqueue("draw", {"i": i})
            if i % 2:
                await producer.jobs.cancel(job.id)
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


async def test_daily_counts_and_active_jobs_are_per_owner(store: Storage) -> None:
    since = time.time() - 1
    a = await store.jobs.enqueue("train", {}, owner_id=1)
    await store.jobs.enqueue("train", {}, owner_id=2)
    cancelled = await store.jobs.enqueue("train", {}, owner_id=1)
    await store.jobs.cancel(cancelled.id)
    assert await store.jobs.count_since(1, "train", since) == 1
    assert [j.id for j in await store.jobs.active_for_owner(1, "train")] == [a.id]
