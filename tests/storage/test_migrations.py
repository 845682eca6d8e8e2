"""Schema migrations on SQLite. SQLite only: they read PRAGMA user_version, WAL mode and the database file itself;
PostgreSQL's schema_version table has its own tests in test_postgres.py."""

from __future__ import annotations

from pathlib import Path

import aiosqlite
import pytest

from storage import SchemaTooNew, Storage
from storage.db import Database
from storage.migrations import LATEST_VERSION


async def test_a_fresh_database_gets_the_latest_schema_in_wal_mode(tmp_path: Path) -> None:
    store = await Storage.open(tmp_path)
    try:
        assert await store.db.version() == LATEST_VERSION
        mode = await store.db.fetchone("PRAGMA journal_mode")
        assert mode[0] == "wal"
        assert (tmp_path / "kabina.sqlite3").exists()
    finally:
        await store.close()


async def test_a_database_of_the_previous_version_upgrades_in_place_keeping_its_data(tmp_path: Path) -> None:
    old = await Database.open(tmp_path / "kabina.sqlite3", target_version=LATEST_VERSION - 1)
    assert await old.version() == LATEST_VERSION - 1
    await old.execute(
        "INSERT INTO users (id, username, first_name, language, created_at) VALUES (7, 'ann', 'Ann', 'en', 0)"
    )
    await old.execute(
        """INSERT INTO models (owner_id, name, class_word, token, status, created_at, updated_at)
           VALUES (7, 'dog', 'dog', 'sks', 'ready', 0, 0)"""
    )
    await old.execute("INSERT INTO shares (model_id, chat_id, by_user_id, created_at) VALUES (1, -100, 7, 0)")
    await old.close()

    store = await Storage.open(tmp_path)
    try:
        assert await store.db.version() == LATEST_VERSION
        assert (await store.users.get(7)).username == "ann"
        assert [m.token for m in await store.shares.models_in_chat(-100)] == ["sks"]
        # and what the new version added works on the old data
        code = await store.shares.create_link(1)
        assert (await store.shares.redeem_link(code, 8)).id == 1
        assert (await store.preferences.get(7)).steps is None
        assert (await store.preferences.update(7, steps=30, language="ru")).steps == 30
        assert (await store.preferences.get(7)).language == "ru"
    finally:
        await store.close()


async def test_a_database_from_a_newer_kabina_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    await (await Storage.open(tmp_path)).close()
    async with aiosqlite.connect(tmp_path / "kabina.sqlite3") as conn:
        await conn.execute(f"PRAGMA user_version={LATEST_VERSION + 1}")
        await conn.commit()
    with pytest.raises(SchemaTooNew, match="newer than this Kabina knows"):
        await Storage.open(tmp_path)
