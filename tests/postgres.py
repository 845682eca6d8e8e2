"""A PostgreSQL schema of its own for each test, so tests on one database never see each other's rows."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from storage.pg import with_search_path

ENV = "KABINA_TEST_DATABASE_URL"
SKIP_REASON = f"PostgreSQL tests are off: set {ENV}=postgresql://root@127.0.0.1:5432/test to run them"


def configured_url() -> str | None:
    return os.environ.get(ENV) or None


@contextmanager
def fresh_schema(url: str) -> Iterator[str]:
    """A URL whose connections write to a new, empty schema (set as their search_path); dropped afterwards."""
    import psycopg

    schema = f"kabina_{secrets.token_hex(6)}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield with_search_path(url, schema)
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
