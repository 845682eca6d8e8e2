"""The file store: every path under DATA_DIR is made here, from ids and hashes, never from user input."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from storage.errors import PathEscape


def _digest(*parts: object) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(str(part).encode())
        h.update(b"\0")  # keeps ("ab", "c") apart from ("a", "bc")
    return h.hexdigest()


def _hex(value: str) -> str:
    if not value or any(c not in "0123456789abcdef" for c in value):
        raise PathEscape(f"not a hex digest: {value!r}")
    return value


class FileStore:
    """Owns the layout of DATA_DIR: photos/, models/, class_images/, jobs/, tmp/."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._tmp = self.root / "tmp"
        self._tmp.mkdir(exist_ok=True)

    @property
    def database_path(self) -> Path:
        return self.root / "kabina.sqlite3"

    def inside(self, path: str | Path) -> Path:
        """The resolved path, or PathEscape if it would leave DATA_DIR (through `..` or a symlink)."""
        candidate = Path(path)
        if not candidate.is_absolute():
            candidate = self.root / candidate
        resolved = candidate.resolve()
        if resolved != self.root and not resolved.is_relative_to(self.root):
            raise PathEscape(f"{path} is outside the data folder")
        return resolved

    def _dir(self, *parts: str) -> Path:
        path = self.inside(self.root.joinpath(*parts))
        path.mkdir(parents=True, exist_ok=True)
        return path

    def photo_path(self, owner_id: int, sha256: str) -> Path:
        return self._dir("photos", f"u{int(owner_id)}") / f"{_hex(sha256)}.img"

    def model_dir(self, model_id: int) -> Path:
        return self._dir("models", str(int(model_id)))

    def class_image_dir(self, base_model_key: str, class_prompt: str, resolution: int) -> Path:
        # One folder per (base model, prompt, resolution): users training the same class share it.
        return self._dir("class_images", _digest(base_model_key, class_prompt, int(resolution))[:32])

    def job_dir(self, job_id: int) -> Path:
        return self._dir("jobs", str(int(job_id)))

    def write_atomic(self, path: str | Path, data: bytes) -> Path:
        """Write all of `data` or nothing: a temp file in the same folder, fsync, rename, fsync the folder."""
        target = self.inside(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".partial-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        _fsync_dir(target.parent)
        return target

    def link_or_copy(self, source: str | Path, target: str | Path) -> Path:
        """A second name for a file we own (a hard link; a copy where links are not possible)."""
        src, dst = self.inside(source), self.inside(target)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.exists():
            return dst
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)
        return dst

    def remove(self, path: str | Path | None) -> None:
        if path:
            self.inside(path).unlink(missing_ok=True)

    def remove_tree(self, path: str | Path) -> None:
        target = self.inside(path)
        if target == self.root:
            raise PathEscape("refusing to remove the whole data folder")
        shutil.rmtree(target, ignore_errors=True)

    def sweep_partials(self) -> int:
        """Remove temp files an interrupted write left behind (called at start-up)."""
        removed = 0
        for leftover in self.root.rglob(".partial-*.tmp"):
            leftover.unlink(missing_ok=True)
            removed += 1
        return removed

    # --- everything of one model, job or user (deletion and retention); these never create a folder ---------------
    def _existing(self, *parts: str) -> Path:
        return self.inside(self.root.joinpath(*parts))

    def job_files(self, job_id: int) -> Path:
        """Where a job's files are (drawn pictures, training checkpoints with optimizer state); may not exist."""
        return self._existing("jobs", str(int(job_id)))

    def model_files(self, model_id: int) -> Path:
        """A model's folder (weights, exports, samples, report card, photo copies); may not exist."""
        return self._existing("models", str(int(model_id)))

    def user_photo_files(self, owner_id: int) -> Path:
        return self._existing("photos", f"u{int(owner_id)}")

    def remove_job_files(self, job_id: int) -> None:
        self.remove_tree(self.job_files(job_id))

    def remove_model_files(self, model_id: int) -> None:
        self.remove_tree(self.model_files(model_id))

    def remove_model_photos(self, model_id: int) -> None:
        """The model's own copies of the training photos, once no training will read them again."""
        self.remove_tree(self.model_files(model_id) / "photos")

    def remove_user_photos(self, owner_id: int) -> None:
        self.remove_tree(self.user_photo_files(owner_id))

    def ids_on_disk(self, kind: str) -> list[int]:
        """The ids that have a folder under models/ or jobs/ (`kind`), whatever the database says."""
        folder = self._existing(kind)
        if not folder.is_dir():
            return []
        return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
