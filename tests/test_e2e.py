"""End to end: the real daemon against a real OpenBao and the sandbox, checked with the SDK."""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest

import rotator
from rotator.adapters.encord.client import EncordClient
from rotator.adapters.encord.signing import EncordAuth
from rotator.adapters.vault import VaultStore, connect
from rotator.core import keys
from rotator.core.state import from_dict
from rotator.dev.openbao import OpenBaoDev
from rotator.runtime import logs
from rotator.runtime.config import from_env
from rotator.runtime.daemon import Daemon
from tests.e2e import (
    CALM_TIMINGS,
    Proc,
    base_env,
    journal_max_keys,
    owned_orphans,
    rotator_cli,
    sdk_authenticates,
)
from tests.fixtures_sandbox import MakeSandbox, SandboxHandle
from tests.secret_scan import assert_no_secrets


def _state(store: VaultStore) -> Any:
    v = store.read("alpha/state")
    assert v is not None
    return from_dict(v.data, v.version, account="alpha")


def _state_key_ids(store: VaultStore) -> set[str]:
    return _state(store).owned_key_ids()  # type: ignore[no-any-return]


def _bootstrap(env: dict[str, str], sandbox: SandboxHandle) -> None:
    rc, out, err = rotator_cli(
        ["bootstrap", "alpha", "--private-key-file", str(sandbox.bootstrap_key_file), "--json"],
        env,
    )
    assert rc == 0, err
    assert json.loads(out)["event"] == "bootstrap.done"
    assert_no_secrets(out + err, "bootstrap output")


def test_daemon_rotates_and_each_new_key_works_with_the_sdk(
    openbao: OpenBaoDev, vault_store: VaultStore, vault_prefix: str, sandbox: SandboxHandle
) -> None:
    """Several rotations happen; after each the SDK authenticates with Vault's newest key."""
    env = base_env(openbao, vault_prefix, sandbox.url)
    _bootstrap(env, sandbox)
    settings = from_env(env)
    daemon = Daemon(settings)
    seen: dict[int, str] = {}
    daemon.start()
    try:
        end = time.monotonic() + 25
        while time.monotonic() < end and len(seen) < 4:
            v = vault_store.read("alpha/ssh-key")
            assert v is not None and v.data is not None
            if v.version not in seen:
                key = str(v.data["private_key"])
                assert sdk_authenticates(sandbox.url, key)
                seen[v.version] = str(v.data["key_id"])
            time.sleep(0.1)
    finally:
        daemon.stop()
        logs.reset()
    assert len(seen) >= 4, f"only {len(seen)} versions of the consumer path in 25 s"
    assert len(set(seen.values())) == len(seen), "each version holds a new key"
    assert sandbox.journal_path is not None
    assert journal_max_keys(sandbox.journal_path) <= 5
    assert owned_orphans(sandbox.sandbox, "alpha", _state_key_ids(vault_store)) == []
    # Old keys were revoked: the sandbox holds only the current key and those in grace.
    state = _state(vault_store)
    current = state.kind("ssh-key").current
    assert (
        current is not None and current.key_id == seen[max(seen)] or state.kind("ssh-key").pending
    )
    assert len(sandbox.sandbox.keys("alpha")) <= 3
    bearer = vault_store.read("alpha/bearer-token")
    assert bearer is not None and bearer.data is not None and bearer.data["token"]


def test_run_logs_only_json_and_stops_cleanly_on_sigterm(
    openbao: OpenBaoDev, vault_store: VaultStore, vault_prefix: str, sandbox: SandboxHandle
) -> None:
    """`rotator run` writes only JSON lines with an event, rotates, and exits 0 on SIGTERM."""
    env = base_env(openbao, vault_prefix, sandbox.url)
    assert "ROTATOR_LOG_FORMAT" not in env  # the default, auto, decides: a pipe gets JSON
    _bootstrap(env, sandbox)
    proc = Proc(["run"], env)
    try:
        assert proc.wait_for(
            lambda e: e.get("event") == "rotation.finished" and e.get("outcome") == "rotated", 20
        ), proc.text()[-2000:]
        assert proc.wait_for(lambda e: e.get("event") == "key.revoked", 20)
        start = time.monotonic()
        proc.popen.send_signal(signal.SIGTERM)
        rc = proc.finish(timeout=10)
        assert rc == 0
        assert time.monotonic() - start < 10
    finally:
        proc.kill()
    proc.assert_all_json()
    assert {(e["service"], e["version"]) for e in proc.events()} == {
        ("rotator", rotator.__version__)
    }
    events = [e["event"] for e in proc.events()]
    for name in (
        "daemon.started",
        "rotation.started",
        "key.registered",
        "key.verified",
        "vault.written",
        "rotation.finished",
        "key.revoked",
        "daemon.stopped",
    ):
        assert name in events, name
    assert _state(vault_store).kind("ssh-key").pending is None


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_run_exits_within_15s_naming_vault_addr_when_vault_is_down(
    openbao: OpenBaoDev, vault_prefix: str, sandbox: SandboxHandle
) -> None:
    """An unreachable Vault at start-up: non-zero exit within 15 s, one line naming VAULT_ADDR."""
    env = base_env(
        openbao, vault_prefix, sandbox.url, VAULT_ADDR=f"http://127.0.0.1:{_closed_port()}"
    )
    start = time.monotonic()
    proc = Proc(["run"], env)
    rc = proc.finish(timeout=20)
    assert time.monotonic() - start < 15
    assert rc != 0
    proc.assert_all_json()
    errors = [e for e in proc.events() if e.get("level") == "error"]
    assert len(errors) == 1 and "VAULT_ADDR" in str(errors[0])


def test_run_exits_naming_vault_token_when_token_is_refused(
    openbao: OpenBaoDev, vault_prefix: str, sandbox: SandboxHandle
) -> None:
    """A refused token at start-up: non-zero exit, one line naming VAULT_TOKEN, token not shown."""
    bogus = "hvs.NotARealTokenButLongEnough1234"
    env = base_env(openbao, vault_prefix, sandbox.url, VAULT_TOKEN=bogus)
    proc = Proc(["run"], env)
    rc = proc.finish(timeout=20)
    assert rc != 0
    proc.assert_all_json()
    errors = [e for e in proc.events() if e.get("level") == "error"]
    assert len(errors) == 1 and "VAULT_TOKEN" in str(errors[0])
    assert bogus not in proc.text()


def test_bad_configuration_lists_every_problem_and_exits_2(
    openbao: OpenBaoDev, vault_prefix: str, sandbox: SandboxHandle
) -> None:
    """Several bad variables: exit 2, one JSON line per problem naming each, no traceback."""
    env = base_env(
        openbao,
        vault_prefix,
        sandbox.url,
        ROTATOR_KEY_TTL="soon",
        ROTATOR_CREDENTIALS="ssh-key,passwords",
        ROTATOR_ACCOUNTS="a/b=x",
    )
    proc = Proc(["run"], env)
    assert proc.finish(timeout=15) == 2
    proc.assert_all_json()
    text = proc.text()
    for name in ("ROTATOR_KEY_TTL", "ROTATOR_CREDENTIALS", "ROTATOR_ACCOUNTS"):
        assert name in text
    assert "Traceback" not in text
    assert all(e["event"] == "config.invalid" for e in proc.events())


def test_restart_after_sigkill_finishes_half_done_work(
    openbao: OpenBaoDev, vault_store: VaultStore, vault_prefix: str, make_sandbox: MakeSandbox
) -> None:
    """SIGKILL mid-rotation, restart: the successor finishes or rolls back; invariants hold."""
    from rotator.dev.sandbox import Faults

    handle = make_sandbox(faults=Faults(latency_ms=60))
    env = base_env(openbao, vault_prefix, handle.url)
    _bootstrap(env, handle)
    for _ in range(3):
        proc = Proc(["run"], env)
        try:
            assert proc.wait_for(lambda e: e.get("event") == "rotation.started", 20), proc.text()[
                -2000:
            ]
            time.sleep(0.03)
        finally:
            proc.popen.send_signal(signal.SIGKILL)
            proc.finish()
        proc.assert_all_json()
    proc = Proc(["run"], env)
    try:
        # Within a few check intervals the half-done rotation is resolved.
        end = time.monotonic() + 15
        while time.monotonic() < end:
            st = _state(vault_store)
            if st.kind("ssh-key").pending is None and any(
                e.get("event") == "rotation.finished" for e in proc.events()
            ):
                break
            time.sleep(0.1)
        proc.popen.send_signal(signal.SIGTERM)
        assert proc.finish(timeout=10) == 0
    finally:
        proc.kill()
    proc.assert_all_json()
    st = _state(vault_store)
    assert st.kind("ssh-key").pending is None
    assert owned_orphans(handle.sandbox, "alpha", st.owned_key_ids()) == []
    assert handle.journal_path is not None
    assert journal_max_keys(handle.journal_path) <= 5
    v = vault_store.read("alpha/ssh-key")
    assert v is not None and v.data is not None
    assert sdk_authenticates(handle.url, str(v.data["private_key"]))


def test_status_writes_only_json_to_pipes_by_default(
    openbao: OpenBaoDev, vault_prefix: str, sandbox: SandboxHandle
) -> None:
    """With ROTATOR_LOG_FORMAT unset (auto), `rotator status --json` writing to pipes is all
    JSON: its result on stdout, its log lines on stderr (debug: libraries' lines too), each
    naming service and version."""
    env = base_env(openbao, vault_prefix, sandbox.url, **CALM_TIMINGS)
    assert "ROTATOR_LOG_FORMAT" not in env
    _bootstrap(env, sandbox)
    proc = Proc(["status", "--json"], {**env, "ROTATOR_LOG_LEVEL": "debug"})
    try:
        assert proc.finish(timeout=30) == 0, proc.text()[-2000:]
    finally:
        proc.kill()
    proc.assert_all_json()
    by_stream: dict[str, list[dict[str, Any]]] = {"stdout": [], "stderr": []}
    for stream, line in proc.lines:
        by_stream[stream].append(json.loads(line))
    (result,) = by_stream["stdout"]
    assert result["event"] == "status" and result["accounts"][0]["account"] == "alpha"
    assert by_stream["stderr"], "status logged nothing"
    for record in by_stream["stderr"]:
        assert (record["service"], record["version"]) == ("rotator", rotator.__version__)
    assert any(not r["logger"].startswith("rotator") for r in by_stream["stderr"])


def test_cli_plan_status_rotate(
    openbao: OpenBaoDev, vault_store: VaultStore, vault_prefix: str, sandbox: SandboxHandle
) -> None:
    """plan/status report without writing; rotate makes exactly one new current key."""
    import json

    env = base_env(openbao, vault_prefix, sandbox.url, **CALM_TIMINGS)
    _bootstrap(env, sandbox)
    before = vault_store.current_version("alpha/state")
    rc, out, err = rotator_cli(["plan", "--json"], env)
    assert rc == 0, err
    plan = json.loads(out)
    actions = [a["action"] for a in plan["accounts"][0]["actions"]]
    assert actions[-1] == "Wait" and "Rotate" not in actions
    rc, out, err = rotator_cli(["status", "--json"], env)
    assert rc == 0, err
    status = json.loads(out)["accounts"][0]
    assert status["keys_at_encord"] == 1 and status["key_cap"] == 5
    assert vault_store.current_version("alpha/state") == before, "plan/status wrote nothing"
    old = status["ssh-key"]["key_id"]
    rc, out, err = rotator_cli(["rotate", "alpha", "--json"], env)
    assert rc == 0, err
    assert "rotated" in json.loads(out)["outcomes"]
    v = vault_store.read("alpha/ssh-key")
    assert v is not None and v.data is not None and v.data["key_id"] != old
    assert sdk_authenticates(sandbox.url, str(v.data["private_key"]))
    assert len(sandbox.sandbox.keys("alpha")) == 2  # the old key is in its grace period
    assert_no_secrets(out + err)


def test_bootstrap_rejects_a_non_ed25519_key_without_echoing_it(
    openbao: OpenBaoDev, vault_prefix: str, sandbox: SandboxHandle, tmp_path: Path
) -> None:
    """An RSA key file: exit 2, one line naming the problem, none of the key text."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    rsa_text = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        .decode()
    )
    key_file = tmp_path / "rsa.key"
    key_file.write_text(rsa_text)
    env = base_env(openbao, vault_prefix, sandbox.url)
    rc, out, err = rotator_cli(["bootstrap", "alpha", "--private-key-file", str(key_file)], env)
    assert rc == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Ed25519" in lines[0]
    for body_line in rsa_text.splitlines()[1:-1]:
        assert body_line not in out + err


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"]])
def test_help_works(args: list[str]) -> None:
    """`rotator --help` and `python -m rotator --help` print usage and exit 0."""
    import subprocess
    import sys

    for cmd in ([sys.executable, "-m", "rotator", *args], ["rotator", *args]):
        exe = cmd if cmd[0] != "rotator" else [str(Path(sys.executable).parent / "rotator"), *args]
        done = subprocess.run(exe, capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 0
        assert "usage:" in done.stdout


def test_rotate_while_a_daemon_runs_is_handed_to_the_lease_holder(
    openbao: OpenBaoDev, vault_store: VaultStore, vault_prefix: str, sandbox: SandboxHandle
) -> None:
    """`rotator rotate` does not race the daemon: it records the request, and the daemon
    holding the account's lease rotates at its next check."""
    import json

    env = base_env(openbao, vault_prefix, sandbox.url, **CALM_TIMINGS)
    _bootstrap(env, sandbox)
    proc = Proc(["run"], env)
    try:
        assert proc.wait_for(lambda e: e.get("event") == "lease.acquired", 20), proc.text()[-2000:]
        rc, out, err = rotator_cli(["rotate", "alpha", "--json"], env)
        assert rc == 0, err
        assert json.loads(out)["event"] == "rotate.requested"
        assert proc.wait_for(
            lambda e: e.get("event") == "rotation.finished" and e.get("reason") == "requested", 20
        ), proc.text()[-2000:]
        proc.popen.send_signal(signal.SIGTERM)
        assert proc.finish(timeout=10) == 0
    finally:
        proc.kill()
    proc.assert_all_json()
    state = _state(vault_store)
    assert state.requested == frozenset()
    assert len(sandbox.sandbox.keys("alpha")) == 2  # new key + the old one in its grace


def test_lost_record_rebootstrapped_keeps_the_key_consumers_hold(
    openbao: OpenBaoDev,
    vault_store: VaultStore,
    vault_prefix: str,
    sandbox: SandboxHandle,
    tmp_path: Path,
) -> None:
    """The state record's latest version is soft-deleted after a rotation; an admin
    re-bootstraps with a new key, as ``account.not_bootstrapped`` says. The key consumers held
    (rotator-titled, now explained by no record) is not deleted by the next checks: it is
    younger than GRACE, so consumers have the grace period to move to the new key. (Before,
    the first check deleted it as an orphan.)"""
    env = base_env(openbao, vault_prefix, sandbox.url, ROTATOR_CREDENTIALS="ssh-key")
    env.update(CALM_TIMINGS)
    _bootstrap(env, sandbox)
    rc, out, err = rotator_cli(["rotate", "alpha"], env)
    assert rc == 0, err
    held = vault_store.read("alpha/ssh-key")
    assert held is not None and held.data is not None and held.version == 2
    held_key, held_id = str(held.data["private_key"]), str(held.data["key_id"])
    # The record's latest version is soft-deleted: rotator sees an account never bootstrapped.
    client = connect(openbao.addr, openbao.root_token)
    client.secrets.kv.v2.delete_latest_version_of_secret(
        f"{vault_prefix}/alpha/state", mount_point="secret"
    )
    # An admin makes a new key in the UI (here: registers one) and bootstraps with it.
    new = keys.generate(comment="admin key (bob)")
    with EncordClient(sandbox.url, EncordAuth(keys.load_private(held_key))) as admin:
        admin.upload_key("sa-alpha", "admin key (bob)", new.public_line)
    key_file = tmp_path / "bob.key"
    key_file.write_text(new.private_openssh)
    rc, out, err = rotator_cli(["bootstrap", "alpha", "--private-key-file", str(key_file)], env)
    assert rc == 0, err
    proc = Proc(["run"], env)
    try:
        assert proc.wait_for(lambda e: e.get("event") == "lease.acquired", 10), proc.text()[-2000:]
        time.sleep(1.5)  # several more checks (interval 300 ms)
    finally:
        proc.popen.send_signal(signal.SIGTERM)
        proc.finish()
    proc.assert_all_json()
    assert not [e for e in proc.events() if e.get("event") == "key.orphan_deleted"]
    assert held_id in {k.key_id for k in sandbox.sandbox.keys("alpha")}
    assert sdk_authenticates(sandbox.url, held_key), "the key consumers held stopped working"
