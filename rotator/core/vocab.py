"""Value types shared by the core and its adapters: frozen, slotted, tz-aware."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

Origin = Literal["uploaded", "generated"]


def utc(dt: datetime) -> datetime:
    """Reject naive datetimes; normalise aware ones to UTC."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError("naive datetime: rotator only handles tz-aware UTC times")
    return dt.astimezone(UTC)


def rfc3339(dt: datetime) -> str:
    """``2026-11-29T12:00:00Z`` (seconds precision, UTC)."""
    return utc(dt).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 UTC timestamp (``Z`` or offset); raise ValueError otherwise."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return utc(value)


@dataclass(frozen=True, slots=True)
class RemoteKey:
    """A key as Encord lists it (Part 2 of the contract)."""

    key_hash: str
    key_id: str
    title: str
    public_key: str
    origin: Origin
    created_at: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "created_at", utc(self.created_at))


@dataclass(frozen=True, slots=True)
class GeneratedKey:
    """Answer of ``POST .../keys/generate``: the key, and its private half (shown once)."""

    key: RemoteKey
    private_openssh: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class BearerToken:
    """A bearer token minted by Encord; the token text never shows in ``repr``."""

    token: str = field(repr=False)
