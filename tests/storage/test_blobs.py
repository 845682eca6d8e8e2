"""The blob store contract: what every backend (files under DATA_DIR, an S3 bucket) must do alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.blobs import FileBlobs, check_key, open_blobs
from storage.errors import NotFound, PathEscape


@pytest.fixture
def blobs(tmp_path: Path) -> FileBlobs:
    return FileBlobs(tmp_path / "data")


async def test_a_blob_reads_back_as_written_and_is_listed_under_its_prefix(blobs: FileBlobs) -> None:
    await blobs.put("photos/u1/aa.img", b"first")
    await blobs.put("photos/u1/bb.img", b"second")
    await blobs.put("photos/u2/cc.img", b"other user")
    assert await blobs.get("photos/u1/aa.img") == b"first"
    assert await blobs.size("photos/u1/bb.img") == 6
    assert await blobs.list("photos/u1") == ["photos/u1/aa.img", "photos/u1/bb.img"]


async def test_a_missing_blob_is_not_found_and_deleting_it_is_no_error(blobs: FileBlobs) -> None:
    with pytest.raises(NotFound):
        await blobs.get("models/9/lora.safetensors")
    assert not await blobs.exists("models/9/lora.safetensors")
    await blobs.delete("models/9/lora.safetensors")


async def test_deleting_a_prefix_removes_everything_under_it_and_nothing_else(blobs: FileBlobs, tmp_path: Path) -> None:
    for name in ("models/7/a", "models/7/sub/b", "models/70/c"):
        await blobs.put(name, b"x")
    assert await blobs.delete_prefix("models/7") == 2
    assert await blobs.list("models") == ["models/70/c"]


async def test_a_file_is_uploaded_and_downloaded_whole(blobs: FileBlobs, tmp_path: Path) -> None:
    source = tmp_path / "lora.safetensors"
    source.write_bytes(b"weights" * 1000)
    await blobs.put_file("models/3/lora.safetensors", source)
    target = await blobs.download("models/3/lora.safetensors", tmp_path / "cache" / "lora.safetensors")
    assert target.read_bytes() == source.read_bytes()


@pytest.mark.parametrize("key", ["", "/etc/passwd", "../x", "photos/../../x", "a//b", "photos/u1/ä", "a/./b"])
def test_a_key_that_is_not_ours_is_refused(key: str) -> None:
    with pytest.raises(PathEscape):
        check_key(key)


def test_no_blob_url_means_files_in_the_data_folder(tmp_path: Path) -> None:
    store = open_blobs(None, tmp_path)
    assert isinstance(store, FileBlobs) and store.root == tmp_path.resolve()
    with pytest.raises(ValueError, match="BLOB_URL"):
        open_blobs("ftp://somewhere", tmp_path)
