"""/train <class> and /cancel in the private chat."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message, Update

from bot.delivery import Outbox, progress_text
from bot.services.training import TrainingService, TrainRefused
from bot.texts import Texts


async def train(
    message: Message, command: CommandObject, event_update: Update, t: Texts, training: TrainingService,
    outbox: Outbox,
) -> None:
    try:
        started = await training.start(message.chat.id, message.chat.id, command.args or "", event_update.update_id,
                                       lang=t.language)
    except TrainRefused as refused:
        await message.answer(t(refused.key, **refused.values))
        return
    job_id = started.job.id
    # the request and the pending progress message were noted with the job (storage/lifecycle.py)
    await message.answer(t("train_queued", photos=started.photos, name=started.model.class_word))
    text = progress_text(started.job, t, started.position)
    progress = await message.answer(text)
    # The follower edits this message in place from now on, also after a restart.
    await outbox.progress_shown(job_id, message.chat.id, progress.message_id, text, t.language)


async def train_in_group(message: Message, t: Texts) -> None:
    await message.reply(t("train_private_only"))


async def cancel(message: Message, t: Texts, training: TrainingService) -> None:
    if message.from_user is None:
        return
    cancelled = await training.cancel_all(message.from_user.id)
    await message.reply(t("cancel_done", n=len(cancelled)) if cancelled else t("cancel_nothing"))


def create_router() -> Router:
    # A new router per dispatcher: aiogram attaches a router to one parent only.
    router = Router(name=__name__)
    router.message.register(train, Command("train"), F.chat.type == "private")
    router.message.register(train_in_group, Command("train"))
    router.message.register(cancel, Command("cancel"))
    return router
