"""`python -m storage migrate --to DATABASE_URL --blobs BLOB_URL`: copy a single-machine install (SQLite + files
under DATA_DIR) into another database and blob store (PostgreSQL + S3, typically), verify it, and leave the
source as it was.

The source is read through a read-only SQLite connection and the files are only read, so a failed or repeated run
never harms the install it copies; the target must be empty, so a second run cannot mix two copies."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storage.blobs import FileBlobs, open_blobs
from storage.db import open_database
from storage.errors import StorageError
from storage.migrations import LATEST_VERSION

# Everything rows name by key lives under these prefixes of DATA_DIR; the rest (the database, temp files, the
# engine's caches) belongs to this machine.
BLOB_PREFIXES = ("photos", "models", "class_images", "jobs")
# Rows that describe this machine's processes at this moment, not the install: a copy would only mislead.
MACHINE_TABLES = {"leases", "engines"}


class TransferError(StorageError):
    """The copy cannot be made (or did not verify); the message says what to do."""


@dataclass
class TransferReport:
    rows: dict[str, int] = field(default_factory=dict)
    blobs: int = 0
    blob_bytes: int = 0
    verified: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "blobs": self.blobs, "blob_bytes": self.blob_bytes, "verified": self.verified}


def _read_source(path: Path) -> tuple[int, dict[str, tuple[list[str], list[tuple[Any, ...]]]], set[str]]:
    """(schema version, {table: (columns, rows)} in creation order, tables with an id sequence) — read-only."""
    if not path.is_file():
        raise TransferError(f"no Kabina database at {path}: point DATA_DIR at the install to copy")
    wal = path.with_name(path.name + "-wal")
    if wal.exists() and wal.stat().st_size:
        raise TransferError(
            f"{path} has unsaved writes beside it ({wal.name}): stop the bot and the engine, then run this again"
        )
    # immutable: SQLite neither writes nor creates anything beside the file (no -shm, no -wal), so the source
    # stays byte for byte as it was. Safe because nothing writes it now (checked just above).
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro&immutable=1", uri=True)
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid"
        ).fetchall()
        data = {}
        sequenced = set()
        for name, sql in tables:
            if name in MACHINE_TABLES:
                continue
            cursor = conn.execute(f'SELECT * FROM "{name}" ORDER BY rowid')
            data[name] = ([c[0] for c in cursor.description], cursor.fetchall())
            if "AUTOINCREMENT" in sql.upper():
                sequenced.add(name)
        return version, data, sequenced
    finally:
        conn.close()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def transfer(data_dir: str | Path, database_url: str, blob_url: str) -> TransferReport:
    """Copy the install in `data_dir` into `database_url` + `blob_url` and verify counts and hashes."""
    source_files = FileBlobs(data_dir)
    version, tables, sequenced = await asyncio.to_thread(_read_source, source_files.root / "kabina.sqlite3")
    if version != LATEST_VERSION:
        raise TransferError(
            f"the database in {source_files.root} is at schema version {version}, this Kabina writes "
            f"{LATEST_VERSION}: start this Kabina on it once (or run `python -m storage migrate`) first"
        )
    target_blobs = open_blobs(blob_url, source_files.root)
    if isinstance(target_blobs, FileBlobs) and target_blobs.root == source_files.root:
        raise TransferError("BLOB_URL names the install's own folder: give the new blob store")
    report = TransferReport()
    target = await open_database(database_url, source_files.root / "kabina.sqlite3")
    try:
        if getattr(target, "path", None) == source_files.root / "kabina.sqlite3":
            raise TransferError("DATABASE_URL names the install's own database: give the new one")
        await _refuse_non_empty(target, tables)
        await _copy_blobs(source_files, target_blobs, report)
        await _copy_rows(target, tables, sequenced, report)
        await _verify_rows(target, tables)
        await _verify_blobs(source_files, target_blobs)
        report.verified = True
    finally:
        await target.close()
    return report


async def _refuse_non_empty(target: Any, tables: dict[str, tuple[list[str], list[tuple[Any, ...]]]]) -> None:
    for name in tables:
        row = await target.fetchone(f'SELECT count(*) FROM "{name}"')
        if row[0]:
            raise TransferError(f"the target database already has rows in {name}: migrate into an empty database")


async def _copy_blobs(source: FileBlobs, target: Any, report: TransferReport) -> None:
    for prefix in BLOB_PREFIXES:
        for key in await source.list(prefix):
            path = source.local_path(key)
            await target.put_file(key, path)
            report.blobs += 1
            report.blob_bytes += path.stat().st_size


async def _copy_rows(target: Any, tables: dict[str, tuple[list[str], list[tuple[Any, ...]]]],
                     sequenced: set[str], report: TransferReport) -> None:
    """One transaction: the target has all the rows or none."""
    async with target.transaction() as conn:
        for name, (columns, rows) in tables.items():
            names = ", ".join(f'"{c}"' for c in columns)
            marks = ", ".join("?" for _ in columns)
            for row in rows:
                await conn.execute(f'INSERT INTO "{name}" ({names}) VALUES ({marks})', row)
            report.rows[name] = len(rows)
            if name in sequenced and rows and target.dialect == "postgresql":
                # Ids were copied as they were: the identity must continue after the highest, not at 1.
                await conn.execute(
                    f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), (SELECT max(id) FROM \"{name}\"))"
                )


def _sorted(rows: list[Any]) -> list[tuple[Any, ...]]:
    return sorted((tuple(r) for r in rows), key=lambda r: tuple((v is None, v) for v in r))


async def _verify_rows(target: Any, tables: dict[str, tuple[list[str], list[tuple[Any, ...]]]]) -> None:
    for name, (columns, rows) in tables.items():
        names = ", ".join(f'"{c}"' for c in columns)
        copied = await target.fetchall(f'SELECT {names} FROM "{name}"')
        if _sorted(copied) != _sorted(rows):
            raise TransferError(f"table {name} did not copy faithfully ({len(copied)} rows there, {len(rows)} here)")


async def _verify_blobs(source: FileBlobs, target: Any) -> None:
    """Every file of the install is in the target under its key, byte for byte (a first, interrupted run may have
    left the same blobs there already: they are simply written again)."""
    for prefix in BLOB_PREFIXES:
        there = set(await target.list(prefix))
        for key in await source.list(prefix):
            if key not in there:
                raise TransferError(f"blob {key} is missing from the new blob store")
            if _sha256(await target.get(key)) != _sha256(await source.get(key)):
                raise TransferError(f"blob {key} differs from its source")
