from __future__ import annotations

import logging

import pytest

from storage.logs import job_context, setup_logging

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
