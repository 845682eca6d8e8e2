"""/start and /help, and share links arriving as /start deep links."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.types import Message

from bot.services.options_help import OptionsHelp
from bot.texts import Texts
from storage import Settings, Storage

LINK_PREFIX = "m_"


async def start_with_share_link(message: Message, command: CommandObject, store: Storage, t: Texts) -> None:
    code = (command.args or "").removeprefix(LINK_PREFIX)
    model = await store.shares.redeem_link(code, message.chat.id)
    if model is None:
        await message.answer(t("link_invalid"))
    elif model.owner_id == message.chat.id:
        await message.answer(t("link_own_model"))
    else:
        owner = await store.users.get(model.owner_id)
        await message.answer(t(
            "link_redeemed", owner=owner.first_name if owner and owner.first_name else "?",
            name=model.name, trigger=model.trigger,
        ))


async def start(message: Message, t: Texts, settings: Settings, store: Storage) -> None:
    if message.chat.type == "private":
        options = OptionsHelp(await store.engines.current())
        await message.answer(t("help", min=settings.min_photos, max=settings.max_photos, options=options))
    else:
        await message.reply(t("help_group"))


def create_router() -> Router:
    # A new router per dispatcher: aiogram attaches a router to one parent only.
    router = Router(name=__name__)
    router.message.register(start_with_share_link, CommandStart(deep_link=True, magic=F.args.startswith(LINK_PREFIX)), F.chat.type == "private")
    router.message.register(start, CommandStart())
    router.message.register(start, Command("help"))
    return router
