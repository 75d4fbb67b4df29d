"""The engine's :class:`~rotator.core.engine.Registry` over the real Encord API (Part 2)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import cast

import httpx

from rotator.adapters.encord.client import EncordClient, RetryPolicy
from rotator.adapters.encord.signing import EncordAuth
from rotator.core.errors import OperatorActionRequired
from rotator.core.keys import KeyPair
from rotator.core.vocab import BearerToken, GeneratedKey, RemoteKey


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


class _Pooled:
    """A registry kept open between checks: the engine's ``close()`` leaves it open."""

    def __init__(self, inner: EncordRegistry, key_id: str) -> None:
        self.inner = inner
        self.key_id = key_id

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def close(self) -> None:
        return None


class RegistryFactory:
    """Builds the engine's registry for an account and its current key, once per check.

    ``manual`` selects :class:`ManualRegistry` (``ROTATOR_REGISTRAR=manual``). ``pooled``
    (the daemon) keeps one client per account and signer open between checks, so an idle
    check reuses its connection instead of building a client and connecting anew; a new
    signer (after a rotation) replaces the account's client. :meth:`close` closes them.
    """

    def __init__(
        self,
        domain: str,
        *,
        transport_factory: Callable[[], httpx.BaseTransport] | None = None,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout | None = None,
        manual: bool = False,
        pooled: bool = False,
    ) -> None:
        self.domain = domain
        self.transport_factory = transport_factory
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.kind = ManualRegistry if manual else EncordRegistry
        self.pooled = pooled
        self._pool: dict[str, _Pooled] = {}
        self._lock = threading.Lock()

    def _build(self, account_hash: str, signer: KeyPair) -> EncordRegistry:
        client = EncordClient(
            self.domain,
            EncordAuth(signer),
            transport=self.transport_factory() if self.transport_factory else None,
            retry=self.retry,
            timeout=self.timeout,
        )
        return self.kind(client, account_hash)

    def __call__(self, account_hash: str, signer: KeyPair) -> EncordRegistry:
        if not self.pooled:
            return self._build(account_hash, signer)
        with self._lock:
            held = self._pool.get(account_hash)
            if held is not None and held.key_id == signer.key_id:
                return cast(EncordRegistry, held)
            if held is not None:
                held.inner.close()
            fresh = _Pooled(self._build(account_hash, signer), signer.key_id)
            self._pool[account_hash] = fresh
            return cast(EncordRegistry, fresh)

    def close(self) -> None:
        """Close every pooled client (the daemon's stop)."""
        with self._lock:
            for held in self._pool.values():
                held.inner.close()
            self._pool.clear()


def registry_factory(
    domain: str,
    *,
    transport_factory: Callable[[], httpx.BaseTransport] | None = None,
    retry: RetryPolicy | None = None,
    timeout: httpx.Timeout | None = None,
    manual: bool = False,
    pooled: bool = False,
) -> RegistryFactory:
    """A :class:`RegistryFactory` (kept as a function for its callers)."""
    return RegistryFactory(
        domain,
        transport_factory=transport_factory,
        retry=retry,
        timeout=timeout,
        manual=manual,
        pooled=pooled,
    )
