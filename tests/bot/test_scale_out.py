"""The whole story on PostgreSQL + S3: two bots (a leader and a standby) and two engine hosts, each with its own
DATA_DIR, sharing only the database and the bucket. The engine training the model and the leading bot are both
killed with SIGKILL mid-training; the other engine resumes from the checkpoint in the bucket, the standby bot takes
over, and the user gets every answer exactly once. Runs when KABINA_TEST_DATABASE_URL and KABINA_TEST_BLOB_URL are
set (`.ci/run` sets both when PostgreSQL answers)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from storage import NotFound, Storage, load_settings
from tests.fake_telegram import FakeTelegram
from tests.helpers import BotProcess, User, eventually, photo_bytes, started, wait_reply
from tests.postgres import configured_url, fresh_schema
from tests.s3 import TEST_BLOB_URL, url_under_own_prefix

ROOT = Path(__file__).resolve().parents[2]
STEPS = 30

pytestmark = pytest.mark.skipif(
    not (configured_url() and TEST_BLOB_URL),
    reason="scale-out story is off: set KABINA_TEST_DATABASE_URL and KABINA_TEST_BLOB_URL (.ci/run does)",
)


@pytest.fixture
def backends() -> Iterator[tuple[str, str]]:
    with fresh_schema(configured_url()) as database_url:
        yield database_url, url_under_own_prefix()


@pytest.fixture
async def observer(tmp_path: Path, backends: tuple[str, str]) -> AsyncIterator[Storage]:
    database_url, blob_url = backends
    store = await Storage.open(tmp_path / "observer", database_url=database_url, blob_url=blob_url)
    yield store
    await store.close()


class Engine:
    """`python -m engine` as one host: its own DATA_DIR and cache, the shared database and bucket."""

    def __init__(self, tmp_path: Path, name: str, base_model: Path, backends: tuple[str, str]) -> None:
        self.log = tmp_path / f"{name}.log"
        self.env = {
            **os.environ, "DATA_DIR": str(tmp_path / name / "data"), "ENGINE_CACHE_DIR": str(tmp_path / name / "cache"),
            "DATABASE_URL": backends[0], "BLOB_URL": backends[1], "BASE_MODEL": str(base_model), "DEVICE": "cpu",
            "NUM_CLASS_IMAGES": "2", "TRAIN_STEPS": str(STEPS), "DRAW_STEPS": "3",
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "engine", "--poll-s", "0.2", "--lease-s", "2", "--checkpoint-every", "5"],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None


async def test_photos_train_and_draw_on_postgres_and_s3_survive_the_kill_of_an_engine_and_of_the_leading_bot(
    fake: FakeTelegram, tmp_path: Path, tiny_model_dir: Path, backends: tuple[str, str], observer: Storage,
    ann: User,
) -> None:
    database_url, blob_url = backends
    bots, engines = [], [Engine(tmp_path, name, tiny_model_dir, backends) for name in ("engine-1", "engine-2")]
    for name in ("bot-a", "bot-b"):
        (tmp_path / name).mkdir()
        settings = load_settings(bot_token=fake.token, telegram_api_url=fake.base_url, data_dir=tmp_path / name / "data",
                                 min_photos=3, max_photos=6)
        bots.append(BotProcess(settings, {"DATABASE_URL": database_url, "BLOB_URL": blob_url}, name=name))
    try:
        await started(fake, bots[0], 0)
        bots[1].start()  # the standby: it waits on the leader lease in PostgreSQL
        engines[0].start()
        ann.album([photo_bytes(i) for i in (31, 32, 33, 34)])
        await wait_reply(fake, ann.id, "Saved 4")
        ann.say("/train dog")
        await wait_reply(fake, ann.id, "Training «dog» on 4 photos", timeout=30)

        (job,) = await observer.jobs.active_for_owner(ann.id, "train")

        async def checkpointed() -> int | None:
            try:
                return json.loads(await observer.blobs.get(f"jobs/{job.id}/checkpoints/latest.json"))["step"]
            except NotFound:
                return None

        step = await eventually(checkpointed, 240, what="a training checkpoint in the bucket", interval=0.2)
        engines[0].kill()  # the host training the model dies...
        bots[0].kill()  # ...and so does the bot that was polling and delivering
        engines[1].start()

        ready = await wait_reply(fake, ann.id, "Your model is ready", timeout=240)
        assert "/draw sks dog in Paris" in ready
        done = await observer.jobs.get(job.id)
        assert done.status == "done" and done.attempts == 2 and step <= done.result.resumed_from < STEPS

        since = time.time()
        engines[0].start()  # the first host comes back; the second now dies, and drawing still works
        await eventually(lambda: _started_since(observer, since), 120, what="the first engine back", interval=0.2)
        engines[1].kill()
        ann.say("/draw sks dog in Paris --n 2 --seed 5")
        await wait_reply(fake, ann.id, "More like this", timeout=180)
        await fake.wait_idle(quiet=1.5, timeout=30)
    finally:
        for engine in engines:
            engine.kill(signal.SIGTERM)
        for bot in bots:
            bot.kill()
    assert sum("Your model is ready" in text for text in ann.replies()) == 1
    albums = fake.calls_of("sendMediaGroup", ann.id)
    assert len(albums) == 2  # the samples once, the drawing once
    assert "seeds #1: 5, #2: 6" in albums[-1].params["media"][0]["caption"]
    assert fake.errors() == []
    for bot in bots:
        assert "Traceback" not in bot.output() and fake.token not in bot.output()
    assert not any((tmp_path / name / "data" / "photos").exists() for name in ("bot-a", "bot-b", "engine-1",
                                                                              "engine-2"))


async def _started_since(store: Storage, since: float) -> bool:
    """Whether an engine has published what it serves since `since` (each does once it can claim)."""
    return bool(await store.db.fetchall("SELECT worker_id FROM engines WHERE seen_at > ?", (since,)))
