"""Live progress: a training's one progress message edited in place (paced, with its ETA), and the "sending
photo…" chat action kept up while a drawing is under way."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from aiogram import Bot
from aiogram.enums import ChatAction
from aiogram.exceptions import ClientDecodeError, TelegramAPIError, TelegramBadRequest

from bot.config import BotTuning
from bot.delivery.outbox import Outbox
from bot.polling import describe_problem
from bot.texts import Texts
from storage import DeliveryState, Job, Storage, StorageUnavailable

log = logging.getLogger(__name__)


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


class LiveProgress:
    def __init__(self, bot: Bot, store: Storage, outbox: Outbox, tuning: BotTuning) -> None:
        self.bot = bot
        self.store = store
        self.outbox = outbox
        self.tuning = tuning
        self._live: dict[int, _Live] = {}
        self._drawing: dict[int, int] = {}  # draw job id → chat id, for the "uploading photo" action
        # A progress message still "pending" from before this start belongs to a handler that died mid-way.
        self.started_at = time.time()

    # --- drawings: the chat action -----------------------------------------------------------------
    async def drawing(self, job: Job) -> None:
        """A drawing is under way: "sending photo…" shows in its chat until its result is there."""
        if job.id not in self._drawing and job.chat_id is not None:
            self._drawing[job.id] = job.chat_id
            await self._chat_action(job.chat_id)

    def settled(self, job_id: int) -> None:
        self._drawing.pop(job_id, None)

    async def keep_chat_actions(self) -> None:
        # Telegram shows a chat action for about 5 s; repeating it keeps "sending photo…" up while we wait.
        while True:
            await asyncio.sleep(self.tuning.chat_action_every_s)
            for chat_id in set(self._drawing.values()):
                await self._chat_action(chat_id)

    async def _chat_action(self, chat_id: int) -> None:
        with contextlib.suppress(TelegramAPIError):
            await self.bot.send_chat_action(chat_id, ChatAction.UPLOAD_PHOTO)

    # --- trainings: the progress message -----------------------------------------------------------
    async def show(self, job: Job) -> None:
        """The training's progress message reads as the job is now (edits paced to progress_every_s)."""
        t = await self.outbox.texts(job.id)
        live = await self._live_message(job, t)
        if live is None:
            return
        position = await self.store.jobs.queue_position(job.id) if job.status == "queued" else None
        live.pending = progress_text(job, t, position)
        if live.task is None or live.task.done():
            live.task = asyncio.get_running_loop().create_task(self._flush_later(job.id, live))

    async def finish(self, job: Job, text: str) -> None:
        """The last edit of the progress message (done, failed, cancelled); it is never edited again."""
        t = await self.outbox.texts(job.id)
        live = self._live.pop(job.id, None)
        if live is None:
            saved = await self.outbox.progress(job.id)
            if saved is None or saved.message_id is None or saved.state == DeliveryState.FINAL:
                return
            live = _Live(saved.chat_id, saved.message_id, t.language, saved.data.get("text", ""))
        if live.task is not None:
            live.task.cancel()
        wait = live.last_edit + self.tuning.progress_every_s - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        live.pending = text
        await self._edit(job.id, live)
        await self.outbox.progress_shown(job.id, live.chat_id, live.message_id, live.last_text, live.lang, final=True)

    def close(self) -> None:
        for live in self._live.values():
            if live.task is not None:
                live.task.cancel()

    async def _live_message(self, job: Job, t: Texts) -> _Live | None:
        live = self._live.get(job.id)
        if live is not None:
            return live
        saved = await self.outbox.progress(job.id)
        if saved is not None and saved.message_id is not None:
            live = _Live(saved.chat_id, saved.message_id, t.language, saved.data.get("text", ""))
        elif saved is not None and saved.state == DeliveryState.PENDING and saved.updated_at >= self.started_at:
            return None  # the /train handler of this process is still sending the message this will edit
        else:
            # The /train reply was never recorded (a crash right after enqueue): start a fresh message.
            text = progress_text(job, t)
            message = await self.bot.send_message(job.chat_id, text)  # type: ignore[arg-type]
            live = _Live(message.chat.id, message.message_id, t.language, text, last_edit=time.monotonic())
            await self._save(job.id, live)
        self._live[job.id] = live
        return live

    async def _save(self, job_id: int, live: _Live) -> None:
        await self.outbox.progress_shown(job_id, live.chat_id, live.message_id, live.last_text, live.lang)

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
        await self._save(job_id, live)
