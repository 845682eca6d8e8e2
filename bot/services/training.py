"""Starting and cancelling trainings: class-word rules, allowances and the train job."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from bot.services import Refusal
from storage import Job, Model, Settings, Storage, TrainPayload

# A class word is what the photos show ("dog", "woman", "teddy bear"); it goes into the class prompt verbatim.
_CLASS_WORD = re.compile(r"^[a-z]{2,20}( [a-z]{2,20})?$")
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
    word = " ".join(raw.lower().split())
    return word if _CLASS_WORD.match(word) else None


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
        if self.settings.daily_trainings <= await self.store.jobs.count_since(user_id, "train", time.time() - DAY_S):
            raise TrainRefused("train_daily_cap", cap=self.settings.daily_trainings)
        photos = await self.store.photos.list(user_id)
        if len(photos) < self.settings.min_photos:
            raise TrainRefused("train_few_photos", have=len(photos), need=self.settings.min_photos)
        model = await self.store.models.create(
            user_id, name=class_word, class_word=class_word, params={}, photo_ids=[p.id for p in photos]
        )
        job = await self.store.jobs.enqueue(
            TrainPayload(model_id=model.id), owner_id=user_id, chat_id=chat_id, model_id=model.id
        )
        await self.store.models.set_job(model.id, job.id)
        if update_id is not None:
            # The job is the update's effect: a redelivered /train must not queue a second one.
            await self.store.updates.mark(update_id)
        position = await self.store.jobs.position(job.id)
        return TrainingStarted(model=model, job=job, position=position, photos=len(photos))

    async def cancel_all(self, user_id: int) -> list[Job]:
        """Cancel the user's queued and running jobs; returns the jobs it touched."""
        cancelled = []
        for job in await self.store.jobs.active_for_owner(user_id):
            cancelled.append(await self.store.jobs.cancel(job.id))
            # A queued training never started: its model would only be clutter in /models.
            if job.kind == "train" and job.model_id is not None and job.status == "queued":
                await self.store.models.delete(job.model_id)
        return cancelled
