"""The file store: every path under DATA_DIR is made here, from ids and hashes, never from user input; and the one
atomic writer every part uses for every file it saves."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from storage.errors import PathEscape, StorageUnavailable
from storage.processes import owner_gone, owner_tag

log = logging.getLogger(__name__)

PARTIAL_PREFIX = ".partial-"
# A temp file or folder whose owner cannot be checked from here (another host or container, or an old-style name)
# is swept once it is this old: no write of ours takes anywhere near an hour.
PARTIAL_MAX_AGE_S = 6 * 3600.0

_UNAVAILABLE_ERRNOS = {errno.ENOSPC: "no_space", errno.EDQUOT: "no_space", errno.EFBIG: "no_space",
                       errno.EROFS: "read_only"}
_UNAVAILABLE_WORDS = {"No space left on device": "no_space", "Disk quota exceeded": "no_space",
                      "File too large": "no_space", "Read-only file system": "read_only"}


def partial_name(suffix: str = "") -> str:
    """A temp name that says who writes it (`.partial-<place><boot>-<pid>-<random><suffix>`), so a starting
    process can tell a live writer's temp file from one a killed process left behind."""
    return f"{PARTIAL_PREFIX}{owner_tag()}-{secrets.token_hex(4)}{suffix}"


def unavailable(exc: BaseException, where: Path) -> StorageUnavailable | None:
    """The StorageUnavailable a failed write really was (full disk, quota, file-size limit, read-only), or None.

    Libraries that write for us (Pillow, safetensors, torch) do not all raise OSError, so the words of the
    message and the state of the filesystem itself are asked too."""
    if isinstance(exc, StorageUnavailable):
        return exc
    reason = _UNAVAILABLE_ERRNOS.get(exc.errno) if isinstance(exc, OSError) and exc.errno else None
    if reason is None:
        text = str(exc)
        reason = next((r for words, r in _UNAVAILABLE_WORDS.items() if words in text), None)
    if reason is None:
        reason = filesystem_state(where)
    if reason is None:
        return None
    what = "no space left on the device" if reason == "no_space" else "the filesystem is read-only"
    return StorageUnavailable(reason, f"cannot write {where}: {what} ({type(exc).__name__}: {exc})")


def filesystem_state(where: Path) -> str | None:
    """"read_only" or "no_space" when the filesystem holding `where` is so, else None."""
    folder = Path(where) if Path(where).is_dir() else Path(where).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        stats = os.statvfs(folder)
    except OSError:
        return None
    if stats.f_flag & os.ST_RDONLY:
        return "read_only"
    if stats.f_bavail == 0 or (stats.f_favail == 0 and stats.f_files > 0):
        return "no_space"
    return None


def _raise_unavailable(exc: BaseException, where: Path) -> None:
    if isinstance(exc, Exception):
        trouble = unavailable(exc, where)
        if trouble is not None and trouble is not exc:
            raise trouble from exc


def write_atomic_with(path: str | Path, write: Callable[[Path], object]) -> Path:
    """The one atomic writer: `write(tmp)` fills a temp file beside `path`, which is fsynced and renamed over
    `path`, and the folder is fsynced. A crash or an error at any point leaves the old file (or none) and no
    temp file of a live process; a full disk or a read-only filesystem is raised as StorageUnavailable."""
    target = Path(path)
    tmp = target.parent / partial_name(".tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        _fsync_file(tmp)
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        _raise_unavailable(exc, target)
        raise
    return target


def write_atomic(path: str | Path, data: bytes) -> Path:
    return write_atomic_with(path, lambda tmp: tmp.write_bytes(data))


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """A folder written whole or not at all: fill the yielded temp folder; on a clean exit every file in it is
    fsynced and it replaces `path`; on an error it is removed."""
    target = Path(path)
    tmp = target.parent / partial_name()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        yield tmp
        for item in sorted(tmp.rglob("*")):
            if item.is_file():
                _fsync_file(item)
        _fsync_dir(tmp)
        if target.exists():
            old = target.parent / partial_name(".old")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        _raise_unavailable(exc, target)
        raise


def sweep_partials(root: str | Path, max_age_s: float = PARTIAL_MAX_AGE_S) -> int:
    """Remove the temp files and folders under `root` that are provably abandoned: their writer is gone (same
    host: its pid has exited or ran before the last boot), or they are older than `max_age_s`. A temp file of
    a process still writing is never touched."""
    removed = 0
    now = time.time()
    for leftover in list(Path(root).rglob(f"{PARTIAL_PREFIX}*")):
        if not _abandoned(leftover, now, max_age_s):
            continue
        try:
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover)
            else:
                leftover.unlink()
            removed += 1
        except FileNotFoundError:
            continue  # its writer finished (renamed it) or another sweeper was first
        except OSError as exc:
            log.warning("could not remove the abandoned temp file %s: %s", leftover, exc)
    return removed


def _abandoned(path: Path, now: float, max_age_s: float) -> bool:
    gone = owner_gone(path.name.removeprefix(PARTIAL_PREFIX))
    if gone is not None:
        return gone
    try:
        return now - path.lstat().st_mtime > max_age_s
    except OSError:
        return False


class FileStore:
    """This machine's DATA_DIR: the SQLite file, temp files, and the file blob backend's root (what lives under it is
    named by blob key: storage/keys.py)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._tmp = self.root / "tmp"
        self._tmp.mkdir(exist_ok=True)

    @property
    def database_path(self) -> Path:
        return self.root / "kabina.sqlite3"

    def inside(self, path: str | Path) -> Path:
        """The resolved path, or PathEscape if it would leave DATA_DIR (through `..` or a symlink)."""
        candidate = Path(path)
        if not candidate.is_absolute():
            candidate = self.root / candidate
        resolved = candidate.resolve()
        if resolved != self.root and not resolved.is_relative_to(self.root):
            raise PathEscape(f"{path} is outside the data folder")
        return resolved

    def write_atomic(self, path: str | Path, data: bytes) -> Path:
        """Write all of `data` or nothing (storage's one atomic writer, for a path inside DATA_DIR)."""
        return write_atomic(self.inside(path), data)

    def sweep_partials(self, max_age_s: float = PARTIAL_MAX_AGE_S) -> int:
        """Remove the temp files and folders interrupted writes left behind (called at start-up); never those of
        a process still writing."""
        return sweep_partials(self.root, max_age_s)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
