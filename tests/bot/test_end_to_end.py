"""The whole story through the real bot, the fake Bot API server and the real engine worker on the tiny model."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from storage import Settings
from tests.fake_telegram import FakeTelegram
from tests.helpers import BotProcess, User, photo_bytes, started, wait_reply

ROOT = Path(__file__).resolve().parents[2]


def _engine(settings: Settings, base_model: Path, tmp_path: Path) -> subprocess.Popen[bytes]:
    """The real `python -m engine` on a tiny model, serving the bot's DATA_DIR."""
    env = {
        **os.environ, "DATA_DIR": str(settings.data_dir), "BASE_MODEL": str(base_model), "DEVICE": "cpu",
        "NUM_CLASS_IMAGES": "2", "TRAIN_STEPS": "12", "DRAW_STEPS": "3",
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
    }
    with open(tmp_path / "engine.log", "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "engine", "--poll-s", "0.2", "--lease-s", "10"],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def _stop(process: subprocess.Popen[bytes], tmp_path: Path) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
    print((tmp_path / "engine.log").read_text(errors="replace")[-3000:])


@pytest.fixture
def engine_worker(settings: Settings, tiny_model_dir: Path, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    process = _engine(settings, tiny_model_dir, tmp_path)
    yield process
    _stop(process, tmp_path)


async def test_photos_train_progress_samples_and_draw(
    kabina, engine_worker, fake: FakeTelegram, ann: User
) -> None:
    ann.photo(photo_bytes(1))
    await wait_reply(fake, ann.id, "1/6")
    ann.album([photo_bytes(i) for i in (2, 3, 4)])
    await wait_reply(fake, ann.id, "Saved 3")
    ann.say("/train dog")
    await wait_reply(fake, ann.id, "Training «dog» on 4 photos")
    ready = await wait_reply(fake, ann.id, "Your model is ready", timeout=240)
    assert "/draw sks dog in Paris" in ready
    edits = fake.calls_of("editMessageText", ann.id)
    assert any("step" in c.params["text"] for c in edits) and "Training finished" in edits[-1].params["text"]
    (samples,) = fake.calls_of("sendMediaGroup", ann.id)
    assert all(Image.open(io.BytesIO(data)).size[0] > 0 for data in samples.images())
    # then the report card: plain "dog" pictures before and after, with the drift figure
    card = await fake.wait_for(lambda: next(iter(fake.calls_of("sendPhoto", ann.id)), None), 30,
                               what="the report card")
    assert "drift" in card.params["caption"].lower()
    (card_image,) = [Image.open(io.BytesIO(data)) for data in card.images()]
    assert card_image.width > card_image.height

    ann.say("/draw sks dog in Paris --n 2 --seed 5")
    await wait_reply(fake, ann.id, "More like this", timeout=120)
    album = fake.calls_of("sendMediaGroup", ann.id)[-1]
    images = [Image.open(io.BytesIO(data)) for data in album.images()]
    assert len(images) == 2
    for image in images:
        image.load()
        assert image.width >= 32 and image.height >= 32
    assert "seeds #1: 5, #2: 6" in album.params["media"][0]["caption"]
    assert fake.errors() == []


async def test_a_bot_killed_after_train_is_queued_delivers_the_real_result_exactly_once(
    engine_worker, fake: FakeTelegram, store, ann: User, bot_process: BotProcess
) -> None:
    await started(fake, bot_process, 0)
    ann.album([photo_bytes(i) for i in (11, 12, 13)])
    await wait_reply(fake, ann.id, "Saved 3")
    ann.say("/train dog")
    await fake.wait_for(lambda: any("Starting soon" in t or "in the queue" in t for t in ann.replies()), 20,
                        what="the queued-training reply")
    bot_process.kill()  # the real engine trains while the bot is down

    deadline = time.monotonic() + 240
    while await store.jobs.active_for_owner(ann.id, "train"):
        assert time.monotonic() < deadline, "the engine did not finish the training"
        await asyncio.sleep(0.2)
    assert fake.calls_of("sendMediaGroup", ann.id) == []  # nobody was there to deliver it

    await started(fake, bot_process, 4)
    await wait_reply(fake, ann.id, "Your model is ready", timeout=60)
    await fake.wait_idle(quiet=1.0, timeout=30)
    bot_process.kill()
    await started(fake, bot_process, 8)  # and once more: nothing is sent twice
    await fake.wait_idle(quiet=1.5, timeout=30)
    assert len(fake.calls_of("sendMediaGroup", ann.id)) == 1
    assert sum("Your model is ready" in t for t in ann.replies()) == 1
    assert fake.errors() == []


@pytest.mark.parametrize("family", ["sdxl", "flux", "flux2-klein", "z-image-turbo", "qwen-image"])
async def test_the_whole_story_on_sdxl_and_flux(
    kabina, fake: FakeTelegram, store, ann: User, settings: Settings, tiny_family_dir, tmp_path: Path, family: str
) -> None:
    """Photos → /train → /draw through the bot and the real engine on that family's tiny model."""
    engine = _engine(settings, tiny_family_dir(family), tmp_path)
    try:
        ann.album([photo_bytes(i) for i in (21, 22, 23)])
        await wait_reply(fake, ann.id, "Saved 3")
        ann.say("/train dog")
        ready = await wait_reply(fake, ann.id, "Your model is ready", timeout=240)
        assert "/draw sks dog in Paris" in ready
        info = await store.engines.current()
        assert info.family.startswith(family)
        ann.say("/draw sks dog in Paris --ar 3:2 --n 2 --seed 5")
        await wait_reply(fake, ann.id, "More like this", timeout=120)
        album = fake.calls_of("sendMediaGroup", ann.id)[-1]
        sizes = [Image.open(io.BytesIO(data)).size for data in album.images()]
        assert sizes == [tuple(info.sizes["3:2"])] * 2 and sizes[0][0] > sizes[0][1]
        (model,) = await store.models.list_for_owner(ann.id)
        assert model.params["family"] == info.family
        assert fake.errors() == []
    finally:
        _stop(engine, tmp_path)
