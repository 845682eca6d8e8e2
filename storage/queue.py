"""The durable job queue over SQLite or PostgreSQL: enqueue, atomic claim, leases, progress, results and an event feed."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import aiosqlite

from storage.contract import RESULTS, ContractError, JobKind, JobPayload, JobResult, Progress
from storage.db import Database
from storage.errors import JobCancelled, LeaseLost, NotFound
from storage.leases import LeaseWatch
from storage.records import Job, JobEvent, JobStatus

# Interactive work goes first: a /draw should never wait behind a 10-minute training.
PRIORITY = {"draw": 100, "class_images": 50, "train": 10}
DEFAULT_PRIORITY = 0
# Within a priority, users take turns: the job whose owner was served least recently goes first (an owner never
# served, or no owner at all, first of all), then the oldest. One user's backlog so delays another's job by at most
# the one job already claimed, whatever the backlog's length.
FAIR_TURN = """coalesce((SELECT max(o.started_at) FROM jobs o
                     WHERE o.owner_id = jobs.owner_id AND o.started_at IS NOT NULL), 0)"""


def _exhausted_message(job: aiosqlite.Row) -> str:
    return (
        f"The {job['kind']} job stopped unexpectedly {job['attempts']} times (the engine crashed or was restarted), "
        "so Kabina gave up on it. Please try again; if it keeps happening, tell the bot's operator."
    )


Clock = Callable[[], float]


# The lease of a job claimed before leases recorded their own length.
DEFAULT_LEASE_S = 30.0


class JobQueue:
    def __init__(self, db: Database, clock: Clock = time.time, monotonic: Clock = time.monotonic) -> None:
        self._db = db
        # Wall-clock seconds, shared by every process on the database (leases are judged by other processes);
        # tests inject their own to move time on without sleeping.
        self._now = clock
        # An expired-looking lease is only taken after this process watched it lapse on its own clock.
        self._leases = LeaseWatch(monotonic)

    async def _event(self, conn: aiosqlite.Connection, job_id: int, kind: str, data: dict[str, Any] | None = None) -> None:
        await conn.execute(
            "INSERT INTO job_events (job_id, kind, data, created_at) VALUES (?, ?, ?, ?)",
            (job_id, kind, json.dumps(data or {}), self._now()),
        )
        await self._db.announce_events(conn)

    @staticmethod
    async def _insert_job(conn: aiosqlite.Connection, params: tuple[Any, ...]) -> int:
        cursor = await conn.execute(
            """INSERT INTO jobs (kind, status, priority, payload, owner_id, chat_id, model_id, max_attempts,
                                 created_at)
               VALUES (?, 'queued', ?, ?, ?, ?, ?, ?, ?) RETURNING id""",
            params,
        )
        row = await cursor.fetchone()
        await cursor.close()
        return int(row[0])

    @staticmethod
    async def _row(conn: aiosqlite.Connection, job_id: int) -> aiosqlite.Row | None:
        return await (await conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,))).fetchone()

    async def enqueue(
        self,
        payload: JobPayload,
        *,
        owner_id: int | None = None,
        chat_id: int | None = None,
        model_id: int | None = None,
        priority: int | None = None,
        max_attempts: int = 3,
    ) -> Job:
        kind = payload.kind.value
        if priority is None:
            priority = PRIORITY.get(kind, DEFAULT_PRIORITY)
        async with self._db.transaction() as conn:
            job_id = await self._insert_job(
                conn,
                (kind, priority, json.dumps(payload.to_json()), owner_id, chat_id, model_id, max_attempts,
                 self._now()),
            )
            await self._event(conn, job_id, "queued", {"kind": kind})
            row = await self._row(conn, job_id)
        return Job.from_row(row)

    async def claim(self, worker_id: str, kinds: Sequence[str] | None = None, lease_s: float = 30.0) -> Job | None:
        """Take the most urgent job, or one whose worker died (its lease expired); None if there is none."""
        now = self._now()
        kind_filter, kind_args = "", ()
        if kinds:
            kind_filter = f" AND kind IN ({','.join('?' * len(kinds))})"
            kind_args = tuple(kinds)
        async with self._db.transaction() as conn:
            lapsed = await self._lapsed_leases(conn, now)
            await self._settle_abandoned(conn, lapsed, now)
            abandoned = ",".join(str(int(job_id)) for job_id in lapsed) or "NULL"
            cursor = await conn.execute(
                f"""UPDATE jobs SET status = 'running', lease_owner = ?, lease_expires_at = ?, lease_s = ?,
                        lease_renewals = lease_renewals + 1, attempts = attempts + 1,
                        started_at = coalesce(started_at, ?)
                    WHERE id = (SELECT id FROM jobs
                                WHERE (status = 'queued' OR (status = 'running' AND id IN ({abandoned}))){kind_filter}
                                ORDER BY priority DESC, {FAIR_TURN}, id LIMIT 1{self._db.skip_locked})
                    RETURNING *""",
                (worker_id, now + lease_s, lease_s, now, *kind_args),
            )
            row = await cursor.fetchone()
            await cursor.close()
            if row is None:
                return None
            job = Job.from_row(row)
            await self._event(
                conn, job.id, "started", {"attempt": job.attempts, "worker": worker_id, "resumed": job.attempts > 1}
            )
        return job

    async def _lapsed_leases(self, conn: aiosqlite.Connection, now: float) -> list[int]:
        """Running jobs whose worker is gone: the wall clock says their lease is over, and this process has itself
        watched it stay un-renewed for a whole lease period. A forward jump of the wall clock makes a healthy
        job look expired for a moment only: its worker renews (every third of a lease) long before that."""
        rows = await (
            await conn.execute(
                "SELECT id, lease_owner, lease_renewals, lease_s FROM jobs WHERE status = 'running' AND lease_expires_at < ?",
                (now,),
            )
        ).fetchall()
        self._leases.keep_only(r["id"] for r in rows)
        return [r["id"] for r in rows
                if self._leases.lapsed(r["id"], (r["lease_owner"], r["lease_renewals"]), r["lease_s"] or DEFAULT_LEASE_S)]

    async def _settle_abandoned(self, conn: aiosqlite.Connection, lapsed: list[int], now: float) -> None:
        """Abandoned jobs that must not run again: out of attempts, or cancelled while their worker was dead."""
        if not lapsed:
            return
        rows = await (
            await conn.execute(
                f"""SELECT * FROM jobs WHERE id IN ({','.join(str(int(i)) for i in lapsed)})
                   AND (attempts >= max_attempts OR cancel_requested = 1)""",
            )
        ).fetchall()
        for row in rows:
            if row["cancel_requested"]:
                await conn.execute(
                    """UPDATE jobs SET status = 'cancelled', lease_owner = NULL, lease_expires_at = NULL,
                       finished_at = ? WHERE id = ?""",
                    (now, row["id"]),
                )
                await self._event(conn, row["id"], "cancelled", {})
            else:
                error = _exhausted_message(row)
                await conn.execute(
                    """UPDATE jobs SET status = 'failed', error = ?, lease_owner = NULL, lease_expires_at = NULL,
                       finished_at = ? WHERE id = ?""",
                    (error, now, row["id"]),
                )
                await self._event(conn, row["id"], "failed", {"error": error})

    async def _owned(self, conn: aiosqlite.Connection, job_id: int, worker_id: str) -> aiosqlite.Row:
        row = await self._row(conn, job_id)
        if row is None:
            raise NotFound(f"no job {job_id}")
        if row["status"] != JobStatus.RUNNING or row["lease_owner"] != worker_id:
            raise LeaseLost(f"worker {worker_id} no longer holds job {job_id}")
        return row

    async def heartbeat(self, job_id: int, worker_id: str, lease_s: float = 30.0) -> None:
        """Renew the lease; raises JobCancelled when someone asked to cancel, LeaseLost when it is gone."""
        async with self._db.transaction() as conn:
            row = await self._owned(conn, job_id, worker_id)
            await conn.execute(
                "UPDATE jobs SET lease_expires_at = ?, lease_s = ?, lease_renewals = lease_renewals + 1 WHERE id = ?",
                (self._now() + lease_s, lease_s, job_id),
            )
        if row["cancel_requested"]:
            raise JobCancelled(f"job {job_id} was cancelled")

    async def report_progress(self, job_id: int, worker_id: str, progress: Progress) -> None:
        data = progress.to_json()
        async with self._db.transaction() as conn:
            await self._owned(conn, job_id, worker_id)
            await conn.execute("UPDATE jobs SET progress = ? WHERE id = ?", (json.dumps(data), job_id))
            await self._event(conn, job_id, "progress", data)

    async def _finish(
        self, job_id: int, worker_id: str, status: JobStatus, *, result: JobResult | None = None,
        error: str | None = None,
    ) -> None:
        async with self._db.transaction() as conn:
            row = await self._owned(conn, job_id, worker_id)
            if result is not None and not isinstance(result, RESULTS[JobKind(row["kind"])]):
                raise ContractError(f"a {type(result).__name__} cannot finish a {row['kind']} job")
            stored = json.dumps(result.to_json()) if result is not None else None
            await conn.execute(
                """UPDATE jobs SET status = ?, result = ?, error = ?, lease_owner = NULL, lease_expires_at = NULL,
                   finished_at = ? WHERE id = ?""",
                (status.value, stored, error, self._now(), job_id),
            )
            data: dict[str, Any] = {}
            if result is not None:
                data["result"] = result.to_json()
            if error is not None:
                data["error"] = error
            await self._event(conn, job_id, status.value, data)

    async def complete(self, job_id: int, worker_id: str, result: JobResult) -> None:
        await self._finish(job_id, worker_id, JobStatus.DONE, result=result)

    async def fail(self, job_id: int, worker_id: str, error: str) -> None:
        await self._finish(job_id, worker_id, JobStatus.FAILED, error=error)

    async def cancelled(self, job_id: int, worker_id: str) -> None:
        """The worker stopped a running job because it was cancelled."""
        await self._finish(job_id, worker_id, JobStatus.CANCELLED)

    async def release(self, job_id: int, worker_id: str) -> None:
        """Hand a job back on a clean shutdown; the interrupted attempt does not count."""
        async with self._db.transaction() as conn:
            await self._owned(conn, job_id, worker_id)
            await conn.execute(
                """UPDATE jobs SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL,
                   attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END WHERE id = ?""",
                (job_id,),
            )
            await self._event(conn, job_id, "requeued", {"worker": worker_id})

    async def cancel(self, job_id: int) -> Job:
        """Cancel at once if queued; ask the worker to stop if running; finished jobs stay as they are."""
        async with self._db.transaction() as conn:
            row = await self._row(conn, job_id)
            if row is None:
                raise NotFound(f"no job {job_id}")
            if row["status"] == JobStatus.QUEUED:
                await conn.execute(
                    "UPDATE jobs SET status = 'cancelled', finished_at = ? WHERE id = ?", (self._now(), job_id)
                )
                await self._event(conn, job_id, "cancelled", {})
            elif row["status"] == JobStatus.RUNNING:
                await conn.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
            row = await self._row(conn, job_id)
        return Job.from_row(row)

    async def get(self, job_id: int) -> Job | None:
        row = await self._db.fetchone("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return Job.from_row(row) if row else None

    async def position(self, job_id: int) -> int:
        """How many queued jobs will be taken before this one (0 = next, or already running)."""
        row = await self._db.fetchone(
            """SELECT count(*) FROM jobs o, jobs j WHERE j.id = ? AND j.status = 'queued' AND o.status = 'queued'
               AND (o.priority > j.priority OR (o.priority = j.priority AND o.id < j.id))""",
            (job_id,),
        )
        return int(row[0])

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
    async def enqueue_within(
        self, payload: JobPayload, *, owner_id: int, limit: int, chat_id: int | None = None,
        model_id: int | None = None, max_attempts: int = 3,
    ) -> Job | None:
        """Enqueue unless the owner already has `limit` unfinished jobs of this kind (then None); the count and
        the insert are one transaction, so two requests racing cannot both slip under the limit."""
        kind = payload.kind.value
        async with self._db.transaction() as conn:
            row = await (await conn.execute(
                "SELECT count(*) FROM jobs WHERE owner_id = ? AND kind = ? AND status IN ('queued', 'running')",
                (owner_id, kind),
            )).fetchone()
            if int(row[0]) >= limit:
                return None
            job_id = await self._insert_job(
                conn,
                (kind, PRIORITY.get(kind, DEFAULT_PRIORITY), json.dumps(payload.to_json()), owner_id, chat_id,
                 model_id, max_attempts, self._now()),
            )
            await self._event(conn, job_id, "queued", {"kind": kind})
            created = await self._row(conn, job_id)
        return Job.from_row(created)

    async def fair_position(self, job_id: int) -> int:
        """How many queued jobs go before this one when users take turns (claim's order): every queued job of a
        higher priority, the owner's own earlier ones, and from each other user one per turn up to this one's —
        including this turn's when that user was served less recently."""
        job = await self.get(job_id)
        if job is None or job.status != JobStatus.QUEUED:
            return 0
        rows = await self._db.fetchall(
            f"""SELECT owner_id, priority, id, {FAIR_TURN} AS served FROM jobs
                WHERE status = 'queued' AND priority >= ?""",
            (job.priority,),
        )
        higher = sum(1 for r in rows if r["priority"] > job.priority)
        same = [r for r in rows if r["priority"] == job.priority]
        mine = sorted(r["id"] for r in same if r["owner_id"] == job.owner_id and job.owner_id is not None)
        turn = (mine.index(job_id) + 1) if job_id in mine else 1
        served = next((r["served"] for r in same if r["id"] == job_id), 0)
        others: dict[Any, list[Any]] = {}
        for r in same:
            if r["id"] != job_id and (r["owner_id"] != job.owner_id or job.owner_id is None):
                others.setdefault(r["owner_id"] if r["owner_id"] is not None else ("job", r["id"]), []).append(r)
        ahead = higher + turn - 1
        for jobs in others.values():
            first = min(jobs, key=lambda r: r["id"])
            sooner = (first["served"], first["id"]) < (served, job_id)
            ahead += min(len(jobs), turn if sooner else turn - 1)
        return ahead

    async def for_model(self, model_id: int) -> list[Job]:
        rows = await self._db.fetchall("SELECT * FROM jobs WHERE model_id = ? ORDER BY id", (model_id,))
        return [Job.from_row(r) for r in rows]
