"""What Kabina keeps and for how long: the retention sweep, and forgetting a user entirely (/forgetme)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from storage.blobs import BlobStore
from storage.db import Database
from storage.keys import ids_under, job_prefix, model_prefix, user_photos_prefix

DAY_S = 24 * 3600
# The event feed and the intake log are working records: once the bot has followed an event, and Telegram can no
# longer redeliver an update (it keeps them 24 h), they are only clutter.
EVENTS_KEEP_S = 2 * DAY_S
UPDATES_KEEP_S = 2 * DAY_S
# Delivery records of finished jobs outlive any retry of that delivery by far.
DELIVERIES_KEEP_S = 7 * DAY_S
# A job of a user who is no longer known (forgotten), other than a training of the last day (one `?`).
FORGOTTEN = "j.owner_id IS NOT NULL AND u.id IS NULL AND NOT (j.kind = 'train' AND j.started_at >= ?)"


@dataclass
class SweepReport:
    """What one sweep removed (for logs and tests)."""

    model_folders: list[int] = field(default_factory=list)
    photo_copies: list[int] = field(default_factory=list)
    job_folders: list[int] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    jobs: int = 0
    events: int = 0
    updates: int = 0
    deliveries: int = 0

    def __bool__(self) -> bool:
        return bool(self.model_folders or self.photo_copies or self.job_folders or self.inputs or self.jobs
                    or self.events
                    or self.updates or self.deliveries)


class Retention:
    """Applies the rules of the README's privacy section; the bot runs `sweep` every half minute."""

    def __init__(self, db: Database, blobs: BlobStore) -> None:
        self._db = db
        self._blobs = blobs

    async def sweep(self, retention_days: int, now: float | None = None) -> SweepReport:
        """Drawn pictures (and every finished job's record) are kept `retention_days` (RETENTION_DAYS)."""
        now = time.time() if now is None else now
        self.retention_s = retention_days * DAY_S
        report = SweepReport()
        await self._sweep_model_files(report)
        await self._sweep_job_files(report, now)
        await self._sweep_inputs(report, now)
        await self._prune_rows(report, now)
        return report

    async def _sweep_model_files(self, report: SweepReport) -> None:
        # The blobs first, then the rows: a model created in between has its row by the time it is looked up.
        keys = await self._blobs.list("models")
        on_disk = ids_under(keys, "models")
        with_photos = {i for i in ids_under([k for k in keys if k.split("/")[2:3] == ["photos"]], "models")}
        statuses = {r["id"]: r["status"] for r in await self._db.fetchall("SELECT id, status FROM models")}
        # A training's photo copies are made inside the transaction that creates its model (storage/lifecycle.py):
        # a folder past the newest committed model may be one whose row is not committed yet. Writes take turns,
        # so every model written before that one has a lower id.
        newest = max(statuses, default=0)
        for model_id in on_disk:
            status = statuses.get(model_id)
            if status is None and model_id > newest:
                continue
            if status is None or status == "deleted":
                # A worker that was still training when the model was deleted writes its files afterwards.
                await self._blobs.delete_prefix(model_prefix(model_id))
                report.model_folders.append(model_id)
            elif status in {"ready", "failed"} and model_id in with_photos:
                # The photos were needed to train; a finished model keeps only what it draws with.
                await self._blobs.delete_prefix(f"{model_prefix(model_id)}/photos")
                report.photo_copies.append(model_id)

    async def _sweep_job_files(self, report: SweepReport, now: float) -> None:
        on_disk = ids_under(await self._blobs.list("jobs"), "jobs")
        rows = await self._db.fetchall(
            """SELECT j.id, j.kind, j.status, j.finished_at, j.owner_id, m.status AS model_status,
                      j.model_id IS NOT NULL AND m.id IS NULL AS model_gone,
                      j.owner_id IS NOT NULL AND u.id IS NULL AS owner_gone
               FROM jobs j LEFT JOIN models m ON m.id = j.model_id LEFT JOIN users u ON u.id = j.owner_id"""
        )
        jobs = {r["id"]: r for r in rows}
        for job_id in on_disk:
            job = jobs.get(job_id)
            finished = job is not None and job["status"] in {"done", "failed", "cancelled"}
            if (
                job is None
                or job["model_status"] == "deleted" or job["model_gone"]
                or (finished and job["owner_gone"])
                # A training's checkpoints (LoRA and optimizer state) serve only to resume it.
                or (finished and job["kind"] == "train")
                or (finished and (job["finished_at"] or 0) < now - self.retention_s)
            ):
                await self._blobs.delete_prefix(job_prefix(job_id))
                report.job_folders.append(job_id)

    async def _sweep_inputs(self, report: SweepReport, now: float) -> None:
        """A picture a user drew from goes with the last job that names it: once every such job is past
        RETENTION_DAYS (or gone), so is the picture (the rows are pruned right after, in the same sweep)."""
        rows = await self._db.fetchall(
            """SELECT payload, status IN ('done', 'failed', 'cancelled') AND finished_at < ? AS old
               FROM jobs WHERE kind = 'draw' AND payload LIKE '%/inputs/%'""",
            (now - self.retention_s,),
        )
        old, kept = set(), set()
        for row in rows:
            key = json.loads(row["payload"]).get("init_image")
            if key and "/inputs/" in key:
                (old if row["old"] else kept).add(key)
        for key in sorted(old - kept):
            await self._blobs.delete(key)
            report.inputs.append(key)

    async def _prune_rows(self, report: SweepReport, now: float) -> None:
        async with self._db.transaction() as conn:
            # Finished jobs past the retention time, and finished jobs of users who asked to be forgotten (but for
            # the bare rows of their last day's trainings, which keep the daily cap honest).
            old = f"""SELECT j.id FROM jobs j LEFT JOIN users u ON u.id = j.owner_id
                      WHERE j.status IN ('done', 'failed', 'cancelled')
                      AND (j.finished_at < ? OR ({FORGOTTEN}))"""
            limits = (now - self.retention_s, now - DAY_S)
            await conn.execute(f"DELETE FROM job_events WHERE job_id IN ({old})", limits)
            await conn.execute(f"DELETE FROM deliveries WHERE job_id IN ({old})", limits)
            cursor = await conn.execute(f"DELETE FROM jobs WHERE id IN ({old})", limits)
            report.jobs = cursor.rowcount
            # Events every follower has passed; a cursor that was never set keeps them all.
            row = await (await conn.execute("SELECT min(position) FROM cursors")).fetchone()
            followed = int(row[0]) if row and row[0] is not None else 0
            cursor = await conn.execute(
                "DELETE FROM job_events WHERE id <= ? AND created_at < ?", (followed, now - EVENTS_KEEP_S)
            )
            report.events = cursor.rowcount
            # The newest processed update stays: polling resumes from it.
            cursor = await conn.execute(
                """DELETE FROM processed_updates WHERE processed_at < ?
                   AND update_id < (SELECT max(update_id) FROM processed_updates)""",
                (now - UPDATES_KEEP_S,),
            )
            report.updates = cursor.rowcount
            cursor = await conn.execute(
                """DELETE FROM deliveries WHERE updated_at < ? AND job_id NOT IN
                   (SELECT id FROM jobs WHERE status IN ('queued', 'running'))""",
                (now - DELIVERIES_KEEP_S,),
            )
            report.deliveries = cursor.rowcount

    async def erase_user(self, user_id: int, *, jobs_stopped: int = 0, models: int = 0) -> ForgetReport:
        """The rest of /forgetme once storage/lifecycle.py has stopped the user's jobs and deleted their models:
        photos, pictures the user drew, jobs, deliveries, shares, links and the user's own row. Running jobs'
        rows go as soon as they have stopped (the next sweep). The rows of trainings started in the last 24 h
        stay, holding nothing but the time, so that forgetting is no way around the daily training cap."""
        report = ForgetReport(models=models, jobs_stopped=jobs_stopped)
        photos = await self._db.fetchall("SELECT blob_key FROM photos WHERE owner_id = ?", (user_id,))
        report.photos = len(photos)
        jobs = await self._db.fetchall("SELECT id FROM jobs WHERE owner_id = ?", (user_id,))
        for row in jobs:
            await self._blobs.delete_prefix(job_prefix(row["id"]))
        await self._blobs.delete_prefix(user_photos_prefix(user_id))
        recent = time.time() - DAY_S
        async with self._db.transaction() as conn:
            finished = """SELECT id FROM jobs WHERE owner_id = ? AND status IN ('done', 'failed', 'cancelled')
                          AND NOT (kind = 'train' AND started_at >= ?)"""
            await conn.execute(f"DELETE FROM job_events WHERE job_id IN ({finished})", (user_id, recent))
            await conn.execute(
                "DELETE FROM deliveries WHERE job_id IN (SELECT id FROM jobs WHERE owner_id = ?)", (user_id,)
            )
            await conn.execute(f"DELETE FROM jobs WHERE id IN ({finished})", (user_id, recent))
            # What remains of recent trainings: no payload worth keeping (a model id that no longer exists).
            await conn.execute(
                "DELETE FROM job_events WHERE job_id IN (SELECT id FROM jobs WHERE owner_id = ? AND kind = 'train')",
                (user_id,),
            )
            await conn.execute("DELETE FROM photos WHERE owner_id = ?", (user_id,))
            await conn.execute("DELETE FROM shares WHERE by_user_id = ? OR chat_id = ?", (user_id, user_id))
            await conn.execute(
                "DELETE FROM share_links WHERE model_id IN (SELECT id FROM models WHERE owner_id = ?)", (user_id,)
            )
            await conn.execute("DELETE FROM shares WHERE model_id IN (SELECT id FROM models WHERE owner_id = ?)",
                               (user_id,))
            await conn.execute("DELETE FROM models WHERE owner_id = ?", (user_id,))
            await conn.execute("DELETE FROM chats WHERE id = ?", (user_id,))
            await conn.execute("DELETE FROM users WHERE id = ?", (user_id,))
        return report


@dataclass
class ForgetReport:
    models: int = 0
    photos: int = 0
    jobs_stopped: int = 0
