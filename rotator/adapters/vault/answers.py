"""Reading Vault's answers: checked field access and the description of a token.

An answer of an unexpected shape is a :class:`~rotator.core.errors.CorruptState` naming where
it came from, never a ``KeyError`` or ``TypeError`` from deep inside a caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from rotator.core.errors import CorruptState

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What Vault said about the session's current token; never the token itself."""

    accessor: str
    """The token's accessor ('' for batch tokens, which have none)."""
    policies: tuple[str, ...]
    ttl: float
    """Seconds the token had left when Vault last described it (login, lookup or renewal);
    0 for a token that never expires (a root token)."""
    renewable: bool
    expires_at: float | None
    """When it runs out, on the session's clock (``time.monotonic`` by default); None: never."""


def get(container: Any, key: str, kind: type[T], *, where: str) -> T:
    """``container[key]`` checked to be a ``kind``; CorruptState otherwise."""
    if not isinstance(container, dict):
        raise CorruptState(f"Vault answered an unexpected shape for {where}")
    value = container.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise CorruptState(f"Vault answered no valid {key!r} for {where}")
    return value


def auth_answer(answer: Any, started: float, *, where: str) -> tuple[str, TokenInfo]:
    """The token and its description from a login or renewal answer (``auth`` block)."""
    auth = get(answer, "auth", dict, where=where)
    token = get(auth, "client_token", str, where=where)
    if not token:
        raise CorruptState(f"Vault answered an empty client_token to {where}")
    ttl = _number(auth.get("lease_duration"))
    return token, TokenInfo(
        accessor=str(auth.get("accessor") or ""),
        policies=_policies(auth.get("policies")),
        ttl=ttl,
        renewable=auth.get("renewable") is True,
        expires_at=started + ttl if ttl > 0 else None,
    )


def lookup_answer(answer: Any, started: float) -> tuple[TokenInfo, float]:
    """A token's description from ``auth/token/lookup-self``, and the TTL it was issued with:
    a looked-up token may be half-way through its life, and its issued TTL sets the
    renewal pace."""
    data = get(answer, "data", dict, where="token lookup")
    ttl = _number(data.get("ttl"))
    issued = _number(data.get("creation_ttl")) or ttl
    info = TokenInfo(
        accessor=str(data.get("accessor") or ""),
        policies=_policies(data.get("policies")),
        ttl=ttl,
        renewable=data.get("renewable") is True,
        expires_at=started + ttl if ttl > 0 else None,
    )
    return info, max(issued, ttl)


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return 0.0
    return float(value)


def _policies(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(p for p in value if isinstance(p, str))
