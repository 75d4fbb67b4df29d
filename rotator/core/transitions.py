"""PURE transitions of the state record: ``AccountState -> AccountState``, no I/O, no clock.

Each step of the rotation protocol is one of these followed by one check-and-set write of
the result (the engine's job). A rotation of one kind moves through them in order::

    begin (intent) -> registered -> promote + finish ("rotated")
                   \\-> finish ("failed", "rolled_back", "blocked_by_cap": the intent dropped)

and a retiring key leaves the record by :func:`drop_retiring` (revoked, or found gone). A key
handed over by a person (:func:`adopted`) ends a rotation in flight, its own way.
:func:`bootstrapped` shares :func:`promote` with a rotation: the same retiring-key and grace
rule, written once.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from rotator.core.state import (
    AccountState,
    BearerState,
    KeyRecord,
    LastRun,
    PauseRecord,
    Pending,
)
from rotator.core.vocab import Outcome, RemoteKey


def ceil_second(t: datetime) -> datetime:
    """A deadline as the record keeps it (RFC 3339, whole seconds): rounded up, never down,
    so truncation can never end a grace period early."""
    whole = t.replace(microsecond=0)
    return whole if whole == t else whole + timedelta(seconds=1)


def begin(state: AccountState, kind: str, intent: Pending) -> AccountState:
    """Record the write-ahead intent of a new rotation (before Encord is called)."""
    ks = state.kind(kind)
    if ks.pending is not None:
        raise ValueError(f"a {kind} rotation is in flight already")
    if intent.phase != "intent":
        raise ValueError("a rotation begins with an intent")
    return state.with_kind(kind, replace(ks, pending=intent))


def registered(state: AccountState, kind: str, key: RemoteKey, private_key: str) -> AccountState:
    """Encord holds the intent's key: record it (and its private half) as registered."""
    ks = state.kind(kind)
    if ks.pending is None:
        raise ValueError(f"no {kind} rotation in flight")
    pending = replace(
        ks.pending,
        phase="registered",
        key_id=key.key_id,
        key_hash=key.key_hash,
        public_key=key.public_key,
        private_key=private_key,
    )
    return state.with_kind(kind, replace(ks, pending=pending))


def promote(
    state: AccountState, kind: str, record: KeyRecord, *, at: datetime, grace: timedelta
) -> AccountState:
    """``record`` becomes the current key of ``kind``, as of ``at`` (when consumers got it).

    The previous current key, if another, starts retiring: its grace ends at ``at + grace``,
    rounded up to the record's whole seconds. Every earlier retiring key stays as it was; the
    new key is never among them. A rotation in flight is left alone: :func:`finish` ends the
    rotation that promoted, and a bootstrap leaves another rotation to be resumed (its key may
    be the newest version some consumer read).
    """
    ks = state.kind(kind)
    retiring = [k for k in ks.retiring if k.key_id != record.key_id]
    if ks.current is not None and ks.current.key_id != record.key_id:
        retiring.append(replace(ks.current, retire_after=ceil_second(at + grace)))
    return state.with_kind(kind, replace(ks, current=record, retiring=tuple(retiring)))


def finish(state: AccountState, kind: str, last: LastRun) -> AccountState:
    """A rotation attempt of ``kind`` ended as ``last`` says: the intent is dropped, and a
    rotation asked for by ``rotator rotate`` is answered."""
    ks = state.kind(kind)
    new = replace(ks, last=last, pending=None)
    if last.outcome == Outcome.ROTATED:
        new = replace(new, last_success=last.at)
    answered = replace(state, requested=state.requested - {kind})
    return answered.with_kind(kind, new)


def blocked(
    state: AccountState, kind: str, reason: str, *, detail: str, at: datetime
) -> AccountState:
    """A rotation of ``kind`` may not start (``reason``: ``blocked_by_cap``,
    ``not_bootstrapped``). Recorded once, not at every check: the state comes back unchanged
    when the last attempt already says so and no ``rotator rotate`` waits for an answer."""
    ks = state.kind(kind)
    asked = kind in state.requested
    if not asked and ks.last is not None and ks.last.outcome == reason:
        return state
    last = LastRun(outcome=reason, at=at, reason=reason, error=detail or None)
    answered = replace(state, requested=state.requested - {kind})
    return answered.with_kind(kind, replace(ks, last=last))


def drop_retiring(state: AccountState, kind: str, key_id: str) -> AccountState:
    """A retiring key leaves the record: revoked at Encord, or found gone there."""
    ks = state.kind(kind)
    kept = tuple(k for k in ks.retiring if k.key_id != key_id)
    return state.with_kind(kind, replace(ks, retiring=kept))


def bootstrapped(
    state: AccountState, kind: str, record: KeyRecord, *, at: datetime, grace: timedelta
) -> AccountState:
    """An admin's key adopted as the current key of ``kind``: promoted as a rotation's would
    be, and recorded as the last outcome (``bootstrapped``)."""
    promoted = promote(state, kind, record, at=at, grace=grace)
    ks = promoted.kind(kind)
    last = LastRun(
        outcome=Outcome.BOOTSTRAPPED.value, at=at, reason="bootstrap", key_id=record.key_id
    )
    return promoted.with_kind(kind, replace(ks, last=last))


def adopted(
    state: AccountState,
    kind: str,
    record: KeyRecord,
    *,
    at: datetime,
    grace: timedelta,
    pending_held: RemoteKey | None = None,
) -> AccountState:
    """A key a person made in the Encord UI and handed over (key intake) becomes the current
    key of ``kind``: promoted as a rotation's new key would be, and recorded as a rotation
    (``rotated``, reason ``intake``) that answers a ``rotator rotate``.

    The rotation in flight, if any, is over: its key was never registered, so it is dropped;
    or, when Encord holds it after all (``pending_held``: a person also added its public
    key), it retires at once, with no grace, since no consumer ever read it."""
    promoted = promote(state, kind, record, at=at, grace=grace)
    ks = promoted.kind(kind)
    retiring = ks.retiring
    p = ks.pending
    if (
        p is not None
        and p.private_key is not None
        and pending_held is not None
        and p.key_id == pending_held.key_id != record.key_id
    ):
        retiring += (
            KeyRecord(
                key_id=pending_held.key_id,
                key_hash=pending_held.key_hash,
                public_key=pending_held.public_key,
                title=p.title,
                origin=pending_held.origin,
                issued_at=p.started_at,
                expires_at=p.started_at + (record.expires_at - record.issued_at),
                private_key=p.private_key,
                retire_after=at.replace(microsecond=0),  # no grace: revoked this very check
            ),
        )
    last = LastRun(outcome=Outcome.ROTATED.value, at=at, reason="intake", key_id=record.key_id)
    new = replace(ks, retiring=retiring, pending=None, last=last, last_success=at)
    return replace(promoted, requested=promoted.requested - {kind}).with_kind(kind, new)


def bearer_minted(state: AccountState, bearer: BearerState) -> AccountState:
    """A bearer token was written to Vault."""
    return replace(state, bearer=bearer)


def request(state: AccountState, kind: str) -> AccountState:
    """``rotator rotate`` asks the replica holding the account to rotate ``kind``."""
    return replace(state, requested=state.requested | {kind})


def paused(state: AccountState, pause: PauseRecord) -> AccountState:
    """``rotator pause``: no key changes until :func:`resumed`. Pausing a paused account keeps
    the first record (when, by whom, why)."""
    return state if state.paused is not None else replace(state, paused=pause)


def resumed(state: AccountState) -> AccountState:
    """``rotator resume``: the account's keys are rotator's to change again."""
    return replace(state, paused=None)


def compromised(state: AccountState, key_id: str) -> AccountState:
    """``rotator revoke`` reports ``key_id`` leaked: whoever holds the account revokes it."""
    return replace(state, compromised=state.compromised | {key_id})


def compromise_settled(state: AccountState, key_id: str) -> AccountState:
    """The leaked key is out of the record and revoked (or a person was asked to)."""
    return replace(state, compromised=state.compromised - {key_id})
