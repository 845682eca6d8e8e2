"""A user's own choices that outlive one request: language, and the defaults /draw uses (set with /settings)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from storage.contract import MAX_DRAW_STEPS, MAX_IMAGES_PER_DRAW, MAX_STRENGTH, AspectRatio
from storage.db import Database

MAX_MODEL_NAME_CHARS = 40


class Preferences(BaseModel):
    """Every field None means "not chosen": the bot's or the engine's own default applies."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    language: str | None = Field(None, max_length=8)
    sampler: str | None = Field(None, max_length=32)
    steps: int | None = Field(None, ge=1, le=MAX_DRAW_STEPS)
    aspect_ratio: AspectRatio | None = None
    n: int | None = Field(None, ge=1, le=MAX_IMAGES_PER_DRAW)
    strength: float | None = Field(None, ge=0.0, le=MAX_STRENGTH)
    # The model whose new name the user's next message is (asked from /models).
    renaming_model_id: int | None = None


def _parse(text: str | None) -> Preferences:
    try:
        return Preferences.model_validate(json.loads(text or "{}"))
    except (ValueError, ValidationError):
        return Preferences()  # a damaged record costs the user their choices, never a request


class PreferenceRepo:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, user_id: int) -> Preferences:
        row = await self._db.fetchone("SELECT preferences FROM users WHERE id = ?", (user_id,))
        return _parse(row["preferences"] if row else None)

    async def update(self, user_id: int, **changes: Any) -> Preferences:
        """Sets the named fields (None clears one) in one transaction; the user must exist (any update made one)."""
        async with self._db.transaction() as conn:
            row = await (await conn.execute("SELECT preferences FROM users WHERE id = ?", (user_id,))).fetchone()
            if row is None:
                return Preferences()
            current = _parse(row["preferences"])
            merged = Preferences.model_validate({**current.model_dump(), **changes})
            await conn.execute("UPDATE users SET preferences = ? WHERE id = ?",
                               (json.dumps(merged.model_dump(mode="json", exclude_none=True)), user_id))
        return merged

    async def reset_drawing(self, user_id: int) -> Preferences:
        """Back to every default for /draw (the language stays)."""
        return await self.update(user_id, sampler=None, steps=None, aspect_ratio=None, n=None, strength=None)
