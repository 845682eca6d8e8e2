"""A real worker process for the queue tests: claims jobs from a database and does what argv says."""

from __future__ import annotations

import asyncio
import json
import sys
import time

from storage import Storage


async def main(data_dir: str, worker_id: str, mode: str, lease_s: float) -> None:
    store = await Storage.open(data_dir)
    if mode == "drain":
        # Claim and complete until the queue stays empty; print each claimed id (one JSON line at the end).
        claimed: list[int] = []
        quiet_since = None
        while True:
            job = await store.jobs.claim(worker_id, lease_s=lease_s)
            if job is None:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since > 3.0:
                    break
                await asyncio.sleep(0.005)
                continue
            quiet_since = None
            claimed.append(job.id)
            await store.jobs.complete(job.id, worker_id, {"by": worker_id})
        print(json.dumps(claimed), flush=True)
    elif mode == "hold":
        # Claim one job, say so, then hang as a GPU job would until killed.
        while (job := await store.jobs.claim(worker_id, lease_s=lease_s)) is None:
            await asyncio.sleep(0.01)
        print(json.dumps({"claimed": job.id, "attempts": job.attempts}), flush=True)
        await asyncio.sleep(3600)
    await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])))
