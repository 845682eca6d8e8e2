"""Kabina's storage: the database (SQLite, or PostgreSQL by DATABASE_URL), the files under DATA_DIR and the durable
job queue."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from storage import contract
from storage.admin import AdminRepo, Stats
from storage.blobs import BlobStore, open_blobs
from storage.contract import (
    ClassImagesPayload,
    ClassImagesResult,
    ContractError,
    DrawPayload,
    DrawResult,
    EngineInfo,
    FailureCode,
    JobKind,
    Progress,
    TrainPayload,
    TrainResult,
)
from storage.db import Database, open_database
from storage.errors import (
    ConfigError,
    Conflict,
    DuplicatePhoto,
    JobCancelled,
    LeaseLost,
    NotFound,
    PathEscape,
    SchemaTooNew,
    StorageError,
    StorageUnavailable,
    TokenTaken,
)
from storage.files import FileStore
from storage.intake import AlbumRepo, CursorRepo, DeliveryRepo, UpdateLog
from storage.keys import convert_old_paths
from storage.leases import LeaseRepo
from storage.lifecycle import Lifecycle, Note, TrainingStarted
from storage.preferences import PreferenceRepo, Preferences
from storage.queue import PRIORITY, JobQueue
from storage.records import (
    AlbumPart,
    Chat,
    Delivery,
    DeliveryKind,
    DeliveryState,
    Job,
    JobEvent,
    JobStatus,
    Model,
    ModelStatus,
    Photo,
    User,
)
from storage.repos import ChatRepo, EngineRepo, ModelRepo, PhotoRepo, ShareRepo, UserRepo
from storage.retention import ForgetReport, Retention, SweepReport
from storage.settings import Settings, load_settings

if TYPE_CHECKING:
    from storage.pg import PgDatabase

__all__ = [
    "PRIORITY", "AdminRepo", "AlbumPart", "BlobStore", "Chat", "ClassImagesPayload", "ClassImagesResult", "ConfigError",
    "Conflict", "ContractError",
    "Delivery", "DeliveryKind", "DeliveryState", "DrawPayload", "DrawResult", "DuplicatePhoto", "EngineInfo",
    "FailureCode", "FileStore", "ForgetReport", "Job", "JobCancelled", "JobEvent", "JobKind", "JobQueue", "JobStatus",
    "LeaseLost", "Lifecycle", "Model", "ModelStatus", "NotFound", "Note", "PathEscape", "Photo", "Preferences",
    "Progress", "Retention", "SchemaTooNew", "Settings", "Stats", "Storage", "StorageError", "StorageUnavailable",
    "SweepReport", "TokenTaken", "TrainPayload", "TrainResult", "TrainingStarted", "User", "contract",
    "load_settings",
]


class Storage:
    """Everything persistent, opened once per process."""

    def __init__(
        self, db: Database | PgDatabase, files: FileStore, blobs: BlobStore | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.files = files  # this machine's folders: the database file, temp and work files
        self.blobs = blobs if blobs is not None else open_blobs(None, files.root)  # everything rows name by key
        self.users = UserRepo(db)
        self.preferences = PreferenceRepo(db)
        self.chats = ChatRepo(db)
        self.photos = PhotoRepo(db, self.blobs)
        self.models = ModelRepo(db, self.blobs)
        self.shares = ShareRepo(db)
        self.jobs = JobQueue(db, clock)
        self.deliveries = DeliveryRepo(db)
        self.cursors = CursorRepo(db)
        self.updates = UpdateLog(db)
        self.engines = EngineRepo(db)
        self.retention = Retention(db, self.blobs)
        # Every change of a model's or a job's status goes through here (storage/lifecycle.py).
        self.lifecycle = Lifecycle(db, self.blobs, self.jobs, self.retention, clock, monotonic)
        self.leases = LeaseRepo(db, clock, monotonic)
        self.albums = AlbumRepo(db)
        self.admin = AdminRepo(db, files.root, clock)

    @classmethod
    async def open(
        cls, data_dir: str | Path, *, database_url: str | None = None, blob_url: str | None = None,
        clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic,
    ) -> Storage:
        """`database_url` is DATABASE_URL (None: SQLite in `data_dir`, as always), `blob_url` BLOB_URL (None: files
        under DATA_DIR). `clock` is the wall clock shared with other processes (lease expiry); `monotonic` measures
        this process's own intervals (how long it watched a lease lapse). Tests inject both."""
        files = FileStore(Path(data_dir))
        files.sweep_partials()
        blobs = open_blobs(blob_url, files.root)
        db = await open_database(database_url, files.database_path)
        try:
            await convert_old_paths(db, files.root)
        except BaseException:
            await db.close()
            raise
        return cls(db, files, blobs, clock, monotonic)

    async def close(self) -> None:
        await self.db.close()

    async def __aenter__(self) -> Storage:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
