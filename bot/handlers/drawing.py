"""/draw in private chats and groups, and the "again" / "variations" buttons under results."""

from __future__ import annotations

from aiogram import Router
from aiogram.enums import ChatAction
from aiogram.filters import Command, CommandObject
from aiogram.types import BufferedInputFile, CallbackQuery, InputMediaDocument, Message, Update

from bot.delivery import Outbox
from bot.formatting import join
from bot.keyboards import DrawAction
from bot.services.drawing import (
    DrawInputError,
    DrawOptions,
    DrawService,
    DrawsPending,
    again_payload,
    draw_payload,
    fallback_model,
    has_cyrillic,
    parse_draw,
    resolve_model,
    variations_payload,
)
from bot.texts import Texts
from storage import DrawPayload, DrawResult, Job, NotFound, PathEscape, Storage


async def enqueue_reply(
    message: Message, user_id: int, payload: DrawPayload, t: Texts, drawing: DrawService, outbox: Outbox,
    update: Update, hint: str | None = None,
) -> None:
    """Raises DrawsPending when the user is at MAX_PENDING_DRAWS (nothing is queued then)."""
    reply_to = message.message_id if message.chat.type != "private" else None
    job = await drawing.enqueue(user_id, message.chat.id, payload, update.update_id, lang=t.language,
                                reply_to=reply_to)
    await message.bot.send_chat_action(message.chat.id, ChatAction.UPLOAD_PHOTO)  # type: ignore[union-attr]
    position = await drawing.position(job)
    text = t("draw_queued", position=position) if position else t("draw_started")
    status = await message.reply(join([text, t(hint)]) if hint else text)
    await outbox.status_shown(job.id, message.chat.id, status.message_id)


async def request_from_command(
    message: Message, command: CommandObject, store: Storage, drawing: DrawService
) -> tuple[DrawPayload, DrawOptions, str]:
    """The draw a /draw text asks for (the user's settings filled in, the model found), its options and prompt;
    DrawInputError names what the user should fix."""
    assert message.from_user is not None
    user_id, chat_id = message.from_user.id, message.chat.id
    prefs = await store.preferences.get(user_id)
    prompt, options = parse_draw(command.args or "", drawing.default_steps, await store.engines.current(), prefs)
    models = await drawing.usable(user_id, chat_id)
    if not models:
        draft = await _model_to_draft(message, store)
        if draft is None:
            raise DrawInputError(await _why_no_models(message, store))
        # A base model that takes reference pictures draws a draft from the owner's photos right away.
        return draw_payload(draft, prompt, options).model_copy(update={"model_id": None, "draft_of": draft.id}), \
            options, prompt
    user = await store.users.get(user_id)
    default_id = user.default_model_id if user else None
    fallback = fallback_model(models, default_id, message.chat.type == "private")
    resolved = resolve_model(prompt, models, default_id, fallback)
    return draw_payload(resolved.model, resolved.prompt, options), options, prompt


async def draw(
    message: Message, command: CommandObject, event_update: Update, t: Texts, store: Storage, drawing: DrawService,
    outbox: Outbox,
) -> None:
    """/draw as a text, or as the caption of anything (aiogram's Command reads captions too): the same rules."""
    if message.from_user is None:
        return
    try:
        payload, options, prompt = await request_from_command(message, command, store, drawing)
        if options.change is not None:
            raise DrawInputError("draw_change_needs_picture")
        await enqueue_reply(message, message.from_user.id, payload, t, drawing, outbox, event_update,
                            hint="draw_draft" if payload.draft_of is not None
                            else "draw_hint_english" if has_cyrillic(prompt) else None)
    except DrawsPending as pending:
        if pending.first:
            await message.reply(t(pending.key, **pending.values))
    except DrawInputError as problem:
        await message.reply(t(problem.key, **problem.values))


async def _model_to_draft(message: Message, store: Storage):
    """The sender's own model still training, in a private chat, when the engine draws from reference photos."""
    if message.chat.type != "private" or not (await store.engines.current()).takes_references:
        return None
    own = await store.models.list_for_owner(message.chat.id)
    training = [m for m in own if m.status in {"queued", "training"}]
    return training[-1] if training else None


async def _why_no_models(message: Message, store: Storage) -> str:
    if message.chat.type != "private":
        return "draw_no_models_group"
    own = await store.models.list_for_owner(message.chat.id)
    return "draw_model_training" if any(m.status in {"queued", "training"} for m in own) else "draw_no_models"


async def pressed_job(query: CallbackQuery, data: DrawAction, drawing: DrawService, store: Storage) -> Job | None:
    """The drawing a button names, if the person pressing may redraw it where they pressed it: it was asked in
    this very chat (so nothing of one chat's prompt or pictures can reach another), and its model is still
    usable by them here. Anything else is one and the same refusal, so forged data learns nothing."""
    message = query.message
    if not isinstance(message, Message):
        return None
    job = await store.jobs.get(data.job_id)
    if job is None or job.kind != "draw" or job.chat_id != message.chat.id:
        return None
    if not isinstance(job.result, DrawResult) or not isinstance(job.payload, DrawPayload):
        return None
    usable = {m.id for m in await drawing.usable(query.from_user.id, message.chat.id)}
    if job.model_id not in usable:
        return None
    if data.action == "vary" and not 0 <= data.index < len(job.result.seeds):
        return None
    return job


async def draw_again(
    query: CallbackQuery, callback_data: DrawAction, event_update: Update, t: Texts, store: Storage,
    drawing: DrawService, outbox: Outbox,
) -> None:
    job = await pressed_job(query, callback_data, drawing, store)
    if job is None:
        await query.answer(t("button_unavailable"), show_alert=True)
        return
    assert isinstance(job.payload, DrawPayload) and isinstance(job.result, DrawResult)
    if callback_data.action == "png":
        await _send_pngs(query, job, t, store)
        return
    if callback_data.action == "vary":
        payload = variations_payload(job.payload, int(job.result.seeds[callback_data.index]))
    else:
        payload = again_payload(job.payload)
    try:
        await enqueue_reply(query.message, query.from_user.id, payload, t, drawing, outbox,  # type: ignore[arg-type]
                       event_update)
    except DrawsPending as pending:
        await query.answer(t.plain(pending.key, **pending.values), show_alert=True)
        return
    await query.answer(t("draw_started_short"))


async def _send_pngs(query: CallbackQuery, job: Job, t: Texts, store: Storage) -> None:
    """The pictures as files, byte for byte what the engine drew: Telegram recompresses photos to JPEG."""
    assert isinstance(job.result, DrawResult) and isinstance(query.message, Message)
    try:
        files = [(await store.blobs.get(key), seed)
                 for key, seed in zip(job.result.images, job.result.seeds, strict=False)]
    except (NotFound, PathEscape):
        files = []
    if not files:
        await query.answer(t.plain("button_expired"), show_alert=True)  # kept RETENTION_DAYS, then gone
        return
    await query.answer()
    names = [f"kabina-{job.id}-{seed}.png" for _, seed in files]
    if len(files) == 1:
        (data, seed), name = files[0], names[0]
        await query.message.answer_document(BufferedInputFile(data, filename=name),
                                            caption=t("draw_png_caption", seed=seed))
        return
    await query.message.answer_media_group([
        InputMediaDocument(media=BufferedInputFile(data, filename=name), caption=t("draw_png_caption", seed=seed))
        for (data, seed), name in zip(files, names, strict=True)
    ])


def create_router() -> Router:
    # A new router per dispatcher: aiogram attaches a router to one parent only.
    router = Router(name=__name__)
    router.message.register(draw, Command("draw"))
    router.callback_query.register(draw_again, DrawAction.filter())
    return router
