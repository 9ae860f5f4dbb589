"""The leader lease: one holder at a time, handed over when the holder stops or dies."""

from __future__ import annotations

import threading
import time

import pytest

from skalds.memory import MemoryCache
from skalds_controller.lease import Lease, lease_key
from tests.helpers import SwitchableCache, wait_for


def test_of_two_controllers_only_the_first_holds_the_lease():
    cache = MemoryCache()
    first, second = Lease(cache, "dispatcher", "c1"), Lease(cache, "dispatcher", "c2")
    assert first.refresh() and not second.refresh()
    assert first.held and not second.held
    assert second.current_holder() == "c1" and cache.get(lease_key("dispatcher")) == "c1"
    assert first.refresh(), "the holder renews"


def test_separate_names_are_separate_leases():
    cache = MemoryCache()
    assert Lease(cache, "monitor", "c1").refresh()
    assert Lease(cache, "dispatcher", "c2").refresh()


def test_a_lease_handed_back_is_taken_by_the_other_at_once():
    cache = MemoryCache()
    leases = [Lease(cache, "dispatcher", f"c{i}") for i in range(2)]
    for lease in leases:
        lease.start()
    try:
        holder = wait_for(lambda: next((x for x in leases if x.held), None))
        other = next(x for x in leases if x is not holder)
        holder.stop()
        started = time.monotonic()
        wait_for(lambda: other.held, timeout=3)
        assert time.monotonic() - started < 1.2  # one renewal period, not a TTL
    finally:
        for lease in leases:
            lease.stop()


def test_a_holder_that_dies_loses_the_lease_after_its_ttl():
    cache = MemoryCache()
    dead = Lease(cache, "dispatcher", "dead", ttl=1.0, settle=0.05)
    assert dead.refresh()  # then never renews: the process died
    heir = Lease(cache, "dispatcher", "heir", ttl=1.0, settle=0.05)
    changes: list[bool] = []
    heir.on_change(changes.append)
    heir.start()
    try:
        time.sleep(0.5)
        assert not heir.held
        wait_for(lambda: heir.held, timeout=5)
        assert not dead.held and changes == [True]
    finally:
        heir.stop()


def test_racing_controllers_never_hold_the_lease_together():
    cache = MemoryCache()
    leases = [Lease(cache, "dispatcher", f"c{i}", ttl=0.6, settle=0.05) for i in range(6)]
    overlaps = 0
    held_at_all: set[str] = set()
    stop = threading.Event()

    def churn() -> None:  # holders step down and come back a round later: many handovers
        resting: list[int] = []
        while not stop.wait(0.2):
            for i in resting:
                leases[i] = Lease(cache, "dispatcher", leases[i].holder, ttl=0.6, settle=0.05)
                leases[i].start()
            resting = [i for i, lease in enumerate(leases) if lease.held]
            for i in resting:
                leases[i].stop()

    for lease in leases:
        lease.start()
    churner = threading.Thread(target=churn)
    churner.start()
    try:
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            holders = [x.holder for x in leases if x.held]
            overlaps += len(holders) > 1
            held_at_all.update(holders)
            time.sleep(0.002)
    finally:
        stop.set()
        churner.join()
        for lease in leases:
            lease.stop()
    assert overlaps == 0
    assert len(held_at_all) > 1, "the lease should have changed hands"


def test_a_cache_that_does_not_answer_means_not_leading():
    cache = SwitchableCache()
    lease = Lease(cache, "dispatcher", "c1")
    assert lease.refresh()
    cache.down = True
    assert not lease.refresh() and not lease.held
    assert lease.current_holder() is None
    cache.down = False
    assert lease.refresh()


def test_the_settle_time_must_be_well_under_the_ttl():
    with pytest.raises(ValueError, match="well under its TTL"):
        Lease(MemoryCache(), "dispatcher", "c1", ttl=0.1, settle=0.1)
