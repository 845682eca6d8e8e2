"""Suite-wide test setup: fully offline, no stray configuration from the developer's shell or .env."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
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


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    """A local fake Bot API server (tests/fake_telegram.py): the only part of the world we do not run for real."""
    from tests.fake_telegram import FakeTelegram

    server = FakeTelegram()
    await server.start()
    yield server
    await server.stop()
