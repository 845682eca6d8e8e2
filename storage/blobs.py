"""The blob store: every file Kabina keeps (photos, LoRAs, class images, drawn pictures, checkpoints) under a key.

The database stores keys, never paths, so the same rows work whether the bytes live under DATA_DIR
(`BLOB_URL=file://…`, the default) or in an S3-compatible bucket shared by several machines (`s3://…`).
A key is a relative POSIX path made by storage from ids and hashes (`photos/u42/<sha>.img`); with the file backend
it is exactly the file's path under DATA_DIR."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Protocol

from storage.errors import NotFound, PathEscape
from storage.files import write_atomic, write_atomic_with
from storage.keys import check_key


class BlobStore(Protocol):
    """What every backend offers. Writes are whole or nothing; reading a missing key raises NotFound."""

    url: str

    async def put(self, key: str, data: bytes) -> None: ...

    async def put_file(self, key: str, source: Path) -> None: ...

    async def get(self, key: str) -> bytes: ...

    async def download(self, key: str, target: Path) -> Path:
        """The blob written atomically to the local file `target`."""
        ...

    async def exists(self, key: str) -> bool: ...

    async def size(self, key: str) -> int: ...

    async def delete(self, key: str) -> None:
        """Gone (a missing key is no error)."""
        ...

    async def delete_prefix(self, prefix: str) -> int:
        """Every blob whose key starts with `prefix/`; returns how many went."""
        ...

    async def list(self, prefix: str) -> list[str]:
        """The keys under `prefix/`, sorted."""
        ...

    def local_path(self, key: str) -> Path | None:
        """The file that holds the blob on this machine when the backend is a folder here, else None (then the
        engine's cache downloads it)."""
        ...


class FileBlobs:
    """Blobs as files under one folder (DATA_DIR): the single-machine default, where a key is the file's path."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.url = self.root.as_uri()

    def _path(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        if not path.is_relative_to(self.root):
            raise PathEscape(f"{key!r} leaves the blob folder")
        return path

    def local_path(self, key: str) -> Path:
        return self._path(key)

    async def put(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(write_atomic, self._path(key), data)

    async def put_file(self, key: str, source: Path) -> None:
        target = self._path(key)
        if Path(source).resolve() == target:
            return
        await asyncio.to_thread(write_atomic_with, target, lambda tmp: shutil.copyfile(source, tmp))

    async def get(self, key: str) -> bytes:
        try:
            return await asyncio.to_thread(self._path(key).read_bytes)
        except (FileNotFoundError, IsADirectoryError):
            raise NotFound(f"no blob {key}") from None

    async def download(self, key: str, target: Path) -> Path:
        source = self._path(key)
        if not source.is_file():
            raise NotFound(f"no blob {key}")
        if Path(target).resolve() != source:
            await asyncio.to_thread(write_atomic_with, target, lambda tmp: shutil.copyfile(source, tmp))
        return Path(target)

    async def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    async def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"no blob {key}") from None

    async def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    async def delete_prefix(self, prefix: str) -> int:
        folder = self._path(prefix)
        if not folder.is_dir():
            return 0
        count = sum(1 for p in folder.rglob("*") if p.is_file())
        await asyncio.to_thread(shutil.rmtree, folder, True)
        return count

    async def list(self, prefix: str) -> list[str]:
        folder = self._path(prefix)
        if not folder.is_dir():
            return []
        return sorted(p.relative_to(self.root).as_posix() for p in folder.rglob("*")
                      if p.is_file() and not p.name.startswith("."))


def open_blobs(url: str | None, data_dir: str | Path) -> BlobStore:
    """The blob store BLOB_URL names; no URL means files under DATA_DIR."""
    if not url:
        return FileBlobs(data_dir)
    if url.startswith("file://"):
        return FileBlobs(Path(url.removeprefix("file://")))
    if url.startswith("s3://"):
        from storage.s3_blobs import S3Blobs  # only when asked for: obstore is not needed otherwise

        return S3Blobs(url)
    raise ValueError(f"BLOB_URL {url!r}: use file:///path or s3://bucket[/prefix]")
