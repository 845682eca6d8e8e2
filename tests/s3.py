"""The S3 side of the blob contract tests: a fresh, private prefix of the bucket KABINA_TEST_BLOB_URL names."""

from __future__ import annotations

import os
import secrets
from urllib.parse import urlsplit, urlunsplit

TEST_BLOB_URL = os.environ.get("KABINA_TEST_BLOB_URL", "")


def url_under_own_prefix(url: str = TEST_BLOB_URL) -> str:
    """`url` with a random prefix appended, so every test sees a bucket of its own."""
    parts = urlsplit(url)
    path = "/".join(p for p in (parts.path.strip("/"), f"test-{secrets.token_hex(6)}") if p)
    return urlunsplit((parts.scheme, parts.netloc, "/" + path, parts.query, ""))
