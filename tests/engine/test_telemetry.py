"""An engine's /metrics and /healthz, on the real `python -m engine` and the tiny model: its heartbeat reaches
storage (so /stats sees it alive), a drawing shows up in the job durations, liveness names what it serves."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from storage import DrawPayload, JobStatus, Storage
from tests.helpers import eventually
from tests.metrics_scrape import free_port, healthz, scrape

ROOT = Path(__file__).resolve().parents[2]


async def _answered(request):
    try:
        return await request
    except OSError:
        return None


async def test_an_engine_beats_serves_metrics_and_times_its_jobs(tmp_path: Path, tiny_model_dir: Path) -> None:
    data_dir, port = tmp_path / "data", free_port()
    env = {**os.environ, "DATA_DIR": str(data_dir), "BASE_MODEL": str(tiny_model_dir), "DEVICE": "cpu",
           "DRAW_STEPS": "2", "ENGINE_METRICS_PORT": str(port)}
    with open(tmp_path / "engine.log", "wb") as log:
        engine = subprocess.Popen([sys.executable, "-m", "engine", "--poll-s", "0.2", "--worker-id", "gpu-test:1"],
                                  cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    store = await Storage.open(data_dir)
    try:
        status, state = await eventually(lambda: _answered(healthz(port)), 120, what="the engine's liveness endpoint")
        assert status == 200 and state["ok"] and state["family"] == "sd1" and state["worker_id"] == "gpu-test:1"
        (seen,) = await store.admin.engines_alive()
        assert seen.worker_id == "gpu-test:1" and seen.family == "sd1"
        before = await scrape(port)
        assert before.get_value("kabina_engine_heartbeat_timestamp_seconds") > 0
        assert before.get_value("kabina_job_duration_seconds_count", kind="draw", family="sd1") == 0

        job = await store.lifecycle.enqueue(DrawPayload(model_id=None, prompt="a dog", steps=2), owner_id=1)
        done = await eventually(lambda: _finished(store, job.id), 120, what="the drawing to finish")
        assert done.status == JobStatus.DONE, done.error
        after = await eventually(lambda: _timed(port), 10, what="the job's duration")
        assert after.get_value("kabina_job_duration_seconds_sum", kind="draw", family="sd1") > 0
        assert after.get_value("kabina_queue_depth", kind="draw") == 0
        assert after.get_value("kabina_engines_alive", family="sd1") == 1
    finally:
        engine.send_signal(signal.SIGTERM)
        try:
            engine.wait(timeout=60)
        except subprocess.TimeoutExpired:
            engine.kill()
        await store.close()
    output = (tmp_path / "engine.log").read_text()
    assert "Traceback" not in output, output[-3000:]


async def _finished(store: Storage, job_id: int):
    job = await store.jobs.get(job_id)
    return job if job.status in (JobStatus.DONE, JobStatus.FAILED) else None


async def _timed(port: int):
    found = await scrape(port)
    return found if found.get_value("kabina_job_duration_seconds_count", kind="draw", family="sd1") == 1 else None
