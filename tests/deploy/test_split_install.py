"""The bot installs and runs without the ML stack; the engine extra brings it; the GPU image refuses to run on a CPU."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.fake_telegram import FakeTelegram
from tests.helpers import eventually

ROOT = Path(__file__).resolve().parents[2]
ML_STACK = {"torch", "diffusers", "transformers", "accelerate", "peft", "safetensors", "xformers", "numpy"}
# Put first on sys.path of a child process: any import of the ML stack fails as if it were not installed.
BLOCKER = f"""
import sys
class _Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {sorted(ML_STACK)!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked: the bot must not need it)")
        return None
sys.meta_path.insert(0, _Blocked())
"""


def _source_copy(tmp_path: Path) -> Path:
    """What a build needs, copied: building in the checkout would leave build/ and egg-info behind."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "constraints.txt"):
        shutil.copy(ROOT / name, src / name)
    for package in ("bot", "engine", "storage"):
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    return src


def test_the_wheel_asks_for_no_ml_stack_unless_the_engine_extra_is_named(tmp_path: Path) -> None:
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "wheel"), str(_source_copy(tmp_path))],
                           capture_output=True, text=True, timeout=240)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "wheel").glob("kabina-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        meta = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        requires = [Requirement(line.split(":", 1)[1].strip()) for line in archive.read(meta).decode().splitlines()
                    if line.startswith("Requires-Dist:")]
    base = {r.name.lower() for r in requires if r.marker is None}
    engine = {r.name.lower() for r in requires if r.marker is not None and r.marker.evaluate({"extra": "engine"})}
    assert not base & ML_STACK, f"the bot's install would pull {base & ML_STACK}"
    assert {"aiogram", "pillow", "pillow-heif", "prometheus-client"} <= base
    assert {"torch", "diffusers", "transformers", "accelerate", "peft", "safetensors"} <= engine


def test_readme_installs_the_engine_extra_where_the_engine_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "engine" in project["optional-dependencies"]
    assert "pip install -c constraints.txt -e '.[engine]' && kabina" in readme
    assert "-e '.[engine,dev]' && python -m pytest" in readme
    # the test command takes torch from PyTorch's CPU index: no CUDA wheels for a trial
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in readme


async def test_the_bot_answers_with_the_ml_stack_unimportable(fake: FakeTelegram, tmp_path: Path) -> None:
    env = {**os.environ, "BOT_TOKEN": fake.token, "TELEGRAM_API_URL": fake.base_url,
           "DATA_DIR": str(tmp_path / "data")}
    code = BLOCKER + "import runpy\nrunpy.run_module('bot', run_name='__main__', alter_sys=True)\n"
    with open(tmp_path / "bot.log", "wb") as log:
        bot = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        user = fake.user(601, "Ann", "en")
        await eventually(lambda: fake.calls_of("setMyCommands") or bot.poll() is not None, 60, what="the bot to start")
        fake.send_text(user, "/help")
        await eventually(lambda: any("Kabina" in t for t in fake.texts(601)) or bot.poll() is not None, 60,
                         what="the bot to answer /help")
        output = (tmp_path / "bot.log").read_text()
        assert bot.poll() is None, output
        assert "blocked" not in output and "Traceback" not in output
    finally:
        bot.kill()
        bot.wait(timeout=10)


async def test_a_fresh_venv_gets_a_working_bot_from_the_base_install(fake: FakeTelegram, tmp_path: Path) -> None:
    """`pip install -c constraints.txt .` into a new virtualenv, as a bot-only host does: no torch comes with it,
    and that bot answers. Takes about half a minute (pip resolves from the configured index)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    src = _source_copy(tmp_path)
    installed = subprocess.run([str(python), "-m", "pip", "install", "-q", "-c", str(src / "constraints.txt"), str(src)],
                               capture_output=True, text=True, timeout=400, cwd=tmp_path)
    assert installed.returncode == 0, installed.stdout[-2000:] + installed.stderr[-2000:]
    listed = subprocess.run([str(python), "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True,
                            check=True, timeout=60).stdout.lower()
    names = {line.split("==")[0] for line in listed.splitlines()}
    assert "kabina" in names and not names & ML_STACK, names & ML_STACK
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}  # the installed copy, not ours
    env.update(BOT_TOKEN=fake.token, TELEGRAM_API_URL=fake.base_url, DATA_DIR=str(tmp_path / "data"))
    with open(tmp_path / "bot.log", "wb") as log:
        bot = subprocess.Popen([str(python), "-m", "bot"], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        fake.send_text(fake.user(602, "Ann", "en"), "/start")
        await eventually(lambda: any("Kabina" in t for t in fake.texts(602)) or bot.poll() is not None, 60,
                         what="the installed bot to answer")
        assert bot.poll() is None, (tmp_path / "bot.log").read_text()
    finally:
        bot.kill()
        bot.wait(timeout=10)


def test_an_engine_told_to_use_cuda_without_a_gpu_stops_with_one_line(tmp_path: Path, tiny_model_dir: Path) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    env = {**os.environ, "DEVICE": "cuda", "BASE_MODEL": str(tiny_model_dir), "DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([sys.executable, "-m", "engine", "--once"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "DEVICE=cuda but no CUDA GPU is visible" in done.stderr and "Traceback" not in done.stderr
