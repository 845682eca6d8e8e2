"""The engine worker: claims jobs from storage's queue, keeps their leases, and runs each kind's handler.

The worker knows no job kind: `HANDLERS` maps each kind to its module in engine/jobs (arq's table of
functions). What it owns is the loop around them: claims (draws also while a long job runs), heartbeats and
progress, one lighter retry after the GPU runs out of memory, and recording how each job ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from engine.blob_cache import BlobCache, default_cache_dir
from engine.class_images import Stopped
from engine.compiled_denoiser import CompileOptions
from engine.gpu import Engine, free_gpu_memory, is_out_of_memory
from engine.gpu_lane import GpuLane
from engine.jobs.class_images import run_class_images
from engine.jobs.context import JobContext, JobFailed, RunningJob
from engine.jobs.draw import run_draw
from engine.jobs.train import run_train
from engine.messages import Failure, failure
from engine.telemetry import EngineTelemetry
from storage.contract import JobKind, JobResult, Progress
from storage.errors import StorageUnavailable
from storage.logs import job_context, report_storage_trouble

__all__ = ["Engine", "JobFailed", "Worker", "WorkerOptions", "run_worker"]

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 1.0  # progress rows are events the bot turns into message edits: ~1/s is plenty
# While a training runs, how often to look for draws to slip in between its steps (a claim costs ~0.2 ms).
INTERLEAVE_POLL_S = 0.1
# How often to try again to record a job's end while the database cannot be written (a full disk).
PERSIST_RETRY_S = 2.0


@dataclass(frozen=True)
class JobHandler:
    """How the worker runs one kind of job: `run(ctx, job, payload, lighter)` returns its result (None: stopped)."""

    run: Callable[[JobContext, RunningJob, Any, bool], Awaitable[JobResult | None]]
    # Holds the GPU for minutes: draws are claimed meanwhile and slip in between its steps.
    long: bool = False


# Claimed in this order of kinds; the queue's priorities and fair order decide within them.
HANDLERS: dict[JobKind, JobHandler] = {
    JobKind.DRAW: JobHandler(run_draw),
    JobKind.CLASS_IMAGES: JobHandler(run_class_images, long=True),
    JobKind.TRAIN: JobHandler(run_train, long=True),
}
KINDS = list(HANDLERS)
INTERLEAVED_KINDS = [kind for kind, handler in HANDLERS.items() if not handler.long]


@dataclass
class WorkerOptions:
    worker_id: str
    lease_s: float = 30.0
    # How often a running job renews its lease and learns of a cancel; a third of the lease leaves two
    # renewals of slack before anyone may judge the job abandoned.
    heartbeat_s: float | None = None
    poll_s: float = 1.0
    checkpoint_every: int = 100
    # How often this host drops its copies of blobs deleted from the store (the bot sweeps every 30 s).
    cache_sweep_s: float = 30.0
    once: bool = False

    @property
    def heartbeat_interval(self) -> float:
        return self.heartbeat_s if self.heartbeat_s is not None else self.lease_s / 3


class JobRun:
    """One claimed job: its lease kept alive, its progress published (throttled), its stop flag."""

    def __init__(self, worker: Worker, job) -> None:
        self.worker = worker
        self.job = job
        self.cancelled = False
        self.lease_lost = False
        self.latest: Progress | None = None  # written by the GPU thread, read by the pump (a plain swap)

    def on_progress(self, progress: dict) -> None:
        """The engine library reports plain dicts; the contract's Progress checks them at the edge."""
        self.latest = Progress.model_validate(progress)

    def should_stop(self) -> bool:
        return self.cancelled or self.lease_lost or self.worker.stopping.is_set()

    async def keep_alive(self) -> None:
        store, wid = self.worker.store, self.worker.options.worker_id
        from storage import JobCancelled, LeaseLost

        sent: Progress | None = None
        last_sent = last_beat = 0.0
        while True:
            now = time.monotonic()
            try:
                if now - last_beat >= self.worker.options.heartbeat_interval:
                    await store.jobs.heartbeat(self.job.id, wid, lease_s=self.worker.options.lease_s)
                    last_beat = now
                latest = self.latest
                stage_changed = latest is not None and (sent is None or latest.stage != sent.stage)
                if latest is not None and latest is not sent and (stage_changed or now - last_sent >= PROGRESS_EVERY_S):
                    await store.jobs.report_progress(self.job.id, wid, latest)
                    sent, last_sent = latest, now
            except JobCancelled:
                self.cancelled = True
            except LeaseLost:
                self.lease_lost = True
                return
            except StorageUnavailable as exc:  # a full disk: nobody else can take the job either
                report_storage_trouble(exc, log)
            except Exception:  # a busy database must not kill the job; the next beat retries
                log.exception("heartbeat of job %s failed", self.job.id)
            await asyncio.sleep(0.2)


class Worker:
    def __init__(self, store, settings, engine: Engine, options: WorkerOptions, cache: BlobCache | None = None) -> None:
        self.store = store
        self.settings = settings
        self.engine = engine
        self.options = options
        self.cache = cache if cache is not None else open_cache(store, settings)
        self.stopping = asyncio.Event()
        # One thread owns the GPU while the loop keeps beating; draws slip in between training steps.
        self.gpu = GpuLane()
        self.context = JobContext(store=store, settings=settings, engine=engine, cache=self.cache, gpu=self.gpu,
                                  checkpoint_every=options.checkpoint_every)
        self._interleaved: set[asyncio.Task] = set()

    def stop(self) -> None:
        log.info("stopping: the current job checkpoints and is handed back")
        self.stopping.set()

    async def run(self) -> None:
        sweeper = asyncio.create_task(self._sweep_cache())
        try:
            while not self.stopping.is_set():
                try:
                    job = await self.store.lifecycle.claim(self.options.worker_id, KINDS, lease_s=self.options.lease_s)
                except Exception:  # e.g. the database is busy: wait and look again rather than die
                    log.exception("claiming a job failed")
                    job = None
                if job is None:
                    if self.options.once and not await self._work_left():
                        return
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.stopping.wait(), timeout=self.options.poll_s)
                    continue
                await self.serve(job)
        finally:
            sweeper.cancel()
            if self._interleaved:
                await asyncio.gather(*self._interleaved, return_exceptions=True)
            self.gpu.shutdown()

    async def _sweep_cache(self) -> None:
        """Deleted means deleted on this host too: local copies of blobs gone from the store (a model deleted, a
        user forgotten, a finished job's checkpoints swept) are dropped every cache_sweep_s."""
        while True:
            await asyncio.sleep(self.options.cache_sweep_s)
            try:
                await self.cache.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:  # a busy store: the next sweep tries again
                log.exception("sweeping the blob cache failed")

    async def _work_left(self) -> bool:
        """Queued jobs, or running ones another worker holds (its lease may yet run out and come to us)."""
        try:
            return await self.store.jobs.unfinished_count() > 0
        except Exception:
            log.exception("counting the jobs left failed")
            return True

    async def _interleave_draws(self) -> None:
        """While a long job holds the GPU, claim draws and hand them to its next pause point."""
        while not self.stopping.is_set():
            try:
                job = await self.store.lifecycle.claim(self.options.worker_id, INTERLEAVED_KINDS,
                                                       lease_s=self.options.lease_s)
            except Exception:
                log.exception("claiming a draw during training failed")
                job = None
            if job is None:
                await asyncio.sleep(INTERLEAVE_POLL_S)
                continue
            task = asyncio.create_task(self.serve(job))
            self._interleaved.add(task)
            task.add_done_callback(self._interleaved.discard)

    async def serve(self, job) -> None:
        """Run one job to an end state; nothing a job does can stop the worker."""
        with job_context(job.id):
            handler = HANDLERS.get(job.kind)
            long = handler is not None and handler.long
            interleaver = asyncio.create_task(self._interleave_draws()) if long else None
            try:
                await self._serve(job)
            except Exception:  # even recording the job's end failed: its lease runs out and it is retried
                log.exception("job %s could not be brought to an end", job.id)
            finally:
                if interleaver is not None:
                    interleaver.cancel()

    async def _serve(self, job) -> None:
        run = JobRun(self, job)
        pump = asyncio.create_task(run.keep_alive())
        wid = self.options.worker_id
        log.info("job %s (%s) attempt %s", job.id, job.kind, job.attempts)
        try:
            # A CUDA out-of-memory error earns one more try with lighter settings; anything else ends the job.
            for lighter in (False, True):
                try:
                    result = await self.dispatch(run, lighter=lighter)
                except Stopped:
                    result = None
                except JobFailed as exc:
                    await self._settle(run, error=exc.args[0])
                    return
                except Exception as exc:
                    if lighter or not is_out_of_memory(exc):
                        await self._settle(run, error=self._describe(exc))
                        return
                    log.warning("job %s ran out of GPU memory; retrying once with lighter settings", job.id)
                    await self.gpu.run(free_gpu_memory)
                    continue
                break
            if result is None:
                await self._settle(run)
            else:
                from storage import LeaseLost

                try:
                    # A training's model is ready with it (or, deleted meanwhile, the job ends cancelled).
                    await self._persist(run, lambda: self.store.lifecycle.complete(job.id, wid, result))
                    log.info("job %s done", job.id)
                except LeaseLost:
                    log.warning("job %s finished after its lease was lost; another worker owns it now", job.id)
        finally:
            pump.cancel()

    async def _persist(self, run: JobRun, write) -> None:
        """Record a job's end; while nothing can be saved (a full disk) keep trying, the lease kept alive by the
        pump, until it works, the lease is lost or the worker stops."""
        while True:
            try:
                await write()
                return
            except StorageUnavailable as exc:
                report_storage_trouble(exc, log)
                if run.lease_lost or self.stopping.is_set():
                    raise
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), timeout=PERSIST_RETRY_S)

    def _describe(self, exc: BaseException) -> Failure:
        if isinstance(exc, StorageUnavailable):
            report_storage_trouble(exc, log)
            return failure("no_room")
        if is_out_of_memory(exc):
            return failure("out_of_memory")
        if isinstance(exc, FloatingPointError):
            return failure("diverged")
        log.exception("job failed", exc_info=exc)
        return failure("internal")

    async def _settle(self, run: JobRun, error: Failure | None = None) -> None:
        """End a job that did not complete: failed, cancelled, or handed back on shutdown."""
        from storage import LeaseLost

        job, wid = run.job, self.options.worker_id
        try:
            if error is not None:  # a training's model fails with it (storage/lifecycle.py)
                await self._persist(run, lambda: self.store.lifecycle.fail(job.id, wid, error.code, error.params))
                log.info("job %s failed: %s", job.id, error)
            elif run.cancelled:  # a cancelled training's model goes with it
                await self._persist(run, lambda: self.store.lifecycle.cancelled(job.id, wid))
            elif self.stopping.is_set():
                await self.store.lifecycle.release(job.id, wid)
                log.info("job %s handed back; its checkpoint is kept", job.id)
        except LeaseLost:
            log.warning("job %s: lease lost; another worker has it", job.id)

    async def dispatch(self, run: JobRun, lighter: bool) -> JobResult | None:
        handler = HANDLERS.get(run.job.kind)
        if handler is None:
            raise JobFailed(failure("unknown_kind", kind=run.job.kind))
        return await handler.run(self.context, run, run.job.payload, lighter)


def open_cache(store, settings) -> BlobCache:
    """ENGINE_CACHE_DIR (default DATA_DIR/cache/<host>), bounded by ENGINE_CACHE_MB."""
    folder = getattr(settings, "engine_cache_dir", None) or default_cache_dir(store.files.root)
    megabytes = getattr(settings, "engine_cache_mb", 20_000)
    return BlobCache(store.blobs, folder, megabytes * 1024 * 1024)


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


async def serve_forever(settings, options: WorkerOptions) -> None:
    from storage import Storage

    base = settings.require_base_model()
    compile = CompileOptions(backend=settings.compile_backend) if settings.compile_denoiser else None
    engine = await asyncio.to_thread(Engine.load, base, settings.device, compile)
    log.info("base model %s loaded on %s", base, engine.runtime.device)
    store = await Storage.open(settings.data_dir, database_url=settings.database_url, blob_url=settings.blob_url)
    info = engine.info(settings.draw_steps)
    await store.engines.publish(options.worker_id, info)
    worker = Worker(store, settings, engine, options)
    telemetry = EngineTelemetry(store, options.worker_id, info.family, str(engine.runtime.device))
    telemetry.instrument(worker)
    await telemetry.start(settings.metrics_host, settings.engine_metrics_port)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    try:
        await worker.run()
    finally:
        await telemetry.stop()
        await store.close()


def run_worker(settings, args) -> int:
    options = WorkerOptions(
        worker_id=args.worker_id or default_worker_id(),
        lease_s=args.lease_s,
        poll_s=args.poll_s,
        checkpoint_every=args.checkpoint_every,
        cache_sweep_s=args.cache_sweep_s,
        once=args.once,
    )
    asyncio.run(serve_forever(settings, options))
    return 0
