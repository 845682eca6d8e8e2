"""Fixtures for the bot's tests: the fake Bot API server, real storage on a temp DATA_DIR, the real bot."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bot.app import create_bot, create_dispatcher, run_bot
from bot.config import BotTuning, RateLimit
from storage import Job, Model, Settings, Storage, load_settings
from tests.fake_telegram import FakeTelegram

ROOT = Path(__file__).resolve().parents[2]

for _name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_name, "1")

FAST = BotTuning(
    progress_every_s=0.4,
    album_wait_s=0.4,
    chat_action_every_s=0.5,
    feed_poll_s=0.05,
    poll_timeout_s=1,
    draw_limit=RateLimit(4, 60.0),
    photo_limit=RateLimit(30, 60.0),
)


def photo_bytes(seed: int, size: tuple[int, int] = (320, 320), fmt: str = "JPEG") -> bytes:
    """A small picture whose content depends on the seed (so different seeds are different photos)."""
    rng = random.Random(seed)
    image = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    pixels = image.load()
    for _ in range(400):
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        pixels[x, y] = tuple(rng.randrange(256) for _ in range(3))
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def settings(fake: FakeTelegram, data_dir: Path) -> Settings:
    return load_settings(
        bot_token=fake.token, telegram_api_url=fake.base_url, data_dir=data_dir, min_photos=3, max_photos=6,
        daily_trainings=2, draw_steps=4,
    )


@pytest.fixture
async def store(data_dir: Path) -> AsyncIterator[Storage]:
    opened = await Storage.open(data_dir)
    yield opened
    await opened.close()


class RunningBot:
    """The real bot (aiogram Bot + Dispatcher + our polling and delivery) as a task in the test's loop."""

    def __init__(self, settings: Settings, tuning: BotTuning) -> None:
        self.settings = settings
        self.tuning = tuning
        self._task: asyncio.Task[None] | None = None
        self._store: Storage | None = None
        self._bot: Any = None

    async def start(self) -> None:
        self._store = await Storage.open(self.settings.data_dir)
        self._bot = create_bot(self.settings.require_bot_token(), self.settings.telegram_api_url, self.tuning)
        dp = create_dispatcher(self._store, self.settings, self.tuning)
        self._task = asyncio.create_task(run_bot(self._bot, dp, self._store, self.tuning))

    async def stop(self) -> None:
        """Stops abruptly, like a killed process: nothing is flushed or acknowledged on the way out."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self._bot is not None:
            await self._bot.session.close()
            self._bot = None
        if self._store is not None:
            await self._store.close()
            self._store = None

    def check_alive(self) -> None:
        if self._task is not None and self._task.done():
            self._task.result()


@pytest.fixture
def tuning() -> BotTuning:
    return FAST


@pytest.fixture
async def kabina(settings: Settings, tuning: BotTuning, fake: FakeTelegram) -> AsyncIterator[RunningBot]:
    running = RunningBot(settings, tuning)
    await running.start()
    await fake.wait_call("setMyCommands", count=4, timeout=10)
    yield running
    running.check_alive()
    await running.stop()


@dataclass
class User:
    """A Telegram user of the tests."""

    fake: FakeTelegram
    data: dict

    @property
    def id(self) -> int:
        return int(self.data["id"])

    def say(self, text: str, chat: dict | None = None) -> dict:
        return self.fake.send_text(self.data, text, chat=chat)

    def photo(self, data: bytes, **kw: Any) -> dict:
        return self.fake.send_photo(self.data, data, **kw)

    def album(self, images: list[bytes]) -> list[dict]:
        return self.fake.send_album(self.data, images)

    def replies(self) -> list[str]:
        return self.fake.texts(self.id)


@pytest.fixture
def ann(fake: FakeTelegram) -> User:
    return User(fake, fake.user(1001, "Ann", "en", "ann"))


@pytest.fixture
def boris(fake: FakeTelegram) -> User:
    return User(fake, fake.user(1002, "Boris", "ru", "boris"))


@pytest.fixture
def cleo(fake: FakeTelegram) -> User:
    return User(fake, fake.user(1003, "Cleo", "en", "cleo"))


async def wait_reply(fake: FakeTelegram, chat_id: int, contains: str, timeout: float = 10.0) -> str:
    """The first message text sent to the chat containing `contains` (HTML tags included)."""

    def found() -> str | None:
        return next((text for text in fake.texts(chat_id) if contains in text), None)

    return await fake.wait_for(found, timeout, what=f"a reply with {contains!r} in chat {chat_id}")


async def make_ready_model(
    store: Storage, owner_id: int, token: str = "sks", class_word: str = "dog", seed: int = 0
) -> Model:
    """A trained-looking model: photos, a weights file and samples written through storage, status ready."""
    await store.users.upsert(owner_id, first_name=f"user{owner_id}")
    photo_ids = []
    for i in range(3):
        photo = await store.photos.add(owner_id, file_unique_id=f"seed-{owner_id}-{seed}-{i}",
                                       data=photo_bytes(10_000 + owner_id * 100 + seed * 10 + i), width=320, height=320)
        photo_ids.append(photo.id)
    model = await store.models.create(owner_id, name=class_word, class_word=class_word, params={},
                                      photo_ids=photo_ids, token=token)
    folder = store.files.model_dir(model.id)
    weights = store.files.write_atomic(folder / "lora.safetensors", b"weights-of-model-%d" % model.id)
    sample = store.files.write_atomic(folder / "sample-0.png", photo_bytes(77, fmt="PNG"))
    await store.models.mark_ready(model.id, weights_path=weights, kohya_path=weights, sample_paths=[sample])
    await store.photos.clear(owner_id)
    ready = await store.models.get(model.id)
    assert ready is not None
    return ready


class StandInWorker:
    """Plays the engine's side of the queue contract for tests that must not need torch: it claims a job,
    reports progress and completes it with real image files written through storage."""

    def __init__(self, store: Storage, worker_id: str = "test-worker") -> None:
        self.store = store
        self.worker_id = worker_id

    async def claim(self, kind: str, timeout: float = 10.0) -> Job:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = await self.store.jobs.claim(self.worker_id, kinds=[kind])
            if job is not None:
                return job
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {kind} job was queued")

    async def finish_draw(self, job: Job) -> list[int]:
        n = int(job.payload["n"])
        seeds = job.payload.get("seeds") or [random.randrange(2**32) for _ in range(n)]
        folder = self.store.files.job_dir(job.id)
        images = [str(self.store.files.write_atomic(folder / f"{i}.png", photo_bytes(seeds[i] % 1000, (64, 64), "PNG")))
                  for i in range(n)]
        await self.store.jobs.complete(job.id, self.worker_id, {
            "images": images, "seeds": seeds, "prompt_truncated": False, "prompt_tokens": 8,
        })
        return seeds

    async def finish_training(self, job: Job, steps: int = 5, token: str = "sks", step_s: float = 0.02) -> None:
        model_id = int(job.payload["model_id"])
        await self.store.models.set_token(model_id, token)
        await self.store.models.set_status(model_id, "training")
        for step in range(1, steps + 1):
            await self.store.jobs.report_progress(job.id, self.worker_id, {
                "stage": "training", "step": step, "total": steps, "loss": 0.1, "eta_s": float(steps - step),
            })
            await asyncio.sleep(step_s)
        folder = self.store.files.model_dir(model_id)
        weights = self.store.files.write_atomic(folder / "lora.safetensors", b"weights")
        samples = [self.store.files.write_atomic(folder / f"sample-{i}.png", photo_bytes(500 + i, (64, 64), "PNG"))
                   for i in range(2)]
        await self.store.models.mark_ready(model_id, weights_path=weights, kohya_path=weights, sample_paths=samples)
        model = await self.store.models.get(model_id)
        assert model is not None
        await self.store.jobs.complete(job.id, self.worker_id, {
            "model_id": model_id, "token": token, "class_word": model.class_word, "weights_path": str(weights),
            "kohya_path": str(weights), "sample_paths": [str(s) for s in samples], "steps": steps, "seconds": 3.0,
        })


@pytest.fixture
def worker(store: Storage) -> StandInWorker:
    return StandInWorker(store)


class BotProcess:
    """`python -m bot` as a real process that the test can kill -9 and start again."""

    def __init__(self, settings: Settings) -> None:
        self.env = {
            **os.environ,
            "BOT_TOKEN": settings.require_bot_token(),
            "TELEGRAM_API_URL": str(settings.telegram_api_url),
            "DATA_DIR": str(settings.data_dir),
            "MIN_PHOTOS": "3",
            "MAX_PHOTOS": "6",
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.log = Path(settings.data_dir).parent / "bot.log"

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "bot"], cwd=ROOT, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture
def bot_process(settings: Settings) -> Iterator[BotProcess]:
    process = BotProcess(settings)
    yield process
    process.kill()
    assert "Traceback" not in process.output(), process.output()
    assert settings.require_bot_token() not in process.output()


async def started(fake: FakeTelegram, process: BotProcess, menus_before: int) -> None:
    process.start()
    await fake.wait_call("setMyCommands", count=menus_before + 4, timeout=30)
