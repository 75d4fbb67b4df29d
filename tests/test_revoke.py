"""Compromise response (``rotator revoke NAME --key-id ID``) against OpenBao and the sandbox:
the leaked key is dead at Encord (401), no readable version of any path under the prefix
holds its private key, and the newest consumer version authenticates; whether it was current,
retiring or in flight, whoever holds the lease (the command or a running daemon), in api and
manual mode. A key rotator does not hold is refused (exit 2) and left alone."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rotator.adapters.encord.client import EncordClient
from rotator.adapters.encord.registry import registry_factory
from rotator.adapters.encord.signing import EncordAuth
from rotator.adapters.vault import VaultStore
from rotator.core import compromise, keys
from rotator.core.admin import bootstrap
from rotator.core.engine import Engine
from rotator.core.errors import AccessDenied
from rotator.core.policy import Policy
from rotator.core.state import from_dict
from rotator.core.vocab import Account
from rotator.dev.openbao import OpenBaoDev
from rotator.runtime.config import from_env
from rotator.runtime.wiring import make_leases
from tests.e2e import CALM_TIMINGS, Proc, base_env, rotator_cli, sdk_authenticates
from tests.fixtures_sandbox import MakeSandbox, SandboxHandle

# ---------------------------------------------------------------- what must hold afterwards


def readable_versions(client: Any, prefix: str) -> Iterator[tuple[str, int, str]]:
    """``(path, version, text)`` of every readable version of every path under ``prefix``."""
    todo = [prefix]
    while todo:
        folder = todo.pop()
        listed = client.secrets.kv.v2.list_secrets(folder, mount_point="secret")
        for name in listed["data"]["keys"]:
            path = f"{folder}/{name.rstrip('/')}"
            if name.endswith("/"):
                todo.append(path)
                continue
            meta = client.secrets.kv.v2.read_secret_metadata(path, mount_point="secret")
            for number, info in meta["data"]["versions"].items():
                if info["destroyed"] or info["deletion_time"]:
                    continue
                read = client.secrets.kv.v2.read_secret_version(
                    path, version=int(number), mount_point="secret",
                    raise_on_deleted_version=True,
                )
                yield path, int(number), json.dumps(read["data"]["data"])


def assert_leak_handled(
    client: Any, store: VaultStore, prefix: str, url: str, leaked: str
) -> None:
    """The leaked key gets 401; no readable version anywhere under the prefix holds its
    private key (the prefix was searched: the check cannot pass on an empty scan); the
    newest consumer version authenticates and holds another key."""
    leaked_kp = keys.load_private(leaked)
    with EncordClient(url, EncordAuth(leaked_kp)) as probe, pytest.raises(AccessDenied) as info:
        probe.whoami()
    assert info.value.status == 401
    # The key's base64 body, line breaks dropped (its first line is the same in every key).
    body = "".join(leaked.strip().splitlines()[1:-1])
    scanned = list(readable_versions(client, prefix))
    assert any(path.endswith("/state") for path, _, _ in scanned)
    assert any(body[:60] in text.replace("\\n", "") for _, _, text in scanned), "scan works"
    holding = [(path, v) for path, v, text in scanned if body in text.replace("\\n", "")]
    assert holding == [], f"still readable: {holding}"
    newest = store.read("alpha/ssh-key")
    assert newest is not None and newest.data is not None
    assert newest.data["key_id"] != leaked_kp.key_id
    assert sdk_authenticates(url, str(newest.data["private_key"]))


def state_of(store: VaultStore) -> Any:
    v = store.read("alpha/state")
    assert v is not None
    return from_dict(v.data, v.version, account="alpha")


def cli_bootstrap(env: dict[str, str], sandbox: SandboxHandle) -> str:
    rc, _, err = rotator_cli(
        ["bootstrap", "alpha", "--private-key-file", str(sandbox.bootstrap_key_file)], env
    )
    assert rc == 0, err
    return sandbox.bootstrap_key_file.read_text()


def calm_env(openbao: OpenBaoDev, prefix: str, url: str, **extra: str) -> dict[str, str]:
    return base_env(openbao, prefix, url, ROTATOR_CREDENTIALS="ssh-key", **CALM_TIMINGS, **extra)


# ---------------------------------------------------------------- the command, api mode


def test_a_leaked_current_key_is_rotated_out_revoked_and_purged(
    openbao: OpenBaoDev, vault_client: Any, vault_store: VaultStore, vault_prefix: str,
    sandbox: SandboxHandle,
) -> None:
    """The current key leaks: the command rotates at once (nothing was due), deletes the
    leaked key at Encord without grace, and destroys every older version holding it."""
    env = calm_env(openbao, vault_prefix, sandbox.url)
    leaked = cli_bootstrap(env, sandbox)
    key_id = keys.load_private(leaked).key_id
    rc, out, err = rotator_cli(["revoke", "alpha", "--key-id", key_id, "--json"], env)
    assert rc == 0, err
    done = json.loads(out)
    assert done["event"] == "revoke.done" and done["was"] == "current"
    assert done["current_key_id"] != key_id
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    (revoked,) = [e for e in events if e["event"] == "key.compromised_revoked"]
    assert revoked["key_id"] == key_id and revoked["how"] == "deleted"
    assert [k.key_id for k in sandbox.sandbox.keys("alpha")] == [done["current_key_id"]]
    assert state_of(vault_store).compromised == frozenset()
    assert_leak_handled(vault_client, vault_store, vault_prefix, sandbox.url, leaked)


def test_a_leaked_retiring_key_is_revoked_before_its_grace_ends(
    openbao: OpenBaoDev, vault_client: Any, vault_store: VaultStore, vault_prefix: str,
    sandbox: SandboxHandle,
) -> None:
    """A key rotated out an instant ago (an hour of grace left) leaks: it is deleted now,
    the current key is left as it is, and the leaked key's versions are destroyed."""
    env = calm_env(openbao, vault_prefix, sandbox.url)
    leaked = cli_bootstrap(env, sandbox)
    rc, _, err = rotator_cli(["rotate", "alpha"], env)
    assert rc == 0, err
    current = state_of(vault_store).kind("ssh-key").current.key_id
    rc, out, err = rotator_cli(
        ["revoke", "alpha", "--key-id", keys.load_private(leaked).key_id.upper(), "--json"], env
    )
    assert rc == 0, err
    done = json.loads(out)
    assert done["was"] == "retiring" and done["current_key_id"] == current
    assert state_of(vault_store).kind("ssh-key").retiring == ()
    assert_leak_handled(vault_client, vault_store, vault_prefix, sandbox.url, leaked)


def test_a_key_rotator_does_not_hold_is_refused_and_left_alone(
    openbao: OpenBaoDev, vault_store: VaultStore, vault_prefix: str, sandbox: SandboxHandle,
) -> None:
    """An unknown key id, or a stranger's key at the same account (a human's break-glass
    key): exit 2, one line saying rotator never deletes a key it does not own; the
    stranger's key still works and the record is unchanged."""
    env = calm_env(openbao, vault_prefix, sandbox.url)
    own = cli_bootstrap(env, sandbox)
    stranger = keys.generate("break-glass")
    with EncordClient(sandbox.url, EncordAuth(keys.load_private(own))) as admin:
        admin.upload_key("sa-alpha", "break-glass", stranger.public_line)
    before = state_of(vault_store)
    for key_id in (stranger.key_id, "ab" * 32, "not-a-key"):
        rc, out, err = rotator_cli(["revoke", "alpha", "--key-id", key_id], env)
        assert rc == 2 and out == "", err
        (line,) = [json.loads(x) for x in err.splitlines()]
        assert line["event"] == "config.invalid"
        assert "never deletes a key it does not own" in line["problem"]
    assert state_of(vault_store) == before
    assert sdk_authenticates(sandbox.url, stranger.private_openssh)
    rc, _, err = rotator_cli(["revoke", "nobody", "--key-id", "ab" * 32], env)
    assert rc == 2 and "not in ROTATOR_ACCOUNTS" in err


# ---------------------------------------------------------------- a daemon holds the lease


def test_with_a_daemon_running_the_daemon_revokes_at_its_next_check(
    openbao: OpenBaoDev, vault_client: Any, vault_store: VaultStore, vault_prefix: str,
    sandbox: SandboxHandle,
) -> None:
    """A daemon holds the account's lease: the command records the report and returns; the
    daemon rotates, revokes and purges at its next check, logging key.compromised_revoked."""
    env = calm_env(openbao, vault_prefix, sandbox.url)
    leaked = cli_bootstrap(env, sandbox)
    key_id = keys.load_private(leaked).key_id
    proc = Proc(["run"], env)
    try:
        assert proc.wait_for(lambda e: e.get("event") == "daemon.started", 15)
        settings = from_env(env)
        lease = make_leases(settings, vault_store, holder="test")["alpha"]
        for _ in range(100):
            if not lease.acquire():
                break  # the daemon holds it
            lease.release()
        rc, out, err = rotator_cli(["revoke", "alpha", "--key-id", key_id, "--json"], env)
        assert rc == 0, err
        assert json.loads(out)["event"] == "revoke.requested"
        assert proc.wait_for(
            lambda e: e.get("event") == "key.compromised_revoked" and e.get("key_id") == key_id,
            20,
        ), proc.text()[-3000:]
    finally:
        proc.popen.terminate()
        proc.finish()
    proc.assert_all_json()
    assert state_of(vault_store).compromised == frozenset()
    assert_leak_handled(vault_client, vault_store, vault_prefix, sandbox.url, leaked)


# ---------------------------------------------------------------- in flight; manual mode


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


class Stop(Exception):  # noqa: N818 - a test's crash
    pass


def engine(store: VaultStore, url: str, *, manual: bool = False, clock: Any = None) -> Engine:
    policy = Policy(
        key_ttl=timedelta(days=90), rotate_before=timedelta(days=14), grace=timedelta(hours=1),
        key_cap=5, kinds=("ssh-key",), bearer=False,
    )
    return Engine(
        account=Account("alpha", "sa-alpha"), store=store,
        registry_factory=registry_factory(url, manual=manual), policy=policy,
        clock=clock or Clock(), sleep=lambda s: None,
    )


def test_a_leaked_key_in_flight_is_deleted_and_never_promoted(
    vault_client: Any, vault_store: VaultStore, vault_prefix: str, sandbox: SandboxHandle,
) -> None:
    """A rotation stopped after registering its new key; that key leaks: the next check
    deletes it at Encord and rolls the rotation back instead of promoting it."""
    e = engine(vault_store, sandbox.url)
    bootstrap(e.context, sandbox.bootstrap_key_file.read_text())

    def crash(step: str) -> None:
        if step == "after_registered_recorded":
            raise Stop

    e.hook = crash
    with pytest.raises(Stop):
        e.check(force=frozenset({"ssh-key"}))
    pending = e.load_state().kind("ssh-key").pending
    assert pending is not None and pending.private_key is not None
    leaked = pending.private_key
    assert compromise.report(e.context, str(pending.key_id)) == ("ssh-key", "pending")
    e.hook = lambda step: None
    result = e.check()
    assert "compromised_revoked" in result.outcomes
    state = e.load_state()
    assert state.kind("ssh-key").pending is None and state.compromised == frozenset()
    last = state.kind("ssh-key").last
    assert last is not None and last.reason == "compromised"
    assert_leak_handled(vault_client, vault_store, vault_prefix, sandbox.url, leaked)


def test_manual_mode_asks_at_once_and_confirms_by_401(
    vault_client: Any, vault_store: VaultStore, vault_prefix: str, make_sandbox: MakeSandbox,
    tmp_path: Path,
) -> None:
    """Manual mode, the current key leaks: the new key is asked for at once; once a person
    added it, it is promoted and the leaked key's deletion is asked for in the same check,
    with its grace far from over; once deleted, the report is settled and the key purged."""
    folder = tmp_path / "seed"
    folder.mkdir()
    sandbox = make_sandbox(seed={"service_accounts": [
        {"name": "alpha", "hash": "sa-alpha", "bootstrap_key_file": str(folder / "a")},
        {"name": "admin", "hash": "sa-admin", "role": "admin",
         "bootstrap_key_file": str(folder / "admin")},
    ]})
    admin = EncordClient(
        sandbox.url, EncordAuth(keys.load_private((folder / "admin").read_text()))
    )
    e = engine(vault_store, sandbox.url, manual=True)
    leaked = sandbox.bootstrap_key_file.read_text()
    old = bootstrap(e.context, leaked)
    compromise.report(e.context, old.key_id)
    first = e.check()
    assert "awaiting_registration" in first.outcomes
    pending = e.load_state().kind("ssh-key").pending
    assert pending is not None and pending.public_key is not None
    admin.upload_key("sa-alpha", pending.title, pending.public_key)
    second = e.check()
    assert "rotated" in second.outcomes and "awaiting_revocation" in second.outcomes
    assert e.load_state().compromised == frozenset({old.key_id})
    (remote,) = [k for k in sandbox.sandbox.keys("alpha") if k.key_id == old.key_id]
    admin.delete_key("sa-alpha", remote.key_hash)
    third = e.check()
    assert "compromised_revoked" in third.outcomes
    assert e.load_state().compromised == frozenset()
    admin.close()
    assert_leak_handled(vault_client, vault_store, vault_prefix, sandbox.url, leaked)


def test_a_paused_account_needs_force_and_stays_paused(
    openbao: OpenBaoDev, vault_client: Any, vault_store: VaultStore, vault_prefix: str,
    sandbox: SandboxHandle,
) -> None:
    """A paused account refuses the report without --force (exit 2, nothing written); with
    it, the leaked current key is rotated out, revoked and purged, and the account stays
    paused."""
    env = calm_env(openbao, vault_prefix, sandbox.url)
    leaked = cli_bootstrap(env, sandbox)
    key_id = keys.load_private(leaked).key_id
    rc, _, err = rotator_cli(["pause", "alpha", "--reason", "freeze"], env)
    assert rc == 0, err
    before = state_of(vault_store)
    rc, out, err = rotator_cli(["revoke", "alpha", "--key-id", key_id], env)
    assert rc == 2 and "is paused" in err and "--force" in err
    assert state_of(vault_store) == before
    rc, out, err = rotator_cli(["revoke", "alpha", "--key-id", key_id, "--force", "--json"], env)
    assert rc == 0, err
    assert json.loads(out)["event"] == "revoke.done"
    after = state_of(vault_store)
    assert after.paused is not None and after.compromised == frozenset()
    assert_leak_handled(vault_client, vault_store, vault_prefix, sandbox.url, leaked)
