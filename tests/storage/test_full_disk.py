"""A full disk or a read-only filesystem under DATA_DIR: one clear StorageUnavailable, and recovery once it is fixed.

SQLite only: the database file lives in DATA_DIR here (a tmpfs too small for it); a PostgreSQL server's disk is
the server's, and its lost connections are tested in test_postgres.py."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from storage import Storage, StorageUnavailable
from storage.db import storage_trouble
from tests.helpers import TightDisk

needs_mount = pytest.mark.skipif(not TightDisk.possible(), reason="needs root and mount to make a real full filesystem")


@needs_mount
async def test_a_full_disk_refuses_database_writes_clearly_and_they_work_again_when_space_returns(
    tmp_path: Path,
) -> None:
    with TightDisk(tmp_path / "disk", size=2 * 1024 * 1024) as disk:
        store = await Storage.open(disk.path / "data")
        try:
            await store.users.upsert(1, first_name="Ann")
            disk.fill()
            with pytest.raises(StorageUnavailable) as caught:
                await store.users.upsert(2, first_name="Boris" * 100)
            assert caught.value.reason == "no_space"
            assert (await store.users.get(1)).first_name == "Ann"  # reading still works
            disk.free()
            await store.users.upsert(2, first_name="Boris")  # the same connection, no restart
            assert (await store.users.get(2)).first_name == "Boris"
        finally:
            await store.close()


@needs_mount
async def test_a_read_only_data_dir_at_start_is_one_clear_storage_unavailable(tmp_path: Path) -> None:
    with TightDisk(tmp_path / "disk") as disk:
        await (await Storage.open(disk.path / "data")).close()
        disk.read_only()
        with pytest.raises(StorageUnavailable) as caught:
            await Storage.open(disk.path / "data")
        assert caught.value.reason == "read_only" and "read-only" in str(caught.value)
        disk.writable()
        await (await Storage.open(disk.path / "data")).close()


def test_sqlite_refusing_a_write_to_a_read_only_database_is_storage_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x)")
    readonly = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        with pytest.raises(sqlite3.OperationalError) as caught:
            readonly.execute("INSERT INTO t VALUES (1)")
    finally:
        readonly.close()
    trouble = storage_trouble(caught.value)
    assert trouble is not None and trouble.reason == "read_only"
