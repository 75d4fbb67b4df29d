"""Leases against real OpenBao: one holder at a time, take-over after expiry, fencing, renewal
at every check, and the margins and measure that keep skewed clocks from sharing a lease."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from rotator.adapters.lease import FencedStore, Lease, LeaseLost, LeaseRecord
from rotator.adapters.vault import VaultStore
from rotator.core.ports import VersionedData


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


class Counting:
    """A store that counts the calls it passes on."""

    def __init__(self, inner: VaultStore) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def read(self, rel: str) -> VersionedData | None:
        self.calls.append(f"read {rel}")
        return self.inner.read(rel)

    def write(self, rel: str, data: Mapping[str, Any], *, cas: int) -> int:
        self.calls.append(f"write {rel}")
        return self.inner.write(rel, data, cas=cas)

    def read_version(self, rel: str, version: int) -> VersionedData | None:
        self.calls.append(f"read {rel}@{version}")
        return self.inner.read_version(rel, version)

    def destroy_versions(self, rel: str, versions: Iterable[int]) -> None:
        self.calls.append(f"destroy {rel}")
        self.inner.destroy_versions(rel, versions)


def test_every_acquire_renews_the_whole_lease_with_one_write(vault_store: VaultStore) -> None:
    """A holder renews at every check, however much is left, so a check starts with the
    whole lease ahead of it; the renewal is one check-and-set write, no read."""
    clock = Clock()
    store = Counting(vault_store)
    a = Lease(store, "alpha", holder="a", ttl=timedelta(seconds=10), clock=clock)
    assert a.acquire()
    first = vault_store.current_version("alpha/lease")
    clock.advance(1)
    store.calls.clear()
    assert a.acquire()
    assert store.calls == ["write alpha/lease"]
    assert vault_store.current_version("alpha/lease") == first + 1
    record = LeaseRecord.parse(vault_store.read("alpha/lease").data)  # type: ignore[union-attr]
    assert record is not None and record.expires_at == clock.now + timedelta(seconds=10)
    assert record.acquired_at == clock.now - timedelta(seconds=1), "held since the first take"


def test_a_lease_written_over_is_lost_at_the_next_check(vault_store: VaultStore) -> None:
    """Overwritten behind the holder's back: its next acquire() says so (lease.lost) and
    answers False, and its writes are refused."""
    clock = Clock()
    a = lease(vault_store, "a", clock, ttl=10)
    assert a.acquire()
    clock.advance(1)
    v = vault_store.read("alpha/lease")
    assert v is not None and v.data is not None
    vault_store.write("alpha/lease", {**v.data, "holder": "b"}, cas=v.version)
    with capture_logs() as events:
        assert not a.acquire()
    assert [e["event"] for e in events] == ["lease.lost"] and events[0]["holder"] == "b"
    with pytest.raises(LeaseLost):
        FencedStore(vault_store, a).write("alpha/state", {"x": 1}, cas=0)


def test_both_sides_of_a_lease_keep_the_skew_margin(vault_store: VaultStore) -> None:
    """A holder stops a tenth of the lease before its expiry; a taker starts a tenth after:
    two clocks each less than that off never both hold it."""
    clock = Clock()
    a, b = lease(vault_store, "a", clock, ttl=10), lease(vault_store, "b", clock, ttl=10)
    assert a.acquire()
    clock.advance(8.9)
    assert a.ensure() == timedelta(seconds=0.1), "what is left to act in"
    clock.advance(0.1)
    with pytest.raises(LeaseLost):
        a.ensure()
    clock.advance(1.9)  # 10.9 s: expired, but not by the margin yet
    assert not b.acquire()
    clock.advance(0.1)
    assert b.acquire()


def test_a_lease_found_running_out_is_renewed_at_the_next_check(vault_store: VaultStore) -> None:
    """Refused for being nearly over, a lease nobody took is renewed by the next acquire()
    (no standing by until it has expired)."""
    clock = Clock()
    a = lease(vault_store, "a", clock, ttl=10)
    assert a.acquire()
    clock.advance(9.5)
    with pytest.raises(LeaseLost, match="running out"):
        a.ensure()
    assert a.acquire() and a.ensure() == timedelta(seconds=9)


def test_a_released_lease_is_free_at_once_even_to_a_clock_behind(vault_store: VaultStore) -> None:
    """A clean stop frees the lease whatever the taker's clock says (no expiry to wait out)."""
    clock, behind = Clock(), Clock()
    behind.advance(-0.9)  # within the 1 s margin of a 10 s lease
    a, b = lease(vault_store, "a", clock), lease(vault_store, "b", behind)
    assert a.acquire()
    a.release()
    assert b.acquire()


class Offset:
    """A clock-offset measure that says what the test tells it."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def beyond(self, tolerance: float) -> float | None:
        return self.offset if abs(self.offset) > tolerance else None


def test_a_clock_running_ahead_cannot_take_a_live_lease(vault_store: VaultStore) -> None:
    """B's clock runs 5 s ahead of Vault's (and A's): measured, it takes no lease and says
    so; unmeasured, the same clock would take A's live lease."""
    clock, ahead = Clock(), Clock()
    ahead.advance(5)
    a = lease(vault_store, "a", clock, ttl=10)
    b = Lease(
        vault_store,
        "alpha",
        holder="b",
        ttl=timedelta(seconds=10),
        clock=ahead,
        offset=Offset(-5.0),
    )
    assert a.acquire()
    clock.advance(6)
    ahead.advance(6)  # B reads 11 s past A's take: past expiry plus margin by its own clock
    with capture_logs() as events:
        assert not b.acquire()
        assert not b.acquire()
    skew = [e for e in events if e["event"] == "clock.skew_detected"]
    assert len(skew) == 1, "said once, not at every check"
    assert skew[0]["offset_s"] == -5.0 and skew[0]["tolerance_s"] == 1.0
    a.ensure()  # A still holds it
    blind = lease(vault_store, "b", ahead, ttl=10)
    assert blind.acquire(), "the danger is real: an unmeasured clock ahead takes it"


def test_a_holder_whose_clock_is_found_off_stops_acting(vault_store: VaultStore) -> None:
    """Skew found while holding: the next fenced write is refused, no lease is taken until
    the clock agrees again (clock.skew_cleared), then it is."""
    clock, offset = Clock(), Offset(0.0)
    a = Lease(
        vault_store, "alpha", holder="a", ttl=timedelta(seconds=10), clock=clock, offset=offset
    )
    assert a.acquire()
    offset.offset = 3.0
    with pytest.raises(LeaseLost):
        FencedStore(vault_store, a).write("alpha/state", {"x": 1}, cas=0)
    assert not a.acquire()
    offset.offset = 0.2
    clock.advance(11)
    with capture_logs() as events:
        assert a.acquire()
    assert "clock.skew_cleared" in [e["event"] for e in events]
