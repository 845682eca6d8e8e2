"""The feed follower: reads the job event feed, serves each chat in its own lane (in order, chats in parallel) and
keeps the feed cursor below every result not yet delivered, so a restarted bot delivers each result exactly once."""

from __future__ import annotations

import asyncio
import logging
from functools import partial

from aiogram import Bot
from aiogram.exceptions import ClientDecodeError, TelegramAPIError

from bot.config import BotTuning
from bot.delivery.outbox import Outbox
from bot.delivery.progress import LiveProgress
from bot.delivery.results import Results
from bot.lanes import Lanes
from bot.leadership import Leadership, LeadLost
from bot.polling import describe_problem
from storage import JobEvent, Storage, StorageUnavailable
from storage.logs import report_storage_trouble

log = logging.getLogger(__name__)

# The feed position below which every event is handled: every result there is delivered or recorded as
# undeliverable. Events past it may be handled already (other chats); a restart reads them again and skips those.
CURSOR = "bot.events"
FINAL_EVENTS = {"done", "failed", "cancelled"}
# The jobs that have a chat to tell.
TOLD_KINDS = {"train", "draw"}


class Deliverer:
    def __init__(self, bot: Bot, store: Storage, tuning: BotTuning, leadership: Leadership | None = None) -> None:
        self.store = store
        self.tuning = tuning
        self.leadership = leadership
        self.outbox = Outbox(store, tuning)
        self.progress = LiveProgress(bot, store, self.outbox, tuning)
        self.results = Results(bot, store, self.outbox, self.progress)
        self._lanes = Lanes("deliveries")
        self._pending: set[int] = set()  # feed events handed to a chat's lane and not finished yet
        self._read = 0  # the last feed event read
        self._saved = 0  # the cursor as stored
        self._cursor_lock = asyncio.Lock()

    async def run(self) -> None:
        self._read = self._saved = await self.store.cursors.get(CURSOR)
        ticker = asyncio.get_running_loop().create_task(self.progress.keep_chat_actions())
        try:
            while True:
                try:
                    await self._follow()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the database hiccuped: read the feed again from where we were
                    if isinstance(exc, StorageUnavailable):
                        report_storage_trouble(exc, log)
                    else:
                        log.exception("reading the job feed failed")
                    await asyncio.sleep(max(self.tuning.feed_poll_s, 1.0))
        finally:
            ticker.cancel()
            await self._lanes.close()
            self.progress.close()

    async def _follow(self) -> None:
        async for event in self.store.jobs.follow(self._read, poll_s=self.tuning.feed_poll_s):
            job = await self.store.jobs.get(event.job_id)
            if job is not None and job.chat_id is not None and job.kind in TOLD_KINDS:
                # Each chat has its own lane: its events in order, while a chat under 429 delays nobody else.
                self._pending.add(event.id)
                self._lanes.submit(job.chat_id, partial(self._in_lane, event))
            self._read = event.id
            await self._advance()

    async def _in_lane(self, event: JobEvent) -> None:
        try:
            await self.handle(event)
        except LeadLost:
            return  # another bot leads now and delivers it: the cursor must not pass it
        except Exception:
            log.exception("job event %s (%s of job %s) was not handled", event.id, event.kind, event.job_id)
            if event.kind in FINAL_EVENTS:
                return  # the result stays owed: the cursor waits below it, and the next start tries again
        self._pending.discard(event.id)
        await self._advance()

    async def _advance(self) -> None:
        """Store the cursor just below the oldest event not yet finished: it never passes an undelivered result."""
        if self.leadership is not None and not self.leadership.ok():
            return  # a bot that may have lost the lead writes nothing
        async with self._cursor_lock:
            low = min(self._pending) - 1 if self._pending else self._read
            if low <= self._saved:
                return
            try:
                await self.store.cursors.set(CURSOR, low)
                self._saved = low
            except StorageUnavailable as exc:
                report_storage_trouble(exc, log)

    async def handle(self, event: JobEvent) -> None:
        job = await self.store.jobs.get(event.job_id)
        if job is None or job.chat_id is None or job.kind not in TOLD_KINDS:
            return
        if event.kind in FINAL_EVENTS:
            self.progress.settled(job.id)
            await self.outbox.deliver(job, self.results.compose, self._fence)
            return
        if job.status.finished:
            return  # an old event replayed after a restart; the final one follows
        if job.kind == "draw":
            await self.progress.drawing(job)
            return
        try:
            await self.progress.show(job)
        except (TelegramAPIError, ClientDecodeError) as exc:  # progress is best effort; the next report tries again
            log.warning("progress of job %s not shown: %s", job.id, describe_problem(exc)[1])

    async def _fence(self) -> None:
        if self.leadership is not None:
            await self.leadership.fence()
