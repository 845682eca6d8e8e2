"""Durable long polling: updates of different users handled at once, each user's in order; the offset moves past an
update only when it and every earlier one are finished (or, when slow, kept in the database); no answer of the Bot
API stops the bot."""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections import Counter, deque
from collections.abc import Hashable
from functools import partial
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramConflictError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.methods import TelegramMethod
from aiogram.types import Update

from bot.config import BotTuning
from bot.lanes import Lanes
from storage import Storage, StorageUnavailable
from storage.logs import report_storage_trouble

log = logging.getLogger(__name__)

ALLOWED_UPDATES = ["message", "callback_query", "my_chat_member"]


class RawUpdates(TelegramMethod[list[Any]]):
    """getUpdates answered as plain JSON objects: each update is read on its own, so one that aiogram cannot
    parse is skipped alone instead of making the whole batch undecodable (aiogram issue #1840)."""

    __returning__ = list[Any]
    __api_method__ = "getUpdates"

    offset: int | None = None
    limit: int | None = None
    timeout: int | None = None
    allowed_updates: list[str] | None = None


def describe_problem(exc: BaseException) -> tuple[int, str]:
    """The log level and one line for a failed Bot API call (no body dumps: an error page may be huge)."""
    if isinstance(exc, TelegramUnauthorizedError):
        return logging.ERROR, "the Bot API server refused the token (401): BOT_TOKEN is wrong or was revoked"
    if isinstance(exc, TelegramConflictError):
        return logging.WARNING, "409 Conflict: another program polls with this BOT_TOKEN, or a webhook is set"
    if isinstance(exc, TelegramNotFound):
        return logging.ERROR, "404 Not Found: TELEGRAM_API_URL may not point at a Bot API server"
    if isinstance(exc, TelegramRetryAfter):
        return logging.WARNING, f"429 Too Many Requests (retry after {exc.retry_after} s)"
    if isinstance(exc, TelegramServerError):
        return logging.WARNING, f"the Bot API server failed: {_one_line(exc.message)}"
    if isinstance(exc, ClientDecodeError):
        return logging.WARNING, f"the answer was not Bot API JSON ({_page_summary(exc.data)})"
    return logging.WARNING, f"{type(exc).__name__}: {_one_line(str(exc))}"


def _one_line(text: str) -> str:
    # Never cut short: a cut through the middle of a token would escape the redacting logger.
    return " ".join(text.split())


def _page_summary(data: object) -> str:
    """What an error page says in its title, and its size — not the page itself (it may echo the token)."""
    text = data if isinstance(data, str) else repr(data)
    title = re.search(r"<title>([^<]{1,80})</title>", text, flags=re.IGNORECASE)
    return f"{title.group(1).strip() if title else 'not JSON'}, {len(text)} characters"


def backoff(failures: int, first_s: float, max_s: float) -> float:
    """first_s, doubling per failure up to max_s, with a little jitter so many clients do not retry in step."""
    return min(max_s, first_s * 2 ** max(0, failures - 1)) * random.uniform(0.9, 1.1)


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """`event.wait()` for at most `timeout` s. Not asyncio.wait_for: on Python 3.11 it loses a cancel that arrives
    as the event is set, and a bot being stopped would go on polling forever."""
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=timeout)
    finally:
        waiter.cancel()
    return event.is_set()


def lane_of(update: Update) -> int:
    """Whose update this is: the user's own updates are handled in order, different users' at once."""
    try:
        event = update.event
    except Exception:
        return 0
    user = getattr(event, "from_user", None)
    if user is not None:
        return int(user.id)
    chat = getattr(event, "chat", None)
    return int(chat.id) if chat is not None else 0


class Poller:
    """aiogram's own polling moves the offset before handlers finish; ours moves it only past updates that are
    finished (recorded in `store.updates`), so a bot killed at any moment sees unfinished updates again, and
    skips the ones it already handled. An update that is slow to finish is kept in the database (its raw JSON)
    and the offset moves past it: a restarted bot handles the kept ones first.

    Fair: one user holds at most `max_updates_per_lane` of the `max_updates_in_flight` window. Their updates past
    that are parked: kept in the database at once (so the offset moves past them) and handed to their lane, in
    order, as it drains. A user sending hundreds of messages, each answered at Telegram's one per second, waits
    for their own backlog; everyone else is read and answered as before."""

    def __init__(self, bot: Bot, dp: Dispatcher, store: Storage, tuning: BotTuning) -> None:
        self.bot = bot
        self.dp = dp
        self.store = store
        self.tuning = tuning
        self._lanes = Lanes("updates")
        self._active: set[int] = set()
        self._kept: set[int] = set()  # active, and in the database's keeping
        self._raw: dict[int, dict[str, Any]] = {}
        self._taken_at: dict[int, float] = {}
        self._done: set[int] = set()  # finished in this run but not yet below the offset
        self._lane_of: dict[int, Hashable] = {}
        self._in_lane: Counter[Hashable] = Counter()  # updates handed to each lane, unfinished
        self._parked: dict[Hashable, deque[tuple[int, Update]]] = {}  # kept, waiting for their lane to drain
        self._highest: int | None = None
        self._moved = asyncio.Event()

    def offset(self) -> int | None:
        """Telegram forgets every update below the offset we send: the oldest unfinished one that only Telegram
        holds, or past the newest."""
        waiting = self._active - self._kept
        if waiting:
            return min(waiting)
        return self._highest + 1 if self._highest is not None else None

    async def run(self) -> None:
        failures = 0
        try:
            await self._resume_kept()
            while True:
                self._moved.clear()
                if self.in_flight() >= self.tuning.max_updates_in_flight:
                    await self._wait_for_progress(self.tuning.poll_timeout_s)
                    continue
                try:
                    batch = await self.bot(
                        RawUpdates(offset=self.offset(), timeout=self.tuning.poll_timeout_s,
                                   allowed_updates=ALLOWED_UPDATES),
                        request_timeout=self.tuning.poll_timeout_s + 15,
                    )
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    failures += 1
                    wait = backoff(failures, self.tuning.poll_retry_s, self.tuning.poll_max_wait_s)
                    if isinstance(exc, TelegramRetryAfter):
                        wait = max(wait, float(exc.retry_after))
                    level, problem = describe_problem(exc)
                    log.log(level, "getUpdates failed: %s; trying again in %.1f s", problem, wait)
                    await asyncio.sleep(wait)
                    continue
                failures = 0
                fresh = await self._take(batch if isinstance(batch, list) else [])
                await self._keep_slow()
                if not fresh and self._active:
                    # Telegram answers at once with the updates still being handled: look again after one of
                    # them is finished, or a moment later for new ones.
                    await self._wait_for_progress(self.tuning.busy_poll_s)
        finally:
            await self._lanes.close()

    def in_flight(self) -> int:
        """Updates handed to lanes and unfinished (parked ones wait in the database, not in the window)."""
        return sum(self._in_lane.values())

    async def _wait_for_progress(self, timeout: float) -> None:
        """Until an update is finished (since the last getUpdates) or `timeout` passed."""
        if not self._moved.is_set():
            await wait_event(self._moved, timeout)

    async def _take(self, batch: list[Any]) -> int:
        fresh: list[tuple[int, dict[str, Any]]] = []
        for raw in batch:
            update_id = raw.get("update_id") if isinstance(raw, dict) else None
            if not isinstance(update_id, int) or isinstance(update_id, bool):
                log.error("the Bot API sent an update without an id; it is ignored")
                continue
            if update_id in self._active or update_id in self._done:
                continue
            fresh.append((update_id, raw))
            self._highest = update_id if self._highest is None else max(self._highest, update_id)
        seen = await self._seen([update_id for update_id, _ in fresh])  # one query for the batch
        to_park: list[tuple[Hashable, int, dict[str, Any], Update]] = []
        parking: set[Hashable] = set()
        for update_id, raw in fresh:
            if update_id in seen:
                self._finish(update_id)
                continue
            try:
                update = Update.model_validate(raw, context={"bot": self.bot})
            except Exception as exc:
                # One update nobody can read must not block everyone behind it: skip it, say which.
                log.error("update %s could not be read and is skipped: %s", update_id,
                          _one_line(str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
                await self._mark(update_id)
                self._finish(update_id)
                continue
            lane = lane_of(update)
            # Behind the lane's parked updates too: a user's updates are handled in their order.
            if self._in_lane[lane] >= self.tuning.max_updates_per_lane or lane in parking or lane in self._parked:
                parking.add(lane)
                self._active.add(update_id)
                to_park.append((lane, update_id, raw, update))
                continue
            self._start(update_id, raw, update)
        if to_park:
            await self._park(to_park)
        offset = self.offset()
        if offset is not None:
            self._done = {u for u in self._done if u >= offset}
        return len(fresh)

    def _start(self, update_id: int, raw: dict[str, Any], update: Update) -> None:
        self._active.add(update_id)
        self._raw[update_id] = raw
        self._taken_at[update_id] = time.monotonic()
        lane = self._lane_of[update_id] = lane_of(update)
        self._in_lane[lane] += 1
        self._lanes.submit(lane, partial(self._handle, update_id, update))

    async def _park(self, updates: list[tuple[Hashable, int, dict[str, Any], Update]]) -> None:
        """Updates of busy lanes go into the database (one transaction) and wait for their lane to have room; if
        they cannot be kept, they join their lanes at once (the offset then waits for them)."""
        try:
            await self.store.updates.keep_many([(update_id, raw) for _, update_id, raw, _ in updates])
            kept = True
        except StorageUnavailable as exc:
            report_storage_trouble(exc, log)
            kept = False
        except Exception:
            log.exception("could not park %d updates; they are handled in turn", len(updates))
            kept = False
        for lane, update_id, raw, update in updates:
            if kept:
                self._kept.add(update_id)
                self._parked.setdefault(lane, deque()).append((update_id, update))
            else:
                self._active.discard(update_id)
                self._start(update_id, raw, update)
        for lane in {lane for lane, *_ in updates}:
            self._unpark(lane)  # the lane may have drained while the database was written

    def _unpark(self, lane: Hashable) -> None:
        """The next parked update of a lane that has room again joins it (its raw JSON is in the database)."""
        parked = self._parked.get(lane)
        while parked and self._in_lane[lane] < self.tuning.max_updates_per_lane:
            update_id, update = parked.popleft()
            self._taken_at[update_id] = time.monotonic()
            self._lane_of[update_id] = lane
            self._in_lane[lane] += 1
            self._lanes.submit(lane, partial(self._handle, update_id, update))
        if not parked:
            self._parked.pop(lane, None)

    async def _keep_slow(self) -> None:
        """Updates unfinished for keep_after_s go into the database's keeping; the offset may then pass them."""
        now = time.monotonic()
        slow = sorted(u for u in self._active - self._kept if now - self._taken_at[u] >= self.tuning.keep_after_s)
        for update_id in slow:
            try:
                await self.store.updates.keep(update_id, self._raw[update_id])
            except StorageUnavailable as exc:
                report_storage_trouble(exc, log)
                return
            except Exception:
                log.exception("could not keep update %s; the offset waits for it", update_id)
                return
            self._kept.add(update_id)

    async def _resume_kept(self) -> None:
        """At start: the updates an earlier run kept (Telegram may have forgotten them) are handled first."""
        try:
            kept = await self.store.updates.kept()
        except Exception:
            log.exception("could not read the kept updates; they wait for the next start")
            return
        for update_id, raw in kept:
            self._highest = update_id if self._highest is None else max(self._highest, update_id)
            try:
                update = Update.model_validate(raw, context={"bot": self.bot})
            except Exception:
                await self._mark(update_id)
                continue
            lane = lane_of(update)
            if self._in_lane[lane] >= self.tuning.max_updates_per_lane:  # already in the database: park it
                self._active.add(update_id)
                self._parked.setdefault(lane, deque()).append((update_id, update))
            else:
                self._start(update_id, raw, update)
            self._kept.add(update_id)
        if kept:
            log.info("%d unfinished updates kept by the last run are handled first", len(kept))

    async def _seen(self, update_ids: list[int]) -> set[int]:
        if not update_ids:
            return set()
        try:
            return await self.store.updates.seen_among(update_ids)
        except Exception:
            log.exception("could not look up updates %s…%s; handling them", update_ids[0], update_ids[-1])
            return set()

    async def _handle(self, update_id: int, update: Update) -> None:
        try:
            await self.dp.feed_update(self.bot, update)
        except asyncio.CancelledError:
            raise  # stopping: unfinished, so Telegram hands it to us again after the restart
        except Exception:
            # The error handler has answered the user; a poisoned update must not come back forever.
            log.exception("update %s was not handled", update_id)
        await self._mark(update_id)
        self._finish(update_id)

    async def _mark(self, update_id: int) -> None:
        try:
            await self.store.updates.mark(update_id)
        except StorageUnavailable as exc:
            # Nothing can be saved: the user was told to try again later, and the offset moves on anyway, so
            # a restart does not answer the same update again.
            report_storage_trouble(exc, log)
        except Exception:
            log.exception("could not record update %s as handled", update_id)

    def _finish(self, update_id: int) -> None:
        lane = self._lane_of.pop(update_id, None)
        if lane is not None:
            self._in_lane[lane] -= 1
            if self._in_lane[lane] <= 0:
                del self._in_lane[lane]
            self._unpark(lane)
        self._active.discard(update_id)
        self._kept.discard(update_id)
        self._raw.pop(update_id, None)
        self._taken_at.pop(update_id, None)
        self._done.add(update_id)
        self._moved.set()
