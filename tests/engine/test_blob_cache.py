"""The engine's blob cache and checkpoints in the blob store, against a blob store that is not a folder of this
machine's data dir (a FileBlobs elsewhere that does not offer its files, as S3 would not), or S3 when
KABINA_TEST_BLOB_URL is set."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from engine import checkpoint_sync
from engine.blob_cache import BlobCache
from storage.blobs import FileBlobs
from storage.errors import NotFound


class FarBlobs(FileBlobs):
    """Blobs in a folder this engine may not read directly, so every read goes over `download`, counted."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.downloads: list[str] = []

    def local_path(self, key: str) -> None:
        return None

    async def download(self, key: str, target: Path) -> Path:
        self.downloads.append(key)
        await asyncio.sleep(0.01)  # long enough for a second ask to arrive while the first is under way
        return await super().download(key, target)


@pytest.fixture
def far(tmp_path: Path) -> FarBlobs:
    return FarBlobs(tmp_path / "bucket")


async def test_a_blob_is_downloaded_once_however_many_ask_at_the_same_time(far: FarBlobs, tmp_path: Path) -> None:
    await far.put("models/1/lora.safetensors", b"w" * 100)
    cache = BlobCache(far, tmp_path / "cache", max_bytes=10_000)
    paths = await asyncio.gather(*(cache.path("models/1/lora.safetensors") for _ in range(5)))
    assert far.downloads == ["models/1/lora.safetensors"]
    assert len(set(paths)) == 1 and paths[0].read_bytes() == b"w" * 100
    assert paths[0].is_relative_to((tmp_path / "cache").resolve())
    await cache.path("models/1/lora.safetensors")
    assert len(far.downloads) == 1


async def test_a_full_cache_evicts_the_least_recently_used_copy_not_in_use(far: FarBlobs, tmp_path: Path) -> None:
    for name in "abcd":
        await far.put(f"photos/u1/{name}.img", name.encode() * 400)
    cache = BlobCache(far, tmp_path / "cache", max_bytes=1_000)  # room for two
    async with cache.using("photos/u1/a.img") as held:
        await cache.path("photos/u1/b.img")
        await cache.path("photos/u1/c.img")  # a is in use, so b (the least recent other) goes
        assert held.is_file()
        assert not cache.local_file("photos/u1/b.img").exists()
    await cache.path("photos/u1/a.img")  # read again: a is now more recent than c
    await cache.path("photos/u1/d.img")
    assert not cache.local_file("photos/u1/c.img").exists()
    assert cache.local_file("photos/u1/a.img").is_file() and cache.local_file("photos/u1/d.img").is_file()
    assert cache.used_bytes <= 1_000


async def test_a_changed_blob_is_fetched_again(far: FarBlobs, tmp_path: Path) -> None:
    await far.put("models/2/lora.safetensors", b"first")
    cache = BlobCache(far, tmp_path / "cache", max_bytes=10_000)
    assert (await cache.path("models/2/lora.safetensors", version=1.0)).read_bytes() == b"first"
    await far.put("models/2/lora.safetensors", b"second")
    assert (await cache.path("models/2/lora.safetensors", version=2.0)).read_bytes() == b"second"
    assert far.downloads == ["models/2/lora.safetensors"] * 2


async def test_with_the_data_dirs_own_blobs_the_cache_copies_nothing(tmp_path: Path) -> None:
    blobs = FileBlobs(tmp_path / "data")
    await blobs.put("models/3/lora.safetensors", b"w")
    cache = BlobCache(blobs, tmp_path / "data" / "cache" / "host", max_bytes=10)
    assert await cache.path("models/3/lora.safetensors") == tmp_path.resolve() / "data" / "models/3/lora.safetensors"
    assert not (tmp_path / "data" / "cache" / "host").exists()
    assert cache.work_path("models/3/lora.safetensors") == blobs.local_path("models/3/lora.safetensors")


async def test_a_blob_that_is_gone_is_not_found(far: FarBlobs, tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        await BlobCache(far, tmp_path / "cache", max_bytes=10).path("models/4/lora.safetensors")


def _checkpoint(folder: Path, step: int) -> None:
    step_dir = folder / f"step-{step:06d}"
    step_dir.mkdir(parents=True)
    (step_dir / "lora.safetensors").write_bytes(b"lora-%d" % step)
    (step_dir / "optimizer.pt").write_bytes(b"adam-%d" % step)
    (folder / "latest.json").write_text(json.dumps({"step": step, "total": 20, "folder": step_dir.name,
                                                    "signature": "s"}))


async def test_a_checkpoint_uploaded_on_one_host_is_restored_on_another(far: FarBlobs, tmp_path: Path) -> None:
    first, second = tmp_path / "host-a" / "ckpt", tmp_path / "host-b" / "ckpt"
    _checkpoint(first, 5)
    await checkpoint_sync.upload(far, "jobs/9/checkpoints", first)
    shutil.rmtree(first / "step-000005")
    _checkpoint(first, 10)
    await checkpoint_sync.upload(far, "jobs/9/checkpoints", first)
    assert await far.list("jobs/9/checkpoints") == [
        "jobs/9/checkpoints/latest.json", "jobs/9/checkpoints/step-000010/lora.safetensors",
        "jobs/9/checkpoints/step-000010/optimizer.pt"]  # the older step went
    assert await checkpoint_sync.restore(far, "jobs/9/checkpoints", second) == 10
    assert (second / "step-000010" / "optimizer.pt").read_bytes() == b"adam-10"
    assert await checkpoint_sync.restore(far, "jobs/8/checkpoints", tmp_path / "host-c") == 0
    # Host a comes back with its own older copy while b trained on: the blob store's newer one wins.
    stale = tmp_path / "host-a" / "stale"
    _checkpoint(stale, 5)
    assert await checkpoint_sync.restore(far, "jobs/9/checkpoints", stale) == 10


async def test_copies_of_a_deleted_model_are_dropped_on_every_host(far: FarBlobs, tmp_path: Path) -> None:
    for model in (1, 2):
        await far.put(f"models/{model}/lora.safetensors", b"w" * 100)
    hosts = [BlobCache(far, tmp_path / f"cache-{name}", max_bytes=10_000) for name in "ab"]
    for cache in hosts:
        for model in (1, 2):
            await cache.path(f"models/{model}/lora.safetensors")
    await far.delete_prefix("models/1")  # the owner deleted model 1 (storage/lifecycle.py)
    for cache in hosts:
        assert await cache.sweep() == ["models/1/lora.safetensors"]
        assert not cache.local_file("models/1/lora.safetensors").exists()
        assert cache.local_file("models/2/lora.safetensors").is_file()
        assert cache.used_bytes == 100


async def test_a_finished_trainings_checkpoints_leave_the_host_but_a_running_ones_stay(
    far: FarBlobs, tmp_path: Path
) -> None:
    cache = BlobCache(far, tmp_path / "cache", max_bytes=10_000)
    folder = cache.work_path("jobs/7/checkpoints")
    _checkpoint(folder, 5)
    with cache.working("models/3", "jobs/7/checkpoints"):
        assert await cache.sweep() == []  # written by a running training, not in the store yet
    await checkpoint_sync.upload(far, "jobs/7/checkpoints", folder)
    assert await cache.sweep() == []  # the store has them: they may serve a resume here
    await far.delete_prefix("jobs/7")  # the retention sweep takes a finished training's checkpoints
    assert await cache.sweep()
    assert not any(p.is_file() for p in folder.rglob("*"))


async def test_checkpoints_count_against_the_cache_bound(far: FarBlobs, tmp_path: Path) -> None:
    await far.put("models/1/lora.safetensors", b"a" * 400)
    await far.put("models/2/lora.safetensors", b"b" * 400)
    cache = BlobCache(far, tmp_path / "cache", max_bytes=1_000)
    await cache.path("models/1/lora.safetensors")
    optimizer_state = cache.work_path("jobs/9/checkpoints/step-5/optimizer.pt")
    optimizer_state.parent.mkdir(parents=True)
    optimizer_state.write_bytes(b"o" * 500)
    assert cache.used_bytes == 900
    await cache.path("models/2/lora.safetensors")  # 1,300 bytes: the older copy goes to make room
    assert not cache.local_file("models/1/lora.safetensors").exists()
    assert cache.used_bytes == 900
    cache.drop("jobs/9/checkpoints")
    assert cache.used_bytes == 400
