"""Models and sharing: /models buttons, group /share /unshare /draw@bot, clashing identifiers, share links."""

from __future__ import annotations

from storage import Storage
from tests.fake_telegram import BOT_USERNAME, FakeTelegram
from tests.helpers import StandInWorker, User, make_ready_model, wait_reply

GROUP = FakeTelegram.group_chat(-100777, "Friends")


async def _press(fake: FakeTelegram, user: User, sent_text: str, button: str) -> None:
    """Presses the button labelled `button` under the bot's message that contains `sent_text`."""
    call = next(c for c in reversed(fake.calls_of("sendMessage", user.id)) if sent_text in c.params["text"])
    message = fake.messages[(user.id, call.result["message_id"])]
    markup = message.reply_markup or call.params["reply_markup"]
    data = next(b["callback_data"] for row in markup["inline_keyboard"] for b in row if button in b["text"])
    fake.press_button(user.data, message, data)


async def test_models_lists_each_model_with_its_buttons(
    kabina, fake: FakeTelegram, store: Storage, ann: User
) -> None:
    await make_ready_model(store, ann.id)
    ann.say("/models")
    card = await wait_reply(fake, ann.id, "<code>sks</code>")
    assert "dog" in card and "ready" in card
    call = next(c for c in fake.calls_of("sendMessage", ann.id) if c.params["text"] == card)
    labels = [b["text"] for row in call.params["reply_markup"]["inline_keyboard"] for b in row]
    assert labels == ["⭐ Default", "🔗 Share link", "📦 Export LoRA", "🗑 Delete"]


async def test_export_sends_the_lora_file(kabina, fake: FakeTelegram, store: Storage, ann: User) -> None:
    model = await make_ready_model(store, ann.id)
    ann.say("/models")
    await wait_reply(fake, ann.id, "<code>sks</code>")
    await _press(fake, ann, "<code>sks</code>", "Export")
    (document,) = await fake.wait_call("sendDocument", ann.id)
    assert list(document.files.values()) == [b"weights-of-model-%d" % model.id]


async def test_delete_asks_for_confirmation_first(kabina, fake: FakeTelegram, store: Storage, ann: User) -> None:
    model = await make_ready_model(store, ann.id)
    ann.say("/models")
    await wait_reply(fake, ann.id, "<code>sks</code>")
    await _press(fake, ann, "<code>sks</code>", "Delete")
    await fake.wait_call("editMessageReplyMarkup", ann.id)
    assert (await store.models.get(model.id)).status == "ready"
    await _press(fake, ann, "<code>sks</code>", "Yes, delete")
    await fake.wait_for(lambda: any("deleted" in (c.params.get("text") or "")
                                    for c in fake.calls_of("editMessageText", ann.id)), what="deleted")
    assert (await store.models.get(model.id)).status == "deleted"


async def test_someone_else_cannot_press_my_model_buttons(
    kabina, fake: FakeTelegram, store: Storage, ann: User, cleo: User
) -> None:
    model = await make_ready_model(store, ann.id)
    ann.say("/models")
    await wait_reply(fake, ann.id, "<code>sks</code>")
    call = next(c for c in fake.calls_of("sendMessage", ann.id) if "<code>sks</code>" in c.params["text"])
    delete = call.params["reply_markup"]["inline_keyboard"][1][1]["callback_data"]
    confirm = delete.replace("delete", "confirm")
    fake.press_button(cleo.data, fake.messages[(ann.id, call.result["message_id"])], confirm)
    (answer,) = await fake.wait_call("answerCallbackQuery")
    assert "not yours" in answer.params["text"]
    assert (await store.models.get(model.id)).status == "ready"


async def test_group_share_draw_and_unshare(
    kabina, fake: FakeTelegram, store: Storage, ann: User, cleo: User, worker: StandInWorker
) -> None:
    model = await make_ready_model(store, ann.id)
    cleo.say(f"/draw@{BOT_USERNAME} sks dog in Paris", chat=GROUP)
    await wait_reply(fake, GROUP["id"], "No model is shared")
    ann.say(f"/share@{BOT_USERNAME}", chat=GROUP)
    shared = await wait_reply(fake, GROUP["id"], "now shared")
    assert f"/draw@{BOT_USERNAME} sks dog" in shared
    request = cleo.say(f"/draw@{BOT_USERNAME} sks dog in Paris --n 2", chat=GROUP)
    job = await worker.claim("draw")
    assert job.model_id == model.id and job.chat_id == GROUP["id"] and job.owner_id == cleo.id
    await worker.finish_draw(job)
    (album,) = await fake.wait_call("sendMediaGroup", GROUP["id"])
    assert album.params["reply_parameters"]["message_id"] == request["message_id"]
    cleo.say(f"/unshare@{BOT_USERNAME} sks", chat=GROUP)
    await wait_reply(fake, GROUP["id"], "Only the model's owner")
    ann.say(f"/unshare@{BOT_USERNAME}", chat=GROUP)
    await wait_reply(fake, GROUP["id"], "Stopped sharing")
    cleo.say(f"/draw@{BOT_USERNAME} sks dog again", chat=GROUP)
    await fake.wait_for(lambda: sum("No model is shared" in t for t in fake.texts(GROUP["id"])) == 2,
                        what="a second refusal")
    assert await store.jobs.active_for_owner(cleo.id) == []


async def test_my_own_model_is_not_usable_in_a_group_until_shared(
    kabina, fake: FakeTelegram, store: Storage, ann: User
) -> None:
    await make_ready_model(store, ann.id)
    ann.say(f"/draw@{BOT_USERNAME} sks dog", chat=GROUP)
    await wait_reply(fake, GROUP["id"], "No model is shared")


async def test_two_shared_models_with_one_identifier_are_never_ambiguous(
    kabina, fake: FakeTelegram, store: Storage, ann: User, boris: User, worker: StandInWorker
) -> None:
    dog = await make_ready_model(store, ann.id, token="sks", class_word="dog")
    cat = await make_ready_model(store, boris.id, token="sks", class_word="cat")
    ann.say(f"/share@{BOT_USERNAME}", chat=GROUP)
    await wait_reply(fake, GROUP["id"], "now shared")
    boris.say(f"/share@{BOT_USERNAME}", chat=GROUP)
    text = await fake.wait_for(lambda: [t for t in fake.texts(GROUP["id"]) if "теперь доступна" in t],
                               what="Boris's share reply")
    assert f"sks_{dog.id} dog" in text[0] and f"sks_{cat.id} cat" in text[0]
    ann.say(f"/draw@{BOT_USERNAME} sks dog in Paris", chat=GROUP)
    await wait_reply(fake, GROUP["id"], "Several models answer")
    ann.say(f"/draw@{BOT_USERNAME} sks_{cat.id} cat in Paris", chat=GROUP)
    job = await worker.claim("draw")
    assert job.model_id == cat.id and job.payload.prompt == "sks cat in Paris"


async def test_share_link_lets_another_person_draw_until_revoked(
    kabina, fake: FakeTelegram, store: Storage, ann: User, cleo: User, worker: StandInWorker
) -> None:
    model = await make_ready_model(store, ann.id)
    ann.say("/models")
    await wait_reply(fake, ann.id, "<code>sks</code>")
    await _press(fake, ann, "<code>sks</code>", "Share link")
    link_text = await wait_reply(fake, ann.id, f"https://t.me/{BOT_USERNAME}?start=")
    code = link_text.split("?start=")[1].split()[0]
    cleo.say(f"/start {code}")
    assert "/draw sks dog in Paris" in await wait_reply(fake, cleo.id, "shared «dog» with you")
    cleo.say("/draw sks dog in Rome")
    job = await worker.claim("draw")
    assert job.model_id == model.id and job.chat_id == cleo.id
    await _press(fake, ann, "Anyone who opens this link", "Revoke")
    await fake.wait_for(lambda: any("Revoked 1" in (c.params.get("text") or "")
                                    for c in fake.calls_of("answerCallbackQuery")), what="revoked")
    cleo.say("/draw sks dog in Rome")
    await wait_reply(fake, cleo.id, "no trained model")
    cleo.say(f"/start {code}")
    await wait_reply(fake, cleo.id, "invalid or was revoked")
