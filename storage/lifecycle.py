"""Every change of a model's or a job's status, each one named use case in one transaction: the user starts a
training, asks for a drawing, cancels, deletes a model or asks to be forgotten; the engine takes a job, begins a
training, finishes, fails with a code, stops on a cancel or hands a job back; the queue gives up a job whose
engine died at every attempt. Nothing else in Kabina writes a model's or a job's status.

    model: queued ─► training ─► ready          job: queued ─► running ─► done
              │          ├─────► failed                  │  ▲      ├──► failed (a code)
              └──────────┴─────► deleted                 │  └──────┤   (released: back to queued)
                                                         └─────────┴──► cancelled
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from storage.blobs import BlobStore, check_key
from storage.contract import (
    RESULTS,
    ContractError,
    FailureCode,
    JobKind,
    JobPayload,
    JobResult,
    TrainPayload,
    TrainResult,
)
from storage.db import Database
from storage.errors import Conflict, NotFound, TokenTaken
from storage.keys import job_prefix, model_prefix
from storage.leases import LeaseWatch
from storage.queue import DEFAULT_PRIORITY, FAIR_TURN, PRIORITY, JobQueue, add_event, job_row, owned_row
from storage.records import DeliveryKind, DeliveryState, Job, JobStatus, Model, ModelStatus
from storage.repos import copy_blob, mark_update, save_delivery
from storage.retention import ForgetReport, Retention

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


class Lifecycle:
    def __init__(self, db: Database, blobs: BlobStore, jobs: JobQueue, retention: Retention,
                 clock: Clock = time.time, monotonic: Clock = time.monotonic) -> None:
        self._db = db
        self._blobs = blobs
        self._jobs = jobs
        self._retention = retention
        self._now = clock  # the wall clock shared with other processes (lease expiry); tests inject their own
        # An expired-looking lease is only taken after this process watched it lapse on its own clock.
        self._leases = LeaseWatch(monotonic)

    # --- the user asks ---------------------------------------------------------------------------------------------
    async def start_training(
        self, owner_id: int, chat_id: int, class_word: str, photo_ids: Sequence[int], *,
        update_id: int | None = None, notes: Sequence[Note] = (), options: dict[str, Any] | None = None,
    ) -> TrainingStarted | None:
        """The model (with its own copies of the photos, so /clear never breaks it), its train job, the update's
        mark and the bot's notes, together; None (the update marked all the same) when the owner already has a
        training queued or running. `options`: the TrainPayload's own (steps, class images) for tools and tests."""
        photos = await self._db.fetchall(
            f"SELECT * FROM photos WHERE owner_id = ? AND id IN ({','.join('?' * len(photo_ids)) or 'NULL'}) ORDER BY id",
            (owner_id, *photo_ids),
        )
        if len(photos) != len(set(photo_ids)):
            raise NotFound("some photos are not in this user's set")
        copies: list[str] = []
        now = self._now()
        try:
            async with self._db.transaction() as conn:
                if await self._unfinished(conn, owner_id, JobKind.TRAIN) >= 1:
                    if update_id is not None:
                        await mark_update(conn, update_id)
                    return None
                model_id = await _insert_returning(conn, """INSERT INTO models (owner_id, name, class_word, status,
                    params, created_at, updated_at) VALUES (?, ?, ?, 'queued', '{}', ?, ?) RETURNING id""",
                    (owner_id, class_word, class_word, now, now))
                # Copied inside the transaction: the engine may take the job the moment it commits. The retention
                # sweep leaves a model folder alone while its row may still be uncommitted (storage/retention.py).
                for i, photo in enumerate(photos):
                    copies.append(f"{model_prefix(model_id)}/photos/{i:02d}-{photo['sha256'][:16]}.img")
                    await copy_blob(self._blobs, photo["path"], copies[-1])
                job_id = await self._insert_job(conn, TrainPayload(model_id=model_id, **(options or {})), owner_id, chat_id,
                                             model_id)
                await conn.execute("UPDATE models SET photo_paths = ?, job_id = ? WHERE id = ?",
                                   (json.dumps(copies), job_id, model_id))
                await self._noted(conn, job_id, chat_id, update_id, notes)
                model, job = await _model(conn, model_id), Job.from_row(await job_row(conn, job_id))
        except BaseException:
            for key in copies:
                await self._blobs.delete(key)
            raise
        return TrainingStarted(model, job, await self._jobs.queue_position(job.id))

    async def request_drawing(
        self, owner_id: int, chat_id: int, payload: JobPayload, *, limit: int, update_id: int | None = None,
        notes: Sequence[Note] = (),
    ) -> Job | None:
        """The draw job, the update's mark and the bot's notes, together; None (the update marked all the same)
        when the owner already has `limit` drawings queued or running."""
        async with self._db.transaction() as conn:
            if await self._unfinished(conn, owner_id, JobKind.DRAW) >= limit:
                if update_id is not None:
                    await mark_update(conn, update_id)
                return None
            job_id = await self._insert_job(conn, payload, owner_id, chat_id, getattr(payload, "model_id", None))
            await self._noted(conn, job_id, chat_id, update_id, notes)
            return Job.from_row(await job_row(conn, job_id))

    async def enqueue(
        self, payload: JobPayload, *, owner_id: int | None = None, chat_id: int | None = None,
        model_id: int | None = None, priority: int | None = None, max_attempts: int = 3,
    ) -> Job:
        """Other work (class images, benches): a job of any kind, unbounded."""
        async with self._db.transaction() as conn:
            job_id = await self._insert_job(conn, payload, owner_id, chat_id, model_id, priority, max_attempts)
            return Job.from_row(await job_row(conn, job_id))

    async def cancel(self, job_id: int) -> Job:
        """Cancelled at once if queued (a queued training's model goes too: it would only be clutter); a running
        job's engine is asked to stop (it learns at its next heartbeat); a finished job stays as it is."""
        gone: list[int] = []
        async with self._db.transaction() as conn:
            row = await job_row(conn, job_id)
            if row is None:
                raise NotFound(f"no job {job_id}")
            await self._cancel_row(conn, row, gone)
            row = await job_row(conn, job_id)
        await self._remove_files(gone)
        return Job.from_row(row)

    async def cancel_for_user(self, user_id: int) -> list[Job]:
        """/cancel: every queued or running job of the user, as `cancel` does; returns the jobs it touched."""
        gone: list[int] = []
        async with self._db.transaction() as conn:
            rows = await (await conn.execute(
                f"SELECT * FROM jobs WHERE owner_id = ? AND status IN {UNFINISHED} ORDER BY id", (user_id,))).fetchall()
            for row in rows:
                await self._cancel_row(conn, row, gone)
            touched = [Job.from_row(await job_row(conn, row["id"])) for row in rows]
        await self._remove_files(gone)
        return touched

    async def delete_model(self, model_id: int) -> None:
        """The model is gone for good: every unfinished job with it stops (its training, anyone's drawings), its
        shares and links end, and every file made for it or with it goes (weights, exports, samples, report card,
        photo copies, checkpoints, pictures drawn with it). Files a worker still writes afterwards are the
        retention sweep's."""
        async with self._db.transaction() as conn:
            rows = await (await conn.execute(
                f"SELECT * FROM jobs WHERE model_id = ? AND status IN {UNFINISHED}", (model_id,))).fetchall()
            for row in rows:
                await self._cancel_row(conn, row, [])
            await self._model_deleted(conn, model_id)
        await self._remove_files([model_id])

    async def forget_user(self, user_id: int) -> ForgetReport:
        """/forgetme: every unfinished job of the user stops and every model of theirs is deleted (with its
        files), together; then storage/retention.py erases the rest (photos, pictures, rows)."""
        async with self._db.transaction() as conn:
            rows = await (await conn.execute(
                f"SELECT * FROM jobs WHERE owner_id = ? AND status IN {UNFINISHED}", (user_id,))).fetchall()
            for row in rows:
                await self._cancel_row(conn, row, [])
            models = [r["id"] for r in await (await conn.execute(
                "SELECT id FROM models WHERE owner_id = ?", (user_id,))).fetchall()]
            for model_id in models:
                await self._model_deleted(conn, model_id)
        await self._remove_files(models)
        return await self._retention.erase_user(user_id, jobs_stopped=len(rows), models=len(models))

    # --- the engine reports ----------------------------------------------------------------------------------------
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
            model = await _model(conn, model_id)
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
        async with self._db.transaction() as conn:
            row = await owned_row(conn, job_id, worker_id)
            if not isinstance(result, RESULTS[JobKind(row["kind"])]):
                raise ContractError(f"a {type(result).__name__} cannot finish a {row['kind']} job")
            if isinstance(result, TrainResult) and not await self._model_ready(conn, result):
                await self._end_job(conn, row, JobStatus.CANCELLED)
                gone.append(result.model_id)
                done = False
            else:
                await self._end_job(conn, row, JobStatus.DONE, result=result.to_json())
                done = True
        await self._remove_files(gone)
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

    async def import_model(
        self, owner_id: int, *, name: str, class_word: str, token: str, weights: bytes,
        samples: Sequence[bytes] = (), params: dict[str, Any] | None = None,
    ) -> Model:
        """A model trained elsewhere (load tests, demos) arrives ready: its LoRA and sample pictures are stored
        under the model's own keys, in the transaction that makes it (as a training's photo copies are)."""
        now = self._now()
        keys: list[str] = []
        model: Model | None = None
        try:
            async with self._db.transaction() as conn:
                model_id = await _insert_returning(conn, """INSERT INTO models (owner_id, name, class_word, token,
                    status, params, created_at, updated_at) VALUES (?, ?, ?, ?, 'ready', ?, ?, ?) RETURNING id""",
                    (owner_id, name, class_word, token, json.dumps(params or {}), now, now))
                for key, data in [(f"{model_prefix(model_id)}/lora.safetensors", weights),
                                  *((f"{model_prefix(model_id)}/sample-{i}.png", d) for i, d in enumerate(samples))]:
                    keys.append(key)
                    await self._blobs.put(key, data)
                await conn.execute("UPDATE models SET weights_path = ?, kohya_path = ?, sample_paths = ? WHERE id = ?",
                                   (keys[0], keys[0], json.dumps(keys[1:]), model_id))
                made = await _model(conn, model_id)
            model = made  # committed
        except Conflict:
            raise TokenTaken(f"token {token!r} is already used by one of this user's models") from None
        finally:
            if model is None:
                for key in keys:
                    await self._blobs.delete(key)
        assert model is not None
        return model

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
        model = await _model(conn, row["model_id"])
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
        model = await _model(conn, result.model_id)
        if model is None or model.status == ModelStatus.DELETED:
            return False
        cursor = await conn.execute(
            """UPDATE models SET status = 'ready', weights_path = ?, kohya_path = ?, sample_paths = ?, params = ?,
               error = NULL, updated_at = ? WHERE id = ? AND status != 'deleted'""",
            (check_key(result.weights_path), check_key(result.kohya_path) if result.kohya_path else None,
             json.dumps([check_key(p) for p in result.sample_paths]), json.dumps({**model.params, **result.params}),
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
        job_id = await _insert_returning(conn, """INSERT INTO jobs (kind, status, priority, payload, owner_id,
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



async def _insert_returning(conn: Any, sql: str, params: tuple[Any, ...]) -> int:
    cursor = await conn.execute(sql, params)
    row = await cursor.fetchone()
    await cursor.close()
    return int(row[0])


async def _model(conn: Any, model_id: int) -> Model | None:
    row = await (await conn.execute("SELECT * FROM models WHERE id = ?", (model_id,))).fetchone()
    return Model.from_row(row) if row else None
