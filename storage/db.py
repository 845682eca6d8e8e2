"""The SQLite connection: WAL mode, migrations at start-up, and serialised transactions; and the choice of backend
by DATABASE_URL (storage/pg.py is the PostgreSQL one, with the same interface)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiosqlite

from storage.errors import ConfigError, Conflict, SchemaTooNew, StorageUnavailable
from storage.files import filesystem_state
from storage.migrations import LATEST_VERSION, MIGRATIONS

if TYPE_CHECKING:
    from storage.pg import PgDatabase

# SQLite's primary result codes that mean "nothing can be saved now", not "this statement is wrong".
_UNAVAILABLE_CODES = {sqlite3.SQLITE_FULL: "no_space", sqlite3.SQLITE_READONLY: "read_only",
                      sqlite3.SQLITE_IOERR: "io", sqlite3.SQLITE_CANTOPEN: "io"}


def storage_trouble(exc: BaseException, path: Path | None = None) -> StorageUnavailable | None:
    """The StorageUnavailable an sqlite3 error really is (disk full, read-only, I/O), or None."""
    if isinstance(exc, StorageUnavailable):
        return exc
    if not isinstance(exc, sqlite3.DatabaseError):
        return None
    code = getattr(exc, "sqlite_errorcode", None)
    reason = _UNAVAILABLE_CODES.get(code & 0xFF) if isinstance(code, int) else None
    if reason is None:
        text = str(exc).lower()
        if "disk is full" in text:
            reason = "no_space"
        elif "readonly" in text or "read-only" in text:
            reason = "read_only"
        else:
            return None
    if reason == "io" and path is not None:
        # SQLite reports a read-only or full filesystem under its files as an I/O or open error.
        reason = filesystem_state(path) or reason
    what = {"no_space": "the disk is full", "read_only": "it is read-only"}.get(reason, "an I/O error")
    return StorageUnavailable(reason, f"the database {path or ''} cannot be written ({what}): {exc}")


@contextlib.contextmanager
def _translated(path: Path | None = None) -> Iterator[None]:
    try:
        yield
    except sqlite3.IntegrityError as exc:
        raise Conflict(str(exc)) from exc
    except sqlite3.DatabaseError as exc:
        trouble = storage_trouble(exc, path)
        if trouble is None:
            raise
        raise trouble from exc


class Database:
    """One aiosqlite connection; a lock keeps coroutines from interleaving inside a transaction."""

    dialect = "sqlite"
    # SQLite has no row locks: BEGIN IMMEDIATE already makes a claim the only writer.
    skip_locked = ""

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()
        self.path = path

    @classmethod
    async def open(cls, path: Path, *, target_version: int = LATEST_VERSION) -> Database:
        with _translated(path):
            conn = await aiosqlite.connect(path, isolation_level=None, timeout=30)
        conn.row_factory = aiosqlite.Row
        try:
            with _translated(path):
                # WAL lets readers run beside the writer; NORMAL sync is durable at each checkpoint and
                # never corrupts on power loss, at a fraction of FULL's fsyncs.
                await conn.execute("PRAGMA journal_mode=WAL")
                await conn.execute("PRAGMA synchronous=NORMAL")
                await conn.execute("PRAGMA foreign_keys=ON")
                await conn.execute("PRAGMA busy_timeout=30000")
        except BaseException:
            await conn.close()
            raise
        db = cls(conn, path)
        try:
            await db._migrate(target_version)
        except BaseException:
            await conn.close()
            raise
        return db

    async def close(self) -> None:
        await self._conn.close()

    async def announce_events(self, conn: aiosqlite.Connection) -> None:
        """Nothing to do: SQLite followers poll (a file has no one to tell)."""

    async def wait_for_events(self, timeout: float) -> None:
        await asyncio.sleep(timeout)

    async def version(self) -> int:
        row = await self.fetchone("PRAGMA user_version")
        return int(row[0])

    async def _migrate(self, target: int) -> None:
        async with self.transaction() as conn:
            current = int((await (await conn.execute("PRAGMA user_version")).fetchone())[0])
            if current > LATEST_VERSION:
                raise SchemaTooNew(
                    f"the database {self.path} has schema version {current}, newer than this Kabina knows "
                    f"({LATEST_VERSION}): upgrade Kabina, or point DATA_DIR at another folder"
                )
            for version in range(current + 1, target + 1):
                for statement in MIGRATIONS[version - 1]:
                    await conn.execute(statement)
                await conn.execute(f"PRAGMA user_version={version}")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction taken at once (BEGIN IMMEDIATE), so two processes never both think they won.

        A full disk or a read-only database comes out as StorageUnavailable, and the transaction is always
        closed (a COMMIT that failed is rolled back), so the connection works again once space returns."""
        async with self._lock:
            with _translated(self.path):
                try:
                    await self._conn.execute("BEGIN IMMEDIATE")
                    yield self._conn
                    await self._conn.execute("COMMIT")
                except BaseException:
                    await self._close_transaction()
                    raise

    async def _close_transaction(self) -> None:
        """Roll back whatever the interrupted transaction left open, even when we were cancelled mid-statement.

        A cancelled await does not stop the statement: aiosqlite still runs it (a BEGIN, say) on its thread, in
        order. So a ROLLBACK is always queued behind it and awaited to the end, even through a second cancel.
        Its own error is never the story: "no transaction is active" means nothing was left open (SQLite rolls a
        transaction back by itself on a full disk), and the caller re-raises the error that mattered."""
        rollback = asyncio.ensure_future(self._conn.execute("ROLLBACK"))
        with contextlib.suppress(asyncio.CancelledError, sqlite3.Error):
            await asyncio.shield(rollback)
        await asyncio.wait([rollback])
        with contextlib.suppress(sqlite3.Error):
            rollback.result()

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        """One autocommitted statement; returns the number of rows it changed."""
        async with self._lock:
            with _translated(self.path):
                cursor = await self._conn.execute(sql, tuple(params))
                return cursor.rowcount

    async def insert(self, sql: str, params: Iterable[Any] = ()) -> int:
        """An INSERT … RETURNING id; returns the new row's id."""
        row = await self.fetchone(sql, params)
        return int(row[0])

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> aiosqlite.Row | None:
        async with self._lock:
            with _translated(self.path):
                cursor = await self._conn.execute(sql, tuple(params))
                return await cursor.fetchone()

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[aiosqlite.Row]:
        async with self._lock:
            with _translated(self.path):
                cursor = await self._conn.execute(sql, tuple(params))
                return list(await cursor.fetchall())


def sqlite_path(url: str) -> Path:
    """`sqlite:///relative/file` or `sqlite:////absolute/file` → the file."""
    rest = url.removeprefix("sqlite:///")
    if rest == url or not rest:
        raise ConfigError(f"DATABASE_URL={url!r}: expected sqlite:///path/to/file.sqlite3")
    return Path(rest)


async def open_database(url: str | None, default_path: Path) -> Database | PgDatabase:
    """The backend DATABASE_URL names: SQLite (the default, at `default_path`) or PostgreSQL."""
    if url is None or not url.strip():
        return await Database.open(default_path)
    url = url.strip()
    if url.startswith(("postgresql://", "postgres://")):
        from storage.pg import PgDatabase

        return await PgDatabase.open(url)
    if url.startswith("sqlite:"):
        return await Database.open(sqlite_path(url))
    raise ConfigError("DATABASE_URL must start with sqlite:/// or postgresql:// (e.g. postgresql://user@host/db)")
