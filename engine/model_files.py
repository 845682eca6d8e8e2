"""What every reader of a base model shares: its errors, the bundled configs and tolerant JSON reading.

Its own module so detection and single-file loading need nothing of engine.base_model, which uses them both.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CONFIGS_DIR = Path(__file__).with_name("configs")


class BaseModelError(Exception):
    """The base model is missing or cannot be loaded; the message says what to put where."""


class UnsupportedModel(BaseModelError):
    """The base model is of a family Kabina does not serve; the message says what was found and what is supported."""


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
