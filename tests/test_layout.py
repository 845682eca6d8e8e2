"""The suite tests the checkout it sits in, never a copy of the code installed somewhere else."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("package", ["bot", "engine", "storage"])
def test_each_part_is_imported_from_this_checkout(package: str) -> None:
    module = importlib.import_module(package)
    assert Path(module.__file__).resolve().parent == ROOT / package


def test_the_bot_tests_are_not_mistaken_for_the_bot_package() -> None:
    import tests.bot

    assert Path(tests.bot.__file__).resolve().parent == ROOT / "tests" / "bot"
    assert importlib.import_module("bot.app").__name__ == "bot.app"


def test_child_processes_import_this_checkout_whatever_their_folder(tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", "import bot; print(bot.__file__)"], cwd=tmp_path,
                          capture_output=True, text=True, check=True)
    assert Path(done.stdout.strip()).resolve().parent == ROOT / "bot"
