"""``rotator status`` shaped for a person (an aligned table and hints) and for a machine
(``--json``: seconds, full key ids, ISO times), from :func:`rotator.core.admin.status`.

The table is :data:`COLUMNS`, one row per account and credential; the notes under it are
:data:`HINTS`. A new column or a new note is one line in either.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from rotator.core.admin import AccountStatus, KindStatus
from rotator.core.policy import Policy
from rotator.core.vocab import BEARER, Outcome
from rotator.runtime.render import align, human_duration, relative, seconds, short_id, when

NONE = "-"
FAILURES = frozenset(o.value for o in Outcome if o.is_failure)


@dataclass(frozen=True, slots=True)
class View:
    """One account's status with what judging it takes: its policy and when it was read."""

    status: AccountStatus
    policy: Policy
    now: datetime

    @property
    def name(self) -> str:
        return self.status.account

    @property
    def bootstrapped(self) -> bool:
        """There is a key to sign with (status asks Encord only then)."""
        return self.status.asked_encord

    def bearer_left(self) -> timedelta | None:
        at = self.status.bearer_expires_at
        return None if at is None else at - self.now


def key_state(ks: KindStatus, policy: Policy) -> str:
    """``rotating`` (a rotation stopped half way), ``none``, ``requested``, ``expired``,
    ``due`` (within ROTATOR_ROTATE_BEFORE of expiry) or ``ok``."""
    if ks.pending is not None:
        return "rotating"
    if ks.current is None:
        return "none"
    if ks.requested:
        return "requested"
    if ks.current.expires_in <= timedelta(0):
        return "expired"
    return "due" if ks.current.expires_in <= policy.rotate_before else "ok"


def bearer_state(view: View) -> str:
    """``none``, ``expired``, ``expiring`` (the next check re-mints it) or ``fresh``."""
    left = view.bearer_left()
    if left is None:
        return "none"
    if left <= timedelta(0):
        return "expired"
    return "expiring" if left <= view.policy.bearer_refresh_margin() else "fresh"


# --- the table ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    """One row: a credential of an account; ``kind`` is None for the bearer token."""

    view: View
    credential: str
    kind: KindStatus | None


def _state(r: Row) -> str:
    return bearer_state(r.view) if r.kind is None else key_state(r.kind, r.view.policy)


def _key(r: Row) -> str:
    current = r.kind.current if r.kind else None
    return short_id(current.key_id) if current else NONE


def _age(r: Row) -> str:
    current = r.kind.current if r.kind else None
    return human_duration(current.age) if current else NONE


def _expires(r: Row) -> str:
    if r.kind is None:
        at = r.view.status.bearer_expires_at
    else:
        at = r.kind.current.expires_at if r.kind.current else None
    if at is None:
        return NONE
    return human_duration(at - r.view.now) if at > r.view.now else relative(at, r.view.now)


def _at_encord(r: Row) -> str:
    st = r.view.status
    if r.kind is None:
        return ""
    count = "?" if st.keys_at_encord is None else str(st.keys_at_encord)
    return f"{count}/{st.key_cap}" if st.asked_encord else f"{NONE}/{st.key_cap}"


def _last(r: Row) -> str:
    last = r.kind.last if r.kind else None
    if last is None:
        return ""
    text = f"{last.outcome} {relative(last.at, r.view.now)}"
    return text if last.outcome.startswith(last.reason) else f"{text} ({last.reason})"


@dataclass(frozen=True, slots=True)
class Column:
    header: str
    cell: Callable[[Row], str]


COLUMNS: tuple[Column, ...] = (
    Column("ACCOUNT", lambda r: r.view.name),
    Column("CREDENTIAL", lambda r: r.credential),
    Column("STATE", _state),
    Column("KEY", _key),
    Column("AGE", _age),
    Column("EXPIRES IN", _expires),
    Column("KEYS AT ENCORD", _at_encord),
    Column("LAST ROTATION", _last),
)
"""The status table, left to right."""


def rows(view: View) -> Iterator[Row]:
    for kind, ks in view.status.kinds.items():
        yield Row(view, kind, ks)
    if view.policy.bearer:
        yield Row(view, BEARER, None)


# --- hints --------------------------------------------------------------------------------


def _paused(v: View) -> Iterator[str]:
    p = v.status.paused
    if p is not None:
        why = f": {p.reason}" if p.reason else ""
        yield (
            f"{v.name}: paused {relative(p.at, v.now)} by {p.by}{why}; no key changes (the "
            f"bearer token is still refreshed) until: rotator resume {v.name}"
        )


def _window(v: View) -> Iterator[str]:
    w = v.status.window
    if w is not None and not w.open:
        yield (
            f"{v.name}: rotation window closed ({w.window}); rotations due by age wait until "
            f"{when(w.opens_at)} ({relative(w.opens_at, v.now)})"
        )


def _not_bootstrapped(v: View) -> Iterator[str]:
    if not v.bootstrapped:
        yield (
            f"{v.name}: not bootstrapped; run: rotator bootstrap {v.name} --private-key-file F "
            "(F: the key file the Encord UI downloaded)"
        )


def _encord_error(v: View) -> Iterator[str]:
    if v.status.encord_error is not None:
        yield (
            f"{v.name}: Encord did not list the keys ({v.status.encord_error}); check "
            "ENCORD_DOMAIN, the network to it, and that the account's current key still "
            "authenticates"
        )


def _at_cap(v: View) -> Iterator[str]:
    count = v.status.keys_at_encord
    if count is not None and count >= v.status.key_cap:
        yield (
            f"{v.name}: {count} of {v.status.key_cap} keys at Encord; a rotation waits until "
            "one goes (rotator plan says which and when)"
        )


def _per_kind(v: View) -> Iterator[str]:
    for kind, ks in v.status.kinds.items():
        who = f"{v.name} {kind}"
        if ks.pending is not None:
            yield (
                f"{who}: a rotation stopped at its '{ks.pending}' step; the next check finishes "
                f"or rolls it back (the daemon's, or: rotator rotate {v.name} --credential {kind})"
            )
        elif ks.requested:
            yield (
                f"{who}: asked to rotate; the daemon holding the account does it at its next "
                "check"
            )
        elif ks.current is not None and ks.current.expires_in <= timedelta(0):
            yield f"{who}: the current key is past its expiry; is the daemon running?"
        if ks.last is not None and ks.last.outcome in FAILURES and v.bootstrapped:
            why = ks.last.error or ks.last.reason
            yield (
                f"{who}: the last rotation ended '{ks.last.outcome}' ({why}) "
                f"{relative(ks.last.at, v.now)}; the daemon's log has the details"
            )


def _bearer(v: View) -> Iterator[str]:
    if v.policy.bearer and v.bootstrapped and bearer_state(v) in ("none", "expired"):
        yield f"{v.name} {BEARER}: none valid; the daemon mints one at its next check"


HINTS: tuple[Callable[[View], Iterator[str]], ...] = (
    _paused,
    _window,
    _not_bootstrapped,
    _encord_error,
    _at_cap,
    _per_kind,
    _bearer,
)
"""What to do about an account, in the order shown under the table."""


def hints(view: View) -> list[str]:
    return [line for hint in HINTS for line in hint(view)]


def text(views: list[View]) -> str:
    """The table, then the hints (if any), for a terminal."""
    table = [[c.cell(r) for c in COLUMNS] for v in views for r in rows(v)]
    lines = align([c.header for c in COLUMNS], table)
    notes = [line for v in views for line in hints(v)]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines)


# --- JSON ---------------------------------------------------------------------------------


def as_json(view: View) -> dict[str, Any]:
    """One account for ``--json``: durations in seconds (``*_s``), full key ids, ISO times;
    free of secrets (the status never holds one)."""
    st = view.status
    entry: dict[str, Any] = {"account": st.account, "key_cap": st.key_cap}
    if st.asked_encord:
        entry["keys_at_encord"] = st.keys_at_encord
        if st.encord_error is not None:
            entry["encord_error"] = st.encord_error
    for kind, ks in st.kinds.items():
        k: dict[str, Any] = {"state": key_state(ks, view.policy)}
        if ks.current is not None:
            k.update(
                key_id=ks.current.key_id,
                age_s=seconds(ks.current.age),
                expires_in_s=seconds(ks.current.expires_in),
                expires_at=ks.current.expires_at.isoformat(),
            )
        k.update(retiring=list(ks.retiring), pending=ks.pending, requested=ks.requested)
        if ks.last is not None:
            k["last_rotation"] = {
                "outcome": ks.last.outcome,
                "at": ks.last.at.isoformat(),
                "reason": ks.last.reason,
            }
        entry[kind] = k
    if view.policy.bearer:
        bearer: dict[str, Any] = {"state": bearer_state(view)}
        left = view.bearer_left()
        if st.bearer_expires_at is not None and left is not None:
            bearer.update(
                expires_at=st.bearer_expires_at.isoformat(),
                expires_in_s=max(seconds(left), 0),
            )
        entry[BEARER] = bearer
    entry["window"] = None if st.window is None else st.window.describe()
    p = st.paused
    entry["paused"] = (
        None if p is None else {"at": p.at.isoformat(), "by": p.by, "reason": p.reason}
    )
    entry["hints"] = hints(view)
    return entry
