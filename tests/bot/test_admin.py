"""Admin commands through the real bot: /stats, /ban and /unban, /resetlimit — and a polite no for everyone else."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage import EngineInfo, JobStatus, Settings, Storage, load_settings
from tests.fake_telegram import FakeTelegram
from tests.helpers import StandInWorker, User, eventually, make_ready_model, photo_bytes, settled, wait_reply

ADMIN = 1003  # cleo


@pytest.fixture
def settings(fake: FakeTelegram, data_dir: Path) -> Settings:
    return load_settings(
        bot_token=fake.token, telegram_api_url=fake.base_url, data_dir=data_dir, min_photos=3, max_photos=6,
        daily_trainings=1, draw_steps=4, admin_ids=str(ADMIN),
    )


async def test_admin_commands_are_refused_politely_to_everyone_else(
    kabina, fake: FakeTelegram, store: Storage, ann: User, boris: User
) -> None:
    for command in ("/stats", "/ban 1002", "/unban 1002", "/resetlimit 1002"):
        before = len(ann.replies())
        ann.say(command)
        replies = await fake.wait_for(lambda b=before: ann.replies()[b:], what=f"the answer to {command}")
        assert replies == ["This command is for the bot's operators only."]
    assert not await store.admin.is_banned(boris.id)
    boris.say("/stats")
    assert "только для операторов" in await wait_reply(fake, boris.id, "операторов")


async def test_stats_show_users_the_queue_engines_and_disk(
    kabina, fake: FakeTelegram, store: Storage, ann: User, cleo: User
) -> None:
    await make_ready_model(store, ann.id)
    ann.say("/draw sks dog in Paris")
    await eventually(lambda: store.jobs.active_for_owner(ann.id, "draw"), what="the drawing to be queued")
    await store.engines.publish("gpu-host:7", EngineInfo(family="sdxl", title="Stable Diffusion XL"))
    await store.admin.engine_alive("gpu-host:7")
    cleo.say("/stats")
    text = await wait_reply(fake, cleo.id, "Kabina now")
    assert "Users: 2 (banned: 0)" in text  # ann and cleo
    assert "draw: 1 · 0 · " in text and "Today (UTC): 0 trainings, 1 drawings" in text
    assert "gpu-host:7: Stable Diffusion XL (sdxl)" in text and "idle" in text
    assert "Disk: database" in text and " MB" in text


async def test_a_banned_user_is_told_once_then_ignored_and_their_queued_work_cancelled(
    kabina, fake: FakeTelegram, store: Storage, ann: User, cleo: User
) -> None:
    await make_ready_model(store, ann.id)
    ann.say("/draw sks dog in Paris")
    (job,) = await eventually(lambda: store.jobs.active_for_owner(ann.id, "draw"), what="the drawing to queue")
    cleo.say("/ban @ann")
    assert "Cancelled 1 of their jobs" in await wait_reply(fake, cleo.id, f"User {ann.id} is banned")
    assert (await store.jobs.get(job.id)).status == JobStatus.CANCELLED
    before = len(ann.replies())
    for text in ("/help", "/draw sks dog on the moon", "/help"):
        ann.say(text)
    await fake.wait_for(lambda: ann.replies()[before:], what="the one notice")
    cleo.say("/stats")  # a round trip through the bot: ann's three updates were handled before it
    await wait_reply(fake, cleo.id, "banned: 1")
    # the outbox may still tell them their drawing was cancelled; nothing they send is answered but once
    answered = [r for r in ann.replies()[before:] if "cancelled" not in r]
    assert answered == ["Sorry, this bot no longer serves you."]
    assert await store.jobs.active_for_owner(ann.id) == []

    cleo.say(f"/unban {ann.id}")
    await wait_reply(fake, cleo.id, "may use the bot again")
    ann.say("/help")
    await wait_reply(fake, ann.id, "Kabina")


async def test_an_admin_cannot_be_banned_and_an_unknown_name_is_said(
    kabina, fake: FakeTelegram, store: Storage, cleo: User
) -> None:
    cleo.say(f"/ban {ADMIN}")
    await wait_reply(fake, cleo.id, "Admins cannot be banned")
    cleo.say("/ban @nobody_here")
    await wait_reply(fake, cleo.id, "I know no user @nobody_here")
    cleo.say("/ban")
    await wait_reply(fake, cleo.id, "/ban 12345")
    assert not await store.admin.is_banned(ADMIN)


async def test_resetting_the_allowance_lets_a_user_train_again_today(
    kabina, fake: FakeTelegram, store: Storage, ann: User, cleo: User, worker: StandInWorker
) -> None:
    ann.album([photo_bytes(ann.id * 10 + i) for i in range(3)])
    await wait_reply(fake, ann.id, "Saved 3")
    ann.say("/train dog")
    job = await worker.claim("train")
    await worker.finish_training(job)
    await settled(store, job.id)
    ann.say("/train dog")
    await wait_reply(fake, ann.id, "started 1 training today")
    cleo.say(f"/resetlimit {ann.id}")
    await wait_reply(fake, cleo.id, "may start 1 more training today")
    ann.say("/train cat")
    await eventually(lambda: store.jobs.active_for_owner(ann.id, "train"), what="a new training to be queued")


async def test_an_admin_gets_the_admin_commands_in_their_menu_and_others_do_not(
    kabina, fake: FakeTelegram, cleo: User
) -> None:
    (menu,) = await fake.wait_call("setMyCommands", where=lambda c: c.params.get("scope", {}).get("type") == "chat")
    assert menu.params["scope"]["chat_id"] == ADMIN
    names = [c["command"] for c in menu.params["commands"]]
    assert {"stats", "ban", "unban", "resetlimit", "start", "draw"} <= set(names)
    for call in fake.calls_of("setMyCommands"):
        if call.params.get("scope", {}).get("type") != "chat":
            assert "stats" not in [c["command"] for c in call.params["commands"]]
