"""Robustness: a bot killed at any moment loses nothing and repeats nothing; 429s are waited out and retried."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from storage import Settings, Storage
from tests.fake_telegram import FakeTelegram
from tests.helpers import (
    BotProcess,
    RunningBot,
    StandInWorker,
    User,
    make_ready_model,
    photo_bytes,
    settled,
    started,
    wait_reply,
)

ROOT = Path(__file__).resolve().parents[2]


async def test_a_result_finished_while_the_bot_was_down_is_delivered_exactly_once(
    fake: FakeTelegram, store: Storage, ann: User, worker: StandInWorker, bot_process: BotProcess
) -> None:
    await make_ready_model(store, ann.id)
    await started(fake, bot_process, 0)
    ann.say("/draw sks dog in Paris --n 2")
    job = await worker.claim("draw")
    await wait_reply(fake, ann.id, "Drawing")
    bot_process.kill()
    await worker.finish_draw(job)
    await started(fake, bot_process, 4)
    await wait_reply(fake, ann.id, "More like this", timeout=20)
    await fake.wait_idle(quiet=0.5)
    bot_process.kill()
    await started(fake, bot_process, 8)
    await fake.wait_idle(quiet=1.0, timeout=20)
    assert len(fake.calls_of("sendMediaGroup", ann.id)) == 1
    assert sum("More like this" in t for t in ann.replies()) == 1


async def test_a_restarted_bot_resumes_editing_the_same_progress_message(
    fake: FakeTelegram, store: Storage, ann: User, worker: StandInWorker, bot_process: BotProcess
) -> None:
    await started(fake, bot_process, 0)
    ann.album([photo_bytes(i) for i in range(3)])
    await wait_reply(fake, ann.id, "Saved 3")
    ann.say("/train dog")
    progress = await wait_reply(fake, ann.id, "Starting soon")
    progress_id = next(c.result["message_id"] for c in fake.calls_of("sendMessage", ann.id)
                       if c.params["text"] == progress)
    job = await worker.claim("train")
    await fake.wait_idle(quiet=0.5)
    bot_process.kill()
    await worker.progress(job, "training", 3, 10)
    await started(fake, bot_process, 4)
    await fake.wait_call("editMessageText", ann.id, where=lambda c: "3/10" in c.params["text"], timeout=20)
    await worker.finish_training(job, steps=2)
    await wait_reply(fake, ann.id, "Your model is ready", timeout=20)
    edits = fake.calls_of("editMessageText", ann.id)
    assert {c.params["message_id"] for c in edits} == {progress_id}
    assert sum("Starting soon" in t for t in ann.replies()) == 1
    assert len(fake.calls_of("sendMediaGroup", ann.id)) == 1
    assert fake.errors() == []


async def test_updates_handled_before_a_crash_are_not_handled_again(
    fake: FakeTelegram, store: Storage, settings: Settings, ann: User
) -> None:
    from tests.bot.conftest import FAST

    first = RunningBot(settings, FAST)
    await first.start()
    ann.album([photo_bytes(i) for i in range(3)])
    ann.say("/photos")
    await fake.wait_call("sendPhoto", ann.id)
    await wait_reply(fake, ann.id, "Saved 3")
    await first.stop()
    fake.redeliver_all()  # Telegram did not hear the last acknowledgement before the crash
    second = RunningBot(settings, FAST)
    await second.start()
    await fake.wait_idle(quiet=1.0)
    await second.stop()
    assert len(fake.calls_of("sendPhoto", ann.id)) == 1
    assert sum("Saved" in t for t in ann.replies()) == 1
    assert await store.photos.count(ann.id) == 3


async def test_a_bot_killed_between_queueing_a_drawing_and_marking_its_update_draws_it_once(
    fake: FakeTelegram, store: Storage, settings: Settings, ann: User, worker: StandInWorker
) -> None:
    from tests.bot.conftest import FAST

    await make_ready_model(store, ann.id)
    first = RunningBot(settings, FAST)
    await first.start()
    dying = asyncio.Event()

    async def killed_before_marking(update_id: int) -> None:
        dying.set()  # the process dies here: nothing after this point is written
        await asyncio.Event().wait()

    first.store.updates.mark = killed_before_marking  # type: ignore[method-assign]
    ann.say("/draw sks dog in Paris")
    await asyncio.wait_for(dying.wait(), 20)
    await first.stop()
    fake.redeliver_all()  # Telegram never heard that the update was handled
    second = RunningBot(settings, FAST)
    await second.start()
    try:
        job = await worker.claim("draw")
        await worker.finish_draw(job)
        await settled(store, job.id, timeout=20)
        await fake.wait_idle(quiet=1.0, timeout=20)
    finally:
        await second.stop()
    drawings = [e.job_id for e in await store.jobs.events_after(0) if e.kind == "queued"]
    assert drawings == [job.id]  # exactly one job
    assert len(fake.calls_of("sendPhoto", ann.id)) == 1  # and one result


async def test_too_many_requests_are_waited_out_and_nothing_is_lost(
    kabina, fake: FakeTelegram, store: Storage, ann: User, worker: StandInWorker
) -> None:
    await make_ready_model(store, ann.id)
    fake.fail_next("sendMessage", retry_after=1)
    ann.say("/help")
    await wait_reply(fake, ann.id, "Kabina")
    fake.fail_next("sendMediaGroup", retry_after=1, times=2)
    ann.say("/draw sks dog --n 2")
    job = await worker.claim("draw")
    await worker.finish_draw(job)
    await settled(store, job.id, timeout=20)
    assert len(fake.calls_of("sendMediaGroup", ann.id)) == 1
    assert [c.error for c in fake.errors()] == ["429 retry_after=1"] * 3


async def test_sigterm_stops_the_bot_cleanly(fake: FakeTelegram, ann: User, bot_process: BotProcess) -> None:
    await started(fake, bot_process, 0)
    ann.say("/start")
    await wait_reply(fake, ann.id, "Kabina", timeout=20)
    process = bot_process.process
    assert process is not None
    process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(process.wait, 15) == 0


async def test_a_bot_killed_inside_a_handler_handles_that_update_after_its_restart(
    fake: FakeTelegram, store: Storage, ann: User, bot_process: BotProcess
) -> None:
    await started(fake, bot_process, 0)
    download = fake.hold("download")
    ann.photo(photo_bytes(1))
    await asyncio.wait_for(download.arrived.wait(), 20)  # the handler is inside its effect: downloading the photo
    bot_process.kill()
    download.release(drop=True)
    await started(fake, bot_process, 4)
    await fake.wait_idle(quiet=0.5, timeout=20)  # the restarted bot has taken and acknowledged every update
    assert await store.photos.count(ann.id) == 1
    assert sum("Saved 1" in t for t in ann.replies()) == 1


async def test_a_bot_killed_in_the_middle_of_a_delivery_sends_the_rest_and_repeats_nothing(
    fake: FakeTelegram, store: Storage, ann: User, worker: StandInWorker, bot_process: BotProcess
) -> None:
    await make_ready_model(store, ann.id)
    await started(fake, bot_process, 0)
    ann.say("/draw sks dog in Paris --n 2")
    job = await worker.claim("draw")
    buttons = fake.hold("sendMessage", where=lambda c: "More like this" in str(c.params.get("text")))
    await worker.finish_draw(job)
    await asyncio.wait_for(buttons.arrived.wait(), 20)  # the album is out, the buttons message in flight
    bot_process.kill()
    buttons.release(drop=True)
    await started(fake, bot_process, 4)
    await settled(store, job.id, timeout=20)
    assert len(fake.calls_of("sendMediaGroup", ann.id)) == 1
    assert sum("More like this" in t for t in ann.replies()) == 1


async def test_a_bot_killed_in_the_middle_of_an_album_acknowledges_all_of_it_once_after_its_restart(
    fake: FakeTelegram, store: Storage, ann: User, bot_process: BotProcess
) -> None:
    await started(fake, bot_process, 0)
    # the third photo's download is in flight when the bot dies; the first two are saved
    third = fake.hold("download", where=lambda c: len(fake.calls_of("download")) >= 2)
    ann.album([photo_bytes(i) for i in range(3)])
    await asyncio.wait_for(third.arrived.wait(), 20)
    bot_process.kill()
    third.release(drop=True)
    await started(fake, bot_process, 4)
    summary = await wait_reply(fake, ann.id, "Saved", timeout=20)
    await fake.wait_idle(quiet=1.0, timeout=20)
    assert "Saved 3" in summary
    assert sum("Saved" in t for t in ann.replies()) == 1
    assert await store.photos.count(ann.id) == 3


async def test_a_bot_killed_before_it_acknowledged_an_album_sends_the_summary_after_its_restart(
    fake: FakeTelegram, store: Storage, ann: User, bot_process: BotProcess
) -> None:
    await started(fake, bot_process, 0)
    summary = fake.hold("sendMessage", where=lambda c: "Saved" in str(c.params.get("text")))
    ann.album([photo_bytes(i) for i in range(3)])
    await asyncio.wait_for(summary.arrived.wait(), 20)  # every photo saved, the summary on its way
    bot_process.kill()
    summary.release(drop=True)
    await started(fake, bot_process, 4)
    await fake.wait_idle(quiet=2.0, timeout=20)
    assert sum("Saved 3" in t for t in ann.replies()) == 1
    assert await store.photos.count(ann.id) == 3


async def test_a_result_the_bot_api_kept_refusing_is_delivered_by_the_next_start(
    fake: FakeTelegram, store: Storage, ann: User, worker: StandInWorker, bot_process: BotProcess
) -> None:
    await make_ready_model(store, ann.id)
    await started(fake, bot_process, 0)
    ann.say("/draw sks dog in Paris --n 2")
    job = await worker.claim("draw")
    await wait_reply(fake, ann.id, "Drawing")
    fake.fail_next_with("sendMediaGroup", 502, "Bad Gateway", times=1000)
    await worker.finish_draw(job)
    await fake.wait_for(lambda: sum(c.method == "sendMediaGroup" for c in fake.calls) >= 2, 20,
                        what="the bot to try twice")
    bot_process.kill()  # the delivery is left half-way ("sending")
    fake.clear_injected()
    await started(fake, bot_process, 4)
    await settled(store, job.id, timeout=30)
    await fake.wait_idle(quiet=0.5, timeout=20)
    assert len(fake.calls_of("sendMediaGroup", ann.id)) == 1
    assert sum("More like this" in t for t in ann.replies()) == 1
    assert (await store.deliveries.get(job.id, "result")).state == "sent"


async def test_two_bots_on_one_database_deliver_each_result_once_and_the_standby_takes_over(
    fake: FakeTelegram, store: Storage, settings: Settings, ann: User, worker: StandInWorker,
    bot_process: BotProcess,
) -> None:
    await make_ready_model(store, ann.id)
    await started(fake, bot_process, 0)
    standby = BotProcess(settings, name="standby")
    standby.start()
    try:
        await fake.wait_for(lambda: "waits as a standby" in standby.output(), 30, what="the second bot to stand by")
        ann.say("/draw sks dog in Paris --n 2")
        first = await worker.claim("draw")
        await worker.finish_draw(first)
        await settled(store, first.id, timeout=20)
        await fake.wait_idle(quiet=1.0, timeout=20)
        assert len(fake.calls_of("sendMediaGroup", ann.id)) == 1
        assert len(fake.calls_of("setMyCommands")) == 4  # only the leader set up (and polls)
        bot_process.kill()  # the leader dies; the standby sees its process is gone and takes over
        await fake.wait_call("setMyCommands", count=8, timeout=30)
        ann.say("/draw sks dog on the moon --n 2")
        second = await worker.claim("draw", timeout=20)
        await worker.finish_draw(second)
        await settled(store, second.id, timeout=20)
        await fake.wait_idle(quiet=1.0, timeout=20)
        assert len(fake.calls_of("sendMediaGroup", ann.id)) == 2
        assert sum("More like this" in t for t in ann.replies()) == 2
        assert "takes over" in standby.output()
    finally:
        standby.kill()
    assert "Traceback" not in standby.output()


async def test_an_update_slow_to_finish_is_kept_so_the_offset_moves_on_and_a_restart_still_handles_it(
    fake: FakeTelegram, store: Storage, ann: User, boris: User, bot_process: BotProcess
) -> None:
    await started(fake, bot_process, 0)
    download = fake.hold("download")
    ann.photo(photo_bytes(1))
    photo_update = fake.last_update_id()
    await asyncio.wait_for(download.arrived.wait(), 20)
    boris.say("/help")
    await wait_reply(fake, boris.id, "Кабина", timeout=20)
    # Telegram hands out at most 100 updates past the offset: a slow one must not hold it for long
    await fake.wait_for(lambda: fake.acknowledged_offset > photo_update, 20,
                        what="the offset to move past Ann's unfinished update")
    bot_process.kill()  # Telegram has forgotten Ann's photo: only the bot's own keeping has it now
    download.release(drop=True)
    await started(fake, bot_process, 4)
    await wait_reply(fake, ann.id, "Saved 1", timeout=20)
    await fake.wait_idle(quiet=1.0, timeout=20)
    assert sum("Saved" in t for t in ann.replies()) == 1
    assert await store.photos.count(ann.id) == 1
