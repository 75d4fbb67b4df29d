"""The ports: what the core needs from the outside world, as Protocols. Adapters implement
them (:mod:`rotator.adapters.vault`, :mod:`rotator.adapters.encord`), tests fake them, and
the core never learns which it was given."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

from rotator.core.keys import KeyPair
from rotator.core.vocab import BearerToken, GeneratedKey, RemoteKey


class Registry(Protocol):
    """Encord key management for one service account, signed by one key."""

    def list_keys(self) -> list[RemoteKey]: ...
    def upload_key(self, title: str, public_line: str) -> RemoteKey: ...
    def generate_key(self, title: str) -> GeneratedKey: ...
    def delete_key(self, key_hash: str) -> None: ...
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

    def read(self, rel: str) -> VersionedData | None: ...
    def write(self, rel: str, data: Mapping[str, Any], *, cas: int) -> int: ...
