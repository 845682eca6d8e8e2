"""What only PostgreSQL can get wrong: its schema bookkeeping and types, and many writers at once (SQLite has one
writer, so the same races cannot happen there)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from storage import DrawPayload, DrawResult, Progress, SchemaTooNew, Storage
from storage.db import open_database
from storage.migrations import LATEST_VERSION
from storage.pg import PgDatabase
from tests.postgres import SKIP_REASON, configured_url, fresh_schema


@pytest.fixture
def pg_url() -> Iterator[str]:
    url = configured_url()
    if url is None:
        pytest.skip(SKIP_REASON)
    with fresh_schema(url) as schema_url:
        yield schema_url


def draw(prompt: str) -> DrawPayload:
    return DrawPayload(model_id=None, prompt=prompt)


async def test_a_fresh_schema_gets_the_latest_version_with_wide_ids_and_exact_timestamps(
    pg_url: str, data_dir: Path
) -> None:
    store = await Storage.open(data_dir, database_url=pg_url)
    try:
        assert store.db.dialect == "postgresql" and await store.db.version() == LATEST_VERSION
        group = -(2**52)  # Telegram ids need 52 bits, and groups are negative
        user = await store.users.upsert(2**52 - 1, username="big")
        await store.chats.upsert(group, type="supergroup", title="g")
        assert user.id == 2**52 - 1 and (await store.chats.get(group)).id == group
        before = time.time()
        job = await store.lifecycle.enqueue(draw("p"), owner_id=user.id, chat_id=group)
        # REAL would be a 4-byte float on PostgreSQL: a timestamp would come back minutes off.
        assert abs(job.created_at - before) < 1.0
    finally:
        await store.close()
    assert not (data_dir / "kabina.sqlite3").exists()


async def test_the_previous_version_upgrades_in_place_and_a_newer_one_is_refused(pg_url: str, data_dir: Path) -> None:
    old = await PgDatabase.open(pg_url, target_version=LATEST_VERSION - 1)
    await old.execute("INSERT INTO users (id, created_at) VALUES (?, ?)", (7, 1.0))
    assert await old.version() == LATEST_VERSION - 1
    await old.close()
    store = await Storage.open(data_dir, database_url=pg_url)
    try:
        assert await store.db.version() == LATEST_VERSION
        assert (await store.users.get(7)).id == 7
        assert await store.leases.holder("leader") is None  # the newest migration's table is there
    finally:
        await store.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE schema_version SET version = %s", (LATEST_VERSION + 1,))
    with pytest.raises(SchemaTooNew, match="newer than this Kabina knows"):
        await open_database(pg_url, data_dir / "unused.sqlite3")


async def test_concurrent_writers_and_a_follower_restarted_from_its_cursor_see_every_event_exactly_once(
    pg_url: str, data_dir: Path
) -> None:
    """Identity values are taken at insert, not at commit: without the write turn (the advisory lock) a follower
    reading `id > cursor` passes over an event whose transaction commits after a later one's."""
    writers = [await Storage.open(data_dir, database_url=pg_url) for _ in range(4)]
    seen: list[int] = []
    writing = True

    async def work(store: Storage, worker: str) -> None:
        for i in range(20):
            await store.lifecycle.enqueue(draw(f"{worker}-{i}"))
            job = await store.lifecycle.claim(worker)
            if job is not None:
                await store.jobs.report_progress(job.id, worker, Progress(stage="training", step=1, total=2))
                await store.lifecycle.complete(job.id, worker, DrawResult(images=[], seeds=[]))

    async def linger(store: Storage) -> None:
        # A slower transaction (as a claim settling abandoned jobs would be): its event's id is taken early and
        # committed late, while quicker writers commit later ids.
        job = await store.lifecycle.enqueue(draw("slow"))
        for _ in range(40):
            async with store.db.transaction() as conn:
                await conn.execute(
                    "INSERT INTO job_events (job_id, kind, data, created_at) VALUES (?, 'progress', '{}', ?)",
                    (job.id, time.time()),
                )
                await asyncio.sleep(0.005)

    async def follow_once(stop_after: int) -> None:
        # A fresh pool each time, as a restarted bot process would have.
        follower = await Storage.open(data_dir, database_url=pg_url)
        try:
            cursor = await follower.cursors.get("bot")
            quiet = 0  # empty polls begun after the writers were done: only those say nothing more will come
            while quiet < 3:
                writers_done = not writing
                events = await follower.jobs.events_after(cursor)
                quiet = quiet + 1 if writers_done and not events else 0
                for event in events:
                    seen.append(event.id)
                    cursor = event.id
                    if len(seen) >= stop_after:
                        break
                # Saved once a batch, so the follower keeps up with the writers (and sees them commit late).
                await follower.cursors.set("bot", cursor)
                if len(seen) >= stop_after:
                    return
                await asyncio.sleep(0)
        finally:
            await follower.close()

    async def follow() -> None:
        for stop_after in (100, 300, 500, 10**9):  # three restarts while the writers write
            await follow_once(stop_after)

    try:
        following = asyncio.create_task(follow())
        await asyncio.gather(*(work(store, f"w{n}{k}") for n, store in enumerate(writers) for k in range(4)),
                             *(linger(store) for store in writers))
        writing = False
        await asyncio.wait_for(following, timeout=60)
        every = [e.id for e in await writers[0].jobs.events_after(0, limit=100_000)]
        assert len(every) > 500
        repeated = [i for i, n in Counter(seen).items() if n > 1]
        missed = sorted(set(every) - set(seen))
        assert repeated == [] and missed == [], f"repeated {repeated[:10]}, missed {missed[:10]} of {len(every)}"
        assert seen == every
    finally:
        for store in writers:
            await store.close()


async def test_many_claimers_at_once_never_take_one_job_twice(pg_url: str, data_dir: Path) -> None:
    stores = [await Storage.open(data_dir, database_url=pg_url) for _ in range(4)]
    try:
        jobs = [await stores[0].lifecycle.enqueue(draw(f"p{i}")) for i in range(200)]
        claimed: list[int] = []

        async def drain(store: Storage, worker: str) -> None:
            while (job := await store.lifecycle.claim(worker)) is not None:
                claimed.append(job.id)
                await asyncio.sleep(0)

        await asyncio.gather(*(drain(store, f"w{n}{k}") for n, store in enumerate(stores) for k in range(3)))
        doubles = [job_id for job_id, n in Counter(claimed).items() if n > 1]
        assert doubles == [], f"{len(doubles)} jobs were handed out twice"
        assert sorted(claimed) == [j.id for j in jobs]
        started = Counter(e.job_id for e in await stores[0].jobs.events_after(0, limit=10_000) if e.kind == "started")
        assert set(started.values()) == {1}
    finally:
        for store in stores:
            await store.close()


async def test_an_unreachable_server_is_one_clear_storage_unavailable_without_the_password(data_dir: Path) -> None:
    from storage import StorageUnavailable

    url = "postgresql://kabina:s3cret@127.0.0.1:1/none?connect_timeout=1"
    with pytest.raises(StorageUnavailable) as caught:
        await PgDatabase.open(url, pool_size=1)
    assert "cannot be reached" in str(caught.value) and "s3cret" not in str(caught.value)


async def test_connections_the_server_dropped_are_storage_unavailable_once_then_replaced(
    pg_url: str, data_dir: Path
) -> None:
    from storage import StorageUnavailable

    name = f"kabina-test-{id(data_dir)}"
    store = await Storage.open(data_dir, database_url=f"{pg_url}&application_name={name}")
    try:
        await store.users.upsert(1)
        with psycopg.connect(pg_url, autocommit=True) as admin:  # as a server restart would
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                          (name,))
        failures = 0
        for _ in range(10):
            try:
                assert (await store.users.get(1)).id == 1
                break
            except StorageUnavailable as exc:
                assert "cannot be reached" in str(exc)
                failures += 1
        assert 1 <= failures < 10  # the pool let go of the dead connection and opened a new one
    finally:
        await store.close()


async def test_a_follower_is_woken_by_a_committed_event_long_before_its_poll(pg_url: str, data_dir: Path) -> None:
    """LISTEN/NOTIFY is only a wake-up: with an hour between polls, the event still arrives as it commits."""
    producer = await Storage.open(data_dir, database_url=pg_url)
    follower = await Storage.open(data_dir, database_url=pg_url)
    try:
        feed = follower.jobs.follow(0, poll_s=3600)
        first = await producer.lifecycle.enqueue(draw("a"))
        assert (await asyncio.wait_for(anext(feed), timeout=60)).job_id == first.id
        waiting = asyncio.create_task(anext(feed))  # now asleep on an empty feed
        await asyncio.sleep(0.2)
        second = await producer.lifecycle.enqueue(draw("b"))
        assert (await asyncio.wait_for(waiting, timeout=60)).job_id == second.id
        await feed.aclose()
    finally:
        await follower.close()
        await producer.close()
