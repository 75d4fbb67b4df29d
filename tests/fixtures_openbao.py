"""Pytest plugin: one real OpenBao dev server for the whole session, and per-test views of it.

- ``openbao``: the session's :class:`OpenBaoDev` (``.addr``, ``.root_token``). Do not restart
  or seal it: outage tests start their own server.
- ``vault_client``: an hvac client with the root token (closed after the test).
- ``vault_store``: a :class:`VaultStore` on mount ``secret`` with a prefix unique to the test
  (``t-<8 hex>/encord``), so tests never see each other's data.
- ``make_token``: ``make_token(policy_hcl, *, ttl="10m") -> str``, a token holding a fresh
  policy made of ``policy_hcl`` (plus ``default``, which grants lookup-self), for tests of
  least privilege.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any, Protocol

import pytest

from rotator.adapters.vault import VaultStore, connect
from rotator.dev.openbao import OpenBaoDev


class MakeToken(Protocol):
    def __call__(self, policy_hcl: str, *, ttl: str = "10m") -> str: ...


@pytest.fixture(scope="session")
def openbao() -> Iterator[OpenBaoDev]:
    """A dev OpenBao server shared by the whole session, stopped at the end."""
    server = OpenBaoDev().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def vault_client(openbao: OpenBaoDev) -> Iterator[Any]:
    """An hvac client authenticated with the session server's root token."""
    client = connect(openbao.addr, openbao.root_token)
    try:
        yield client
    finally:
        client.adapter.close()


@pytest.fixture
def vault_prefix() -> str:
    """A store prefix unique to this test: ``t-<8 hex>/encord``."""
    return f"t-{uuid.uuid4().hex[:8]}/encord"


@pytest.fixture
def vault_store(vault_client: Any, vault_prefix: str) -> VaultStore:
    """A VaultStore on ``secret/`` under this test's own prefix, with the root token."""
    return VaultStore(vault_client, mount="secret", prefix=vault_prefix)


@pytest.fixture
def make_token(vault_client: Any) -> Iterator[MakeToken]:
    """Make tokens that hold one fresh policy each; they are revoked after the test."""
    made: list[tuple[str, str]] = []

    def make(policy_hcl: str, *, ttl: str = "10m") -> str:
        name = f"t-{uuid.uuid4().hex[:8]}"
        vault_client.sys.create_or_update_policy(name=name, policy=policy_hcl)
        answer = vault_client.auth.token.create(policies=[name], ttl=ttl)
        token = answer["auth"]["client_token"]
        assert isinstance(token, str)
        made.append((token, name))
        return token

    yield make
    for token, policy in made:
        with contextlib.suppress(Exception):  # best effort: the test may have revoked it
            vault_client.auth.token.revoke(token)
        with contextlib.suppress(Exception):
            vault_client.sys.delete_policy(name=policy)
