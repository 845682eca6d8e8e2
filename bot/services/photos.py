"""The photo set a user collects in the private chat: intake checks, saving, album summaries."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError

from bot.services.images import DOWNLOAD_LIMIT, ImageRefused, inspect_image, off_loop
from storage import AlbumPart, DuplicatePhoto, Storage

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    SAVED = "saved"
    DUPLICATE = "duplicate"
    REFUSED = "refused"
    FULL = "full"


@dataclass(frozen=True)
class IncomingImage:
    """What Telegram told us about a photo or document before we download it."""

    file_unique_id: str
    file_size: int | None
    file_name: str | None = None
    mime_type: str | None = None
    is_document: bool = False


@dataclass(frozen=True)
class IntakeResult:
    outcome: Outcome
    reason: str | None = None  # a text key when refused
    values: dict[str, object] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"outcome": self.outcome.value, "reason": self.reason, "values": dict(self.values)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IntakeResult:
        return cls(Outcome(data["outcome"]), data.get("reason"), dict(data.get("values") or {}))


class PhotoIntake:
    def __init__(self, store: Storage, max_photos: int) -> None:
        self.store = store
        self.max_photos = max_photos

    async def accept(
        self, owner_id: int, image: IncomingImage, download: Callable[[], Awaitable[bytes]]
    ) -> IntakeResult:
        """Every check that needs no download comes first: a refused 50 MB file costs nothing.

        What a file is, is decided by its bytes once downloaded: a file name or mime type is the sender's word."""
        if image.file_size is not None and image.file_size > DOWNLOAD_LIMIT:
            return IntakeResult(Outcome.REFUSED, "refused_too_big", {"limit_mb": DOWNLOAD_LIMIT // (1024 * 1024)})
        if await self.store.photos.knows_file(owner_id, image.file_unique_id):
            return IntakeResult(Outcome.DUPLICATE)
        if await self.store.photos.count(owner_id) >= self.max_photos:
            return IntakeResult(Outcome.FULL)
        try:
            data = await download()
        except FileTooBig:
            return IntakeResult(Outcome.REFUSED, "refused_too_big", {"limit_mb": DOWNLOAD_LIMIT // (1024 * 1024)})
        except FileUnavailable as exc:
            log.error("a photo of user %s was not downloaded: %s", owner_id, exc)
            return IntakeResult(Outcome.REFUSED, "refused_unavailable")
        try:
            resolution = (await self.store.engines.current()).resolution
            info = await off_loop(inspect_image, data, resolution)
        except ImageRefused as refused:
            return IntakeResult(Outcome.REFUSED, refused.key, dict(refused.values))
        try:
            await self.store.photos.add(
                owner_id, file_unique_id=image.file_unique_id, data=data, width=info.width, height=info.height
            )
        except DuplicatePhoto:
            return IntakeResult(Outcome.DUPLICATE)
        return IntakeResult(Outcome.SAVED)


class FileTooBig(Exception):
    """The Bot API server refused to hand the file out (over its download limit)."""


class FileUnavailable(Exception):
    """The file cannot be had, and trying again will not help (a local server's path the bot must not read)."""


AlbumDone = Callable[[Bot, int, list[AlbumPart]], Awaitable[None]]


class AlbumCollector:
    """Gathers the messages of one album (they arrive separately, sharing a media_group_id) into one reply.

    Each part and the summary it is owed live in the database: a bot killed after the photos were saved still
    sends the summary once it is back. The quiet time that closes an album is kept in memory only."""

    def __init__(self, store: Storage, wait_s: float, on_complete: AlbumDone) -> None:
        self.store = store
        self.wait_s = wait_s
        self._on_complete = on_complete
        self._timers: dict[tuple[int, str], asyncio.Task[None]] = {}
        self._bot: Bot | None = None

    def bind(self, bot: Bot) -> None:
        self._bot = bot

    async def add(self, chat_id: int, owner_id: int, group_id: str, update_id: int, result: IntakeResult, *,
                  reply_to: int | None, lang: str) -> None:
        """`reply_to` (the last message of the album) is what the summary replies to."""
        await self.store.albums.add_part(chat_id, group_id, update_id, owner_id=owner_id, result=result.to_json(),
                                         reply_to=reply_to, lang=lang)
        self._arm((chat_id, group_id), self.wait_s)

    async def resume(self) -> None:
        """At start: every album still owed its summary gets it after the usual quiet time."""
        for key in await self.store.albums.waiting():
            self._arm(key, self.wait_s)

    def _arm(self, key: tuple[int, str], wait_s: float, failures: int = 0) -> None:
        timer = self._timers.get(key)
        if timer is not None:
            timer.cancel()
        self._timers[key] = asyncio.get_running_loop().create_task(self._finish_later(key, wait_s, failures))

    async def _finish_later(self, key: tuple[int, str], wait_s: float, failures: int) -> None:
        await asyncio.sleep(wait_s)
        self._timers.pop(key, None)
        await self._report(key, failures)

    async def _report(self, key: tuple[int, str], failures: int = 0) -> None:
        try:
            parts = await self.store.albums.parts(*key)
            if parts and self._bot is not None:
                await self._on_complete(self._bot, key[0], parts)
            await self.store.albums.forget(*key)
        except asyncio.CancelledError:
            raise
        except (TelegramForbiddenError, TelegramBadRequest) as exc:  # the chat is gone: nobody to tell
            log.warning("an album in chat %s cannot be acknowledged: %s", key[0], exc.message)
            with contextlib.suppress(Exception):
                await self.store.albums.forget(*key)
        except Exception:
            log.exception("could not acknowledge an album; trying again")
            self._arm(key, min(300.0, max(self.wait_s, 2.0) * 2 ** failures), failures + 1)

    async def flush(self) -> None:
        """Acknowledge every album still waiting (at shutdown)."""
        for key, timer in list(self._timers.items()):
            self._timers.pop(key, None)
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer
            await self._report(key)
