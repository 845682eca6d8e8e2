"""The bot's durable records: deliveries, feed cursors, the Telegram updates it has handled or keeps, album parts."""

from __future__ import annotations

import json
import time
from typing import Any

from storage.db import Database
from storage.records import AlbumPart, Delivery


async def save_delivery(
    conn: Any, job_id: int, what: str, *, chat_id: int, message_id: int | None = None, state: str = "sent",
    data: dict[str, Any] | None = None,
) -> None:
    """One delivery record written inside the caller's transaction."""
    await conn.execute(
        """INSERT INTO deliveries (job_id, what, chat_id, message_id, state, data, updated_at)
           VALUES (?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (job_id, what) DO UPDATE SET chat_id = excluded.chat_id,
               message_id = excluded.message_id, state = excluded.state, data = excluded.data,
               updated_at = excluded.updated_at""",
        (job_id, str(what), chat_id, message_id, str(state), json.dumps(data) if data is not None else None,
         time.time()),
    )


async def mark_update(conn: Any, update_id: int) -> None:
    """The Telegram update's effect is committed with this transaction: a redelivered update is skipped."""
    await conn.execute(
        "INSERT INTO processed_updates (update_id, processed_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
        (update_id, time.time()),
    )
    await conn.execute("DELETE FROM kept_updates WHERE update_id = ?", (update_id,))


class DeliveryRepo:
    """What the bot already sent for a job, so a restarted bot sends each result once."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, job_id: int, what: str) -> Delivery | None:
        row = await self._db.fetchone("SELECT * FROM deliveries WHERE job_id = ? AND what = ?", (job_id, what))
        return Delivery.from_row(row) if row else None

    async def save(
        self,
        job_id: int,
        what: str,
        *,
        chat_id: int,
        message_id: int | None = None,
        state: str = "sent",
        data: dict[str, Any] | None = None,
    ) -> None:
        async with self._db.transaction() as conn:
            await save_delivery(conn, job_id, what, chat_id=chat_id, message_id=message_id, state=state, data=data)

    async def list_state(self, state: str) -> list[Delivery]:
        rows = await self._db.fetchall("SELECT * FROM deliveries WHERE state = ? ORDER BY job_id", (state,))
        return [Delivery.from_row(r) for r in rows]


class CursorRepo:
    """Named positions in the event feed."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, name: str) -> int:
        row = await self._db.fetchone("SELECT position FROM cursors WHERE name = ?", (name,))
        return int(row[0]) if row else 0

    async def set(self, name: str, position: int) -> None:
        await self._db.execute(
            """INSERT INTO cursors (name, position) VALUES (?, ?)
               ON CONFLICT (name) DO UPDATE SET position = excluded.position""",
            (name, position),
        )


class UpdateLog:
    """Telegram updates whose effect is committed; a redelivered update is skipped."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def seen(self, update_id: int) -> bool:
        return await self._db.fetchone("SELECT 1 FROM processed_updates WHERE update_id = ?", (update_id,)) is not None

    async def seen_among(self, update_ids: list[int]) -> set[int]:
        """Which of these updates are finished (one query for a whole getUpdates batch)."""
        rows = await self._db.fetchall(
            "SELECT update_id FROM processed_updates WHERE update_id BETWEEN ? AND ?", (min(update_ids),
                                                                                         max(update_ids)))
        wanted = set(update_ids)
        return {int(r["update_id"]) for r in rows} & wanted

    async def mark(self, update_id: int) -> None:
        async with self._db.transaction() as conn:
            await mark_update(conn, update_id)

    async def keep(self, update_id: int, raw: dict[str, Any]) -> None:
        """Take an update still being handled into our own keeping: Telegram may forget it (the offset may pass
        it), because a restarted bot handles it from here."""
        await self._db.execute(
            "INSERT INTO kept_updates (update_id, raw, kept_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            (update_id, json.dumps(raw), time.time()),
        )

    async def keep_many(self, updates: list[tuple[int, dict[str, Any]]]) -> None:
        """`keep` for many updates in one transaction (a busy user's backlog, parked by the poller)."""
        now = time.time()
        async with self._db.transaction() as conn:
            for update_id, raw in updates:
                await conn.execute(
                    "INSERT INTO kept_updates (update_id, raw, kept_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                    (update_id, json.dumps(raw), now),
                )

    async def kept(self) -> list[tuple[int, dict[str, Any]]]:
        """Updates taken into keeping and not finished, oldest first."""
        rows = await self._db.fetchall(
            """SELECT update_id, raw FROM kept_updates
               WHERE update_id NOT IN (SELECT update_id FROM processed_updates) ORDER BY update_id"""
        )
        return [(int(r["update_id"]), json.loads(r["raw"])) for r in rows]

    async def last_id(self) -> int | None:
        row = await self._db.fetchone("SELECT max(update_id) FROM processed_updates")
        return int(row[0]) if row and row[0] is not None else None


class AlbumRepo:
    """The parts of albums whose one summary has not been sent yet; a restarted bot still sends it."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def add_part(
        self, chat_id: int, media_group_id: str, update_id: int, *, owner_id: int, result: dict[str, Any],
        reply_to: int | None, lang: str,
    ) -> None:
        """The first outcome recorded for an update stands: the same update handled again after a restart
        (its photo already saved) must not turn "saved" into "already in your set"."""
        await self._db.execute(
            """INSERT INTO album_parts
                   (chat_id, media_group_id, update_id, owner_id, result, reply_to, lang, created_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING""",
            (chat_id, media_group_id, update_id, owner_id, json.dumps(result), reply_to, lang, time.time()),
        )

    async def parts(self, chat_id: int, media_group_id: str) -> list[AlbumPart]:
        rows = await self._db.fetchall(
            "SELECT * FROM album_parts WHERE chat_id = ? AND media_group_id = ? ORDER BY update_id",
            (chat_id, media_group_id),
        )
        return [AlbumPart.from_row(r) for r in rows]

    async def waiting(self) -> list[tuple[int, str]]:
        """(chat id, media group id) of every album still owed its summary, oldest first."""
        rows = await self._db.fetchall(
            """SELECT chat_id, media_group_id FROM album_parts GROUP BY chat_id, media_group_id
               ORDER BY min(created_at)"""
        )
        return [(int(r["chat_id"]), str(r["media_group_id"])) for r in rows]

    async def forget(self, chat_id: int, media_group_id: str) -> None:
        await self._db.execute(
            "DELETE FROM album_parts WHERE chat_id = ? AND media_group_id = ?", (chat_id, media_group_id)
        )
