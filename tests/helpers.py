"""Test scaffolding shared by the whole suite: pictures, models made through storage, waiting, the stand-in engine,
the real bot in-process or as a process. Fixtures live in the conftest files; everything they build is here."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import io
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from storage import (
    DrawPayload,
    DrawResult,
    Job,
    JobCancelled,
    Model,
    Progress,
    Settings,
    Storage,
    TrainPayload,
    TrainResult,
)

if TYPE_CHECKING:
    from bot.config import BotTuning
    from tests.fake_telegram import FakeTelegram

ROOT = Path(__file__).resolve().parents[1]


# --- pictures ------------------------------------------------------------------------------------------------------


def photo_image(seed: int, size: tuple[int, int] = (320, 320)) -> Image.Image:
    """A photo stand-in with real structure (smooth blobs plus grain), distinct per seed, never a near-duplicate
    of another seed's (the engine's dHash check would refuse flat pictures as copies of each other)."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    channels = []
    for _ in range(3):
        fx, fy, phase = rng.uniform(1, 6, 2).tolist() + [rng.uniform(0, 6.28)]
        channels.append(np.sin(xx * fx * 6.28 + phase) * np.cos(yy * fy * 6.28))
    picture = (np.stack(channels, -1) * 0.45 + 0.5 + rng.normal(0, 0.04, (h, w, 3))).clip(0, 1)
    return Image.fromarray((picture * 255).astype("uint8"))


def photo_bytes(seed: int, size: tuple[int, int] = (320, 320), fmt: str = "JPEG") -> bytes:
    out = io.BytesIO()
    photo_image(seed, size).save(out, format=fmt)
    return out.getvalue()


def scan_bomb(side: int = 2000, repeats: int = 5000) -> bytes:
    """A hostile progressive JPEG: one cheap AC scan (with its Huffman table) repeated `repeats` times.

    Every decoder walks every block of the picture once per scan, so a few hundred kB cost seconds of CPU; libjpeg
    only warns about the repeated scans."""
    out = io.BytesIO()
    Image.new("RGB", (side, side), (120, 130, 140)).save(out, format="JPEG", progressive=True, quality=90)
    data = out.getvalue()
    segments, pos = [], 2
    while data[pos + 1] != 0xD9:
        marker, end = data[pos + 1], pos + 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker == 0xDA:  # the entropy-coded data runs to the next real marker
            while data[end] != 0xFF or data[end + 1] == 0 or 0xD0 <= data[end + 1] <= 0xD7:
                end += 1
        segments.append((marker, pos, end))
        pos = end
    scans = [i for i, segment in enumerate(segments) if segment[0] == 0xDA]
    second = scans[1]
    start = segments[second - 1][1] if segments[second - 1][0] == 0xC4 else segments[second][1]
    end = segments[second][2]
    return data[:end] + data[start:end] * repeats + data[end:]


def eps_bytes() -> bytes:
    """A tiny Encapsulated PostScript file: Pillow would hand its program to Ghostscript to draw it."""
    return (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 600 600\n"
            b"newpath 0 0 moveto 600 600 lineto stroke showpage\n%%EOF\n")


def damaged_exif_jpeg(size: tuple[int, int] = (600, 600)) -> bytes:
    """A JPEG whose EXIF says it is rotated and holds a SHORT field too big for its type (Pillow's struct.error)."""
    import struct

    entries = struct.pack("<HHII", 0x0112, 3, 1, 6) + struct.pack("<HHII", 0x0128, 4, 1, 100_000)
    exif = b"Exif\x00\x00II*\x00" + struct.pack("<IH", 8, 2) + entries + b"\x00" * 4
    out = io.BytesIO()
    photo_image(3, size).save(out, format="JPEG", exif=exif)
    return out.getvalue()


# --- waiting on events, never on wall time -----------------------------------------------------------------------


async def eventually(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition",
                     interval: float = 0.02) -> Any:
    """Polls `predicate` (sync or async) until it returns something truthy, and returns that.

    The timeout only bounds a broken run; a passing test waits exactly as long as the event takes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)


def eventually_sync(predicate: Callable[[], Any], timeout: float = 60.0, what: str = "condition",
                    interval: float = 0.05) -> Any:
    """`eventually` for tests that drive OS processes without an event loop."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class ManualClock:
    """A wall clock and a monotonic clock the test moves on by hand: leases expire when the test says so, not
    after a sleep. Open storage with both: `Storage.open(dir, clock=clock, monotonic=clock.monotonic)`."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start
        self.elapsed = 0.0

    def __call__(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.elapsed

    def advance(self, seconds: float) -> None:
        """Time passes, for both clocks."""
        self.now += seconds
        self.elapsed += seconds

    def jump(self, seconds: float) -> None:
        """Only the wall clock jumps (an NTP step, a resumed VM): no time has passed for any process."""
        self.now += seconds


# --- a real full (or read-only) filesystem ----------------------------------------------------------------------------


class TightDisk:
    """A small real filesystem (tmpfs) mounted at `path` that the test fills to the brim, frees, or turns read-only,
    so storage meets a genuine ENOSPC / EROFS from the kernel. Needs root and mount permission: `possible()` says
    whether this machine allows it (tests fall back to an injected ENOSPC, or skip, where it does not)."""

    def __init__(self, path: Path, size: int = 4 * 1024 * 1024) -> None:
        self.path = Path(path)
        self.size = size
        self._filler = self.path / "filler.bin"

    @staticmethod
    def possible() -> bool:
        global _MOUNT_POSSIBLE
        if _MOUNT_POSSIBLE is None:
            import tempfile

            probe = Path(tempfile.mkdtemp(prefix="kabina-mount-probe-"))
            try:
                _MOUNT_POSSIBLE = _mount(["-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)])
                if _MOUNT_POSSIBLE:
                    _mount(["-l", str(probe)], command="umount")
            finally:
                with contextlib.suppress(OSError):
                    probe.rmdir()
        return _MOUNT_POSSIBLE

    def __enter__(self) -> TightDisk:
        self.path.mkdir(parents=True, exist_ok=True)
        if not _mount(["-t", "tmpfs", "-o", f"size={self.size}", "tmpfs", str(self.path)]):
            raise RuntimeError(f"could not mount a tmpfs at {self.path}")
        return self

    def __exit__(self, *exc: object) -> None:
        _mount(["-l", str(self.path)], command="umount")

    def fill(self) -> None:
        """Take every byte that is left (a write of one more page then fails with ENOSPC)."""
        with open(self._filler, "ab", buffering=0) as handle:
            for chunk in (1 << 16, 1 << 12, 1):
                with contextlib.suppress(OSError):
                    while True:
                        handle.write(b"\0" * chunk)

    def free(self) -> None:
        self._filler.unlink(missing_ok=True)

    def read_only(self) -> None:
        assert _mount(["-o", "remount,ro", str(self.path)]), "could not remount read-only"

    def writable(self) -> None:
        assert _mount(["-o", "remount,rw", str(self.path)]), "could not remount read-write"


_MOUNT_POSSIBLE: bool | None = None


def _mount(args: list[str], command: str = "mount") -> bool:
    if os.geteuid() != 0:
        return False
    try:
        return subprocess.run([command, *args], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


# --- data made through storage -------------------------------------------------------------------------------------


async def add_photos(store: Storage, owner_id: int, seeds: list[int] | tuple[int, ...],
                     size: tuple[int, int] = (320, 320)) -> list[int]:
    """Photos in the owner's set, stored as the bot stores them; returns their ids."""
    ids = []
    for seed in seeds:
        photo = await store.photos.add(owner_id, file_unique_id=f"u{owner_id}-{seed}", data=photo_bytes(seed, size),
                                       width=size[0], height=size[1])
        ids.append(photo.id)
    return ids


async def queued_training(store: Storage, owner_id: int, photo_ids: list[int], class_word: str = "dog",
                          **options: Any) -> Job:
    """A /train as the bot starts it: the model with its photos and its queued train job (TrainPayload options)."""
    started = await store.lifecycle.start_training(owner_id, owner_id, class_word, photo_ids, options=options)
    assert started is not None, "the owner already has a training"
    return started.job


async def put_blob(store: Storage, key: str, data: bytes) -> str:
    """`data` saved through storage's blob store; returns its key, what rows and results hold."""
    await store.blobs.put(key, data)
    return key


async def make_ready_model(
    store: Storage, owner_id: int, token: str = "sks", class_word: str = "dog", seed: int = 0
) -> Model:
    """A trained-looking model: a weights file and a sample written through storage, status ready."""
    await store.users.upsert(owner_id, first_name=f"user{owner_id}")
    return await store.lifecycle.import_model(
        owner_id, name=class_word, class_word=class_word, token=token,
        weights=b"weights-of-%d-%d" % (owner_id, seed), samples=[photo_bytes(77, (64, 64), fmt="PNG")])


# --- the engine's side of the queue, for bot tests that decide when a job moves ------------------------------------


class StandInWorker:
    """Plays the engine's side of the queue contract through real storage, with the contract's own typed payloads
    and results: claims a job, reports every stage a real training reports, honours a cancel at its heartbeats,
    and completes with real image files (samples and a report card) written through storage."""

    def __init__(self, store: Storage, worker_id: str = "test-worker") -> None:
        self.store = store
        self.worker_id = worker_id

    async def claim(self, kind: str, timeout: float = 10.0) -> Job:
        return await eventually(lambda: self.store.lifecycle.claim(self.worker_id, kinds=[kind]), timeout,
                                what=f"a {kind} job to be queued")

    async def finish_draw(self, job: Job, seeds: list[int] | None = None, **result: Any) -> list[int]:
        """Completes a draw with real pictures; `result` sets other DrawResult fields (a prompt cut short…)."""
        assert isinstance(job.payload, DrawPayload)
        n = job.payload.n
        seeds = seeds or job.payload.seeds or [random.randrange(2**32) for _ in range(n)]
        images = [await put_blob(self.store, f"jobs/{job.id}/{i}.png", photo_bytes(seeds[i] % 1000, (64, 64), "PNG"))
                  for i in range(n)]
        await self.store.lifecycle.complete(job.id, self.worker_id,
                                            DrawResult(images=images, seeds=seeds, **{"prompt_tokens": 8, **result}))
        return seeds

    async def progress(self, job: Job, stage: str, step: int, total: int) -> None:
        """One progress report after a heartbeat, as the engine sends them; raises JobCancelled if cancelled."""
        await self.store.jobs.heartbeat(job.id, self.worker_id)
        await self.store.jobs.report_progress(job.id, self.worker_id, Progress(
            stage=stage, step=step, total=total, loss=0.1 if stage == "training" else None,  # type: ignore[arg-type]
            eta_s=float(total - step)))

    async def finish_training(self, job: Job, steps: int = 5, token: str = "sks", step_s: float = 0.02,
                              drift: float = 0.05, drift_warning: bool = False,
                              while_drawing_samples: Callable[[], Any] | None = None) -> bool:
        """The whole training: class images, steps, samples, report card. False if it was cancelled on the way
        (then the job is settled as cancelled, and its model goes, as the engine does), or if the model was
        deleted by the time it was ready. `while_drawing_samples` runs after the last heartbeat, while the
        engine draws the samples and the report card (it checks for a cancel no more)."""
        assert isinstance(job.payload, TrainPayload)
        model_id = job.payload.model_id
        assert await self.store.lifecycle.begin_training(model_id, [token]) == token
        checkpoints = self.store.files.root / "jobs" / str(job.id) / "checkpoints"
        try:
            await self.progress(job, "class_images", 2, 2)
            for step in range(1, steps + 1):
                await self.progress(job, "training", step, steps)
                if step == max(1, steps // 2):  # a checkpoint half way, as the engine writes them
                    self.write_checkpoint(checkpoints, step)
                await asyncio.sleep(step_s)
            await self.progress(job, "samples", 2, 2)
            if while_drawing_samples is not None:
                outcome = while_drawing_samples()
                if inspect.isawaitable(outcome):
                    await outcome
        except JobCancelled:
            await self.store.lifecycle.cancelled(job.id, self.worker_id)
            return False
        folder = f"models/{model_id}"
        weights = await put_blob(self.store, f"{folder}/lora.safetensors", b"weights")
        samples = [await put_blob(self.store, f"{folder}/sample-{i}.png", photo_bytes(500 + i, (64, 64), "PNG"))
                   for i in range(2)]
        card = await put_blob(self.store, f"{folder}/report_card.png", photo_bytes(900, (192, 96), "PNG"))
        model = await self.store.models.get(model_id)
        class_word = model.class_word if model is not None else "?"  # None: the owner was forgotten meanwhile
        # False when the model was deleted while it trained: the job then ends cancelled, nothing is delivered.
        return await self.store.lifecycle.complete(job.id, self.worker_id, TrainResult(
            model_id=model_id, token=token, class_word=class_word, weights_key=str(weights),
            kohya_key=str(weights), sample_keys=[str(s) for s in samples], steps=steps, seconds=3.0,
            report_card_key=str(card), class_drift=drift, drift_warning=drift_warning,
        ))

    def write_checkpoint(self, folder: Path, step: int) -> Path:
        """What engine/lora_files.save_checkpoint leaves: the LoRA and the optimizer state of one step."""
        step_dir = folder / f"step-{step:06d}"
        self.store.files.write_atomic(step_dir / "lora.safetensors", b"checkpoint-lora")
        self.store.files.write_atomic(step_dir / "optimizer.pt", b"adam-state")
        self.store.files.write_atomic(folder / "latest.json", b'{"step": %d}' % step)
        return step_dir


# --- files on disk -----------------------------------------------------------------------------------------------

PRIVATE_SUFFIXES = (".safetensors", ".pt", ".png", ".jpg", ".img")


def files_under(root: Path, suffixes: tuple[str, ...] = PRIVATE_SUFFIXES) -> list[Path]:
    """Every weights, optimizer, picture and photo file under `root` (DATA_DIR), the class-image cache excepted
    (it is shared by all users and holds no one's photos)."""
    return sorted(p for p in Path(root).rglob("*") if p.is_file() and p.suffix in suffixes
                  and "class_images" not in p.relative_to(root).parts)


def files_holding(root: Path, blobs: list[bytes]) -> list[Path]:
    """Files under `root` whose bytes are one of `blobs` (a user's photos, under whatever name)."""
    wanted = set(blobs)
    return sorted(p for p in Path(root).rglob("*") if p.is_file() and p.stat().st_size in {len(b) for b in wanted}
                  and p.read_bytes() in wanted)


# --- the real bot ----------------------------------------------------------------------------------------------------


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


async def wait_reply(fake: FakeTelegram, chat_id: int, contains: str, timeout: float = 10.0) -> str:
    """The first message text sent to the chat containing `contains` (HTML tags included)."""

    def found() -> str | None:
        return next((text for text in fake.texts(chat_id) if contains in text), None)

    return await fake.wait_for(found, timeout, what=f"a reply with {contains!r} in chat {chat_id}")


async def settled(store: Storage, job_id: int, timeout: float = 15.0) -> None:
    """Waits until the bot has handled the job's final event: its result is recorded in the outbox as delivered or
    as undeliverable (or the feed cursor has passed the event, for a job the bot has nothing to deliver for)."""
    from bot.delivery import CURSOR

    async def passed() -> bool:
        events = [e for e in await store.jobs.events_after(0, limit=100_000)
                  if e.job_id == job_id and e.kind in {"done", "failed", "cancelled"}]
        if not events:
            return False
        record = await store.deliveries.get(job_id, "result")
        # "sent" / "failed": the outbox's end states (bot.delivery.SETTLED_STATES)
        return (record is not None and record.state in {"sent", "failed"}) or await store.cursors.get(CURSOR) >= events[-1].id

    await eventually(passed, timeout, what=f"the bot to settle job {job_id}")


class RunningBot:
    """The real bot (aiogram Bot + Dispatcher + our polling and delivery) as a task in the test's loop."""

    def __init__(self, settings: Settings, tuning: BotTuning) -> None:
        self.settings = settings
        self.tuning = tuning
        self._task: asyncio.Task[None] | None = None
        self._store: Storage | None = None
        self._bot: Any = None

    async def start(self) -> None:
        from bot.app import create_bot, create_dispatcher, run_bot

        self._store = await Storage.open(self.settings.data_dir)
        self._bot = create_bot(self.settings, self.tuning)
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

    @property
    def store(self) -> Storage:
        """The bot's own storage (its own connection), to hold a write the way a kill would stop it."""
        assert self._store is not None
        return self._store

    def check_alive(self) -> None:
        if self._task is not None and self._task.done():
            self._task.result()


class BotProcess:
    """`python -m bot` as a real process that the test can kill -9 and start again."""

    def __init__(self, settings: Settings, extra_env: dict[str, str] | None = None, name: str = "bot") -> None:
        self.env = {
            **os.environ,
            "BOT_TOKEN": settings.require_bot_token(),
            "TELEGRAM_API_URL": str(settings.telegram_api_url),
            "DATA_DIR": str(settings.data_dir),
            "MIN_PHOTOS": str(settings.min_photos),
            "MAX_PHOTOS": str(settings.max_photos),
            **(extra_env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.log = Path(settings.data_dir).parent / f"{name}.log"

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

    def exit_code(self, timeout: float = 30.0) -> int:
        """Waits for the process to end by itself and returns its exit status."""
        assert self.process is not None
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the bot did not exit within {timeout} s:\n{self.output()[-2000:]}") from None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


async def started(fake: FakeTelegram, process: BotProcess, menus_before: int) -> None:
    """Starts the bot process and waits until it has set its command menus (it is polling by then)."""
    process.start()
    await fake.wait_call("setMyCommands", count=menus_before + 4, timeout=30)


def engine_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "engine", *args]


def build_tiny_model(folder: Path) -> Path:
    subprocess.run(engine_command("tiny-model", str(folder)), check=True, cwd=ROOT, capture_output=True)
    return folder

