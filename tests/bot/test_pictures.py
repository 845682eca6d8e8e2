"""Drawing from a picture (a captioned photo, a reply to a photo or to a result) and the upscale button: through the
fake Bot API, with the stand-in engine; every bad picture or flag gets a clear reply and queues nothing."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from bot.keyboards import DrawAction
from storage import DrawPayload, DrawResult, Settings, Storage, load_settings
from storage.contract import DEFAULT_IMAGE_CHANGE, UPSCALE_CHANGE
from tests.fake_telegram import FakeTelegram
from tests.helpers import (
    StandInWorker,
    User,
    eventually,
    make_ready_model,
    photo_bytes,
    put_blob,
    settled,
    wait_reply,
)


@pytest.fixture
def settings(fake: FakeTelegram, data_dir: Path) -> Settings:
    """One drawing at a time per user, so an upscale's place in the fair-use count shows at once."""
    return load_settings(bot_token=fake.token, telegram_api_url=fake.base_url, data_dir=data_dir, min_photos=3,
                         max_photos=6, daily_trainings=2, draw_steps=4, max_pending_draws=1)


async def _drawn_from(store: Storage, worker: StandInWorker) -> tuple[DrawPayload, bytes]:
    job = await worker.claim("draw")
    assert isinstance(job.payload, DrawPayload) and job.payload.init_image
    return job.payload, await store.blobs.get(job.payload.init_image)


async def test_a_photo_captioned_with_draw_is_drawn_from_not_added_to_the_set(
    kabina, fake: FakeTelegram, store: Storage, ann: User, worker: StandInWorker
) -> None:
    await make_ready_model(store, ann.id)
    picture = photo_bytes(11)
    ann.photo(picture, caption="/draw sks dog as an oil painting --change 0.5")
    payload, start = await _drawn_from(store, worker)
    assert start == picture and payload.image_change == 0.5 and payload.prompt == "sks dog as an oil painting"
    assert await store.photos.count(ann.id) == 0


async def test_draw_as_a_reply_to_my_photo_or_to_a_result_starts_from_that_picture(
    kabina, fake: FakeTelegram, store: Storage, ann: User, worker: StandInWorker
) -> None:
    await make_ready_model(store, ann.id)
    mine = photo_bytes(12)
    sent = ann.photo(mine)
    await wait_reply(fake, ann.id, "Saved")
    fake.send_text(ann.data, "/draw in the snow", reply_to=sent)
    payload, start = await _drawn_from(store, worker)
    assert start == mine and payload.image_change == DEFAULT_IMAGE_CHANGE and payload.prompt == "sks dog, in the snow"
    job = await store.jobs.get((await store.jobs.active_for_owner(ann.id, "draw"))[0].id)
    await worker.finish_draw(job)
    await settled(store, job.id)
    (result,) = [c for c in fake.calls_of("sendPhoto", ann.id) if c.result]
    fake.send_text(ann.data, "/draw sks dog at night", reply_to={**result.result, "from": fake.me()})
    _, again = await _drawn_from(store, worker)
    assert again == result.images()[0]


async def test_bad_pictures_and_flags_get_a_clear_reply_and_queue_nothing(
    kabina, fake: FakeTelegram, store: Storage, ann: User
) -> None:
    await make_ready_model(store, ann.id)
    fake.send_document(ann.data, b"%PDF-1.4 not a picture", "cv.pdf", "application/pdf", caption="/draw sks dog")
    await wait_reply(fake, ann.id, "not an image")
    ann.photo(photo_bytes(13, size=(40, 40)), caption="/draw sks dog")
    await wait_reply(fake, ann.id, "too small")
    ann.photo(photo_bytes(14), caption="/draw sks dog --change 3")
    await wait_reply(fake, ann.id, "--change must be between 0.1 and 1")
    ann.say("/draw sks dog --change 0.5")
    await wait_reply(fake, ann.id, "--change is for drawing from a picture")
    assert await store.jobs.active_for_owner(ann.id) == []


async def _result_with_buttons(fake: FakeTelegram, store: Storage, ann: User, worker: StandInWorker):
    ann.say("/draw sks dog on the moon --seed 5")
    job = await worker.claim("draw")
    await worker.finish_draw(job)
    await settled(store, job.id)
    (photo,) = fake.calls_of("sendPhoto", ann.id)
    job = await store.jobs.get(job.id)
    return job, fake.messages[(ann.id, photo.result["message_id"])], photo


async def test_upscale_delivers_a_file_twice_the_size_queued_like_a_draw(
    kabina, fake: FakeTelegram, store: Storage, ann: User, worker: StandInWorker
) -> None:
    await make_ready_model(store, ann.id)
    job, message, photo = await _result_with_buttons(fake, store, ann, worker)
    labels = [b["text"] for row in photo.params["reply_markup"]["inline_keyboard"] for b in row]
    assert "🔍 2×" in labels
    fake.press_button(ann.data, message, DrawAction(action="upscale", job_id=job.id, index=0).pack())
    upscale = await worker.claim("draw")
    assert isinstance(upscale.payload, DrawPayload)
    assert upscale.payload.upscale and upscale.payload.init_image == job.result.images[0]
    assert upscale.payload.seeds == [5] and upscale.payload.n == 1 and upscale.payload.image_change == UPSCALE_CHANGE
    # the engine's side: the picture enlarged 2× (the real engine's size is tested in tests/engine)
    source = Image.open(io.BytesIO(await store.blobs.get(job.result.images[0])))
    bigger = source.resize((source.width * 2, source.height * 2))
    buffer = io.BytesIO()
    bigger.save(buffer, "PNG")
    key = await put_blob(store, f"jobs/{upscale.id}/0_5.png", buffer.getvalue())
    await store.lifecycle.complete(upscale.id, worker.worker_id, DrawResult(images=[key], seeds=[5], width=bigger.width,
                                                                       height=bigger.height))
    await settled(store, upscale.id)
    (document,) = fake.calls_of("sendDocument", ann.id)
    delivered = Image.open(io.BytesIO(next(iter(document.files.values()))))
    assert delivered.size == (2 * source.width, 2 * source.height)
    assert "Twice the size" in document.params["caption"]


async def _pending(store: Storage, user_id: int, count: int) -> bool:
    return len(await store.jobs.active_for_owner(user_id, "draw")) == count


async def test_upscale_refuses_a_forged_index_and_counts_against_pending_draws(
    kabina, fake: FakeTelegram, store: Storage, ann: User, cleo: User, worker: StandInWorker
) -> None:
    await make_ready_model(store, ann.id)
    job, message, _ = await _result_with_buttons(fake, store, ann, worker)
    fake.press_button(ann.data, message, DrawAction(action="upscale", job_id=job.id, index=7).pack())
    fake.press_button(cleo.data, message, DrawAction(action="upscale", job_id=job.id, index=0).pack())
    answers = await fake.wait_call("answerCallbackQuery", count=2)
    assert all("does not work here" in (a.params.get("text") or "") for a in answers)
    ann.say("/draw sks dog in Rome")
    await eventually(lambda: _pending(store, ann.id, 1), what="a drawing waiting")
    fake.press_button(ann.data, message, DrawAction(action="upscale", job_id=job.id, index=0).pack())
    answers = await fake.wait_call("answerCallbackQuery", count=3)
    assert "You already have 1 drawing waiting" in (answers[-1].params.get("text") or "")


async def test_a_model_without_an_image_to_image_mode_refuses_pictures_with_a_reason(
    kabina, fake: FakeTelegram, store: Storage, ann: User
) -> None:
    from storage import EngineInfo

    await store.engines.publish("klein-host", EngineInfo(family="flux2-klein", title="FLUX.2 [klein]",
                                                         draws_from_pictures=False))
    await make_ready_model(store, ann.id)
    ann.photo(photo_bytes(15), caption="/draw sks dog as a painting")
    await wait_reply(fake, ann.id, "FLUX.2 [klein] cannot start from a picture")
    assert await store.jobs.active_for_owner(ann.id) == []
