"""The operator's figures and controls in storage: queue lines per kind, failures by code, engines alive, bans told
once, allowance resets — on both backends."""

from __future__ import annotations

from storage import DrawPayload, EngineInfo, Storage
from tests.helpers import ManualClock


def _draw(prompt: str = "a dog") -> DrawPayload:
    return DrawPayload(model_id=None, prompt=prompt)


async def test_stats_count_users_the_queue_per_kind_and_its_oldest_wait(clocked_store: Storage,
                                                                       clock: ManualClock) -> None:
    store = clocked_store
    for user_id in (1, 2, 3):
        await store.users.upsert(user_id, first_name=f"u{user_id}")
    await store.lifecycle.enqueue(_draw(), owner_id=1)
    clock.advance(90)
    await store.lifecycle.enqueue(_draw(), owner_id=2)
    running = await store.lifecycle.enqueue(_draw(), owner_id=3)
    clock.advance(30)
    stats = await store.admin.stats()
    assert stats.users == 3 and stats.draws_today == 3 and stats.trainings_today == 0
    line = stats.queue_by_kind["draw"]
    assert (line.queued, line.running) == (3, 0) and line.oldest_wait_s == 120
    assert await store.lifecycle.claim("w1", ["draw"]) is not None  # the oldest one
    line = (await store.admin.stats()).queue_by_kind["draw"]
    assert (line.queued, line.running) == (2, 1) and line.oldest_wait_s == 30
    assert running.id


async def test_failures_are_counted_by_code_for_the_last_day(clocked_store: Storage, clock: ManualClock) -> None:
    store = clocked_store
    for code in ("out_of_memory", "out_of_memory", "internal"):
        await store.lifecycle.enqueue(_draw(), owner_id=1)
        job = await store.lifecycle.claim("w1", ["draw"])
        await store.lifecycle.fail(job.id, "w1", code)
    assert (await store.admin.stats()).failures_today == {"internal": 1, "out_of_memory": 2}
    clock.advance(25 * 3600)
    assert (await store.admin.stats()).failures_today == {}


async def test_an_engine_is_alive_while_it_beats_and_says_what_it_serves(clocked_store: Storage,
                                                                        clock: ManualClock) -> None:
    store = clocked_store
    await store.engines.publish("gpu-a:1", EngineInfo(family="sdxl", title="SDXL 1.0"))
    await store.admin.engine_alive("gpu-a:1")
    (engine,) = await store.admin.engines_alive()
    assert (engine.family, engine.title, engine.busy_with) == ("sdxl", "SDXL 1.0", None)
    job = await store.lifecycle.enqueue(_draw(), owner_id=1)
    await store.lifecycle.claim("gpu-a:1", ["draw"])
    assert (await store.admin.engines_alive())[0].busy_with == job.id
    clock.advance(3600)  # no beat for an hour: gone
    assert await store.admin.engines_alive() == []
    await store.admin.engine_alive("gpu-a:1")
    assert len(await store.admin.engines_alive()) == 1


async def test_a_ban_is_told_once_survives_forgetting_and_is_lifted_by_unban(store: Storage) -> None:
    await store.users.upsert(7, first_name="Mallory", username="Mallory_X")
    assert await store.admin.find_user("@mallory_x") == 7 and await store.admin.find_user("42") == 42
    assert await store.admin.find_user("@nobody") is None
    assert await store.admin.ban(7, by_user_id=1) and not await store.admin.ban(7, by_user_id=1)
    assert await store.admin.is_banned(7)
    assert await store.admin.tell_banned_once(7) and not await store.admin.tell_banned_once(7)
    await store.lifecycle.forget_user(7)
    assert await store.admin.is_banned(7), "forgetting oneself is no way around a ban"
    assert await store.admin.unban(7) and not await store.admin.is_banned(7) and not await store.admin.unban(7)
    assert (await store.admin.stats()).banned == 0


async def test_a_reset_starts_the_users_counted_day_anew(clocked_store: Storage, clock: ManualClock) -> None:
    store = clocked_store
    day_ago = clock() - 86400
    assert await store.admin.allowance_counts_from(5, day_ago) == day_ago
    clock.advance(10)
    await store.admin.reset_allowance(5)
    assert await store.admin.allowance_counts_from(5, day_ago) == clock()
    assert await store.admin.allowance_counts_from(6, day_ago) == day_ago
