"""Repositories for users, chats, photo sets, models, shares and the engines' published limits."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import shutil
import time
from pathlib import Path

from storage.blobs import BlobStore
from storage.contract import EngineInfo
from storage.db import Database
from storage.errors import Conflict, DuplicatePhoto, NotFound, StorageUnavailable
from storage.files import unavailable, write_atomic_with
from storage.keys import input_image_key, photo_key
from storage.records import Chat, Model, Photo, User


async def copy_blob(blobs: BlobStore, source: str, target: str) -> None:
    """A second key for a blob we own; on the file backend a hard link (no second copy of the bytes)."""
    here, there = blobs.local_path(source), blobs.local_path(target)
    if here is not None and there is not None:
        await asyncio.to_thread(_link_or_copy, here, there)
    else:
        await blobs.put(target, await blobs.get(source))


def _link_or_copy(source: Path, target: Path) -> None:
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError as exc:
        trouble = unavailable(exc, target)
        if trouble is not None:
            raise trouble from exc
        write_atomic_with(target, lambda tmp: shutil.copyfile(source, tmp))


class UserRepo:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def upsert(
        self, user_id: int, *, username: str | None = None, first_name: str | None = None, language: str | None = None
    ) -> User:
        async with self._db.transaction() as conn:
            await conn.execute(
                """INSERT INTO users (id, username, first_name, language, created_at) VALUES (?, ?, ?, ?, ?)
                   ON CONFLICT (id) DO UPDATE SET username = excluded.username,
                       first_name = excluded.first_name, language = coalesce(excluded.language, users.language)""",
                (user_id, username, first_name, language, time.time()),
            )
            row = await (await conn.execute("SELECT * FROM users WHERE id = ?", (user_id,))).fetchone()
        return User.from_row(row)

    async def get(self, user_id: int) -> User | None:
        row = await self._db.fetchone("SELECT * FROM users WHERE id = ?", (user_id,))
        return User.from_row(row) if row else None

    async def set_default_model(self, user_id: int, model_id: int | None) -> None:
        await self._db.execute("UPDATE users SET default_model_id = ? WHERE id = ?", (model_id, user_id))


class ChatRepo:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def upsert(self, chat_id: int, *, type: str, title: str | None = None) -> Chat:  # noqa: A002
        async with self._db.transaction() as conn:
            await conn.execute(
                """INSERT INTO chats (id, type, title, created_at) VALUES (?, ?, ?, ?)
                   ON CONFLICT (id) DO UPDATE SET type = excluded.type, title = excluded.title""",
                (chat_id, type, title, time.time()),
            )
            row = await (await conn.execute("SELECT * FROM chats WHERE id = ?", (chat_id,))).fetchone()
        return Chat.from_row(row)

    async def get(self, chat_id: int) -> Chat | None:
        row = await self._db.fetchone("SELECT * FROM chats WHERE id = ?", (chat_id,))
        return Chat.from_row(row) if row else None


class PhotoRepo:
    """A user's current photo set, collected in the private chat until /train or /clear."""

    def __init__(self, db: Database, blobs: BlobStore) -> None:
        self._db = db
        self._blobs = blobs

    async def knows_file(self, owner_id: int, file_unique_id: str) -> bool:
        row = await self._db.fetchone(
            "SELECT 1 FROM photos WHERE owner_id = ? AND file_unique_id = ?", (owner_id, file_unique_id)
        )
        return row is not None

    async def add(self, owner_id: int, *, file_unique_id: str, data: bytes, width: int, height: int) -> Photo:
        # Hashing and writing megabytes (with an fsync) happen off the event loop.
        sha = await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())
        if await self.knows_file(owner_id, file_unique_id):
            raise DuplicatePhoto("same_file")
        if await self._db.fetchone("SELECT 1 FROM photos WHERE owner_id = ? AND sha256 = ?", (owner_id, sha)):
            raise DuplicatePhoto("same_content")
        # The blob lands first: a row never names a missing one.
        key = photo_key(owner_id, sha)
        await self._blobs.put(key, data)
        try:
            async with self._db.transaction() as conn:
                cursor = await conn.execute(
                    """INSERT INTO photos (owner_id, file_unique_id, sha256, size, width, height, blob_key, created_at)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING *""",
                    (owner_id, file_unique_id, sha, len(data), width, height, key, time.time()),
                )
                row = await cursor.fetchone()
                await cursor.close()
        except Conflict:
            # A concurrent add of the same photo won the race; its file is the same bytes.
            raise DuplicatePhoto("same_content") from None
        except StorageUnavailable:
            # Nothing half-saved stays behind: a blob no row names is removed again.
            if await self._db.fetchone("SELECT 1 FROM photos WHERE blob_key = ?", (key,)) is None:
                await self._blobs.delete(key)
            raise
        return Photo.from_row(row)

    async def keep_input(self, owner_id: int, data: bytes) -> str:
        """Keeps a picture to draw from (not part of the photo set); returns its blob key."""
        sha = await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())
        key = input_image_key(owner_id, sha)
        await self._blobs.put(key, data)
        return key

    async def list(self, owner_id: int) -> list[Photo]:
        rows = await self._db.fetchall("SELECT * FROM photos WHERE owner_id = ? ORDER BY id", (owner_id,))
        return [Photo.from_row(r) for r in rows]

    async def count(self, owner_id: int) -> int:
        row = await self._db.fetchone("SELECT count(*) FROM photos WHERE owner_id = ?", (owner_id,))
        return int(row[0])

    async def clear(self, owner_id: int) -> int:
        photos = await self.list(owner_id)
        await self._db.execute("DELETE FROM photos WHERE owner_id = ?", (owner_id,))
        for photo in photos:
            await self._blobs.delete(photo.blob_key)
        return len(photos)


class ModelRepo:
    def __init__(self, db: Database, blobs: BlobStore) -> None:
        self._db = db
        self._blobs = blobs

    async def _require(self, model_id: int) -> Model:
        model = await self.get(model_id)
        if model is None:
            raise NotFound(f"no model {model_id}")
        return model

    async def get(self, model_id: int) -> Model | None:
        row = await self._db.fetchone("SELECT * FROM models WHERE id = ?", (model_id,))
        return Model.from_row(row) if row else None

    async def list_for_owner(self, owner_id: int) -> list[Model]:
        rows = await self._db.fetchall(
            "SELECT * FROM models WHERE owner_id = ? AND status != 'deleted' ORDER BY id DESC", (owner_id,)
        )
        return [Model.from_row(r) for r in rows]

    async def tokens_in_use(self, owner_id: int) -> set[str]:
        rows = await self._db.fetchall(
            """SELECT token FROM models WHERE owner_id = ? AND token IS NOT NULL
               AND status NOT IN ('failed', 'deleted')""",
            (owner_id,),
        )
        return {r["token"] for r in rows}

    async def rename(self, model_id: int, name: str) -> bool:
        """A new display name (the identifier and class word stay: prompts and shares keep working); False for a
        deleted model. Not a status change: those are storage/lifecycle's."""
        changed = await self._db.execute(
            "UPDATE models SET name = ?, updated_at = ? WHERE id = ? AND status != 'deleted'",
            (name, time.time(), model_id),
        )
        return changed > 0

    async def invented_words_used(self, owner_id: int, known: set[str]) -> int:
        """How many different words of their own (`known`: those of the user's models now) the user has trained,
        counting words of models deleted or forgotten since: only a hash of each is kept."""
        rows = await self._db.fetchall("SELECT word_hash FROM class_words_used WHERE user_id = ?", (owner_id,))
        return len({r["word_hash"] for r in rows} | {_word_hash(owner_id, w) for w in known})

    async def remember_invented_word(self, owner_id: int, word: str) -> None:
        await self._db.execute(
            "INSERT INTO class_words_used (user_id, word_hash) VALUES (?, ?) ON CONFLICT DO NOTHING",
            (owner_id, _word_hash(owner_id, word)))

    async def has_used_invented_word(self, owner_id: int, word: str) -> bool:
        return await self._db.fetchone("SELECT 1 FROM class_words_used WHERE user_id = ? AND word_hash = ?",
                                       (owner_id, _word_hash(owner_id, word))) is not None

    async def class_words_ever(self, owner_id: int) -> set[str]:
        """Every class word the owner has trained or queued, deleted models included (a delete refunds nothing)."""
        rows = await self._db.fetchall("SELECT DISTINCT class_word FROM models WHERE owner_id = ?", (owner_id,))
        return {r["class_word"] for r in rows}

    async def usable_by(self, user_id: int, chat_id: int) -> list[Model]:
        """Ready models this user may draw with in this chat: own ones in the private chat, plus shared ones."""
        rows = await self._db.fetchall(
            """SELECT * FROM models WHERE status = 'ready' AND (
                   (owner_id = ? AND ? = ?)
                   OR id IN (SELECT model_id FROM shares WHERE chat_id = ?))
               ORDER BY id DESC""",
            (user_id, chat_id, user_id, chat_id),
        )
        return [Model.from_row(r) for r in rows]


def _word_hash(owner_id: int, word: str) -> str:
    """A class word as the allowance remembers it: nothing a forgotten user said can be read back from it."""
    return hashlib.sha256(f"{owner_id}:{word}".encode()).hexdigest()[:24]


class ShareRepo:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def share(self, model_id: int, chat_id: int, by_user_id: int, *, via_link: str | None = None) -> bool:
        changed = await self._db.execute(
            """INSERT INTO shares (model_id, chat_id, by_user_id, created_at, via_link)
               VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING""",
            (model_id, chat_id, by_user_id, time.time(), via_link),
        )
        return changed > 0

    async def models_in_chat(self, chat_id: int) -> list[Model]:
        rows = await self._db.fetchall(
            """SELECT m.* FROM models m JOIN shares s ON s.model_id = m.id
               WHERE s.chat_id = ? AND m.status = 'ready' ORDER BY s.created_at, m.id""",
            (chat_id,),
        )
        return [Model.from_row(r) for r in rows]

    async def groups_of(self, model_id: int) -> list[Chat]:
        """The group chats the model is shared in (link shares are private chats and are not listed)."""
        rows = await self._db.fetchall(
            """SELECT s.chat_id AS id, coalesce(c.type, 'group') AS type, c.title AS title,
                      coalesce(c.created_at, s.created_at) AS created_at
               FROM shares s LEFT JOIN chats c ON c.id = s.chat_id
               WHERE s.model_id = ? AND s.via_link IS NULL AND s.chat_id < 0 ORDER BY s.created_at, s.chat_id""",
            (model_id,),
        )
        return [Chat.from_row(r) for r in rows]

    async def link_stats(self, model_id: int) -> tuple[int, int]:
        """(share links still valid, people drawing with the model through a link)."""
        links = await self._db.fetchone(
            "SELECT count(*) FROM share_links WHERE model_id = ? AND revoked_at IS NULL", (model_id,)
        )
        people = await self._db.fetchone(
            "SELECT count(*) FROM shares WHERE model_id = ? AND via_link IS NOT NULL", (model_id,)
        )
        return int(links[0]), int(people[0])

    async def chats_of(self, model_id: int) -> list[int]:
        rows = await self._db.fetchall("SELECT chat_id FROM shares WHERE model_id = ? ORDER BY chat_id", (model_id,))
        return [r["chat_id"] for r in rows]

    async def create_link(self, model_id: int) -> str:
        code = secrets.token_urlsafe(18)  # 24 url-safe characters; Telegram's start parameter allows 64
        await self._db.execute(
            "INSERT INTO share_links (code, model_id, created_at) VALUES (?, ?, ?)", (code, model_id, time.time())
        )
        return code

    async def redeem_link(self, code: str, user_id: int) -> Model | None:
        row = await self._db.fetchone(
            """SELECT m.* FROM share_links l JOIN models m ON m.id = l.model_id
               WHERE l.code = ? AND l.revoked_at IS NULL AND m.status = 'ready'""",
            (code,),
        )
        if row is None:
            return None
        model = Model.from_row(row)
        if model.owner_id != user_id:
            # A user's private chat has the user's id as its chat id.
            await self.share(model.id, user_id, user_id, via_link=code)
        return model


class EngineRepo:
    """The base model each engine serves, as the engine published it at start."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def publish(self, worker_id: str, info: EngineInfo) -> None:
        await self._db.execute(
            """INSERT INTO engines (worker_id, info, seen_at) VALUES (?, ?, ?)
               ON CONFLICT (worker_id) DO UPDATE SET info = excluded.info, seen_at = excluded.seen_at""",
            (worker_id, json.dumps(info.to_json()), time.time()),
        )

    async def current(self) -> EngineInfo:
        """The most recently started engine's limits; defaults (SD1.x) before any engine has started."""
        row = await self._db.fetchone("SELECT info FROM engines ORDER BY seen_at DESC LIMIT 1")
        return EngineInfo.model_validate_json(row["info"]) if row else EngineInfo()
