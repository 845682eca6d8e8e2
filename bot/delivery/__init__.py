"""Telling users what became of their jobs, in four pieces: the feed follower (follower.py), the durable outbox
(outbox.py), live progress (progress.py) and composing results (results.py)."""

from __future__ import annotations

from bot.delivery.follower import CURSOR, Deliverer
from bot.delivery.outbox import SETTLED_STATES, Outbox
from bot.delivery.progress import progress_text

__all__ = ["CURSOR", "SETTLED_STATES", "Deliverer", "Outbox", "progress_text"]
