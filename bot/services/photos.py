"""The photo set a user collects in the private chat: intake checks, saving, album summaries."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum

from bot.services.images import DOWNLOAD_LIMIT, ImageRefused, inspect_image, looks_like_image
from storage import DuplicatePhoto, Storage

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


class PhotoIntake:
    def __init__(self, store: Storage, max_photos: int) -> None:
        self.store = store
        self.max_photos = max_photos

    async def accept(
        self, owner_id: int, image: IncomingImage, download: Callable[[], Awaitable[bytes]]
    ) -> IntakeResult:
        """Every check that needs no download comes first: a refused 50 MB file costs nothing."""
        if image.is_document and not looks_like_image(image.file_name, image.mime_type):
            return IntakeResult(Outcome.REFUSED, "refused_not_image")
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
        try:
            resolution = (await self.store.engines.current()).resolution
            info = await asyncio.to_thread(inspect_image, data, resolution)
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


@dataclass
class _Album:
    owner_id: int
    context: object
    results: list[IntakeResult] = field(default_factory=list)
    timer: asyncio.Task[None] | None = None


AlbumDone = Callable[[int, int, list[IntakeResult], object], Awaitable[None]]


class AlbumCollector:
    """Gathers the messages of one album (they arrive separately, sharing a media_group_id) into one reply."""

    def __init__(self, wait_s: float, on_complete: AlbumDone) -> None:
        self.wait_s = wait_s
        self._on_complete = on_complete
        self._albums: dict[tuple[int, str], _Album] = {}

    def add(self, chat_id: int, owner_id: int, group_id: str, result: IntakeResult, context: object) -> None:
        """`context` (the last message of the album) is what the summary replies to."""
        key = (chat_id, group_id)
        album = self._albums.setdefault(key, _Album(owner_id, context))
        album.results.append(result)
        album.context = context
        if album.timer is not None:
            album.timer.cancel()
        album.timer = asyncio.get_running_loop().create_task(self._finish_later(key))

    async def _finish_later(self, key: tuple[int, str]) -> None:
        await asyncio.sleep(self.wait_s)
        album = self._albums.pop(key, None)
        if album is not None:
            await self._report(key[0], album)

    async def _report(self, chat_id: int, album: _Album) -> None:
        try:
            await self._on_complete(chat_id, album.owner_id, album.results, album.context)
        except Exception:
            log.exception("could not acknowledge an album")

    async def flush(self) -> None:
        """Acknowledge every album still waiting (at shutdown)."""
        for key, album in list(self._albums.items()):
            self._albums.pop(key, None)
            if album.timer is not None:
                album.timer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await album.timer
            await self._report(key[0], album)
