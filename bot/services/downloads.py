"""Downloading a user's file with a cap on the bytes actually received, not only on the size Telegram declared.

The cloud Bot API refuses files over 20 MB itself; a local Bot API server (TELEGRAM_API_LOCAL) hands out files of
any size, and a declared `file_size` is only a claim. So the download stops, and is refused, the moment more than
`limit` bytes have arrived, whether they come over HTTP or from the local server's disk."""

from __future__ import annotations

import asyncio

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest

from bot.local_files import read_local_file

# The intake's own refusal: over the limit, whether declared, refused by the Bot API server or seen arriving.
from bot.services.photos import FileTooBig

CHUNK = 64 * 1024


async def download_capped(bot: Bot, file_id: str, limit: int, timeout_s: int = 60) -> bytes:
    """All the file's bytes, or FileTooBig as soon as more than `limit` of them arrive."""
    try:
        file = await bot.get_file(file_id)
    except TelegramBadRequest as exc:
        if "too big" in exc.message.lower():
            raise FileTooBig from None
        raise
    if file.file_size is not None and file.file_size > limit:
        raise FileTooBig
    if file.file_path is None:
        raise FileTooBig  # the server keeps the file to itself: in practice, one over its own limit
    api = bot.session.api
    if api.is_local:
        return await asyncio.to_thread(read_local_file, api, file.file_path, limit)
    chunks = bot.session.stream_content(url=api.file_url(bot.token, file.file_path), timeout=timeout_s,
                                        chunk_size=CHUNK, raise_for_status=True)
    received = bytearray()
    try:
        async for chunk in chunks:
            received += chunk
            if len(received) > limit:
                raise FileTooBig
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]
    return bytes(received)


__all__ = ["FileTooBig", "download_capped"]
