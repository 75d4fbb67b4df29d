"""The engine's :class:`~rotator.engine.Registry` over the real Encord API (Part 2)."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from rotator.encord.client import EncordClient, RetryPolicy
from rotator.encord.signing import EncordAuth
from rotator.errors import OperatorActionRequired
from rotator.keys import KeyPair
from rotator.model import BearerToken, GeneratedKey, RemoteKey


class EncordRegistry:
    """Key management for one service account, every call signed by ``signer``."""

    def __init__(self, client: EncordClient, account_hash: str) -> None:
        self._client = client
        self.account_hash = account_hash

    def __repr__(self) -> str:
        return f"EncordRegistry(account_hash={self.account_hash!r}, client={self._client!r})"

    def list_keys(self) -> list[RemoteKey]:
        return self._client.list_keys(self.account_hash)

    def upload_key(self, title: str, public_line: str) -> RemoteKey:
        return self._client.upload_key(self.account_hash, title, public_line)

    def generate_key(self, title: str) -> GeneratedKey:
        return self._client.generate_key(self.account_hash, title)

    def delete_key(self, key_hash: str) -> None:
        self._client.delete_key(self.account_hash, key_hash)

    def verify(self, key: KeyPair) -> None:
        """A signed whoami with ``key`` (not the signer): AccessDenied(401) if it is unknown."""
        with self._client.with_auth(EncordAuth(key)) as probe:
            probe.whoami()

    def bearer_token(self) -> BearerToken:
        return self._client.bearer_token()

    def close(self) -> None:
        self._client.close()


class ManualRegistry(EncordRegistry):
    """For workspaces whose Encord does not expose key management to rotator
    (``ROTATOR_REGISTRAR=manual``): a person adds and deletes keys in the Encord UI.

    Listing, uploading, generating and deleting raise :class:`OperatorActionRequired`; the
    engine then logs what the person must do and polls with signed whoami calls. Verifying
    a key and minting bearer tokens work as usual (Part 1 of the API).
    """

    def list_keys(self) -> list[RemoteKey]:
        raise OperatorActionRequired("manual registrar: rotator cannot list keys")

    def upload_key(self, title: str, public_line: str) -> RemoteKey:
        raise OperatorActionRequired("manual registrar: a person must add the key")

    def generate_key(self, title: str) -> GeneratedKey:
        raise OperatorActionRequired("manual registrar: Encord-generated keys are not available")

    def delete_key(self, key_hash: str) -> None:
        raise OperatorActionRequired("manual registrar: a person must delete the key")


def registry_factory(
    domain: str,
    *,
    transport_factory: Callable[[], httpx.BaseTransport] | None = None,
    retry: RetryPolicy | None = None,
    timeout: httpx.Timeout | None = None,
    manual: bool = False,
) -> Callable[[str, KeyPair], EncordRegistry]:
    """A factory the engine calls once per check with the account's current key.

    ``manual`` selects :class:`ManualRegistry` (``ROTATOR_REGISTRAR=manual``).
    """
    kind = ManualRegistry if manual else EncordRegistry

    def make(account_hash: str, signer: KeyPair) -> EncordRegistry:
        client = EncordClient(
            domain,
            EncordAuth(signer),
            transport=transport_factory() if transport_factory else None,
            retry=retry or RetryPolicy(),
            timeout=timeout,
        )
        return kind(client, account_hash)

    return make
