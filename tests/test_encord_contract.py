"""One Encord contract, two Encords: the engine tests' fake and the sandbox over HTTP.

``tests/fakes.py``'s :class:`FakeEncord` (in memory, what ``test_engine`` runs against) and
the sandbox (``rotator.dev.sandbox``, what the end-to-end tests and the real SDK use, reached
here through :mod:`rotator.adapters.encord.registry`) must answer alike wherever the engine
could tell them apart. Every test runs against both; each pins one rule of Part 2 of
``encord-api.md`` or of the sandbox: unknown account 404, another member's key 403 and an
admin of the same organisation allowed, 400 ``KEY_LIMIT_REACHED`` at the cap, 409
``DUPLICATE_KEY`` on any account, deleting an unknown key 404, a deleted key 401, and bearer
tokens living their lifetime whatever becomes of the key that minted them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest

from rotator.adapters.encord.client import RetryPolicy
from rotator.adapters.encord.registry import RegistryFactory
from rotator.core import keys
from rotator.core.errors import (
    AccessDenied,
    KeyManagementUnavailable,
    NotFound,
    RegistryRejected,
)
from rotator.core.keys import KeyPair
from rotator.core.ports import Registry
from rotator.core.vocab import RemoteKey
from rotator.dev.sandbox.seed import Role
from tests.fakes import FakeClock, FakeEncord
from tests.fixtures_sandbox import MakeSandbox
from tests.secret_scan import note_exception, remember

TOKEN_TTL = 3600.0
CAP = 5
TAGS = "/v2/public/organisation/organisation-tags"
# name -> (role, organisation); each account's hash is "sa-<name>", each has one bootstrap key.
ACCOUNTS: dict[str, tuple[Role, str]] = {
    "alpha": ("member", "acme"),
    "beta": ("member", "acme"),
    "boss": ("admin", "acme"),
    "outsider": ("admin", "other"),
}


class Encord(Protocol):
    """What a test needs of either Encord."""

    def key(self, name: str) -> KeyPair:
        """Account ``name``'s bootstrap key (registered when the Encord was made)."""
        ...

    def registry(self, name: str, signer: KeyPair) -> Registry:
        """Key management of account ``sa-<name>``, every call signed by ``signer``."""
        ...

    def bearer_works(self, token: str) -> bool:
        """Whether a bearer token is accepted now."""
        ...

    def advance(self, seconds: float) -> None:
        """Move the Encord's clock forward (signatures are not checked afterwards)."""
        ...


class Fake:
    """:class:`FakeEncord` on its fake clock."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.encord = FakeEncord(self.clock, bearer_lifetime=timedelta(seconds=TOKEN_TTL))
        self._keys: dict[str, KeyPair] = {}
        for name, (role, org) in ACCOUNTS.items():
            self.encord.add_account(f"sa-{name}", cap=CAP, role=role, organisation=org)
            pair = keys.generate()
            self.encord.add_key(f"sa-{name}", pair.public_line, "bootstrap")
            self._keys[name] = pair

    def key(self, name: str) -> KeyPair:
        return self._keys[name]

    def registry(self, name: str, signer: KeyPair) -> Registry:
        return self.encord.registry(f"sa-{name}", signer)

    def bearer_works(self, token: str) -> bool:
        return self.encord.bearer_works(token)

    def advance(self, seconds: float) -> None:
        self.clock.advance(timedelta(seconds=seconds))


class ShiftedClock:
    """Real time plus ``offset`` seconds (clients sign with real time)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


class Sandboxed:
    """A real sandbox on a loopback port, reached through the rotator's Encord registry."""

    def __init__(self, make_sandbox: MakeSandbox, folder: Path) -> None:
        folder.mkdir()
        seed = {
            "service_accounts": [
                {
                    "name": name,
                    "hash": f"sa-{name}",
                    "key_cap": CAP,
                    "role": role,
                    "organisation": org,
                    "bootstrap_key_file": str(folder / f"{name}.key"),
                }
                for name, (role, org) in ACCOUNTS.items()
            ]
        }
        self.clock = ShiftedClock()
        self.handle = make_sandbox(seed=seed, clock=self.clock, token_ttl=TOKEN_TTL)
        self.factory = RegistryFactory(self.handle.url, retry=RetryPolicy(attempts=1))
        self._folder = folder
        self._opened: list[Registry] = []

    def key(self, name: str) -> KeyPair:
        return keys.load_private((self._folder / f"{name}.key").read_text())

    def registry(self, name: str, signer: KeyPair) -> Registry:
        registry = self.factory(f"sa-{name}", signer)
        self._opened.append(registry)
        return registry

    def bearer_works(self, token: str) -> bool:
        headers = {"Authorization": f"Bearer {token}"}
        status = httpx.get(self.handle.url + TAGS, headers=headers, timeout=5.0).status_code
        assert status in (200, 401), f"organisation-tags with a bearer token: HTTP {status}"
        return status == 200

    def advance(self, seconds: float) -> None:
        self.clock.offset += seconds

    def close(self) -> None:
        for registry in self._opened:
            registry.close()


@pytest.fixture(params=["fake", "sandbox"])
def encord(
    request: pytest.FixtureRequest, make_sandbox: MakeSandbox, tmp_path: Path
) -> Iterator[Encord]:
    """Each Encord in turn, with the accounts of :data:`ACCOUNTS` and their bootstrap keys."""
    if request.param == "fake":
        yield Fake()
        return
    box = Sandboxed(make_sandbox, tmp_path / "contract-keys")
    try:
        yield box
    finally:
        box.close()


def refusal(call: Callable[[], Any]) -> Exception:
    """The house error ``call`` raises (its texts go to the secret scan); fails if none."""
    try:
        call()
    except (AccessDenied, NotFound, RegistryRejected) as exc:
        note_exception(exc, "contract refusal")
        return exc
    pytest.fail("the call succeeded; a refusal was expected")


def uploaded(registry: Any, title: str, public_line: str) -> RemoteKey:
    """An upload that must go through (every registry here manages keys itself)."""
    key = registry.upload_key(title, public_line)
    assert isinstance(key, RemoteKey), key
    return key


def status_of(exc: Exception) -> tuple[str, int | None, str | None]:
    """An error as the engine tells errors apart: its class, status and Encord code."""
    return type(exc).__name__, getattr(exc, "status", None), getattr(exc, "code", None)


def test_unknown_account_is_404(encord: Encord) -> None:
    """Listing, uploading, generating or deleting on an account Encord does not have is 404
    (the signer authenticated), not 403. The key list's 404 cannot be told from an Encord
    without key management: it is the NotFound that says both (KeyManagementUnavailable)."""
    nobody = encord.registry("nobody", encord.key("alpha"))
    listed = refusal(lambda: nobody.list_keys(()))
    assert type(listed) is KeyManagementUnavailable and listed.status == 404
    for call in (
        lambda: nobody.upload_key("t", keys.generate().public_line),
        lambda: nobody.generate_key("t"),
        lambda: nobody.delete_key("no-such-hash"),
    ):
        assert type(refusal(call)) is NotFound


def test_member_manages_itself_only_admin_its_organisation(encord: Encord) -> None:
    """A member's key manages its own account; another member's or another organisation's
    admin's key gets 403; an admin of the same organisation manages the member's keys."""
    alpha, outsider, boss = encord.key("alpha"), encord.key("outsider"), encord.key("boss")
    assert [k.key_id for k in encord.registry("alpha", alpha).list_keys(())] == [alpha.key_id]
    forbidden = ("AccessDenied", 403, None)
    on_beta = encord.registry("beta", alpha)
    assert status_of(refusal(lambda: on_beta.list_keys(()))) == forbidden
    line = keys.generate().public_line
    assert status_of(refusal(lambda: on_beta.upload_key("t", line))) == forbidden
    assert status_of(refusal(lambda: on_beta.generate_key("t"))) == forbidden
    assert status_of(refusal(lambda: encord.registry("boss", alpha).list_keys(()))) == forbidden
    assert status_of(refusal(lambda: encord.registry("alpha", outsider).list_keys(()))) == forbidden
    by_boss = encord.registry("alpha", boss)
    added = uploaded(by_boss, "added by an admin", keys.generate().public_line)
    assert {k.key_id for k in by_boss.list_keys(())} == {alpha.key_id, added.key_id}
    by_boss.delete_key(added.key_hash)
    assert [k.key_id for k in encord.registry("alpha", alpha).list_keys(())] == [alpha.key_id]


def test_cap_reached_is_400_key_limit_reached(encord: Encord) -> None:
    """At its cap an account refuses uploads and generated keys alike with 400
    KEY_LIMIT_REACHED and keeps exactly the cap."""
    own = encord.registry("alpha", encord.key("alpha"))
    for i in range(CAP - 1):
        own.upload_key(f"k{i}", keys.generate().public_line)
    limit = ("RegistryRejected", 400, "KEY_LIMIT_REACHED")
    assert status_of(refusal(lambda: own.upload_key("over", keys.generate().public_line))) == limit
    assert status_of(refusal(lambda: own.generate_key("over"))) == limit
    assert len(own.list_keys(())) == CAP


def test_duplicate_public_key_is_409_on_any_account(encord: Encord) -> None:
    """A public key already registered is refused with 409 DUPLICATE_KEY, on its own account
    and on another; before the cap is checked."""
    pair = keys.generate()
    own = encord.registry("alpha", encord.key("alpha"))
    own.upload_key("first", pair.public_line)
    duplicate = ("RegistryRejected", 409, "DUPLICATE_KEY")
    assert status_of(refusal(lambda: own.upload_key("again", pair.public_line))) == duplicate
    on_beta = encord.registry("beta", encord.key("boss"))
    assert status_of(refusal(lambda: on_beta.upload_key("there", pair.public_line))) == duplicate
    for i in range(CAP - 2):
        own.upload_key(f"k{i}", keys.generate().public_line)
    assert status_of(refusal(lambda: own.upload_key("full", pair.public_line))) == duplicate


def test_delete_unknown_key_is_404(encord: Encord) -> None:
    """Deleting a key hash the account does not hold is 404: unknown, already deleted, or
    another account's key (which stays)."""
    own = encord.registry("alpha", encord.key("alpha"))
    assert type(refusal(lambda: own.delete_key("no-such-hash"))) is NotFound
    added = uploaded(own, "short-lived", keys.generate().public_line)
    own.delete_key(added.key_hash)
    assert type(refusal(lambda: own.delete_key(added.key_hash))) is NotFound
    beta = encord.registry("beta", encord.key("beta"))
    (beta_key,) = beta.list_keys(())
    by_boss = encord.registry("alpha", encord.key("boss"))
    assert type(refusal(lambda: by_boss.delete_key(beta_key.key_hash))) is NotFound
    assert beta.list_keys(()) == [beta_key]


def test_deleted_key_is_401(encord: Encord) -> None:
    """A key works until deleted; then every call it signs, and a whoami with it, is 401.
    A key never registered is 401 too; 401 comes before the unknown account's 404."""
    pair = keys.generate()
    own = encord.registry("alpha", encord.key("alpha"))
    added = uploaded(own, "doomed", pair.public_line)
    by_pair = encord.registry("alpha", pair)
    assert len(by_pair.list_keys(())) == 2
    own.verify(pair)
    own.delete_key(added.key_hash)
    unauthenticated = ("AccessDenied", 401, None)
    assert status_of(refusal(lambda: by_pair.list_keys(()))) == unauthenticated
    assert status_of(refusal(by_pair.bearer_token)) == unauthenticated
    assert status_of(refusal(lambda: own.verify(pair))) == unauthenticated
    stranger = keys.generate()
    assert status_of(refusal(lambda: own.verify(stranger))) == unauthenticated
    nobody = encord.registry("nobody", stranger)
    assert status_of(refusal(lambda: nobody.list_keys(()))) == unauthenticated


def test_bearer_token_outlives_its_key_until_it_expires(encord: Encord) -> None:
    """A bearer token minted with a key keeps working after that key is deleted, until its
    lifetime is over; then it is refused. An unknown token is refused."""
    pair = keys.generate()
    own = encord.registry("alpha", encord.key("alpha"))
    added = uploaded(own, "mints a token", pair.public_line)
    token = encord.registry("alpha", pair).bearer_token().token
    remember(token)
    works = encord.bearer_works(token)
    assert works
    own.delete_key(added.key_hash)
    works = encord.bearer_works(token)
    assert works, "the token died with its key"
    encord.advance(TOKEN_TTL - 5)
    works = encord.bearer_works(token)
    assert works, "the token expired early"
    encord.advance(10)
    works = encord.bearer_works(token)
    assert not works, "the token outlived its lifetime"
    unknown = encord.bearer_works("not-a-token")
    assert not unknown


def test_minting_a_bearer_token_names_no_account(encord: Encord) -> None:
    """Minting is Part 1 and names no service account: a key mints a working token through
    any account's registry, even one Encord does not have."""
    token = encord.registry("nobody", encord.key("boss")).bearer_token().token
    remember(token)
    works = encord.bearer_works(token)
    assert works
