"""The leader lease: one holder at a time, released or dead holders replaced at once, others only after the new
holder watched the lease lapse for a whole period on its own clock (a wall-clock jump takes nothing)."""

from __future__ import annotations

import subprocess

import pytest

from storage import Storage
from storage.leases import describe_holder, new_holder_id
from storage.processes import owner_tag
from tests.helpers import ManualClock

LEASE = 15.0


@pytest.fixture
def store(clocked_store: Storage) -> Storage:
    return clocked_store


async def test_one_holder_at_a_time_and_a_release_frees_the_lease_at_once(store: Storage) -> None:
    first, second = new_holder_id(), new_holder_id()
    assert await store.leases.acquire("leader", first, LEASE) is None
    assert await store.leases.acquire("leader", second, LEASE) == first
    assert await store.leases.renew("leader", first, LEASE)
    await store.leases.release("leader", first)
    assert await store.leases.acquire("leader", second, LEASE) is None
    assert not await store.leases.renew("leader", first, LEASE)  # the old holder learns it lost the lease


async def test_a_holder_that_died_on_this_machine_is_replaced_at_once(store: Storage) -> None:
    finished = subprocess.Popen(["true"])
    finished.wait()
    dead = f"{owner_tag(finished.pid)}-abcdef@thishost"
    assert await store.leases.acquire("leader", dead, LEASE) is None
    assert await store.leases.acquire("leader", new_holder_id(), LEASE) is None
    assert describe_holder(dead) == f"pid {finished.pid} on thishost"


async def test_a_holder_elsewhere_is_replaced_only_after_its_lease_lapsed_for_a_whole_period_of_our_clock(
    store: Storage, clock: ManualClock
) -> None:
    elsewhere = "0123456789abcdef-4242-abcdef@otherhost"  # another host: its pid cannot be checked from here
    me = new_holder_id()
    assert await store.leases.acquire("leader", elsewhere, LEASE) is None
    clock.advance(LEASE + 1)
    assert await store.leases.acquire("leader", me, LEASE) == elsewhere  # expired: now we start watching
    clock.advance(LEASE - 1)
    assert await store.leases.acquire("leader", me, LEASE) == elsewhere
    clock.advance(1)
    assert await store.leases.acquire("leader", me, LEASE) is None


async def test_a_wall_clock_jump_takes_no_lease_from_a_holder_that_keeps_renewing(
    store: Storage, clock: ManualClock
) -> None:
    elsewhere = "0123456789abcdef-4242-abcdef@otherhost"
    assert await store.leases.acquire("leader", elsewhere, LEASE) is None
    clock.jump(3600)
    me = new_holder_id()
    for _ in range(6):
        assert await store.leases.acquire("leader", me, LEASE) == elsewhere
        clock.advance(LEASE / 3)
        assert await store.leases.renew("leader", elsewhere, LEASE)
