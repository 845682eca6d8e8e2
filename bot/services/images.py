"""Checks on incoming image bytes and the contact sheet of a photo set (Pillow only, never torch)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from PIL import Image, ImageDraw, ImageOps

from bot.services import Refusal
from engine.photos import PhotoRejected, inspect_photo, thumbnail

# Telegram's getFile refuses files above this size, so the bot refuses them before asking.
DOWNLOAD_LIMIT = 20 * 1024 * 1024

# Decoding, inspecting and drawing pictures is CPU work: it runs on these few threads, never on the event loop, so a
# user's 40 MP photos never delay another user's /help; at most this many pictures are in memory decoded at once.
IMAGE_WORKERS = 2
_image_pool = ThreadPoolExecutor(IMAGE_WORKERS, thread_name_prefix="images")
T = TypeVar("T")


async def off_loop(work: Callable[..., T], *args: object) -> T:
    """Run picture work on the image threads (bounded: the rest wait their turn)."""
    return await asyncio.get_running_loop().run_in_executor(_image_pool, work, *args)


class ImageRefused(Refusal):
    """The bytes are not a usable training photo."""


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int


_REASON_TEXT = {"too_small": "refused_small", "too_many_pixels": "refused_huge", "unsupported": "refused_unsupported",
                "not_image": "refused_not_image", "too_complex": "refused_too_complex"}


def inspect_image(data: bytes, resolution: int) -> ImageInfo:
    """Width and height after EXIF rotation, or ImageRefused naming the text that explains why not.

    The engine owns the rules (it trains on these photos at `resolution`, the base model's own, which the
    running engine publishes); its photo module is torch-free."""
    try:
        info = inspect_photo(data, resolution)
    except PhotoRejected as rejected:
        raise ImageRefused(_REASON_TEXT.get(rejected.reason, "refused_corrupt"), min_side=resolution // 2) from None
    return ImageInfo(info.width, info.height)


class ContactSheet:
    """A JPEG grid of small square thumbnails, numbered, so a user sees the whole set at a glance.

    Photos are added one at a time (only one is ever in memory); each is decoded under the same bounds as
    intake, and an empty or unreadable photo gets an empty frame."""

    def __init__(self, count: int, thumb: int = 160, columns: int = 5) -> None:
        self.thumb, self.columns = thumb, columns
        rows = max(1, (count + columns - 1) // columns)
        cols = min(columns, max(1, count))
        self.sheet = Image.new("RGB", (cols * thumb, rows * thumb), "white")
        self._draw = ImageDraw.Draw(self.sheet)

    def add(self, index: int, data: bytes) -> None:
        thumb = self.thumb
        x, y = (index % self.columns) * thumb, (index // self.columns) * thumb
        try:
            tile = ImageOps.fit(thumbnail(data, thumb * 2), (thumb - 4, thumb - 4))
            self.sheet.paste(tile, (x + 2, y + 2))
        except PhotoRejected:
            self._draw.rectangle((x + 2, y + 2, x + thumb - 2, y + thumb - 2), outline="grey")
        self._draw.rectangle((x + 4, y + 4, x + 28, y + 22), fill="black")
        self._draw.text((x + 8, y + 6), str(index + 1), fill="white")

    def jpeg(self) -> bytes:
        out = io.BytesIO()
        self.sheet.save(out, format="JPEG", quality=85)
        return out.getvalue()

