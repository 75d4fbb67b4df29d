"""The state record's transitions are pure and keep the protocol's promises for any record:
properties (Hypothesis) in the style of plan()'s, and one example each where a property
would say less than the example."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from rotator.core import transitions as tr
from rotator.core.policy import Policy, Revoke, Snapshot, plan
from rotator.core.state import AccountState, KeyRecord, LastRun, Pending, from_dict, to_dict
from rotator.core.vocab import KEY_KINDS, RemoteKey
from tests.strategies import (
    account_states,
    graces,
    ids,
    instants,
    key_records,
    last_runs,
    private,
    text,
    times,
)

kinds = st.sampled_from(KEY_KINDS)
SECOND = timedelta(seconds=1)


def same_elsewhere(before: AccountState, after: AccountState, kind: str) -> None:
    """Everything but ``kind``'s entry is as it was (other kinds, bearer, version)."""
    assert {k: v for k, v in after.kinds.items() if k != kind} == {
        k: v for k, v in before.kinds.items() if k != kind
    }
    assert after.bearer == before.bearer and after.version == before.version


def survives_the_record(state: AccountState) -> None:
    """What a transition makes, Vault keeps exactly (whole-second times included)."""
    data = json.loads(json.dumps(to_dict(state)))
    assert from_dict(data, state.version, account="alpha") == state


# --- ceil_second ---------------------------------------------------------------------------


@given(instants)
def test_ceil_second_rounds_up_to_a_whole_second(t: datetime) -> None:
    """Never earlier, less than a second later, whole seconds, and a whole second is kept."""
    c = tr.ceil_second(t)
    assert t <= c < t + SECOND and c.microsecond == 0
    assert tr.ceil_second(c) == c


# --- promote -------------------------------------------------------------------------------


@settings(max_examples=300)
@given(account_states, kinds, key_records(), instants, graces)
def test_promote_keeps_the_grace_promise(
    state: AccountState, kind: str, record: KeyRecord, at: datetime, grace: timedelta
) -> None:
    """The new key is current and never retiring; every earlier retiring key stays as it was;
    the old current key retires no earlier than ``at + grace`` (and less than a second later,
    in whole seconds); the rotation in flight and the other kinds are left alone."""
    before = state.kind(kind)
    after_state = tr.promote(state, kind, record, at=at, grace=grace)
    after = after_state.kind(kind)
    assert after.current == record
    assert record.key_id not in {k.key_id for k in after.retiring}
    earlier = [k for k in before.retiring if k.key_id != record.key_id]
    assert after.retiring[: len(earlier)] == tuple(earlier)
    old = before.current
    if old is not None and old.key_id != record.key_id:
        (retired,) = after.retiring[len(earlier) :]
        assert retired == replace(old, retire_after=retired.retire_after)
        assert retired.retire_after is not None
        assert at + grace <= retired.retire_after < at + grace + SECOND
        assert retired.retire_after.microsecond == 0
    else:
        assert after.retiring == tuple(earlier)
    assert after.pending == before.pending and after.last == before.last
    assert after_state.requested == state.requested
    same_elsewhere(state, after_state, kind)
    survives_the_record(after_state)


@settings(max_examples=150)
@given(account_states, kinds, key_records(), instants, graces, last_runs)
def test_a_finished_rotation_leaves_nothing_pending(
    state: AccountState,
    kind: str,
    record: KeyRecord,
    at: datetime,
    grace: timedelta,
    last: LastRun,
) -> None:
    """promote then finish (the one write that ends a rotation): the new key current, the
    intent gone, the ``rotator rotate`` request answered."""
    done = tr.finish(tr.promote(state, kind, record, at=at, grace=grace), kind, last)
    ks = done.kind(kind)
    assert ks.current == record and ks.pending is None and ks.last == last
    assert kind not in done.requested


@settings(max_examples=150)
@given(account_states, kinds, key_records(), instants, graces)
def test_bootstrap_promotes_as_a_rotation_does(
    state: AccountState, kind: str, record: KeyRecord, at: datetime, grace: timedelta
) -> None:
    """bootstrapped is promote plus its own last outcome: the same current key, the same
    retiring keys and deadlines; a rotation in flight stays to be resumed."""
    adopted = tr.bootstrapped(state, kind, record, at=at, grace=grace)
    promoted = tr.promote(state, kind, record, at=at, grace=grace)
    a, p = adopted.kind(kind), promoted.kind(kind)
    assert (a.current, a.retiring, a.pending) == (p.current, p.retiring, p.pending)
    assert a.pending == state.kind(kind).pending
    assert a.last == LastRun("bootstrapped", at, "bootstrap", key_id=record.key_id)
    same_elsewhere(state, adopted, kind)


@settings(max_examples=150)
@given(account_states, kinds, key_records(), instants, graces, st.booleans())
def test_an_adopted_key_is_promoted_and_ends_the_rotation_in_flight(
    state: AccountState, kind: str, record: KeyRecord, at: datetime, grace: timedelta,
    registered: bool,
) -> None:
    """adopted (key intake) is promote plus a finished rotation (``rotated``, ``intake``,
    a request answered): nothing stays pending. A pending key Encord holds after all
    retires with no grace; one it does not hold is simply dropped."""
    pending = state.kind(kind).pending
    assume(pending is None or pending.key_id != record.key_id)
    held = None
    if registered and pending is not None and pending.key_id and pending.public_key:
        held = RemoteKey("h", pending.key_id, pending.title, pending.public_key, "uploaded", at)
    adopted = tr.adopted(state, kind, record, at=at, grace=grace, pending_held=held)
    promoted = tr.promote(state, kind, record, at=at, grace=grace)
    a, p = adopted.kind(kind), promoted.kind(kind)
    assert a.current == p.current == record and a.pending is None
    assert a.last == LastRun("rotated", at, "intake", key_id=record.key_id)
    assert a.last_success == at and kind not in adopted.requested
    extra = [k for k in a.retiring if k not in p.retiring]
    assert a.retiring[: len(p.retiring)] == p.retiring
    if held is not None and pending is not None and pending.private_key is not None:
        assert [(k.key_id, k.retire_after) for k in extra] == [
            (held.key_id, at.replace(microsecond=0))
        ]
        assert plan_revokes(adopted, kind, at, held.key_id)
    else:
        assert extra == []
    same_elsewhere(state, replace(adopted, requested=state.requested), kind)


def plan_revokes(state: AccountState, kind: str, at: datetime, key_id: str) -> bool:
    """The very next plan revokes ``key_id`` (while Encord still lists it)."""
    ks = state.kind(kind)
    remote = [RemoteKey(k.key_hash, k.key_id, k.title, k.public_key, k.origin, k.issued_at)
              for k in (ks.current, *ks.retiring) if k is not None]
    policy = Policy(key_ttl=timedelta(days=90), rotate_before=timedelta(days=14),
                    grace=timedelta(hours=1), key_cap=50, kinds=(), bearer=False)
    snap = Snapshot("alpha", replace(state, paused=None), tuple(remote))  # intake: not paused
    return any(isinstance(a, Revoke) and a.key.key_id == key_id for a in plan(snap, policy, at))


def _remote(rec: KeyRecord) -> RemoteKey:
    return RemoteKey(rec.key_hash, rec.key_id, rec.title, rec.public_key, "uploaded", rec.issued_at)


@settings(max_examples=150)
@given(key_records(), key_records(), instants, graces, st.integers(1, 10**6))
def test_plan_revokes_the_promoted_away_key_only_once_its_grace_is_over(
    old: KeyRecord, new: KeyRecord, at: datetime, grace: timedelta, early_us: int
) -> None:
    """The deadline promote writes, read back from the record, is one plan() honours: the old
    key is not revoked a moment before ``at + grace`` and is revoked from its deadline on."""
    assume(old.key_id != new.key_id)
    start = AccountState().with_kind(
        "ssh-key", replace(AccountState().kind("ssh-key"), current=old)
    )
    promoted = tr.promote(start, "ssh-key", new, at=at, grace=grace)
    state = from_dict(json.loads(json.dumps(to_dict(promoted))), 1, account="alpha")
    snap = Snapshot("alpha", state, (_remote(old), _remote(new)))
    policy = Policy(
        key_ttl=timedelta(days=90_000),  # nothing falls due: only the revocation is in question
        rotate_before=timedelta(days=1),
        grace=grace,
        key_cap=5,
        bearer=False,
    )
    a_moment_before = at + grace - timedelta(microseconds=early_us)
    assert not [a for a in plan(snap, policy, a_moment_before) if isinstance(a, Revoke)]
    deadline = state.kind("ssh-key").retiring[0].retire_after
    assert deadline is not None
    revoked = [a.key.key_id for a in plan(snap, policy, deadline) if isinstance(a, Revoke)]
    assert revoked == [old.key_id]


# --- the other steps -------------------------------------------------------------------------


@st.composite
def intents(draw: st.DrawFn) -> Pending:
    with_pair = draw(st.booleans())  # ssh-key intents hold the pair, api-key ones a title
    return Pending(
        phase="intent",
        title=draw(text),
        reason=draw(text),
        started_at=draw(times),
        key_id=draw(ids) if with_pair else None,
        public_key=draw(text) if with_pair else None,
        private_key=draw(private) if with_pair else None,
    )


@given(account_states, kinds, intents())
def test_begin_records_the_intent_once(state: AccountState, kind: str, intent: Pending) -> None:
    """begin records the intent and nothing else; it refuses a second rotation in flight."""
    if state.kind(kind).pending is not None:
        with pytest.raises(ValueError, match="in flight"):
            tr.begin(state, kind, intent)
        return
    after = tr.begin(state, kind, intent)
    assert after.kind(kind) == replace(state.kind(kind), pending=intent)
    same_elsewhere(state, after, kind)
    with pytest.raises(ValueError, match="in flight"):
        tr.begin(after, kind, intent)


@given(account_states, kinds, intents(), ids, text, text, private)
def test_registered_fills_in_what_encord_answered(
    state: AccountState,
    kind: str,
    intent: Pending,
    key_id: str,
    key_hash: str,
    pub: str,
    priv: str,
) -> None:
    """registered moves the intent on with the key Encord holds (and its private half); the
    title, reason and start of the rotation stay."""
    state = state.with_kind(kind, replace(state.kind(kind), pending=None))
    begun = tr.begin(state, kind, intent)
    key = RemoteKey(key_hash, key_id, intent.title, pub, "generated", intent.started_at)
    p = tr.registered(begun, kind, key, priv).kind(kind).pending
    assert p == Pending(
        "registered", intent.title, intent.reason, intent.started_at, key_id, pub, key_hash, priv
    )
    with pytest.raises(ValueError, match="no .* in flight"):
        tr.registered(state, kind, key, priv)


@given(account_states, kinds, last_runs)
def test_finish_ends_the_attempt(state: AccountState, kind: str, last: LastRun) -> None:
    """finish drops the intent, records the outcome (a success as the last success too) and
    answers a ``rotator rotate`` request; the keys are untouched."""
    before = state.kind(kind)
    after = tr.finish(state, kind, last)
    ks = after.kind(kind)
    assert ks.pending is None and ks.last == last
    assert (ks.current, ks.retiring) == (before.current, before.retiring)
    assert ks.last_success == (last.at if last.outcome == "rotated" else before.last_success)
    assert after.requested == state.requested - {kind}
    same_elsewhere(state, after, kind)


@given(account_states, kinds, st.data())
def test_drop_retiring_removes_exactly_that_key(
    state: AccountState, kind: str, data: st.DataObject
) -> None:
    """Revoked or gone, one retiring key leaves the record; the rest keep their order."""
    retiring = state.kind(kind).retiring
    key_id = data.draw(st.sampled_from([k.key_id for k in retiring]) if retiring else ids)
    after = tr.drop_retiring(state, kind, key_id)
    assert after.kind(kind).retiring == tuple(k for k in retiring if k.key_id != key_id)
    assert after.kind(kind).current == state.kind(kind).current
    same_elsewhere(state, after, kind)


@given(
    account_states,
    kinds,
    st.sampled_from(["blocked_by_cap", "not_bootstrapped"]),
    text,
    times,
    st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3)),
)
def test_blocked_is_recorded_once(
    state: AccountState, kind: str, reason: str, detail: str, at: datetime, later: timedelta
) -> None:
    """A blocked rotation is recorded, and a request for it answered; the same block at a
    later check changes nothing (no write every five minutes)."""
    before = state.kind(kind)
    once = tr.blocked(state, kind, reason, detail=detail, at=at)
    said_so = before.last is not None and before.last.outcome == reason
    if said_so and kind not in state.requested:
        assert once == state
    else:
        expected = LastRun(reason, at, reason, error=detail or None)
        assert once.kind(kind) == replace(before, last=expected)
        assert once.requested == state.requested - {kind}
        same_elsewhere(state, once, kind)
    assert tr.blocked(once, kind, reason, detail=detail, at=at + later) == once


@given(account_states, kinds)
def test_request_is_idempotent(state: AccountState, kind: str) -> None:
    """``rotator rotate`` adds the kind to the requests, once however often it is asked."""
    once = tr.request(state, kind)
    assert once.requested == state.requested | {kind}
    assert tr.request(once, kind) == once


def test_promote_example_grace_from_a_mid_second_write() -> None:
    """A key promoted at 12:00:00.5 with 24 h grace retires at 12:00:01 the next day."""
    at = datetime(2030, 1, 1, 12, 0, 0, 500_000, tzinfo=UTC)
    t = datetime(2029, 1, 1, tzinfo=UTC)
    old = KeyRecord("a" * 64, "kh-a", "ssh-ed25519 A", "a", "uploaded", t, t, "x")
    new = KeyRecord("b" * 64, "kh-b", "ssh-ed25519 B", "b", "uploaded", at, at, "y")
    state = AccountState(kinds={"ssh-key": replace(AccountState().kind("ssh-key"), current=old)})
    (retired,) = (
        tr.promote(state, "ssh-key", new, at=at, grace=timedelta(hours=24)).kind("ssh-key").retiring
    )
    assert retired.retire_after == datetime(2030, 1, 2, 12, 0, 1, tzinfo=UTC)
