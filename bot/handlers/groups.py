"""/share and /unshare in groups: owners make their models usable by everyone in the group."""

from __future__ import annotations

import html

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message

from bot.services.models import find_by_word, handles_for
from bot.texts import Texts
from storage import Model, Storage


def _pick(models: list[Model], word: str | None) -> list[Model]:
    if not word:
        return models
    return find_by_word(models, word)


async def _how_to_call(store: Storage, chat_id: int, bot_name: str, t: Texts) -> str:
    """Every shared model of the group with the exact words that call it; clashes get distinct handles."""
    shared = await store.shares.models_in_chat(chat_id)
    handles = handles_for(shared)
    lines = []
    for model in shared:
        owner = await store.users.get(model.owner_id)
        lines.append(t("share_line", bot=bot_name, handle=handles.get(model.id, model.token or ""),
                       cls=html.escape(model.class_word), name=html.escape(model.name),
                       owner=html.escape(owner.first_name if owner and owner.first_name else "?")))
    return "\n".join(lines)


async def share(message: Message, command: CommandObject, bot: Bot, t: Texts, store: Storage) -> None:
    if message.from_user is None:
        return
    own = [m for m in await store.models.list_for_owner(message.from_user.id) if m.status == "ready"]
    if not own:
        await message.reply(t("share_no_models"))
        return
    chosen = _pick(own, command.args)
    if len(chosen) != 1:
        choices = ", ".join(f"<code>/share {html.escape(m.token or m.name)}</code>" for m in own)
        await message.reply(t("share_which", choices=choices) if chosen or not command.args
                            else t("share_unknown", choices=choices))
        return
    model = chosen[0]
    await store.shares.share(model.id, message.chat.id, message.from_user.id)
    me = await bot.me()
    usage = await _how_to_call(store, message.chat.id, me.username or "", t)
    await message.reply(t("share_done", name=html.escape(model.name), usage=usage))


async def unshare(message: Message, command: CommandObject, t: Texts, store: Storage) -> None:
    if message.from_user is None:
        return
    shared = await store.shares.models_in_chat(message.chat.id)
    mine = [m for m in shared if m.owner_id == message.from_user.id]
    chosen = _pick(mine, command.args)
    if not chosen:
        others = _pick([m for m in shared if m.owner_id != message.from_user.id], command.args)
        await message.reply(t("unshare_not_owner") if others and command.args else t("unshare_nothing"))
        return
    if len(chosen) > 1 and command.args is None and len(mine) > 1:
        choices = ", ".join(f"<code>/unshare {html.escape(m.token or m.name)}</code>" for m in mine)
        await message.reply(t("share_which", choices=choices))
        return
    for model in chosen:
        await store.shares.unshare(model.id, message.chat.id)
    await message.reply(t("unshare_done", names=", ".join(html.escape(m.name) for m in chosen)))


def create_router() -> Router:
    # A new router per dispatcher: aiogram attaches a router to one parent only.
    router = Router(name=__name__)
    router.message.filter(F.chat.type.in_({"group", "supergroup"}))
    router.message.register(share, Command("share"))
    router.message.register(unshare, Command("unshare"))
    return router
