"""A misbehaving Bot API: error pages, 5xx, 401/404/409, unreadable updates and 429s are logged and waited out, the
bot goes on, no result is lost or sent twice, and one slow user or busy chat delays nobody else."""

from __future__ import annotations

import asyncio
import logging

from storage import Storage
from tests.fake_telegram import PROXY_ERROR_PAGE, FakeTelegram
from tests.helpers import StandInWorker, User, make_ready_model, photo_bytes, settled, wait_reply


def _failed(fake: FakeTelegram, method: str, chat_id: int | None = None) -> list:
    return [c for c in fake.calls if c.method == method and c.error and (chat_id is None or c.chat_id == chat_id)]


async def test_error_pages_and_api_errors_on_get_updates_never_stop_the_bot(
    kabina, fake: FakeTelegram, ann: User, caplog
) -> None:
    fake.answer_next("getUpdates", 502, PROXY_ERROR_PAGE, times=2)
    fake.answer_next("getUpdates", 200, '{"ok": true, "result": [{"update_id"', content_type="application/json")
    for status, description in ((500, "Internal Server Error"), (409, "Conflict: terminated by other getUpdates"),
                                (404, "Not Found"), (401, "Unauthorized")):
        fake.fail_next_with("getUpdates", status, description)
    with caplog.at_level(logging.WARNING):
        await fake.wait_for(lambda: fake.answers_left() == 0, timeout=20, what="every bad answer to be served")
        ann.say("/help")
        await wait_reply(fake, ann.id, "Kabina")
    kabina.check_alive()
    assert sum("getUpdates failed" in r.getMessage() for r in caplog.records) == 7


async def test_an_update_aiogram_cannot_read_is_skipped_and_everyone_after_it_is_answered(
    kabina, fake: FakeTelegram, store: Storage, ann: User, boris: User, caplog
) -> None:
    with caplog.at_level(logging.ERROR):
        poison = fake.send_unreadable(ann.data)
        boris.say("/help")
        ann.say("/help")
        await wait_reply(fake, boris.id, "Кабина")
        await wait_reply(fake, ann.id, "Kabina")
        await fake.wait_idle(quiet=0.3)
    assert fake.pending_updates() == 0  # acknowledged too: it will not block the queue after a restart either
    assert await store.updates.seen(poison)
    assert any(f"update {poison} could not be read" in r.getMessage() for r in caplog.records)


async def test_a_result_refused_with_5xx_is_sent_again_until_it_arrives_and_drawing_goes_only_after(
    kabina, fake: FakeTelegram, store: Storage, ann: User, worker: StandInWorker
) -> None:
    await make_ready_model(store, ann.id)
    ann.say("/draw sks dog in Paris --n 2")
    job = await worker.claim("draw")
    await wait_reply(fake, ann.id, "Drawing")
    fake.fail_next_with("sendMediaGroup", 502, "Bad Gateway", times=2)
    fake.answer_next("sendMediaGroup", 502, PROXY_ERROR_PAGE)
    await worker.finish_draw(job)
    await settled(store, job.id, timeout=20)
    albums, refused = fake.calls_of("sendMediaGroup", ann.id), _failed(fake, "sendMediaGroup", ann.id)
    assert len(albums) == 1 and len(refused) == 3
    assert sum("More like this" in t for t in ann.replies()) == 1
    deleted = fake.calls_of("deleteMessage", ann.id)
    assert len(deleted) == 1 and deleted[0].at > albums[0].at  # "Drawing…" stayed until the pictures were there


async def test_a_user_who_blocked_the_bot_costs_one_attempt_and_the_result_is_recorded_undeliverable(
    kabina, fake: FakeTelegram, store: Storage, ann: User, cleo: User, worker: StandInWorker
) -> None:
    await make_ready_model(store, ann.id)
    ann.say("/draw sks dog --n 2")
    job = await worker.claim("draw")
    await wait_reply(fake, ann.id, "Drawing")
    fake.fail_next_with("sendMediaGroup", 403, "Forbidden: bot was blocked by the user", times=10)
    await worker.finish_draw(job)
    await settled(store, job.id)
    record = await store.deliveries.get(job.id, "result")
    assert record is not None and record.state == "failed" and "blocked" in record.data["error"]
    assert fake.answers_left() == 9  # one try: a refusal for good is not retried
    fake.clear_injected()
    await make_ready_model(store, cleo.id)  # and the outbox goes on for everyone else
    cleo.say("/draw sks dog --n 2")
    other = await worker.claim("draw")
    await worker.finish_draw(other)
    await settled(store, other.id)
    assert len(fake.calls_of("sendMediaGroup", cleo.id)) == 1


async def test_a_chat_under_flood_control_delays_nobody_elses_result(
    kabina, fake: FakeTelegram, store: Storage, ann: User, cleo: User, worker: StandInWorker
) -> None:
    for user in (ann, cleo):
        await make_ready_model(store, user.id)
    ann.say("/draw sks dog --n 2")
    first = await worker.claim("draw")
    cleo.say("/draw sks dog --n 2")
    second = await worker.claim("draw")
    await wait_reply(fake, cleo.id, "Drawing")
    fake.fail_next_with("sendMediaGroup", 429, "Too Many Requests: retry after 3", retry_after=3,
                        where=lambda c: c.chat_id == ann.id)
    await worker.finish_draw(first)  # Ann's result is ready first, and her chat is told to wait 3 s
    await fake.wait_for(lambda: _failed(fake, "sendMediaGroup", ann.id), what="Ann's chat to be told to wait")
    await worker.finish_draw(second)
    (cleos,) = await fake.wait_call("sendMediaGroup", cleo.id)
    (anns,) = await fake.wait_call("sendMediaGroup", ann.id, timeout=20)
    assert cleos.at < anns.at, "Cleo's result waited behind Ann's flood control"


async def test_a_user_waiting_on_a_slow_download_delays_nobody_else_and_keeps_their_own_order(
    kabina, fake: FakeTelegram, store: Storage, ann: User, boris: User
) -> None:
    download = fake.hold("download")
    ann.photo(photo_bytes(1))
    photo_update = fake.last_update_id()
    ann.say("/photos")  # Ann's next update waits for her photo to be saved
    await asyncio.wait_for(download.arrived.wait(), 10)
    boris.say("/help")
    await wait_reply(fake, boris.id, "Кабина")
    # Telegram still holds Ann's unfinished update: a crash now would hand it to the next start
    assert fake.acknowledged_offset <= photo_update
    assert fake.calls_of("sendPhoto", ann.id) == [] and ann.replies() == []
    download.release()
    (sheet,) = await fake.wait_call("sendPhoto", ann.id)
    assert "1 photo" in sheet.params["caption"]
    await fake.wait_idle(quiet=0.3)
    assert fake.pending_updates() == 0 and await store.photos.count(ann.id) == 1
