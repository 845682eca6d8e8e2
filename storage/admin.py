"""The operator's view and controls: the figures behind /stats and /metrics, bans, and daily-allowance resets."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storage.db import Database

DAY_S = 24 * 3600.0
# An engine that has not said it is alive for this long is counted as gone (it beats every ENGINE_BEAT_S).
ENGINE_BEAT_S = 10.0
ENGINE_ALIVE_S = 6 * ENGINE_BEAT_S
OUTBOX_CURSOR = "bot.events"  # bot/delivery.py's place in the job event feed


@dataclass(frozen=True)
class KindQueue:
    """One job kind's line: how many wait, how many run, and how long the oldest has waited."""

    kind: str
    queued: int
    running: int
    oldest_wait_s: float


@dataclass(frozen=True)
class EngineSeen:
    worker_id: str
    family: str
    title: str
    alive_s_ago: float
    busy_with: int | None  # the job it holds a live lease on


@dataclass(frozen=True)
class Stats:
    users: int
    queues: list[KindQueue]
    trainings_today: int
    draws_today: int
    failures_today: dict[str, int]  # by failure code (the job's error), the last 24 hours
    engines: list[EngineSeen]  # alive ones only
    outbox_backlog: int  # finished jobs whose results the bot has not delivered yet
    banned: int
    database_bytes: int | None
    disk_free_bytes: int
    disk_total_bytes: int
    queue_by_kind: dict[str, KindQueue] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "queue_by_kind", {q.kind: q for q in self.queues})


def failure_code(error: str | None) -> str:
    """A job's stored failure as a short code: the code itself, or the first words of an older free text."""
    text = (error or "unknown").strip()
    if " " not in text:
        return text[:40]
    return text.split("(")[0].strip()[:40]


class AdminRepo:
    """Counts for the operator, and the two things only an admin changes: bans and allowance resets."""

    def __init__(self, db: Database, data_dir: Path, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._data_dir = data_dir
        self._now = clock

    async def stats(self) -> Stats:
        now = self._now()
        day_start = now - now % DAY_S  # midnight UTC
        users = await self._db.fetchone("SELECT count(*) FROM users")
        rows = await self._db.fetchall(
            """SELECT kind, sum(CASE WHEN status = 'queued' THEN 1 ELSE 0 END) AS queued,
                      sum(CASE WHEN status = 'running' THEN 1 ELSE 0 END) AS running,
                      min(CASE WHEN status = 'queued' THEN created_at END) AS oldest
               FROM jobs WHERE status IN ('queued', 'running') GROUP BY kind ORDER BY kind"""
        )
        queues = [KindQueue(r["kind"], int(r["queued"]), int(r["running"]),
                            max(0.0, now - r["oldest"]) if r["oldest"] is not None else 0.0) for r in rows]
        made = await self._db.fetchall(
            "SELECT kind, count(*) AS n FROM jobs WHERE created_at >= ? GROUP BY kind", (day_start,)
        )
        made_by_kind = {r["kind"]: int(r["n"]) for r in made}
        failed = await self._db.fetchall(
            "SELECT error FROM jobs WHERE status = 'failed' AND finished_at >= ?", (now - DAY_S,)
        )
        failures: dict[str, int] = {}
        for r in failed:
            code = failure_code(r["error"])
            failures[code] = failures.get(code, 0) + 1
        # The outbox's backlog: finished jobs whose results the bot's feed cursor has not passed yet.
        backlog = await self._db.fetchone(
            """SELECT count(*) FROM job_events WHERE kind IN ('done', 'failed', 'cancelled')
               AND id > coalesce((SELECT position FROM cursors WHERE name = ?), 0)""",
            (OUTBOX_CURSOR,),
        )
        banned = await self._db.fetchone("SELECT count(*) FROM bans")
        disk = shutil.disk_usage(self._data_dir if self._data_dir.exists() else Path("."))
        database = self._data_dir / "kabina.sqlite3"
        return Stats(
            users=int(users[0]), queues=queues, trainings_today=made_by_kind.get("train", 0),
            draws_today=made_by_kind.get("draw", 0), failures_today=dict(sorted(failures.items())),
            engines=await self.engines_alive(now), outbox_backlog=int(backlog[0]), banned=int(banned[0]),
            database_bytes=database.stat().st_size if database.exists() else None,
            disk_free_bytes=disk.free, disk_total_bytes=disk.total,
        )

    async def engines_alive(self, now: float | None = None) -> list[EngineSeen]:
        now = self._now() if now is None else now
        rows = await self._db.fetchall(
            """SELECT e.worker_id, e.info, coalesce(e.alive_at, e.seen_at) AS alive,
                      (SELECT min(j.id) FROM jobs j WHERE j.lease_owner = e.worker_id AND j.status = 'running')
                        AS busy
               FROM engines e WHERE coalesce(e.alive_at, e.seen_at) >= ? ORDER BY e.worker_id""",
            (now - ENGINE_ALIVE_S,),
        )
        seen = []
        for r in rows:
            info: dict[str, Any] = json.loads(r["info"])
            seen.append(EngineSeen(r["worker_id"], str(info.get("family", "?")), str(info.get("title", "")),
                                   max(0.0, now - r["alive"]), r["busy"]))
        return seen

    async def engine_alive(self, worker_id: str) -> None:
        """The engine's heartbeat: it is still there, whether or not it has work."""
        await self._db.execute("UPDATE engines SET alive_at = ? WHERE worker_id = ?", (self._now(), worker_id))

    async def find_user(self, who: str) -> int | None:
        """A Telegram id, or the id of the known user with that @username (case-insensitive)."""
        who = who.strip()
        if who.lstrip("-").isdigit():
            return int(who)
        row = await self._db.fetchone(
            "SELECT id FROM users WHERE lower(username) = lower(?) ORDER BY id LIMIT 1", (who.removeprefix("@"),)
        )
        return int(row["id"]) if row else None

    # --- bans -----------------------------------------------------------------------------------------------------

    async def ban(self, user_id: int, by_user_id: int) -> bool:
        """True if the user was not banned before."""
        changed = await self._db.execute(
            "INSERT INTO bans (user_id, by_user_id, created_at) VALUES (?, ?, ?) ON CONFLICT (user_id) DO NOTHING",
            (user_id, by_user_id, self._now()),
        )
        return changed > 0

    async def unban(self, user_id: int) -> bool:
        return await self._db.execute("DELETE FROM bans WHERE user_id = ?", (user_id,)) > 0

    async def is_banned(self, user_id: int) -> bool:
        return await self._db.fetchone("SELECT 1 FROM bans WHERE user_id = ?", (user_id,)) is not None

    async def tell_banned_once(self, user_id: int) -> bool:
        """True exactly once per ban (atomically, whichever bot asks): the moment to tell the user."""
        told = await self._db.execute(
            "UPDATE bans SET told_at = ? WHERE user_id = ? AND told_at IS NULL", (self._now(), user_id)
        )
        return told > 0

    # --- the daily allowance --------------------------------------------------------------------------------------

    async def reset_allowance(self, user_id: int) -> None:
        """Trainings started before now no longer count against the user's DAILY_TRAININGS."""
        await self._db.execute(
            """INSERT INTO allowance_resets (user_id, reset_at) VALUES (?, ?)
               ON CONFLICT (user_id) DO UPDATE SET reset_at = excluded.reset_at""",
            (user_id, self._now()),
        )

    async def allowance_counts_from(self, user_id: int, day_ago: float) -> float:
        """Where the user's 24-hour window of counted trainings starts: a day ago, or an admin's reset since."""
        row = await self._db.fetchone("SELECT reset_at FROM allowance_resets WHERE user_id = ?", (user_id,))
        return max(day_ago, row["reset_at"]) if row else day_ago
