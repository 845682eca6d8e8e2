"""Fixtures for the bot's tests: settings pointing at the fake Bot API, the real bot, its users, the stand-in."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.config import BotTuning, RateLimit
from storage import Settings, Storage, load_settings
from tests.fake_telegram import FakeTelegram
from tests.helpers import BotProcess, RunningBot, StandInWorker, User

FAST = BotTuning(
    progress_every_s=0.4,
    album_wait_s=0.4,
    chat_action_every_s=0.5,
    feed_poll_s=0.05,
    poll_timeout_s=1,
    draw_limit=RateLimit(4, 60.0),
    photo_limit=RateLimit(30, 60.0),
    sweep_every_s=0.2,
    poll_retry_s=0.05,
    poll_max_wait_s=0.2,
    busy_poll_s=0.05,
    delivery_retry_s=0.05,
    delivery_max_wait_s=0.5,
    keep_after_s=5.0,  # the offset visibly waits for a slow update here; test_restart shows the keeping
)


@pytest.fixture
def settings(fake: FakeTelegram, data_dir: Path) -> Settings:
    return load_settings(
        bot_token=fake.token, telegram_api_url=fake.base_url, data_dir=data_dir, min_photos=3, max_photos=6,
        daily_trainings=2, draw_steps=4,
    )


@pytest.fixture
def tuning() -> BotTuning:
    return FAST


@pytest.fixture
async def kabina(settings: Settings, tuning: BotTuning, fake: FakeTelegram) -> AsyncIterator[RunningBot]:
    running = RunningBot(settings, tuning)
    await running.start()
    await fake.wait_call("setMyCommands", count=4, timeout=10)
    yield running
    try:
        running.check_alive()
    finally:
        await running.stop()  # even after a crash: its database connection must not keep the process alive


@pytest.fixture
def ann(fake: FakeTelegram) -> User:
    return User(fake, fake.user(1001, "Ann", "en", "ann"))


@pytest.fixture
def boris(fake: FakeTelegram) -> User:
    return User(fake, fake.user(1002, "Boris", "ru", "boris"))


@pytest.fixture
def cleo(fake: FakeTelegram) -> User:
    return User(fake, fake.user(1003, "Cleo", "en", "cleo"))


@pytest.fixture
def worker(store: Storage) -> StandInWorker:
    return StandInWorker(store)


@pytest.fixture
def bot_process(settings: Settings) -> Iterator[BotProcess]:
    process = BotProcess(settings)
    yield process
    process.kill()
    assert "Traceback" not in process.output(), process.output()
    assert settings.require_bot_token() not in process.output()
