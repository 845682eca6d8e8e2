"""Logging for both processes: one line per event, a level, the job id when there is one, and no secrets."""

from __future__ import annotations

import contextvars
import logging
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

# The job a line belongs to; the engine worker sets it around each job so every line carries it.
current_job: contextvars.ContextVar[int | None] = contextvars.ContextVar("current_job", default=None)

_REDACTED = "[secret]"


class LogLineFilter(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s and len(s) >= 6]

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
            record.msg, record.args = message, None
        return True


class _OneLineFormatter(logging.Formatter):
    """Tracebacks folded into the same line, so one event is one line for log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace("\n", " ⏎ ")


def setup_logging(process: str, *, secrets: Iterable[str] = (), level: str | None = None) -> None:
    level = (level or os.environ.get("LOG_LEVEL") or "INFO").upper()  # settings.log_level when known
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        _OneLineFormatter(f"%(asctime)s %(levelname)s {process}%(job)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")
    )
    # The filter sits on the handler so that records of every library logger pass through it.
    handler.addFilter(LogLineFilter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiosqlite", "PIL", "urllib3", "httpx", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@contextmanager
def job_context(job_id: int) -> Iterator[None]:
    token = current_job.set(job_id)
    try:
        yield
    finally:
        current_job.reset(token)
