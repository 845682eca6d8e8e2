"""The blob keys of everything Kabina keeps, made from ids and hashes; and the one-time move of old rows from
absolute paths under DATA_DIR to keys."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any

from storage.errors import PathEscape

log = logging.getLogger(__name__)


_KEY = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")


def check_key(key: str) -> str:
    """`key` if it is one of ours (relative, no `..`, no odd characters), else PathEscape."""
    if not isinstance(key, str) or not _KEY.fullmatch(key) or any(part in {".", ".."} for part in key.split("/")):
        raise PathEscape(f"{key!r} is not a blob key")
    return key


def _hex(value: str) -> str:
    if not value or any(c not in "0123456789abcdef" for c in value):
        raise PathEscape(f"not a hex digest: {value!r}")
    return value


def photo_key(owner_id: int, sha256: str) -> str:
    return f"photos/u{int(owner_id)}/{_hex(sha256)}.img"


def input_image_key(owner_id: int, sha256: str) -> str:
    """A picture a user draws from (image-to-image): beside their photo set, so forgetting the user removes it."""
    return f"photos/u{int(owner_id)}/inputs/{_hex(sha256)}.img"


def user_photos_prefix(owner_id: int) -> str:
    return f"photos/u{int(owner_id)}"


def model_prefix(model_id: int) -> str:
    return f"models/{int(model_id)}"


def job_prefix(job_id: int) -> str:
    return f"jobs/{int(job_id)}"


def checkpoint_prefix(job_id: int) -> str:
    return f"{job_prefix(job_id)}/checkpoints"


def class_images_prefix(base_model_key: str, class_prompt: str, resolution: int) -> str:
    # One folder per (base model, prompt, resolution): users training the same class share it.
    h = hashlib.sha256()
    for part in (base_model_key, class_prompt, int(resolution)):
        h.update(str(part).encode())
        h.update(b"\0")  # keeps ("ab", "c") apart from ("a", "bc")
    return f"class_images/{h.hexdigest()[:32]}"


def report_before_prefix(base_model_key: str, class_prompt: str, resolution: int) -> str:
    # The report card's "before" pictures: the base model's bare class prompt, the same for every training of that
    # class on that model, so drawn once and shared like the class images.
    return "report_before/" + class_images_prefix(base_model_key, class_prompt, resolution).split("/", 1)[1]


def ids_under(keys: list[str], kind: str) -> list[int]:
    """The ids of `models/<id>/…` or `jobs/<id>/…` among `keys`."""
    ids = set()
    for key in keys:
        parts = key.split("/")
        if len(parts) > 2 and parts[0] == kind and parts[1].isdigit():
            ids.add(int(parts[1]))
    return sorted(ids)


# --- installs from before keys: rows held absolute paths under DATA_DIR -----------------------------------------

def key_from_old_path(value: Any, root: Path) -> Any:
    """The key for an absolute path under `root`; anything else (already a key, None) unchanged."""
    if not isinstance(value, str) or not value.startswith("/"):
        return value
    path = Path(value)
    if path.is_relative_to(root):
        return path.relative_to(root).as_posix()
    return value  # not ours to rewrite; reading it fails as a bad key, which is logged, never served


def _keys_in(value: Any, root: Path) -> Any:
    if isinstance(value, list):
        return [_keys_in(v, root) for v in value]
    if isinstance(value, dict):
        return {k: _keys_in(v, root) for k, v in value.items()}
    return key_from_old_path(value, root)


# Result fields that held paths (TrainResult, DrawResult, ClassImagesResult), under their old names too.
_RESULT_PATHS = ("weights_key", "kohya_key", "sample_keys", "report_card_key", "weights_path", "kohya_path",
                 "sample_paths", "report_card_path", "images", "folder")


async def convert_old_paths(db, root: Path) -> int:
    """Rewrite the rows an install from before keys wrote with absolute paths; returns how many changed. Rows
    already holding keys are not touched, so running it at every start costs one indexed look per table."""
    root = Path(root).resolve()
    changed = 0
    rows = await db.fetchall("SELECT id, blob_key FROM photos WHERE blob_key LIKE '/%'")
    for r in rows:
        await db.execute("UPDATE photos SET blob_key = ? WHERE id = ?", (key_from_old_path(r["blob_key"], root), r["id"]))
    changed += len(rows)
    rows = await db.fetchall(
        """SELECT id, weights_key, kohya_key, sample_keys, photo_keys FROM models
           WHERE weights_key LIKE '/%' OR kohya_key LIKE '/%' OR sample_keys LIKE '%"/%'
           OR photo_keys LIKE '%"/%'""")
    for r in rows:
        await db.execute(
            "UPDATE models SET weights_key = ?, kohya_key = ?, sample_keys = ?, photo_keys = ? WHERE id = ?",
            (key_from_old_path(r["weights_key"], root), key_from_old_path(r["kohya_key"], root),
             json.dumps(_keys_in(json.loads(r["sample_keys"] or "[]"), root)),
             json.dumps(_keys_in(json.loads(r["photo_keys"] or "[]"), root)), r["id"]),
        )
    changed += len(rows)
    rows = await db.fetchall("""SELECT id, result FROM jobs WHERE result LIKE '%"/%'""")
    for r in rows:
        result = json.loads(r["result"])
        for name in _RESULT_PATHS:
            if name in result:
                result[name] = _keys_in(result[name], root)
        await db.execute("UPDATE jobs SET result = ? WHERE id = ?", (json.dumps(result), r["id"]))
    changed += len(rows)
    if changed:
        log.info("converted %d rows from file paths to blob keys", changed)
    return changed
