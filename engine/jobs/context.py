"""What every job handler is given: the worker's context, built once at start-up, and the job it runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from engine.blob_cache import BlobCache
    from engine.gpu import Engine
    from engine.gpu_lane import GpuLane


class JobFailed(Exception):
    """A failure the user is told about: `args[0]` is its Failure (a code and its parameters)."""


class RunningJob(Protocol):
    """One claimed job as its handler sees it (engine.worker.JobRun keeps its lease and publishes progress)."""

    job: Any  # storage's Job: id, kind, payload, attempts

    def on_progress(self, progress: dict) -> None: ...

    def should_stop(self) -> bool: ...


@dataclass
class JobContext:
    """The worker's parts a handler uses; the same object for every job (arq's `ctx`)."""

    store: Any  # storage.Storage
    settings: Any  # storage.Settings
    engine: Engine
    cache: BlobCache
    gpu: GpuLane
    checkpoint_every: int = 100

    async def on_gpu(self, fn, *args, **kwargs):
        """Short GPU work (a draw, a look at the tokenizer): it slips in between a long job's steps."""
        return await self.gpu.run(fn, *args, **kwargs)
