"""The credential kinds, each described once: who makes the key pair, how the new key gets
to Encord, and what a key Encord already holds for an unfinished intent means.

- ``ssh-key`` (:class:`SshKey`): rotator makes the pair and records all of it in the intent
  before uploading the public half. A key Encord holds with the intent's key id is ours to
  carry on with: the upload's answer was lost, or a person added it (manual registrar).
- ``api-key`` (:class:`ApiKey`): the intent holds only a title; Encord's generate answer
  supplies the key and its private half, once. A key Encord holds under the intent's title
  whose answer never reached the record is useless (its private half is lost): it is rolled
  back.

The engine looks the kind up (:func:`spec`) instead of branching on its name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import ClassVar, Final

from rotator.core import keys
from rotator.core.errors import CorruptState
from rotator.core.ports import AwaitingPerson, Registry
from rotator.core.state import AccountState, KeyRecord, Pending
from rotator.core.vocab import KeyKind, KnownKey, Origin, RemoteKey


@dataclass(frozen=True, slots=True)
class Held:
    """A new key Encord holds, with its private half: what registering yields."""

    key: RemoteKey
    private_openssh: str = field(repr=False)


class KindSpec(ABC):
    """How one credential kind's rotation goes (the steps around it are the engine's)."""

    kind: ClassVar[KeyKind]
    origin: ClassVar[Origin]
    """The ``origin`` of its keys, as Encord lists them and the record keeps them."""

    @abstractmethod
    def intent(self, title: str, reason: str, at: datetime) -> Pending:
        """The write-ahead record of a new rotation, made before Encord is called."""

    @abstractmethod
    def register(self, registry: Registry, intent: Pending) -> Held | AwaitingPerson:
        """Have Encord hold the intent's key."""

    @abstractmethod
    def adoptable(self, intent: Pending, remote: Mapping[str, RemoteKey]) -> Held | None:
        """The key Encord already holds for this intent that the rotation can go on with."""

    @abstractmethod
    def lost(self, intent: Pending, remote: Mapping[str, RemoteKey]) -> list[RemoteKey]:
        """Keys Encord made for this intent whose private half is lost: to roll back."""


class SshKey(KindSpec):
    """Rotator makes the pair; the public half is uploaded."""

    kind = "ssh-key"
    origin = "uploaded"

    def intent(self, title: str, reason: str, at: datetime) -> Pending:
        pair = keys.generate(comment=title)
        return Pending(
            phase="intent",
            title=title,
            reason=reason,
            started_at=at,
            key_id=pair.key_id,
            public_key=pair.public_line,
            private_key=pair.private_openssh,
        )

    def register(self, registry: Registry, intent: Pending) -> Held | AwaitingPerson:
        public, private = _pair(intent)
        answer = registry.upload_key(intent.title, public)
        if isinstance(answer, AwaitingPerson):
            return answer
        return Held(answer, private)

    def adoptable(self, intent: Pending, remote: Mapping[str, RemoteKey]) -> Held | None:
        found = remote.get(intent.key_id) if intent.key_id else None
        return None if found is None else Held(found, _pair(intent)[1])

    def lost(self, intent: Pending, remote: Mapping[str, RemoteKey]) -> list[RemoteKey]:
        return []  # the record holds the private half from the start


class ApiKey(KindSpec):
    """Encord makes the pair (``generate``) and hands over the private half once."""

    kind = "api-key"
    origin = "generated"

    def intent(self, title: str, reason: str, at: datetime) -> Pending:
        return Pending(phase="intent", title=title, reason=reason, started_at=at)

    def register(self, registry: Registry, intent: Pending) -> Held | AwaitingPerson:
        answer = registry.generate_key(intent.title)
        if isinstance(answer, AwaitingPerson):
            return answer
        return Held(answer.key, answer.private_openssh)

    def adoptable(self, intent: Pending, remote: Mapping[str, RemoteKey]) -> Held | None:
        return None  # a generated key found by listing comes without its private half

    def lost(self, intent: Pending, remote: Mapping[str, RemoteKey]) -> list[RemoteKey]:
        return [k for k in remote.values() if k.title == intent.title]


def _pair(intent: Pending) -> tuple[str, str]:
    if intent.public_key is None or intent.private_key is None:
        raise CorruptState("state record: a pending ssh-key holds no key pair")
    return intent.public_key, intent.private_key


KINDS: Final[Mapping[str, KindSpec]] = {spec.kind: spec for spec in (SshKey(), ApiKey())}


def spec(kind: str) -> KindSpec:
    """The description of ``kind``; ValueError for a kind rotator does not know."""
    try:
        return KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown key kind {kind!r}") from None


def known_keys(state: AccountState) -> list[KnownKey]:
    """Every key the record holds a private half of (current, retiring, and a pending one
    whose key id is known), kind by kind: what a registrar that cannot list probes."""
    known: list[KnownKey] = []
    for kind, ks in sorted(state.kinds.items()):
        for rec in (ks.current, *ks.retiring):
            if rec is not None:
                known.append(
                    KnownKey(
                        key_id=rec.key_id,
                        key_hash=rec.key_hash,
                        title=rec.title,
                        public_key=rec.public_key,
                        origin=rec.origin,
                        created_at=rec.issued_at,
                        private_openssh=rec.private_key,
                    )
                )
        p = ks.pending
        if p is not None and p.key_id and p.private_key and p.public_key:
            known.append(
                KnownKey(
                    key_id=p.key_id,
                    key_hash=p.key_hash,
                    title=p.title,
                    public_key=p.public_key,
                    origin=spec(kind).origin,
                    created_at=p.started_at,
                    private_openssh=p.private_key,
                )
            )
    return known


def listed_record(remote: RemoteKey, private_key: str, ttl: timedelta) -> KeyRecord:
    """A key a person made, as Encord lists it (its age counts from Encord's ``createdAt``),
    with its private half: what bootstrap and key intake record as the current key."""
    return KeyRecord(
        key_id=remote.key_id,
        key_hash=remote.key_hash,
        public_key=remote.public_key,
        title=remote.title,
        origin=remote.origin,
        issued_at=remote.created_at,
        expires_at=remote.created_at + ttl,
        private_key=private_key,
    )
