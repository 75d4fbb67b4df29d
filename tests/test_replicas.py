"""Daemon processes against one OpenBao and the sandbox: leases keep them from ever working
on one account at the same time, and a holder paused past its lease changes nothing once it
resumes."""

from __future__ import annotations

import json
import signal
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rotator.adapters.vault import VaultStore
from rotator.core.state import from_dict
from rotator.dev.openbao import OpenBaoDev
from rotator.dev.sandbox import Faults
from tests.e2e import Proc, base_env, owned_orphans, rotator_cli, sdk_authenticates
from tests.fixtures_sandbox import MakeSandbox

ACCOUNTS = ("alpha", "beta")


def _seed(folder: Path) -> dict[str, Any]:
    return {
        "service_accounts": [
            {"name": n, "hash": f"sa-{n}", "key_cap": 5, "bootstrap_key_file": str(folder / n)}
            for n in ACCOUNTS
        ]
    }


def _ts(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00"))


def test_three_replicas_never_rotate_one_account_twice(
    openbao: OpenBaoDev,
    vault_store: VaultStore,
    vault_prefix: str,
    make_sandbox: MakeSandbox,
    tmp_path: Path,
) -> None:
    """No overlapping rotations of an account across replicas, one new key per rotation, the
    cap never exceeded, nothing orphaned; a SIGKILLed holder's accounts are taken over."""
    handle = make_sandbox(seed=_seed(tmp_path))
    env = base_env(
        openbao,
        vault_prefix,
        handle.url,
        ROTATOR_ACCOUNTS=",".join(f"{n}=sa-{n}" for n in ACCOUNTS),
    )
    for name in ACCOUNTS:
        rc, _, err = rotator_cli(
            ["bootstrap", name, "--private-key-file", str(tmp_path / name)], env
        )
        assert rc == 0, err
    procs = [Proc(["run"], env) for _ in range(3)]
    try:
        time.sleep(6)
        # Kill whichever replica holds a lease right now; the others must take over.
        holders = {
            e.get("replica") for p in procs for e in p.events() if e["event"] == "daemon.started"
        }
        assert len(holders) == 3
        acquired = [
            i
            for i, p in enumerate(procs)
            if any(e["event"] == "lease.acquired" for e in p.events())
        ]
        assert acquired, "some replica took a lease"
        victim = procs[acquired[0]]
        victim.popen.send_signal(signal.SIGKILL)
        victim.finish()
        killed_at = time.monotonic()
        killed_wall = datetime.now(UTC)
        victim_index = procs.index(victim)
        time.sleep(8)
        for p in procs:
            if p is not victim:
                p.popen.send_signal(signal.SIGTERM)
        for p in procs:
            if p is not victim:
                assert p.finish(timeout=10) == 0
    finally:
        for p in procs:
            p.kill()
    assert time.monotonic() - killed_at >= 8
    for p in procs:
        p.assert_all_json()

    # Rotation intervals per account, across processes (rotation.started -> finished, by run_id).
    spans: dict[str, list[tuple[datetime, datetime, int]]] = defaultdict(list)
    started_keys: dict[str, list[str]] = defaultdict(list)
    for i, p in enumerate(procs):
        begun: dict[tuple[str, str], datetime] = {}
        for e in p.events():
            key = (e.get("account", ""), e.get("run_id", ""))
            if e["event"] == "rotation.started":
                begun[key] = _ts(e)
                started_keys[key[0]].append(str(e.get("key_id")))
            elif e["event"] == "rotation.finished" and key in begun:
                spans[key[0]].append((begun.pop(key), _ts(e), i))
    for name in ACCOUNTS:
        assert len(spans[name]) >= 3, f"{name} rotated only {len(spans[name])} times"
        ordered = sorted(spans[name])
        for (_, e1, p1), (s2, _, p2) in zip(ordered, ordered[1:], strict=False):
            assert s2 >= e1, f"{name}: rotations overlap (replicas {p1} and {p2})"
        assert len(started_keys[name]) == len(set(started_keys[name])), "one key, one rotation"
        after = [i for start, _, i in spans[name] if start > killed_wall]
        assert after and victim_index not in after, f"{name}: nobody took over from the victim"

    # Encord's side: one key added per rotation started, never over the cap, no orphans.
    assert handle.journal_path is not None
    journal = [json.loads(line) for line in handle.journal_path.read_text().splitlines()]
    for name in ACCOUNTS:
        added = [j for j in journal if j["account"] == name and j["event"] == "key.added"]
        assert len(added) - 1 == len(started_keys[name])  # minus the bootstrap key
        assert max(j["key_count"] for j in journal if j["account"] == name) <= 5
        v = vault_store.read(f"{name}/state")
        assert v is not None
        state = from_dict(v.data, v.version, account=name)
        assert owned_orphans(handle.sandbox, name, state.owned_key_ids()) == []
        newest = vault_store.read(f"{name}/ssh-key")
        assert newest is not None and newest.data is not None
        assert sdk_authenticates(handle.url, str(newest.data["private_key"]))


def test_a_holder_stopped_in_verify_and_resumed_deletes_nothing(
    openbao: OpenBaoDev,
    vault_store: VaultStore,
    vault_prefix: str,
    make_sandbox: MakeSandbox,
    tmp_path: Path,
) -> None:
    """A (holding the lease) is stopped with SIGSTOP while it verifies a new key that does
    not authenticate yet; B takes the account over, verifies and promotes that key; the key
    stops authenticating for a while again, and A is continued (SIGCONT): its own verifies
    fail and it would delete the key, but its lease moved on: lease.lost, nothing deleted.
    The key at the newest consumer version was never deleted and works with the SDK."""
    handle = make_sandbox(faults=Faults(propagation_ms=600_000))
    env = base_env(openbao, vault_prefix, handle.url)
    rc, _, err = rotator_cli(
        ["bootstrap", "alpha", "--private-key-file", str(handle.bootstrap_key_file)], env
    )
    assert rc == 0, err
    a = Proc(["run"], env)
    b: Proc | None = None
    try:
        assert a.wait_for(lambda e: e["event"] == "key.verify_retry", timeout=30)
        a.popen.send_signal(signal.SIGSTOP)
        (started,) = [e for e in a.events() if e["event"] == "rotation.started"]
        key_id = started["key_id"]
        handle.sandbox.faults = Faults()  # the new key works now
        b = Proc(["run"], env)
        assert b.wait_for(
            lambda e: (
                e["event"] == "rotation.finished"
                and e["key_id"] == key_id
                and e["outcome"] == "rotated"
            ),
            timeout=30,
        ), "B took over and promoted A's key"
        # Recent keys fail again (A's view of Encord lags): B can change nothing meanwhile,
        # and A's remaining verifies of the key fail.
        handle.sandbox.faults = Faults(propagation_ms=600_000)
        a.popen.send_signal(signal.SIGCONT)
        assert a.wait_for(lambda e: e["event"] == "lease.lost", timeout=30)
        for p in (a, b):
            p.popen.send_signal(signal.SIGTERM)
        for p in (a, b):
            assert p.finish(timeout=15) == 0
    finally:
        a.popen.send_signal(signal.SIGCONT)
        a.kill()
        if b is not None:
            b.kill()
    handle.sandbox.faults = Faults()
    for p in (a, b):
        p.assert_all_json()
    assert not [e for e in a.events() if e["event"] in ("key.revoked", "key.orphan_deleted")], (
        "the resumed replica deleted nothing"
    )
    assert handle.journal_path is not None
    journal = [json.loads(line) for line in handle.journal_path.read_text().splitlines()]
    deleted = {j["key_id"] for j in journal if j["event"] == "key.deleted"}
    newest = vault_store.read("alpha/ssh-key")
    assert newest is not None and newest.data is not None
    assert newest.data["key_id"] == key_id, "consumers hold the key B promoted"
    assert key_id not in deleted, "the key consumers hold was deleted at Encord"
    assert sdk_authenticates(handle.url, str(newest.data["private_key"]))
