"""api-key (Encord-generated keys) alongside ssh-key on one account, against the sandbox and
a real OpenBao: both kinds work for the SDK, and they share the account's cap."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rotator.adapters.encord.client import EncordClient
from rotator.adapters.encord.registry import registry_factory
from rotator.adapters.encord.signing import EncordAuth
from rotator.adapters.vault import VaultStore
from rotator.core import keys
from rotator.core.admin import bootstrap
from rotator.core.engine import Engine
from rotator.core.policy import Policy
from rotator.core.vocab import Account
from tests.e2e import journal_max_keys, sdk_authenticates
from tests.fixtures_sandbox import MakeSandbox


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def make_engine(store: VaultStore, url: str, clock: Clock, cap: int) -> Engine:
    policy = Policy(
        key_ttl=timedelta(days=90),
        rotate_before=timedelta(days=14),
        grace=timedelta(days=1),
        key_cap=cap,
        kinds=("ssh-key", "api-key"),
        bearer=False,
    )
    return Engine(
        account=Account("alpha", "sa-alpha"),
        store=store,
        registry_factory=registry_factory(url),
        policy=policy,
        clock=clock,
        sleep=lambda s: None,
    )


def newest_key(store: VaultStore, kind: str) -> tuple[str, str]:
    v = store.read(f"alpha/{kind}")
    assert v is not None and v.data is not None
    return str(v.data["key_id"]), str(v.data["private_key"])


def test_api_key_is_generated_stored_and_works(
    vault_store: VaultStore, make_sandbox: MakeSandbox
) -> None:
    """The first check makes an api-key at Encord; Vault's copy authenticates with the SDK."""
    handle = make_sandbox()
    clock = Clock()
    engine = make_engine(vault_store, handle.url, clock, cap=4)
    bootstrap(engine.context, handle.bootstrap_key_file.read_text())
    result = engine.check()
    assert ("api-key", "rotated") in result.rotations
    key_id, private = newest_key(vault_store, "api-key")
    remote = {k.key_id: k for k in handle.sandbox.keys("alpha")}
    assert remote[key_id].origin == "generated"
    assert sdk_authenticates(handle.url, private)


def test_both_kinds_share_the_cap_with_a_human_key(
    vault_store: VaultStore, make_sandbox: MakeSandbox, tmp_path: object
) -> None:
    """Cap 4 with a human break-glass key: ssh-key and api-key never together exceed the cap;
    the second kind waits (blocked_by_cap) until the first one's old key is revoked."""
    handle = make_sandbox()
    clock = Clock()
    engine = make_engine(vault_store, handle.url, clock, cap=4)
    bootstrap(engine.context, handle.bootstrap_key_file.read_text())
    engine.check()  # creates the api-key: 2 keys
    human = keys.generate()
    admin = EncordClient(
        handle.url, EncordAuth(keys.load_private(handle.bootstrap_key_file.read_text()))
    )
    admin.upload_key("sa-alpha", "break-glass", human.public_line)  # 3 keys
    admin.close()

    clock.now += timedelta(days=77)  # both kinds due
    first = engine.check()
    assert sorted(first.rotations) == [("api-key", "blocked_by_cap"), ("ssh-key", "rotated")]
    assert len(handle.sandbox.keys("alpha")) == 4
    clock.now += timedelta(days=1, seconds=1)  # the old ssh-key's grace is over
    second = engine.check()
    assert ("api-key", "rotated") in second.rotations
    assert len(handle.sandbox.keys("alpha")) == 4
    clock.now += timedelta(days=1, seconds=1)
    engine.check()
    remote = handle.sandbox.keys("alpha")
    assert human.key_id in {k.key_id for k in remote}, "the human's key is never touched"
    assert len(remote) == 3
    assert handle.journal_path is not None and journal_max_keys(handle.journal_path) <= 4
    for kind in ("ssh-key", "api-key"):
        assert sdk_authenticates(handle.url, newest_key(vault_store, kind)[1])
    del tmp_path
