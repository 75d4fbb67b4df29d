"""What a person does to an account, apart from the checks: adopt an admin's key
(:func:`bootstrap`), ask the replica holding the account for a rotation
(:func:`request_rotation`), pause and resume it (:func:`pause`, :func:`resume`), and look at
it (:func:`status`, what ``rotator status`` shows)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from rotator.core import keys, transitions
from rotator.core.context import AccountContext
from rotator.core.errors import RotatorError, StoreConflict
from rotator.core.kinds import known_keys, listed_record
from rotator.core.state import AccountState, KeyRecord, LastRun, PauseRecord, Phase
from rotator.core.vocab import KnownKey
from rotator.core.window import Upcoming

log = structlog.get_logger("rotator.engine")

BOOTSTRAP_KIND = "ssh-key"


def bootstrap(ctx: AccountContext, private_key_text: str) -> KeyRecord:
    """Adopt a key an admin made: prove it is a key of the account, make it the newest
    version of the ssh-key consumer path and the current ssh-key of the record (the previous
    one, if another, retires with its grace). A rotation in flight is left to be resumed."""
    kp = keys.load_private(private_key_text)
    candidate = KnownKey(
        key_id=kp.key_id,
        key_hash=None,
        title="bootstrap",
        public_key=kp.public_line,
        origin="uploaded",
        created_at=ctx.clock(),
        private_openssh=kp.private_openssh,
    )
    with ctx.registry(kp) as registry:
        remote = {k.key_id: k for k in registry.list_keys([candidate])}.get(kp.key_id)
        if remote is None:
            registry.verify(kp)  # AccessDenied(401) when the key does not authenticate at all
            raise RotatorError(
                f"key {kp.key_id[:12]}... authenticates but is not a key of service account "
                f"'{ctx.account.hash}'"
            )
    state = ctx.load_state()
    record = listed_record(remote, kp.private_openssh, ctx.policy.key_ttl)
    consumer = ctx.read(BOOTSTRAP_KIND)
    now = ctx.clock()
    ctx.publish(BOOTSTRAP_KIND, record, over=consumer)
    adopted = transitions.bootstrapped(
        state, BOOTSTRAP_KIND, record, at=now, grace=ctx.policy.grace
    )
    ctx.save_state(state, adopted)
    log.info("account.bootstrapped", key_id=record.key_id, key_hash=record.key_hash)
    return record


def request_rotation(ctx: AccountContext, kind: str) -> AccountState:
    """Ask whichever replica holds the account's lease to rotate ``kind`` at its next check
    (``rotator rotate`` while a daemon runs). A check-and-set write of the record."""
    state = ctx.load_state()
    return ctx.save_state(state, transitions.request(state, kind))


def pause(ctx: AccountContext, *, by: str, reason: str | None) -> tuple[PauseRecord, bool]:
    """Record in the account's state that no key of it may change (``rotator pause``): every
    replica reads it at its next check, and a restart keeps it. Answers the pause in force and
    whether this call made it (False: it was paused already, and stays as it was)."""
    new = PauseRecord(at=ctx.clock(), by=by, reason=reason)
    before, state = _changed(ctx, lambda s: transitions.paused(s, new))
    assert state.paused is not None
    if before.paused is None:
        log.info("account.paused", by=by, reason=reason)
    return state.paused, before.paused is None


def resume(ctx: AccountContext, *, by: str) -> PauseRecord | None:
    """Lift a pause (``rotator resume``); answers the pause lifted (None: it was not paused)."""
    before, _ = _changed(ctx, transitions.resumed)
    lifted = before.paused
    if lifted is not None:
        log.info("account.resumed", by=by, paused_at=lifted.at.isoformat(), paused_by=lifted.by)
    return lifted


def _changed(
    ctx: AccountContext, change: Callable[[AccountState], AccountState], attempts: int = 5
) -> tuple[AccountState, AccountState]:
    """``change`` the record with a check-and-set write, re-read and re-applied when a
    daemon's check wrote it in between (an unchanged record is not written). Answers the
    record as read and as written."""
    for attempt in range(attempts):
        state = ctx.load_state()
        new = change(state)
        if new == state:
            return state, state
        try:
            return state, ctx.save_state(state, new)
        except StoreConflict:
            if attempt + 1 == attempts:
                raise
    raise AssertionError("unreachable")


# --- status -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CurrentKeyStatus:
    """The current key of one kind: its id, age and time left (neither ever negative)."""

    key_id: str
    age: timedelta
    expires_in: timedelta
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class KindStatus:
    """One key kind of an account, without any private key."""

    current: CurrentKeyStatus | None
    retiring: tuple[str, ...]  # key ids
    pending: Phase | None  # the phase of a rotation in flight
    last: LastRun | None
    requested: bool = False  # `rotator rotate` asked the daemon holding the account for one


@dataclass(frozen=True, slots=True)
class AccountStatus:
    """What ``rotator status`` shows of one account."""

    account: str
    key_cap: int
    asked_encord: bool  # False when there is no key to ask with (not bootstrapped)
    keys_at_encord: int | None  # None when Encord was not asked or did not answer
    encord_error: str | None
    kinds: Mapping[str, KindStatus]  # the configured kinds, in their order
    bearer_expires_at: datetime | None
    paused: PauseRecord | None = None  # `rotator pause`: no key changes until resumed
    window: Upcoming | None = None  # ROTATOR_ROTATION_WINDOW now (None: none is set)


def status(ctx: AccountContext) -> AccountStatus:
    """The account as its record and Encord's key list show it now."""
    state = ctx.load_state()
    now = ctx.clock()
    signer = ctx.signer_key(state)
    count: int | None = None
    error: str | None = None
    if signer is not None:
        with ctx.registry(signer) as registry:
            try:
                count = len(registry.list_keys(known_keys(state)))
            except RotatorError as exc:
                error = str(exc)
    kinds: dict[str, KindStatus] = {}
    zero = timedelta(0)
    for kind in ctx.policy.kinds:
        ks = state.kind(kind)
        current = None
        if ks.current is not None:
            current = CurrentKeyStatus(
                key_id=ks.current.key_id,
                age=max(now - ks.current.issued_at, zero),
                expires_in=max(ks.current.expires_at - now, zero),
                expires_at=ks.current.expires_at,
            )
        kinds[kind] = KindStatus(
            current=current,
            retiring=tuple(r.key_id for r in ks.retiring),
            pending=ks.pending.phase if ks.pending else None,
            last=ks.last,
            requested=kind in state.requested,
        )
    return AccountStatus(
        account=ctx.account.name,
        key_cap=ctx.policy.key_cap,
        asked_encord=signer is not None,
        keys_at_encord=count,
        encord_error=error,
        kinds=kinds,
        bearer_expires_at=state.bearer.expires_at if state.bearer else None,
        paused=state.paused,
        window=None if ctx.policy.window is None else ctx.policy.window.upcoming(now),
    )
