"""Revoking holds: /unshare, "Stop in group", "Revoke links", the owner leaving and deleting the model stop the
queued and running drawings made through that access, and nothing drawn through it reaches those who lost it."""

from __future__ import annotations

from storage import Storage
from tests.fake_telegram import BOT_USERNAME, FakeTelegram
from tests.helpers import StandInWorker, User, make_ready_model, settled, wait_reply

GROUP = FakeTelegram.group_chat(-100777, "Friends")
PICTURES = ("sendPhoto", "sendMediaGroup")


def _pictures(fake: FakeTelegram, chat_id: int) -> list:
    return [c for c in fake.calls if c.method in PICTURES and c.chat_id == chat_id and c.error is None]


async def _press(fake: FakeTelegram, user: User, sent_text: str, button: str) -> None:
    call = next(c for c in reversed(fake.calls_of("sendMessage", user.id)) if sent_text in c.params["text"])
    message = fake.messages[(user.id, call.result["message_id"])]
    markup = message.reply_markup or call.params["reply_markup"]
    data = next(b["callback_data"] for row in markup["inline_keyboard"] for b in row if button in b["text"])
    fake.press_button(user.data, message, data)


async def _two_group_drawings(fake: FakeTelegram, store: Storage, ann: User, cleo: User, worker: StandInWorker):
    """Ann's model shared in the group; Cleo asks twice: one drawing running on the engine, one queued."""
    model = await make_ready_model(store, ann.id)
    ann.say(f"/share@{BOT_USERNAME}", chat=GROUP)
    await wait_reply(fake, GROUP["id"], "now shared")
    cleo.say(f"/draw@{BOT_USERNAME} sks dog in Paris", chat=GROUP)
    running = await worker.claim("draw")
    cleo.say(f"/draw@{BOT_USERNAME} sks dog in Rome", chat=GROUP)
    await fake.wait_for(lambda: len(fake.texts(GROUP["id"])) >= 3, what="both drawings acknowledged")
    (queued,) = [j for j in await store.jobs.active_for_owner(cleo.id) if j.id != running.id]
    return model, running, queued


async def test_unshare_stops_the_queued_and_running_drawings_made_through_the_share(
    kabina, fake: FakeTelegram, store: Storage, ann: User, cleo: User, worker: StandInWorker
) -> None:
    _, running, queued = await _two_group_drawings(fake, store, ann, cleo, worker)
    ann.say(f"/unshare@{BOT_USERNAME}", chat=GROUP)
    await wait_reply(fake, GROUP["id"], "Stopped sharing")
    assert (await store.jobs.get(queued.id)).status == "cancelled"
    assert (await store.jobs.get(running.id)).cancel_requested
    await worker.finish_draw(running)  # the engine finishes before it notices: its pictures are not posted
    await settled(store, running.id)
    await fake.wait_idle(quiet=0.4)
    assert _pictures(fake, GROUP["id"]) == []
    assert (await store.jobs.get(running.id)).status == "cancelled"


async def test_stop_in_group_from_the_private_chat_stops_the_drawings_made_there(
    kabina, fake: FakeTelegram, store: Storage, ann: User, cleo: User, worker: StandInWorker
) -> None:
    _, running, queued = await _two_group_drawings(fake, store, ann, cleo, worker)
    ann.say("/models")
    await wait_reply(fake, ann.id, "shared in")
    await _press(fake, ann, "shared in", "Stop in Friends")
    await wait_reply(fake, ann.id, "no longer shared in «Friends»")
    assert (await store.jobs.get(queued.id)).status == "cancelled"
    await worker.finish_draw(running)
    await settled(store, running.id)
    await fake.wait_idle(quiet=0.4)
    assert _pictures(fake, GROUP["id"]) == []


async def test_revoked_links_stop_the_drawings_of_those_who_came_through_them(
    kabina, fake: FakeTelegram, store: Storage, ann: User, cleo: User, worker: StandInWorker
) -> None:
    model = await make_ready_model(store, ann.id)
    cleo.say(f"/start m_{await store.shares.create_link(model.id)}")
    await wait_reply(fake, cleo.id, "shared «dog» with you")
    cleo.say("/draw sks dog in Rome")
    running = await worker.claim("draw")
    cleo.say("/draw sks dog in Oslo")
    await fake.wait_for(lambda: len(fake.texts(cleo.id)) >= 3, what="both drawings acknowledged")
    ann.say("/models")
    await wait_reply(fake, ann.id, "open link")
    await _press(fake, ann, "open link", "Revoke links")
    await wait_reply(fake, ann.id, "the 1 person who had opened one")
    assert [j.id for j in await store.jobs.active_for_owner(cleo.id)] == [running.id]
    await worker.finish_draw(running)
    await settled(store, running.id)
    await fake.wait_idle(quiet=0.4)
    assert _pictures(fake, cleo.id) == []


async def test_a_drawing_finished_after_its_access_ended_is_not_delivered(
    kabina, fake: FakeTelegram, store: Storage, ann: User, cleo: User, worker: StandInWorker
) -> None:
    """Whatever ended the access (here the share row is gone without a cancel reaching the job), the delivery
    itself checks that the one who asked may still draw with the model there."""
    model = await make_ready_model(store, ann.id)
    await store.shares.share(model.id, GROUP["id"], ann.id)
    cleo.say(f"/draw@{BOT_USERNAME} sks dog in Paris", chat=GROUP)
    job = await worker.claim("draw")
    await store.db.execute("DELETE FROM shares WHERE model_id = ?", (model.id,))
    await worker.finish_draw(job)
    await wait_reply(fake, GROUP["id"], "not delivered")
    assert _pictures(fake, GROUP["id"]) == []


async def test_a_drawing_running_when_its_model_is_deleted_is_not_delivered(
    kabina, fake: FakeTelegram, store: Storage, ann: User, worker: StandInWorker
) -> None:
    model = await make_ready_model(store, ann.id)
    ann.say("/draw sks dog on the moon")
    job = await worker.claim("draw")
    await store.lifecycle.delete_model(model.id)
    await worker.finish_draw(job)
    await settled(store, job.id)
    await fake.wait_idle(quiet=0.4)
    assert _pictures(fake, ann.id) == []
    assert (await store.jobs.get(job.id)).status == "cancelled"
    assert await store.blobs.list(f"jobs/{job.id}") == []


async def test_a_share_ends_when_its_owner_leaves_the_group(
    kabina, fake: FakeTelegram, store: Storage, ann: User, cleo: User, worker: StandInWorker
) -> None:
    _, running, queued = await _two_group_drawings(fake, store, ann, cleo, worker)
    fake.push_update({"message": fake._message(ann.data, GROUP, left_chat_member=ann.data)})
    await wait_reply(fake, GROUP["id"], "owner left")
    assert await store.shares.models_in_chat(GROUP["id"]) == []
    assert (await store.jobs.get(queued.id)).status == "cancelled"
    cleo.say(f"/draw@{BOT_USERNAME} sks dog", chat=GROUP)
    await wait_reply(fake, GROUP["id"], "No model is shared")
