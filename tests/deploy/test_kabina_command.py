"""`kabina` for real: the bot and the engine as its children, the engine restarted after a crash, SIGTERM stops all."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from tests.fake_telegram import FakeTelegram
from tests.helpers import eventually

ROOT = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_kabina_runs_bot_and_engine_restarts_a_crashed_engine_and_stops_cleanly(
    fake: FakeTelegram, tmp_path: Path, tiny_model_dir: Path
) -> None:
    tiny = tiny_model_dir
    log_path = tmp_path / "kabina.log"
    env = {**os.environ, "BOT_TOKEN": fake.token, "TELEGRAM_API_URL": fake.base_url, "BASE_MODEL": str(tiny),
           "DATA_DIR": str(tmp_path / "data"), "DEVICE": "cpu"}
    with open(log_path, "wb") as log:
        kabina = subprocess.Popen([sys.executable, "-m", "bot.supervisor"], cwd=tmp_path, env=env, stdout=log,
                                  stderr=subprocess.STDOUT)

    def started(name: str) -> list[int]:
        return [int(pid) for pid in re.findall(rf"started {name} \(pid (\d+)\)", log_path.read_text())]

    try:
        await eventually(lambda: started("bot") and started("engine"), 60, what="both children to start")
        user = fake.user(501, "Ann", "en")
        fake.send_text(user, "/help")
        await eventually(lambda: any("Kabina" in t for t in fake.texts(501)), 60, what="the bot to answer /help")

        (first_engine,) = started("engine")
        os.kill(first_engine, signal.SIGKILL)
        second = await eventually(lambda: started("engine")[1:], 60, what="the engine to be restarted")
        assert second[0] != first_engine and len(started("bot")) == 1

        kabina.send_signal(signal.SIGTERM)
        assert kabina.wait(timeout=90) == 0
        assert not _alive(second[0]) and not _alive(started("bot")[0])
        output = log_path.read_text()
        assert "Traceback" not in output and fake.token not in output
        assert "engine exited with code -9; restarting" in output
    finally:
        if kabina.poll() is None:
            kabina.kill()
