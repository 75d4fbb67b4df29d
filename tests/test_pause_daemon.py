"""``rotator pause`` / ``resume`` end to end: real daemon processes (two replicas, then a
restart) against a real OpenBao and the sandbox."""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request
from typing import Any

from rotator.adapters.vault import VaultStore
from rotator.dev.openbao import OpenBaoDev
from tests.e2e import Proc, base_env, rotator_cli, sdk_authenticates
from tests.fixtures_sandbox import SandboxHandle


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:  # noqa: S310
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _port(proc: Proc) -> int:
    assert proc.wait_for(lambda e: e["event"] == "ops.listening", 15), proc.text()[-2000:]
    (event,) = [e for e in proc.events() if e["event"] == "ops.listening"]
    return int(event["port"])


def _count(proc: Proc, event: str) -> int:
    return sum(1 for e in proc.events() if e["event"] == event)


def _version(store: VaultStore, rel: str) -> int:
    v = store.read(rel)
    return 0 if v is None else v.version


def _paused_checks_after(procs: list[Proc], seen: dict[int, int], more: int = 2) -> Proc:
    """Wait until some replica has logged ``more`` further ``check.paused``; return it."""
    end = time.monotonic() + 20
    while time.monotonic() < end:
        for i, p in enumerate(procs):
            if _count(p, "check.paused") >= seen.get(i, 0) + more:
                return p
        time.sleep(0.1)
    raise AssertionError("no replica logged check.paused")


def _watch_still(
    store: VaultStore, sandbox: SandboxHandle, seconds: float
) -> tuple[int, set[str], int]:
    """Over ``seconds`` (longer than a key's whole 3 s life): the ssh-key path and the keys at
    Encord do not move; answers the bearer-token versions written meanwhile."""
    ssh = _version(store, "alpha/ssh-key")
    keys = {k.key_id for k in sandbox.sandbox.keys("alpha")}
    bearer = _version(store, "alpha/bearer-token")
    time.sleep(seconds)
    assert _version(store, "alpha/ssh-key") == ssh, "a paused account's key path moved"
    assert {k.key_id for k in sandbox.sandbox.keys("alpha")} == keys, "keys changed at Encord"
    return ssh, keys, _version(store, "alpha/bearer-token") - bearer


def test_pause_holds_every_replica_and_restart_and_resume_lets_go(
    openbao: OpenBaoDev, vault_store: VaultStore, vault_prefix: str, sandbox: SandboxHandle
) -> None:
    """Two replicas rotate; the CLI pauses: whichever holds the lease changes no key while
    the bearer token keeps being refreshed, /readyz is ready and says paused, the metric is
    1 and the key's expiry is still exported; the holder stopped, the other replica and then
    a restarted process keep it paused; resume lets it rotate, with a key the SDK accepts."""
    env = base_env(openbao, vault_prefix, sandbox.url)
    rc, _, err = rotator_cli(
        ["bootstrap", "alpha", "--private-key-file", str(sandbox.bootstrap_key_file)], env
    )
    assert rc == 0, err
    procs = [Proc(["run"], env), Proc(["run"], env)]
    try:
        ports = [_port(p) for p in procs]
        assert any(p.wait_for(lambda e: e["event"] == "rotation.finished", 20) for p in procs)

        rc, out, err = rotator_cli(
            ["pause", "alpha", "--reason", "consumer migration", "--json"], env
        )
        assert rc == 0, err
        assert json.loads(out)["paused"]["reason"] == "consumer migration"
        assert "account.paused" in err
        holder = _paused_checks_after(procs, {})  # a check begun after the pause has ended
        rc, _, err = rotator_cli(["rotate", "alpha"], env)
        assert rc == 1 and "rotate.refused" in err, err
        _, _, minted = _watch_still(vault_store, sandbox, 4.5)
        assert minted >= 1, "the bearer token was not refreshed while paused"

        port = ports[procs.index(holder)]
        status, body = _get(port, "/readyz")
        assert status == 200, body
        assert json.loads(body)["accounts"]["alpha"]["paused"] is True
        _, metrics = _get(port, "/metrics")
        assert 'rotator_paused{account="alpha"} 1.0' in metrics
        expiry = [
            line for line in metrics.splitlines()
            if line.startswith('rotator_key_expiry_seconds{account="alpha",credential="ssh-key"}')
        ]
        assert expiry and float(expiry[0].split()[-1]) < 1.5, "expired key not visible"

        # The holder stops: the other replica takes over and honours the pause.
        other = procs[1 - procs.index(holder)]
        seen = {1 - procs.index(holder): _count(other, "check.paused")}
        holder.popen.send_signal(signal.SIGTERM)
        assert holder.finish() == 0
        _paused_checks_after(procs, seen)
        _watch_still(vault_store, sandbox, 3.5)

        # Every process stopped, one started afresh: still paused.
        other.popen.send_signal(signal.SIGTERM)
        assert other.finish() == 0
        procs.append(Proc(["run"], env))
        _paused_checks_after(procs[2:], {})
        ssh, _, _ = _watch_still(vault_store, sandbox, 3.5)

        rc, out, err = rotator_cli(["resume", "alpha", "--json"], env)
        assert rc == 0, err
        assert json.loads(out) == {"event": "resume.done", "account": "alpha", "was_paused": True}
        end = time.monotonic() + 15
        while time.monotonic() < end and _version(vault_store, "alpha/ssh-key") == ssh:
            time.sleep(0.1)
        newest: Any = vault_store.read("alpha/ssh-key")
        assert newest.version > ssh, "resume did not let the account rotate"
        assert sdk_authenticates(sandbox.url, str(newest.data["private_key"]))
        procs[2].popen.send_signal(signal.SIGTERM)
        assert procs[2].finish() == 0
    finally:
        for p in procs:
            p.kill()
    for p in procs:
        p.assert_all_json()
