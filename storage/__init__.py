"""Kabina's storage: the SQLite database, the files under DATA_DIR and the durable job queue."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from storage import contract
from storage.contract import (
    ClassImagesPayload,
    ClassImagesResult,
    ContractError,
    DrawPayload,
    DrawResult,
    EngineInfo,
    JobKind,
    Progress,
    TrainPayload,
    TrainResult,
)
from storage.db import Database
from storage.errors import (
    ConfigError,
    DuplicatePhoto,
    JobCancelled,
    LeaseLost,
    NotFound,
    PathEscape,
    SchemaTooNew,
    StorageError,
    TokenTaken,
)
from storage.files import FileStore
from storage.queue import PRIORITY, JobQueue
from storage.records import Chat, Delivery, Job, JobEvent, JobStatus, Model, ModelStatus, Photo, User
from storage.repos import (
    ChatRepo,
    CursorRepo,
    DeliveryRepo,
    EngineRepo,
    ModelRepo,
    PhotoRepo,
    ShareRepo,
    UpdateLog,
    UserRepo,
)
from storage.retention import ForgetReport, Retention, SweepReport
from storage.settings import Settings, load_settings

__all__ = [
    "PRIORITY", "Chat", "ClassImagesPayload", "ClassImagesResult", "ConfigError", "ContractError", "Delivery",
    "DrawPayload", "DrawResult", "DuplicatePhoto", "EngineInfo", "FileStore", "ForgetReport", "Job", "JobCancelled", "JobEvent",
    "JobKind", "JobQueue", "JobStatus", "LeaseLost", "Model", "ModelStatus", "NotFound", "PathEscape", "Photo",
    "Progress", "Retention", "SchemaTooNew", "Settings", "Storage", "StorageError", "SweepReport", "TokenTaken", "TrainPayload", "TrainResult",
    "User", "contract", "load_settings",
]


class Storage:
    """Everything persistent, opened once per process."""

    def __init__(self, db: Database, files: FileStore, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.files = files
        self.users = UserRepo(db)
        self.chats = ChatRepo(db)
        self.photos = PhotoRepo(db, files)
        self.models = ModelRepo(db, files)
        self.shares = ShareRepo(db)
        self.jobs = JobQueue(db, clock)
        self.deliveries = DeliveryRepo(db)
        self.cursors = CursorRepo(db)
        self.updates = UpdateLog(db)
        self.engines = EngineRepo(db)
        self.retention = Retention(db, files, self.jobs, self.models)

    @classmethod
    async def open(cls, data_dir: str | Path, *, clock: Callable[[], float] = time.time) -> Storage:
        files = FileStore(Path(data_dir))
        files.sweep_partials()
        db = await Database.open(files.database_path)
        return cls(db, files, clock)

    async def close(self) -> None:
        await self.db.close()

    async def __aenter__(self) -> Storage:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
