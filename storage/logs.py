"""Logging for both processes: one line per event, a level, the job id when there is one, and no secrets."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

# The job a line belongs to; the engine worker sets it around each job so every line carries it.
current_job: contextvars.ContextVar[int | None] = contextvars.ContextVar("current_job", default=None)

_REDACTED = "[secret]"


def secret_forms(secret: str) -> list[str]:
    """Every way a secret shows up in text: as is, URL-quoted (an error page echoing the request path), and for a
    bot token `<id>:<secret>` its secret half alone. Longest first, so a longer form is never half-replaced."""
    forms = {secret, quote(secret, safe=""), quote(secret)}
    if ":" in secret:
        forms.add(secret.split(":", 1)[1])
    return sorted((f for f in forms if f and len(f) >= 6), key=len, reverse=True)


class LogLineFilter(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = [form for s in secrets if s and len(s) >= 6 for form in secret_forms(s)]

    def filter(self, record: logging.LogRecord) -> bool:
        job = current_job.get()
        record.job = f" job={job}" if job is not None else ""
        if self._secrets:
            message = record.getMessage()
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            for secret in self._secrets:
                message = message.replace(secret, _REDACTED)
                if record.exc_text:
                    record.exc_text = record.exc_text.replace(secret, _REDACTED)
                if record.stack_info:
                    record.stack_info = record.stack_info.replace(secret, _REDACTED)
            record.msg, record.args = message, None
        return True


class _OneLineFormatter(logging.Formatter):
    """Tracebacks folded into the same line, so one event is one line for log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace("\n", " ⏎ ")


class _JsonFormatter(logging.Formatter):
    """LOG_FORMAT=json: one JSON object per line for log collectors (the same redacted message and traceback)."""

    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname, "process": self.process, "logger": record.name, "message": record.getMessage(),
        }
        job = current_job.get()
        if job is not None:
            line["job"] = job
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, ensure_ascii=False)


def setup_logging(process: str, *, secrets: Iterable[str] = (), level: str | None = None,
                  fmt: str | None = None) -> None:
    level = (level or os.environ.get("LOG_LEVEL") or "INFO").upper()  # settings.log_level when known
    fmt = (fmt or os.environ.get("LOG_FORMAT") or "text").lower()  # settings.log_format when known
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter(process))
    else:
        handler.setFormatter(_OneLineFormatter(
            f"%(asctime)s %(levelname)s {process}%(job)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S"))
    # The filter sits on the handler so that records of every library logger pass through it.
    handler.addFilter(LogLineFilter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiosqlite", "PIL", "urllib3", "httpx", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _route_every_way_out(logging.getLogger(process))


def _route_every_way_out(log: logging.Logger) -> None:
    """Whatever would print itself to stderr (an uncaught exception in the main thread or another thread, an
    exception Python can only ignore, a warning) goes through the redacting handler instead: a traceback never
    prints the token."""

    def uncaught(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
        log.critical("uncaught %s: the process stops", kind.__name__, exc_info=(kind, exc, tb))

    def uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread is not None else "?"
        log.error("uncaught %s in thread %s", args.exc_type.__name__, name,
                  exc_info=(args.exc_type, args.exc_value, args.exc_traceback))  # type: ignore[arg-type]

    def unraisable(info: Any) -> None:
        exc_info = (info.exc_type, info.exc_value, info.exc_traceback) if info.exc_value is not None else None
        log.warning("%s: %r", info.err_msg or "exception ignored", info.object, exc_info=exc_info)

    sys.excepthook = uncaught
    threading.excepthook = uncaught_in_thread
    sys.unraisablehook = unraisable
    logging.captureWarnings(True)


def log_loop_exceptions(loop: asyncio.AbstractEventLoop, process: str) -> None:
    """The event loop's own complaints (a task's exception never retrieved, a callback that raised) through
    the redacting handler, one line each."""
    log = logging.getLogger(process)

    def handler(_: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        log.error("event loop: %s", context.get("message", "unhandled exception"),
                  exc_info=(type(exc), exc, exc.__traceback__) if isinstance(exc, BaseException) else None)

    loop.set_exception_handler(handler)


# One clear line for the operator when nothing can be saved, at most this often per kind of trouble.
TROUBLE_EVERY_S = 60.0
_TROUBLE_TEXT = {
    "no_space": "no space left on the device holding DATA_DIR",
    "read_only": "the database or DATA_DIR is read-only",
    "io": "DATA_DIR cannot be written (I/O error)",
}
_trouble_reported: dict[str, float] = {}


def report_storage_trouble(exc: BaseException, log: logging.Logger | None = None) -> bool:
    """Log that nothing can be saved (a StorageUnavailable) — at most once a minute per reason; True if logged."""
    reason = str(getattr(exc, "reason", "io"))
    now = time.monotonic()
    last = _trouble_reported.get(reason)
    if last is not None and now - last < TROUBLE_EVERY_S:
        return False
    _trouble_reported[reason] = now
    (log or logging.getLogger("storage")).error(
        "cannot save: %s (%s); users are asked to try again later, and work resumes by itself when it is fixed",
        _TROUBLE_TEXT.get(reason, _TROUBLE_TEXT["io"]), exc,
    )
    return True


@contextmanager
def job_context(job_id: int) -> Iterator[None]:
    token = current_job.set(job_id)
    try:
        yield
    finally:
        current_job.reset(token)
