"""The bot's Prometheus figures and liveness: updates handled, time to the first answer, Telegram's 429s and 5xx,
whether it polls or waits as a standby, and the queue as storage counts it (METRICS_PORT)."""

from __future__ import annotations

import contextvars
import time
from typing import Any

from aiogram import BaseMiddleware, Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.exceptions import TelegramRetryAfter, TelegramServerError
from aiogram.methods import GetUpdates, TelegramMethod
from aiogram.methods.base import Response, TelegramType
from aiogram.types import TelegramObject, Update
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from bot.leadership import Leadership
from bot.middlewares import Handler
from storage import Settings, Storage
from storage.endpoints import Endpoints, StoreFigures

# When the update being handled arrived (a one-item list, emptied by the first answer): set per update task.
_arrived: contextvars.ContextVar[list[float] | None] = contextvars.ContextVar("update_arrived", default=None)


class BotMetrics:
    """One per process; the registry /metrics renders."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.updates = Counter("kabina_bot_updates", "Telegram updates handled, by type", ("type",),
                               registry=self.registry)
        self.first_answer = Histogram(
            "kabina_bot_first_answer_seconds", "from an update reaching the bot to its first request answering it",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30), registry=self.registry)
        self.telegram_errors = Counter("kabina_telegram_errors", "Bot API requests refused: 429 or 5xx",
                                       ("status",), registry=self.registry)
        self.leader = Gauge("kabina_bot_leader", "1 while this bot polls and delivers, 0 while it is a standby",
                            registry=self.registry)
        self.store_figures = StoreFigures(self.registry)


METRICS = BotMetrics()


class UpdateMetrics(BaseMiddleware):
    """The outermost update middleware: counts the update and starts its clock for the first answer."""

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        if isinstance(event, Update):
            METRICS.updates.labels(event.event_type).inc()
        token = _arrived.set([time.monotonic()])
        try:
            return await handler(event, data)
        finally:
            _arrived.reset(token)


class RequestMetrics(BaseRequestMiddleware):
    """On the session, inside the 429 retries: counts every refused attempt, and times the first answer."""

    async def __call__(
        self, make_request: NextRequestMiddlewareType[TelegramType], bot: Bot, method: TelegramMethod[TelegramType]
    ) -> Response[TelegramType]:
        arrived = _arrived.get()
        if arrived and not isinstance(method, GetUpdates):
            METRICS.first_answer.observe(time.monotonic() - arrived.pop())
        try:
            return await make_request(bot, method)
        except TelegramRetryAfter:
            METRICS.telegram_errors.labels("429").inc()
            raise
        except TelegramServerError:
            METRICS.telegram_errors.labels("5xx").inc()
            raise


def health(leadership: Leadership) -> dict[str, Any]:
    """Liveness: the process answers; `role` says whether it polls and delivers or waits as a standby."""
    return {"ok": True, "process": "bot", "role": "leader" if leadership.ok() else "standby"}


async def serve_endpoints(store: Storage, settings: Settings, leadership: Leadership) -> Endpoints:
    """/metrics and /healthz on METRICS_HOST:METRICS_PORT (off when the port is 0)."""

    async def refresh() -> None:
        METRICS.leader.set(1 if leadership.ok() else 0)
        await METRICS.store_figures.refresh(store)

    endpoints = Endpoints(METRICS.registry, lambda: health(leadership), refresh)
    await endpoints.start(settings.metrics_host, settings.metrics_port)
    return endpoints
