"""Two engine hosts (processes with their own DATA_DIR and cache folder) on one database and one blob store outside
both: one killed with SIGKILL after a checkpoint, the other resumes the training from that step, and the model ends
ready once; then draws spread over both hosts, each done once. The database is PostgreSQL when
KABINA_TEST_DATABASE_URL is set (else one SQLite file beside both hosts), the blob store S3 when KABINA_TEST_BLOB_URL
is set (else a folder that is no engine's data dir)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine.test_worker_process import STEPS, _env, _start
from tests.helpers import add_photos, eventually_sync, queued_training
from tests.postgres import configured_url, fresh_schema
from tests.s3 import TEST_BLOB_URL, url_under_own_prefix

DRAWS = 8


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    url = configured_url()
    if url is None:
        (tmp_path / "shared").mkdir()
        yield f"sqlite:///{tmp_path / 'shared' / 'kabina.sqlite3'}"
        return
    with fresh_schema(url) as schema_url:
        yield schema_url


def _open(data_dir: Path, database_url: str, blob_url: str):
    from storage import Storage

    return Storage.open(data_dir, database_url=database_url, blob_url=blob_url)


async def _train_job(data_dir: Path, database_url: str, blob_url: str) -> int:

    async with await _open(data_dir, database_url, blob_url) as store:
        ids = await add_photos(store, 5, (1, 2, 3), size=(96, 96))
        return (await queued_training(store, 5, ids, steps=STEPS)).id


async def _blob_checkpoint_step(data_dir: Path, database_url: str, blob_url: str, job_id: int) -> int | None:
    from storage import NotFound

    async with await _open(data_dir, database_url, blob_url) as store:
        try:
            return json.loads(await store.blobs.get(f"jobs/{job_id}/checkpoints/latest.json"))["step"]
        except NotFound:
            return None


async def _job(data_dir: Path, database_url: str, blob_url: str, job_id: int):
    async with await _open(data_dir, database_url, blob_url) as store:
        return await store.jobs.get(job_id), await store.jobs.events_after(0, limit=10_000)


async def _enqueue_draws(data_dir: Path, database_url: str, blob_url: str, model_id: int) -> list[int]:
    from storage import DrawPayload

    async with await _open(data_dir, database_url, blob_url) as store:
        return [(await store.lifecycle.enqueue(DrawPayload(model_id=model_id, prompt=f"sks dog number {i}", steps=2),
                                          owner_id=5, chat_id=5, model_id=model_id)).id for i in range(DRAWS)]


async def _engines_started(data_dir: Path, database_url: str, blob_url: str, since: float) -> int:
    """How many engines have published what they serve since `since` (each does once it is ready to claim)."""
    async with await _open(data_dir, database_url, blob_url) as store:
        return len(await store.db.fetchall("SELECT worker_id FROM engines WHERE seen_at > ?", (since,)))


async def _delete_model_and_sweep(data_dir: Path, database_url: str, blob_url: str, model_id: int) -> None:
    """The owner deletes the model; the bot's retention sweep takes the finished training's checkpoints."""
    async with await _open(data_dir, database_url, blob_url) as store:
        await store.lifecycle.delete_model(model_id)
        await store.retention.sweep(30)


def _cached(cache: Path, prefix: str) -> list[Path]:
    folder = cache / prefix
    return [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []


async def _keys(data_dir: Path, database_url: str, blob_url: str, prefix: str) -> list[str]:
    async with await _open(data_dir, database_url, blob_url) as store:
        return await store.blobs.list(prefix)


def test_a_training_killed_on_one_host_resumes_on_another_and_draws_spread_over_both(
    tmp_path, tiny_model_dir, make_photo, database_url: str,
) -> None:
    # A bucket prefix of its own: a rerun on the same S3 server must not find the last run's checkpoints.
    blob_url = url_under_own_prefix() if TEST_BLOB_URL else (tmp_path / "bucket").resolve().as_uri()
    here = tmp_path / "test-side"  # the test's own DATA_DIR: no engine's
    job_id = asyncio.run(_train_job(here, database_url, blob_url))
    hosts = {}
    for name in ("host-a", "host-b"):
        env = _env(tmp_path / name / "data", tiny_model_dir)
        env.update(DATABASE_URL=database_url, BLOB_URL=blob_url, ENGINE_CACHE_DIR=str(tmp_path / name / "cache"))
        hosts[name] = env

    first = _start(tmp_path, hosts["host-a"])
    try:
        def uploaded() -> int | None:
            assert first.poll() is None, "the first engine exited early"
            step = asyncio.run(_blob_checkpoint_step(here, database_url, blob_url, job_id))
            return step if step is not None and step >= 15 else None

        checkpointed = eventually_sync(uploaded, 200, what="a checkpoint in the blob store")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    for name in hosts:  # the checkpoint lives in the blob store, not in a host's data dir
        assert not (tmp_path / name / "data" / "jobs").exists()

    second = _start(tmp_path, hosts["host-b"], "--once")
    try:
        assert second.wait(240) == 0
    finally:
        if second.poll() is None:
            second.kill()
    job, events = asyncio.run(_job(here, database_url, blob_url, job_id))
    assert job.status == "done", job.error
    assert job.attempts == 2 and job.result.steps == STEPS
    assert checkpointed <= job.result.resumed_from < STEPS
    assert [e.kind for e in events if e.job_id == job_id].count("done") == 1
    model_keys = asyncio.run(_keys(here, database_url, blob_url, f"models/{job.model_id}"))
    assert job.result.weights_key in model_keys and job.result.report_card_key in model_keys

    # Both hosts up, then a burst of drawings: each is done once, and both hosts take part.
    since = time.time()
    engines = [_start(tmp_path, hosts[name]) for name in hosts]
    try:
        eventually_sync(lambda: asyncio.run(_engines_started(here, database_url, blob_url, since)) >= 2 or None, 120,
                        what="both engines up")
        draws = asyncio.run(_enqueue_draws(here, database_url, blob_url, job.model_id))

        def all_drawn():
            assert all(e.poll() is None for e in engines), "an engine exited"
            _, events = asyncio.run(_job(here, database_url, blob_url, job_id))
            done = [e for e in events if e.job_id in draws and e.kind in {"done", "failed"}]
            return events if len(done) >= DRAWS else None

        events = eventually_sync(all_drawn, 240, what="every drawing done")

        # Delete means delete on every host: both engines drop their copies of the deleted model and the
        # finished training's checkpoints (host-a still held those of the step it was killed at).
        caches = {name: tmp_path / name / "cache" for name in hosts}
        model_files, checkpoint = f"models/{job.model_id}", f"jobs/{job_id}/checkpoints"
        if not blob_url.startswith("file:"):  # with a folder as the store there are no copies to begin with
            assert all(_cached(cache, model_files) for cache in caches.values()), "a host never drew"
            assert _cached(caches["host-a"], checkpoint)
        assert not _cached(caches["host-b"], checkpoint), "the host that finished the training kept its checkpoints"
        asyncio.run(_delete_model_and_sweep(here, database_url, blob_url, job.model_id))
        eventually_sync(lambda: not any(_cached(c, model_files) or _cached(c, checkpoint) for c in caches.values())
                        or None, 60, what="both hosts to drop the deleted model and the checkpoints")
    finally:
        for engine in engines:
            engine.send_signal(signal.SIGTERM)
        for engine in engines:
            engine.wait(60)
    finished = [e for e in events if e.job_id in draws and e.kind in {"done", "failed"}]
    assert sorted(e.job_id for e in finished) == sorted(draws) and {e.kind for e in finished} == {"done"}
    workers = {e.data["worker"] for e in events if e.job_id in draws and e.kind == "started"}
    assert len(workers) == 2, f"all drawings went to {workers}"
