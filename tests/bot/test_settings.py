"""A user's own language and drawing settings: chosen with buttons, kept across restarts, applied to /draw and its
buttons; /draw without an identifier; renaming a model; the help and the bot's description per language."""

from __future__ import annotations

from bot.keyboards import LanguageChoice, ModelAction, SettingsAction
from storage import DrawPayload, EngineInfo, Storage
from tests.fake_telegram import FakeTelegram, SentMessage
from tests.helpers import (
    RunningBot,
    StandInWorker,
    User,
    add_photos,
    make_ready_model,
    photo_bytes,
    settled,
    wait_reply,
)

GROUP = FakeTelegram.group_chat(-100777, "Friends")


def _message_with(fake: FakeTelegram, chat_id: int, contains: str) -> SentMessage:
    return next(m for m in reversed(list(fake.messages.values()))
                if m.chat_id == chat_id and m.text and contains in m.text)


async def _caption(fake: FakeTelegram, chat_id: int, contains: str) -> str:
    def found() -> str | None:
        return next((c.params.get("caption", "") for c in fake.calls_of("sendPhoto", chat_id)
                     if contains in c.params.get("caption", "")), None)

    return await fake.wait_for(found, what=f"a caption with {contains!r}")


async def _press(fake: FakeTelegram, user: User, message: SentMessage, data: str) -> str | None:
    """Presses a button and returns the alert or note the bot answered it with."""
    before = len(fake.calls_of("answerCallbackQuery"))
    fake.press_button(user.data, message, data)
    calls = await fake.wait_call("answerCallbackQuery", count=before + 1)
    return calls[-1].params.get("text")


async def test_language_is_chosen_with_a_button_and_kept(
    kabina, fake: FakeTelegram, store: Storage, ann: User
) -> None:
    ann.say("/language")
    await wait_reply(fake, ann.id, "Choose the language")
    note = await _press(fake, ann, _message_with(fake, ann.id, "Choose the language"),
                        LanguageChoice(language="ru").pack())
    assert note and "по-русски" in note
    ann.say("/help")  # her client still says "en"
    text = await wait_reply(fake, ann.id, "Кабина")
    assert "/train dog" in text
    assert (await store.preferences.get(ann.id)).language == "ru"


async def test_a_forged_language_changes_nothing(kabina, fake: FakeTelegram, store: Storage, ann: User) -> None:
    ann.say("/language")
    await wait_reply(fake, ann.id, "Choose the language")
    await _press(fake, ann, _message_with(fake, ann.id, "Choose the language"), LanguageChoice(language="xx").pack())
    assert (await store.preferences.get(ann.id)).language is None


async def test_settings_survive_a_restart_and_shape_draw_and_its_buttons(
    settings, tuning, fake: FakeTelegram, store: Storage, ann: User, worker: StandInWorker
) -> None:
    await make_ready_model(store, ann.id)
    first = RunningBot(settings, tuning)
    await first.start()
    try:
        ann.say("/settings")
        await wait_reply(fake, ann.id, "Your drawing settings")
        card = _message_with(fake, ann.id, "Your drawing settings")
        for field, value in (("steps", "30"), ("n", "2"), ("ar", "3x2"), ("sampler", "euler-a")):
            await _press(fake, ann, card, SettingsAction(action="open", field=field).pack())
            assert await _press(fake, ann, card, SettingsAction(action="set", field=field, value=value).pack()) == "Saved"
        assert "Steps: 30" in fake.messages[(card.chat_id, card.message_id)].text
    finally:
        await first.stop()
    second = RunningBot(settings, tuning)
    await second.start()
    try:
        ann.say("/draw sks dog in Paris")
        job = await worker.claim("draw")
        assert isinstance(job.payload, DrawPayload)
        assert (job.payload.steps, job.payload.n, job.payload.aspect_ratio, job.payload.sampler) == (
            30, 2, "3:2", "euler-a")
        await worker.finish_draw(job)
        await settled(store, job.id)
        ann.say("/draw sks dog in Rome --steps 10 --n 1")  # a flag wins for this draw only
        flagged = await worker.claim("draw")
        assert (flagged.payload.steps, flagged.payload.n, flagged.payload.sampler) == (10, 1, "euler-a")
        await worker.finish_draw(flagged)
        await settled(store, flagged.id)
        photo = next(m for m in fake.messages.values() if m.chat_id == ann.id and m.reply_markup)
        fake.press_button(ann.data, photo, f"draw:again:{job.id}:0")
        again = await worker.claim("draw")
        assert (again.payload.steps, again.payload.n) == (30, 2)
    finally:
        await second.stop()


async def test_forged_or_stale_settings_values_are_refused(
    kabina, fake: FakeTelegram, store: Storage, ann: User, cleo: User
) -> None:
    await make_ready_model(store, ann.id)
    ann.say("/settings")
    await wait_reply(fake, ann.id, "Your drawing settings")
    card = _message_with(fake, ann.id, "Your drawing settings")
    for field, value in (("steps", "9999"), ("n", "7"), ("sampler", "<b>x</b>"), ("model", "424242")):
        note = await _press(fake, ann, card, SettingsAction(action="set", field=field, value=value).pack())
        assert note == "This button does not work here. Send the command again."
    assert await store.preferences.get(ann.id) == (await store.preferences.get(ann.id)).model_copy()
    assert (await store.preferences.get(ann.id)).steps is None
    # another user's press under Ann's card changes nothing of Ann's
    note = await _press(fake, cleo, card, SettingsAction(action="set", field="n", value="3").pack())
    assert note == "That is not yours to use."
    assert (await store.preferences.get(ann.id)).n is None


async def test_draw_without_an_identifier_uses_the_default_model(
    kabina, fake: FakeTelegram, store: Storage, ann: User, worker: StandInWorker
) -> None:
    await make_ready_model(store, ann.id, token="sks", class_word="dog")
    cat = await make_ready_model(store, ann.id, token="zwx", class_word="cat", seed=1)
    ann.say("/draw on the moon")
    await wait_reply(fake, ann.id, "Which model?")
    await store.users.set_default_model(ann.id, cat.id)
    ann.say("/draw on the moon")
    job = await worker.claim("draw")
    assert job.model_id == cat.id and job.payload.prompt == "zwx cat, on the moon"


async def test_draw_without_an_identifier_in_a_group_uses_the_one_shared_model(
    kabina, fake: FakeTelegram, store: Storage, ann: User, cleo: User, worker: StandInWorker
) -> None:
    model = await make_ready_model(store, ann.id)
    await store.chats.upsert(GROUP["id"], type="supergroup", title=GROUP["title"])
    await store.shares.share(model.id, GROUP["id"], ann.id)
    cleo.say("/draw@kabina_test_bot in a garden", chat=GROUP)
    job = await worker.claim("draw")
    assert job.model_id == model.id and job.payload.prompt == "sks dog, in a garden"


async def test_a_model_is_renamed_from_models_and_a_bad_name_is_refused(
    kabina, fake: FakeTelegram, store: Storage, ann: User
) -> None:
    model = await make_ready_model(store, ann.id)
    ann.say("/models")
    await wait_reply(fake, ann.id, "<b>dog</b>")
    card = _message_with(fake, ann.id, "<b>dog</b>")
    await _press(fake, ann, card, ModelAction(action="rename", model_id=model.id).pack())
    await wait_reply(fake, ann.id, "new name")
    ann.say("x" * 41)
    await wait_reply(fake, ann.id, "1 to 40 characters")
    ann.say("Rex <the good boy>")
    await wait_reply(fake, ann.id, "is now «Rex &lt;the good boy&gt;»")
    assert (await store.models.get(model.id)).name == "Rex <the good boy>"
    ann.say("hello")  # no longer renaming: the usual pointer to /help
    await wait_reply(fake, ann.id, "/help")
    assert (await store.models.get(model.id)).name == "Rex <the good boy>"


async def test_help_offers_only_the_options_the_running_model_takes(
    kabina, fake: FakeTelegram, store: Storage, ann: User
) -> None:
    await store.engines.publish("flux-host", EngineInfo(
        family="flux1-dev", title="FLUX.1-dev", negative_prompt=False, guidance_embedded=True, default_guidance=3.5,
        samplers=("default",), default_sampler="default"))
    ann.say("/help")
    text = await wait_reply(fake, ann.id, "FLUX.1-dev")
    assert "--neg" not in text and "--sampler" not in text and "--cfg 3.5</code> guidance" in text


async def test_the_bot_describes_itself_in_each_language(kabina, fake: FakeTelegram) -> None:
    descriptions = await fake.wait_call("setMyDescription", count=2)
    short = await fake.wait_call("setMyShortDescription", count=2)
    assert {c.params.get("language_code") for c in descriptions} == {None, "ru"}
    assert all(c.error is None for c in descriptions + short)
    assert any("фотограф" in c.params["description"] for c in descriptions)


async def test_a_russian_prompt_gets_a_hint_that_english_works_best(
    kabina, fake: FakeTelegram, store: Storage, boris: User, worker: StandInWorker
) -> None:
    await make_ready_model(store, boris.id)
    boris.say("/draw sks dog на луне")
    await wait_reply(fake, boris.id, "по-английски")
    await worker.claim("draw")


async def test_the_same_story_counts_right_in_english_and_russian(
    kabina, fake: FakeTelegram, store: Storage, ann: User, boris: User
) -> None:
    """1 and 2 photos sent, then a set of 5 and of 21: every count reads as a person would write it."""
    said = {
        ann.id: ["Saved 1 photo.", "Saved 2 photos.", "Your set: 5 photos", "Your set: 21 photos"],
        boris.id: ["Сохранена 1 фотография.", "Сохранены 2 фотографии.", "В наборе 5 фотографий",
                   "В наборе 21 фотография"],
    }
    for offset, user in ((0, ann), (100, boris)):
        user.photo(photo_bytes(offset + 1))
        await wait_reply(fake, user.id, said[user.id][0])
        user.album([photo_bytes(offset + 2), photo_bytes(offset + 3)])
        await wait_reply(fake, user.id, said[user.id][1])
        await add_photos(store, user.id, [offset + 4, offset + 5])
        user.say("/photos")
        await _caption(fake, user.id, said[user.id][2])
        await add_photos(store, user.id, list(range(offset + 6, offset + 22)))
        user.say("/photos")
        await _caption(fake, user.id, said[user.id][3])


async def test_an_engine_failure_reaches_a_russian_user_in_russian(
    kabina, fake: FakeTelegram, store: Storage, boris: User, worker: StandInWorker
) -> None:
    from storage.contract import FailureCode

    await make_ready_model(store, boris.id)
    boris.say("/draw sks dog in Paris")
    job = await worker.claim("draw")
    await store.lifecycle.fail(job.id, worker.worker_id, FailureCode.OUT_OF_MEMORY)
    await wait_reply(fake, boris.id, "видеокарте не хватило памяти")


async def test_the_caption_says_what_the_settings_drew(
    kabina, fake: FakeTelegram, store: Storage, boris: User, worker: StandInWorker
) -> None:
    from storage import DrawResult
    from tests.helpers import put_blob

    await make_ready_model(store, boris.id)
    await store.preferences.update(boris.id, steps=21, sampler="euler-a")
    boris.say("/draw sks dog in Paris")
    job = await worker.claim("draw")
    assert (job.payload.steps, job.payload.sampler) == (21, "euler-a")
    key = await put_blob(store, f"jobs/{job.id}/0_7.png", photo_bytes(7, (64, 64), "PNG"))
    # what the engine reports back: the steps and sampler it really used
    await store.lifecycle.complete(job.id, worker.worker_id, DrawResult(images=[key], seeds=[7], steps=21,
                                                                   sampler="euler-a", width=512, height=512))
    (photo,) = await fake.wait_call("sendPhoto", boris.id)
    assert "21 шаг · euler-a · 512×512" in photo.params["caption"]
