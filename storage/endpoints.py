"""The HTTP endpoints each process serves to its operator: /metrics (Prometheus text) and /healthz (liveness)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from storage.contract import JobKind

log = logging.getLogger(__name__)

Refresh = Callable[[], Awaitable[None]]
Health = Callable[[], dict[str, Any]]


class Endpoints:
    """`/metrics` refreshes the figures read from the database first (`refresh`), then renders the registry;
    `/healthz` answers 200 with `health()` as JSON while `health()["ok"]` holds, 503 otherwise."""

    def __init__(self, registry: CollectorRegistry, health: Health, refresh: Refresh | None = None) -> None:
        self.registry = registry
        self.health = health
        self.refresh = refresh
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self, host: str, port: int) -> int:
        """Listen on host:port (0 = off); the port listened on, or 0 when off or the port is taken. A taken port
        is one warning, never a reason for the bot or the engine not to serve."""
        if port == 0:
            return 0
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            log.warning("the /metrics and /healthz endpoints cannot listen on %s:%s (%s); serving without them",
                        host, port, exc.strerror or exc)
            return 0
        self._runner = runner
        self.port = port
        log.info("metrics at http://%s:%s/metrics, liveness at /healthz", host, port)
        return port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, request: web.Request) -> web.Response:
        if self.refresh is not None:
            try:
                await self.refresh()
            except Exception:  # the process's own counters are still worth a scrape while the database is away
                log.exception("refreshing the metrics from the database failed")
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        state = self.health()
        return web.json_response(state, status=200 if state.get("ok") else 503)


class StoreFigures:
    """The figures only the database knows, as gauges: the queue per kind, failures by code in the last day, the
    outbox's backlog, engines alive per family, users and the free disk. Refreshed at each scrape."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def gauge(name: str, text: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(name, text, labels, registry=registry)

        self.queued = gauge("kabina_queue_depth", "jobs waiting to be claimed, by kind", ("kind",))
        self.running = gauge("kabina_queue_running", "jobs an engine is working on, by kind", ("kind",))
        self.oldest_wait = gauge("kabina_queue_oldest_wait_seconds", "how long the oldest waiting job has waited",
                                 ("kind",))
        self.failures = gauge("kabina_job_failures_24h", "jobs failed in the last 24 hours, by failure code", ("code",))
        self.backlog = gauge("kabina_outbox_backlog", "finished jobs whose results are not delivered yet")
        self.engines = gauge("kabina_engines_alive", "engines that beat within the last minute, by family",
                             ("family",))
        self.users = gauge("kabina_users", "users the bot knows")
        self.disk_free = gauge("kabina_data_disk_free_bytes", "free space on the disk holding DATA_DIR")

    async def refresh(self, store: Any) -> None:
        stats = await store.admin.stats()
        for gauge in (self.queued, self.running, self.oldest_wait, self.failures, self.engines):
            gauge.clear()  # a kind, code or family that is gone must not keep its last value
        for kind in JobKind:  # every kind has a line, 0 when idle
            line = stats.queue_by_kind.get(kind.value)
            self.queued.labels(kind.value).set(line.queued if line else 0)
            self.running.labels(kind.value).set(line.running if line else 0)
            self.oldest_wait.labels(kind.value).set(line.oldest_wait_s if line else 0)
        for code, count in stats.failures_today.items():
            self.failures.labels(code).set(count)
        families: dict[str, int] = {}
        for engine in stats.engines:
            families[engine.family] = families.get(engine.family, 0) + 1
        for family, count in families.items():
            self.engines.labels(family).set(count)
        self.backlog.set(stats.outbox_backlog)
        self.users.set(stats.users)
        self.disk_free.set(stats.disk_free_bytes)
