"""Starting and cancelling trainings: class-word rules, allowances and the train job."""

from __future__ import annotations

import time
from dataclasses import dataclass

from bot.delivery.outbox import training_notes
from bot.services import Refusal
from bot.services.class_words import NEW_CLASS_WORDS, is_vetted, normalise
from storage import Job, Model, Settings, Storage

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

    async def start(self, user_id: int, chat_id: int, raw_class: str, update_id: int | None = None,
                    lang: str = "en") -> TrainingStarted:
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
        # One training per user, checked again where the job is made (two /train racing cannot both get one).
        # What the reply and the result need is noted with the job (bot/delivery/outbox.py says what).
        started = await self.store.lifecycle.start_training(
            user_id, chat_id, class_word, [p.id for p in photos], update_id=update_id, notes=training_notes(lang))
        if started is None:
            raise TrainRefused("train_busy")
        if not is_vetted(class_word):
            # Kept apart from the model (a bare hash): deleting it or /forgetme does not give the word back.
            await self.store.models.remember_invented_word(user_id, class_word)
        return TrainingStarted(model=started.model, job=started.job, position=started.position, photos=len(photos))

    async def _check_new_class(self, user_id: int, class_word: str) -> None:
        if is_vetted(class_word):
            return
        own = {w for w in await self.store.models.class_words_ever(user_id) if not is_vetted(w)}
        again = class_word in own or await self.store.models.has_used_invented_word(user_id, class_word)
        if not again and await self.store.models.invented_words_used(user_id, own) >= NEW_CLASS_WORDS:
            raise TrainRefused("train_new_class_cap", cap=NEW_CLASS_WORDS, word=class_word,
                               used=", ".join(sorted(own)) or "—")

    async def cancel_all(self, user_id: int) -> list[Job]:
        """Cancel the user's queued and running jobs; returns the jobs it touched."""
        return await self.store.lifecycle.cancel_for_user(user_id)
