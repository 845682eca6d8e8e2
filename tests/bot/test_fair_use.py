"""Bounded, fair work: a few pending drawings per user whatever the path (command, caption, button), one polite
reply per burst, users taking turns at the GPU, and honest training caps."""

from __future__ import annotations

import pytest

from bot.config import BotTuning, RateLimit
from storage import Storage
from tests.bot.conftest import FAST
from tests.fake_telegram import FakeTelegram
from tests.helpers import StandInWorker, User, eventually, make_ready_model, photo_bytes, settled, wait_reply

TOO_MANY = "You already have 3 drawings waiting"


@pytest.fixture
def tuning() -> BotTuning:
    """No message rate limit to speak of here: the pending-work limit alone is under test."""
    return BotTuning(**{**FAST.__dict__, "draw_limit": RateLimit(1000, 60.0)})


async def _pending_draws(store: Storage, user: User) -> int:
    return len(await store.jobs.active_for_owner(user.id, "draw"))


async def test_a_flood_of_draw_commands_queues_at_most_the_limit_with_one_polite_reply(
    kabina, fake: FakeTelegram, store: Storage, ann: User
) -> None:
    await make_ready_model(store, ann.id)
    for i in range(12):
        ann.say(f"/draw sks dog number {i} --n 4 --steps 100")
    await wait_reply(fake, ann.id, TOO_MANY)
    await fake.wait_idle(quiet=0.4)
    assert await _pending_draws(store, ann) == 3
    assert sum(TOO_MANY in text for text in ann.replies()) == 1


async def test_draws_in_captions_go_through_the_same_limit(
    kabina, fake: FakeTelegram, store: Storage, ann: User
) -> None:
    await make_ready_model(store, ann.id)
    for i in range(12):
        fake.send_video(ann.data, caption=f"/draw sks dog in video {i}")
    await wait_reply(fake, ann.id, TOO_MANY)
    await fake.wait_idle(quiet=0.4)
    assert await _pending_draws(store, ann) == 3
    assert sum(TOO_MANY in text for text in ann.replies()) == 1


async def test_a_flood_of_again_presses_queues_at_most_the_limit(
    kabina, fake: FakeTelegram, store: Storage, ann: User, worker: StandInWorker
) -> None:
    await make_ready_model(store, ann.id)
    ann.say("/draw sks dog on the beach")
    job = await worker.claim("draw")
    await worker.finish_draw(job)
    (photo,) = await fake.wait_call("sendPhoto", ann.id)
    again = photo.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    message = fake.messages[(ann.id, photo.result["message_id"])]
    for _ in range(40):
        fake.press_button(ann.data, message, again)
    answers = await fake.wait_call("answerCallbackQuery", count=40, timeout=20)
    assert await _pending_draws(store, ann) == 3
    assert sum(TOO_MANY in (a.params.get("text") or "") for a in answers) == 37
    assert sum(TOO_MANY in text for text in ann.replies()) == 0  # alerts only: the chat is not flooded


async def test_one_users_backlog_delays_anothers_drawing_by_at_most_one_job(
    kabina, fake: FakeTelegram, store: Storage, ann: User, boris: User, worker: StandInWorker
) -> None:
    await make_ready_model(store, ann.id)
    await make_ready_model(store, boris.id, class_word="cat")
    for i in range(10):
        ann.say(f"/draw sks dog flood {i} --n 4")
    await eventually(lambda: _pending_draws(store, ann), what="Ann's flood to be queued")
    await wait_reply(fake, ann.id, TOO_MANY)
    first = await worker.claim("draw")  # the GPU is busy with one of Ann's drawings
    assert first.owner_id == ann.id
    boris.say("/draw sks cat in a hat")
    assert "Рисую" in await wait_reply(fake, boris.id, "🎨")  # told it is next, not "3 jobs ahead"
    await worker.finish_draw(first)
    order = [first.owner_id]
    for _ in range(3):
        job = await worker.claim("draw")
        order.append(job.owner_id)
        await worker.finish_draw(job)
        await settled(store, job.id)
    assert order == [ann.id, boris.id, ann.id, ann.id]
    (boris_result,) = fake.calls_of("sendPhoto", boris.id)
    ann_results = fake.calls_of("sendMediaGroup", ann.id)
    assert len(ann_results) == 3 and boris_result.at < ann_results[1].at


async def _photos(fake: FakeTelegram, user: User, n: int = 3) -> None:
    user.album([photo_bytes(user.id * 10 + i) for i in range(n)])
    await wait_reply(fake, user.id, f"Saved {n}")


async def test_cancelled_trainings_count_against_the_daily_cap(
    kabina, fake: FakeTelegram, store: Storage, ann: User, worker: StandInWorker
) -> None:
    await _photos(fake, ann)
    for attempt in range(2):  # the test settings allow two a day
        ann.say("/train dog")
        job = await worker.claim("train")
        await worker.progress(job, "training", 8, 10)  # it ran to 80 %
        ann.say("/cancel")
        await fake.wait_for(lambda n=attempt + 1: sum("Cancelled 1 job" in t for t in ann.replies()) == n,
                            what="the cancel reply")
        await eventually(lambda j=job: _cancel_asked(store, j.id), what="the cancel to reach the job")
        await store.lifecycle.cancelled(job.id, worker.worker_id)
        await settled(store, job.id)
    before = len(ann.replies())
    ann.say("/train dog")
    replies = await fake.wait_for(lambda: ann.replies()[before:], what="the answer to a third /train")
    assert "started 2 trainings today" in replies[0]
    assert await store.jobs.active_for_owner(ann.id) == []


async def _cancel_asked(store: Storage, job_id: int) -> bool:
    return (await store.jobs.get(job_id)).cancel_requested


async def test_engine_failures_do_not_count_against_the_daily_cap(
    kabina, fake: FakeTelegram, store: Storage, ann: User, worker: StandInWorker
) -> None:
    await _photos(fake, ann)
    for _ in range(2):
        ann.say("/train dog")
        job = await worker.claim("train")
        await store.lifecycle.fail(job.id, worker.worker_id, "the GPU ran out of memory")
        await settled(store, job.id)
    before = len(ann.replies())
    ann.say("/train dog")
    (answer, *_) = await fake.wait_for(lambda: ann.replies()[before:], what="the answer to a third /train")
    assert "Training «dog»" in answer


async def test_invented_class_words_are_limited_and_common_ones_are_not(
    kabina, fake: FakeTelegram, store: Storage, ann: User
) -> None:
    await _photos(fake, ann)
    for word in ("xq", "zzyzx"):  # two words of one's own are allowed, once each
        ann.say(f"/train {word}")
        await wait_reply(fake, ann.id, f"Training «{word}»")
        await _cancel(fake, store, ann)
    before = len(ann.replies())
    ann.say("/train blorp")
    (refusal, *_) = await fake.wait_for(lambda: ann.replies()[before:], what="the answer to /train blorp")
    assert "not one of the common class words" in refusal and "xq, zzyzx" in refusal
    assert await store.jobs.active_for_owner(ann.id) == []
    ann.say("/train zzyzx")  # one's own word again costs nothing new
    await wait_reply(fake, ann.id, "Training «zzyzx»")
    await _cancel(fake, store, ann)
    ann.say("/train Dogs")  # a common word, as people type it
    await wait_reply(fake, ann.id, "Training «dog»")


async def test_forgetting_does_not_give_back_the_allowance_of_invented_class_words(
    kabina, fake: FakeTelegram, store: Storage, ann: User
) -> None:
    await _photos(fake, ann)
    for word in ("xq", "zzyzx"):
        ann.say(f"/train {word}")
        await wait_reply(fake, ann.id, f"Training «{word}»")
        await _cancel(fake, store, ann)
    await store.lifecycle.forget_user(ann.id)  # /forgetme: models, photos and rows go
    await store.admin.reset_allowance(ann.id)  # (the daily cap is not what is under test here)
    await _photos(fake, ann)
    before = len(ann.replies())
    ann.say("/train blorp")
    (refusal, *_) = await fake.wait_for(lambda: ann.replies()[before:], what="the answer to /train blorp")
    assert "not one of the common class words" in refusal
    assert "xq" not in refusal and "zzyzx" not in refusal  # only hashes of the forgotten words are kept
    assert await store.jobs.active_for_owner(ann.id) == []
    ann.say("/train xq")  # a word already counted costs nothing new
    await wait_reply(fake, ann.id, "Training «xq»")


async def _cancel(fake: FakeTelegram, store: Storage, user: User) -> None:
    """/cancel, and wait for its answer too: a later reply counted from here must not be that answer."""
    answered = sum("Cancelled" in text for text in user.replies())
    user.say("/cancel")
    await fake.wait_for(lambda: sum("Cancelled" in text for text in user.replies()) > answered,
                        what="the answer to /cancel")
    await eventually(lambda: _idle(store, user), what="the training to be cancelled")


async def _idle(store: Storage, user: User) -> bool:
    return not await store.jobs.active_for_owner(user.id)
