"""/models, /unshare and /forgetme in the private chat: the user's models page by page, where each is shared (with
buttons to stop each group share and to revoke links), default, export, delete, and forgetting everything.

Every button here acts only for the person pressing it, on their own models, in their own private chat: the
callback data names a model or a page, and `_own_model` / `_in_own_chat` check the rest."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command
from aiogram.types import BufferedInputFile, CallbackQuery, Message

from bot.formatting import Markup, join
from bot.handlers.start import LINK_PREFIX
from bot.keyboards import (
    ForgetAction,
    ModelAction,
    ModelsPage,
    ShareAction,
    confirm_delete_keyboard,
    forget_keyboard,
    model_keyboard,
    pages_keyboard,
    revoke_keyboard,
    stop_shares_keyboard,
)
from bot.texts import Texts
from storage import Chat, Model, NotFound, PathEscape, Storage
from storage.preferences import MAX_MODEL_NAME_CHARS

MODELS_PER_PAGE = 5
GROUPS_LISTED = 20  # a card names at most this many groups (each has its own button too), then "+N"


def _title(chat: Chat) -> str:
    return chat.title or str(chat.id)


def model_card(model: Model, default_id: int | None, t: Texts, groups: list[Chat], links: int, people: int) -> Markup:
    date = datetime.fromtimestamp(model.created_at, UTC).strftime("%Y-%m-%d")
    card = t(
        "model_card", name=model.name, cls=model.class_word, token=model.token or "—",
        status=t(f"status_{model.status}"), date=date,
        default=t("model_is_default") if model.id == default_id else "",
    )
    extra = [card]
    if groups:
        titles = ", ".join(_title(c) for c in groups[:GROUPS_LISTED])
        if len(groups) > GROUPS_LISTED:
            titles += f" +{len(groups) - GROUPS_LISTED}"
        extra.append(t("model_shared_in", groups=titles))
    if links or people:
        extra.append(t("model_links_open", links=links, people=people))
    return join(extra)


async def _card_and_keyboard(model: Model, t: Texts, store: Storage) -> tuple[Markup, object]:
    user = await store.users.get(model.owner_id)
    groups = await store.shares.groups_of(model.id)
    links, people = await store.shares.link_stats(model.id)
    text = model_card(model, user.default_model_id if user else None, t, groups, links, people)
    return text, model_keyboard(model, t, groups[:GROUPS_LISTED], links + people)


async def _send_page(message: Message, owner_id: int, page: int, t: Texts, store: Storage) -> None:
    models = await store.models.list_for_owner(owner_id)
    if not models:
        await message.answer(t("models_none"))
        return
    pages = (len(models) + MODELS_PER_PAGE - 1) // MODELS_PER_PAGE
    page = max(0, min(page, pages - 1))
    await message.answer(t("models_header", n=len(models)))
    for model in models[page * MODELS_PER_PAGE:(page + 1) * MODELS_PER_PAGE]:
        text, keyboard = await _card_and_keyboard(model, t, store)
        await message.answer(text, reply_markup=keyboard)  # type: ignore[arg-type]
    if pages > 1:
        await message.answer(t("models_page", page=page + 1, pages=pages), reply_markup=pages_keyboard(page, pages, t))


async def list_models(message: Message, t: Texts, store: Storage) -> None:
    await _send_page(message, message.chat.id, 0, t, store)


def _in_own_chat(query: CallbackQuery) -> Message | None:
    """The message under the pressed button, if it is in the presser's own private chat with the bot."""
    message = query.message
    if not isinstance(message, Message) or message.chat.id != query.from_user.id:
        return None
    return message


async def _own_model(query: CallbackQuery, model_id: int, store: Storage, t: Texts) -> tuple[Model, Message] | None:
    message = _in_own_chat(query)
    model = await store.models.get(model_id)
    if message is None or model is None or model.status == "deleted" or model.owner_id != query.from_user.id:
        await query.answer(t("button_not_yours"), show_alert=True)
        return None
    return model, message


async def show_page(query: CallbackQuery, callback_data: ModelsPage, t: Texts, store: Storage) -> None:
    message = _in_own_chat(query)
    if message is None:
        await query.answer(t("button_not_yours"), show_alert=True)
        return
    await query.answer()
    with contextlib.suppress(TelegramAPIError):
        await message.edit_reply_markup(reply_markup=None)
    await _send_page(message, query.from_user.id, callback_data.page, t, store)


async def model_action(
    query: CallbackQuery, callback_data: ModelAction, bot: Bot, t: Texts, store: Storage
) -> None:
    owned = await _own_model(query, callback_data.model_id, store, t)
    if owned is None:
        return
    model, message = owned
    action = callback_data.action
    if action == "default":
        await store.users.set_default_model(query.from_user.id, model.id)
        await query.answer(t("model_default_set"))
        text, keyboard = await _card_and_keyboard(model, t, store)
        await message.edit_text(text, reply_markup=keyboard)  # type: ignore[arg-type]
    elif action == "link":
        code = await store.shares.create_link(model.id)
        me = await bot.me()
        link = f"https://t.me/{me.username}?start={LINK_PREFIX}{code}"
        await query.answer()
        await message.answer(t("model_link", link=link, name=model.name), reply_markup=revoke_keyboard(model.id, t))
    elif action == "revoke":
        links, people = await store.shares.link_stats(model.id)
        revoked = await store.lifecycle.revoke_links(model.id)
        groups = await store.shares.groups_of(model.id)
        await query.answer(t("model_links_revoked", n=revoked), show_alert=True)
        remaining = (t("revoke_groups_remain", groups=", ".join(_title(c) for c in groups[:GROUPS_LISTED]))
                     if groups else t("revoke_no_groups"))
        await message.answer(t("model_links_revoked_detail", links=revoked or links, people=people, name=model.name,
                               groups=remaining))
    elif action == "export":
        key = model.kohya_key or model.weights_key
        try:
            data = await store.blobs.get(key) if key else None
        except (NotFound, PathEscape):
            data = None
        if data is None:
            await query.answer(t("model_no_file"), show_alert=True)
            return
        await query.answer()
        name = f"kabina-{model.class_word.replace(' ', '-')}-{model.token}-{model.id}.safetensors"
        await message.answer_document(BufferedInputFile(data, filename=name),
                                      caption=t("model_export_caption", token=model.token or ""))
    elif action == "rename":
        await store.preferences.update(query.from_user.id, renaming_model_id=model.id)
        await query.answer()
        await message.answer(t("rename_ask", name=model.name, max=MAX_MODEL_NAME_CHARS))
    elif action == "delete":
        await query.answer()
        await message.edit_reply_markup(reply_markup=confirm_delete_keyboard(model.id, t))
    elif action == "keep":
        await query.answer()
        _, keyboard = await _card_and_keyboard(model, t, store)
        await message.edit_reply_markup(reply_markup=keyboard)  # type: ignore[arg-type]
    elif action == "confirm":
        await delete_model(model, store)
        await query.answer(t("model_deleted_short"))
        await message.edit_text(t("model_deleted", name=model.name))
    else:
        await query.answer()


async def delete_model(model: Model, store: Storage) -> None:
    """Stops every job of the model (its training, anyone's drawings with it), then deletes it and its files."""
    await store.lifecycle.delete_model(model.id)


async def stop_share(query: CallbackQuery, callback_data: ShareAction, bot: Bot, t: Texts, store: Storage) -> None:
    owned = await _own_model(query, callback_data.model_id, store, t)
    if owned is None:
        return
    model, message = owned
    chat = next((c for c in await store.shares.groups_of(model.id) if c.id == callback_data.chat_id), None)
    if chat is None:
        await query.answer(t("share_already_stopped"), show_alert=True)
        return
    await store.lifecycle.end_share(model.id, chat.id)
    await query.answer(t.plain("share_stopped_short"))
    await message.answer(t("share_stopped", name=model.name, title=_title(chat)))
    with contextlib.suppress(TelegramAPIError):
        # The group hears it too: its members should not wonder why the word stopped working.
        owner = await store.users.get(model.owner_id)
        await bot.send_message(chat.id, Texts.for_user(None)("share_stopped_group", name=model.name,
                               owner=owner.first_name if owner and owner.first_name else "?"))
    with contextlib.suppress(TelegramAPIError):
        if callback_data.place == "list":
            await message.edit_reply_markup(reply_markup=stop_shares_keyboard(
                await _group_shares(query.from_user.id, store), t))
        else:
            _, keyboard = await _card_and_keyboard(model, t, store)
            await message.edit_reply_markup(reply_markup=keyboard)  # type: ignore[arg-type]


async def _group_shares(owner_id: int, store: Storage) -> list[tuple[Model, Chat]]:
    shares = []
    for model in await store.models.list_for_owner(owner_id):
        shares += [(model, chat) for chat in await store.shares.groups_of(model.id)]
    return shares


async def unshare_private(message: Message, t: Texts, store: Storage) -> None:
    """/unshare in the private chat: every group share of every model, each with its own stop button."""
    shares = await _group_shares(message.chat.id, store)
    if not shares:
        await message.answer(t("unshare_private_none"))
        return
    # Telegram allows 100 buttons a keyboard; a user with more group shares stops them from /models cards.
    await message.answer(t("unshare_private_header", n=len(shares)), reply_markup=stop_shares_keyboard(shares[:90], t))


async def forget_me(message: Message, t: Texts, store: Storage) -> None:
    models = await store.models.list_for_owner(message.chat.id)
    photos = await store.photos.count(message.chat.id)
    await message.answer(t("forget_ask", models=len(models), photos=photos), reply_markup=forget_keyboard(t))


async def forget_action(query: CallbackQuery, callback_data: ForgetAction, t: Texts, store: Storage) -> None:
    message = _in_own_chat(query)
    if message is None:
        await query.answer(t("button_not_yours"), show_alert=True)
        return
    if callback_data.action != "confirm":
        await query.answer()
        await message.edit_text(t("forget_kept"))
        return
    report = await store.lifecycle.forget_user(query.from_user.id)
    await query.answer()
    await message.edit_text(t("forget_done", models=report.models, photos=report.photos))


def create_router() -> Router:
    # A new router per dispatcher: aiogram attaches a router to one parent only.
    router = Router(name=__name__)
    router.message.register(list_models, Command("models"), F.chat.type == "private")
    router.message.register(unshare_private, Command("unshare"), F.chat.type == "private")
    router.message.register(forget_me, Command("forgetme"), F.chat.type == "private")
    router.callback_query.register(model_action, ModelAction.filter())
    router.callback_query.register(stop_share, ShareAction.filter())
    router.callback_query.register(show_page, ModelsPage.filter())
    router.callback_query.register(forget_action, ForgetAction.filter())
    return router
