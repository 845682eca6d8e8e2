"""Starting and cancelling trainings: class-word rules, allowances and the train job."""

from __future__ import annotations

import time
from dataclasses import dataclass

from bot.services import Refusal
from bot.services.class_words import NEW_CLASS_WORDS, is_vetted, normalise
from storage import Job, Model, Settings, Storage, TrainPayload

DAY_S = 24 * 3600


class TrainRefused(Refusal):
    """/train cannot start now (usage, allowance, busy, cap, too few photos)."""


@dataclass(frozen=True)
class TrainingStarted:
    model: Model
    job: Job
    position: int
    photos: int


def normalise_class_word(raw: str) -> str | None:
    """What the photos show ("dog", "woman", "teddy bear"), as the class prompt uses it."""
    return normalise(raw)


class TrainingService:
    def __init__(self, store: Storage, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    async def start(self, user_id: int, chat_id: int, raw_class: str, update_id: int | None = None) -> TrainingStarted:
        class_word = normalise_class_word(raw_class)
        if class_word is None:
            raise TrainRefused("train_usage")
        if self.settings.allowed_users and user_id not in self.settings.allowed_users:
            raise TrainRefused("train_not_allowed")
        if await self.store.jobs.active_for_owner(user_id, "train"):
            raise TrainRefused("train_busy")
        since = await self.store.admin.allowance_counts_from(user_id, time.time() - DAY_S)  # an admin may reset it
        if self.settings.daily_trainings <= await self.store.jobs.count_since(user_id, "train", since):
            raise TrainRefused("train_daily_cap", cap=self.settings.daily_trainings)
        await self._check_new_class(user_id, class_word)
        photos = await self.store.photos.list(user_id)
        if len(photos) < self.settings.min_photos:
            raise TrainRefused("train_few_photos", have=len(photos), need=self.settings.min_photos)
        model = await self.store.models.create(
            user_id, name=class_word, class_word=class_word, params={}, photo_ids=[p.id for p in photos]
        )
        # One training per user, checked again where the job is made (two /train racing cannot both get one).
        job = await self.store.jobs.enqueue_within(
            TrainPayload(model_id=model.id), owner_id=user_id, limit=1, chat_id=chat_id, model_id=model.id
        )
        if job is None:
            await self.store.models.delete(model.id)
            raise TrainRefused("train_busy")
        await self.store.models.set_job(model.id, job.id)
        if update_id is not None:
            # The job is the update's effect: a redelivered /train must not queue a second one.
            await self.store.updates.mark(update_id)
        position = await self.store.jobs.position(job.id)
        return TrainingStarted(model=model, job=job, position=position, photos=len(photos))

    async def _check_new_class(self, user_id: int, class_word: str) -> None:
        if is_vetted(class_word):
            return
        own = {w for w in await self.store.models.class_words_ever(user_id) if not is_vetted(w)}
        if class_word not in own and len(own) >= NEW_CLASS_WORDS:
            raise TrainRefused("train_new_class_cap", cap=NEW_CLASS_WORDS, word=class_word,
                               used=", ".join(sorted(own)))

    async def cancel_all(self, user_id: int) -> list[Job]:
        """Cancel the user's queued and running jobs; returns the jobs it touched."""
        cancelled = []
        for job in await self.store.jobs.active_for_owner(user_id):
            cancelled.append(await self.store.jobs.cancel(job.id))
            # A queued training never started: its model would only be clutter in /models.
            if job.kind == "train" and job.model_id is not None and job.status == "queued":
                await self.store.models.delete(job.model_id)
        return cancelled
