"""Moving a single-machine install (SQLite + files) into another database and blob store: everything arrives,
verified, and the install it came from is left exactly as it was."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from storage import Storage
from storage.blobs import open_blobs
from storage.contract import DrawPayload, DrawResult
from storage.transfer import TransferError, transfer
from tests.helpers import make_ready_model


def _tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


async def _an_install(data_dir: Path) -> dict[str, int]:
    """An install with a user, a ready model shared into a group, a finished drawing and its events."""
    async with await Storage.open(data_dir) as store:
        model = await make_ready_model(store, 101, class_word="dog")
        await store.chats.upsert(-500, type="group", title="Friends")
        await store.shares.share(model.id, -500, 101)
        job = await store.lifecycle.enqueue(DrawPayload(model_id=model.id, prompt="sks dog in Paris"),
                                       owner_id=101, chat_id=101, model_id=model.id)
        claimed = await store.lifecycle.claim("engine-a")
        assert claimed is not None and claimed.id == job.id
        await store.lifecycle.complete(job.id, "engine-a", DrawResult(images=[], seeds=[7]))
        events = await store.jobs.events_after(0)
        return {"model": model.id, "job": job.id, "events": len(events)}


@pytest.fixture
def target_url(database_url: str | None, tmp_path: Path) -> str:
    return database_url or f"sqlite:///{tmp_path / 'target' / 'kabina.sqlite3'}"


async def test_an_install_moves_whole_and_the_source_is_left_untouched(
    tmp_path: Path, target_url: str
) -> None:
    source = tmp_path / "install"
    made = await _an_install(source)
    before = _tree(source)
    blob_url = (tmp_path / "bucket").as_uri()
    (tmp_path / "target").mkdir(exist_ok=True)

    report = await transfer(source, target_url, blob_url)

    assert report.verified and report.rows["models"] == 1 and report.rows["job_events"] == made["events"]
    assert report.blobs >= 2  # the model's weights and its sample
    assert _tree(source) == before
    async with await Storage.open(tmp_path / "elsewhere", database_url=target_url) as moved:
        model = await moved.models.get(made["model"])
        assert model is not None and model.status == "ready" and model.token == "sks"
        assert [m.id for m in await moved.shares.models_in_chat(-500)] == [made["model"]]
        assert len(await moved.jobs.events_after(0)) == made["events"]
        assert (await moved.jobs.get(made["job"])).status == "done"
        # The copied ids are taken: the next job gets a new one, not id 1 again.
        later = await moved.lifecycle.enqueue(DrawPayload(model_id=model.id, prompt="sks dog"), owner_id=101,
                                         chat_id=101, model_id=model.id)
        assert later.id > made["job"]
    bucket = open_blobs(blob_url, tmp_path)
    for key, digest in before.items():
        if key.split("/")[0] in {"photos", "models", "class_images", "jobs"}:
            assert hashlib.sha256(await bucket.get(key)).hexdigest() == digest, key


async def test_a_second_copy_into_the_same_database_is_refused(tmp_path: Path, target_url: str) -> None:
    source = tmp_path / "install"
    await _an_install(source)
    (tmp_path / "target").mkdir(exist_ok=True)
    await transfer(source, target_url, (tmp_path / "bucket").as_uri())
    with pytest.raises(TransferError, match="already has rows"):
        await transfer(source, target_url, (tmp_path / "bucket").as_uri())


async def test_the_install_cannot_be_copied_onto_itself(tmp_path: Path) -> None:
    source = tmp_path / "install"
    await _an_install(source)
    with pytest.raises(TransferError, match="own folder"):
        await transfer(source, f"sqlite:///{tmp_path / 'other.sqlite3'}", source.as_uri())


def test_the_command_prints_what_it_copied(tmp_path: Path, target_url: str) -> None:
    import asyncio

    source = tmp_path / "install"
    asyncio.run(_an_install(source))
    (tmp_path / "target").mkdir(exist_ok=True)
    env = {**os.environ, "DATA_DIR": str(source), "HF_HUB_OFFLINE": "1"}
    env.pop("DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "storage", "migrate", "--to", target_url, "--blobs", (tmp_path / "b").as_uri()],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["verified"] is True and report["rows"]["models"] == 1
    half = subprocess.run([sys.executable, "-m", "storage", "migrate", "--to", target_url], env=env,
                          capture_output=True, text=True, timeout=120)
    assert half.returncode == 2 and "--blobs" in half.stderr
