"""One bot per database: a leader lease in storage. Only the leader polls Telegram and delivers results; a second bot
on the same data waits as a standby and takes over when the leader stops or dies."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from storage import Storage, StorageUnavailable
from storage.leases import describe_holder, new_holder_id
from storage.logs import report_storage_trouble

log = logging.getLogger(__name__)

LEASE_NAME = "bot"


class LeadLost(Exception):
    """Another bot took the lead while this one could not renew it: stop polling and delivering at once."""


class Leadership:
    def __init__(self, store: Storage, lease_s: float, holder: str | None = None) -> None:
        self.store = store
        self.lease_s = lease_s
        self.holder = holder or new_holder_id()
        self.lost = asyncio.Event()
        self._confirmed = float("-inf")  # monotonic time we last knew the lead was ours

    async def acquire(self) -> None:
        """Wait until this bot holds the lead (at once when nobody else does)."""
        waiting_for: str | None = None
        while True:
            try:
                other = await self.store.leases.acquire(LEASE_NAME, self.holder, self.lease_s)
            except StorageUnavailable as exc:
                report_storage_trouble(exc, log)
                other = ""
            if other is None:
                self._confirmed = time.monotonic()
                self.lost.clear()
                if waiting_for:
                    log.warning("the other bot (%s) is gone: this bot takes over", describe_holder(waiting_for))
                return
            if other and other != waiting_for:
                log.warning("another Kabina bot (%s) serves this DATA_DIR; this one waits as a standby and takes "
                            "over when it stops", describe_holder(other))
                waiting_for = other
            await asyncio.sleep(min(3.0, max(0.2, self.lease_s / 5)))

    def ok(self) -> bool:
        """Whether this bot may act as the leader now. A standby takes over only after the lease stayed
        un-renewed for two lease periods of its own clock, so a lead confirmed within one period is safe."""
        return not self.lost.is_set() and time.monotonic() - self._confirmed < self.lease_s

    async def fence(self) -> None:
        """Wait until acting as the leader is safe; LeadLost if the lead has gone to another bot."""
        while not self.ok():
            if self.lost.is_set():
                raise LeadLost("another bot took the lead")
            await asyncio.sleep(0.1)

    async def keep(self) -> None:
        """Renew the lease a few times per period; returns (with `lost` set) when another bot took it."""
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                if await self.store.leases.renew(LEASE_NAME, self.holder, self.lease_s):
                    self._confirmed = time.monotonic()
                    continue
                log.error("another bot took over this DATA_DIR; this one stops polling and delivering")
                self.lost.set()
                return
            except StorageUnavailable as exc:
                # Nothing can be written, so nobody can take the lead over either: still ours if the row says so.
                report_storage_trouble(exc, log)
                with contextlib.suppress(Exception):
                    if await self.store.leases.holder(LEASE_NAME) == self.holder:
                        self._confirmed = time.monotonic()
            except Exception:
                log.exception("renewing the lead failed; trying again")

    async def release(self) -> None:
        with contextlib.suppress(Exception):
            await self.store.leases.release(LEASE_NAME, self.holder)
