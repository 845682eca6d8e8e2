"""The outbox: a job's durable delivery records (what the handler noted, the progress and status messages, each
Telegram call of its result) and the result's delivery, retried with backoff until sent or refused for good."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramBadRequest,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNotFound,
    TelegramRetryAfter,
)

from bot.config import BotTuning
from bot.leadership import LeadLost
from bot.polling import backoff, describe_problem
from bot.texts import Texts
from storage import Delivery, DeliveryKind, DeliveryState, Job, Note, Storage, StorageUnavailable
from storage.logs import report_storage_trouble

log = logging.getLogger(__name__)

# The records of one job, by what they are about (storage.records.DeliveryKind):
REQUEST = DeliveryKind.REQUEST  # what the handler noted when the user asked: language, the message to reply to
PROGRESS = DeliveryKind.PROGRESS  # a training's one progress message: pending (being sent), live (edited), final
STATUS = DeliveryKind.STATUS  # a drawing's "Drawing…" message, deleted once the result is in the chat
RESULT = DeliveryKind.RESULT  # the Telegram calls of the result done so far: sending, then sent or failed
# What a result record's state can be once nothing more will be sent.
SETTLED_STATES = {DeliveryState.SENT, DeliveryState.FAILED}

Fence = Callable[[], Awaitable[None]]


# --- what a request notes with its job (storage's lifecycle writes them in the job's transaction) ----------
def training_notes(lang: str) -> list[Note]:
    """The follower may see the job's first events while the /train handler is still sending: it must neither
    start a second progress message (the pending one is coming) nor speak the wrong language."""
    return [Note(REQUEST, DeliveryState.NOTED, {"lang": lang}), Note(PROGRESS, DeliveryState.PENDING, {"lang": lang})]


def drawing_notes(lang: str, reply_to: int | None) -> list[Note]:
    """The language of the result and the message it answers (in a group: the /draw itself)."""
    return [Note(REQUEST, DeliveryState.NOTED, {"lang": lang, "reply_to": reply_to})]


class Outbox:
    """The one writer of delivery records: handlers note what the follower will need, the follower delivers."""

    def __init__(self, store: Storage, tuning: BotTuning) -> None:
        self.store = store
        self.tuning = tuning

    # --- what handlers note once their reply is out --------------------------------------------------
    async def status_shown(self, job_id: int, chat_id: int, message_id: int) -> None:
        """The "Drawing…" message, which the result replaces."""
        await self.store.deliveries.save(job_id, STATUS, chat_id=chat_id, message_id=message_id,
                                         state=DeliveryState.SENT)

    async def progress_shown(self, job_id: int, chat_id: int, message_id: int, text: str, lang: str,
                             final: bool = False) -> None:
        """The progress message as Telegram shows it now; the follower edits it in place, also after a restart."""
        await self.store.deliveries.save(job_id, PROGRESS, chat_id=chat_id, message_id=message_id,
                                         state=DeliveryState.FINAL if final else DeliveryState.LIVE,
                                         data={"text": text, "lang": lang})

    # --- what the follower reads back ----------------------------------------------------------------
    async def request(self, job_id: int) -> dict[str, Any]:
        request = await self.store.deliveries.get(job_id, REQUEST)
        return request.data if request else {}

    async def texts(self, job_id: int) -> Texts:
        return Texts((await self.request(job_id)).get("lang", "en"))

    async def progress(self, job_id: int) -> Delivery | None:
        return await self.store.deliveries.get(job_id, PROGRESS)

    async def status_message(self, job_id: int) -> int | None:
        status = await self.store.deliveries.get(job_id, STATUS)
        return status.message_id if status is not None else None

    # --- delivering a result -------------------------------------------------------------------------
    async def deliver(self, job: Job, compose: Callable[[Job, ResultSteps], Awaitable[None]], fence: Fence) -> None:
        """Send the job's result, trying again after 5xx, network trouble and 429 until it is sent; a permanent
        refusal (blocked by the user, chat gone, unreadable text) is recorded once, and never retried."""
        steps = await ResultSteps.load(self.store, job, fence)
        if steps is None:
            return  # delivered (or given up) before
        failures = unexpected = 0
        migrated = False
        while True:
            try:
                await compose(job, steps)
                await steps.finish()
                return
            except (asyncio.CancelledError, LeadLost):
                raise
            except TelegramMigrateToChat as exc:
                # The group became a supergroup: what it is owed follows it there (storage/lifecycle.py), once.
                if migrated:
                    await self._give_up(job, steps, exc)
                    return
                migrated = True
                log.info("chat %s became %s; the result of job %s follows it", job.chat_id, exc.migrate_to_chat_id,
                         job.id)
                await self.store.lifecycle.move_chat(int(job.chat_id or 0), int(exc.migrate_to_chat_id))
                job = await self.store.jobs.get(job.id) or job
                continue
            except Exception as exc:
                transient = _transient(exc)
                if transient is None:
                    unexpected += 1
                    log.exception("delivering the result of job %s failed unexpectedly", job.id)
                    transient = unexpected < self.tuning.unexpected_error_attempts
                if not transient:
                    await self._give_up(job, steps, exc)
                    return
                failures += 1
                wait = backoff(failures, self.tuning.delivery_retry_s, self.tuning.delivery_max_wait_s)
                if isinstance(exc, TelegramRetryAfter):
                    wait = max(wait, float(exc.retry_after))
                if isinstance(exc, StorageUnavailable):
                    report_storage_trouble(exc, log)
                else:
                    log.warning("the result of job %s did not reach chat %s (%s); trying again in %.1f s",
                                job.id, job.chat_id, describe_problem(exc)[1], wait)
                await asyncio.sleep(wait)

    async def _give_up(self, job: Job, steps: ResultSteps, exc: BaseException) -> None:
        log.warning("the result of job %s cannot be delivered to chat %s (%s); recorded as undeliverable",
                    job.id, job.chat_id, describe_problem(exc)[1])
        while True:
            try:
                await steps.give_up(describe_problem(exc)[1])
                return
            except StorageUnavailable as trouble:
                report_storage_trouble(trouble, log)
                await asyncio.sleep(max(1.0, self.tuning.delivery_retry_s))


def _transient(exc: BaseException) -> bool | None:
    """True: worth another try (5xx, network, 429, a garbled answer, storage trouble). False: Telegram refuses this
    delivery for good (403 blocked, 400 chat not found / can't parse entities, 404, too large). None: unknown."""
    if isinstance(exc, TelegramEntityTooLarge | TelegramForbiddenError | TelegramBadRequest | TelegramNotFound):
        return False
    if isinstance(exc, TelegramAPIError | ClientDecodeError | TimeoutError | OSError):
        return True
    return None


class ResultSteps:
    """The Telegram calls that deliver one result, each recorded the moment it succeeds: a bot restarted in the
    middle of a delivery repeats none of them, and a retry skips what already went out (kept in memory too, for
    when the record itself cannot be written). Telegram has no idempotency keys, so a crash between a call's
    answer and this record is the one window left; it is a few milliseconds wide."""

    def __init__(self, store: Storage, job: Job, done: list[str], message_id: int | None, fence: Fence) -> None:
        self.store = store
        self.job = job
        self.done = done
        self.message_id = message_id
        self.fence = fence

    @classmethod
    async def load(cls, store: Storage, job: Job, fence: Fence) -> ResultSteps | None:
        saved = await store.deliveries.get(job.id, RESULT)
        if saved is not None and saved.state in SETTLED_STATES:
            return None
        done = list(saved.data.get("steps", [])) if saved else []
        return cls(store, job, done, saved.message_id if saved else None, fence)

    async def run(self, name: str, call: Callable[[], Awaitable[int | None]]) -> None:
        if name in self.done:
            return
        await self.fence()  # a bot that lost the lead sends nothing more
        message_id = await call()
        self.done.append(name)
        self.message_id = self.message_id or message_id
        await self._save(DeliveryState.SENDING)

    async def finish(self) -> None:
        await self._save(DeliveryState.SENT)

    async def give_up(self, reason: str) -> None:
        await self._save(DeliveryState.FAILED, reason)

    async def _save(self, state: DeliveryState, error: str | None = None) -> None:
        data: dict[str, Any] = {"steps": self.done}
        if error is not None:
            data["error"] = error
        await self.store.deliveries.save(self.job.id, RESULT, chat_id=int(self.job.chat_id or 0),
                                         message_id=self.message_id, state=state, data=data)
