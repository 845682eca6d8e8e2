"""The PostgreSQL database: the same interface as storage.db.Database, over a psycopg connection pool.

Repositories write one SQL text for both backends (`?` placeholders, RETURNING instead of lastrowid); this module
turns it into psycopg's form and hands back rows usable as `row["col"]` and `row[0]`, like aiosqlite.Row."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import zlib
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool

from storage.errors import Conflict, SchemaTooNew, StorageUnavailable
from storage.migrations import LATEST_VERSION, MIGRATIONS, postgres_ddl

POOL_SIZE = 8
CONNECT_TIMEOUT_S = 15.0


class Row(tuple):
    """One result row, by position or by column name."""

    def __new__(cls, values: Sequence[Any], index: dict[str, int]) -> Row:
        row = super().__new__(cls, values)
        row._index = index
        return row

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


def _rows(cursor: psycopg.AsyncCursor[Any]) -> Any:
    index = {column.name: i for i, column in enumerate(cursor.description or ())}
    return lambda values: Row(values, index)


@functools.lru_cache(maxsize=1024)
def to_psycopg(sql: str) -> str:
    """`?` placeholders become psycopg's `%s` (and a literal `%` is doubled). Our SQL never has a `?` inside a
    string literal, so no parsing is needed; keep it so."""
    return sql.replace("%", "%%").replace("?", "%s")


def redacted(url: str) -> str:
    """The URL without its password, fit for an error message."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    user = netloc[0].partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[2]}"))


def with_search_path(url: str, schema: str) -> str:
    """The URL whose connections read and write `schema` (several installations, or tests, share one database)."""
    joiner = "&" if "?" in url else "?"
    return f"{url}{joiner}options={quote(f'-csearch_path={schema}')}"


class _Conn:
    """The connection a transaction hands to repositories: `await conn.execute(sql, params)` → cursor."""

    def __init__(self, raw: psycopg.AsyncConnection[Any], where: str) -> None:
        self._raw = raw
        self._where = where

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> psycopg.AsyncCursor[Any]:
        with _translated(self._where):
            return await self._raw.execute(to_psycopg(sql), tuple(params))


@contextlib.contextmanager
def _translated(where: str) -> Iterator[None]:
    try:
        yield
    except pg_errors.IntegrityError as exc:
        raise Conflict(str(exc)) from exc
    except pg_errors.TransactionRollback:
        raise
    except psycopg.OperationalError as exc:
        # Lost or refused connections (a restarted server, a pool that cannot connect): nothing can be saved now.
        reason = " ".join(str(exc).split())  # libpq's messages run over several lines
        raise StorageUnavailable("io", f"the database {where} cannot be reached: {reason}") from exc


class PgDatabase:
    """A pool of autocommit connections; a write transaction holds a transaction-level advisory lock.

    The lock makes write transactions take turns, as BEGIN IMMEDIATE does on SQLite: every read-then-write in the
    repositories stays race-free, and job events commit in id order, so a follower reading `id > cursor` never
    misses a slower transaction's event (an identity value is given at insert, not at commit)."""

    dialect = "postgresql"
    # Claimers skip a job another claimer has locked instead of waiting for it.
    skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(self, pool: AsyncConnectionPool, url: str, lock_key: int) -> None:
        self._pool = pool
        self._conninfo = url.replace("postgres://", "postgresql://", 1)
        self.url = redacted(url)
        self.path = None
        self._lock_key = lock_key
        # The channel new events are announced on, one per schema like the lock.
        self.events_channel = f"kabina_events_{lock_key}"
        self._listener: psycopg.AsyncConnection[Any] | None = None
        self._listening = asyncio.Lock()  # one connection, so one wait on it at a time

    @classmethod
    async def open(cls, url: str, *, target_version: int = LATEST_VERSION, pool_size: int = POOL_SIZE) -> PgDatabase:
        where = redacted(url)
        conninfo = url.replace("postgres://", "postgresql://", 1)

        async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
            conn.row_factory = _rows

        pool = AsyncConnectionPool(
            conninfo, min_size=1, max_size=pool_size, open=False, timeout=CONNECT_TIMEOUT_S,
            kwargs={"autocommit": True}, configure=configure,
        )
        try:
            with _translated(where):
                # One plain connection first: a wrong host or password is told at once, in the server's words,
                # not as a pool that timed out.
                probe = conninfo_to_dict(conninfo)
                probe.setdefault("connect_timeout", str(int(CONNECT_TIMEOUT_S)))  # the URL's own value wins
                await (await psycopg.AsyncConnection.connect(**probe)).close()
                await pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
                async with pool.connection() as conn:
                    schema = (await (await conn.execute("SELECT current_schema()")).fetchone())[0]
        except BaseException:
            await pool.close()
            raise
        if schema is None:
            await pool.close()
            raise StorageUnavailable("io", f"the database {where} has no schema to write to (check search_path)")
        # Advisory locks are per database; one per schema lets several installations share a database.
        db = cls(pool, url, zlib.crc32(f"kabina:{schema}".encode()) & 0x7FFFFFFF)
        try:
            await db._migrate(target_version)
        except BaseException:
            await pool.close()
            raise
        return db

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.close()
        await self._pool.close()

    async def announce_events(self, conn: _Conn) -> None:
        """Wake followers when this transaction commits (NOTIFY is delivered at commit, never before)."""
        await conn.execute(f"NOTIFY {self.events_channel}")

    async def wait_for_events(self, timeout: float) -> None:
        """Until an event may have been written, or `timeout`. Only a wake-up: a follower still reads the feed
        itself, so a notification lost with a connection costs at most one `timeout`."""
        async with self._listening:
            await self._wait_for_events(timeout)

    async def _wait_for_events(self, timeout: float) -> None:
        try:
            if self._listener is None or self._listener.closed:
                self._listener = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
                await self._listener.execute(f"LISTEN {self.events_channel}")
            async for _ in self._listener.notifies(timeout=timeout, stop_after=1):
                pass
        except psycopg.Error:
            with contextlib.suppress(psycopg.Error):
                if self._listener is not None:
                    await self._listener.close()
            self._listener = None
            await asyncio.sleep(timeout)

    async def version(self) -> int:
        row = await self.fetchone("SELECT version FROM schema_version")
        return int(row[0]) if row else 0

    async def _migrate(self, target: int) -> None:
        async with self.transaction() as conn:
            await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = await (await conn.execute("SELECT version FROM schema_version")).fetchone()
            if row is None:
                await conn.execute("INSERT INTO schema_version (version) VALUES (0)")
            current = int(row[0]) if row else 0
            if current > LATEST_VERSION:
                raise SchemaTooNew(
                    f"the database {self.url} has schema version {current}, newer than this Kabina knows "
                    f"({LATEST_VERSION}): upgrade Kabina, or point DATABASE_URL at another database"
                )
            for version in range(current + 1, target + 1):
                for statement in MIGRATIONS[version - 1]:
                    await conn.execute(postgres_ddl(statement))
                await conn.execute("UPDATE schema_version SET version = ?", (version,))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_Conn]:
        """A write transaction that waits its turn (the advisory lock) before its first statement; any error,
        cancellation included, rolls it back and the lock goes with it."""
        with _translated(self.url):
            async with self._pool.connection() as raw, raw.transaction():
                await raw.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_key,))
                yield _Conn(raw, self.url)

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        """One autocommitted statement; returns the number of rows it changed."""
        with _translated(self.url):
            async with self._pool.connection() as raw:
                cursor = await raw.execute(to_psycopg(sql), tuple(params))
                return cursor.rowcount

    async def insert(self, sql: str, params: Iterable[Any] = ()) -> int:
        """An INSERT … RETURNING id; returns the new row's id."""
        row = await self.fetchone(sql, params)
        return int(row[0])

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        with _translated(self.url):
            async with self._pool.connection() as raw:
                cursor = await raw.execute(to_psycopg(sql), tuple(params))
                return await cursor.fetchone()

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        with _translated(self.url):
            async with self._pool.connection() as raw:
                cursor = await raw.execute(to_psycopg(sql), tuple(params))
                return list(await cursor.fetchall())
