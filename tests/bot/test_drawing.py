"""/draw: options, the model a prompt names, results as one album with seeds, the buttons, and refusals."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from bot.keyboards import DrawAction
from storage import FailureCode, Storage
from tests.fake_telegram import FakeTelegram
from tests.helpers import StandInWorker, User, make_ready_model, wait_reply


async def test_draw_delivers_one_album_with_prompt_and_seeds(
    kabina, fake: FakeTelegram, store: Storage, ann: User, worker: StandInWorker
) -> None:
    model = await make_ready_model(store, ann.id)
    ann.say('/draw sks dog in Paris --n 3 --steps 6 --cfg 6.5 --seed 42 --neg "blurry, dark"')
    job = await worker.claim("draw")
    assert job.model_id == model.id and job.chat_id == ann.id
    assert job.payload.prompt == "sks dog in Paris"
    assert (job.payload.n, job.payload.steps, job.payload.guidance) == (3, 6, 6.5)
    assert job.payload.seeds == [42, 43, 44] and job.payload.negative_prompt == "blurry, dark"
    await fake.wait_call("sendChatAction", ann.id)
    await worker.finish_draw(job)
    (album,) = await fake.wait_call("sendMediaGroup", ann.id)
    images = [Image.open(io.BytesIO(data)) for data in album.images()]
    assert len(images) == 3 and all(image.size == (64, 64) for image in images)
    caption = album.params["media"][0]["caption"]
    assert "sks dog in Paris" in caption and "42" in caption and "44" in caption
    await wait_reply(fake, ann.id, "More like this")
    more = next(c for c in fake.calls_of("sendMessage", ann.id) if "More like this" in c.params["text"])
    pressed = [DrawAction.unpack(b["callback_data"]) for row in more.params["reply_markup"]["inline_keyboard"]
               for b in row]
    assert [(p.action, p.job_id, p.index) for p in pressed] == [
        ("again", job.id, 0), ("png", job.id, 0), ("vary", job.id, 0), ("vary", job.id, 1), ("vary", job.id, 2),
        ("upscale", job.id, 0), ("upscale", job.id, 1), ("upscale", job.id, 2)]
    status = next(c for c in fake.calls_of("sendMessage", ann.id) if "Drawing" in c.params["text"])
    (deleted,) = await fake.wait_call("deleteMessage", ann.id)  # "Drawing…" goes only once the result is out
    assert deleted.params["message_id"] == status.result["message_id"]
    assert fake.messages[(ann.id, status.result["message_id"])].deleted
    assert deleted.at > more.at


async def test_one_picture_comes_as_a_photo_with_buttons(
    kabina, fake: FakeTelegram, store: Storage, ann: User, worker: StandInWorker
) -> None:
    await make_ready_model(store, ann.id)
    ann.say("/draw a portrait of sks dog")
    job = await worker.claim("draw")
    assert job.payload.n == 1 and job.payload.steps == 4 and job.payload.seeds is None
    seeds = await worker.finish_draw(job)
    (photo,) = await fake.wait_call("sendPhoto", ann.id)
    assert str(seeds[0]) in photo.params["caption"]
    keyboard = photo.params["reply_markup"]["inline_keyboard"]
    assert [b["text"] for row in keyboard for b in row] == ["🔁 Again", "📄 PNG", "✨ #1", "🔍 2×"]


async def test_again_and_variation_buttons_queue_new_drawings(
    kabina, fake: FakeTelegram, store: Storage, ann: User, worker: StandInWorker
) -> None:
    await make_ready_model(store, ann.id)
    ann.say("/draw sks dog on the beach --n 2 --seed 7")
    first = await worker.claim("draw")
    await worker.finish_draw(first)
    await wait_reply(fake, ann.id, "More like this")
    more = next(c for c in fake.calls_of("sendMessage", ann.id) if "More like this" in c.params["text"])
    message = fake.messages[(ann.id, more.result["message_id"])]
    rows = more.params["reply_markup"]["inline_keyboard"]
    again, vary_second = rows[0][0]["callback_data"], rows[1][1]["callback_data"]
    assert DrawAction.unpack(vary_second).index == 1
    fake.press_button(ann.data, message, again)
    second = await worker.claim("draw")
    assert second.payload.prompt == "sks dog on the beach" and second.payload.seeds is None
    fake.press_button(ann.data, message, vary_second)
    third = await worker.claim("draw")
    assert third.payload.seeds == [8, 8] and third.payload.variation_strength > 0
    await fake.wait_call("answerCallbackQuery", count=2)


@pytest.mark.parametrize(("args", "expected"), [
    ("sks dog --n 9", "--n must be between 1 and 4"),
    ("sks dog --steps many", "--steps must be between"),
    ("sks dog --cfg 99", "--cfg must be between"),
    ("sks dog --size 3", "don't know the option --size"),
    ("sks dog --sampler lms", "no sampler «lms». Choose one of: dpm++2m-karras, euler-a, euler, ddim, default"),
    ("sks dog --ar 4:3", "--ar 4:3 is not a shape I draw"),
    ("sks dog --strength 3", "--strength must be between 0 and 2"),
    ("sks dog --seed", "--seed needs a value"),
    ('sks dog --neg "blurry', "quote is not closed"),
    ("", "Describe the picture"),
    ("sks dog " + "very " * 80, "prompt is too long"),
])
async def test_bad_draw_requests_get_a_clear_reply_and_queue_nothing(
    kabina, fake: FakeTelegram, store: Storage, ann: User, args: str, expected: str
) -> None:
    await make_ready_model(store, ann.id)
    ann.say(f"/draw {args}".strip())
    await wait_reply(fake, ann.id, expected)
    assert await store.jobs.active_for_owner(ann.id) == []


async def test_a_user_without_a_model_is_told_what_to_do(kabina, fake: FakeTelegram, ann: User) -> None:
    ann.say("/draw sks dog in Paris")
    assert "/train" in await wait_reply(fake, ann.id, "no trained model")


async def test_nobody_draws_with_a_model_not_shared_with_them(
    kabina, fake: FakeTelegram, store: Storage, ann: User, cleo: User
) -> None:
    await make_ready_model(store, ann.id)
    cleo.say("/draw sks dog in Paris")
    await wait_reply(fake, cleo.id, "no trained model")
    assert await store.jobs.active_for_owner(cleo.id) == []


async def test_a_flood_of_draws_meets_one_polite_reply(
    kabina, fake: FakeTelegram, store: Storage, ann: User
) -> None:
    """Both limits bite (three pending drawings, four commands a minute); the user hears about it once."""
    await make_ready_model(store, ann.id)
    for i in range(7):
        ann.say(f"/draw sks dog number {i}")
    await wait_reply(fake, ann.id, "You already have 3 drawings waiting")
    await fake.wait_idle(quiet=0.5)
    assert len(await store.jobs.active_for_owner(ann.id, "draw")) == 3
    assert sum("3 drawings waiting" in t or "Slow down" in t for t in ann.replies()) == 1


async def test_a_failed_drawing_gets_a_friendly_reason(
    kabina, fake: FakeTelegram, store: Storage, ann: User, worker: StandInWorker
) -> None:
    await make_ready_model(store, ann.id)
    ann.say("/draw sks dog")
    job = await worker.claim("draw")
    await store.lifecycle.fail(job.id, worker.worker_id, FailureCode.OUT_OF_MEMORY)
    assert "ran out of memory" in await wait_reply(fake, ann.id, "Drawing failed")


async def test_a_failure_is_told_in_the_users_language(
    kabina, fake: FakeTelegram, store: Storage, boris: User, worker: StandInWorker
) -> None:
    await make_ready_model(store, boris.id)
    boris.say("/draw sks dog")
    job = await worker.claim("draw")
    await store.lifecycle.fail(job.id, worker.worker_id, FailureCode.GAVE_UP, {"attempts": 3})
    text = await wait_reply(fake, boris.id, "Не удалось нарисовать")
    assert "3 раз" in text and "gave up" not in text


async def test_samplers_strength_and_shape_reach_the_engine(
    kabina, fake: FakeTelegram, store: Storage, ann: User, worker: StandInWorker
) -> None:
    await make_ready_model(store, ann.id)
    ann.say("/draw sks dog in Paris --sampler Euler-A --strength 0,8 --ar 16:9")
    job = await worker.claim("draw")
    assert (job.payload.sampler, job.payload.strength, job.payload.aspect_ratio) == ("euler-a", 0.8, "16:9")
    ann.say("/draw sks dog in Paris")
    plain = await worker.claim("draw")
    assert (plain.payload.sampler, plain.payload.strength, plain.payload.aspect_ratio) == (None, 1.0, None)


async def test_the_options_follow_the_base_model_the_engine_serves(
    kabina, fake: FakeTelegram, store: Storage, ann: User, worker: StandInWorker
) -> None:
    from storage import EngineInfo

    await make_ready_model(store, ann.id)
    await store.engines.publish("gpu-1", EngineInfo(
        family="flux-dev", title="FLUX.1-dev", max_draw_steps=50, default_draw_steps=28, default_guidance=3.5,
        samplers=("default", "euler", "dpm++2m"), default_sampler="default", negative_prompt=False, token_limit=511))
    for args, refusal in (("--sampler euler-a", "FLUX.1-dev has no sampler «euler-a»"),
                          ("--neg blurry", "FLUX.1-dev draws without a negative prompt"),
                          ("--steps 60", "--steps must be between 1 and 50")):
        ann.say(f"/draw sks dog {args}")
        await wait_reply(fake, ann.id, refusal)
    assert await store.jobs.active_for_owner(ann.id) == []
    # T5 reads far more than CLIP: a prompt of 80 words is fine for FLUX (it is refused for SD1.x above)
    ann.say("/draw sks dog " + "very " * 80 + "--sampler dpm++2m --steps 40")
    job = await worker.claim("draw")
    assert (job.payload.sampler, job.payload.steps) == ("dpm++2m", 40)


async def test_the_png_button_sends_the_pictures_as_files_byte_for_byte(
    kabina, fake: FakeTelegram, store: Storage, ann: User, worker: StandInWorker
) -> None:
    await make_ready_model(store, ann.id)
    ann.say("/draw sks dog in Paris --n 2 --seed 5")
    job = await worker.claim("draw")
    await worker.finish_draw(job)
    await wait_reply(fake, ann.id, "More like this")
    more = next(c for c in fake.calls_of("sendMessage", ann.id) if "More like this" in c.params["text"])
    png = next(b["callback_data"] for row in more.params["reply_markup"]["inline_keyboard"] for b in row
               if DrawAction.unpack(b["callback_data"]).action == "png")
    fake.press_button(ann.data, fake.messages[(ann.id, more.result["message_id"])], png)
    (files,) = await fake.wait_call("sendMediaGroup", ann.id,
                                    where=lambda c: c.params["media"][0]["type"] == "document")
    drawn = [store.files.inside(p).read_bytes() for p in (await store.jobs.get(job.id)).result.images]
    assert files.images() == drawn
    assert [m["type"] for m in files.params["media"]] == ["document", "document"]
    assert "seed 5" in files.params["media"][0]["caption"] and "seed 6" in files.params["media"][1]["caption"]


async def test_a_negative_prompt_cut_by_the_tokenizer_is_told_like_the_prompt(
    kabina, fake: FakeTelegram, store: Storage, ann: User, worker: StandInWorker
) -> None:
    await make_ready_model(store, ann.id)
    ann.say('/draw sks dog --neg "blurry, dark, and a very long list of everything unwanted"')
    job = await worker.claim("draw")
    await worker.finish_draw(job, negative_truncated=True)
    (photo,) = await fake.wait_call("sendPhoto", ann.id)
    assert "--neg text was cut" in photo.params["caption"]
    assert "prompt was cut" not in photo.params["caption"]


async def test_a_draw_while_the_model_trains_is_a_draft_from_the_users_photos_on_klein(
    kabina, fake: FakeTelegram, store: Storage, ann: User, cleo: User, worker: StandInWorker
) -> None:
    from storage import EngineInfo
    from tests.helpers import add_photos, queued_training

    training = await queued_training(store, ann.id, await add_photos(store, ann.id, [1, 2, 3]))
    ann.say("/draw sks dog in Paris")
    await wait_reply(fake, ann.id, "still training")  # an engine without reference pictures: told to wait
    assert await store.jobs.active_for_owner(ann.id) == [training]

    await store.engines.publish("gpu-1", EngineInfo(family="flux2-klein", title="FLUX.2 [klein]",
                                                    takes_references=True))
    ann.say("/draw sks dog in Paris")
    reply = await wait_reply(fake, ann.id, "draft")
    assert "your own photos" in reply
    job = await worker.claim("draw")
    assert job.payload.draft_of == training.model_id and job.payload.model_id is None
    assert job.owner_id == ann.id and job.payload.prompt == "sks dog in Paris"
    cleo.say("/draw sks dog in Paris")  # Cleo has nothing training: no draft, and never Ann's photos
    await wait_reply(fake, cleo.id, "no trained model")
    assert await store.jobs.active_for_owner(cleo.id) == []
