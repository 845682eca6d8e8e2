"""One user never slows everyone: a flood of texts waits in its own lane, is cut short with one polite reply, and
other users are read and answered as before — under Telegram's flood control of about one message a second."""

from __future__ import annotations

import pytest

from bot.config import BotTuning, RateLimit
from storage import Storage
from tests.bot.conftest import FAST
from tests.fake_telegram import BOT_USERNAME, FakeTelegram
from tests.helpers import StandInWorker, User, make_ready_model, settled, wait_reply

SLOW_DOWN = "Slow down"
GROUP = FakeTelegram.group_chat(-100777, "Friends")
# The bot's own keep_after_s (FAST stretches it to 5 s to make the offset's wait visible elsewhere): a flooder's
# queued updates are taken into the database's keeping after a second, so the offset reaches the others' updates.
FLOOD = BotTuning(**{**FAST.__dict__, "keep_after_s": BotTuning.keep_after_s})
# Every text answered: the bound on one user's updates in flight alone keeps the others' answers prompt.
EVERY_TEXT_ANSWERED = BotTuning(**{**FLOOD.__dict__, "chatter_limit": RateLimit(10_000, 60.0)})


@pytest.fixture
def tuning(request: pytest.FixtureRequest) -> BotTuning:
    return getattr(request, "param", FLOOD)


@pytest.mark.parametrize("tuning", [EVERY_TEXT_ANSWERED], indirect=True)
async def test_one_users_backlog_never_fills_the_window_everyone_shares(
    kabina, fake: FakeTelegram, store: Storage, ann: User, boris: User
) -> None:
    fake.flood_per_chat = (1, 1.0)
    for i in range(250):
        ann.say(f"hello {i}")
    await fake.wait_for(lambda: len(ann.replies()) >= 1, what="Ann's first answer")
    boris.say("/help")
    await wait_reply(fake, boris.id, "/draw", timeout=20)
    assert len(ann.replies()) < 6
    # Ann's backlog waits in the database, in order, and is answered in turn.
    await fake.wait_for(lambda: len(ann.replies()) >= 12, what="more of Ann's answers", timeout=30)
    assert await store.updates.kept()


async def test_one_users_flood_of_texts_never_delays_another_users_help(
    kabina, fake: FakeTelegram, store: Storage, ann: User, boris: User
) -> None:
    fake.flood_per_chat = (1, 1.0)  # Telegram answers one chat about once a second
    for i in range(250):
        ann.say(f"hello {i}")
    await fake.wait_for(lambda: len(ann.replies()) >= 1, what="Ann's first answer")
    boris.say("/help")
    await wait_reply(fake, boris.id, "/draw", timeout=20)
    # Boris was answered while Ann's own backlog was still being worked through, one reply a second.
    assert len(ann.replies()) < 6


async def test_a_flood_of_plain_texts_gets_one_polite_reply(
    kabina, fake: FakeTelegram, store: Storage, ann: User
) -> None:
    for i in range(40):
        ann.say(f"are you there {i}?")
    await wait_reply(fake, ann.id, SLOW_DOWN)
    await fake.wait_idle(quiet=0.5)
    assert sum(SLOW_DOWN in t for t in ann.replies()) == 1
    assert len(ann.replies()) == 21  # the first twenty answered, then one word, then silence


async def test_group_command_spam_gets_one_polite_reply(
    kabina, fake: FakeTelegram, store: Storage, cleo: User
) -> None:
    for _ in range(40):
        cleo.say(f"/help@{BOT_USERNAME}", chat=GROUP)
    await wait_reply(fake, GROUP["id"], SLOW_DOWN)
    await fake.wait_idle(quiet=0.5)
    said = fake.texts(GROUP["id"])
    assert sum(SLOW_DOWN in t for t in said) == 1 and len(said) == 21


async def test_the_png_button_is_limited_like_the_other_buttons(
    kabina, fake: FakeTelegram, store: Storage, ann: User, worker: StandInWorker
) -> None:
    await make_ready_model(store, ann.id)
    ann.say("/draw sks dog on the beach")
    job = await worker.claim("draw")
    await worker.finish_draw(job)
    await settled(store, job.id)
    (photo,) = await fake.wait_call("sendPhoto", ann.id)
    png = next(b["callback_data"] for row in photo.params["reply_markup"]["inline_keyboard"] for b in row
               if "PNG" in b["text"])
    message = fake.messages[(ann.id, photo.result["message_id"])]
    for _ in range(8):
        fake.press_button(ann.data, message, png)
    answers = await fake.wait_call("answerCallbackQuery", count=8, timeout=20)
    await fake.wait_idle(quiet=0.5)
    assert len(fake.calls_of("sendDocument", ann.id)) == 3
    assert sum(SLOW_DOWN in (a.params.get("text") or "") for a in answers) == 5
