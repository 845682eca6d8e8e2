from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.helpers import eventually_sync

# A child that records its pid and, on SIGTERM, that it was asked to stop — a stand-in with the same contract
# as `python -m bot` / `python -m engine` (the supervisor itself is what is under test here).
CHILD = textwrap.dedent("""
    import os, signal, sys, time
    from pathlib import Path
    out = Path(sys.argv[1])
    with out.open("a") as f:
        f.write(f"start {os.getpid()}\\n")
    def bye(*_):
        with out.open("a") as f:
            f.write(f"stop {os.getpid()}\\n")
        sys.exit(0)
    signal.signal(signal.SIGTERM, bye)
    while True:
        time.sleep(0.05)
""")

SUPERVISOR = textwrap.dedent("""
    import asyncio, sys
    from bot.supervisor import Child, supervise
    py, child, tmp = sys.executable, sys.argv[1], sys.argv[2]
    children = [Child("bot", [py, "-c", child, tmp + "/bot.log"], grace_s=5, backoff_s=0.2),
                Child("engine", [py, "-c", child, tmp + "/engine.log"], grace_s=5, backoff_s=0.2)]
    sys.exit(asyncio.run(supervise(children)))
""")


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []



def test_a_killed_engine_is_restarted_and_sigterm_stops_both(tmp_path: Path) -> None:
    sup = subprocess.Popen([sys.executable, "-c", SUPERVISOR, CHILD, str(tmp_path)])
    try:
        engine_log, bot_log = tmp_path / "engine.log", tmp_path / "bot.log"
        eventually_sync(lambda: len(_lines(engine_log)) == 1 and len(_lines(bot_log)) == 1)
        first_engine = int(_lines(engine_log)[0].split()[1])
        os.kill(first_engine, signal.SIGKILL)  # a crash: no goodbye
        eventually_sync(lambda: len(_lines(engine_log)) == 2)
        second_engine = int(_lines(engine_log)[1].split()[1])
        assert second_engine != first_engine
        assert len(_lines(bot_log)) == 1  # the bot was left alone

        sup.send_signal(signal.SIGTERM)
        assert sup.wait(timeout=20) == 0
        assert _lines(engine_log)[-1] == f"stop {second_engine}"
        bot_pid = int(_lines(bot_log)[0].split()[1])
        assert _lines(bot_log)[-1] == f"stop {bot_pid}"
    finally:
        if sup.poll() is None:
            sup.kill()


def test_without_a_base_model_kabina_says_how_to_get_one_or_try_the_tiny_model(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"BASE_MODEL", "BOT_TOKEN"}}
    env["BOT_TOKEN"] = "123:secret-token-value"
    done = subprocess.run([sys.executable, "-m", "bot.supervisor"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert "BASE_MODEL" in done.stderr and "python -m engine tiny-model" in done.stderr
    assert "Traceback" not in done.stderr and "secret-token-value" not in done.stderr
