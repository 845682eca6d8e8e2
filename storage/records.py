"""Plain records storage hands out: users, chats, photos, models, jobs and their events."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from storage.contract import JobPayload, JobResult, Progress, parse_payload, parse_result


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)


class ModelStatus(StrEnum):
    QUEUED = "queued"
    TRAINING = "training"
    READY = "ready"
    FAILED = "failed"
    DELETED = "deleted"


class DeliveryKind(StrEnum):
    """What a delivery record is about: the user's request (language, reply), the "Drawing…" status message, the
    live progress message of a training, and the result itself."""

    REQUEST = "request"
    STATUS = "status"
    PROGRESS = "progress"
    RESULT = "result"


class DeliveryState(StrEnum):
    NOTED = "noted"  # a request: what the handler noted when the user asked
    PENDING = "pending"  # a progress message the handler is still sending
    LIVE = "live"  # a progress message being edited
    FINAL = "final"  # a progress message showing its last text
    SENDING = "sending"  # a result part-way out
    SENT = "sent"
    FAILED = "failed"  # a result Telegram refused for good


def _json(text: str | None, default: Any = None) -> Any:
    return json.loads(text) if text else default


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str | None
    first_name: str | None
    language: str | None
    default_model_id: int | None
    created_at: float

    @classmethod
    def from_row(cls, r: Any) -> User:
        return cls(r["id"], r["username"], r["first_name"], r["language"], r["default_model_id"], r["created_at"])


@dataclass(frozen=True, slots=True)
class Chat:
    id: int
    type: str
    title: str | None
    created_at: float

    @classmethod
    def from_row(cls, r: Any) -> Chat:
        return cls(r["id"], r["type"], r["title"], r["created_at"])


@dataclass(frozen=True, slots=True)
class Photo:
    id: int
    owner_id: int
    file_unique_id: str
    sha256: str
    size: int
    width: int
    height: int
    blob_key: str
    created_at: float

    @classmethod
    def from_row(cls, r: Any) -> Photo:
        return cls(
            r["id"], r["owner_id"], r["file_unique_id"], r["sha256"], r["size"], r["width"], r["height"],
            r["blob_key"], r["created_at"],
        )


@dataclass(frozen=True, slots=True)
class Model:
    id: int
    owner_id: int
    name: str
    class_word: str
    token: str | None
    status: ModelStatus
    weights_key: str | None
    kohya_key: str | None
    sample_keys: list[str]
    params: dict[str, Any]
    photo_keys: list[str]
    version: int
    job_id: int | None
    error: str | None
    created_at: float
    updated_at: float

    @property
    def trigger(self) -> str:
        """The words a prompt uses to call this model: `sks dog`."""
        return f"{self.token} {self.class_word}" if self.token else self.class_word

    @classmethod
    def from_row(cls, r: Any) -> Model:
        return cls(
            id=r["id"], owner_id=r["owner_id"], name=r["name"], class_word=r["class_word"], token=r["token"],
            status=ModelStatus(r["status"]), weights_key=r["weights_key"], kohya_key=r["kohya_key"],
            sample_keys=_json(r["sample_keys"], []), params=_json(r["params"], {}),
            photo_keys=_json(r["photo_keys"], []), version=r["version"], job_id=r["job_id"], error=r["error"],
            created_at=r["created_at"], updated_at=r["updated_at"],
        )


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    kind: str
    status: JobStatus
    priority: int
    payload: JobPayload
    owner_id: int | None
    chat_id: int | None
    model_id: int | None
    attempts: int
    max_attempts: int
    lease_owner: str | None
    lease_expires_at: float | None
    progress: Progress | None
    result: JobResult | None
    error: str | None  # a failure code (storage.contract.FailureCode); older rows hold an English text
    error_params: dict[str, Any]
    cancel_requested: bool
    created_at: float
    started_at: float | None
    finished_at: float | None

    @classmethod
    def from_row(cls, r: Any) -> Job:
        return cls(
            id=r["id"], kind=r["kind"], status=JobStatus(r["status"]), priority=r["priority"],
            payload=parse_payload(r["kind"], _json(r["payload"], {})), owner_id=r["owner_id"], chat_id=r["chat_id"],
            model_id=r["model_id"], attempts=r["attempts"], max_attempts=r["max_attempts"],
            lease_owner=r["lease_owner"], lease_expires_at=r["lease_expires_at"],
            progress=Progress.model_validate(_json(r["progress"])) if r["progress"] else None,
            result=parse_result(r["kind"], _json(r["result"])) if r["result"] else None,
            error=r["error"], error_params=_json(r["error_params"], {}), cancel_requested=bool(r["cancel_requested"]),
            created_at=r["created_at"],
            started_at=r["started_at"], finished_at=r["finished_at"],
        )


@dataclass(frozen=True, slots=True)
class JobEvent:
    id: int
    job_id: int
    kind: str  # queued | started | progress | requeued | done | failed | cancelled
    data: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0

    @classmethod
    def from_row(cls, r: Any) -> JobEvent:
        return cls(r["id"], r["job_id"], r["kind"], _json(r["data"], {}), r["created_at"])


@dataclass(frozen=True, slots=True)
class Delivery:
    job_id: int
    what: DeliveryKind
    chat_id: int
    message_id: int | None
    state: DeliveryState
    data: dict[str, Any]
    updated_at: float

    @classmethod
    def from_row(cls, r: Any) -> Delivery:
        return cls(r["job_id"], DeliveryKind(r["what"]), r["chat_id"], r["message_id"], DeliveryState(r["state"]),
                   _json(r["data"], {}),
                   r["updated_at"])


@dataclass(frozen=True, slots=True)
class AlbumPart:
    """One photo of an album and what became of it, kept until the album's summary is sent."""

    chat_id: int
    media_group_id: str
    update_id: int
    owner_id: int
    result: dict[str, Any]
    reply_to: int | None
    lang: str
    created_at: float

    @classmethod
    def from_row(cls, r: Any) -> AlbumPart:
        return cls(r["chat_id"], r["media_group_id"], r["update_id"], r["owner_id"], _json(r["result"], {}),
                   r["reply_to"], r["lang"], r["created_at"])
