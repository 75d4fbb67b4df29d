"""The account state record rotator keeps in Vault at ``{prefix}/{NAME}/state``.

It is the write-ahead log of the rotation protocol: an intent is recorded here (with
check-and-set) before any call to Encord, and every later step moves it on. Reading it back
after a crash tells the engine exactly what to finish or roll back.

The record holds private keys (the pending, current and retiring keys), so it lives under the
same Vault prefix and policy as the consumer paths; :func:`public_view` is what ``status``
shows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal, cast

from rotator.core.errors import CorruptState
from rotator.core.vocab import (
    EARLIEST,
    KEY_KINDS,
    LATEST,
    Origin,
    in_time_range,
    parse_rfc3339,
    rfc3339,
    utc,
)

Phase = Literal["intent", "registered"]
SCHEMA = 1
STATE_NAME = "state"


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A key rotator owns: the current one, or one retiring after its successor was promoted."""

    key_id: str
    key_hash: str
    public_key: str
    title: str
    origin: Origin
    issued_at: datetime
    expires_at: datetime
    private_key: str = field(repr=False)
    retire_after: datetime | None = None  # grace deadline, set when superseded

    def __post_init__(self) -> None:
        object.__setattr__(self, "issued_at", utc(self.issued_at))
        object.__setattr__(self, "expires_at", utc(self.expires_at))
        if self.retire_after is not None:
            object.__setattr__(self, "retire_after", utc(self.retire_after))


@dataclass(frozen=True, slots=True)
class Pending:
    """A rotation in flight (the write-ahead intent).

    ``intent``: recorded, Encord maybe not called yet (for an api-key, Encord makes the key,
    so only the title is known). ``registered``: Encord holds the key; verify and promote next.
    """

    phase: Phase
    title: str
    reason: str
    started_at: datetime
    key_id: str | None = None
    public_key: str | None = None
    key_hash: str | None = None
    private_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "started_at", utc(self.started_at))


@dataclass(frozen=True, slots=True)
class LastRun:
    """The outcome of the latest rotation attempt of one credential."""

    outcome: str
    at: datetime
    reason: str
    key_id: str | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "at", utc(self.at))


@dataclass(frozen=True, slots=True)
class KindState:
    """Everything about one key kind (ssh-key or api-key) of one account."""

    current: KeyRecord | None = None
    retiring: tuple[KeyRecord, ...] = ()
    pending: Pending | None = None
    last: LastRun | None = None
    last_success: datetime | None = None


@dataclass(frozen=True, slots=True)
class BearerState:
    """The bearer token last written to Vault (the token itself is only in Vault's path)."""

    issued_at: datetime
    expires_at: datetime
    minted_with: str  # key id that minted it


@dataclass(frozen=True, slots=True)
class PauseRecord:
    """``rotator pause``: no key of the account changes until ``rotator resume`` (the bearer
    token is still refreshed). ``by`` names who paused it (``user@host``)."""

    at: datetime
    by: str
    reason: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "at", utc(self.at))
        object.__setattr__(self, "reason", self.reason or None)


@dataclass(frozen=True, slots=True)
class AccountState:
    """The whole record; ``version`` is its Vault KV version (0: never written), for CAS."""

    kinds: Mapping[str, KindState] = field(default_factory=dict)
    bearer: BearerState | None = None
    version: int = 0
    requested: frozenset[str] = frozenset()  # kinds `rotator rotate` asked the holder to rotate
    paused: PauseRecord | None = None  # `rotator pause`: ask `state.paused is not None`
    compromised: frozenset[str] = frozenset()
    """Key ids reported leaked (``rotator revoke``) and not yet revoked: see
    :mod:`rotator.core.compromise`."""

    def kind(self, kind: str) -> KindState:
        return self.kinds.get(kind, KindState())

    def with_kind(self, kind: str, ks: KindState) -> AccountState:
        kinds = dict(self.kinds)
        kinds[kind] = ks
        return replace(self, kinds=kinds)

    def owned_key_ids(self) -> set[str]:
        ids: set[str] = set()
        for ks in self.kinds.values():
            if ks.current is not None:
                ids.add(ks.current.key_id)
            ids.update(k.key_id for k in ks.retiring)
            if ks.pending is not None and ks.pending.key_id:
                ids.add(ks.pending.key_id)
        return ids

    def signer(self) -> KeyRecord | None:
        """The key that signs management calls: the current ssh-key, else the current api-key."""
        for kind in KEY_KINDS:
            current = self.kind(kind).current
            if current is not None:
                return current
        return None


# --- (de)serialisation -------------------------------------------------------------------


def _dt(value: datetime | None) -> str | None:
    return None if value is None else rfc3339(value)


def _key_to_dict(k: KeyRecord) -> dict[str, Any]:
    return {
        "key_id": k.key_id,
        "key_hash": k.key_hash,
        "public_key": k.public_key,
        "title": k.title,
        "origin": k.origin,
        "issued_at": rfc3339(k.issued_at),
        "expires_at": rfc3339(k.expires_at),
        "retire_after": _dt(k.retire_after),
        "private_key": k.private_key,
    }


def to_dict(state: AccountState) -> dict[str, Any]:
    """JSON-safe record as written to Vault."""
    kinds: dict[str, Any] = {}
    for name, ks in sorted(state.kinds.items()):
        kinds[name] = {
            "current": None if ks.current is None else _key_to_dict(ks.current),
            "retiring": [_key_to_dict(k) for k in ks.retiring],
            "pending": None
            if ks.pending is None
            else {
                "phase": ks.pending.phase,
                "title": ks.pending.title,
                "reason": ks.pending.reason,
                "started_at": rfc3339(ks.pending.started_at),
                "key_id": ks.pending.key_id,
                "public_key": ks.pending.public_key,
                "key_hash": ks.pending.key_hash,
                "private_key": ks.pending.private_key,
            },
            "last": None
            if ks.last is None
            else {
                "outcome": ks.last.outcome,
                "at": rfc3339(ks.last.at),
                "reason": ks.last.reason,
                "key_id": ks.last.key_id,
                "error": ks.last.error,
            },
            "last_success": _dt(ks.last_success),
        }
    bearer = None
    if state.bearer is not None:
        bearer = {
            "issued_at": rfc3339(state.bearer.issued_at),
            "expires_at": rfc3339(state.bearer.expires_at),
            "minted_with": state.bearer.minted_with,
        }
    out: dict[str, Any] = {"schema": SCHEMA, "kinds": kinds, "bearer": bearer}
    if state.requested:
        out["requested"] = sorted(state.requested)
    if state.paused is not None:
        p = state.paused
        out["paused"] = {"at": rfc3339(p.at), "by": p.by, "reason": p.reason}
    if state.compromised:
        out["compromised"] = sorted(state.compromised)
    return out


class _Reader:
    """Strict field access that turns any nonsense into one CorruptState line."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, what: str) -> CorruptState:
        return CorruptState(f"state record {self.where}: {what}")

    def obj(self, value: object, name: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(f"'{name}' is not an object")
        return cast(Mapping[str, Any], value)

    def s(self, m: Mapping[str, Any], name: str, *, optional: bool = False) -> str | None:
        v = m.get(name)
        if v is None and optional:
            return None
        if not isinstance(v, str) or not v:
            raise self.fail(f"'{name}' is missing or not a string")
        return v

    def req(self, m: Mapping[str, Any], name: str) -> str:
        v = self.s(m, name)
        assert v is not None
        return v

    def dt(self, m: Mapping[str, Any], name: str, *, optional: bool = False) -> datetime | None:
        v = self.s(m, name, optional=optional)
        if v is None:
            return None
        try:
            value = parse_rfc3339(v)
        except ValueError:
            raise self.fail(f"'{name}' is not an RFC 3339 UTC time") from None
        if not in_time_range(value):
            raise self.fail(
                f"'{name}' is out of range ({EARLIEST.year} to {LATEST.year - 1}): {v[:40]!r}"
            )
        return value

    def reqdt(self, m: Mapping[str, Any], name: str) -> datetime:
        v = self.dt(m, name)
        assert v is not None
        return v


def _key_from(r: _Reader, raw: object, name: str) -> KeyRecord:
    m = r.obj(raw, name)
    origin = r.req(m, "origin")
    if origin not in ("uploaded", "generated"):
        raise r.fail(f"'{name}.origin' must be 'uploaded' or 'generated'")
    return KeyRecord(
        key_id=r.req(m, "key_id"),
        key_hash=r.req(m, "key_hash"),
        public_key=r.req(m, "public_key"),
        title=r.req(m, "title"),
        origin=cast(Origin, origin),
        issued_at=r.reqdt(m, "issued_at"),
        expires_at=r.reqdt(m, "expires_at"),
        retire_after=r.dt(m, "retire_after", optional=True),
        private_key=r.req(m, "private_key"),
    )


def from_dict(data: Mapping[str, Any] | None, version: int, *, account: str) -> AccountState:
    """Parse the record; raise CorruptState (one line, no secrets) if it is not ours."""
    if data is None:
        return AccountState(version=version)
    r = _Reader(f"for account '{account}'")
    root = r.obj(data, "record")
    if root.get("schema") != SCHEMA:
        raise r.fail(f"unknown schema {root.get('schema')!r} (expected {SCHEMA})")
    kinds: dict[str, KindState] = {}
    for name, raw in r.obj(root.get("kinds", {}), "kinds").items():
        if name not in KEY_KINDS:
            raise r.fail(f"unknown credential kind '{name}'")
        kinds[name] = _kind_from(r, raw, name)
    bearer = None if root.get("bearer") is None else _bearer_from(r, root["bearer"])
    paused = None if root.get("paused") is None else _paused_from(r, root["paused"])
    return AccountState(
        kinds=kinds,
        bearer=bearer,
        version=version,
        requested=_requested_from(r, root),
        paused=paused,
        compromised=_compromised_from(r, root),
    )


def _kind_from(r: _Reader, raw: object, name: str) -> KindState:
    m = r.obj(raw, name)
    current = None if m.get("current") is None else _key_from(r, m["current"], "current")
    retiring_raw = m.get("retiring", [])
    if not isinstance(retiring_raw, list):
        raise r.fail("'retiring' is not a list")
    return KindState(
        current=current,
        retiring=tuple(_key_from(r, k, "retiring") for k in retiring_raw),
        pending=None if m.get("pending") is None else _pending_from(r, m["pending"]),
        last=None if m.get("last") is None else _last_from(r, m["last"]),
        last_success=r.dt(m, "last_success", optional=True),
    )


def _pending_from(r: _Reader, raw: object) -> Pending:
    p = r.obj(raw, "pending")
    phase = r.req(p, "phase")
    if phase not in ("intent", "registered"):
        raise r.fail("'pending.phase' must be 'intent' or 'registered'")
    pending = Pending(
        phase=cast(Phase, phase),
        title=r.req(p, "title"),
        reason=r.req(p, "reason"),
        started_at=r.reqdt(p, "started_at"),
        key_id=r.s(p, "key_id", optional=True),
        public_key=r.s(p, "public_key", optional=True),
        key_hash=r.s(p, "key_hash", optional=True),
        private_key=r.s(p, "private_key", optional=True),
    )
    if phase == "registered" and (pending.key_id is None or pending.private_key is None):
        raise r.fail("a registered pending key needs 'key_id' and 'private_key'")
    return pending


def _last_from(r: _Reader, raw: object) -> LastRun:
    m = r.obj(raw, "last")
    return LastRun(
        outcome=r.req(m, "outcome"),
        at=r.reqdt(m, "at"),
        reason=r.req(m, "reason"),
        key_id=r.s(m, "key_id", optional=True),
        error=r.s(m, "error", optional=True),
    )


def _bearer_from(r: _Reader, raw: object) -> BearerState:
    b = r.obj(raw, "bearer")
    return BearerState(
        issued_at=r.reqdt(b, "issued_at"),
        expires_at=r.reqdt(b, "expires_at"),
        minted_with=r.req(b, "minted_with"),
    )


def _paused_from(r: _Reader, raw: object) -> PauseRecord:
    m = r.obj(raw, "paused")
    return PauseRecord(
        at=r.reqdt(m, "at"), by=r.req(m, "by"), reason=r.s(m, "reason", optional=True)
    )


def _requested_from(r: _Reader, root: Mapping[str, Any]) -> frozenset[str]:
    raw = root.get("requested", [])
    if not isinstance(raw, list) or any(k not in KEY_KINDS for k in raw):
        raise r.fail("'requested' must be a list of key kinds")
    return frozenset(raw)


def _compromised_from(r: _Reader, root: Mapping[str, Any]) -> frozenset[str]:
    raw = root.get("compromised", [])
    if not isinstance(raw, list) or not all(isinstance(k, str) and k for k in raw):
        raise r.fail("'compromised' must be a list of key ids")
    return frozenset(raw)


def public_view(state: AccountState) -> dict[str, Any]:
    """The record without any private key: safe for ``status --json`` and logs."""
    d = to_dict(state)
    for ks in d["kinds"].values():
        for key in [ks["current"], ks["pending"], *ks["retiring"]]:
            if key is not None:
                key.pop("private_key", None)
    return d
