"""The exceptions storage raises at its edge; the bot maps them to friendly replies."""

from __future__ import annotations


class StorageError(Exception):
    """Base class for every error raised by storage."""


class ConfigError(StorageError):
    """A setting is missing or wrong; the message is one line fit to print."""


class SchemaTooNew(StorageError):
    """The database was written by a newer Kabina than this one."""


class PathEscape(StorageError):
    """A path would leave DATA_DIR."""


class NotFound(StorageError):
    """The row asked for does not exist (or is not the caller's)."""


class DuplicatePhoto(StorageError):
    """The photo is already in the user's set."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"duplicate photo ({reason})")
        self.reason = reason  # "same_file" | "same_content"


class TokenTaken(StorageError):
    """The owner already has a live model with that identifier token."""


class Conflict(StorageError):
    """A write broke a uniqueness rule (the same on SQLite and PostgreSQL); repositories turn it into what it means."""


class JobCancelled(StorageError):
    """The job was cancelled; the worker must stop it."""


class LeaseLost(StorageError):
    """The worker no longer holds the job (its lease expired and another worker took it)."""


class StorageUnavailable(StorageError, OSError):
    """Nothing can be saved right now: the disk is full, or the database or DATA_DIR is read-only.

    An OSError too, so code that already copes with a failed write copes with this one; `reason` is
    "no_space" or "read_only" (or "io" for other storage trouble the operator must look at)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return self.detail
