from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from storage.logs import job_context, setup_logging
from tests.helpers import ROOT

TOKEN = "123456:AAEsuper-secret"


def test_log_lines_carry_the_job_and_never_the_token(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("engine", secrets=[TOKEN])
    log = logging.getLogger("kabina.test")
    try:
        with job_context(42):
            log.info("calling https://api.telegram.org/bot%s/getMe", TOKEN)
            try:
                raise RuntimeError(f"boom with {TOKEN}")
            except RuntimeError:
                log.exception("failed")
        log.info("idle")
    finally:
        logging.getLogger().handlers.clear()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3  # a traceback stays on its event's line
    assert " job=42 " in lines[0] and " job=42 " in lines[1] and "job=" not in lines[2]
    assert "INFO" in lines[0] and "ERROR" in lines[1]
    assert all(TOKEN not in line for line in lines)
    assert "[secret]" in lines[0] and "[secret]" in lines[1]


CRASHING = f"""
import threading, warnings
from storage.logs import setup_logging
setup_logging("bot", secrets=["{TOKEN}"])
warnings.warn("a library warns about {TOKEN}")
def fail():
    raise OSError("a thread saw {TOKEN}")
thread = threading.Thread(target=fail)
thread.start()
thread.join()
raise RuntimeError("uncaught, with the token {TOKEN} in it")
"""


def test_every_way_out_of_a_process_goes_through_the_redacting_log_line() -> None:
    done = subprocess.run([sys.executable, "-c", CRASHING], cwd=ROOT, capture_output=True, text=True, timeout=60)
    err = done.stderr
    assert done.returncode != 0
    assert TOKEN not in err and err.count("[secret]") == 3, err
    lines = err.splitlines()
    assert len(lines) == 3, err  # a warning, a thread's exception, the uncaught one: one line each
    assert "uncaught RuntimeError" in lines[-1] and "thread" in lines[1]
