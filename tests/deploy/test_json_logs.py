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


def test_an_engine_takes_log_format_from_dotenv(tmp_path: Path, tiny_model_dir: Path) -> None:
    (tmp_path / ".env").write_text(f"LOG_FORMAT=json\nBASE_MODEL={tiny_model_dir}\nDATA_DIR={tmp_path / 'data'}\n"
                                   "DEVICE=cpu\n")
    env = {key: value for key, value in os.environ.items() if key not in ("LOG_FORMAT", "LOG_LEVEL")}
    done = subprocess.run([sys.executable, "-m", "engine", "--once"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = [json.loads(line) for line in done.stderr.splitlines() if "loaded on cpu" in line]
    assert loaded and loaded[0]["process"] == "engine" and loaded[0]["level"] == "INFO"
