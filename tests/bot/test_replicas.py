"""Bot replicas on different machines: the standby cannot see the leader's process, so only the lease tells it the
leader died. It takes over, finishes what the leader left in the database and delivers nothing twice."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from storage import Settings, Storage
from tests.fake_telegram import FakeTelegram
from tests.helpers import (
    ROOT,
    BotProcess,
    StandInWorker,
    User,
    make_ready_model,
    photo_bytes,
    settled,
    started,
)

LEASE_S = "1"


class BotOnAnotherHost(BotProcess):
    """`python -m bot` under a hostname of its own (a UTS namespace): to the leader's lease it is another
    machine, whose process it can neither see nor prove dead."""

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                ["unshare", "--uts", "sh", "-c", 'hostname kabina-replica-2 && exec "$0" -m bot', sys.executable],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )


def _can_unshare() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "--uts", "true"], capture_output=True, timeout=10).returncode == 0


async def test_a_standby_on_another_host_takes_over_after_the_leaders_sigkill_and_finishes_its_album_once(
    fake: FakeTelegram, store: Storage, settings: Settings, ann: User, worker: StandInWorker,
) -> None:
    if not _can_unshare():
        pytest.skip("needs root and unshare(1) to give the standby a hostname of its own")
    await make_ready_model(store, ann.id)
    leader = BotProcess(settings, {"LEADER_LEASE_S": LEASE_S}, name="leader")
    standby = BotOnAnotherHost(settings, {"LEADER_LEASE_S": LEASE_S}, name="standby")
    try:
        await started(fake, leader, 0)
        standby.start()
        await fake.wait_for(lambda: "waits as a standby" in standby.output(), 30, what="the standby to wait")
        assert "kabina-replica-2" not in leader.output()

        # The leader has saved an album's photos and is sending its one summary when it dies.
        summary = fake.hold("sendMessage", where=lambda c: "Saved" in str(c.params.get("text")))
        ann.album([photo_bytes(i) for i in range(3)])
        await asyncio.wait_for(summary.arrived.wait(), 20)
        leader.kill()
        killed_at = time.monotonic()
        summary.release(drop=True)

        await fake.wait_call("setMyCommands", count=8, timeout=30)
        print(f"\nthe standby on another host polled {time.monotonic() - killed_at:.1f} s after the SIGKILL "
              f"(LEADER_LEASE_S={LEASE_S})")
        await fake.wait_for(lambda: any("Saved 3" in t for t in ann.replies()), 20, what="the album's summary")

        ann.say("/draw sks dog in Paris --n 2")
        job = await worker.claim("draw", timeout=20)
        await worker.finish_draw(job)
        await settled(store, job.id, timeout=20)
        await fake.wait_idle(quiet=1.0, timeout=20)
        assert sum("Saved 3" in t for t in ann.replies()) == 1
        assert await store.photos.count(ann.id) == 3
        assert len(fake.calls_of("sendMediaGroup", ann.id)) == 1
        assert sum("More like this" in t for t in ann.replies()) == 1
        assert "takes over" in standby.output()
    finally:
        for bot in (leader, standby):
            if bot.alive():
                bot.process.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
                bot.process.wait(timeout=10)  # type: ignore[union-attr]
    for bot in (leader, standby):
        assert "Traceback" not in bot.output(), bot.output()
        assert settings.require_bot_token() not in bot.output()
