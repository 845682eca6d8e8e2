"""Renaming a model: the ✏️ button under a /models card asks, the owner's next text message is the new name."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.dispatcher.event.bases import SkipHandler
from aiogram.types import Message

from bot.texts import Texts
from storage import Storage
from storage.preferences import MAX_MODEL_NAME_CHARS


def valid_name(text: str) -> str | None:
    """One line of printable text, 1 to MAX_MODEL_NAME_CHARS characters after trimming; None otherwise."""
    name = " ".join(text.split())
    if "\n" in text.strip() or not name or len(name) > MAX_MODEL_NAME_CHARS or not name.isprintable():
        return None
    return name


async def renamed(message: Message, t: Texts, store: Storage) -> None:
    prefs = await store.preferences.get(message.chat.id)
    if prefs.renaming_model_id is None:
        raise SkipHandler  # not waiting for a name: the message is for the other handlers
    model = await store.models.get(prefs.renaming_model_id)
    if model is None or model.owner_id != message.chat.id or model.status == "deleted":
        await store.preferences.update(message.chat.id, renaming_model_id=None)
        raise SkipHandler
    name = valid_name(message.text or "")
    if name is None:
        await message.reply(t("rename_bad", max=MAX_MODEL_NAME_CHARS))
        return
    await store.models.rename(model.id, name)
    await store.preferences.update(message.chat.id, renaming_model_id=None)
    await message.reply(t("rename_done", old=model.name, name=name))


def create_router() -> Router:
    # A new router per dispatcher: aiogram attaches a router to one parent only.
    router = Router(name=__name__)
    router.message.register(renamed, F.chat.type == "private", F.text, ~F.text.startswith("/"))
    return router
