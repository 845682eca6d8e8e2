"""The durable outbox: follows the job event feed and tells users — progress edited in place, every result retried
until it is delivered (exactly once) or recorded as undeliverable; chats served in parallel, each in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from aiogram import Bot
from aiogram.enums import ChatAction
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
from aiogram.types import BufferedInputFile, ReplyParameters
from aiogram.utils.media_group import MediaGroupBuilder

from bot.config import BotTuning
from bot.formatting import escape
from bot.keyboards import draw_keyboard
from bot.lanes import Lanes
from bot.leadership import Leadership, LeadLost
from bot.polling import backoff, describe_problem
from bot.texts import Texts
from storage import (
    DrawPayload,
    DrawResult,
    Job,
    JobEvent,
    NotFound,
    PathEscape,
    Storage,
    StorageUnavailable,
    TrainResult,
)
from storage.logs import report_storage_trouble

log = logging.getLogger(__name__)

# The feed position below which every event is handled: every result there is delivered or recorded as
# undeliverable. Events past it may be handled already (other chats); a restart reads them again and skips those.
CURSOR = "bot.events"
FINAL_EVENTS = {"done", "failed", "cancelled"}
# What a delivery record's state can be once nothing more will be sent.
SETTLED_STATES = {"sent", "failed"}
CAPTION_LIMIT = 1024
ALBUM_LIMIT = 10


def progress_bar(fraction: float, width: int = 12) -> str:
    filled = max(0, min(width, round(fraction * width)))
    return "█" * filled + "░" * (width - filled)


def format_eta(seconds: float | None, t: Texts) -> str:
    if seconds is None or seconds < 0:
        return ""
    if seconds < 60:
        return t("eta_seconds", n=max(1, round(seconds)))
    return t("eta_minutes", n=round(seconds / 60))


def progress_text(job: Job, t: Texts, position: int | None = None) -> str:
    """The one progress message of a training, as it should read now."""
    progress = job.progress
    if job.status == "queued" or progress is None:
        return t("progress_queued", position=position or 0) if position else t("progress_next")
    stage = progress.stage
    eta = format_eta(progress.eta_s, t)
    return t(
        f"progress_{stage}" if stage in {"class_images", "training", "samples"} else "progress_training",
        bar=progress_bar(progress.fraction), percent=round(progress.fraction * 100), step=progress.step,
        total=progress.total, eta=f" · {eta}" if eta else "",
    )


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class _Live:
    """A progress message being edited; `last_text` is what Telegram already shows."""

    chat_id: int
    message_id: int
    lang: str
    last_text: str
    last_edit: float = 0.0
    pending: str | None = None
    task: asyncio.Task[None] | None = None


class Deliverer:
    def __init__(self, bot: Bot, store: Storage, tuning: BotTuning, leadership: Leadership | None = None) -> None:
        self.bot = bot
        self.store = store
        self.tuning = tuning
        self.leadership = leadership
        self._live: dict[int, _Live] = {}
        self._drawing: dict[int, int] = {}  # draw job id → chat id, for the "uploading photo" action
        self._lanes = Lanes("deliveries")
        self._pending: set[int] = set()  # feed events handed to a chat's lane and not finished yet
        self._read = 0  # the last feed event read
        self._saved = 0  # the cursor as stored
        self._cursor_lock = asyncio.Lock()
        # A progress message still "pending" from before this start belongs to a handler that died mid-way.
        self.started_at = time.time()

    # --- the loop ---------------------------------------------------------------------------------
    async def run(self) -> None:
        self._read = self._saved = await self.store.cursors.get(CURSOR)
        ticker = asyncio.get_running_loop().create_task(self._chat_actions())
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
            for live in self._live.values():
                if live.task is not None:
                    live.task.cancel()

    async def _follow(self) -> None:
        async for event in self.store.jobs.follow(self._read, poll_s=self.tuning.feed_poll_s):
            job = await self.store.jobs.get(event.job_id)
            if job is not None and job.chat_id is not None and job.kind in {"train", "draw"}:
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
        if job is None or job.chat_id is None or job.kind not in {"train", "draw"}:
            return
        if event.kind in FINAL_EVENTS:
            self._drawing.pop(job.id, None)
            await self._deliver(job)
            return
        if job.status.finished:
            return  # an old event replayed after a restart; the final one follows
        if job.kind == "draw":
            if job.id not in self._drawing:
                self._drawing[job.id] = job.chat_id
                await self._chat_action(job.chat_id)
            return
        try:
            await self._show_progress(job)
        except (TelegramAPIError, ClientDecodeError) as exc:  # progress is best effort; the next report tries again
            log.warning("progress of job %s not shown: %s", job.id, describe_problem(exc)[1])

    # --- the outbox ---------------------------------------------------------------------------------
    async def _deliver(self, job: Job) -> None:
        """Send the job's result, trying again after 5xx, network trouble and 429 until it is sent; a permanent
        refusal (blocked by the user, chat gone, unreadable text) is recorded once, and never retried."""
        steps = await _ResultSteps.load(self.store, job, self._fence)
        if steps is None:
            return  # delivered (or given up) before
        failures = unexpected = 0
        while True:
            try:
                if job.kind == "train":
                    await self._finish_training(job, steps)
                else:
                    await self._finish_drawing(job, steps)
                await steps.finish()
                return
            except (asyncio.CancelledError, LeadLost):
                raise
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

    async def _give_up(self, job: Job, steps: _ResultSteps, exc: BaseException) -> None:
        log.warning("the result of job %s cannot be delivered to chat %s (%s); recorded as undeliverable",
                    job.id, job.chat_id, describe_problem(exc)[1])
        while True:
            try:
                await steps.give_up(describe_problem(exc)[1])
                return
            except StorageUnavailable as trouble:
                report_storage_trouble(trouble, log)
                await asyncio.sleep(max(1.0, self.tuning.delivery_retry_s))

    async def _fence(self) -> None:
        if self.leadership is not None:
            await self.leadership.fence()

    # --- helpers ----------------------------------------------------------------------------------
    async def _request(self, job: Job) -> dict[str, Any]:
        """What the handler noted when the user asked: language, the message to reply to."""
        request = await self.store.deliveries.get(job.id, "request")
        return request.data if request else {}

    async def _texts(self, job: Job) -> Texts:
        return Texts((await self._request(job)).get("lang", "en"))

    def _reply(self, data: dict[str, Any]) -> ReplyParameters | None:
        reply_to = data.get("reply_to")
        if reply_to is None:
            return None
        return ReplyParameters(message_id=int(reply_to), allow_sending_without_reply=True)

    async def _blob(self, key: str) -> tuple[str, bytes] | None:
        """(key, bytes) of a result's file, or None when it is gone (retention) or the key is not one of ours."""
        try:
            return key, await self.store.blobs.get(key)
        except PathEscape:
            log.error("a job result names no blob key: %s", key)
        except NotFound:
            pass
        return None

    async def _blobs(self, keys: list[str]) -> list[tuple[str, bytes]]:
        found = [await self._blob(k) for k in keys]
        return [f for f in found if f is not None]

    async def _chat_action(self, chat_id: int) -> None:
        with contextlib.suppress(TelegramAPIError):
            await self.bot.send_chat_action(chat_id, ChatAction.UPLOAD_PHOTO)

    async def _chat_actions(self) -> None:
        # Telegram shows a chat action for about 5 s; repeating it keeps "sending photo…" up while we wait.
        while True:
            await asyncio.sleep(self.tuning.chat_action_every_s)
            for chat_id in set(self._drawing.values()):
                await self._chat_action(chat_id)

    # --- training progress ------------------------------------------------------------------------
    async def _live_message(self, job: Job, t: Texts) -> _Live | None:
        live = self._live.get(job.id)
        if live is not None:
            return live
        saved = await self.store.deliveries.get(job.id, "progress")
        if saved is not None and saved.message_id is not None:
            live = _Live(saved.chat_id, saved.message_id, t.language, saved.data.get("text", ""))
        elif saved is not None and saved.state == "pending" and saved.updated_at >= self.started_at:
            return None  # the /train handler of this process is still sending the message this will edit
        else:
            # The /train reply was never recorded (a crash right after enqueue): start a fresh message.
            text = progress_text(job, t)
            message = await self.bot.send_message(job.chat_id, text)  # type: ignore[arg-type]
            live = _Live(message.chat.id, message.message_id, t.language, text, last_edit=time.monotonic())
            await self._save_live(job.id, live)
        self._live[job.id] = live
        return live

    async def _save_live(self, job_id: int, live: _Live) -> None:
        await self.store.deliveries.save(
            job_id, "progress", chat_id=live.chat_id, message_id=live.message_id, state="live",
            data={"text": live.last_text, "lang": live.lang},
        )

    async def _show_progress(self, job: Job) -> None:
        t = await self._texts(job)
        live = await self._live_message(job, t)
        if live is None:
            return
        position = await self.store.jobs.queue_position(job.id) if job.status == "queued" else None
        live.pending = progress_text(job, t, position)
        if live.task is None or live.task.done():
            live.task = asyncio.get_running_loop().create_task(self._flush_later(job.id, live))

    async def _flush_later(self, job_id: int, live: _Live) -> None:
        wait = live.last_edit + self.tuning.progress_every_s - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        try:
            await self._edit(job_id, live)
        except (TelegramAPIError, ClientDecodeError, StorageUnavailable) as exc:  # best effort: the next one tries
            log.warning("progress of job %s not shown: %s", job_id, describe_problem(exc)[1])

    async def _edit(self, job_id: int, live: _Live) -> None:
        text, live.pending = live.pending, None
        # Telegram answers "message is not modified" to an edit that changes nothing, so none is sent.
        if text is None or text == live.last_text:
            return
        try:
            await self.bot.edit_message_text(text=text, chat_id=live.chat_id, message_id=live.message_id)
        except TelegramBadRequest as exc:
            log.warning("progress edit refused: %s", exc.message)
        live.last_text, live.last_edit = text, time.monotonic()
        await self._save_live(job_id, live)

    async def _final_progress(self, job: Job, text: str) -> None:
        t = await self._texts(job)
        live = self._live.pop(job.id, None)
        if live is None:
            saved = await self.store.deliveries.get(job.id, "progress")
            if saved is None or saved.message_id is None or saved.state == "final":
                return
            live = _Live(saved.chat_id, saved.message_id, t.language, saved.data.get("text", ""))
        if live.task is not None:
            live.task.cancel()
        wait = live.last_edit + self.tuning.progress_every_s - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        live.pending = text
        await self._edit(job.id, live)
        await self.store.deliveries.save(
            job.id, "progress", chat_id=live.chat_id, message_id=live.message_id, state="final",
            data={"text": live.last_text, "lang": live.lang},
        )

    # --- results ----------------------------------------------------------------------------------
    async def _finish_training(self, job: Job, steps: _ResultSteps) -> None:
        t = await self._texts(job)
        chat_id = int(job.chat_id)  # type: ignore[arg-type]
        if job.status == "done" and isinstance(job.result, TrainResult):
            result = job.result
            token, class_word = result.token, result.class_word
            minutes = max(1, round(result.seconds / 60))
            await steps.run("progress", lambda: self._final_progress(job, t("progress_done", minutes=minutes)))
            samples = await self._blobs(result.sample_paths)
            caption = t("train_ready_caption", name=escape(class_word), token=escape(token))
            await self._send_images(steps, chat_id, samples, caption, None, None, f"sample-{job.id}")
            trigger = escape(f"{token} {class_word}")
            await steps.run("ready", lambda: self._text(chat_id, t("train_ready", trigger=trigger), None))
            card = await self._blob(result.report_card_path)
            if card is not None:
                key = "report_card_warning" if result.drift_warning else "report_card"
                caption = t(key, drift=f"{result.class_drift:.3f}", name=escape(class_word))
                file = BufferedInputFile(card[1], filename=f"report-{job.id}.png")
                await steps.run("report_card", lambda: self._photo(chat_id, file, caption, None, None))
        elif job.status == "cancelled":
            await steps.run("progress", lambda: self._final_progress(job, t("progress_cancelled")))
        else:
            await steps.run("progress", lambda: self._final_progress(job, t("progress_failed")))
            reason = t.failure(job.error, job.error_params)
            await steps.run("failed", lambda: self._text(chat_id, t("train_failed", reason=reason), None))

    async def _finish_drawing(self, job: Job, steps: _ResultSteps) -> None:
        request = await self._request(job)
        t = Texts(request.get("lang", "en"))
        chat_id = int(job.chat_id)  # type: ignore[arg-type]
        reply = self._reply(request)
        if job.status == "done" and isinstance(job.result, DrawResult) and isinstance(job.payload, DrawPayload):
            result = job.result
            images = await self._blobs(result.images)
            seeds = result.seeds
            prompt = job.payload.prompt
            seeds_text = escape(", ".join(f"#{i + 1}: {s}" for i, s in enumerate(seeds)))
            note = t("draw_prompt_cut", tokens=result.prompt_tokens) if result.prompt_truncated else ""
            room = CAPTION_LIMIT - len(t("draw_caption", prompt="", seeds=seeds_text, note=note)) - 40
            caption = t("draw_caption", prompt=escape(clip(prompt, room)), seeds=seeds_text, note=note)
            if images:
                await self._send_images(steps, chat_id, images, caption, reply, draw_keyboard(job.id, len(images), t),
                                        f"draw-{job.id}", more_text=t("draw_more"))
            else:
                text = t("draw_failed", reason=t("unknown_reason"))
                await steps.run("failed", lambda: self._text(chat_id, text, reply))
        elif job.status == "cancelled":
            await steps.run("cancelled", lambda: self._text(chat_id, t("draw_cancelled"), reply))
        else:
            text = t("draw_failed", reason=t.failure(job.error, job.error_params))
            await steps.run("failed", lambda: self._text(chat_id, text, reply))
        # "Drawing…" goes away only now that the result (or the reason there is none) is in the chat.
        status = await self.store.deliveries.get(job.id, "status")
        if status is not None and status.message_id is not None:
            await steps.run("status", lambda: self._delete(chat_id, status.message_id))  # type: ignore[arg-type]

    async def _text(self, chat_id: int, text: str, reply: ReplyParameters | None, keyboard: Any = None) -> int:
        return (await self.bot.send_message(chat_id, text, reply_parameters=reply, reply_markup=keyboard)).message_id

    async def _delete(self, chat_id: int, message_id: int) -> None:
        with contextlib.suppress(TelegramBadRequest):  # already gone (deleted by the user, or too old to delete)
            await self.bot.delete_message(chat_id, message_id)

    async def _send_images(
        self, steps: _ResultSteps, chat_id: int, blobs: list[tuple[str, bytes]], caption: str,
        reply: ReplyParameters | None, keyboard: Any, name: str, more_text: str | None = None,
    ) -> None:
        """One photo with its caption and buttons, or albums of 2–10 (buttons cannot sit on an album)."""
        files = [BufferedInputFile(data, filename=f"{name}-{i + 1}{Path(key).suffix or '.png'}")
                 for i, (key, data) in enumerate(blobs)]
        if not files:
            return
        if len(files) == 1:
            await steps.run("photo", lambda: self._photo(chat_id, files[0], caption, reply, keyboard))
            return
        chunks = [files[i:i + ALBUM_LIMIT] for i in range(0, len(files), ALBUM_LIMIT)]
        if len(chunks) > 1 and len(chunks[-1]) == 1:  # an album needs at least two items
            chunks[-2], chunks[-1] = chunks[-2][:-1], chunks[-2][-1:] + chunks[-1]
        for index, chunk in enumerate(chunks):
            await steps.run(f"album{index}", lambda c=chunk, i=index: self._album(  # type: ignore[misc]
                chat_id, c, caption if i == 0 else None, reply))
        if keyboard is not None and more_text:
            await steps.run("buttons", lambda: self._text(chat_id, more_text, None, keyboard))

    async def _photo(self, chat_id: int, file: BufferedInputFile, caption: str, reply: ReplyParameters | None,
                     keyboard: Any) -> int:
        message = await self.bot.send_photo(chat_id, file, caption=caption, reply_markup=keyboard,
                                            reply_parameters=reply)
        return message.message_id

    async def _album(self, chat_id: int, files: list[BufferedInputFile], caption: str | None,
                     reply: ReplyParameters | None) -> int:
        builder = MediaGroupBuilder(caption=caption)
        for file in files:
            builder.add_photo(media=file)
        sent = await self.bot.send_media_group(chat_id, media=builder.build(), reply_parameters=reply)
        return sent[0].message_id


def _transient(exc: BaseException) -> bool | None:
    """True: worth another try (5xx, network, 429, a garbled answer, storage trouble). False: Telegram refuses this
    delivery for good (403 blocked, 400 chat not found / can't parse entities, 404, too large). None: unknown."""
    if isinstance(exc, TelegramEntityTooLarge | TelegramForbiddenError | TelegramBadRequest | TelegramNotFound
                  | TelegramMigrateToChat):
        return False
    if isinstance(exc, TelegramAPIError | ClientDecodeError | TimeoutError | OSError):
        return True
    return None


class _ResultSteps:
    """The Telegram calls that deliver one result, each recorded the moment it succeeds: a bot restarted in the
    middle of a delivery repeats none of them, and a retry skips what already went out (kept in memory too, for
    when the record itself cannot be written). Telegram has no idempotency keys, so a crash between a call's
    answer and this record is the one window left; it is a few milliseconds wide."""

    def __init__(self, store: Storage, job: Job, done: list[str], message_id: int | None,
                 fence: Callable[[], Awaitable[None]]) -> None:
        self.store = store
        self.job = job
        self.done = done
        self.message_id = message_id
        self.fence = fence

    @classmethod
    async def load(cls, store: Storage, job: Job, fence: Callable[[], Awaitable[None]]) -> _ResultSteps | None:
        saved = await store.deliveries.get(job.id, "result")
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
        await self._save("sending")

    async def finish(self) -> None:
        await self._save("sent")

    async def give_up(self, reason: str) -> None:
        await self._save("failed", reason)

    async def _save(self, state: str, error: str | None = None) -> None:
        data: dict[str, Any] = {"steps": self.done}
        if error is not None:
            data["error"] = error
        await self.store.deliveries.save(self.job.id, "result", chat_id=int(self.job.chat_id or 0),
                                         message_id=self.message_id, state=state, data=data)
