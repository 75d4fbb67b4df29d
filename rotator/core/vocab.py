"""The vocabulary every layer speaks: accounts, credential kinds, outcomes, and the value
types of keys and tokens (frozen, slotted, tz-aware UTC). Defined once, here."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Final, Literal

Origin = Literal["uploaded", "generated"]

KeyKind = Literal["ssh-key", "api-key"]
"""A key rotator rotates: ``ssh-key`` (rotator makes the pair and uploads the public half)
or ``api-key`` (Encord generates the pair and hands over the private half once)."""
KEY_KINDS: Final[tuple[KeyKind, ...]] = ("ssh-key", "api-key")

Credential = Literal["ssh-key", "api-key", "bearer-token"]
"""What ``ROTATOR_CREDENTIALS`` may name: the two key kinds and the bearer token."""
CREDENTIALS: Final[tuple[Credential, ...]] = ("ssh-key", "api-key", "bearer-token")
BEARER: Final = "bearer-token"


@dataclass(frozen=True, slots=True)
class Account:
    """An Encord service account rotator manages."""

    name: str
    """Our name for it: the path segment under the Vault prefix (``encord/<name>/ssh-key``)."""
    hash: str
    """Encord's service-account hash, the ``{sa}`` in ``/service-accounts/{sa}/keys``."""
    domain: str | None = None
    """The Encord API base the account lives at (its region, e.g.
    ``https://api.us.encord.com``); None: the deployment's ``ENCORD_DOMAIN``."""


class Outcome(StrEnum):
    """How a rotation attempt (or a bootstrap) of one credential ended: the ``outcome`` of
    ``rotation.finished``, of the state record's ``last`` entry and of the
    ``rotator_rotations`` metric."""

    ROTATED = "rotated"
    FAILED = "failed"
    BLOCKED_BY_CAP = "blocked_by_cap"
    ROLLED_BACK = "rolled_back"
    NOT_BOOTSTRAPPED = "not_bootstrapped"
    BOOTSTRAPPED = "bootstrapped"

    @property
    def is_failure(self) -> bool:
        """The attempt left the credential unrotated for a reason a person should see."""
        return self in (Outcome.FAILED, Outcome.BLOCKED_BY_CAP, Outcome.NOT_BOOTSTRAPPED)


ROTATION_RESULTS: Final[tuple[Outcome, ...]] = (
    Outcome.ROTATED,
    Outcome.FAILED,
    Outcome.BLOCKED_BY_CAP,
    Outcome.ROLLED_BACK,
)
"""The outcomes a rotation attempt itself can end in (metric label values set up at 0)."""


def utc(dt: datetime) -> datetime:
    """Reject naive datetimes; normalise aware ones to UTC."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError("naive datetime: rotator only handles tz-aware UTC times")
    return dt.astimezone(UTC)


def rfc3339(dt: datetime) -> str:
    """``2026-11-29T12:00:00Z`` (seconds precision, UTC)."""
    return utc(dt).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


EARLIEST: Final = datetime(1970, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(9000, 1, 1, tzinfo=UTC)
"""The times rotator accepts from a record or a peer: [EARLIEST, LATEST). Durations are
capped at 100 years (``MAX_DURATION``), so any sum or difference the core makes of such a
time and a duration stays inside what :class:`datetime` can hold."""
MAX_DURATION: Final = timedelta(days=36500)
"""The longest duration configuration accepts (100 years)."""


def in_time_range(dt: datetime) -> bool:
    """``dt`` lies within [EARLIEST, LATEST): arithmetic with durations cannot overflow."""
    return EARLIEST <= dt < LATEST


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
class KnownKey:
    """A key the state record knows, with its private half: what a registrar that cannot list
    (the manual one) probes to learn whether it is still at Encord. ``key_hash`` is None for a
    key not registered yet, as far as the record knows."""

    key_id: str
    key_hash: str | None
    title: str
    public_key: str
    origin: Origin
    created_at: datetime
    private_openssh: str = field(repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "created_at", utc(self.created_at))


@dataclass(frozen=True, slots=True)
class BearerToken:
    """A bearer token minted by Encord; the token text never shows in ``repr``."""

    token: str = field(repr=False)
