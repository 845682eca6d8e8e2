"""Drawing from a picture: a photo with `/draw …` as its caption, or /draw as a reply to a picture (the user's own
photo or a result); and the upscale buttons under results (the picture 2× and refined, sent as a file).

Both are draws: the same limits, settings and fair use as /draw (the drawing router's rate limit sits on this
router too), and the same engine job with a starting picture (DrawPayload.init_image)."""

from __future__ import annotations

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, Message, Update

from bot.delivery import Outbox
from bot.handlers.drawing import enqueue_reply, pressed_job, request_from_command
from bot.handlers.photos import downloader, incoming
from bot.keyboards import DrawAction
from bot.services.drawing import DrawInputError, DrawService, DrawsPending, has_cyrillic
from bot.services.images import DOWNLOAD_LIMIT, ImageRefused, inspect_image, off_loop
from bot.services.photos import FileTooBig, FileUnavailable
from bot.texts import Texts
from storage import DrawPayload, DrawResult, Storage
from storage.contract import DEFAULT_IMAGE_CHANGE, UPSCALE_CHANGE

# A picture to draw from may be small (a sticker-sized crop is still a start), but not a few pixels.
MIN_START_SIDE = 64


def _picture_message(message: Message) -> Message | None:
    """The message holding the picture: this one (a photo or image file with the /draw caption) or the one
    this /draw replies to."""
    for candidate in (message, message.reply_to_message):
        if candidate is not None and (candidate.photo or candidate.document):
            return candidate
    return None


async def _start_picture(message: Message, bot: Bot, store: Storage, user_id: int) -> str:
    """Downloads and checks the picture (the torch-free engine/photos.py rules), keeps it; its blob key."""
    picture = _picture_message(message)
    assert picture is not None
    image = incoming(picture)
    if image.file_size is not None and image.file_size > DOWNLOAD_LIMIT:
        raise DrawInputError("refused_too_big", limit_mb=DOWNLOAD_LIMIT // (1024 * 1024))
    file_id = picture.photo[-1].file_id if picture.photo else picture.document.file_id  # type: ignore[union-attr]
    try:
        data = await downloader(bot, file_id)()
    except FileTooBig:
        raise DrawInputError("refused_too_big", limit_mb=DOWNLOAD_LIMIT // (1024 * 1024)) from None
    except FileUnavailable:
        raise DrawInputError("refused_unavailable") from None
    try:
        await off_loop(inspect_image, data, 2 * MIN_START_SIDE)
    except ImageRefused as refused:
        raise DrawInputError(refused.key, **refused.values) from None
    return await store.photos.keep_input(user_id, data)


async def draw_from_picture(
    message: Message, command: CommandObject, bot: Bot, event_update: Update, t: Texts, store: Storage,
    drawing: DrawService, outbox: Outbox,
) -> None:
    if message.from_user is None:
        return
    try:
        info = await store.engines.current()
        if not info.draws_from_pictures:
            raise DrawInputError("draw_no_pictures", model=info.title)
        payload, options, prompt = await request_from_command(message, command, store, drawing)
        key = await _start_picture(message, bot, store, message.from_user.id)
        change = DEFAULT_IMAGE_CHANGE if options.change is None else options.change
        # The picture's shape decides the size: an aspect ratio from the settings does not apply.
        payload = payload.model_copy(update={"init_image": key, "image_change": change, "aspect_ratio": None})
        await enqueue_reply(message, message.from_user.id, payload, t, drawing, outbox, event_update,
                            hint="draw_hint_english" if has_cyrillic(prompt) else None)
    except DrawsPending as pending:
        if pending.first:
            await message.reply(t(pending.key, **pending.values))
    except DrawInputError as problem:
        await message.reply(t(problem.key, **problem.values))


def upscale_payload(previous: DrawPayload, result: DrawResult, index: int) -> DrawPayload:
    """One picture of a result, twice its size, refined by a light pass of the same model, prompt and seed."""
    return previous.model_copy(update={
        "n": 1, "seeds": [int(result.seeds[index])], "variation_seeds": None, "variation_strength": 0.0,
        "init_image": result.images[index], "image_change": UPSCALE_CHANGE, "upscale": True, "aspect_ratio": None,
        "width": None, "height": None,
    })


async def upscale(
    query: CallbackQuery, callback_data: DrawAction, event_update: Update, t: Texts, store: Storage,
    drawing: DrawService, outbox: Outbox,
) -> None:
    job = await pressed_job(query, callback_data, drawing, store)
    if job is None or not 0 <= callback_data.index < len(job.result.images):  # type: ignore[union-attr]
        await query.answer(t.plain("button_unavailable"), show_alert=True)
        return
    assert isinstance(job.payload, DrawPayload) and isinstance(job.result, DrawResult)
    info = await store.engines.current()
    if not info.draws_from_pictures:
        await query.answer(t.plain("draw_no_pictures", model=info.title), show_alert=True)
        return
    payload = upscale_payload(job.payload, job.result, callback_data.index)
    try:
        await enqueue_reply(query.message, query.from_user.id, payload, t, drawing, outbox,  # type: ignore[arg-type]
                            event_update)
    except DrawsPending as pending:
        await query.answer(t.plain(pending.key, **pending.values), show_alert=True)
        return
    await query.answer(t.plain("upscale_started"))


def create_router() -> Router:
    # A new router per dispatcher: aiogram attaches a router to one parent only. It comes before the photo
    # router (a photo with a /draw caption is a drawing, not a training photo) and the drawing router.
    router = Router(name=__name__)
    with_picture = F.photo | F.document | F.reply_to_message.photo | F.reply_to_message.document
    router.message.register(draw_from_picture, Command("draw"), with_picture)
    router.callback_query.register(upscale, DrawAction.filter(F.action == "upscale"))
    return router
