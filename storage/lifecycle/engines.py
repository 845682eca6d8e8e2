"""The lifecycle's use cases an engine reports: it takes a job, begins a training, completes, fails with a code, stops
on a cancel or hands a job back; and the queue gives up a job whose engine died at every attempt."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from storage.contract import (
    RESULTS,
    ContractError,
    FailureCode,
    JobKind,
    JobResult,
    TrainResult,
)
from storage.errors import NotFound
from storage.keys import job_prefix
from storage.lifecycle.steps import Steps, read_model
from storage.queue import FAIR_TURN, add_event, owned_row
from storage.records import Job, JobStatus, ModelStatus


class EngineCases(Steps):
    """What an engine (or the queue on its behalf) changes."""

    async def claim(self, worker_id: str, kinds: Sequence[str] | None = None, lease_s: float = 30.0) -> Job | None:
        """Take the most urgent job, or one whose worker died (its lease expired); None if there is none. A job
        that must not run again (out of attempts, or cancelled while its worker was dead) is ended on the way."""
        now = self._now()
        kind_filter, kind_args = "", ()
        if kinds:
            kind_filter = f" AND kind IN ({','.join('?' * len(kinds))})"
            kind_args = tuple(kinds)
        gone: list[int] = []
        async with self._db.transaction() as conn:
            lapsed = await self._lapsed_leases(conn, now)
            await self._give_up(conn, lapsed, gone)
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
            job = Job.from_row(row) if row is not None else None
            if job is not None:
                await add_event(self._db, conn, job.id, "started",
                                {"attempt": job.attempts, "worker": worker_id, "resumed": job.attempts > 1}, now)
        await self._remove_files(gone)
        return job

    async def begin_training(self, model_id: int, pool: Sequence[str]) -> str | None:
        """The model starts training under its identifier: the one it has (a resumed job keeps the token its
        checkpoint was trained with), else the first of `pool` none of the owner's live models uses. None when
        every token is taken; NotFound when the model was deleted."""
        async with self._db.transaction() as conn:
            model = await read_model(conn, model_id)
            if model is None or model.status == ModelStatus.DELETED:
                raise NotFound(f"no model {model_id}")
            token = model.token
            if token is None:
                rows = await (await conn.execute(
                    """SELECT token FROM models WHERE owner_id = ? AND token IS NOT NULL
                       AND status NOT IN ('failed', 'deleted')""", (model.owner_id,))).fetchall()
                taken = {r["token"].lower() for r in rows}
                token = next((word for word in pool if word.lower() not in taken), None)
                if token is None:
                    return None
            await conn.execute("UPDATE models SET token = ?, status = 'training', updated_at = ? WHERE id = ?",
                               (token, self._now(), model_id))
        return token

    async def complete(self, job_id: int, worker_id: str, result: JobResult) -> bool:
        """The job is done with `result`; a training's model is ready with it, together. False (the job ends
        cancelled, nothing to deliver) when the model was deleted while it trained."""
        gone: list[int] = []
        stopped = False
        async with self._db.transaction() as conn:
            row = await owned_row(conn, job_id, worker_id)
            if not isinstance(result, RESULTS[JobKind(row["kind"])]):
                raise ContractError(f"a {type(result).__name__} cannot finish a {row['kind']} job")
            if isinstance(result, TrainResult) and not await self._model_ready(conn, result):
                await self._end_job(conn, row, JobStatus.CANCELLED)
                gone.append(result.model_id)
                done = False
            elif row["kind"] == JobKind.DRAW and row["cancel_requested"]:
                # Stopped while the engine drew (its model deleted, its share or link revoked, /cancel): the
                # pictures are not delivered, and not kept.
                await self._end_job(conn, row, JobStatus.CANCELLED)
                stopped, done = True, False
            else:
                await self._end_job(conn, row, JobStatus.DONE, result=result.to_json())
                done = True
        await self._remove_files(gone)
        if stopped:
            await self._blobs.delete_prefix(job_prefix(job_id))
        return done

    async def fail(self, job_id: int, worker_id: str, code: FailureCode | str,
                   params: dict[str, Any] | None = None) -> None:
        """The job failed for a reason the bot can say (`code`, `params`); a training's model fails with it."""
        async with self._db.transaction() as conn:
            row = await owned_row(conn, job_id, worker_id)
            await self._fail_row(conn, row, str(code), params or {})

    async def cancelled(self, job_id: int, worker_id: str) -> None:
        """The engine stopped a running job because it was cancelled; a training's model goes with it."""
        gone: list[int] = []
        async with self._db.transaction() as conn:
            row = await owned_row(conn, job_id, worker_id)
            await self._end_job(conn, row, JobStatus.CANCELLED)
            await self._model_of_cancelled(conn, row, gone)
        await self._remove_files(gone)

    async def release(self, job_id: int, worker_id: str) -> None:
        """Hand a job back on a clean shutdown; the interrupted attempt does not count."""
        async with self._db.transaction() as conn:
            await owned_row(conn, job_id, worker_id)
            await conn.execute(
                """UPDATE jobs SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL,
                   attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END WHERE id = ?""",
                (job_id,),
            )
            await add_event(self._db, conn, job_id, "requeued", {"worker": worker_id}, self._now())

