"""Suite-wide test setup: fully offline, no stray configuration from the developer's shell or .env, and the
fixtures every part uses (the fake Bot API, storage on a temp DATA_DIR, the tiny model built once per run)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from storage import Storage
    from tests.fake_telegram import FakeTelegram

# Nothing in the tests may reach a model hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny models gain nothing from a second thread, and OpenMP threads spinning against the engine subprocesses
# the tests start slow everything down many times on a 2-core machine; child processes inherit this.
os.environ["OMP_NUM_THREADS"] = "1"
# Child processes (python -m bot, -m engine, the supervisor) import this checkout too, whatever their cwd,
# never a copy installed elsewhere.
_ROOT = str(Path(__file__).resolve().parents[1])
os.environ["PYTHONPATH"] = os.pathsep.join([_ROOT, *filter(None, [os.environ.get("PYTHONPATH")])])
# The developer's own configuration must not leak into the tests (each test sets what it needs).
for _name in ("BOT_TOKEN", "TELEGRAM_API_URL", "TELEGRAM_API_LOCAL", "TELEGRAM_API_FILES", "BASE_MODEL", "DATA_DIR",
              "TRAIN_STEPS", "ALLOWED_USERS", "DATABASE_URL", "BLOB_URL", "ENGINE_CACHE_DIR"):
    os.environ.pop(_name, None)


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    """A local fake Bot API server (tests/fake_telegram.py): the only part of the world we do not run for real."""
    from tests.fake_telegram import FakeTelegram

    server = FakeTelegram()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def database_url() -> str | None:
    """DATABASE_URL for the test's storage: None is SQLite in DATA_DIR (tests/storage runs PostgreSQL too)."""
    return None


@pytest.fixture
async def store(data_dir: Path, database_url: str | None) -> AsyncIterator[Storage]:
    """Real storage (the database `database_url` names + files) on the test's own DATA_DIR."""
    from storage import Storage

    opened = await Storage.open(data_dir, database_url=database_url)
    yield opened
    await opened.close()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """`python -m engine tiny-model`, built once per test run and shared by every part's tests."""
    from tests.helpers import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "sd-tiny")


@pytest.fixture(scope="session")
def tiny_family_dir(tmp_path_factory):
    """`tiny_family_dir("sdxl")` → the folder of that family's tiny model (engine.tiny_families), built once."""
    built: dict[str, Path] = {}
    root = tmp_path_factory.mktemp("families")

    def get(name: str) -> Path:
        if name not in built:
            import torch

            from engine.tiny_model import build_tiny_pipeline

            state = torch.random.get_rng_state()  # building seeds torch; the rest of the run must not notice
            try:
                build_tiny_pipeline(root / name, family=name)
            finally:
                torch.random.set_rng_state(state)
            built[name] = root / name
        return built[name]

    return get
