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
