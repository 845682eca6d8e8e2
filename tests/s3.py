"""The S3 side of the blob contract tests: a fresh, private prefix of the bucket KABINA_TEST_BLOB_URL names."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

from storage.s3_blobs import S3Blobs

TEST_BLOB_URL = os.environ.get("KABINA_TEST_BLOB_URL", "")


def url_under_own_prefix(url: str = TEST_BLOB_URL) -> str:
    """`url` with a random prefix appended, so every test sees a bucket of its own."""
    parts = urlsplit(url)
    path = "/".join(p for p in (parts.path.strip("/"), f"test-{secrets.token_hex(6)}") if p)
    return urlunsplit((parts.scheme, parts.netloc, "/" + path, parts.query, ""))


async def own_prefix_blobs() -> AsyncIterator[S3Blobs]:
    """A store under a fresh prefix, emptied afterwards so a real bucket does not fill up with test leftovers."""
    store = S3Blobs(url_under_own_prefix())
    yield store
    parent = S3Blobs(TEST_BLOB_URL)
    await parent.delete_prefix(store.prefix.removeprefix(parent.prefix).strip("/"))
