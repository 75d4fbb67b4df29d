"""The core's :class:`~rotator.core.ports.Registry` over the real Encord API (Part 2), and
over a person at the Encord UI (:class:`ManualRegistry`)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import cast

import httpx

from rotator.adapters.encord.client import EncordClient, RetryPolicy
from rotator.adapters.encord.signing import EncordAuth
from rotator.core import keys
from rotator.core.errors import AccessDenied, ClockSkew
from rotator.core.keys import KeyPair
from rotator.core.ports import AwaitingPerson
from rotator.core.vocab import BearerToken, GeneratedKey, KnownKey, RemoteKey


class EncordRegistry:
    """Key management for one service account, every call signed by ``signer``."""

    def __init__(self, client: EncordClient, account_hash: str) -> None:
        self._client = client
        self.account_hash = account_hash

    def __repr__(self) -> str:
        return f"EncordRegistry(account_hash={self.account_hash!r}, client={self._client!r})"

    def list_keys(self, known: Sequence[KnownKey] = ()) -> list[RemoteKey]:
        """Every key of the account, as Encord lists them (``known`` is not needed)."""
        return self._client.list_keys(self.account_hash)

    def upload_key(self, title: str, public_line: str) -> RemoteKey | AwaitingPerson:
        return self._client.upload_key(self.account_hash, title, public_line)

    def generate_key(self, title: str) -> GeneratedKey | AwaitingPerson:
        return self._client.generate_key(self.account_hash, title)

    def delete_key(self, key_hash: str) -> AwaitingPerson | None:
        self._client.delete_key(self.account_hash, key_hash)
        return None

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

    Registering and deleting answer :class:`AwaitingPerson` (the core logs what the person
    must do and asks again at every check). Listing is not available either: the keys the
    state record knows are probed instead, each with a whoami signed by itself, and those
    that still authenticate are the account's keys as far as rotator can tell. Verifying a
    key and minting bearer tokens work as usual (Part 1 of the API).
    """

    def list_keys(self, known: Sequence[KnownKey] = ()) -> list[RemoteKey]:
        """The keys of ``known`` that still authenticate. One not registered yet, as far as
        the record knows, has no key hash: it gets a placeholder, ``manual:<key id>``."""
        found: list[RemoteKey] = []
        for k in known:
            try:
                self.verify(keys.load_private(k.private_openssh))
            except ClockSkew:
                raise  # the clock is off: the key may well be registered
            except AccessDenied as exc:
                if exc.status != 403:  # 403: authenticated, only not allowed the probe call
                    continue  # 401: not (or no longer) registered
            found.append(
                RemoteKey(
                    key_hash=k.key_hash or f"manual:{k.key_id[:16]}",
                    key_id=k.key_id,
                    title=k.title,
                    public_key=k.public_key,
                    origin=k.origin,
                    created_at=k.created_at,
                )
            )
        return found

    def upload_key(self, title: str, public_line: str) -> RemoteKey | AwaitingPerson:
        return AwaitingPerson(
            "in the Encord UI, either add this public key to the service account under this "
            "title, or create a new API key with this title and hand over the file it "
            "downloads (or_hand_over)"
        )

    def generate_key(self, title: str) -> GeneratedKey | AwaitingPerson:
        return AwaitingPerson(
            "Encord-generated keys are not available with the manual registrar; keep ssh-key only"
        )

    def delete_key(self, key_hash: str) -> AwaitingPerson | None:
        return AwaitingPerson(
            "delete the key with this title and key id from the service account in the "
            "Encord UI"
        )


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

    ``domain`` is the Encord API base; ``domains`` (account hash -> domain) names the
    accounts that live elsewhere (another region, ``name=hash@domain``). ``manual`` selects
    :class:`ManualRegistry` (``ROTATOR_REGISTRAR=manual``). ``pooled``
    (the daemon) keeps one client per account and signer open between checks, so an idle
    check reuses its connection instead of building a client and connecting anew; a new
    signer (after a rotation) replaces the account's client. :meth:`close` closes them.
    """

    def __init__(
        self,
        domain: str,
        *,
        domains: Mapping[str, str] | None = None,
        transport_factory: Callable[[], httpx.BaseTransport] | None = None,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout | None = None,
        manual: bool = False,
        pooled: bool = False,
    ) -> None:
        self.domain = domain
        self.domains = dict(domains or {})
        self.transport_factory = transport_factory
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.kind = ManualRegistry if manual else EncordRegistry
        self.pooled = pooled
        self._pool: dict[str, _Pooled] = {}
        self._lock = threading.Lock()

    def domain_of(self, account_hash: str) -> str:
        """Where the account lives: its own domain, else the default one."""
        return self.domains.get(account_hash, self.domain)

    def _build(self, account_hash: str, signer: KeyPair) -> EncordRegistry:
        client = EncordClient(
            self.domain_of(account_hash),
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
    domains: Mapping[str, str] | None = None,
    transport_factory: Callable[[], httpx.BaseTransport] | None = None,
    retry: RetryPolicy | None = None,
    timeout: httpx.Timeout | None = None,
    manual: bool = False,
    pooled: bool = False,
) -> RegistryFactory:
    """A :class:`RegistryFactory` (kept as a function for its callers)."""
    return RegistryFactory(
        domain,
        domains=domains,
        transport_factory=transport_factory,
        retry=retry,
        timeout=timeout,
        manual=manual,
        pooled=pooled,
    )
