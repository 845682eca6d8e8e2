"""The steps the lifecycle's use cases share, each inside the caller's transaction: ending a job, failing or deleting
a model with it, inserting a job with its feed event, noting what the bot needs, removing files after a commit."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from storage.blobs import BlobStore
from storage.contract import (
    FailureCode,
    JobKind,
    JobPayload,
    TrainResult,
)
from storage.db import Database
from storage.intake import mark_update, save_delivery
from storage.keys import check_key, job_prefix, model_prefix
from storage.leases import LeaseWatch
from storage.queue import DEFAULT_PRIORITY, PRIORITY, JobQueue, add_event
from storage.records import DeliveryKind, DeliveryState, Job, JobStatus, Model, ModelStatus
from storage.retention import Retention

Clock = Callable[[], float]
# The lease of a job claimed before leases recorded their own length.
DEFAULT_LEASE_S = 30.0
UNFINISHED = "('queued', 'running')"


@dataclass(frozen=True)
class Note:
    """A delivery record written with the job it is about (what the bot's reply and result need)."""

    what: DeliveryKind
    state: DeliveryState
    data: dict[str, Any]


@dataclass(frozen=True)
class TrainingStarted:
    model: Model
    job: Job
    position: int




class Steps:
    """What every use case needs: the database, the blob store, the queue's reads, the clocks."""

    def __init__(self, db: Database, blobs: BlobStore, jobs: JobQueue, retention: Retention,
                 clock: Clock = time.time, monotonic: Clock = time.monotonic) -> None:
        self._db = db
        self._blobs = blobs
        self._jobs = jobs
        self._retention = retention
        self._now = clock  # the wall clock shared with other processes (lease expiry); tests inject their own
        # An expired-looking lease is only taken after this process watched it lapse on its own clock.
        self._leases = LeaseWatch(monotonic)


    # --- steps shared by the use cases (each inside the caller's transaction) --------------------------------------
    async def _lapsed_leases(self, conn: Any, now: float) -> list[int]:
        """Running jobs whose worker is gone: the wall clock says their lease is over, and this process has itself
        watched it stay un-renewed for a whole lease period. A forward jump of the wall clock makes a healthy
        job look expired for a moment only: its worker renews (every third of a lease) long before that."""
        rows = await (await conn.execute(
            "SELECT id, lease_owner, lease_renewals, lease_s FROM jobs WHERE status = 'running' AND lease_expires_at < ?",
            (now,),
        )).fetchall()
        self._leases.keep_only(r["id"] for r in rows)
        return [r["id"] for r in rows
                if self._leases.lapsed(r["id"], (r["lease_owner"], r["lease_renewals"]), r["lease_s"] or DEFAULT_LEASE_S)]

    async def _give_up(self, conn: Any, lapsed: list[int], gone: list[int]) -> None:
        """Abandoned jobs that must not run again: out of attempts (failed, and a training's model with it, so
        its token is free and the owner may train again), or cancelled while their worker was dead."""
        if not lapsed:
            return
        rows = await (await conn.execute(
            f"""SELECT * FROM jobs WHERE id IN ({','.join(str(int(i)) for i in lapsed)})
               AND (attempts >= max_attempts OR cancel_requested = 1)""",
        )).fetchall()
        for row in rows:
            if row["cancel_requested"]:
                await self._end_job(conn, row, JobStatus.CANCELLED)
                await self._model_of_cancelled(conn, row, gone)
            else:
                await self._fail_row(conn, row, FailureCode.GAVE_UP, {"attempts": row["attempts"]})

    async def _fail_row(self, conn: Any, row: Any, code: str, params: dict[str, Any]) -> None:
        await self._end_job(conn, row, JobStatus.FAILED, error=code, params=params)
        if row["kind"] == JobKind.TRAIN and row["model_id"] is not None:
            await conn.execute(
                """UPDATE models SET status = 'failed', error = ?, updated_at = ?
                   WHERE id = ? AND status IN ('queued', 'training')""",
                (code, self._now(), row["model_id"]),
            )

    async def _model_of_cancelled(self, conn: Any, row: Any, gone: list[int]) -> None:
        """A cancelled training leaves no model behind (unless it was ready before: a retrain's old weights)."""
        if row["kind"] != JobKind.TRAIN or row["model_id"] is None:
            return
        model = await read_model(conn, row["model_id"])
        if model is not None and model.status not in (ModelStatus.READY, ModelStatus.DELETED):
            await self._model_deleted(conn, model.id)
            gone.append(model.id)

    async def _cancel_row(self, conn: Any, row: Any, gone: list[int]) -> None:
        if row["status"] == JobStatus.QUEUED:
            await self._end_job(conn, row, JobStatus.CANCELLED)
            await self._model_of_cancelled(conn, row, gone)
        elif row["status"] == JobStatus.RUNNING:
            await conn.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (row["id"],))

    async def _end_job(self, conn: Any, row: Any, status: JobStatus, *, result: dict[str, Any] | None = None,
                       error: str | None = None, params: dict[str, Any] | None = None) -> None:
        now = self._now()
        await conn.execute(
            """UPDATE jobs SET status = ?, result = ?, error = ?, error_params = ?, lease_owner = NULL,
               lease_expires_at = NULL, finished_at = ? WHERE id = ?""",
            (status.value, json.dumps(result) if result is not None else None, error,
             json.dumps(params) if params else None, now, row["id"]),
        )
        data: dict[str, Any] = {}
        if result is not None:
            data["result"] = result
        if error is not None:
            data["error"] = error
            data["params"] = params or {}
        await add_event(self._db, conn, row["id"], status.value, data, now)

    async def _model_ready(self, conn: Any, result: TrainResult) -> bool:
        """False (and nothing written) when the model was deleted meanwhile. Its files are named by blob key."""
        model = await read_model(conn, result.model_id)
        if model is None or model.status == ModelStatus.DELETED:
            return False
        cursor = await conn.execute(
            """UPDATE models SET status = 'ready', weights_key = ?, kohya_key = ?, sample_keys = ?, params = ?,
               error = NULL, updated_at = ? WHERE id = ?""",
            (check_key(result.weights_key), check_key(result.kohya_key) if result.kohya_key else None,
             json.dumps([check_key(p) for p in result.sample_keys]), json.dumps({**model.params, **result.params}),
             self._now(), result.model_id),
        )
        return cursor.rowcount > 0

    async def _model_deleted(self, conn: Any, model_id: int) -> None:
        now = self._now()
        await conn.execute("DELETE FROM shares WHERE model_id = ?", (model_id,))
        await conn.execute("UPDATE share_links SET revoked_at = ? WHERE model_id = ? AND revoked_at IS NULL",
                           (now, model_id))
        await conn.execute("UPDATE users SET default_model_id = NULL WHERE default_model_id = ?", (model_id,))
        await conn.execute("UPDATE models SET status = 'deleted', updated_at = ? WHERE id = ?", (now, model_id))

    async def _remove_files(self, model_ids: list[int]) -> None:
        """After the commit: the files of models that are gone, and of every job made with them."""
        for model_id in model_ids:
            await self._blobs.delete_prefix(model_prefix(model_id))
            for row in await self._db.fetchall("SELECT id FROM jobs WHERE model_id = ?", (model_id,)):
                await self._blobs.delete_prefix(job_prefix(row["id"]))

    async def _unfinished(self, conn: Any, owner_id: int, kind: JobKind) -> int:
        row = await (await conn.execute(
            f"SELECT count(*) FROM jobs WHERE owner_id = ? AND kind = ? AND status IN {UNFINISHED}",
            (owner_id, kind.value))).fetchone()
        return int(row[0])

    async def _insert_job(self, conn: Any, payload: JobPayload, owner_id: int | None, chat_id: int | None,
                          model_id: int | None, priority: int | None = None, max_attempts: int = 3) -> int:
        kind = payload.kind.value
        priority = PRIORITY.get(kind, DEFAULT_PRIORITY) if priority is None else priority
        job_id = await insert_returning(conn, """INSERT INTO jobs (kind, status, priority, payload, owner_id,
            chat_id, model_id, max_attempts, created_at) VALUES (?, 'queued', ?, ?, ?, ?, ?, ?, ?) RETURNING id""",
            (kind, priority, json.dumps(payload.to_json()), owner_id, chat_id, model_id, max_attempts, self._now()))
        await add_event(self._db, conn, job_id, "queued", {"kind": kind}, self._now())
        return job_id

    async def _noted(self, conn: Any, job_id: int, chat_id: int, update_id: int | None, notes: Sequence[Note]) -> None:
        for note in notes:
            await save_delivery(conn, job_id, note.what, chat_id=chat_id, state=note.state, data=note.data)
        if update_id is not None:
            # The job is the update's effect: a redelivered update must not queue a second one.
            await mark_update(conn, update_id)




async def insert_returning(conn: Any, sql: str, params: tuple[Any, ...]) -> int:
    cursor = await conn.execute(sql, params)
    row = await cursor.fetchone()
    await cursor.close()
    return int(row[0])


async def read_model(conn: Any, model_id: int) -> Model | None:
    row = await (await conn.execute("SELECT * FROM models WHERE id = ?", (model_id,))).fetchone()
    return Model.from_row(row) if row else None
