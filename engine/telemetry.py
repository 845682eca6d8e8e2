"""An engine's Prometheus figures and liveness: its heartbeat, job durations by kind and family, the queue it
serves (ENGINE_METRICS_PORT)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram

from storage.admin import ENGINE_BEAT_S
from storage.endpoints import Endpoints, StoreFigures

log = logging.getLogger(__name__)

# Seconds: a draw takes seconds, a training minutes to an hour.
JOB_BUCKETS = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)


class EngineTelemetry:
    """Beats into storage every ENGINE_BEAT_S (so /stats and the bot's metrics see the engine alive, idle or not)
    and serves /metrics and /healthz; `instrument(worker)` times every job the worker serves."""

    def __init__(self, store: Any, worker_id: str, family: str, device: str) -> None:
        self.store = store
        self.worker_id = worker_id
        self.family = family
        self.device = device
        self.registry = CollectorRegistry()
        self.heartbeat = Gauge("kabina_engine_heartbeat_timestamp_seconds", "when this engine last beat (Unix time)",
                               registry=self.registry)
        self.job_seconds = Histogram("kabina_job_duration_seconds", "from claiming a job to its end, by kind and family",
                                     ("kind", "family"), buckets=JOB_BUCKETS, registry=self.registry)
        self.busy = Gauge("kabina_engine_jobs_in_hand", "jobs this engine is serving now", registry=self.registry)
        self.store_figures = StoreFigures(self.registry)
        self._last_beat = float("-inf")  # monotonic
        self._beating: asyncio.Task[None] | None = None
        self.endpoints = Endpoints(self.registry, self.health, self._refresh)

    async def start(self, host: str, port: int) -> None:
        await self.beat()
        self._beating = asyncio.create_task(self._beat_forever(), name="heartbeat")
        await self.endpoints.start(host, port)

    async def stop(self) -> None:
        if self._beating is not None:
            self._beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beating
        await self.endpoints.stop()

    async def beat(self) -> None:
        await self.store.admin.engine_alive(self.worker_id)
        self._last_beat = time.monotonic()
        self.heartbeat.set(time.time())

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(ENGINE_BEAT_S)
            try:
                await self.beat()
            except Exception as exc:  # the database away for a moment: /healthz turns 503 if it lasts
                log.warning("the engine's heartbeat could not be written: %s", exc)

    def instrument(self, worker: Any) -> None:
        """Time each job `worker.serve(job)` brings to an end (done, failed, cancelled or handed back)."""
        serve = worker.serve

        @functools.wraps(serve)
        async def timed(job: Any) -> None:
            started = time.monotonic()
            self.busy.inc()
            try:
                await serve(job)
            finally:
                self.busy.dec()
                self.job_seconds.labels(job.kind, self.family).observe(time.monotonic() - started)

        worker.serve = timed

    def health(self) -> dict[str, Any]:
        since = time.monotonic() - self._last_beat
        return {"ok": since < 3 * ENGINE_BEAT_S, "process": "engine", "worker_id": self.worker_id,
                "family": self.family, "device": self.device, "last_beat_s_ago": round(since, 1)}

    async def _refresh(self) -> None:
        await self.store_figures.refresh(self.store)
