"""The lifecycle's use cases that end someone's access to a model: a share ended (/unshare, "Stop in group", the bot
or the owner leaving the group), links revoked, a group moved to its supergroup. Whatever was drawn through an ended
access stops with it, in the same transaction: its queued drawings are cancelled, its running ones asked to stop."""

from __future__ import annotations

from typing import Any

from storage.lifecycle.steps import UNFINISHED, Steps
from storage.records import Model


class AccessCases(Steps):
    async def end_share(self, model_id: int, chat_id: int) -> bool:
        """/unshare, or "Stop in group": the model is no longer shared in the chat, and every unfinished drawing
        made with it there (queued or running, whoever asked) stops with it. False if it was not shared there."""
        async with self._db.transaction() as conn:
            return bool(await self._end_shares(conn, "model_id = ? AND chat_id = ?", (model_id, chat_id)))

    async def revoke_links(self, model_id: int) -> int:
        """"Revoke links": no link of the model opens it any more, everyone who came through one loses it, and
        their unfinished drawings with it stop. Returns how many links were still valid."""
        async with self._db.transaction() as conn:
            cursor = await conn.execute(
                "UPDATE share_links SET revoked_at = ? WHERE model_id = ? AND revoked_at IS NULL",
                (self._now(), model_id))
            revoked = cursor.rowcount
            await self._end_shares(conn, "model_id = ? AND via_link IS NOT NULL", (model_id,))
        return revoked

    async def end_chat(self, chat_id: int) -> list[Model]:
        """The bot left the group (or was removed): every share there ends, with the drawings made through them.
        Returns the models that were shared there."""
        async with self._db.transaction() as conn:
            rows = await (await conn.execute(
                """SELECT m.* FROM models m JOIN shares s ON s.model_id = m.id WHERE s.chat_id = ?
                   ORDER BY m.owner_id, m.id""", (chat_id,))).fetchall()
            await self._end_shares(conn, "chat_id = ?", (chat_id,))
        return [Model.from_row(r) for r in rows]

    async def owner_left(self, user_id: int, chat_id: int) -> list[Model]:
        """A model's owner left the group: their shares there end (they can no longer answer for what is drawn
        in their name), with the drawings made through them. Returns the models that were shared."""
        async with self._db.transaction() as conn:
            rows = await (await conn.execute(
                """SELECT m.* FROM models m JOIN shares s ON s.model_id = m.id
                   WHERE s.chat_id = ? AND m.owner_id = ? ORDER BY m.id""", (chat_id, user_id))).fetchall()
            for row in rows:
                await self._end_shares(conn, "model_id = ? AND chat_id = ?", (row["id"], chat_id))
        return [Model.from_row(r) for r in rows]

    async def move_chat(self, old_chat_id: int, new_chat_id: int) -> int:
        """A group became a supergroup (a new chat id): its shares follow it, and so do its jobs, so the results
        still owed to it are delivered there. Returns how many shares moved."""
        async with self._db.transaction() as conn:
            cursor = await conn.execute(
                """INSERT INTO shares (model_id, chat_id, by_user_id, created_at, via_link)
                   SELECT model_id, CAST(? AS BIGINT), by_user_id, created_at, via_link FROM shares WHERE chat_id = ?
                   ON CONFLICT DO NOTHING""",
                (new_chat_id, old_chat_id),
            )
            moved = cursor.rowcount
            await conn.execute("DELETE FROM shares WHERE chat_id = ?", (old_chat_id,))
            await conn.execute("UPDATE jobs SET chat_id = ? WHERE chat_id = ?", (new_chat_id, old_chat_id))
        return moved

    async def _end_shares(self, conn: Any, where: str, params: tuple[Any, ...]) -> int:
        """Delete the shares `where` selects and stop the unfinished drawings made through each of them."""
        shares = await (await conn.execute(f"SELECT model_id, chat_id FROM shares WHERE {where}", params)).fetchall()
        for share in shares:
            jobs = await (await conn.execute(
                f"""SELECT * FROM jobs WHERE kind = 'draw' AND model_id = ? AND chat_id = ?
                    AND status IN {UNFINISHED}""", (share["model_id"], share["chat_id"]))).fetchall()
            for row in jobs:
                await self._cancel_row(conn, row, [])
        await conn.execute(f"DELETE FROM shares WHERE {where}", params)
        return len(shares)
