"""The engine's local copies of blobs that diffusers and PIL read as files (LoRAs, photos, class images) and its work
files (checkpoints, a training's outputs), bounded in size together, the least recently used copy not in use evicted
first; a copy whose blob is gone from the store (a model deleted, a user forgotten, a finished job's checkpoints
swept) is dropped at the next sweep, on every host."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from storage.blobs import BlobStore
from storage.files import PARTIAL_PREFIX
from storage.keys import check_key

log = logging.getLogger(__name__)


class BlobCache:
    """`await cache.path(key)` is a local file holding the blob: with a blob store that is a folder on this machine,
    the blob's own file (no copy); else a copy under `folder`, downloaded once (concurrent asks share one download),
    written atomically, and kept until the cache outgrows `max_bytes`."""

    def __init__(self, blobs: BlobStore, folder: str | Path, max_bytes: int) -> None:
        self.blobs = blobs
        self.folder = Path(folder).expanduser().resolve()
        self.max_bytes = int(max_bytes)
        self._entries: OrderedDict[str, tuple[int, object]] = OrderedDict()  # key → (size, version), oldest first
        self._locks: dict[str, asyncio.Lock] = {}
        self._in_use: dict[str, int] = {}
        self._working: dict[str, int] = {}  # prefixes a job is writing under: not in the store yet
        self._adopt_existing()

    @property
    def used_bytes(self) -> int:
        """Every file under the folder: cached copies and work files (a training's checkpoints with their
        optimizer state are the biggest) count against ENGINE_CACHE_MB alike."""
        tracked = sum(size for size, _ in self._entries.values())
        return tracked + sum(size for key, size in self._files() if key not in self._entries)

    def _files(self) -> list[tuple[str, int]]:
        if not self.folder.is_dir():
            return []
        return [(path.relative_to(self.folder).as_posix(), path.stat().st_size)
                for path in self.folder.rglob("*") if path.is_file() and not path.name.startswith(PARTIAL_PREFIX)]

    @contextlib.contextmanager
    def working(self, *prefixes: str) -> Iterator[None]:
        """While a job writes under `prefixes` (its outputs, its checkpoints), a sweep leaves them be."""
        for prefix in prefixes:
            self._working[prefix] = self._working.get(prefix, 0) + 1
        try:
            yield
        finally:
            for prefix in prefixes:
                self._working[prefix] -= 1
                if not self._working[prefix]:
                    del self._working[prefix]

    def drop(self, prefix: str) -> None:
        """The local files under `prefix` go (a finished training's checkpoints, which the store keeps)."""
        if self.blobs.local_path(prefix) is not None:
            return  # the store's own files: never the cache's to delete
        shutil.rmtree(self.local_file(prefix), ignore_errors=True)
        for key in [k for k in self._entries if k.startswith(prefix.rstrip("/") + "/")]:
            del self._entries[key]

    async def sweep(self) -> list[str]:
        """Drop every local file whose blob the store no longer has: one listing per model, job or user folder
        (`models/12`, `jobs/40`, `users/5`). Returns the keys dropped. Prefixes a job is writing are skipped."""
        if self.blobs.local_path("models") is not None:
            return []  # the store is a folder here: deleting a blob deleted the file itself
        groups: dict[str, list[str]] = {}
        for key, _ in self._files():
            parts = key.split("/")
            if len(parts) > 2:
                groups.setdefault("/".join(parts[:2]), []).append(key)
        dropped: list[str] = []
        for group, keys in groups.items():
            if any(w == group or w.startswith(group + "/") or group.startswith(w.rstrip("/") + "/")
                   for w in self._working):
                continue
            present = set(await self.blobs.list(group))
            for key in keys:
                if key not in present and not self._in_use.get(key):
                    self._entries.pop(key, None)
                    with contextlib.suppress(FileNotFoundError):
                        self.local_file(key).unlink()
                    dropped.append(key)
        if dropped:
            log.info("dropped %d local copies whose blobs are gone from the store", len(dropped))
        return dropped

    def _adopt_existing(self) -> None:
        """Copies a previous run left are kept, oldest use first; their version is unknown until asked with one."""
        if not self.folder.is_dir():
            return
        found = []
        for path in self.folder.rglob("*"):
            if path.is_file() and not path.name.startswith(PARTIAL_PREFIX):
                stat = path.stat()
                found.append((stat.st_mtime, path.relative_to(self.folder).as_posix(), stat.st_size))
        for _, key, size in sorted(found):
            self._entries[key] = (size, None)

    def local_file(self, key: str) -> Path:
        """Where the copy of `key` lives in this cache."""
        return self.folder / check_key(key)

    async def path(self, key: str, version: object = None) -> Path:
        """A local file with the blob's bytes. `version` (e.g. the row's updated_at) names what the caller expects:
        a copy made for another version is fetched again."""
        own = self.blobs.local_path(key)
        if own is not None:
            return own
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            target = self.local_file(key)
            entry = self._entries.get(key)
            if entry is not None and target.is_file() and (version is None or entry[1] == version):
                self._entries.move_to_end(key)
                with contextlib.suppress(OSError):
                    os.utime(target)  # the order survives a restart
                return target
            await self.blobs.download(key, target)
            self._entries[key] = (target.stat().st_size, version)
            self._entries.move_to_end(key)
            self._evict()
            return target

    def work_path(self, key_or_prefix: str) -> Path:
        """Where the engine writes what it makes under `key_or_prefix`: the blob's own place when the store is a
        folder here (then publishing is no second write), else its spot in this cache."""
        own = self.blobs.local_path(key_or_prefix)
        return own if own is not None else self.local_file(key_or_prefix)

    async def publish(self, key: str, path: Path) -> str:
        """The work file `path` saved in the blob store under `key` (and kept here as the cached copy)."""
        await self.blobs.put_file(key, path)
        if self.blobs.local_path(key) is None and Path(path).resolve() == self.local_file(key):
            self._entries[key] = (Path(path).stat().st_size, None)
            self._entries.move_to_end(key)
            self._evict()
        return key

    async def pull_folder(self, prefix: str) -> Path:
        """Every blob under `prefix` present in its work folder (class images made on other hosts)."""
        folder = self.work_path(prefix)
        if self.blobs.local_path(prefix) is None:
            for key in await self.blobs.list(prefix):
                await self.path(key)
        return folder

    async def push_folder(self, prefix: str) -> int:
        """The files of `prefix`'s work folder the blob store lacks, uploaded; returns how many."""
        if self.blobs.local_path(prefix) is not None:
            return 0
        folder = self.local_file(prefix)
        have = set(await self.blobs.list(prefix))
        sent = 0
        for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
            key = path.relative_to(self.folder).as_posix()
            if path.is_file() and not path.name.startswith(".") and key not in have:
                await self.publish(key, path)
                sent += 1
        return sent

    @contextlib.asynccontextmanager
    async def using(self, key: str, version: object = None) -> AsyncIterator[Path]:
        """The local file, never evicted while the block runs."""
        self._in_use[key] = self._in_use.get(key, 0) + 1
        try:
            yield await self.path(key, version)
        finally:
            self._in_use[key] -= 1
            if not self._in_use[key]:
                del self._in_use[key]

    def _evict(self) -> None:
        used = self.used_bytes  # work files count, though only copies can be evicted
        for key in list(self._entries):
            if used <= self.max_bytes:
                return
            if self._in_use.get(key) or len(self._entries) == 1:
                continue  # a file being read stays, and so does the one just fetched
            size, _ = self._entries.pop(key)
            with contextlib.suppress(FileNotFoundError):
                self.local_file(key).unlink()
            used -= size
            log.debug("evicted %s from the blob cache", key)


def default_cache_dir(data_dir: Path) -> Path:
    import socket

    return Path(data_dir) / "cache" / socket.gethostname()
