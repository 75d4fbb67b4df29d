"""Fencing reaches Encord: a replica whose lease moved on adds and deletes no key there.

On simulated time (:class:`tests.fakes.FakeClock`) over the in-memory Vault and Encord of
:mod:`tests.fakes`, with real :class:`~rotator.adapters.lease.Lease` objects: the issue's
reproduction (a replica paused in verify past its lease, another takes over and promotes the
key, the first resumes and deletes it), and :class:`FencedRegistry` call by call.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import pytest
from structlog.testing import capture_logs

from rotator.adapters import bounded_http as transport
from rotator.adapters.lease import (
    FencedRegistry,
    FencedStore,
    Lease,
    LeaseLost,
    fenced_registries,
)
from rotator.core import keys
from rotator.core.engine import Engine
from rotator.core.errors import RegistryUnavailable
from rotator.core.keys import KeyPair
from rotator.core.ports import AwaitingPerson
from rotator.core.vocab import BearerToken, GeneratedKey, KnownKey, RemoteKey
from tests.fakes import World, make_world

TTL = timedelta(minutes=15)


def lease(world: World, holder: str) -> Lease:
    return Lease(world.store, "alpha", holder=holder, ttl=TTL, clock=world.clock)


def fenced_engine(world: World, held: Lease, sleep: object = None) -> Engine:
    """An engine as the daemon wires it: Vault writes and Encord changes fenced by ``held``."""
    return Engine(
        account=world.account,
        store=FencedStore(world.store, held),
        registry_factory=fenced_registries(world.encord.registry, held),
        policy=world.policy,
        clock=world.clock,
        sleep=sleep or world.clock.sleep,  # type: ignore[arg-type]
        verify_attempts=5,
        verify_delay=0.5,
    )


def test_a_replica_paused_in_verify_cannot_delete_the_key_another_promoted() -> None:
    """A pauses in verify past its lease; B takes the account over, verifies and promotes
    A's new key; A resumes, its own verifies fail, and it tries to delete that key: refused
    (lease.lost). The key consumers hold stays at Encord and authenticates."""
    world = make_world()
    current = world.state().kind("ssh-key").current
    assert current is not None
    p = world.policy
    world.clock.advance(current.issued_at + p.key_ttl - p.rotate_before - world.clock())
    a, b = lease(world, "a"), lease(world, "b")
    engine_b = fenced_engine(world, b)
    world.encord.propagation_failures = 1  # A's first verify: 401, then a back-off sleep
    paused: list[str] = []

    def a_sleeps(seconds: float) -> None:
        world.clock.sleep(seconds)
        if paused:
            return
        pending = world.state().kind("ssh-key").pending
        assert pending is not None and pending.key_id is not None
        paused.append(pending.key_id)
        world.clock.advance(TTL * 1.2)  # A is stopped: its lease runs out
        assert b.acquire(), "B takes the expired lease over"
        result = engine_b.check()
        assert "rotated" in result.outcomes, "B finished A's rotation"
        world.encord.never_verify.add(pending.key_id)  # A's own verifies keep failing

    assert a.acquire()
    with capture_logs() as events, pytest.raises(LeaseLost):
        fenced_engine(world, a, sleep=a_sleeps).check()
    (key_id,) = paused
    world.encord.never_verify.discard(key_id)  # it was A's view only: the key works
    newest = world.store.latest("alpha/ssh-key")
    assert newest is not None and newest.get("key_id") == key_id
    assert key_id in world.encord.key_ids(world.account.hash), "the promoted key was deleted"
    assert world.encord.authenticates(world.account.hash, newest["private_key"])
    assert [e.key_id for e in world.encord.deleted] == []
    assert "key.verify_retry" in [e["event"] for e in events]


class Recording:
    """A registry that records which calls reached it."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.pair = keys.generate()

    def list_keys(self, known: Sequence[KnownKey]) -> list[RemoteKey]:
        self.calls.append("list_keys")
        return []

    def upload_key(self, title: str, public_line: str) -> RemoteKey | AwaitingPerson:
        self.calls.append("upload_key")
        return AwaitingPerson("noted")

    def generate_key(self, title: str) -> GeneratedKey | AwaitingPerson:
        self.calls.append("generate_key")
        return AwaitingPerson("noted")

    def delete_key(self, key_hash: str) -> AwaitingPerson | None:
        self.calls.append("delete_key")
        return None

    def verify(self, key: KeyPair) -> None:
        self.calls.append("verify")

    def bearer_token(self) -> BearerToken:
        self.calls.append("bearer_token")
        return BearerToken(token="t")  # noqa: S106 - a placeholder, not a secret

    def close(self) -> None:
        self.calls.append("close")


def test_every_change_at_encord_is_refused_once_the_lease_moved_on() -> None:
    """upload, generate and delete reach Encord while the lease holds and not after it was
    taken over; listing, verifying, minting and closing change nothing and pass."""
    world = make_world()
    a, b = lease(world, "a"), lease(world, "b")
    inner = Recording()
    fenced = FencedRegistry(inner, a)
    assert a.acquire()
    fenced.upload_key("t", inner.pair.public_line)
    fenced.generate_key("t")
    fenced.delete_key("h")
    assert inner.calls == ["upload_key", "generate_key", "delete_key"]
    world.clock.advance(TTL * 1.2)
    assert b.acquire()
    inner.calls.clear()
    for change in (
        lambda: fenced.upload_key("t", inner.pair.public_line),
        lambda: fenced.generate_key("t"),
        lambda: fenced.delete_key("h"),
    ):
        with pytest.raises(LeaseLost):
            change()
    assert inner.calls == []
    fenced.list_keys(())
    fenced.verify(inner.pair)
    fenced.bearer_token()
    fenced.close()
    assert inner.calls == ["list_keys", "verify", "bearer_token", "close"]


def test_a_change_is_refused_in_the_last_tenth_of_the_lease() -> None:
    """Unmoved but nearly over (less than the skew margin left): no change is started."""
    world = make_world()
    a = lease(world, "a")
    inner = Recording()
    assert a.acquire()
    world.clock.advance(TTL * 0.95)
    with pytest.raises(LeaseLost):
        FencedRegistry(inner, a).delete_key("h")
    assert inner.calls == []


class Slow(Recording):
    """Its delete takes ``seconds`` of monotonic time, then fails as a cut-off call does."""

    def __init__(self, now: list[float], seconds: float) -> None:
        super().__init__()
        self.now = now
        self.seconds = seconds
        self.deadlines: list[float | None] = []

    def delete_key(self, key_hash: str) -> AwaitingPerson | None:
        self.deadlines.append(transport._deadline.get())
        self.now[0] += self.seconds
        raise RegistryUnavailable("Encord delete_key: request failed (WriteTimeout)")


def test_a_change_runs_under_the_leases_end_and_a_cut_off_one_is_a_lost_lease() -> None:
    """The Encord call's socket deadline is the lease's end (less the margin), so a paused
    replica sends nothing after it; a call that failed past it is reported as a lost lease,
    not as an Encord outage."""
    world = make_world()
    a = lease(world, "a")
    assert a.acquire()
    now = [1000.0]
    slow = Slow(now, seconds=TTL.total_seconds())
    fenced = FencedRegistry(slow, a, monotonic=lambda: now[0])
    with pytest.raises(LeaseLost, match="ran out during delete_key"):
        fenced.delete_key("h")
    assert slow.deadlines == [1000.0 + (TTL * 0.9).total_seconds()]
    quick = FencedRegistry(Slow(now, seconds=1), a, monotonic=lambda: now[0])
    world.clock.advance(timedelta(seconds=1))
    with pytest.raises(RegistryUnavailable):
        quick.delete_key("h")  # failed well inside the lease: an outage, as before


def test_nested_deadlines_only_shorten() -> None:
    """A call's own deadline inside a lease's keeps the sooner of the two."""
    with transport.deadline(10.0):
        with transport.deadline(20.0):
            assert transport._deadline.get() == 10.0
        with transport.deadline(5.0):
            assert transport._deadline.get() == 5.0
        assert transport._deadline.get() == 10.0
    assert transport._deadline.get() is None
