"""Leases judged safely: a lease that looks expired is only taken once this process has itself watched it stay
un-renewed for a whole lease period on its own monotonic clock (a wall clock that jumps forward never takes a
healthy holder's lease); and the bot's leader lease, which keeps one bot per database."""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Callable, Hashable, Iterable

from storage.db import Database
from storage.processes import owner_gone, owner_tag

Clock = Callable[[], float]


class LeaseWatch:
    """What this process has seen of other holders' leases: since when (its own monotonic clock) each one has
    looked expired without being renewed."""

    def __init__(self, monotonic: Clock = time.monotonic) -> None:
        self._monotonic = monotonic
        self._seen: dict[Hashable, tuple[Hashable, float]] = {}

    def lapsed(self, key: Hashable, identity: Hashable, lease_s: float) -> bool:
        """Called while the wall clock says the lease `key` is over. `identity` (holder, renewal count) changes
        with every renewal; True only once the same identity has looked expired for `lease_s` of our time."""
        now = self._monotonic()
        seen = self._seen.get(key)
        if seen is None or seen[0] != identity:
            self._seen[key] = (identity, now)
            return False
        return now - seen[1] >= lease_s

    def forget(self, key: Hashable) -> None:
        self._seen.pop(key, None)

    def keep_only(self, keys: Iterable[Hashable]) -> None:
        """Forget the leases that no longer look expired (renewed, finished or taken)."""
        wanted = set(keys)
        self._seen = {k: v for k, v in self._seen.items() if k in wanted}


def new_holder_id() -> str:
    """`<owner tag>-<random>@<host>`: unique per run, and says which process holds a lease and where."""
    return f"{owner_tag()}-{secrets.token_hex(3)}@{socket.gethostname()}"


def describe_holder(holder: str) -> str:
    tag, _, host = holder.partition("@")
    pid = tag.partition("-")[2].partition("-")[0]
    return f"pid {pid} on {host}" if pid and host else holder


class LeaseRepo:
    """Named leases, one holder each (the bot's `leader` lease: one bot polls and delivers per database)."""

    def __init__(self, db: Database, clock: Clock = time.time, monotonic: Clock = time.monotonic) -> None:
        self._db = db
        self._now = clock
        self._watch = LeaseWatch(monotonic)

    async def acquire(self, name: str, holder: str, lease_s: float) -> str | None:
        """Take or renew the lease; None when `holder` has it now, else the holder that keeps it.

        A lease is free when it was released, when its holder is provably dead (it ran on this machine and its
        process is gone), or when it has stayed expired and un-renewed for a whole period of our own clock."""
        async with self._db.transaction() as conn:
            row = await (await conn.execute("SELECT * FROM leases WHERE name = ?", (name,))).fetchone()
            now = self._now()
            if row is not None and row["holder"] not in (None, holder) and not self._free(row, now):
                return str(row["holder"])
            await conn.execute(
                """INSERT INTO leases (name, holder, expires_at, lease_s, renewals, updated_at)
                   VALUES (?, ?, ?, ?, 1, ?)
                   ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at,
                       lease_s = excluded.lease_s, renewals = leases.renewals + 1, updated_at = excluded.updated_at""",
                (name, holder, now + lease_s, lease_s, now),
            )
        self._watch.forget(name)
        return None

    def _free(self, row, now: float) -> bool:
        if owner_gone(str(row["holder"]).partition("@")[0]) is True:
            return True
        if row["expires_at"] is None or row["expires_at"] >= now:
            self._watch.forget(row["name"])
            return False
        return self._watch.lapsed(row["name"], (row["holder"], row["renewals"]), float(row["lease_s"]))

    async def renew(self, name: str, holder: str, lease_s: float) -> bool:
        """Extend our lease; False if it is no longer ours (another process took it)."""
        now = self._now()
        changed = await self._db.execute(
            """UPDATE leases SET expires_at = ?, lease_s = ?, renewals = renewals + 1, updated_at = ?
               WHERE name = ? AND holder = ?""",
            (now + lease_s, lease_s, now, name, holder),
        )
        return changed == 1

    async def release(self, name: str, holder: str) -> None:
        await self._db.execute(
            "UPDATE leases SET holder = NULL, expires_at = NULL, updated_at = ? WHERE name = ? AND holder = ?",
            (self._now(), name, holder),
        )

    async def holder(self, name: str) -> str | None:
        row = await self._db.fetchone("SELECT holder FROM leases WHERE name = ?", (name,))
        return str(row["holder"]) if row and row["holder"] else None


__all__ = ["LeaseRepo", "LeaseWatch", "describe_holder", "new_holder_id"]
