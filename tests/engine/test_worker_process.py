"""The real `python -m engine` worker process: killed mid-training it resumes; on SIGTERM it hands the job back."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import add_photos, eventually_sync, queued_training

REPO = Path(__file__).resolve().parents[2]
STEPS = 60


def _env(data_dir: Path, tiny_model_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATA_DIR=str(data_dir), BASE_MODEL=str(tiny_model_dir), DEVICE="cpu", NUM_CLASS_IMAGES="2",
        HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
        PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
    )
    env.pop("TRAIN_STEPS", None)
    return env


def _start(tmp_path: Path, env: dict[str, str], *extra: str) -> subprocess.Popen:
    log = open(tmp_path / f"worker-{time.monotonic_ns()}.log", "wb")  # noqa: SIM115 - lives as long as the process
    return subprocess.Popen(
        [sys.executable, "-m", "engine", "--lease-s", "2", "--poll-s", "0.2", "--checkpoint-every", "5",
         "--cache-sweep-s", "0.5", *extra],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
    )


async def _train_job(data_dir: Path, make_photo) -> int:
    from storage import Storage

    async with await Storage.open(data_dir) as store:
        ids = await add_photos(store, 5, (1, 2, 3), size=(96, 96))
        return (await queued_training(store, 5, ids, steps=STEPS)).id


async def _job(data_dir: Path, job_id: int):
    from storage import Storage

    async with await Storage.open(data_dir) as store:
        return await store.jobs.get(job_id), await store.jobs.events_after(0, limit=10_000)


def _wait_for_training_step(data_dir: Path, job_id: int, at_least: int, proc: subprocess.Popen, timeout: float = 300):
    def reached():
        assert proc.poll() is None, "the worker exited early"
        job, _ = asyncio.run(_job(data_dir, job_id))
        progress = job.progress
        return progress if progress and progress.stage == "training" and progress.step >= at_least else None

    return eventually_sync(reached, timeout, what=f"training step {at_least}")


def _wait_for_checkpoint(data_dir: Path, job_id: int, at_least: int, proc: subprocess.Popen, timeout: float = 300):
    """The step of the newest checkpoint once it reaches `at_least` (progress for a step is published before its
    checkpoint is written, so waiting on progress alone would race the checkpoint)."""
    pointer = data_dir / "jobs" / str(job_id) / "checkpoints" / "latest.json"

    def written() -> int | None:
        assert proc.poll() is None, "the worker exited early"
        try:
            step = json.loads(pointer.read_text())["step"]
        except (OSError, ValueError, KeyError):
            return None
        return step if step >= at_least else None

    return eventually_sync(written, timeout, what=f"a checkpoint at step {at_least}")


def test_worker_killed_mid_training_resumes_from_its_checkpoint_and_finishes(tmp_path, tiny_model_dir, make_photo):
    data_dir = tmp_path / "data"
    job_id = asyncio.run(_train_job(data_dir, make_photo))
    env = _env(data_dir, tiny_model_dir)

    first = _start(tmp_path, env)
    try:
        checkpointed = _wait_for_checkpoint(data_dir, job_id, 15, first)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    job, _ = asyncio.run(_job(data_dir, job_id))
    assert job.status == "running"  # nobody released it: the worker died

    # A new worker waits for the dead one's lease to run out, takes the job over and resumes it.
    second = _start(tmp_path, env, "--once")
    try:
        assert second.wait(240) == 0
    finally:
        if second.poll() is None:
            second.kill()
    job, events = asyncio.run(_job(data_dir, job_id))
    assert job.status == "done", job.error
    assert job.attempts == 2
    assert job.result.steps == STEPS
    assert checkpointed <= job.result.resumed_from < STEPS
    assert any(e.kind == "started" and e.data.get("resumed") for e in events if e.job_id == job_id)


def test_sigterm_checkpoints_and_hands_the_job_back(tmp_path, tiny_model_dir, make_photo):
    data_dir = tmp_path / "data"
    job_id = asyncio.run(_train_job(data_dir, make_photo))
    worker = _start(tmp_path, _env(data_dir, tiny_model_dir))
    try:
        _wait_for_training_step(data_dir, job_id, 5, worker)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
    job, events = asyncio.run(_job(data_dir, job_id))
    assert job.status == "queued" and job.lease_owner is None
    assert job.attempts == 0  # a clean hand-back does not count as a failed attempt
    assert any(e.kind == "requeued" for e in events if e.job_id == job_id)
    assert (data_dir / "jobs" / str(job_id) / "checkpoints" / "latest.json").is_file()


async def _short_training(data_dir: Path) -> int:
    from storage import Storage

    async with await Storage.open(data_dir) as store:
        ids = await add_photos(store, 5, (1, 2, 3), size=(96, 96))
        return (await queued_training(store, 5, ids, steps=4, num_class_images=0)).id


async def _draw_jobs(data_dir: Path, model_id: int) -> list[int]:
    from storage import DrawPayload, Storage

    async with await Storage.open(data_dir) as store:
        jobs = []
        for lora_model in (model_id, None, model_id):  # the user's model, the base model, the user's model again
            payload = DrawPayload(model_id=lora_model, prompt="a photo of sks dog", n=1, steps=2, seeds=[3],
                                  width=64, height=64)
            jobs.append((await store.lifecycle.enqueue(payload, owner_id=5, chat_id=5)).id)
        return jobs


def test_a_worker_with_compile_denoiser_trains_and_draws_users_models(tmp_path, tiny_model_dir, make_photo):
    """COMPILE_DENOISER=true from the environment reaches the engine: its draws run the compiled denoiser (the eager
    backend here: the same graphs and guards as inductor, without its minutes of C++ on this CPU)."""
    data_dir = tmp_path / "data"
    env = {**_env(data_dir, tiny_model_dir), "COMPILE_DENOISER": "true", "COMPILE_BACKEND": "eager",
           "LOG_LEVEL": "INFO"}
    job_id = asyncio.run(_short_training(data_dir))
    for round_ in ("train", "draw"):
        if round_ == "draw":
            job, _ = asyncio.run(_job(data_dir, job_id))
            assert job.status == "done", job.error
            draws = asyncio.run(_draw_jobs(data_dir, job.model_id))
        worker = _start(tmp_path, env, "--once")
        try:
            assert worker.wait(300) == 0
        finally:
            if worker.poll() is None:
                worker.kill()
    results = [asyncio.run(_job(data_dir, d))[0] for d in draws]
    assert [r.status for r in results] == ["done"] * 3, [r.error for r in results]
    logs = "".join(p.read_text(errors="replace") for p in tmp_path.glob("worker-*.log"))
    assert "the unet is compiled on its first draw (eager)" in logs
