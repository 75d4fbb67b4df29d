"""The ports: what the core needs from the outside world, as Protocols. Adapters implement
them (:mod:`rotator.adapters.vault`, :mod:`rotator.adapters.encord`), tests fake them, and
the core never learns which it was given."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from rotator.core.keys import KeyPair
from rotator.core.vocab import BearerToken, GeneratedKey, KnownKey, RemoteKey


@dataclass(frozen=True, slots=True)
class AwaitingPerson:
    """A registrar's answer when it cannot make a change itself (the manual registrar): a
    person must, in the Encord UI. ``hint`` says what to do. The core asks again at every
    check and learns that it was done from the next listing."""

    hint: str


class Registry(Protocol):
    """Encord key management for one service account, signed by one key.

    Registering and deleting answer :class:`AwaitingPerson` when a person must do it instead.
    """

    def list_keys(self, known: Sequence[KnownKey]) -> list[RemoteKey]:
        """The account's keys. A registrar that cannot list answers with those of ``known``
        (the keys the state record holds) that are still at Encord."""
        ...

    def upload_key(self, title: str, public_line: str) -> RemoteKey | AwaitingPerson: ...
    def generate_key(self, title: str) -> GeneratedKey | AwaitingPerson: ...

    def delete_key(self, key_hash: str) -> AwaitingPerson | None:
        """None once deleted; NotFound if Encord has no such key."""
        ...

    def verify(self, key: KeyPair) -> None: ...
    def bearer_token(self) -> BearerToken: ...
    def close(self) -> None: ...


RegistryFactory = Callable[[str, KeyPair], Registry]


class VersionedData(Protocol):
    @property
    def data(self) -> dict[str, Any] | None: ...
    @property
    def version(self) -> int: ...
    @property
    def created_time(self) -> datetime: ...


class SecretStore(Protocol):
    """KV v2 with check-and-set, relative to ``{prefix}/``."""

    def read(self, rel: str) -> VersionedData | None:
        """The newest version; None if the path was never written."""
        ...

    def read_version(self, rel: str, version: int) -> VersionedData | None:
        """Version ``version``; None if it does not exist (never written, or pruned by
        ``max_versions``). A deleted or destroyed version reads with ``data`` None."""
        ...

    def write(self, rel: str, data: Mapping[str, Any], *, cas: int) -> int: ...

    def destroy_versions(self, rel: str, versions: Iterable[int]) -> None:
        """Destroy the data of these versions for good (the path and its other versions
        stay; a version destroyed already is no error)."""
        ...


class Notices(Protocol):
    """Telling a person about an event that needs one (``ROTATOR_NOTIFY_URL``): a registration
    or revocation a person must make, a failed or blocked rotation, a key expiring soon.

    ``notify`` must return at once and never raise: a notice never holds up or fails a
    rotation. Fields are public facts only (names, key ids, titles, public lines); the
    adapter refuses anything shaped like a secret."""

    def notify(
        self,
        event: str,
        *,
        account: str,
        kind: str | None = None,
        key_id: str | None = None,
        title: str | None = None,
        public_key: str | None = None,
        hint: str | None = None,
        expires_at: datetime | None = None,
    ) -> object: ...


class NoNotices:
    """No one to tell (``ROTATOR_NOTIFY_URL`` unset): every notice is dropped."""

    def notify(self, event: str, **fields: object) -> None:
        return None


NO_NOTICES: Notices = NoNotices()
