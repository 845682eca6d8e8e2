"""The file store: paths never leave DATA_DIR; one atomic writer; temp files swept only when provably abandoned."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage import PathEscape, Storage, StorageUnavailable
from storage.files import FileStore
from storage.keys import check_key, class_images_prefix, photo_key
from tests.helpers import ROOT, TightDisk


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
    for make in (lambda: files.inside(text), lambda: files.inside(photo_key(1, text)),
                 lambda: files.inside(class_images_prefix(text, text, 64))):
        try:
            path = make()
        except (PathEscape, ValueError):
            continue
        assert path.resolve().is_relative_to(files.root)


def test_class_image_folders_differ_by_model_prompt_and_resolution(files: FileStore) -> None:
    a = class_images_prefix("sd15", "a photo of dog", 512)
    assert a == class_images_prefix("sd15", "a photo of dog", 512) and check_key(a) == a
    assert len({a, class_images_prefix("sd21", "a photo of dog", 512),
                class_images_prefix("sd15", "a photo of cat", 512),
                class_images_prefix("sd15", "a photo of dog", 768)}) == 4


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


# A writer process whose disk is slow: its first fsync waits until the test writes a line to its stdin.
SLOW_WRITER = """
import os, sys
from storage.files import FileStore, atomic_dir
real_fsync, waited = os.fsync, []
def slow_fsync(fd):
    if not waited:
        waited.append(1)
        print("writing", flush=True)
        sys.stdin.readline()
    real_fsync(fd)
os.fsync = slow_fsync
files = FileStore(sys.argv[1])
if sys.argv[3] == "file":
    files.write_atomic(sys.argv[2], b"all of it")
else:
    with atomic_dir(sys.argv[2]) as folder:
        (folder / "lora.safetensors").write_bytes(b"all of it")
print("done", flush=True)
"""


def _slow_writer(data_dir: Path, target: Path, what: str = "file") -> subprocess.Popen[str]:
    writer = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(data_dir), str(target), what], cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert writer.stdout is not None and writer.stdout.readline().strip() == "writing", "the writer did not start"
    return writer


def _partials(root: Path) -> list[Path]:
    return sorted(root.rglob(".partial-*"))


async def test_a_starting_process_never_removes_the_temp_file_of_a_live_writer(tmp_path: Path) -> None:
    data = tmp_path / "data"
    target = data / "models" / "1" / "lora.safetensors"
    writer = _slow_writer(data, target)
    try:
        assert len(_partials(data)) == 1  # the writer is between its write and its rename
        await (await Storage.open(data)).close()  # a bot or an engine starting meanwhile
        assert len(_partials(data)) == 1, "a starting process removed a live writer's temp file"
        out, _ = writer.communicate("\n", timeout=30)
    finally:
        writer.kill()
    assert out.strip() == "done"
    assert target.read_bytes() == b"all of it" and _partials(data) == []


async def test_temp_files_and_folders_of_killed_writers_are_swept_at_start(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for target, what in ((data / "models" / "1" / "lora.safetensors", "file"),
                         (data / "jobs" / "4" / "checkpoints" / "step-000100", "folder")):
        writer = _slow_writer(data, target, what)
        writer.send_signal(signal.SIGKILL)  # killed between write and rename
        writer.wait()
        assert writer.stdout is not None
        writer.stdout.close()
        writer.stdin.close()  # type: ignore[union-attr]
    leftovers = _partials(data)
    assert [p.is_dir() for p in leftovers] == [True, False]  # a half-saved checkpoint folder and a temp file
    await (await Storage.open(data)).close()
    assert _partials(data) == []


async def test_temp_names_whose_writer_cannot_be_checked_are_swept_only_when_old(tmp_path: Path) -> None:
    data = tmp_path / "data"
    folder = data / "class_images" / "ab"
    folder.mkdir(parents=True)
    young, old = folder / ".partial-x1y2z3.tmp", folder / ".partial-from-another-host"
    young.write_bytes(b"a write elsewhere, just now")
    old.mkdir()
    os.utime(old, (time.time() - 7 * 3600, time.time() - 7 * 3600))
    await (await Storage.open(data)).close()
    assert young.exists() and not old.exists()


def test_a_full_disk_is_storage_unavailable_and_leaves_the_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    with TightDisk(data, size=512 * 1024) if TightDisk.possible() else _injected_enospc(monkeypatch) as disk:
        files = FileStore(data)
        target = files.root / "models" / "1" / "sample.png"
        files.write_atomic(target, b"old picture")
        disk.fill()
        with pytest.raises(StorageUnavailable) as caught:
            files.write_atomic(target, os.urandom(1024 * 1024))
        assert caught.value.reason == "no_space" and "no space" in str(caught.value)
        assert target.read_bytes() == b"old picture" and _partials(data) == []
        disk.free()
        files.write_atomic(target, b"new picture")
        assert target.read_bytes() == b"new picture"


class _injected_enospc:  # noqa: N801 - stands in for TightDisk where no filesystem can be mounted
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch
        self.real = os.replace

    def __enter__(self) -> _injected_enospc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.free()

    def fill(self) -> None:
        def no_space(*args: object) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        self.monkeypatch.setattr(os, "replace", no_space)

    def free(self) -> None:
        self.monkeypatch.setattr(os, "replace", self.real)
