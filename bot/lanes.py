"""Work in lanes: jobs with the same key (a user, a chat) run one after another in order; different keys run at once."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Hashable

log = logging.getLogger(__name__)

Work = Callable[[], Awaitable[None]]


class Lanes:
    def __init__(self, name: str) -> None:
        self.name = name
        self._queues: dict[Hashable, deque[Work]] = {}
        self._runners: dict[Hashable, asyncio.Task[None]] = {}

    def submit(self, key: Hashable, work: Work) -> None:
        """Run `work` after everything submitted earlier under `key`; a failure is logged and the lane goes on."""
        self._queues.setdefault(key, deque()).append(work)
        if key not in self._runners:
            self._runners[key] = asyncio.get_running_loop().create_task(self._drain(key), name=f"{self.name}:{key}")

    async def _drain(self, key: Hashable) -> None:
        queue = self._queues[key]
        try:
            while queue:
                work = queue.popleft()
                try:
                    await work()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("%s lane %s: a job failed", self.name, key)
        finally:
            # No await between the last check of the queue and here: nothing can slip in unseen.
            self._runners.pop(key, None)
            if not queue:
                self._queues.pop(key, None)

    def busy(self) -> int:
        """Lanes with work running or waiting."""
        return len(self._runners)

    async def close(self) -> None:
        runners = list(self._runners.values())
        for runner in runners:
            runner.cancel()
        await asyncio.gather(*runners, return_exceptions=True)
        self._queues.clear()
