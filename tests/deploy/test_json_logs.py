"""LOG_FORMAT=json: one JSON object per line, secrets still redacted, tracebacks kept in the same object."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "123456789:AAsecretSECRETsecretSECRETsecret"

PROGRAM = f"""
import logging
from storage.logs import job_context, setup_logging
setup_logging("engine", secrets=[{TOKEN!r}])
log = logging.getLogger("engine.worker")
with job_context(42):
    log.warning("the token %s leaked", {TOKEN!r})
try:
    raise ValueError("boom " + {TOKEN!r})
except ValueError:
    log.exception("it failed")
"""


def test_json_logs_are_one_redacted_object_per_line() -> None:
    env = {**os.environ, "LOG_FORMAT": "json"}
    done = subprocess.run([sys.executable, "-c", PROGRAM], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60, check=True)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2, done.stderr
    first, second = (json.loads(line) for line in lines)
    assert first["level"] == "WARNING" and first["process"] == "engine" and first["job"] == 42
    assert first["logger"] == "engine.worker" and first["message"] == "the token [secret] leaked"
    assert first["time"].endswith("Z")
    assert "ValueError: boom [secret]" in second["exception"] and "job" not in second
    assert TOKEN not in done.stderr and TOKEN.split(":")[1] not in done.stderr
