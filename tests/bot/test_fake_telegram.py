"""The fake Bot API server behaves like the real one where the bot relies on it."""

from __future__ import annotations

import io

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramBadRequest, TelegramRetryAfter
from aiogram.types import BufferedInputFile, InputMediaPhoto
from PIL import Image

from tests.fake_telegram import FakeTelegram
from tests.helpers import photo_bytes


@pytest.fixture
async def plain_bot(fake: FakeTelegram):
    bot = Bot(fake.token, session=AiohttpSession(api=TelegramAPIServer.from_base(fake.base_url)))
    yield bot
    await bot.session.close()


async def test_updates_are_served_until_acknowledged(fake: FakeTelegram, plain_bot: Bot) -> None:
    user = fake.user(5, "Eve")
    fake.send_text(user, "/start")
    first = await plain_bot.get_updates(timeout=1)
    again = await plain_bot.get_updates(timeout=0)
    assert [u.update_id for u in first] == [u.update_id for u in again] == [1]
    assert first[0].message.text == "/start"
    assert await plain_bot.get_updates(offset=2, timeout=0) == []
    assert fake.pending_updates() == 0


async def test_uploaded_album_images_can_be_opened(fake: FakeTelegram, plain_bot: Bot) -> None:
    media = [InputMediaPhoto(media=BufferedInputFile(photo_bytes(i, fmt="PNG"), f"{i}.png")) for i in range(3)]
    sent = await plain_bot.send_media_group(42, media=media)
    assert [m.message_id for m in sent] == [1, 2, 3]
    (call,) = fake.calls_of("sendMediaGroup", 42)
    assert [Image.open(io.BytesIO(b)).size for b in call.images()] == [(320, 320)] * 3


async def test_too_many_requests_and_unmodified_edits_are_refused(fake: FakeTelegram, plain_bot: Bot) -> None:
    message = await plain_bot.send_message(7, "hello")
    with pytest.raises(TelegramBadRequest, match="not modified"):
        await plain_bot.edit_message_text("hello", chat_id=7, message_id=message.message_id)
    fake.fail_next("sendMessage", retry_after=3)
    with pytest.raises(TelegramRetryAfter) as caught:
        await plain_bot.send_message(7, "again")
    assert caught.value.retry_after == 3


async def test_files_download_and_big_files_are_refused(fake: FakeTelegram, plain_bot: Bot) -> None:
    small = fake.register_file(b"abc")
    buffer = await plain_bot.download(small.file_id, destination=io.BytesIO())
    assert buffer.getvalue() == b"abc"
    big = fake.register_file(None, size=30 * 1024 * 1024)
    with pytest.raises(TelegramBadRequest, match="too big"):
        await plain_bot.get_file(big.file_id)
