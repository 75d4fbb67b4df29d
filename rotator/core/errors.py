"""The whole exception tree of rotator.

::

    RotatorError
    ├── ConfigError          bad settings or bad input: exit 2, never retried
    ├── KeyFormatError       a key that is not an unencrypted Ed25519 OpenSSH key
    ├── TransientError       Vault/Encord unavailable, 429, 5xx, timeouts: back off, retry
    │   ├── StoreUnavailable
    │   └── RegistryUnavailable
    │       └── AmbiguousWrite   a write whose answer was lost: it may or may not have happened
    ├── StoreConflict        check-and-set mismatch: someone else moved first; re-read
    └── PermanentError       retrying will not help: alert, do not hammer
        ├── AccessDenied     401/403 from Vault or Encord
        │   └── ClockSkew    Encord's 401 while its clock is more than a minute off ours
        ├── NotFound         404 from Encord
        │   └── KeyManagementUnavailable  404/405 on the key list: no key management there
        ├── RegistryRejected Encord refused (cap reached, duplicate, invalid key)
        ├── CorruptState     a record in Vault that rotator cannot read
        └── ProtocolError    a peer answered something that is not the contract

Each class carries its :class:`ErrorKind` (``kind``: what the caller should do, the
``error_kind`` of ``check.failed`` and the ``kind`` label of ``rotator_errors``) and, for
outages, the ``peer`` that did not answer; :func:`error_kind` classifies any exception.

Messages are one line, name what is wrong, and never carry a response body, a key or a
token: adapters translate library errors at the boundary with ``raise X(...) from None`` or
``from exc`` only when the cause's text is known to be free of secrets.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar, Final, Literal

Peer = Literal["vault", "encord"]


class ErrorKind(StrEnum):
    """What a failed check means for the caller, by error class."""

    TRANSIENT = "transient"  # back off and retry
    ACCESS_DENIED = "access_denied"  # a credential or policy is wrong: alert
    PERMANENT = "permanent"  # retrying will not help: alert, do not hammer
    INTERNAL = "internal"  # a bug, or an error outside this tree


class RotatorError(Exception):
    """Base of every error rotator raises on purpose."""

    kind: ClassVar[ErrorKind] = ErrorKind.INTERNAL
    peer: ClassVar[Peer | None] = None
    """The outside system that did not answer (outages only), else None."""


class ConfigError(RotatorError):
    """Settings or input are wrong; ``problems`` lists every one, one line each."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


class KeyFormatError(RotatorError):
    """A key is not an unencrypted Ed25519 key in OpenSSH format (never holds key text)."""


class TransientError(RotatorError):
    """A peer is unavailable for now; retry with back-off."""

    kind = ErrorKind.TRANSIENT

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StoreUnavailable(TransientError):
    """Vault did not answer, or answered 5xx."""

    peer = "vault"


class RegistryUnavailable(TransientError):
    """Encord did not answer, was throttled (429) or answered 5xx."""

    peer = "encord"


class AmbiguousWrite(RegistryUnavailable):
    """A non-idempotent call's answer was lost: it may or may not have taken effect."""


class StoreConflict(RotatorError):
    """A check-and-set write lost: another writer moved first."""


class PermanentError(RotatorError):
    """Retrying will not help."""

    kind = ErrorKind.PERMANENT


class AccessDenied(PermanentError):
    """401/403 from Vault or Encord."""

    kind = ErrorKind.ACCESS_DENIED

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ClockSkew(AccessDenied):
    """Encord refused a signature (401) while its clock, as its answer's ``Date`` header
    tells, is more than :data:`SKEW_TOLERANCE` seconds off this host's: Encord refuses
    signatures whose ``created`` is more than 300 s off its own clock, so the host's clock,
    not the key, is the likely cause. ``offset``: Encord's clock minus ours, in seconds."""

    def __init__(self, message: str, *, offset: float) -> None:
        super().__init__(message, status=401)
        self.offset = offset


SKEW_TOLERANCE: Final = 60.0
"""Seconds of clock offset against Encord beyond which a 401 is put down to the clock."""


class NotFound(PermanentError):
    """Encord answered 404."""


class KeyManagementUnavailable(NotFound):
    """Encord answered 404 or 405 (``status``) to the key list: this Encord does not offer
    key management to rotator (or the service-account hash is wrong). In ``api`` mode
    nothing can be rotated; ``ROTATOR_REGISTRAR=manual`` is the way."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class RegistryRejected(PermanentError):
    """Encord refused a key call; ``code`` is Encord's error code (``KEY_LIMIT_REACHED``...)."""

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class CorruptState(PermanentError):
    """A record rotator keeps in Vault cannot be parsed."""


class ProtocolError(PermanentError):
    """A peer answered outside the contract (garbage JSON, missing fields)."""


ERROR_KINDS: Final[tuple[ErrorKind, ...]] = tuple(ErrorKind)


def error_kind(exc: BaseException) -> ErrorKind:
    """The kind of any exception: its class's, or ``internal`` for one outside the tree."""
    return exc.kind if isinstance(exc, RotatorError) else ErrorKind.INTERNAL
