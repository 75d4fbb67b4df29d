"""Leases against real OpenBao: one holder at a time, take-over after expiry, fencing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rotator.adapters.lease import FencedStore, Lease, LeaseLost
from rotator.adapters.vault import VaultStore


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def lease(store: VaultStore, holder: str, clock: Clock, ttl: float = 10) -> Lease:
    return Lease(store, "alpha", holder=holder, ttl=timedelta(seconds=ttl), clock=clock)


def test_only_one_replica_holds_a_lease(vault_store: VaultStore) -> None:
    """Two replicas race: the first takes it, the second is refused while it is live."""
    clock = Clock()
    a, b = lease(vault_store, "a", clock), lease(vault_store, "b", clock)
    assert a.acquire() and a.held
    assert not b.acquire() and not b.held
    clock.advance(5)
    assert a.acquire(), "the holder renews"
    assert not b.acquire()


def test_expired_lease_is_taken_over_and_old_holder_is_fenced(vault_store: VaultStore) -> None:
    """A holder that stops renewing loses the lease at expiry; its writes are refused."""
    clock = Clock()
    a, b = lease(vault_store, "a", clock), lease(vault_store, "b", clock)
    assert a.acquire()
    fenced_a = FencedStore(vault_store, a)
    assert fenced_a.write("alpha/state", {"x": 1}, cas=0) == 1
    clock.advance(11)
    assert b.acquire(), "expired lease is free"
    with pytest.raises(LeaseLost):
        fenced_a.write("alpha/state", {"x": 2}, cas=1)
    current = vault_store.read("alpha/state")
    assert current is not None and current.data == {"x": 1}
    assert not a.acquire(), "b holds a live lease now"
    assert FencedStore(vault_store, b).write("alpha/state", {"x": 3}, cas=1) == 2


def test_fencing_refuses_a_write_after_expiry_even_before_takeover(vault_store: VaultStore) -> None:
    """An expired holder may not write even if nobody has taken the lease yet."""
    clock = Clock()
    a = lease(vault_store, "a", clock)
    assert a.acquire()
    clock.advance(10)
    with pytest.raises(LeaseLost):
        FencedStore(vault_store, a).write("alpha/state", {"x": 1}, cas=0)
    assert vault_store.read("alpha/state") is None


def test_release_frees_the_lease_at_once(vault_store: VaultStore) -> None:
    """A clean shutdown releases: another replica takes it without waiting for expiry."""
    clock = Clock()
    a, b = lease(vault_store, "a", clock), lease(vault_store, "b", clock)
    assert a.acquire()
    a.release()
    assert not a.held
    assert b.acquire()


def test_overwritten_lease_is_lost_even_if_it_names_us(vault_store: VaultStore) -> None:
    """If the record's version moved on behind our back, we no longer hold it."""
    clock = Clock()
    a = lease(vault_store, "a", clock)
    assert a.acquire()
    v = vault_store.read("alpha/lease")
    assert v is not None and v.data is not None
    vault_store.write("alpha/lease", dict(v.data), cas=v.version)  # same content, new version
    with pytest.raises(LeaseLost):
        a.ensure()


def test_garbage_lease_record_counts_as_free(vault_store: VaultStore) -> None:
    """A lease record edited into nonsense does not wedge the account forever."""
    clock = Clock()
    vault_store.write("alpha/lease", {"holder": "x", "expires_at": "soon"}, cas=0)
    a = lease(vault_store, "a", clock)
    assert a.acquire()


def test_sub_second_lease_is_not_born_expired(vault_store: VaultStore) -> None:
    """A 0.9 s lease taken at .05 s past a second still holds: deadlines keep microseconds."""
    clock = Clock()
    clock.now = clock.now.replace(microsecond=50_000)
    a = lease(vault_store, "a", clock, ttl=0.9)
    assert a.acquire()
    clock.advance(0.8)
    a.ensure()  # does not raise
    clock.advance(0.2)
    with pytest.raises(LeaseLost):
        a.ensure()


def test_renewal_is_skipped_in_the_first_half_of_the_lease(vault_store: VaultStore) -> None:
    """An idle holder renews only once half its lease has run; until then acquire() costs
    Vault nothing, and fencing still guards every write."""
    clock = Clock()
    a = lease(vault_store, "a", clock, ttl=10)
    assert a.acquire()
    first = vault_store.current_version("alpha/lease")
    clock.advance(4)
    assert a.acquire()
    assert vault_store.current_version("alpha/lease") == first, "no renewal yet"
    clock.advance(2)
    assert a.acquire()
    assert vault_store.current_version("alpha/lease") == first + 1, "renewed past half-life"
    # Overwritten behind our back: the fast path still says held, but writes are refused.
    v = vault_store.read("alpha/lease")
    assert v is not None and v.data is not None
    vault_store.write("alpha/lease", {**v.data, "holder": "b"}, cas=v.version)
    assert a.acquire()
    with pytest.raises(LeaseLost):
        FencedStore(vault_store, a).write("alpha/state", {"x": 1}, cas=0)
