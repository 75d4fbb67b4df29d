"""The sandbox's records: a service :class:`Account` with its keys, a minted :class:`Token`,
a :class:`Refused` call, who may manage an account (:func:`may_manage`), and a key's JSON as
Part 2 of the contract shows it. Mutable records are guarded by the store's lock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from rotator.core import keys
from rotator.core.vocab import Origin, RemoteKey, parse_rfc3339
from rotator.dev.sandbox.seed import Role


def rfc3339_micro(dt: datetime) -> str:
    """``2026-11-29T12:00:00.123456Z``: UTC with microseconds, so keys made in one second order."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def key_json(key: RemoteKey) -> dict[str, str]:
    """A key as Part 2 of the contract shows it (camelCase)."""
    return {
        "keyHash": key.key_hash,
        "keyId": key.key_id,
        "title": key.title,
        "publicKey": key.public_key,
        "origin": key.origin,
        "createdAt": rfc3339_micro(key.created_at),
    }


def key_from_json(data: Any) -> RemoteKey:
    """A key as :func:`key_json` wrote it; raises (ValueError, KeyError, ...) if not one."""
    origin = data["origin"]
    if origin not in ("uploaded", "generated"):
        raise ValueError("bad origin")
    public_key = str(data["publicKey"])
    key_id = str(data["keyId"])
    if keys.key_id_of_line(public_key) != key_id:
        raise ValueError("keyId does not match publicKey")
    return RemoteKey(
        key_hash=str(data["keyHash"]),
        key_id=key_id,
        title=str(data["title"]),
        public_key=public_key,
        origin=cast(Origin, origin),
        created_at=parse_rfc3339(str(data["createdAt"])),
    )


class Refused(Exception):
    """The sandbox refuses a call: ``status`` and ``code`` go to the client with ``message``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(slots=True)
class Account:
    """A service account and its keys, oldest first (mutable; guarded by the store's lock)."""

    name: str
    account_hash: str
    key_cap: int
    role: Role
    organisation: str
    keys: list[RemoteKey] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "hash": self.account_hash,
            "role": self.role,
            "organisation": self.organisation,
            "key_cap": self.key_cap,
            "keys": [key_json(k) for k in self.keys],
        }


def may_manage(principal: Account, account: Account) -> bool:
    """Part 2: an account's keys are managed by the account itself or an admin of its
    organisation; anyone else gets 403."""
    if principal is account:
        return True
    return principal.role == "admin" and principal.organisation == account.organisation


@dataclass(frozen=True, slots=True)
class Token:
    """A minted bearer token, as the store keeps it (by its SHA-256, never itself)."""

    account: str
    expires_at: float
