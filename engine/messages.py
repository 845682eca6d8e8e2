"""User-facing failure texts the engine stores on jobs (English; the bot may show its own translation by `code`)."""

from __future__ import annotations

FAILURES: dict[str, str] = {
    "model_gone": "This model no longer exists (it was deleted).",
    "model_not_ready": "This model is not ready to draw with yet.",
    "no_photos": "None of the photos could be used for training. Please send at least a few clear photos.",
    "no_token": "You have used every identifier for your models; delete one of them first.",
    "out_of_memory": "The GPU ran out of memory, even with lighter settings. Try fewer images or a smaller size.",
    "diverged": "Training went wrong (the numbers blew up). Please try again, perhaps with other photos.",
    "cancelled": "Training was cancelled.",
    "unknown_kind": "The engine does not know this kind of job.",
    "picture_gone": "The picture to draw from is no longer kept. Send it again.",
    "picture_unreadable": "The picture to draw from cannot be read. Send another one.",
    "internal": "Something went wrong in the engine. The operator can find details in its log.",
}


def failure(code: str, detail: str | None = None) -> str:
    text = FAILURES[code]
    return f"{text} ({detail})" if detail else text
