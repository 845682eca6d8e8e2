"""The README's load benchmark at small settings: it runs every phase, the flood of texts included, and loses nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(900)  # a real bot and engine, one real (2-step) training on the CPU
def test_the_load_benchmark_runs_its_flood_phase_and_loses_no_result(tmp_path: Path, tiny_model_dir: Path) -> None:
    out = tmp_path / "loadtest.json"
    command = [sys.executable, "tools/loadtest.py", "--users", "2", "--phases", "calm", "flood", "--flood-texts", "25",
               "--no-warm-up", "--no-extras", "--arrive", "0", "--think-min", "0", "--think-max", "0.05",
               "--train-steps", "2", "--timeout", "60", "--drain", "60", "--model", str(tiny_model_dir),
               "--out", str(out)]
    # Its own session: should the run outlast its time, the bot and engine it started go down with it.
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, stderr = process.communicate(timeout=840)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 0, stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["results_lost"] == 0 and figures["duplicates"] == 0
    assert set(figures["phases"]) == {"calm", "flood"}
    flood = figures["flood_of_texts"]
    assert flood["texts"] == 25 and flood["others_p95_flood_s"] is not None
    assert figures["phases"]["flood"]["unanswered"] == 0
