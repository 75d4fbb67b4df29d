"""PURE decisions: ``plan(snapshot, policy, now) -> [Action]``. No I/O, no clock.

The engine gathers a :class:`Snapshot` (the state record, Encord's key list, the key ids at
the newest versions of the consumer paths), asks :func:`plan` what to do, and carries the
actions out in order. The plan guarantees, whatever the snapshot:

- it never asks for a new key when that would put the account over its cap;
- it never revokes a current key, nor a retiring one before its grace is over;
- it never touches a key this deployment does not own (not in the record, not titled
  ``rotator:<instance>:<account>:``): human break-glass keys, and the keys of another
  deployment sharing the service account, only count against the cap;
- it never deletes an orphan (owned by title, explained by no record) that is the key at the
  newest version of a consumer path, or that Encord created less than GRACE ago.

Keys titled in the format before instances (``rotator:<account>:``) are owned only while the
record explains them: any deployment of that time may have made them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from rotator.core.holds import Deferred, Paused, window_hold
from rotator.core.state import AccountState, KeyRecord, KindState
from rotator.core.vocab import KeyKind, RemoteKey
from rotator.core.window import RotationWindow


def owned_title_prefix(instance: str, account: str) -> str:
    """Titles this deployment gives the keys it registers for ``account``:
    ``rotator:<instance>:<account>:<UTC time>-<random>``. The instance tells deployments that
    share one service account apart (``ROTATOR_INSTANCE``)."""
    return f"rotator:{instance}:{account}:"


DEFAULT_INSTANCE = "default"
"""The instance of a Policy built without one (tests); wiring always passes the settings'."""


@dataclass(frozen=True, slots=True)
class Policy:
    """The timing, cap and ownership rules, from Settings (durations as timedelta)."""

    key_ttl: timedelta
    rotate_before: timedelta
    grace: timedelta
    key_cap: int
    kinds: tuple[KeyKind, ...] = ("ssh-key",)
    bearer: bool = True
    bearer_ttl: timedelta = timedelta(hours=1)
    check_interval: timedelta = timedelta(minutes=5)
    jitter: timedelta = timedelta(seconds=30)
    instance: str = DEFAULT_INSTANCE
    """The deployment's identity (``ROTATOR_INSTANCE``, by default derived from where its
    state lives in Vault), in the titles of the keys it registers; wiring always sets it."""
    window: RotationWindow | None = None
    """``ROTATOR_ROTATION_WINDOW`` (None: any time); what it holds back: :mod:`.holds`."""

    def window_margin(self) -> timedelta:
        """A key due outside the window rotates anyway when less than this would be left of
        it when the window opens: a quarter of ROTATE_BEFORE (time for the rotation and for
        consumers to pick the key up), and never less than one check period."""
        return max(self.rotate_before / 4, self.check_interval + self.jitter)

    def failure_backoff(self) -> timedelta:
        """After a rotation failed (a new key never authenticated, Encord refused it), wait
        this long before trying again rather than creating and deleting a key every check:
        an eighth of ROTATE_BEFORE, at most an hour, at least one check interval."""
        return max(self.check_interval, min(timedelta(hours=1), self.rotate_before / 8))

    def bearer_refresh_margin(self) -> timedelta:
        """Re-mint when less than this is left: a quarter of the lifetime, and never less
        than one check period, so a token cannot run out between two checks."""
        return max(self.bearer_ttl / 4, self.check_interval + self.jitter)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the engine saw, gathered in this order: Encord's keys, then the state record."""

    account: str
    state: AccountState
    remote: tuple[RemoteKey, ...]
    consumer_key_ids: Mapping[str, str | None] = field(default_factory=dict)


# --- actions (decisions are values) ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResumeRotation:
    """A rotation was left half done: finish it (or roll it back) from its recorded phase."""

    kind: KeyKind
    reason: str = "pending_rotation"


@dataclass(frozen=True, slots=True)
class Forget:
    """A retiring key is gone at Encord already: drop it from the record."""

    kind: KeyKind
    key_id: str
    reason: str = "gone_at_encord"


@dataclass(frozen=True, slots=True)
class Revoke:
    """Delete a retiring key at Encord: its grace is over."""

    kind: KeyKind
    key: KeyRecord
    reason: str = "grace_over"


@dataclass(frozen=True, slots=True)
class DeleteOrphan:
    """An owned key (rotator's title) that no record explains: a crashed run's leftover."""

    key: RemoteKey
    reason: str = "orphaned"


@dataclass(frozen=True, slots=True)
class Rotate:
    """Issue, verify, store a new key of this kind; the current one starts its grace."""

    kind: KeyKind
    reason: str
    window_opens_at: datetime | None = None
    """Set when the rotation window is closed until then but the key cannot wait for it
    (``rotation.window_overridden``)."""


@dataclass(frozen=True, slots=True)
class Blocked:
    """A rotation is needed but may not start (``blocked_by_cap``, ``not_bootstrapped``)."""

    kind: KeyKind
    reason: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class MintBearer:
    """Mint a bearer token with the signer key and write it to Vault."""

    reason: str


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing more to do before ``until`` (the next moment something falls due)."""

    until: datetime | None
    reason: str


Action = (
    ResumeRotation | Forget | Revoke | DeleteOrphan | Rotate | Blocked | MintBearer | Wait
    | Paused | Deferred
)


def _fmt(td: timedelta) -> str:
    seconds = int(td.total_seconds())
    if seconds < 0:
        return "overdue"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def due_at(key: KeyRecord, policy: Policy) -> datetime:
    """A key is due at ``issued_at + KEY_TTL - ROTATE_BEFORE``."""
    return key.issued_at + policy.key_ttl - policy.rotate_before


def is_owned(key: RemoteKey, snapshot: Snapshot, policy: Policy) -> bool:
    """Owned: in the record, or titled by this deployment for this account."""
    return key.key_id in snapshot.state.owned_key_ids() or key.title.startswith(
        owned_title_prefix(policy.instance, snapshot.account)
    )


def _unexplained(snapshot: Snapshot, policy: Policy) -> list[RemoteKey]:
    """Keys titled by this deployment for this account that neither the record (key ids, the
    title of a rotation in flight) nor the newest version of a consumer path explains."""
    state = snapshot.state
    explained = state.owned_key_ids() | {i for i in snapshot.consumer_key_ids.values() if i}
    pending_titles = {ks.pending.title for ks in state.kinds.values() if ks.pending is not None}
    prefix = owned_title_prefix(policy.instance, snapshot.account)
    return [
        k
        for k in snapshot.remote
        if k.title.startswith(prefix)
        and k.key_id not in explained
        and k.title not in pending_titles
    ]


def _young(key: RemoteKey, policy: Policy, now: datetime) -> bool:
    """Encord created it less than GRACE ago (or, by its clock, in the future): a consumer may
    hold it although no record says so (a record lost and re-bootstrapped), so it is kept."""
    return now - key.created_at < policy.grace


def orphans(snapshot: Snapshot, policy: Policy, now: datetime) -> list[RemoteKey]:
    """Owned keys at Encord that nothing explains and that may be deleted now."""
    return [k for k in _unexplained(snapshot, policy) if not _young(k, policy, now)]


def plan(
    snapshot: Snapshot,
    policy: Policy,
    now: datetime,
    *,
    force: frozenset[str] = frozenset(),
) -> list[Action]:
    """Every action due now, in the order to carry them out, ending with a Wait.

    ``force`` names key kinds to rotate now whatever their age (``rotator rotate``); the cap
    still applies. The steps, in order: resume half-done rotations (the write-ahead log is
    replayed before anything new), retire keys, delete orphans, rotate what is due within
    the room the cap leaves, refresh the bearer token. A paused account (``rotator pause``)
    gets :class:`Paused` and the bearer token's refresh only.
    """
    draft = _Draft()
    if snapshot.state.paused is not None:
        draft.actions.append(Paused.of(snapshot.state.paused))
    else:
        _resume_pending(snapshot.state, draft)
        _retire(snapshot, now, draft)
        _delete_orphans(snapshot, policy, now, draft)
        _rotate_due(snapshot, policy, now, force, draft)
    _refresh_bearer(snapshot.state, policy, now, draft)
    until = min(draft.next_times) if draft.next_times else None
    draft.actions.append(Wait(until=until, reason="next_due" if until else "nothing_scheduled"))
    return draft.actions


@dataclass(slots=True)
class _Draft:
    """A plan being made: its actions so far, the key ids they delete, and the moments at
    which something falls due later."""

    actions: list[Action] = field(default_factory=list)
    deleting: set[str] = field(default_factory=set)
    next_times: list[datetime] = field(default_factory=list)


def _resume_pending(state: AccountState, draft: _Draft) -> None:
    """Step 1: every rotation left half done is resumed, before anything new."""
    for kind, ks in state.kinds.items():
        if ks.pending is not None:
            draft.actions.append(ResumeRotation(kind=_as_kind(kind)))


def _retire(snapshot: Snapshot, now: datetime, draft: _Draft) -> None:
    """Step 2: retiring keys already gone are forgotten, those whose grace is over revoked."""
    remote_ids = {k.key_id for k in snapshot.remote}
    for kind, ks in snapshot.state.kinds.items():
        current_id = ks.current.key_id if ks.current else None
        for key in ks.retiring:
            if key.key_id == current_id:
                continue  # never revoke the current key, whatever the record says
            if key.key_id not in remote_ids:
                draft.actions.append(Forget(kind=_as_kind(kind), key_id=key.key_id))
            elif key.retire_after is not None and key.retire_after <= now:
                draft.actions.append(Revoke(kind=_as_kind(kind), key=key))
                draft.deleting.add(key.key_id)
            elif key.retire_after is not None:
                draft.next_times.append(key.retire_after)


def _delete_orphans(snapshot: Snapshot, policy: Policy, now: datetime, draft: _Draft) -> None:
    """Step 3: owned keys (by title) that nothing explains are deleted once GRACE old."""
    for key in _unexplained(snapshot, policy):
        if _young(key, policy, now):
            draft.next_times.append(now + (policy.grace - (now - key.created_at)))
        else:
            draft.actions.append(DeleteOrphan(key=key))
            draft.deleting.add(key.key_id)


def _held_after(snapshot: Snapshot, deleting: set[str]) -> int:
    """Keys the account will hold once ``deleting`` is gone and the recorded intents resumed.

    An intent Encord does not hold yet will take a slot when it is resumed. One it holds
    (found by key id, or by title when Encord generated it) is counted in ``remote``
    already; a ``registered`` one that is gone will be rolled back and takes none.
    """
    remote_ids = {k.key_id for k in snapshot.remote}
    remote_titles = {k.title for k in snapshot.remote}
    held = len([k for k in snapshot.remote if k.key_id not in deleting])
    for ks in snapshot.state.kinds.values():
        p = ks.pending
        if p is None or p.phase != "intent":
            continue
        held_already = p.key_id in remote_ids if p.key_id else p.title in remote_titles
        if not held_already:
            held += 1
    return held


def _rotation_reason(
    snapshot: Snapshot, kind: KeyKind, policy: Policy, now: datetime, force: frozenset[str],
    draft: _Draft,
) -> Rotate | Blocked | Deferred | None:
    """Whether ``kind`` needs a new key now, and why (None: it does not, and when it will is
    noted). Only a rotation due by age waits for the rotation window."""
    ks = snapshot.state.kind(kind)
    if ks.current is None:
        if snapshot.state.signer() is None:
            return Blocked(kind=kind, reason="not_bootstrapped")
        return Rotate(kind=kind, reason="no_current_key")
    if ks.current.key_id not in {k.key_id for k in snapshot.remote}:
        return Rotate(kind=kind, reason="current_missing_at_encord")
    if snapshot.consumer_key_ids.get(kind, ks.current.key_id) != ks.current.key_id:
        return Rotate(kind=kind, reason="consumer_path_mismatch")
    if kind in force:
        return Rotate(kind=kind, reason="requested")
    due = due_at(ks.current, policy)
    if due > now:
        draft.next_times.append(due)
        return None
    held = window_hold(policy.window, kind, now, ks.current.expires_at, policy.window_margin())
    if isinstance(held, Deferred):
        draft.next_times.append(held.until)
        return held
    reason = f"expires_in_{_fmt(ks.current.expires_at - now)}"
    return Rotate(kind=kind, reason=reason, window_opens_at=held)


def _backing_off(ks: KindState, kind: str, policy: Policy, now: datetime,
                 force: frozenset[str], draft: _Draft) -> bool:
    """The last attempt failed and its back-off is not over (a request overrides it)."""
    if kind in force or ks.last is None or ks.last.outcome != "failed":
        return False
    retry_at = ks.last.at + policy.failure_backoff()
    if retry_at <= now:
        return False
    draft.next_times.append(retry_at)
    return True


def _rotate_due(
    snapshot: Snapshot, policy: Policy, now: datetime, force: frozenset[str], draft: _Draft
) -> None:
    """Step 4: rotations, each only if the cap leaves room once the deletions are done."""
    state = snapshot.state
    held = _held_after(snapshot, draft.deleting)
    for kind in policy.kinds:
        ks = state.kind(kind)
        if ks.pending is not None:
            continue
        decision = _rotation_reason(snapshot, kind, policy, now, force, draft)
        if isinstance(decision, Blocked | Deferred):
            draft.actions.append(decision)
            continue
        if decision is None or _backing_off(ks, kind, policy, now, force, draft):
            continue
        if held + 1 > policy.key_cap:
            detail = f"{held}/{policy.key_cap} keys held"
            draft.actions.append(Blocked(kind=kind, reason="blocked_by_cap", detail=detail))
            continue
        draft.actions.append(decision)
        held += 1


def _refresh_bearer(state: AccountState, policy: Policy, now: datetime, draft: _Draft) -> None:
    """Step 5: the bearer token is fresh, and minted by the key consumers currently hold."""
    signer = state.signer()
    if not policy.bearer or signer is None:
        return
    b = state.bearer
    rotating = any(isinstance(a, Rotate | ResumeRotation) for a in draft.actions)
    if b is None:
        draft.actions.append(MintBearer(reason="no_token"))
    elif rotating or b.minted_with != signer.key_id:
        draft.actions.append(MintBearer(reason="signer_changed"))
    elif b.expires_at - policy.bearer_refresh_margin() <= now:
        draft.actions.append(MintBearer(reason=f"expires_in_{_fmt(b.expires_at - now)}"))
    else:
        draft.next_times.append(b.expires_at - policy.bearer_refresh_margin())


def _as_kind(kind: str) -> KeyKind:
    if kind == "ssh-key":
        return "ssh-key"
    if kind == "api-key":
        return "api-key"
    raise ValueError(f"unknown key kind {kind!r}")


def describe(actions: Sequence[Action]) -> list[dict[str, object]]:
    """JSON-safe description of a plan (for ``rotator plan`` and dry-run logs)."""
    out: list[dict[str, object]] = []
    for a in actions:
        d: dict[str, object] = {"action": type(a).__name__}
        if isinstance(a, Revoke):
            d.update(kind=a.kind, key_id=a.key.key_id, reason=a.reason)
        elif isinstance(a, DeleteOrphan):
            d.update(key_id=a.key.key_id, title=a.key.title, reason=a.reason)
        elif isinstance(a, Wait):
            d.update(until=a.until.isoformat() if a.until else None, reason=a.reason)
        elif isinstance(a, Paused | Deferred):
            d.update(a.describe())
        elif isinstance(a, Rotate) and a.window_opens_at is not None:
            d.update(kind=a.kind, reason=a.reason, window_opens_at=a.window_opens_at.isoformat())
        else:
            for name in ("kind", "key_id", "reason", "detail"):
                value = getattr(a, name, None)
                if value:
                    d[name] = value
        out.append(d)
    return out
