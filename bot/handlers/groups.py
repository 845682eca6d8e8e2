"""Groups: /share and /unshare (owners make their models usable by everyone there), and what happens to the shares
when the bot is removed from a group or the group becomes a supergroup."""

from __future__ import annotations

import contextlib
import logging

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import LEAVE_TRANSITION, ChatMemberUpdatedFilter, Command, CommandObject
from aiogram.types import ChatMemberUpdated, Message

from bot.formatting import Markup, code, fit_lines
from bot.services.models import find_by_word, handles_for
from bot.texts import Texts
from storage import Model, Storage

log = logging.getLogger(__name__)

# Room for the lines of a reply: Telegram refuses texts over 4,096 characters; the template around them is short.
LINES_CHARS = 3500


def _pick(models: list[Model], word: str | None) -> list[Model]:
    if not word:
        return models
    return find_by_word(models, word)


def _fit(lines: list[Markup], t: Texts) -> Markup:
    return fit_lines(lines, LINES_CHARS, lambda left_out: t("list_more", n=left_out))[0]


def _commands(command: str, models: list[Model], t: Texts) -> Markup:
    return _fit([code(f"/{command} {m.token or m.name}") for m in models], t)


async def _how_to_call(store: Storage, chat_id: int, bot_name: str, t: Texts) -> Markup:
    """Every shared model of the group with the exact words that call it; clashes get distinct handles."""
    shared = await store.shares.models_in_chat(chat_id)
    handles = handles_for(shared)
    lines = []
    for model in shared:
        owner = await store.users.get(model.owner_id)
        lines.append(t("share_line", bot=bot_name, handle=handles.get(model.id, model.token or ""),
                       cls=model.class_word, name=model.name,
                       owner=owner.first_name if owner and owner.first_name else "?"))
    return _fit(lines, t)


async def share(message: Message, command: CommandObject, bot: Bot, t: Texts, store: Storage) -> None:
    if message.from_user is None:
        return
    own = [m for m in await store.models.list_for_owner(message.from_user.id) if m.status == "ready"]
    if not own:
        await message.reply(t("share_no_models"))
        return
    chosen = _pick(own, command.args)
    if len(chosen) != 1:
        choices = _commands("share", own, t)
        await message.reply(t("share_which", choices=choices) if chosen or not command.args
                            else t("share_unknown", choices=choices))
        return
    model = chosen[0]
    await store.shares.share(model.id, message.chat.id, message.from_user.id)
    me = await bot.me()
    usage = await _how_to_call(store, message.chat.id, me.username or "", t)
    await message.reply(t("share_done", name=model.name, usage=usage))


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
        await message.reply(t("share_which", choices=_commands("unshare", mine, t)))
        return
    for model in chosen:  # the drawings asked through the share stop with it
        await store.lifecycle.end_share(model.id, message.chat.id)
    names = ", ".join(m.name for m in chosen)
    await message.reply(t("unshare_done", names=names if len(names) < LINES_CHARS else f"{len(chosen)}"))


async def bot_removed(event: ChatMemberUpdated, bot: Bot, store: Storage) -> None:
    """Removed from a group (kicked, or the group was left): its shares end now, and do not come back if the bot
    is added again; each owner hears which of their models were shared there."""
    ended = await store.lifecycle.end_chat(event.chat.id)
    by_owner: dict[int, list[Model]] = {}
    for model in ended:
        by_owner.setdefault(model.owner_id, []).append(model)
    title = event.chat.title or str(event.chat.id)
    for owner_id, models in by_owner.items():
        owner = await store.users.get(owner_id)
        t = Texts(owner.language if owner and owner.language else "en")
        names = ", ".join(m.name for m in models)
        # An owner who never opened a private chat with the bot cannot be written to; the shares end regardless.
        with contextlib.suppress(TelegramAPIError):
            await bot.send_message(owner_id, t("shares_ended_removed", title=title, names=names, n=len(models)))
    log.info("removed from chat %s: %d share(s) ended", event.chat.id, len(ended))


async def member_left(message: Message, t: Texts, store: Storage) -> None:
    """A model's owner left the group: their shares there end (with the drawings made through them), and the
    group hears why the word stopped working."""
    left = message.left_chat_member
    if left is None or left.is_bot:
        return  # the bot's own leaving is bot_removed's
    ended = await store.lifecycle.owner_left(left.id, message.chat.id)
    if ended:
        names = ", ".join(m.name for m in ended)
        await message.answer(t("shares_ended_owner_left", names=names if len(names) < LINES_CHARS else "…",
                               n=len(ended)))
        log.info("owner %s left chat %s: %d share(s) ended", left.id, message.chat.id, len(ended))


async def group_migrated(message: Message, store: Storage) -> None:
    """A group upgraded to a supergroup gets a new id; Telegram says so in both chats, and either message (whichever
    comes first) carries the shares over."""
    if message.migrate_to_chat_id:
        old, new = message.chat.id, message.migrate_to_chat_id
    else:
        old, new = int(message.migrate_from_chat_id or 0), message.chat.id
    await store.chats.upsert(new, type="supergroup", title=message.chat.title)
    moved = await store.lifecycle.move_chat(old, new)
    log.info("chat %s became %s: %d share(s) moved", old, new, moved)


def create_router() -> Router:
    # A new router per dispatcher: aiogram attaches a router to one parent only.
    router = Router(name=__name__)
    router.message.filter(F.chat.type.in_({"group", "supergroup"}))
    router.message.register(group_migrated, F.migrate_to_chat_id | F.migrate_from_chat_id)
    router.message.register(member_left, F.left_chat_member)
    router.message.register(share, Command("share"))
    router.message.register(unshare, Command("unshare"))
    router.my_chat_member.register(bot_removed, ChatMemberUpdatedFilter(member_status_changed=LEAVE_TRANSITION),
                                   F.chat.type.in_({"group", "supergroup"}))
    return router
