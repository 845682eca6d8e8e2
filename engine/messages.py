"""Why a job failed, as the engine reports it: a code with parameters (storage.contract.FailureCode), stored on
the job; the bot says it in the user's language (bot/locales `failure_<code>`). The English here is for logs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from storage.contract import FailureCode

FAILURES: dict[str, str] = {
    "model_gone": "This model no longer exists (it was deleted).",
    "model_not_ready": "This model is not ready to draw with yet.",
    "weights_missing": "The model's weights are missing.",
    "no_photos": "None of the photos could be used for training.",
    "no_token": "Every identifier token of this owner is in use.",
    "out_of_memory": "The GPU ran out of memory, even with lighter settings.",
    "diverged": "Training diverged (the numbers blew up).",
    "cancelled": "Cancelled.",
    "unknown_kind": "The engine does not know this kind of job ({kind}).",
    "bad_request": "The engine refused the request ({detail}).",
    "no_room": "There is no room to save the result on the server.",
    "picture_gone": "The picture to draw from is no longer kept.",
    "picture_unreadable": "The picture to draw from cannot be read.",
    "internal": "Something went wrong in the engine (see its log).",
    "gave_up": "The engine stopped unexpectedly {attempts} times.",
}


@dataclass(frozen=True)
class Failure:
    code: FailureCode
    params: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return FAILURES[self.code].format(**self.params)


def failure(code: str, **params: Any) -> Failure:
    return Failure(FailureCode(code), params)
