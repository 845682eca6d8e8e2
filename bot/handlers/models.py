"""/models: the user's models with buttons to make default, share by link, export and delete."""

from __future__ import annotations

import html
from datetime import UTC, datetime
from pathlib import Path

from aiogram import Bot, F, Router
from aiogram.filters import Command
from aiogram.types import CallbackQuery, FSInputFile, Message

from bot.handlers.start import LINK_PREFIX
from bot.keyboards import ModelAction, confirm_delete_keyboard, model_keyboard, revoke_keyboard
from bot.texts import Texts
from storage import Model, Storage

MODELS_SHOWN = 8


def model_card(model: Model, default_id: int | None, t: Texts) -> str:
    date = datetime.fromtimestamp(model.created_at, UTC).strftime("%Y-%m-%d")
    return t(
        "model_card", name=html.escape(model.name), cls=html.escape(model.class_word),
        token=html.escape(model.token or "—"), status=t(f"status_{model.status}"), date=date,
        default=t("model_is_default") if model.id == default_id else "",
    )


async def list_models(message: Message, t: Texts, store: Storage) -> None:
    models = await store.models.list_for_owner(message.chat.id)
    if not models:
        await message.answer(t("models_none"))
        return
    user = await store.users.get(message.chat.id)
    default_id = user.default_model_id if user else None
    await message.answer(t("models_header", n=len(models)))
    for model in models[:MODELS_SHOWN]:
        await message.answer(model_card(model, default_id, t), reply_markup=model_keyboard(model, t))


async def _own_model(query: CallbackQuery, model_id: int, store: Storage, t: Texts) -> Model | None:
    model = await store.models.get(model_id)
    if model is None or model.status == "deleted" or model.owner_id != query.from_user.id:
        await query.answer(t("button_not_yours"), show_alert=True)
        return None
    return model


async def model_action(
    query: CallbackQuery, callback_data: ModelAction, bot: Bot, t: Texts, store: Storage
) -> None:
    model = await _own_model(query, callback_data.model_id, store, t)
    message = query.message
    if model is None or not isinstance(message, Message):
        return
    action = callback_data.action
    if action == "default":
        await store.users.set_default_model(query.from_user.id, model.id)
        await query.answer(t("model_default_set"))
        await message.edit_text(model_card(model, model.id, t), reply_markup=model_keyboard(model, t))
    elif action == "link":
        code = await store.shares.create_link(model.id)
        me = await bot.me()
        link = f"https://t.me/{me.username}?start={LINK_PREFIX}{code}"
        await query.answer()
        await message.answer(t("model_link", link=link, name=html.escape(model.name)),
                             reply_markup=revoke_keyboard(model.id, t))
    elif action == "revoke":
        revoked = await store.shares.revoke_links(model.id)
        await query.answer(t("model_links_revoked", n=revoked), show_alert=True)
    elif action == "export":
        path = model.kohya_path or model.weights_path
        if not path or not Path(path).is_file():
            await query.answer(t("model_no_file"), show_alert=True)
            return
        await query.answer()
        name = f"kabina-{model.class_word.replace(' ', '-')}-{model.token}-{model.id}.safetensors"
        await message.answer_document(FSInputFile(store.files.inside(path), filename=name),
                                      caption=t("model_export_caption", token=html.escape(model.token or "")))
    elif action == "delete":
        await query.answer()
        await message.edit_reply_markup(reply_markup=confirm_delete_keyboard(model.id, t))
    elif action == "keep":
        await query.answer()
        await message.edit_reply_markup(reply_markup=model_keyboard(model, t))
    elif action == "confirm":
        for job in await store.jobs.active_for_owner(model.owner_id, "train"):
            if job.model_id == model.id:
                await store.jobs.cancel(job.id)
        await store.models.delete(model.id)
        await query.answer(t("model_deleted_short"))
        await message.edit_text(t("model_deleted", name=html.escape(model.name)))
    else:
        await query.answer()


def create_router() -> Router:
    # A new router per dispatcher: aiogram attaches a router to one parent only.
    router = Router(name=__name__)
    router.message.register(list_models, Command("models"), F.chat.type == "private")
    router.callback_query.register(model_action, ModelAction.filter())
    return router
