"""/draw in private chats and groups, and the "again" / "variations" buttons under results."""

from __future__ import annotations

from aiogram import Router
from aiogram.enums import ChatAction
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, Message, Update

from bot.keyboards import DrawAction
from bot.services.drawing import (
    DrawInputError,
    DrawService,
    again_payload,
    draw_payload,
    parse_draw,
    resolve_model,
    variations_payload,
)
from bot.texts import Texts
from storage import DrawPayload, DrawResult, Storage


async def _enqueue(
    message: Message, user_id: int, payload: DrawPayload, t: Texts, store: Storage, drawing: DrawService,
    update: Update,
) -> None:
    job = await drawing.enqueue(user_id, message.chat.id, payload, update.update_id)
    await message.bot.send_chat_action(message.chat.id, ChatAction.UPLOAD_PHOTO)  # type: ignore[union-attr]
    position = await store.jobs.position(job.id)
    status = await message.reply(t("draw_queued", position=position) if position else t("draw_started"))
    reply_to = message.message_id if message.chat.type != "private" else None
    await store.deliveries.save(job.id, "request", chat_id=message.chat.id, state="noted",
                                data={"lang": t.language, "reply_to": reply_to})
    await store.deliveries.save(job.id, "status", chat_id=message.chat.id, message_id=status.message_id,
                                state="sent")


async def draw(
    message: Message, command: CommandObject, event_update: Update, t: Texts, store: Storage, drawing: DrawService
) -> None:
    if message.from_user is None:
        return
    user_id, chat_id = message.from_user.id, message.chat.id
    try:
        prompt, options = parse_draw(command.args or "", drawing.default_steps)
        models = await drawing.usable(user_id, chat_id)
        if not models:
            raise DrawInputError(await _why_no_models(message, store))
        user = await store.users.get(user_id)
        resolved = resolve_model(prompt, models, user.default_model_id if user else None)
    except DrawInputError as problem:
        await message.reply(t(problem.key, **problem.values))
        return
    payload = draw_payload(resolved.model, resolved.prompt, options)
    await _enqueue(message, user_id, payload, t, store, drawing, event_update)


async def _why_no_models(message: Message, store: Storage) -> str:
    if message.chat.type != "private":
        return "draw_no_models_group"
    own = await store.models.list_for_owner(message.chat.id)
    return "draw_model_training" if any(m.status in {"queued", "training"} for m in own) else "draw_no_models"


async def draw_again(
    query: CallbackQuery, callback_data: DrawAction, event_update: Update, t: Texts, store: Storage,
    drawing: DrawService,
) -> None:
    job = await store.jobs.get(callback_data.job_id)
    message = query.message
    if job is None or not isinstance(job.result, DrawResult) or not isinstance(job.payload, DrawPayload) \
            or not isinstance(message, Message):
        await query.answer(t("button_expired"), show_alert=True)
        return
    # The button may be pressed by anyone in a group; they may only draw with models usable by them there.
    usable = {m.id for m in await drawing.usable(query.from_user.id, message.chat.id)}
    if job.model_id not in usable:
        await query.answer(t("button_not_yours"), show_alert=True)
        return
    if callback_data.action == "vary":
        seeds = job.result.seeds
        if not 0 <= callback_data.index < len(seeds):
            await query.answer(t("button_expired"), show_alert=True)
            return
        payload = variations_payload(job.payload, int(seeds[callback_data.index]))
    else:
        payload = again_payload(job.payload)
    await query.answer(t("draw_started_short"))
    await _enqueue(message, query.from_user.id, payload, t, store, drawing, event_update)


def create_router() -> Router:
    # A new router per dispatcher: aiogram attaches a router to one parent only.
    router = Router(name=__name__)
    router.message.register(draw, Command("draw"))
    router.callback_query.register(draw_again, DrawAction.filter())
    return router
