"""The lifecycle's use cases a user starts: a training, a drawing, a cancel, deleting a model, being forgotten."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from storage.contract import (
    JobKind,
    JobPayload,
    TrainPayload,
)
from storage.errors import Conflict, NotFound, TokenTaken
from storage.intake import mark_update
from storage.keys import model_prefix
from storage.lifecycle.steps import UNFINISHED, Note, Steps, TrainingStarted, insert_returning, read_model
from storage.queue import job_row
from storage.records import Job, Model
from storage.repos import copy_blob
from storage.retention import ForgetReport


class UserCases(Steps):
    """What a user (through the bot) changes."""

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
                model_id = await insert_returning(conn, """INSERT INTO models (owner_id, name, class_word, status,
                    params, created_at, updated_at) VALUES (?, ?, ?, 'queued', '{}', ?, ?) RETURNING id""",
                    (owner_id, class_word, class_word, now, now))
                # Copied inside the transaction: the engine may take the job the moment it commits. The retention
                # sweep leaves a model folder alone while its row may still be uncommitted (storage/retention.py).
                for i, photo in enumerate(photos):
                    copies.append(f"{model_prefix(model_id)}/photos/{i:02d}-{photo['sha256'][:16]}.img")
                    await copy_blob(self._blobs, photo["blob_key"], copies[-1])
                job_id = await self._insert_job(conn, TrainPayload(model_id=model_id, **(options or {})), owner_id, chat_id,
                                             model_id)
                await conn.execute("UPDATE models SET photo_keys = ?, job_id = ? WHERE id = ?",
                                   (json.dumps(copies), job_id, model_id))
                await self._noted(conn, job_id, chat_id, update_id, notes)
                model, job = await read_model(conn, model_id), Job.from_row(await job_row(conn, job_id))
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
                model_id = await insert_returning(conn, """INSERT INTO models (owner_id, name, class_word, token,
                    status, params, created_at, updated_at) VALUES (?, ?, ?, ?, 'ready', ?, ?, ?) RETURNING id""",
                    (owner_id, name, class_word, token, json.dumps(params or {}), now, now))
                for key, data in [(f"{model_prefix(model_id)}/lora.safetensors", weights),
                                  *((f"{model_prefix(model_id)}/sample-{i}.png", d) for i, d in enumerate(samples))]:
                    keys.append(key)
                    await self._blobs.put(key, data)
                await conn.execute("UPDATE models SET weights_key = ?, kohya_key = ?, sample_keys = ? WHERE id = ?",
                                   (keys[0], keys[0], json.dumps(keys[1:]), model_id))
                made = await read_model(conn, model_id)
            model = made  # committed
        except Conflict:
            raise TokenTaken(f"token {token!r} is already used by one of this user's models") from None
        finally:
            if model is None:
                for key in keys:
                    await self._blobs.delete(key)
        assert model is not None
        return model

