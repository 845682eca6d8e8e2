"""Checks on incoming image bytes and the contact sheet of a photo set (Pillow only, never torch)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from PIL import Image, ImageDraw, ImageOps

from bot.services import Refusal
from engine.photos import PhotoRejected, inspect_photo

# Telegram's getFile refuses files above this size, so the bot refuses them before asking.
DOWNLOAD_LIMIT = 20 * 1024 * 1024
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".heic", ".heif", ".avif"}

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


_REASON_TEXT = {"too_small": "refused_small", "too_many_pixels": "refused_huge", "unsupported": "refused_unsupported"}


def inspect_image(data: bytes, resolution: int) -> ImageInfo:
    """Width and height after EXIF rotation, or ImageRefused naming the text that explains why not.

    The engine owns the rules (it trains on these photos at `resolution`, the base model's own, which the
    running engine publishes); its photo module is torch-free."""
    try:
        info = inspect_photo(data, resolution)
    except PhotoRejected as rejected:
        raise ImageRefused(_REASON_TEXT.get(rejected.reason, "refused_corrupt"), min_side=resolution // 2) from None
    return ImageInfo(info.width, info.height)


def looks_like_image(file_name: str | None, mime_type: str | None) -> bool:
    if mime_type and mime_type.lower().startswith("image/"):
        return True
    return bool(file_name) and Path(file_name or "").suffix.lower() in IMAGE_SUFFIXES


def contact_sheet(photos: list[bytes], thumb: int = 160, columns: int = 5) -> bytes:
    """A JPEG grid of small square thumbnails, numbered, so a user sees the whole set at a glance (an empty or
    unreadable photo gets an empty frame)."""
    rows = max(1, (len(photos) + columns - 1) // columns)
    cols = min(columns, max(1, len(photos)))
    sheet = Image.new("RGB", (cols * thumb, rows * thumb), "white")
    draw = ImageDraw.Draw(sheet)
    for index, data in enumerate(photos):
        x, y = (index % columns) * thumb, (index // columns) * thumb
        try:
            with Image.open(io.BytesIO(data)) as image:
                # A JPEG decodes straight at 1/2…1/8 size: a 40 MP photo becomes a thumbnail in milliseconds.
                image.draft("RGB", (thumb * 2, thumb * 2))
                image = ImageOps.exif_transpose(image) or image
                tile = ImageOps.fit(image.convert("RGB"), (thumb - 4, thumb - 4))
            sheet.paste(tile, (x + 2, y + 2))
        except (OSError, ValueError):
            draw.rectangle((x + 2, y + 2, x + thumb - 2, y + thumb - 2), outline="grey")
        draw.rectangle((x + 4, y + 4, x + 28, y + 22), fill="black")
        draw.text((x + 8, y + 6), str(index + 1), fill="white")
    out = io.BytesIO()
    sheet.save(out, format="JPEG", quality=85)
    return out.getvalue()
