"""Manual registration (ROTATOR_REGISTRAR=manual) against the sandbox, with a test playing the
Encord admin who adds and deletes keys by hand; Vault is the real OpenBao."""

from __future__ import annotations

from collections.abc import MutableMapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from rotator.adapters.encord.client import EncordClient
from rotator.adapters.encord.registry import registry_factory
from rotator.adapters.encord.signing import EncordAuth
from rotator.adapters.vault import VaultStore
from rotator.core import keys
from rotator.core.admin import bootstrap, status
from rotator.core.engine import Engine
from rotator.core.errors import AccessDenied
from rotator.core.policy import Policy
from rotator.core.vocab import Account
from tests.e2e import sdk_authenticates
from tests.fixtures_sandbox import SandboxHandle
from tests.secret_scan import assert_no_secrets


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


SEEN: list[MutableMapping[str, Any]] = []


def events(logs: list[MutableMapping[str, Any]], name: str) -> list[MutableMapping[str, Any]]:
    SEEN.extend(logs)
    return [e for e in logs if e["event"] == name]


def manual_engine(store: VaultStore, url: str, clock: Clock) -> Engine:
    policy = Policy(
        key_ttl=timedelta(days=90),
        rotate_before=timedelta(days=14),
        grace=timedelta(hours=1),
        key_cap=5,
        kinds=("ssh-key",),
        bearer=True,
    )
    return Engine(
        account=Account("alpha", "sa-alpha"),
        store=store,
        registry_factory=registry_factory(url, manual=True),
        policy=policy,
        clock=clock,
        sleep=lambda s: None,
    )


def test_manual_mode_asks_a_person_and_polls_until_done(
    vault_store: VaultStore, sandbox: SandboxHandle
) -> None:
    """Register/revoke requests are logged each check (public line only); the key is promoted
    once the admin added it, and the old key is forgotten only after its 401."""
    clock = Clock()
    engine = manual_engine(vault_store, sandbox.url, clock)
    bootstrap_text = sandbox.bootstrap_key_file.read_text()
    old = bootstrap(engine.context, bootstrap_text)
    admin = EncordClient(sandbox.url, EncordAuth(keys.load_private(bootstrap_text)))
    with capture_logs() as logs:
        first = engine.check(force=frozenset({"ssh-key"}))
        second = engine.check()
    assert "awaiting_registration" in first.outcomes and "awaiting_registration" in second.outcomes
    asks = events(logs, "key.registration_required")
    assert len(asks) == 2, "asked once per check"
    public_line = asks[0]["public_key"]
    assert public_line.startswith("ssh-ed25519 ") and asks[1]["public_key"] == public_line
    assert len(sandbox.sandbox.keys("alpha")) == 1, "rotator itself registered nothing"
    assert status(engine.context).keys_at_encord == 1, "the keys it knows that authenticate"
    v = vault_store.read("alpha/ssh-key")
    assert v is not None and v.data is not None and v.data["key_id"] == old.key_id

    # The admin adds the key in "the UI".
    added = admin.upload_key("sa-alpha", "added by hand", public_line)
    with capture_logs() as logs:
        done = engine.check()
    assert "rotated" in done.outcomes
    v = vault_store.read("alpha/ssh-key")
    assert v is not None and v.data is not None and v.data["key_id"] == added.key_id
    assert sdk_authenticates(sandbox.url, str(v.data["private_key"]))

    # Grace over: rotator asks for the old key's deletion, and keeps it until its 401.
    clock.now += timedelta(hours=1, seconds=1)
    with capture_logs() as logs:
        engine.check()
        engine.check()
    revokes = events(logs, "key.revocation_required")
    assert len(revokes) == 2 and revokes[0]["key_id"] == old.key_id
    assert [k.key_id for k in engine.load_state().kind("ssh-key").retiring] == [old.key_id]
    old_remote = [k for k in sandbox.sandbox.keys("alpha") if k.key_id == old.key_id]
    new_admin = EncordClient(sandbox.url, EncordAuth(keys.load_private(str(v.data["private_key"]))))
    new_admin.delete_key("sa-alpha", old_remote[0].key_hash)
    with capture_logs() as logs:
        engine.check()
    assert events(logs, "key.forgotten")
    assert engine.load_state().kind("ssh-key").retiring == ()
    assert [k.key_id for k in sandbox.sandbox.keys("alpha")] == [added.key_id]
    admin.close()
    new_admin.close()
    assert_no_secrets(repr(SEEN), "manual-mode log events")


def test_manual_bootstrap_refuses_a_key_encord_does_not_know(
    vault_store: VaultStore, sandbox: SandboxHandle
) -> None:
    """Without a listing, a key that does not authenticate is refused as the API registrar
    refuses it (401, ``bootstrap.refused`` in the CLI) and nothing is written."""
    engine = manual_engine(vault_store, sandbox.url, Clock())
    with pytest.raises(AccessDenied) as info:
        bootstrap(engine.context, keys.generate().private_openssh)
    assert info.value.status == 401
    assert vault_store.read("alpha/state") is None and vault_store.read("alpha/ssh-key") is None
