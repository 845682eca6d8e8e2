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
    assert labels == ["⭐ Default", "🔗 Share link", "📦 Export LoRA", "✏️ Rename", "🗑 Delete"]


async def test_export_sends_the_lora_file(kabina, fake: FakeTelegram, store: Storage, ann: User) -> None:
    model = await make_ready_model(store, ann.id)
    ann.say("/models")
    await wait_reply(fake, ann.id, "<code>sks</code>")
    await _press(fake, ann, "<code>sks</code>", "Export")
    (document,) = await fake.wait_call("sendDocument", ann.id)
    assert list(document.files.values()) == [await store.blobs.get(model.kohya_key or model.weights_key or "")]


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
    delete = call.params["reply_markup"]["inline_keyboard"][2][0]["callback_data"]
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


WORK = FakeTelegram.group_chat(-100778, "Work")


async def _card(fake: FakeTelegram, user: User, contains: str) -> tuple[dict, list[str]]:
    text = await wait_reply(fake, user.id, contains)
    call = next(c for c in fake.calls_of("sendMessage", user.id) if c.params["text"] == text)
    labels = [b["text"] for row in call.params["reply_markup"]["inline_keyboard"] for b in row]
    return call.params, labels


async def test_models_shows_where_a_model_is_shared_and_stops_a_group_share_from_the_private_chat(
    kabina, fake: FakeTelegram, store: Storage, ann: User, cleo: User
) -> None:
    model = await make_ready_model(store, ann.id)
    for group in (GROUP, WORK):
        ann.say(f"/share@{BOT_USERNAME}", chat=group)
        await wait_reply(fake, group["id"], "now shared")
    cleo.say(f"/start m_{await store.shares.create_link(model.id)}")
    await wait_reply(fake, cleo.id, "shared «dog» with you")
    ann.say("/models")
    card, labels = await _card(fake, ann, "shared in")
    assert "shared in: Friends, Work" in card["text"] and "1 open link · 1 person draws" in card["text"]
    assert labels[5:] == ["🚫 Stop in Friends", "🚫 Stop in Work", "⛔ Revoke links"]
    await _press(fake, ann, "shared in", "Stop in Friends")
    stopped = await wait_reply(fake, ann.id, "no longer shared in «Friends»")
    assert "nobody there can draw with it" in stopped
    assert [c.id for c in await store.shares.groups_of(model.id)] == [WORK["id"]]
    await wait_reply(fake, GROUP["id"], "Ann stopped sharing «dog»")
    cleo.say(f"/draw@{BOT_USERNAME} sks dog", chat=GROUP)
    await wait_reply(fake, GROUP["id"], "No model is shared")


async def test_unshare_in_the_private_chat_lists_every_group_share_with_a_button(
    kabina, fake: FakeTelegram, store: Storage, ann: User
) -> None:
    dog = await make_ready_model(store, ann.id)
    cat = await make_ready_model(store, ann.id, token="xyz", class_word="cat", seed=1)
    await store.chats.upsert(GROUP["id"], type="supergroup", title="Friends")
    await store.shares.share(dog.id, GROUP["id"], ann.id)
    await store.shares.share(cat.id, GROUP["id"], ann.id)
    ann.say("/unshare")
    text, labels = await _card(fake, ann, "shared in 2 groups")
    assert labels == ["🚫 «cat» in Friends", "🚫 «dog» in Friends"]
    await _press(fake, ann, "shared in 2 groups", "«cat» in Friends")
    await wait_reply(fake, ann.id, "«cat» is no longer shared in «Friends»")
    assert [m.id for m in await store.shares.models_in_chat(GROUP["id"])] == [dog.id]


async def test_revoking_links_says_exactly_what_was_revoked_and_what_was_not(
    kabina, fake: FakeTelegram, store: Storage, ann: User, cleo: User
) -> None:
    model = await make_ready_model(store, ann.id)
    ann.say(f"/share@{BOT_USERNAME}", chat=GROUP)
    await wait_reply(fake, GROUP["id"], "now shared")
    codes = [await store.shares.create_link(model.id) for _ in range(2)]
    cleo.say(f"/start m_{codes[0]}")
    await wait_reply(fake, cleo.id, "shared «dog» with you")
    ann.say("/models")
    await wait_reply(fake, ann.id, "2 open links")
    await _press(fake, ann, "2 open links", "Revoke")
    told = await wait_reply(fake, ann.id, "share links revoked")
    assert "«dog»: 2 share links revoked" in told and "the 1 person who had opened one" in told
    assert "stay as they are: Friends" in told
    assert [c.id for c in await store.shares.groups_of(model.id)] == [GROUP["id"]]
    cleo.say("/draw sks dog in Rome")
    await wait_reply(fake, cleo.id, "no trained model")


async def test_a_bot_removed_from_a_group_ends_its_shares_there_for_good_and_tells_the_owners(
    kabina, fake: FakeTelegram, store: Storage, ann: User, boris: User, cleo: User
) -> None:
    dog = await make_ready_model(store, ann.id)
    await make_ready_model(store, boris.id, class_word="cat")
    for owner in (ann, boris):
        owner.say(f"/share@{BOT_USERNAME}", chat=GROUP)
    await fake.wait_for(lambda: len(fake.texts(GROUP["id"])) == 2, what="two share replies")
    await store.shares.share(dog.id, WORK["id"], ann.id)
    fake.bot_membership(GROUP, cleo.data, new="kicked")
    await fake.wait_idle(quiet=0.3)
    assert await store.shares.models_in_chat(GROUP["id"]) == []
    assert [m.id for m in await store.shares.models_in_chat(WORK["id"])] == [dog.id]
    told = await wait_reply(fake, ann.id, "I was removed from «Friends»")
    assert "dog" in told
    await wait_reply(fake, boris.id, "Меня удалили из «Friends»")
    fake.bot_membership(GROUP, cleo.data, old="left", new="member")  # added back: nothing comes back
    cleo.say(f"/draw@{BOT_USERNAME} sks dog", chat=GROUP)
    await wait_reply(fake, GROUP["id"], "No model is shared")


async def test_a_group_that_becomes_a_supergroup_keeps_its_shares(
    kabina, fake: FakeTelegram, store: Storage, ann: User, cleo: User, worker: StandInWorker
) -> None:
    model = await make_ready_model(store, ann.id)
    old = {"id": -4001, "type": "group", "title": "Club"}
    ann.say(f"/share@{BOT_USERNAME}", chat=old)
    await wait_reply(fake, old["id"], "now shared")
    _, new = fake.migrate_to_supergroup(old, -1004001, cleo.data)
    await fake.wait_idle(quiet=0.3)
    assert [m.id for m in await store.shares.models_in_chat(new["id"])] == [model.id]
    assert await store.shares.models_in_chat(old["id"]) == []
    cleo.say(f"/draw@{BOT_USERNAME} sks dog in the club", chat=new)
    job = await worker.claim("draw")
    assert job.chat_id == new["id"] and job.model_id == model.id


async def test_a_drawing_owed_to_a_group_that_just_became_a_supergroup_is_delivered_there(
    kabina, fake: FakeTelegram, store: Storage, ann: User, cleo: User, worker: StandInWorker
) -> None:
    """Telegram refuses messages to the old group with the new chat's id (TelegramMigrateToChat), possibly before
    the bot has seen the service message: the result follows the group instead of being dropped."""
    model = await make_ready_model(store, ann.id)
    old = {"id": -4002, "type": "group", "title": "Club"}
    await store.shares.share(model.id, old["id"], ann.id)
    cleo.say(f"/draw@{BOT_USERNAME} sks dog in the club", chat=old)
    job = await worker.claim("draw")
    fake.fail_next_with("sendPhoto", 400, "Bad Request: group chat was upgraded to a supergroup chat",
                        where=lambda c: c.chat_id == old["id"], migrate_to_chat_id=-1004002)
    await worker.finish_draw(job)
    (photo,) = await fake.wait_call("sendPhoto", -1004002)
    assert photo.error is None
    assert (await store.jobs.get(job.id)).chat_id == -1004002
    assert [m.id for m in await store.shares.models_in_chat(-1004002)] == [model.id]


async def test_models_pages_through_every_model(kabina, fake: FakeTelegram, store: Storage, ann: User) -> None:
    tokens = ["sks", "ohwx", "zwx", "bnha", "qwe", "rty", "uio", "pas", "dfg", "hjk", "lzx", "cvb"]
    for seed, token in enumerate(tokens):
        await make_ready_model(store, ann.id, token=token, seed=seed)
    ann.say("/models")
    await fake.wait_for(lambda: sum("<code>" in text for text in ann.replies()) == 5, what="the first page's cards")
    await fake.wait_idle(quiet=0.3)
    assert any("Page 1 of 3" in text for text in ann.replies()), ann.replies()
    await _press(fake, ann, "Page 1 of 3", "Older")
    await wait_reply(fake, ann.id, "Page 2 of 3")
    await _press(fake, ann, "Page 2 of 3", "Older")
    await fake.wait_for(lambda: all(any(f"<code>{t}</code>" in text for text in ann.replies()) for t in tokens),
                        what="every model's card")
    assert sum("<code>" in text for text in ann.replies()) == len(tokens)


async def test_group_replies_listing_models_stay_under_telegrams_limits_whatever_the_count(
    kabina, fake: FakeTelegram, store: Storage, ann: User, cleo: User
) -> None:
    await store.chats.upsert(GROUP["id"], type="supergroup", title="Friends")
    for owner in range(95):
        model = await make_ready_model(store, 5000 + owner, class_word="teddy bear")
        await store.users.upsert(5000 + owner, first_name="Somebody with a rather long first name")
        await store.shares.share(model.id, GROUP["id"], 5000 + owner)
    await make_ready_model(store, ann.id)
    ann.say(f"/share@{BOT_USERNAME}", chat=GROUP)
    cleo.say(f"/draw@{BOT_USERNAME} a picture without a word", chat=GROUP)
    await fake.wait_for(lambda: len([c for c in fake.calls if c.method == "sendMessage"
                                     and c.chat_id == GROUP["id"]]) == 2, what="two replies")
    replies = [c for c in fake.calls if c.method == "sendMessage" and c.chat_id == GROUP["id"]]
    assert [c.error for c in replies] == [None, None]
    assert all(len(c.params["text"]) <= 4096 for c in replies)
    # Each user has a lane of their own, so the two answers may come in either order.
    texts = [c.params["text"] for c in replies]
    shared = next(text for text in texts if "Which model?" not in text)
    unnamed = next(text for text in texts if "Which model?" in text)
    assert "now shared" in shared and "more" in shared
    assert "(+" in unnamed
