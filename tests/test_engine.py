"""The rotation protocol over fakes: lifecycle, faults, and a crash between every two calls.

Every test here runs on simulated time (:class:`tests.fakes.FakeClock`) against the in-memory
Vault and Encord of :mod:`tests.fakes`. :class:`Auditor` checks the invariants of the issue
over the whole history the fakes keep:

1. never more than cap keys at Encord;
2. the newest version of every consumer path authenticates at Encord;
3. the current key is never revoked;
4. no key is revoked before its grace is over;
5. after a completed check (reconciliation) no owned key older than GRACE is orphaned;
6. at rest, no readable version of the record or of a consumer path holds a private key the
   record no longer holds (:func:`assert_only_live_keys_readable`);

plus: each rotation (one title) put at most one key at Encord, and the rotator never deletes
a key it does not own.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from rotator.core import keys
from rotator.core.engine import CheckResult, Engine
from rotator.core.errors import (
    AccessDenied,
    AmbiguousWrite,
    RegistryUnavailable,
    RotatorError,
    TransientError,
)
from rotator.core.policy import Blocked, Rotate, Wait, owned_title_prefix
from rotator.core.ports import AwaitingPerson
from rotator.core.state import STATE_NAME, AccountState, from_dict
from rotator.core.vocab import KEY_KINDS, KnownKey, RemoteKey
from tests.crash import SimulatedCrash
from tests.fakes import FakeRegistry, World, default_policy, make_world

PREFIX = owned_title_prefix(default_policy().instance, "alpha")
Event = MutableMapping[str, Any]
DAY = timedelta(days=1)
MIN = timedelta(minutes=1)


# --- the invariants ---------------------------------------------------------------------------


class Auditor:
    """Checks the invariants against everything the fakes ever held; incremental, so cheap."""

    def __init__(self, world: World) -> None:
        self.world = world
        self._states: dict[int, tuple[int, AccountState]] = {}  # version -> (seq, state)
        self._deletions_checked = 0
        self.checks = 0

    @property
    def acct(self) -> str:
        return self.world.account.hash

    def states(self) -> list[tuple[int, AccountState]]:
        for v in self.world.store.history(self.world.rel(STATE_NAME)):
            if v.version not in self._states:
                self._states[v.version] = (v.seq, from_dict(v.data, v.version, account="alpha"))
        return [self._states[k] for k in sorted(self._states)]

    def check(self, *, completed: bool) -> None:
        """Every invariant that holds at any moment; with ``completed``, those of a finished
        check too (nothing pending, no orphan, record and Encord agree, bearer usable)."""
        self.checks += 1
        world, enc, acct = self.world, self.world.encord, self.acct
        cap = enc.accounts[acct].cap
        # 1. Never more than cap keys (the fake does not refuse in these runs: it counts).
        assert enc.high_water.get(acct, 0) <= cap, f"{enc.high_water[acct]} keys > cap {cap}"
        # 2. The newest version of every consumer path authenticates at Encord.
        for kind in KEY_KINDS:
            data = world.store.latest(world.rel(kind))
            if data is None:
                continue
            assert enc.authenticates(acct, data["private_key"]), f"{kind}: newest fails"
            assert keys.load_private(data["private_key"]).key_id == data["key_id"]
        # 3. The current key is never revoked: every current key is still at Encord...
        states = self.states()
        latest = states[-1][1] if states else AccountState()
        remote_ids = enc.key_ids(acct)
        for name, ks in latest.kinds.items():
            assert ks.current is None or ks.current.key_id in remote_ids, f"{name} current gone"
        # ... and no deletion, ever, hit a current or newest-in-Vault key or one in its grace.
        self._check_deletions(states)
        # Each rotation (title) put at most one key at Encord.
        titles = [e.title for e in enc.created if e.title.startswith(PREFIX)]
        assert len(titles) == len(set(titles)), "a rotation registered two keys"
        if completed:
            self._check_completed(latest)

    def _check_deletions(self, states: list[tuple[int, AccountState]]) -> None:
        world, enc = self.world, self.world.encord
        grace = world.policy.grace
        ever_owned: set[str] = set()
        for _, st in states:
            ever_owned |= st.owned_key_ids()
        for e in enc.deleted[self._deletions_checked :]:
            if e.by != "rotator":
                continue
            assert e.title.startswith(PREFIX) or e.key_id in ever_owned, "deleted a foreign key"
            before = [st for seq, st in states if seq < e.seq]
            if before:
                for kind, ks in before[-1].kinds.items():
                    assert ks.current is None or ks.current.key_id != e.key_id, (
                        f"revoked the current {kind} key"
                    )
            for kind in KEY_KINDS:
                hist = world.store.history(world.rel(kind))
                older = [v for v in hist if v.seq < e.seq]
                assert not older or older[-1].data is None or (
                    older[-1].data.get("key_id") != e.key_id
                ), f"revoked the key of the newest {kind} version"
                for i, v in enumerate(hist):
                    if v.data is not None and v.data.get("key_id") == e.key_id:
                        successor = hist[i + 1]
                        assert e.at >= successor.created_time + grace, (
                            f"{kind} key revoked {successor.created_time + grace - e.at} "
                            "before its grace was over"
                        )
        self._deletions_checked = len(enc.deleted)

    def _check_completed(self, latest: AccountState) -> None:
        world, enc, acct = self.world, self.world.encord, self.acct
        remote = enc.keys_of(acct)
        owned = latest.owned_key_ids()
        for kind, ks in latest.kinds.items():
            assert ks.pending is None, f"{kind} rotation left pending by a completed check"
            for key in ks.retiring:
                assert key.key_id in {k.key_id for k in remote}, "record names a deleted key"
        # Orphans younger than GRACE are kept on purpose (a consumer may hold one).
        old_enough = world.clock.now() - world.policy.grace
        orphans = [
            k.title
            for k in remote
            if k.title.startswith(PREFIX) and k.key_id not in owned and k.created_at <= old_enough
        ]
        assert not orphans, f"orphaned owned keys: {orphans}"
        for kind in KEY_KINDS:
            hist = [v.data["key_id"] for v in world.store.history(world.rel(kind)) if v.data]
            repeats = [a for a, b in zip(hist, hist[1:], strict=False) if a == b]
            assert not repeats, f"{kind}: one promotion written to Vault twice"
            self._check_grace_deadlines(kind, latest)
        if world.policy.bearer and latest.signer() is not None:
            token = world.store.latest(world.rel("bearer-token"))
            assert token is not None and enc.token_valid(acct, token["token"]), "bearer unusable"

    def _check_grace_deadlines(self, kind: str, latest: AccountState) -> None:
        """Each retiring key's grace ends exactly GRACE after its successor's first Vault write."""
        hist = self.world.store.history(self.world.rel(kind))
        for key in latest.kind(kind).retiring:
            held = [i for i, v in enumerate(hist) if v.data and v.data["key_id"] == key.key_id]
            assert held and held[-1] + 1 < len(hist), "a retiring key was never superseded"
            deadline = hist[held[-1] + 1].created_time + self.world.policy.grace
            assert key.retire_after is not None
            # Exactly GRACE after the write, rounded up to the record's whole seconds.
            assert timedelta(0) <= key.retire_after - deadline < timedelta(seconds=1)

    def assert_converged(self) -> None:
        """The account at rest: each configured kind has its current key in Vault and at
        Encord, nothing retiring, and Encord holds no owned key but those."""
        latest = self.states()[-1][1]
        currents = set()
        for kind in self.world.policy.kinds:
            ks = latest.kind(kind)
            assert ks.current is not None, f"no current {kind}"
            assert ks.retiring == (), f"{kind} still retiring keys"
            data = self.world.store.latest(self.world.rel(kind))
            assert data is not None and data["key_id"] == ks.current.key_id
            currents.add(ks.current.key_id)
        owned = latest.owned_key_ids()
        owned_remote = {
            k.key_id
            for k in self.world.encord.keys_of(self.acct)
            if k.key_id in owned or k.title.startswith(PREFIX)
        }
        assert owned_remote == currents
        assert_only_live_keys_readable(self.world)

    def finish(self, runner: Runner) -> None:
        """Let the account come to rest: settle, let every grace run out, settle, converge."""
        runner.settle()
        self.world.clock.advance(self.world.policy.grace + MIN)
        runner.settle()
        self.assert_converged()


def assert_only_live_keys_readable(world: World) -> None:
    """Every version a reader can still get, of the record and of every consumer path, holds
    only private keys the newest record holds (pending, current, retiring): what was let go
    was destroyed. Checked with the key ids, so a failure names no secret."""
    live = set(private_keys_in(STATE_NAME, world.store.latest(world.rel(STATE_NAME))))
    for name in (STATE_NAME, *KEY_KINDS):
        for v in world.store.readable(world.rel(name)):
            stale = {kid for text, kid in private_keys_in(name, v.data).items() if text not in live}
            assert not stale, f"{name} version {v.version} still holds let-go keys {stale}"


def private_keys_in(name: str, data: dict[str, Any] | None) -> dict[str, str | None]:
    """The private keys a stored version holds (text -> key id): a record's pending, current
    and retiring keys, or a consumer path's key."""
    if data is None:
        return {}
    if name != STATE_NAME:
        return {data["private_key"]: data.get("key_id")} if "private_key" in data else {}
    found: dict[str, str | None] = {}
    for ks in from_dict(data, 1, account="alpha").kinds.values():
        for record in (ks.current, *ks.retiring):
            if record is not None:
                found[record.private_key] = record.key_id
        if ks.pending is not None and ks.pending.private_key:
            found[ks.pending.private_key] = ks.pending.key_id
    return found


def secrets_of(world: World) -> list[str]:
    """Every private key and bearer token the run produced (from the fakes' full history)."""
    found: set[str] = set()
    for rel, versions in world.store.paths.items():
        for v in versions:
            data = v.data or {}
            if rel.endswith("/state"):
                st = from_dict(data, v.version, account="alpha")
                for ks in st.kinds.values():
                    recs = [ks.current, *ks.retiring]
                    found |= {r.private_key for r in recs if r is not None}
                    if ks.pending and ks.pending.private_key:
                        found.add(ks.pending.private_key)
            for name in ("private_key", "token"):
                if isinstance(data.get(name), str):
                    found.add(data[name])
    found |= set(world.encord.tokens)
    return sorted(found)


def assert_no_secret_logged(world: World, events: list[Event]) -> None:
    text = "\n".join(repr(e) for e in events)
    assert "PRIVATE KEY" not in text
    for secret in secrets_of(world):
        assert secret not in text
        for line in secret.splitlines():
            if len(line) >= 40 and "PRIVATE KEY" not in line:
                assert line not in text


# --- a runner that survives crashes -----------------------------------------------------------


def quiet(result: CheckResult) -> bool:
    return all(isinstance(a, Wait | Blocked) for a in result.actions)


@dataclass
class Runner:
    """Runs checks like the daemon would; a crash builds a NEW engine over the same fakes."""

    world: World
    auditor: Auditor
    engine: Engine
    events: list[Event] = field(default_factory=list)
    incomplete: int = 0
    restarts: int = 0

    def check(self, **kwargs: Any) -> CheckResult | None:
        try:
            result = self.engine.check(**kwargs)
        except SimulatedCrash:
            self.incomplete += 1
            self.restarts += 1
            self.auditor.check(completed=False)
            self.engine = self.world.engine()
            return None
        except TransientError:
            self.incomplete += 1
            self.auditor.check(completed=False)
            return None
        self.auditor.check(completed=True)
        return result

    def step(self, **kwargs: Any) -> CheckResult | None:
        """One scripted check; if it did not complete, run checks until the account is quiet."""
        result = self.check(**kwargs)
        if result is None:
            self.settle()
        return result

    def settle(self, limit: int = 40) -> None:
        for _ in range(limit):
            self.world.clock.advance(self.world.policy.check_interval)
            result = self.check()
            if result is not None and quiet(result):
                return
        raise AssertionError(f"no quiet check after {limit} checks")


@contextmanager
def running(world: World) -> Iterator[Runner]:
    with capture_logs() as events:
        runner = Runner(world, Auditor(world), world.engine(), events)
        yield runner
    assert_no_secret_logged(world, events)


def names(events: list[Event]) -> list[str]:
    return [str(e["event"]) for e in events]


def first(events: list[Event], name: str) -> Event:
    return next(e for e in events if e["event"] == name)


def due(world: World, kind: str = "ssh-key") -> timedelta:
    """How long from now until the current key of ``kind`` falls due."""
    current = world.state().kind(kind).current
    assert current is not None
    p = world.policy
    return current.issued_at + p.key_ttl - p.rotate_before - world.clock()


# --- lifecycle --------------------------------------------------------------------------------


def test_bootstrap_then_quiet_check() -> None:
    """Bootstrap adopts the admin's key into Vault and the record; a check then only mints a
    bearer token, and the next one does nothing."""
    world = make_world()
    assert world.bootstrap_key is not None
    state = world.state()
    current = state.kind("ssh-key").current
    assert current is not None and current.key_id == world.bootstrap_key.key_id
    assert current.expires_at == current.issued_at + timedelta(days=90)
    consumer = world.store.latest("alpha/ssh-key")
    assert consumer is not None and consumer["key_id"] == world.bootstrap_key.key_id
    with running(world) as r:
        first_check = r.check()
        assert first_check is not None and first_check.outcomes == ["bearer_minted"]
        assert first_check.keys_held == 1
        r.world.clock.advance(5 * MIN)
        second = r.check()
        assert second is not None and second.outcomes == [] and quiet(second)
        assert second.next_due == world.clock() + timedelta(minutes=40)  # bearer refresh
    assert world.encord.key_ids("sa-alpha") == {world.bootstrap_key.key_id}


def test_not_bootstrapped_account_does_nothing() -> None:
    """Without a bootstrapped key a check logs account.not_bootstrapped and calls nobody."""
    world = make_world(bootstrap=False)
    with capture_logs() as events:
        result = world.engine().check()
    assert result.outcomes == ["not_bootstrapped"]
    assert "account.not_bootstrapped" in names(events)
    assert world.store.writes == 0 and world.encord.call_log == []
    assert all(isinstance(a, Blocked) for a in world.engine().plan())


def test_rotation_when_due_grace_and_revocation() -> None:
    """A due key is replaced by a verified new one written to Vault first; the old one stays
    usable for exactly the grace period, counted from the Vault write, then is revoked."""
    world = make_world()
    old = world.bootstrap_key
    assert old is not None
    with running(world) as r:
        r.check()
        world.clock.advance(due(world) - MIN)
        not_yet = r.check()
        assert not_yet is not None and "rotated" not in not_yet.outcomes
        world.clock.advance(MIN)
        rotated_at = world.clock()
        result = r.check()
        assert result is not None
        assert result.outcomes == ["rotated", "bearer_minted"]
        state = world.state()
        ks = state.kind("ssh-key")
        assert ks.current is not None and ks.current.key_id != old.key_id
        assert ks.current.title.startswith(f"{PREFIX}{rotated_at:%Y%m%dT%H%M%S}Z")
        assert [k.key_id for k in ks.retiring] == [old.key_id]
        written = world.store.history("alpha/ssh-key")[-1]
        assert written.data is not None and written.data["key_id"] == ks.current.key_id
        assert ks.retiring[0].retire_after == written.created_time + timedelta(hours=24)
        assert ks.last is not None and ks.last.outcome == "rotated"
        assert ks.last.reason == "expires_in_14d"
        assert state.bearer is not None and state.bearer.minted_with == ks.current.key_id
        assert world.encord.authenticates("sa-alpha", old.private_openssh)  # in grace
        # The previous version of the consumer path is the old key, still readable.
        previous = world.store.history("alpha/ssh-key")[-2]
        assert previous.data is not None and previous.data["key_id"] == old.key_id
        started = first(r.events, "rotation.started")
        assert started["old_key_id"] == old.key_id
        finished = first(r.events, "rotation.finished")
        assert finished["outcome"] == "rotated" and finished["key_id"] == ks.current.key_id
        logged = names(r.events)
        order = logged[logged.index("rotation.started") :]
        order = [n for n in order if n.startswith(("key.", "vault.", "rotation."))]
        assert order[:5] == [
            "rotation.started",
            "key.registered",
            "key.verified",
            "vault.written",
            "rotation.finished",
        ]

        world.clock.advance(timedelta(hours=24) - MIN)
        in_grace = r.check()
        assert in_grace is not None and "revoked" not in in_grace.outcomes
        assert old.key_id in world.encord.key_ids("sa-alpha")
        world.clock.advance(MIN)
        revoked = r.check()
        assert revoked is not None and "revoked" in revoked.outcomes
        assert old.key_id not in world.encord.key_ids("sa-alpha")
        assert world.state().kind("ssh-key").retiring == ()
        assert first(r.events, "key.revoked")["key_id"] == old.key_id
        r.auditor.assert_converged()


def test_grace_is_never_cut_short_by_the_records_precision() -> None:
    """The record keeps whole seconds; a grace deadline falling mid-second is rounded up, so a
    check a fraction of a second before the true deadline revokes nothing."""
    world = make_world()
    world.encord.propagation_failures = 1  # one 0.5 s back-off: the Vault write is mid-second
    world.clock.advance(due(world))
    engine = world.engine()
    engine.check()
    old = world.state().kind("ssh-key").retiring[0]
    written = world.store.history("alpha/ssh-key")[-1].created_time
    assert written.microsecond == 500_000
    world.clock.advance(written + timedelta(hours=24) - world.clock() - timedelta(seconds=0.25))
    assert "revoked" not in engine.check().outcomes
    assert old.key_id in world.encord.key_ids("sa-alpha")
    world.clock.advance(timedelta(seconds=1))
    assert "revoked" in engine.check().outcomes


def test_bearer_minting_refresh_and_after_rotation() -> None:
    """The bearer token is minted on the first check, refreshed once within the margin, and
    re-minted with the new key right after a rotation."""
    world = make_world()
    with running(world) as r:
        r.check()
        token1 = world.store.latest("alpha/bearer-token")
        assert token1 is not None and world.encord.token_valid("sa-alpha", token1["token"])
        world.clock.advance(44 * MIN)
        r.check()
        assert world.store.latest("alpha/bearer-token") == token1
        world.clock.advance(MIN)
        refreshed = r.check()
        assert refreshed is not None and refreshed.outcomes == ["bearer_minted"]
        assert first(r.events, "bearer.minted")["reason"] == "no_token"
        assert [e["reason"] for e in r.events if e["event"] == "bearer.minted"][1] == (
            "expires_in_15m"
        )
        token2 = world.store.latest("alpha/bearer-token")
        assert token2 is not None and token2["token"] != token1["token"]
        r.check(force=frozenset({"ssh-key"}))
        state = world.state()
        current = state.kind("ssh-key").current
        assert current is not None and state.bearer is not None
        assert state.bearer.minted_with == current.key_id
        token3 = world.store.latest("alpha/bearer-token")
        assert token3 is not None
        assert world.encord.tokens[token3["token"]].minted_with == current.key_id


def test_cap_blocks_with_foreign_keys_and_consumers_stay() -> None:
    """With four human keys and the current one the account is full: nothing is created,
    rotation.blocked_by_cap is logged and recorded, the consumer keeps the working key; once
    a human frees a slot the rotation happens. Human keys are never touched."""
    world = make_world()
    humans = [world.add_foreign_key(f"break-glass {i}") for i in range(4)]
    with running(world) as r:
        world.clock.advance(due(world))
        before = world.store.latest("alpha/ssh-key")
        created = len(world.encord.created)
        result = r.check()
        assert result is not None and "blocked_by_cap" in result.outcomes
        assert "rotation.blocked_by_cap" in names(r.events)
        blocked = first(r.events, "rotation.blocked_by_cap")
        assert blocked["kind"] == "ssh-key" and blocked["detail"] == "5/5 keys held"
        assert len(world.encord.created) == created
        assert world.store.latest("alpha/ssh-key") == before
        last = world.state().kind("ssh-key").last
        assert last is not None and last.outcome == "blocked_by_cap"
        world.encord.remove_key("sa-alpha", humans[0].key_id)
        world.clock.advance(5 * MIN)
        unblocked = r.check()
        assert unblocked is not None and "rotated" in unblocked.outcomes
    assert {k.key_id for k in humans[1:]} <= world.encord.key_ids("sa-alpha")
    human_ids = {h.key_id for h in humans}
    assert not [e for e in world.encord.deleted if e.by == "rotator" and e.key_id in human_ids]


def test_cap_waits_for_grace_then_revokes_and_rotates_in_one_check() -> None:
    """A key in its grace is never deleted to make room: a forced rotation at the cap is
    blocked until the grace is over, then the old key is revoked and the new one made."""
    world = make_world()
    for i in range(3):
        world.add_foreign_key(f"human {i}")
    force = frozenset({"ssh-key"})
    with running(world) as r:
        r.check(force=force)  # 3 human + previous + current = 5
        assert len(world.encord.keys_of("sa-alpha")) == 5
        world.clock.advance(timedelta(hours=1))
        blocked = r.check(force=force)
        assert blocked is not None and "blocked_by_cap" in blocked.outcomes
        assert "rotated" not in blocked.outcomes
        world.clock.advance(timedelta(hours=23))
        result = r.check(force=force)
        assert result is not None
        assert result.outcomes[:2] == ["revoked", "rotated"]
        assert world.encord.high_water["sa-alpha"] == 5


def test_cap_reached_at_encord_after_listing_is_blocked_not_failed() -> None:
    """If humans fill the account between the listing and the upload, Encord's
    KEY_LIMIT_REACHED is recorded and logged as blocked_by_cap; nothing is left pending."""
    world = make_world()
    world.clock.advance(due(world))

    def racing_factory(account_hash: str, signer: keys.KeyPair) -> FakeRegistry:
        registry = world.encord.registry(account_hash, signer)
        listing = registry.list_keys

        def list_then_humans_arrive(known: Sequence[KnownKey] = ()) -> list[RemoteKey]:
            listed = listing(known)
            while len(world.encord.keys_of(account_hash)) < 5:
                world.add_foreign_key("racing human")
            return listed

        registry.list_keys = list_then_humans_arrive  # type: ignore[method-assign]
        return registry

    engine = Engine(
        account=world.account,
        store=world.store,
        registry_factory=racing_factory,
        policy=world.policy,
        clock=world.clock,
        sleep=world.clock.sleep,
    )
    with capture_logs() as events:
        result = engine.check()
    assert "blocked_by_cap" in result.outcomes
    assert world.encord.cap_rejections == 1 and world.encord.high_water["sa-alpha"] == 5
    ks = world.state().kind("ssh-key")
    assert ks.pending is None and ks.last is not None and ks.last.outcome == "blocked_by_cap"
    assert "rotation.blocked_by_cap" in names(events)
    assert world.store.latest("alpha/ssh-key") == world.store.history("alpha/ssh-key")[0].data


def test_orphans_deleted_foreign_and_other_accounts_kept() -> None:
    """An owned-titled key no record explains is deleted once GRACE old; keys titled by
    humans, for another account, by another deployment or in the old format are left alone."""
    world = make_world(cap=7)
    orphan = world.encord.add_key(
        "sa-alpha", keys.generate().public_line, f"{PREFIX}20291231T000000Z-abcdef"
    )
    beta = world.encord.add_key(
        "sa-alpha", keys.generate().public_line, "rotator:beta:20291231T000000Z-abcdef"
    )
    kept = [
        world.encord.add_key("sa-alpha", keys.generate().public_line, title).key_id
        for title in (
            "rotator:staging:alpha:20291231T000000Z-abcdef",
            "rotator:alpha:20291231T000000Z-abcdef",
        )
    ]
    human = world.add_foreign_key()
    world.clock.advance(world.policy.grace + MIN)
    with running(world) as r:
        result = r.check()
        assert result is not None and "orphan_deleted" in result.outcomes
        assert first(r.events, "key.orphan_deleted")["key_id"] == orphan.key_id
    ids = world.encord.key_ids("sa-alpha")
    assert orphan.key_id not in ids and {beta.key_id, human.key_id, *kept} <= ids


def test_api_key_alongside_ssh_key() -> None:
    """With both kinds configured, Encord generates the api-key (its private half stored in
    Vault), and both kinds rotate when due, each with its own consumer path."""
    world = make_world(default_policy(kinds=("ssh-key", "api-key")))
    with running(world) as r:
        world.clock.advance(DAY)  # the api-key is a day younger than the bootstrapped ssh-key
        first_check = r.check()
        assert first_check is not None
        assert [a for a in first_check.actions if isinstance(a, Rotate)] == [
            Rotate("api-key", "no_current_key")
        ]
        api = world.state().kind("api-key").current
        assert api is not None and api.origin == "generated"
        data = world.store.latest("alpha/api-key")
        assert data is not None and data["key_id"] == api.key_id
        assert world.encord.authenticates("sa-alpha", data["private_key"])
        assert [c[0] for c in world.encord.call_log].count("generate_key") == 1
        world.clock.advance(due(world, "ssh-key"))
        result = r.check()
        assert result is not None and result.outcomes.count("rotated") == 1  # api-key is young
        world.clock.advance(due(world, "api-key"))
        result = r.check()
        assert result is not None and result.outcomes.count("rotated") == 1
        assert world.state().kind("api-key").current != api
        r.auditor.finish(r)


def test_api_key_deleted_by_human_is_replaced() -> None:
    """A current api-key that a human deleted at Encord is replaced at the next check."""
    world = make_world(default_policy(kinds=("ssh-key", "api-key")))
    engine = world.engine()
    engine.check()
    api = world.state().kind("api-key").current
    assert api is not None
    world.encord.remove_key("sa-alpha", api.key_id)
    result = engine.check()
    assert Rotate("api-key", "current_missing_at_encord") in result.actions
    data = world.store.latest("alpha/api-key")
    assert data is not None and world.encord.authenticates("sa-alpha", data["private_key"])


class PersonAtTheUI(FakeRegistry):
    """The manual registrar's contract over the fake Encord: no listing (the keys the record
    knows are probed, each with a whoami signed by itself), and a person adds and deletes."""

    def list_keys(self, known: Sequence[KnownKey] = ()) -> list[RemoteKey]:
        found = []
        for k in known:
            try:
                self.verify(keys.load_private(k.private_openssh))
            except AccessDenied:
                continue
            hash_ = k.key_hash or f"manual:{k.key_id[:16]}"
            found.append(RemoteKey(hash_, k.key_id, k.title, k.public_key, k.origin, k.created_at))
        return found

    def upload_key(self, title: str, public_line: str) -> RemoteKey | AwaitingPerson:
        return AwaitingPerson("add this public key in the UI")

    def delete_key(self, key_hash: str) -> AwaitingPerson | None:
        return AwaitingPerson("delete this key in the UI")


def test_a_person_registering_and_deleting_is_asked_then_polled() -> None:
    """A registrar that answers 'a person must do it' is asked again at every check (the
    intent stays), the new key is promoted once the person added it, and the old key stays
    retiring, asked for, until the person deleted it; only public halves are logged."""
    world = make_world()
    old = world.bootstrap_key
    assert old is not None
    engine = Engine(
        account=world.account,
        store=world.store,
        registry_factory=lambda h, signer: PersonAtTheUI(world.encord, h, signer),
        policy=world.policy,
        clock=world.clock,
        sleep=world.clock.sleep,
    )
    with capture_logs() as events:
        asked = [engine.check(force=frozenset({"ssh-key"})), engine.check()]
        assert all("awaiting_registration" in r.outcomes for r in asked)
        pending = world.state().kind("ssh-key").pending
        assert pending is not None and pending.phase == "intent" and pending.public_key
        asks = [e for e in events if e["event"] == "key.registration_required"]
        assert len(asks) == 2 and asks[0] == {
            "event": "key.registration_required",
            "log_level": "warning",
            "kind": "ssh-key",
            "key_id": pending.key_id,
            "public_key": pending.public_key,
            "title": pending.title,
            "account_hash": "sa-alpha",
            "hint": "add this public key in the UI",
            "or_hand_over": "rotator adopt alpha --private-key-file FILE, or write the "
            "file's text to Vault at <ROTATOR_VAULT_PREFIX>/alpha/incoming, field private_key",
        }
        assert world.encord.key_ids("sa-alpha") == {old.key_id}
        world.encord.add_key("sa-alpha", pending.public_key, "added by hand")
        done = engine.check()
        assert "rotated" in done.outcomes
        current = world.state().kind("ssh-key").current
        assert current is not None and current.key_id == pending.key_id
        assert current.key_hash == f"manual:{current.key_id[:16]}"
        consumer = world.store.latest("alpha/ssh-key")
        assert consumer is not None and consumer["key_id"] == current.key_id

        world.clock.advance(world.policy.grace + MIN)
        for _ in range(2):
            assert "awaiting_revocation" in engine.check().outcomes
        revokes = [e for e in events if e["event"] == "key.revocation_required"]
        assert len(revokes) == 2 and revokes[0]["key_id"] == old.key_id
        assert revokes[0]["hint"] == "delete this key in the UI"
        assert [k.key_id for k in world.state().kind("ssh-key").retiring] == [old.key_id]
        world.encord.remove_key("sa-alpha", old.key_id)
        assert "forgotten" in engine.check().outcomes
        assert world.state().kind("ssh-key").retiring == ()
    assert_no_secret_logged(world, events)


def test_verification_failure_deletes_key_and_records_failed() -> None:
    """A new key that never authenticates is deleted at Encord, the failure logged and
    recorded, and consumers stay on the working key; a later check succeeds."""
    world = make_world()
    world.encord.never_verify_new = True
    with running(world) as r:
        world.clock.advance(due(world))
        before = world.store.latest("alpha/ssh-key")
        result = r.check()
        assert result is not None and result.outcomes[0] == "failed"
        assert world.store.latest("alpha/ssh-key") == before
        assert len(world.encord.keys_of("sa-alpha")) == 1
        bad = world.encord.created[-1]
        assert [e.key_id for e in world.encord.deleted] == [bad.key_id]
        verifies = [c for c in world.encord.call_log if c[0] == "verify"]
        assert len(verifies) == world.verify_attempts
        last = world.state().kind("ssh-key").last
        assert last is not None and last.outcome == "failed" and last.key_id == bad.key_id
        assert last.error == "new key never authenticated"
        finished = first(r.events, "rotation.finished")
        assert finished["outcome"] == "failed" and finished["log_level"] == "warning"
        world.encord.never_verify_new = False
        # No new key is tried before the failure back-off is over (no create/delete churn).
        world.clock.advance(5 * MIN)
        created = len(world.encord.created)
        quiet = r.check()
        assert quiet is not None and "rotated" not in quiet.outcomes
        assert len(world.encord.created) == created
        world.clock.advance(default_policy().failure_backoff())
        again = r.check()
        assert again is not None and "rotated" in again.outcomes


def test_propagation_delay_is_tolerated() -> None:
    """A new key that answers 401 for its first verifies is retried with back-off (on the
    fake clock) and promoted once it works."""
    world = make_world()
    world.encord.propagation_failures = 3
    with running(world) as r:
        world.clock.advance(due(world))
        start = world.clock()
        result = r.check()
        assert result is not None and result.outcomes[0] == "rotated"
        retries = [e for e in r.events if e["event"] == "key.verify_retry"]
        assert [e["attempt"] for e in retries] == [1, 2, 3]
        assert world.clock() - start == timedelta(seconds=0.5 + 1 + 2)


def test_dry_run_and_plan_write_nothing() -> None:
    """check(dry_run=True) and plan() decide a rotation but write nothing and change nothing
    at Encord."""
    world = make_world()
    world.clock.advance(due(world))
    engine = world.engine()
    writes, created = world.store.writes, len(world.encord.created)
    with capture_logs() as events:
        result = engine.check(dry_run=True)
        planned = engine.plan()
    assert Rotate("ssh-key", "expires_in_14d") in result.actions
    assert result.actions == planned and result.outcomes == []
    assert world.store.writes == writes and len(world.encord.created) == created
    assert world.encord.deleted == [] and world.encord.tokens == {}
    mutating = {"upload_key", "generate_key", "delete_key", "bearer_token"}
    assert not [c for c in world.encord.call_log if c[0] in mutating]
    assert "plan.decided" in names(events)


def test_force_rotates_a_young_key() -> None:
    """force={'ssh-key'} rotates a key that is not due, with reason 'requested'."""
    world = make_world()
    with running(world) as r:
        r.check()
        result = r.check(force=frozenset({"ssh-key"}))
        assert result is not None and "rotated" in result.outcomes
        last = world.state().kind("ssh-key").last
        assert last is not None and last.reason == "requested"


def test_lost_upload_answer_is_resolved_by_listing() -> None:
    """An upload whose answer is lost is found by listing on the next check, never posted
    again, and the rotation completes with that key."""
    world = make_world()
    world.encord.lose_upload_answers = 1
    world.clock.advance(due(world))
    engine = world.engine()
    with pytest.raises(AmbiguousWrite):
        engine.check()
    pending = world.state().kind("ssh-key").pending
    assert pending is not None and pending.phase == "intent"
    result = world.engine().check()
    assert "rotated" in result.outcomes
    uploads = [c for c in world.encord.call_log if c[0] == "upload_key"]
    assert len(uploads) == 1
    current = world.state().kind("ssh-key").current
    assert current is not None and current.key_id == pending.key_id


def test_lost_generate_answer_is_rolled_back() -> None:
    """A generated api-key whose answer (the only copy of its private key) was lost is found
    by its title and deleted, the attempt recorded as rolled back, then a new one is made."""
    world = make_world(default_policy(kinds=("ssh-key", "api-key")))
    world.encord.lose_generate_answers = 1
    with running(world) as r:
        assert r.check() is None
        lost = world.encord.created[-1]
        second = r.check()
        assert second is not None and "rolled_back" in second.outcomes
        assert lost.key_id not in world.encord.key_ids("sa-alpha")
        last = world.state().kind("api-key").last
        assert last is not None and last.reason == "generate_answer_lost"
        third = r.check()
        assert third is not None and "rotated" in third.outcomes


def test_transient_failures_leave_a_resumable_record() -> None:
    """A transient Encord failure at any call aborts the check; the next check finishes it."""
    world = make_world()
    world.clock.advance(due(world))
    auditor = Auditor(world)
    for call in ("list_keys", "upload_key", "bearer_token"):
        world.encord.fail_next[call] = 1
        with pytest.raises(RegistryUnavailable):
            world.engine().check()
        auditor.check(completed=False)
    # The failed upload left an intent; the third check resumed it and failed only at the
    # bearer token; the fourth mints the token.
    last = world.state().kind("ssh-key").last
    assert last is not None and last.outcome == "rotated"
    assert len([e for e in world.encord.created if e.by == "rotator"]) == 1
    result = world.engine().check()
    assert result.outcomes == ["bearer_minted"]
    auditor.check(completed=True)


def test_check_result_and_logs_carry_no_secret() -> None:
    """A full life (bootstrap, api-key, rotations, revocations, failures) logs no private key
    or token, and no repr of a result or action shows one."""
    world = make_world(default_policy(kinds=("ssh-key", "api-key")))
    world.encord.propagation_failures = 1
    results: list[CheckResult] = []
    with running(world) as r:
        for _ in range(6):
            res = r.check(force=frozenset({"ssh-key", "api-key"}))
            assert res is not None
            results.append(res)
            world.clock.advance(13 * timedelta(hours=1))
        shown = repr(results) + repr(world.state()) + repr(r.events)
    assert "PRIVATE KEY" not in shown
    for secret in secrets_of(world):
        assert secret not in shown


# --- the crash matrix -------------------------------------------------------------------------

Script = Callable[[Runner], None]


def _ssh_rotation(r: Runner) -> None:
    r.step()
    r.world.clock.advance(due(r.world))
    r.step()
    r.world.clock.advance(DAY)
    r.step()


def _both_kinds(r: Runner) -> None:
    r.step()
    r.world.clock.advance(due(r.world))
    r.step(force=frozenset({"api-key"}))
    r.world.clock.advance(DAY)
    r.step()


def _verify_failure(r: Runner) -> None:
    r.world.encord.never_verify_next = 1
    r.world.clock.advance(due(r.world))
    r.step()  # the new key never works: deleted, recorded failed
    r.world.clock.advance(r.world.policy.failure_backoff())
    r.step()  # the next one, after the failure back-off, does


def _lost_generate(r: Runner) -> None:
    r.world.encord.lose_generate_answers = 1
    r.step()
    r.step()


def _orphans_and_cap(r: Runner) -> None:
    for i in range(3):
        r.world.add_foreign_key(f"human {i}")
    r.world.encord.add_key("sa-alpha", keys.generate().public_line, f"{PREFIX}19990101T000000Z-0")
    force = frozenset({"ssh-key"})
    r.step(force=force)
    r.world.clock.advance(timedelta(hours=2))
    r.step(force=force)  # blocked: previous key in grace
    r.world.clock.advance(DAY)
    r.step(force=force)  # revoke, then rotate in one check


SCENARIOS: dict[str, tuple[Callable[[], World], Script]] = {
    "ssh_rotation": (make_world, _ssh_rotation),
    "both_kinds": (lambda: make_world(default_policy(kinds=("ssh-key", "api-key"))), _both_kinds),
    "verify_failure": (make_world, _verify_failure),
    "lost_generate": (
        lambda: make_world(default_policy(kinds=("ssh-key", "api-key"))),
        _lost_generate,
    ),
    "orphans_and_cap": (make_world, _orphans_and_cap),
}


@dataclass
class Run:
    world: World
    runner: Runner
    hooks: list[str]
    calls: int


def _play(scenario: str, *, crash_hook: int | None = None, crash_call: int | None = None) -> Run:
    """Play a scenario to rest; stop the engine at the n-th hook step or outside call once."""
    make, script = SCENARIOS[scenario]
    world = make()
    world.encord.enforce_cap = False  # so high_water would show any breach
    hooks: list[str] = []

    def hook(step: str) -> None:
        hooks.append(step)
        if crash_hook is not None and len(hooks) == crash_hook:
            raise SimulatedCrash(step)

    world.hook = hook
    start = world.calls.count
    if crash_call is not None:
        world.calls.crash_after = start + crash_call
    with running(world) as r:
        script(r)
        r.auditor.finish(r)
    return Run(world, r, hooks, world.calls.count - start)


def test_hook_steps_are_discovered() -> None:
    """The engine names a hook step after every kind of outside call a rotation makes; the
    scenarios below reach all of them."""
    seen: set[str] = set()
    for scenario in SCENARIOS:
        run = _play(scenario)
        assert run.runner.restarts == 0
        seen |= set(run.hooks)
    assert {
        "after_intent",
        "after_register",
        "after_registered_recorded",
        "after_verify",
        "after_promote_vault",
        "after_promote_state",
        "after_revoke_call",
        "after_orphan_delete",
        "after_bearer_mint",
        "after_bearer_vault",
        "after_delete_unverified",
        "after_delete_lost",
        "after_purge",
    } <= seen


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_crash_at_every_hook_step(scenario: str) -> None:
    """Stopped at each hook step in turn and restarted as a new Engine, the account converges
    and every invariant holds after every check."""
    baseline = _play(scenario)
    assert len(baseline.hooks) >= 5
    for n in range(1, len(baseline.hooks) + 1):
        run = _play(scenario, crash_hook=n)
        assert run.runner.restarts == 1, f"hook {n} ({baseline.hooks[n - 1]}) did not crash"


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_crash_after_every_outside_call(scenario: str) -> None:
    """Stopped after each outside call in turn (Vault or Encord, reads included) and restarted,
    the account converges and every invariant holds after every check."""
    baseline = _play(scenario)
    assert baseline.calls >= 10
    for n in range(1, baseline.calls + 1):
        run = _play(scenario, crash_call=n)
        assert run.runner.restarts == 1, f"call {n} did not crash"


# --- months of random weather -----------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_random_months_of_crashes_and_failures(seed: int) -> None:
    """Half a year of checks at random intervals, with random crashes, transient failures,
    lost answers, propagation delays, broken keys, forced rotations and human keys coming and
    going: every invariant holds after every check, and the account converges at the end."""
    rng = random.Random(seed)
    world = make_world(default_policy(kinds=("ssh-key", "api-key")))
    world.encord.enforce_cap = False
    world.calls.rng = random.Random(seed * 7919)
    end = world.clock() + timedelta(days=180)
    humans: list[str] = []
    rotations = 0
    with running(world) as r:
        while world.clock() < end:
            world.calls.crash_rate = 0.02
            world.calls.transient_rate = 0.03
            world.calls.commit_then_fail_rate = 0.02
            world.encord.propagation_failures = rng.choice([0, 0, 1, 3])
            world.encord.never_verify_new = rng.random() < 0.05
            held = len(world.encord.keys_of("sa-alpha"))
            if rng.random() < 0.05 and held < 5:
                humans.append(world.add_foreign_key("break-glass").key_id)
            elif rng.random() < 0.05 and humans:
                world.encord.remove_key("sa-alpha", humans.pop(rng.randrange(len(humans))))
            force = frozenset(k for k in KEY_KINDS if rng.random() < 0.05)
            result = r.check(force=force)
            if result is not None:
                rotations += result.outcomes.count("rotated")
            world.clock.advance(
                rng.choice([5 * MIN, 5 * MIN, timedelta(hours=1), timedelta(hours=7), DAY, 3 * DAY])
            )
        world.calls.crash_rate = world.calls.transient_rate = 0.0
        world.calls.commit_then_fail_rate = 0.0
        world.encord.never_verify_new = False
        world.encord.propagation_failures = 0
        for key_id in humans:
            world.encord.remove_key("sa-alpha", key_id)
        r.auditor.finish(r)
    assert r.incomplete > 0 and world.calls.crashes > 0 and world.calls.transients > 0
    assert rotations >= 4
    assert r.auditor.checks > 100


def test_nothing_but_transient_errors_escape_a_check() -> None:
    """Under heavy transient failures and lost answers (Vault and Encord) one long-lived engine
    sees only transient errors, never a permanent one that would stop the daemon, and keeps
    rotating: every invariant holds after every check."""
    world = make_world(default_policy(kinds=("ssh-key", "api-key")))
    world.encord.enforce_cap = False
    world.calls.rng = random.Random(99)
    world.calls.transient_rate = 0.1
    world.calls.commit_then_fail_rate = 0.1
    engine = world.engine()
    auditor = Auditor(world)
    rotated = 0
    for _ in range(150):
        try:
            rotated += engine.check(force=frozenset({"ssh-key"})).outcomes.count("rotated")
            auditor.check(completed=True)
        except TransientError:
            auditor.check(completed=False)
        except RotatorError as exc:
            raise AssertionError(f"permanent error escaped: {exc!r}") from None
        world.clock.advance(timedelta(hours=25))
    assert rotated >= 10 and world.calls.transients >= 50
