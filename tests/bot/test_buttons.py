"""Inline buttons do only what the person pressing them may do, where they press them: callback data is chosen by
the client, so every handler is pressed here with forged data from another user and from another chat."""

from __future__ import annotations

import pytest

from bot.keyboards import DrawAction, ModelAction
from storage import Storage
from tests.fake_telegram import FakeTelegram
from tests.helpers import StandInWorker, User, make_ready_model, settled

GROUP = FakeTelegram.group_chat(-100555, "Neighbours")
UNAVAILABLE = "This button does not work here. Send the command again."


def _press(fake: FakeTelegram, user: User, chat_id: int, data: str) -> None:
    """A button press arriving from `user` under some message of the bot in chat `chat_id`."""
    fake.press_button(user.data, {"chat": {"id": chat_id}, "message_id": 1, "text": ""}, data)


def _said_in(fake: FakeTelegram, chat_id: int) -> str:
    """Everything the bot sent or uploaded to the chat, as one text (captions and file names included)."""
    return " ".join(str(c.params) for c in fake.calls if c.chat_id == chat_id and c.method != "sendChatAction")


async def _private_drawing(store: Storage, fake: FakeTelegram, ann: User, worker: StandInWorker) -> int:
    """Ann's model is shared in the group, and Ann draws privately with a prompt that must stay private."""
    model = await make_ready_model(store, ann.id)
    await store.chats.upsert(GROUP["id"], type="supergroup", title=GROUP["title"])
    await store.shares.share(model.id, GROUP["id"], ann.id)
    ann.say("/draw sks dog at 221B Baker Street, door code 4471")
    job = await worker.claim("draw")
    await worker.finish_draw(job)
    await settled(store, job.id)
    return job.id


async def _answers(fake: FakeTelegram, count: int) -> list[str]:
    return [a.params.get("text") for a in await fake.wait_call("answerCallbackQuery", count=count)]


async def test_a_forged_again_button_for_someone_elses_drawing_is_refused(
    kabina, fake: FakeTelegram, store: Storage, ann: User, cleo: User, worker: StandInWorker
) -> None:
    job_id = await _private_drawing(store, fake, ann, worker)
    for action in ("again", "vary", "png"):
        _press(fake, cleo, cleo.id, DrawAction(action=action, job_id=job_id, index=0).pack())
    assert await _answers(fake, 3) == [UNAVAILABLE] * 3
    assert await store.jobs.active_for_owner(cleo.id) == []
    assert "Baker" not in _said_in(fake, cleo.id)


async def test_a_private_drawing_cannot_be_replayed_into_a_group_where_its_model_is_shared(
    kabina, fake: FakeTelegram, store: Storage, ann: User, cleo: User, worker: StandInWorker
) -> None:
    job_id = await _private_drawing(store, fake, ann, worker)
    # Cleo in the group, and Ann herself there (her own prompt must not leave her private chat by a forged press).
    for user in (cleo, ann):
        for action in ("again", "vary", "png"):
            _press(fake, user, GROUP["id"], DrawAction(action=action, job_id=job_id, index=0).pack())
    assert await _answers(fake, 6) == [UNAVAILABLE] * 6
    await fake.wait_idle(quiet=0.3)
    assert [j for j in await store.jobs.active_for_owner(cleo.id)] == []
    assert [j for j in await store.jobs.active_for_owner(ann.id)] == []
    assert "Baker" not in _said_in(fake, GROUP["id"])


async def test_refusals_say_the_same_whatever_the_job_so_ids_reveal_nothing(
    kabina, fake: FakeTelegram, store: Storage, ann: User, cleo: User, worker: StandInWorker
) -> None:
    job_id = await _private_drawing(store, fake, ann, worker)
    for forged in (job_id, job_id + 1000, 1):  # another's drawing, no drawing at all, some other job
        _press(fake, cleo, GROUP["id"], DrawAction(action="again", job_id=forged).pack())
    assert len(set(await _answers(fake, 3))) == 1


async def test_again_in_a_group_stops_working_when_the_model_is_no_longer_shared_there(
    kabina, fake: FakeTelegram, store: Storage, ann: User, cleo: User, worker: StandInWorker
) -> None:
    model = await make_ready_model(store, ann.id)
    await store.shares.share(model.id, GROUP["id"], ann.id)
    cleo.say("/draw@kabina_test_bot sks dog in the park", chat=GROUP)
    job = await worker.claim("draw")
    await worker.finish_draw(job)
    await settled(store, job.id)
    await store.lifecycle.end_share(model.id, GROUP["id"])
    _press(fake, cleo, GROUP["id"], DrawAction(action="again", job_id=job.id).pack())
    assert await _answers(fake, 1) == [UNAVAILABLE]
    assert await store.jobs.active_for_owner(cleo.id) == []


def _model_buttons(model_id: int) -> list[str]:
    return [ModelAction(action=a, model_id=model_id).pack()
            for a in ("default", "link", "revoke", "export", "delete", "keep", "confirm")]


@pytest.mark.parametrize("who", ["another user in their own chat", "the owner in a group"])
@pytest.mark.parametrize("button", range(10))
async def test_model_share_page_and_forget_buttons_act_only_for_the_owner_in_the_private_chat(
    kabina, fake: FakeTelegram, store: Storage, ann: User, cleo: User, who: str, button: int
) -> None:
    from bot.keyboards import ForgetAction, ModelsPage, ShareAction

    model = await make_ready_model(store, ann.id)
    await store.chats.upsert(GROUP["id"], type="supergroup", title=GROUP["title"])
    await store.shares.share(model.id, GROUP["id"], ann.id)
    code = await store.shares.create_link(model.id)
    buttons = [*_model_buttons(model.id), ShareAction(model_id=model.id, chat_id=GROUP["id"]).pack(),
               ModelsPage(page=0).pack(), ForgetAction(action="confirm").pack()]
    presser, chat_id = (cleo, cleo.id) if who.startswith("another") else (ann, GROUP["id"])
    if buttons[button].startswith(("models:", "forget:")) and presser is cleo:
        presser, chat_id = cleo, GROUP["id"]  # these act on the presser's own data: forging means another chat
    _press(fake, presser, chat_id, buttons[button])
    (answer,) = await _answers(fake, 1)
    assert answer == "That is not yours to use."
    await fake.wait_idle(quiet=0.3)
    after = await store.models.get(model.id)
    assert after.status == "ready" and (await store.users.get(ann.id)).default_model_id is None
    assert [c.id for c in await store.shares.groups_of(model.id)] == [GROUP["id"]]
    assert await store.shares.link_stats(model.id) == (1, 0) and await store.shares.redeem_link(code, 4242)
    assert [c for c in fake.calls if c.method.startswith(("send", "edit")) and c.chat_id in {chat_id, GROUP["id"]}
            and c.method != "sendChatAction"] == []
