"""The README's load benchmark at small settings: it runs every phase, the flood of texts included, and loses nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_load_benchmark_runs_its_flood_phase_and_loses_no_result(tmp_path: Path, tiny_model_dir: Path) -> None:
    out = tmp_path / "loadtest.json"
    command = [sys.executable, "tools/loadtest.py", "--users", "1", "--phases", "calm", "flood", "--flood-texts", "25",
               "--no-warm-up", "--arrive", "0", "--think-min", "0", "--think-max", "0.05", "--train-steps", "2",
               "--timeout", "60", "--drain", "60", "--model", str(tiny_model_dir), "--out", str(out)]
    done = subprocess.run(command, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["results_lost"] == 0 and figures["duplicates"] == 0
    assert set(figures["phases"]) == {"calm", "flood"}
    flood = figures["flood_of_texts"]
    assert flood["texts"] == 25 and flood["others_p95_flood_s"] is not None
    assert figures["phases"]["flood"]["unanswered"] == 0
