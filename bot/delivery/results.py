"""Composing results: a training's samples, trigger words and report card; a drawing's pictures with their caption
and buttons; the texts for a failure or a cancel — each Telegram call a named step of the outbox."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import BufferedInputFile, ReplyParameters
from aiogram.utils.media_group import MediaGroupBuilder

from bot.delivery.outbox import Outbox, ResultSteps
from bot.delivery.progress import LiveProgress
from bot.formatting import Markup, escape, markup
from bot.keyboards import draw_keyboard
from bot.texts import Texts
from storage import DrawPayload, DrawResult, Job, NotFound, PathEscape, Storage, TrainResult

log = logging.getLogger(__name__)

CAPTION_LIMIT = 1024
ALBUM_LIMIT = 10


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _reply(data: dict[str, Any]) -> ReplyParameters | None:
    reply_to = data.get("reply_to")
    if reply_to is None:
        return None
    return ReplyParameters(message_id=int(reply_to), allow_sending_without_reply=True)


class Results:
    def __init__(self, bot: Bot, store: Storage, outbox: Outbox, progress: LiveProgress) -> None:
        self.bot = bot
        self.store = store
        self.outbox = outbox
        self.progress = progress

    async def compose(self, job: Job, steps: ResultSteps) -> None:
        """Send what the finished job owes its chat; a step already done (before a retry or restart) is skipped."""
        if job.kind == "train":
            await self._training(job, steps)
        else:
            await self._drawing(job, steps)

    async def _training(self, job: Job, steps: ResultSteps) -> None:
        t = await self.outbox.texts(job.id)
        chat_id = int(job.chat_id)  # type: ignore[arg-type]
        if job.status == "done" and isinstance(job.result, TrainResult):
            result = job.result
            token, class_word = result.token, result.class_word
            minutes = max(1, round(result.seconds / 60))
            await steps.run("progress", lambda: self.progress.finish(job, t("progress_done", minutes=minutes)))
            samples = await self._blobs(result.sample_keys)
            caption = t("train_ready_caption", name=escape(class_word), token=escape(token))
            await self._send_images(steps, chat_id, samples, caption, None, None, f"sample-{job.id}")
            trigger = escape(f"{token} {class_word}")
            await steps.run("ready", lambda: self._text(chat_id, t("train_ready", trigger=trigger), None))
            card = await self._blob(result.report_card_key)
            if card is not None:
                key = "report_card_warning" if result.drift_warning else "report_card"
                caption = t(key, drift=f"{result.class_drift:.3f}", name=escape(class_word))
                file = BufferedInputFile(card[1], filename=f"report-{job.id}.png")
                await steps.run("report_card", lambda: self._photo(chat_id, file, caption, None, None))
        elif job.status == "cancelled":
            # (a cancelled training's model was deleted with the job: storage/lifecycle.py)
            await steps.run("progress", lambda: self.progress.finish(job, t("progress_cancelled")))
        else:
            await steps.run("progress", lambda: self.progress.finish(job, t("progress_failed")))
            reason = t.failure(job.error, job.error_params)
            await steps.run("failed", lambda: self._text(chat_id, t("train_failed", reason=reason), None))

    async def _drawing(self, job: Job, steps: ResultSteps) -> None:
        request = await self.outbox.request(job.id)
        t = Texts(request.get("lang", "en"))
        chat_id = int(job.chat_id)  # type: ignore[arg-type]
        reply = _reply(request)
        if job.status == "done" and not await self._still_allowed(job):
            # Drawn through a share or link revoked meanwhile (or with a model deleted meanwhile): the pictures
            # never reach those who lost the access.
            await steps.run("revoked", lambda: self._text(chat_id, t("draw_access_ended"), reply))
        elif job.status == "done" and isinstance(job.result, DrawResult) and isinstance(job.payload, DrawPayload):
            result = job.result
            images = await self._blobs(result.images)
            seeds = result.seeds
            prompt = job.payload.prompt
            seeds_text = escape(", ".join(f"#{i + 1}: {s}" for i, s in enumerate(seeds)))
            note = t("draw_prompt_cut", tokens=result.prompt_tokens) if result.prompt_truncated else ""
            if result.negative_truncated:  # told like the prompt: what the model never read is not silently lost
                note = markup("{prompt}{negative}", prompt=note, negative=t("draw_negative_cut"))
            if result.steps:  # what was really drawn (the user's settings or flags), so it can be drawn again
                note = Markup(note + t("draw_details", steps=result.steps, sampler=result.sampler or "default",
                                       width=result.width, height=result.height))
            room = CAPTION_LIMIT - len(t("draw_caption", prompt="", seeds=seeds_text, note=note, count=len(seeds))) - 40
            caption = t("draw_caption", prompt=escape(clip(prompt, room)), seeds=seeds_text, note=note,
                        count=len(seeds))
            if images and job.payload.upscale:
                # A bigger picture is wanted as it is: a file, which Telegram neither shrinks nor recompresses.
                key, data = images[0]
                file = BufferedInputFile(data, filename=f"kabina-{job.id}-{result.width}x{result.height}.png")
                upscaled = t("upscale_caption", width=result.width, height=result.height)
                await steps.run("document", lambda: self._document(chat_id, file, upscaled, reply))
            elif images:
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
        status = await self.outbox.status_message(job.id)
        if status is not None:
            await steps.run("status", lambda: self._delete(chat_id, status))

    async def _still_allowed(self, job: Job) -> bool:
        """Whether the one who asked may still draw with the job's model in its chat (checked at delivery)."""
        if job.model_id is None or job.owner_id is None:
            return True
        usable = await self.store.models.usable_by(job.owner_id, int(job.chat_id))  # type: ignore[arg-type]
        return any(model.id == job.model_id for model in usable)

    # --- files of a result ------------------------------------------------------------------------
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

    # --- Telegram calls ---------------------------------------------------------------------------
    async def _send_images(
        self, steps: ResultSteps, chat_id: int, blobs: list[tuple[str, bytes]], caption: str,
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

    async def _text(self, chat_id: int, text: str, reply: ReplyParameters | None, keyboard: Any = None) -> int:
        return (await self.bot.send_message(chat_id, text, reply_parameters=reply, reply_markup=keyboard)).message_id

    async def _delete(self, chat_id: int, message_id: int) -> None:
        with contextlib.suppress(TelegramBadRequest):  # already gone (deleted by the user, or too old to delete)
            await self.bot.delete_message(chat_id, message_id)

    async def _photo(self, chat_id: int, file: BufferedInputFile, caption: str, reply: ReplyParameters | None,
                     keyboard: Any) -> int:
        message = await self.bot.send_photo(chat_id, file, caption=caption, reply_markup=keyboard,
                                            reply_parameters=reply)
        return message.message_id

    async def _document(self, chat_id: int, file: BufferedInputFile, caption: str,
                        reply: ReplyParameters | None) -> int:
        message = await self.bot.send_document(chat_id, file, caption=caption, reply_parameters=reply)
        return message.message_id

    async def _album(self, chat_id: int, files: list[BufferedInputFile], caption: str | None,
                     reply: ReplyParameters | None) -> int:
        builder = MediaGroupBuilder(caption=caption)
        for file in files:
            builder.add_photo(media=file)
        sent = await self.bot.send_media_group(chat_id, media=builder.build(), reply_parameters=reply)
        return sent[0].message_id
