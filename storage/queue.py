"""The durable job queue's reads and its running jobs' leases: heartbeats, progress, the event feed, and where a
queued job stands. Every change of a job's status is a use case of storage/lifecycle.py."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from storage.contract import Progress
from storage.db import Database
from storage.errors import JobCancelled, LeaseLost, NotFound
from storage.records import Job, JobEvent, JobStatus

# Interactive work goes first: a /draw should never wait behind a 10-minute training.
PRIORITY = {"draw": 100, "class_images": 50, "train": 10}
DEFAULT_PRIORITY = 0
# Within a priority, users take turns: the job whose owner was served least recently goes first (an owner never
# served, or no owner at all, first of all), then the oldest. One user's backlog so delays another's job by at most
# the one job already claimed, whatever the backlog's length. `queue_position` follows the same order.
FAIR_TURN = """coalesce((SELECT max(o.started_at) FROM jobs o
                     WHERE o.owner_id = jobs.owner_id AND o.started_at IS NOT NULL), 0)"""

Clock = Callable[[], float]


async def add_event(db: Any, conn: Any, job_id: int, kind: str, data: dict[str, Any] | None, now: float) -> None:
    """One event of the job feed, inside the caller's transaction (followers are woken when it commits)."""
    await conn.execute(
        "INSERT INTO job_events (job_id, kind, data, created_at) VALUES (?, ?, ?, ?)",
        (job_id, kind, json.dumps(data or {}), now),
    )
    await db.announce_events(conn)


async def job_row(conn: Any, job_id: int) -> Any:
    return await (await conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,))).fetchone()


async def owned_row(conn: Any, job_id: int, worker_id: str) -> Any:
    """The job's row, if `worker_id` still holds its lease; else NotFound or LeaseLost."""
    row = await job_row(conn, job_id)
    if row is None:
        raise NotFound(f"no job {job_id}")
    if row["status"] != JobStatus.RUNNING or row["lease_owner"] != worker_id:
        raise LeaseLost(f"worker {worker_id} no longer holds job {job_id}")
    return row


class JobQueue:
    def __init__(self, db: Database, clock: Clock = time.time) -> None:
        self._db = db
        # Wall-clock seconds, shared by every process on the database (leases are judged by other processes);
        # tests inject their own to move time on without sleeping.
        self._now = clock

    async def heartbeat(self, job_id: int, worker_id: str, lease_s: float = 30.0) -> None:
        """Renew the lease; raises JobCancelled when someone asked to cancel, LeaseLost when it is gone."""
        async with self._db.transaction() as conn:
            row = await owned_row(conn, job_id, worker_id)
            await conn.execute(
                "UPDATE jobs SET lease_expires_at = ?, lease_s = ?, lease_renewals = lease_renewals + 1 WHERE id = ?",
                (self._now() + lease_s, lease_s, job_id),
            )
        if row["cancel_requested"]:
            raise JobCancelled(f"job {job_id} was cancelled")

    async def report_progress(self, job_id: int, worker_id: str, progress: Progress) -> None:
        data = progress.to_json()
        async with self._db.transaction() as conn:
            await owned_row(conn, job_id, worker_id)
            await conn.execute("UPDATE jobs SET progress = ? WHERE id = ?", (json.dumps(data), job_id))
            await add_event(self._db, conn, job_id, "progress", data, self._now())

    async def get(self, job_id: int) -> Job | None:
        row = await self._db.fetchone("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return Job.from_row(row) if row else None

    async def queue_position(self, job_id: int) -> int:
        """How many queued jobs the engine will take before this one (0: next, or already running): claim's own
        order — priority, then users in turns (the owner served least recently first), then age — played out
        over the queued jobs of this priority and above."""
        job = await self.get(job_id)
        if job is None or job.status != JobStatus.QUEUED:
            return 0
        rows = await self._db.fetchall(
            f"""SELECT id, owner_id, priority, {FAIR_TURN} AS served FROM jobs
                WHERE status = 'queued' AND priority >= ?""",
            (job.priority,),
        )
        # An owner served in this play-out goes after every owner served before it: (1, turn) > (0, started_at).
        served: dict[Any, tuple[int, float]] = {}
        waiting = list(rows)
        ahead = 0
        while waiting:
            def turn(r: Any) -> tuple[Any, ...]:
                owner = r["owner_id"]
                when = served.get(owner, (0, r["served"])) if owner is not None else (0, 0.0)
                return (-r["priority"], when, r["id"])

            nxt = min(waiting, key=turn)
            if nxt["id"] == job_id:
                return ahead
            waiting.remove(nxt)
            served[nxt["owner_id"]] = (1, float(ahead))
            ahead += 1
        return ahead

    async def unfinished_count(self) -> int:
        """Jobs that are queued or running (on any worker)."""
        row = await self._db.fetchone("SELECT count(*) FROM jobs WHERE status IN ('queued', 'running')")
        return int(row[0])

    async def running_count(self) -> int:
        row = await self._db.fetchone("SELECT count(*) FROM jobs WHERE status = 'running'")
        return int(row[0])

    async def active_for_owner(self, owner_id: int, kind: str | None = None) -> list[Job]:
        rows = await self._db.fetchall(
            """SELECT * FROM jobs WHERE owner_id = ? AND status IN ('queued', 'running')
               AND (CAST(? AS TEXT) IS NULL OR kind = ?) ORDER BY id""",
            (owner_id, kind, kind),
        )
        return [Job.from_row(r) for r in rows]

    async def count_since(self, owner_id: int, kind: str, since_ts: float) -> int:
        row = await self._db.fetchone(
            # What was asked for counts, cancelled or not once it started (it used the GPU); a job cancelled
            # before it started cost nothing, and an engine failure is not the user's doing.
            """SELECT count(*) FROM jobs WHERE owner_id = ? AND kind = ? AND created_at >= ?
               AND status != 'failed' AND NOT (status = 'cancelled' AND started_at IS NULL)""",
            (owner_id, kind, since_ts),
        )
        return int(row[0])

    async def events_after(self, cursor: int, limit: int = 100) -> list[JobEvent]:
        rows = await self._db.fetchall(
            "SELECT * FROM job_events WHERE id > ? ORDER BY id LIMIT ?", (cursor, limit)
        )
        return [JobEvent.from_row(r) for r in rows]

    async def follow(self, cursor: int = 0, poll_s: float = 0.2) -> AsyncIterator[JobEvent]:
        """Every event after `cursor`, in order, forever. Events commit in id order (SQLite has one writer;
        PostgreSQL's write transactions take turns on an advisory lock, storage/pg.py), so a follower that restarts from the last id it handled neither misses nor repeats one."""
        while True:
            events = await self.events_after(cursor)
            for event in events:
                cursor = event.id
                yield event
            if not events:
                # PostgreSQL wakes us when an event commits (LISTEN/NOTIFY); SQLite waits out `poll_s`.
                await self._db.wait_for_events(poll_s)

    # --- bounded work per user, fair positions, and everything of one model ---------------------------------------
    async def for_model(self, model_id: int) -> list[Job]:
        rows = await self._db.fetchall("SELECT * FROM jobs WHERE model_id = ? ORDER BY id", (model_id,))
        return [Job.from_row(r) for r in rows]
