from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage import PathEscape, Storage
from storage.files import FileStore


@pytest.fixture
def files(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "data")


@pytest.mark.parametrize("hostile", ["../evil", "../../etc/passwd", "/etc/passwd", "photos/../../x", "a/../../b"])
def test_paths_that_climb_out_of_data_dir_are_refused(files: FileStore, hostile: str) -> None:
    with pytest.raises(PathEscape):
        files.inside(hostile)
    with pytest.raises(PathEscape):
        files.write_atomic(hostile, b"x")


def test_a_symlink_pointing_outside_is_refused(files: FileStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (files.root / "link").symlink_to(outside)
    with pytest.raises(PathEscape):
        files.write_atomic(files.root / "link" / "f", b"x")
    assert not (outside / "f").exists()


@settings(max_examples=300, deadline=None)
@given(text=st.text(min_size=0, max_size=40))
def test_no_name_makes_a_path_escape(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    files = FileStore(tmp_path_factory.getbasetemp() / "hyp")
    for make in (lambda: files.inside(text), lambda: files.photo_path(1, text),
                 lambda: files.class_image_dir(text, text, 64)):
        try:
            path = make()
        except (PathEscape, ValueError):
            continue
        assert path.resolve().is_relative_to(files.root)


def test_class_image_folders_differ_by_model_prompt_and_resolution(files: FileStore) -> None:
    a = files.class_image_dir("sd15", "a photo of dog", 512)
    assert a == files.class_image_dir("sd15", "a photo of dog", 512)
    assert len({a, files.class_image_dir("sd21", "a photo of dog", 512),
                files.class_image_dir("sd15", "a photo of cat", 512),
                files.class_image_dir("sd15", "a photo of dog", 768)}) == 4


def test_an_interrupted_write_leaves_the_old_file_and_no_partial(files: FileStore, monkeypatch: pytest.MonkeyPatch) -> None:
    target = files.root / "models" / "1" / "lora.safetensors"
    files.write_atomic(target, b"old weights")

    def power_cut(fd: int) -> None:
        raise OSError("disk vanished")

    monkeypatch.setattr(os, "fsync", power_cut)
    with pytest.raises(OSError):
        files.write_atomic(target, b"new weights that never fully land")
    assert target.read_bytes() == b"old weights"
    assert sorted(p.name for p in target.parent.iterdir()) == ["lora.safetensors"]


async def test_a_process_killed_mid_write_leaves_nothing_after_restart(tmp_path: Path) -> None:
    store = await Storage.open(tmp_path)
    await store.close()
    # What a SIGKILL between write and rename leaves behind:
    leftover = store.files.model_dir(3) / ".partial-abc.tmp"
    leftover.write_bytes(b"half a file")
    store = await Storage.open(tmp_path)
    await store.close()
    assert not leftover.exists()
