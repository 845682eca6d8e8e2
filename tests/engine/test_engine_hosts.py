"""Two engine hosts (processes with their own cache folders) on one database and one blob store outside both:
one killed with SIGKILL after a checkpoint, the other resumes the training from that step, and the model ends
ready once. The blob store is S3 when KABINA_TEST_BLOB_URL is set, else a folder that is no engine's data dir."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

from tests.engine.test_worker_process import STEPS, _env, _job, _start
from tests.helpers import add_photos, eventually_sync


async def _train_job(data_dir: Path, blob_url: str) -> int:
    from storage import Storage, TrainPayload

    async with await Storage.open(data_dir, blob_url=blob_url) as store:
        ids = await add_photos(store, 5, (1, 2, 3), size=(96, 96))
        model = await store.models.create(5, name="rex", class_word="dog", params={}, photo_ids=ids)
        job = await store.jobs.enqueue(TrainPayload(model_id=model.id, steps=STEPS), owner_id=5, chat_id=5,
                                       model_id=model.id)
        return job.id


async def _blob_checkpoint_step(data_dir: Path, blob_url: str, job_id: int) -> int | None:
    from storage import NotFound, Storage

    async with await Storage.open(data_dir, blob_url=blob_url) as store:
        try:
            return json.loads(await store.blobs.get(f"jobs/{job_id}/checkpoints/latest.json"))["step"]
        except NotFound:
            return None


async def _keys(data_dir: Path, blob_url: str, prefix: str) -> list[str]:
    from storage import Storage

    async with await Storage.open(data_dir, blob_url=blob_url) as store:
        return await store.blobs.list(prefix)


def test_a_training_killed_on_one_host_resumes_on_another_from_the_blob_stores_checkpoint(
    tmp_path, tiny_model_dir, make_photo,
) -> None:
    data_dir = tmp_path / "data"
    blob_url = os.environ.get("KABINA_TEST_BLOB_URL") or (tmp_path / "bucket").resolve().as_uri()
    job_id = asyncio.run(_train_job(data_dir, blob_url))
    hosts = []
    for name in ("host-a", "host-b"):
        env = _env(data_dir, tiny_model_dir)
        env.update(BLOB_URL=blob_url, ENGINE_CACHE_DIR=str(tmp_path / name / "cache"))
        hosts.append(env)

    first = _start(tmp_path, hosts[0])
    try:
        def uploaded() -> int | None:
            assert first.poll() is None, "the first engine exited early"
            step = asyncio.run(_blob_checkpoint_step(data_dir, blob_url, job_id))
            return step if step is not None and step >= 15 else None

        checkpointed = eventually_sync(uploaded, 200, what="a checkpoint in the blob store")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    assert not (data_dir / "jobs").exists()  # the checkpoint lives in the blob store, not in a host's data dir

    second = _start(tmp_path, hosts[1], "--once")
    try:
        assert second.wait(240) == 0
    finally:
        if second.poll() is None:
            second.kill()
    job, events = asyncio.run(_job(data_dir, job_id))
    assert job.status == "done", job.error
    assert job.attempts == 2 and job.result.steps == STEPS
    assert checkpointed <= job.result.resumed_from < STEPS
    assert [e.kind for e in events if e.job_id == job_id].count("done") == 1
    model_keys = asyncio.run(_keys(data_dir, blob_url, f"models/{job.model_id}"))
    assert job.result.weights_path in model_keys and job.result.report_card_path in model_keys
