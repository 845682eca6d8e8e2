"""A real worker process for the queue tests: claims jobs from a database and does what argv says."""

from __future__ import annotations

import asyncio
import json
import sys
import time

from storage import ClassImagesResult, DrawResult, LeaseLost, Storage, TrainResult


def _result(job):
    """The smallest valid result of the job's kind (the contract refuses a result of another kind)."""
    if job.kind == "draw":
        return DrawResult(images=[], seeds=[])
    if job.kind == "class_images":
        return ClassImagesResult(count=0, folder="")
    return TrainResult(model_id=job.payload.model_id, token="sks", class_word="dog", weights_key="",
                       kohya_key="", sample_keys=[], steps=0, seconds=0.0, report_card_key="", class_drift=0.0,
                       drift_warning=False)


async def main(data_dir: str, worker_id: str, mode: str, lease_s: float, database_url: str) -> None:
    store = await Storage.open(data_dir, database_url=database_url or None)
    if mode == "drain":
        # Claim and complete until the queue stays empty; print what happened as one JSON line at the end.
        # A completion refused because someone else holds the job is recorded, not fatal: the test judges it.
        claimed: list[int] = []
        lost: list[int] = []
        quiet_since = None
        while True:
            job = await store.lifecycle.claim(worker_id, lease_s=lease_s)
            if job is None:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since > 1.5:
                    break
                await asyncio.sleep(0.005)
                continue
            quiet_since = None
            claimed.append(job.id)
            try:
                await store.lifecycle.complete(job.id, worker_id, _result(job))
            except LeaseLost:
                lost.append(job.id)
        print(json.dumps({"claimed": claimed, "lost": lost}), flush=True)
    elif mode == "hold":
        # Claim one job, say so, then hang as a GPU job would until killed.
        while (job := await store.lifecycle.claim(worker_id, lease_s=lease_s)) is None:
            await asyncio.sleep(0.01)
        print(json.dumps({"claimed": job.id, "attempts": job.attempts}), flush=True)
        await asyncio.sleep(3600)
    await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5]))
