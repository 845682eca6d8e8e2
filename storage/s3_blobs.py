"""Blobs in an S3-compatible bucket (AWS, SeaweedFS, MinIO…), shared by every bot and engine host.

`BLOB_URL=s3://bucket[/prefix][?endpoint=http://host:8333&region=us-east-1]`. Only where the bucket lives goes in
the URL; the access key pair comes from the standard environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, and
AWS_SESSION_TOKEN where used), so a secret never sits in a setting that gets printed. AWS_ENDPOINT_URL and
AWS_REGION are read when the URL does not say."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import obstore as obs
from obstore.exceptions import BaseError as ObstoreError
from obstore.store import S3Store

from storage.errors import NotFound, PathEscape, StorageUnavailable
from storage.files import write_atomic_with
from storage.keys import check_key

# Bytes beyond this go up as a multipart upload in parts of this size (S3's minimum part is 5 MiB).
MULTIPART_CHUNK = 8 * 1024 * 1024
_QUERY_KEYS = {"endpoint", "region"}
# A dead endpoint should surface as StorageUnavailable in seconds, not after object_store's 3-minute default.
_RETRY = {"max_retries": 3, "retry_timeout": timedelta(seconds=20)}


class S3Blobs:
    """The blob store as objects in one bucket under an optional prefix; keys are the objects' names under it."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
        unknown = set(query) - _QUERY_KEYS
        if parts.scheme != "s3" or not parts.netloc or unknown:
            hint = f" (unknown {', '.join(sorted(unknown))}; credentials go in AWS_* variables)" if unknown else ""
            raise ValueError(f"BLOB_URL {url!r}: use s3://bucket[/prefix]?endpoint=…&region=…{hint}")
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        if self.prefix and not _is_key(self.prefix):
            raise ValueError(f"BLOB_URL {url!r}: the prefix {self.prefix!r} may hold only letters, digits, . _ - and /")
        self.url = url
        endpoint = query.get("endpoint") or os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT")
        config: dict[str, str] = {}
        if endpoint:
            config["endpoint"] = endpoint
        region = query.get("region") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if region:
            config["region"] = region
        self._secret = os.environ.get("AWS_SECRET_ACCESS_KEY", "")
        self._store = S3Store(
            self.bucket,
            prefix=self.prefix or None,
            config=config,  # type: ignore[arg-type]
            client_options={"allow_http": bool(endpoint and endpoint.startswith("http://"))},
            retry_config=_RETRY,  # type: ignore[arg-type]
        )

    def local_path(self, key: str) -> None:
        check_key(key)
        return None

    async def put(self, key: str, data: bytes) -> None:
        async with self._errors(key):
            await obs.put_async(self._store, check_key(key), data, use_multipart=len(data) > MULTIPART_CHUNK,
                                chunk_size=MULTIPART_CHUNK)

    async def put_file(self, key: str, source: Path) -> None:
        # obstore reads the file itself and switches to a multipart upload past one chunk; S3 shows the object
        # only when the upload completes, so a reader never sees part of it.
        async with self._errors(key):
            await obs.put_async(self._store, check_key(key), Path(source), chunk_size=MULTIPART_CHUNK)

    async def get(self, key: str) -> bytes:
        async with self._errors(key):
            result = await obs.get_async(self._store, check_key(key))
            return bytes(await result.bytes_async())

    async def download(self, key: str, target: Path) -> Path:
        async with self._errors(key):
            result = await obs.get_async(self._store, check_key(key))

            def fill(tmp: Path) -> None:
                with tmp.open("wb") as out:
                    for chunk in result.stream(min_chunk_size=1024 * 1024):
                        out.write(chunk)

            await asyncio.to_thread(write_atomic_with, target, fill)
        return Path(target)

    async def exists(self, key: str) -> bool:
        try:
            await self.size(key)
        except NotFound:
            return False
        return True

    async def size(self, key: str) -> int:
        async with self._errors(key):
            meta = await obs.head_async(self._store, check_key(key))
            return int(meta["size"])

    async def delete(self, key: str) -> None:
        # S3's DELETE of a missing object succeeds, so "gone" needs no check first.
        async with self._errors(key):
            await obs.delete_async(self._store, check_key(key))

    async def delete_prefix(self, prefix: str) -> int:
        count = 0
        async with self._errors(prefix):
            async for page in self._pages(prefix):
                # One DeleteObjects request per listing page (S3 takes at most 1,000 keys a request).
                await obs.delete_async(self._store, page)
                count += len(page)
        return count

    async def list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        async with self._errors(prefix):
            async for page in self._pages(prefix):
                keys.extend(page)
        return sorted(keys)

    async def _pages(self, prefix: str) -> AsyncIterator[list[str]]:
        # obstore's listing is by whole path segments, so `models/7` never matches `models/70/…`; it follows
        # S3's continuation tokens itself, past the 1,000 keys of one response.
        async for chunk in obs.list(self._store, check_key(prefix), chunk_size=1000):
            yield [meta["path"] for meta in chunk]

    @contextlib.asynccontextmanager
    async def _errors(self, key: str) -> AsyncIterator[None]:
        """obstore's errors as storage's: a missing object is NotFound, everything else (refused keys, a dead
        endpoint, a missing bucket) StorageUnavailable with a one-line message free of the secret key."""
        try:
            yield
        except FileNotFoundError:
            raise NotFound(f"no blob {key}") from None
        except (ObstoreError, OSError) as exc:
            raise StorageUnavailable("io", self._describe(exc, key)) from None

    def _describe(self, exc: BaseException, key: str) -> str:
        # obstore's first line names the request and the status; the XML body and debug dump after it do not help.
        first = next(_lines(str(exc)), type(exc).__name__).split(": <", 1)[0][:300]
        if self._secret:
            first = first.replace(self._secret, "***")
        refused = type(exc).__name__ in {"PermissionDeniedError", "UnauthenticatedError"}
        reason = ("the access key pair was refused (check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)" if refused
                  else "the S3 store did not answer")
        return f"blob {key} in s3://{self.bucket}: {reason}: {first}"


def _is_key(text: str) -> bool:
    try:
        check_key(text)
    except PathEscape:
        return False
    return True


def _lines(text: str) -> Iterator[str]:
    return (line.strip() for line in text.splitlines() if line.strip())
