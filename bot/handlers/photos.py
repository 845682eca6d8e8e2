"""Collecting the training photos in the private chat: photos, albums, image files, /photos and /clear."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from weakref import WeakKeyDictionary

from aiogram import Bot, F, Router
from aiogram.filters import Command
from aiogram.types import BufferedInputFile, Message, ReplyParameters, Update

from bot.services.downloads import download_capped
from bot.services.images import DOWNLOAD_LIMIT, ContactSheet, off_loop
from bot.services.photos import (
    AlbumCollector,
    AlbumDone,
    IncomingImage,
    IntakeResult,
    Outcome,
    PhotoIntake,
)
from bot.texts import Texts
from storage import AlbumPart, NotFound, Settings, Storage

# Downloads at once (each up to 20 MB in memory); the others wait their turn.
DOWNLOADS_AT_ONCE = 4
_download_slots: WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = WeakKeyDictionary()


def _download_slot() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    if loop not in _download_slots:
        _download_slots[loop] = asyncio.Semaphore(DOWNLOADS_AT_ONCE)
    return _download_slots[loop]


def incoming(message: Message) -> IncomingImage:
    if message.photo:
        largest = message.photo[-1]
        return IncomingImage(largest.file_unique_id, largest.file_size)
    doc = message.document
    assert doc is not None
    return IncomingImage(doc.file_unique_id, doc.file_size, doc.file_name, doc.mime_type, is_document=True)


def downloader(bot: Bot, file_id: str) -> Callable[[], Awaitable[bytes]]:
    async def download() -> bytes:
        # Capped by the bytes received (a local Bot API server has no 20 MB limit of its own); a few at a time.
        async with _download_slot():
            return await download_capped(bot, file_id, DOWNLOAD_LIMIT)

    return download


def summary(t: Texts, results: list[IntakeResult], count: int, settings: Settings) -> str:
    """One acknowledgement for one photo or a whole album."""
    lines = []
    saved = sum(r.outcome == Outcome.SAVED for r in results)
    if saved:
        lines.append(t("photos_saved", n=saved))
    duplicates = sum(r.outcome == Outcome.DUPLICATE for r in results)
    if duplicates:
        lines.append(t("photos_duplicate", n=duplicates))
    full = sum(r.outcome == Outcome.FULL for r in results)
    if full:
        lines.append(t("photos_full", n=full, max=settings.max_photos))
    for r in results:
        if r.outcome == Outcome.REFUSED and r.reason:
            lines.append(t(r.reason, **r.values))
    if count >= settings.min_photos:
        lines.append(t("photos_count_ready", count=count, max=settings.max_photos))
    else:
        lines.append(t("photos_count", count=count, min=settings.min_photos, max=settings.max_photos))
    return "\n".join(lines)


async def photo_received(
    message: Message, bot: Bot, event_update: Update, t: Texts, store: Storage, settings: Settings,
    intake: PhotoIntake, albums: AlbumCollector,
) -> None:
    file_id = message.photo[-1].file_id if message.photo else message.document.file_id  # type: ignore[union-attr]
    result = await intake.accept(message.chat.id, incoming(message), downloader(bot, file_id))
    if message.media_group_id:
        # Recorded before the update counts as handled: the summary is owed even if the bot dies now.
        await albums.add(message.chat.id, message.chat.id, message.media_group_id, event_update.update_id, result,
                         reply_to=message.message_id, lang=t.language)
        return
    count = await store.photos.count(message.chat.id)
    await message.reply(summary(t, [result], count, settings))


def album_reporter(store: Storage, settings: Settings) -> AlbumDone:
    """What the AlbumCollector calls once an album is complete: one reply for all its photos."""

    async def report(bot: Bot, chat_id: int, parts: list[AlbumPart]) -> None:
        last = parts[-1]
        t = Texts(last.lang)
        count = await store.photos.count(last.owner_id)
        reply = ReplyParameters(message_id=last.reply_to, allow_sending_without_reply=True) if last.reply_to else None
        text = summary(t, [IntakeResult.from_json(p.result) for p in parts], count, settings)
        await bot.send_message(chat_id, text, reply_parameters=reply)

    return report


async def _saved_bytes(store: Storage, key: str) -> bytes:
    try:
        return await store.blobs.get(key)
    except NotFound:
        return b""  # gone meanwhile (a /clear in another chat action): an empty frame


async def show_photos(message: Message, t: Texts, store: Storage, settings: Settings) -> None:
    photos = await store.photos.list(message.chat.id)
    if not photos:
        await message.answer(t("photos_none", min=settings.min_photos))
        return
    # One photo in memory at a time, shrunk on the image threads (never on the event loop) under intake's bounds.
    sheet = ContactSheet(len(photos))
    for index, photo in enumerate(photos):
        await off_loop(sheet.add, index, await _saved_bytes(store, photo.blob_key))
    jpeg = await off_loop(sheet.jpeg)
    caption = t("photos_sheet", count=len(photos), min=settings.min_photos, max=settings.max_photos)
    await message.answer_photo(BufferedInputFile(jpeg, filename="photos.jpg"), caption=caption)


async def clear_photos(message: Message, t: Texts, store: Storage) -> None:
    removed = await store.photos.clear(message.chat.id)
    await message.answer(t("photos_cleared", n=removed) if removed else t("photos_none_to_clear"))


def create_router() -> Router:
    # A new router per dispatcher: aiogram attaches a router to one parent only.
    router = Router(name=__name__)
    router.message.filter(F.chat.type == "private")
    router.message.register(photo_received, F.photo | F.document)
    router.message.register(show_photos, Command("photos"))
    router.message.register(clear_photos, Command("clear"))
    return router
