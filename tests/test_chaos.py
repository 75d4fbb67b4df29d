"""Chaos: the real daemon, SIGKILLed at random moments and restarted, never breaks a promise.

The daemon runs as ``python -m rotator run`` against the session's real OpenBao and a sandbox
that injects faults (500s, 429s, dropped upload answers, latency), with seconds-scale
timings. It is killed with SIGKILL at random moments (some plain uptime, some just after a
rotation step) and started again. Meanwhile one consumer thread per account reads the newest
key from Vault and calls Encord with the real ``encord`` SDK every few hundred ms.

Afterwards: the journal never shows an account over ``ROTATOR_KEY_CAP``; no owned key is
orphaned; no consumer got a 401 with the key that was still Vault's newest; every account
rotated several times; the break-glass key was never touched; every line the daemons wrote
is JSON; no secret appears in any line or in any exception a consumer saw.

The short run is part of ``make test``; the long one (``@pytest.mark.slow``: 3 accounts,
150 kills) runs with ``make test-long``. The seed is random unless ``ROTATOR_CHAOS_SEED`` is
set, and is printed, and named in every failure, so a run can be repeated.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from encord import EncordUserClient
from encord.exceptions import AuthenticationError

from rotator.adapters.encord.client import EncordClient
from rotator.adapters.encord.signing import EncordAuth
from rotator.adapters.vault import VaultStore, connect
from rotator.core import keys
from rotator.core.state import from_dict
from rotator.dev.openbao import OpenBaoDev
from rotator.dev.sandbox import Faults
from rotator.runtime.config import from_env
from tests.e2e import FAST_SDK, Proc, base_env, owned_orphans, rotator_cli, sdk_authenticates
from tests.fixtures_sandbox import MakeSandbox
from tests.secret_scan import assert_no_secrets, note_exception, remember

CHAOS_FAULTS = Faults(
    error_rate=0.05, throttle_rate=0.05, retry_after=1, latency_ms=15, drop_upload_rate=0.15
)
# Both key kinds (Encord generates the api-key, so its lost answers leave orphans to clean).
CREDENTIALS = "ssh-key,api-key,bearer-token"
# What the daemon may use: tight enough that the break-glass key sometimes blocks a rotation.
# The sandbox itself would allow more, so the journal shows whether the daemon kept to it.
ROTATOR_CAP = 6
SANDBOX_CAP = 10
# Steps after which a kill is aimed (plus a little random delay), besides plain uptime.
KILL_AFTER = (
    "uptime",
    "uptime",
    "rotation.started",
    "key.registered",
    "key.verified",
    "vault.written",
    "rotation.finished",
    "key.revoked",
    "bearer.minted",
)

# Events worth counting in the summary: they show which recovery paths a run went through.
NOTABLE = frozenset(
    {
        "rotation.resumed",
        "rotation.finished",
        "rotation.blocked_by_cap",
        "key.orphan_deleted",
        "key.forgotten",
        "check.failed",
        "vault.write_conflict",
    }
)


def chaos_seed() -> int:
    """``ROTATOR_CHAOS_SEED`` if set, else a fresh random seed."""
    raw = os.environ.get("ROTATOR_CHAOS_SEED", "").strip()
    return int(raw) if raw else random.SystemRandom().randrange(1 << 32)


@dataclass
class ConsumerReport:
    """What one consumer saw."""

    account: str
    calls: int = 0
    ok: int = 0
    stale_401: int = 0
    keys_used: set[str] = field(default_factory=set)
    violations: list[str] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)


class Consumer(threading.Thread):
    """Reads the newest ssh-key from Vault and calls Encord with it via the encord SDK.

    On a 401 it reads Vault again: only if the key that got the 401 is *still* the newest
    version is it a violation (the daemon promised the newest version always works); an
    older key is a stale read, which the grace period exists for but cannot always cover.
    """

    def __init__(
        self,
        *,
        account: str,
        bao: OpenBaoDev,
        prefix: str,
        encord_url: str,
        seed: int,
        stop: threading.Event,
    ) -> None:
        super().__init__(name=f"consumer-{account}", daemon=True)
        self.report = ConsumerReport(account)
        self._bao = bao
        self._prefix = prefix
        self._url = encord_url
        self._rng = random.Random(seed)  # noqa: S311 - pacing, not cryptography
        self._halt = stop
        self._clients: dict[str, EncordUserClient] = {}

    def run(self) -> None:
        client = connect(self._bao.addr, self._bao.root_token)
        store = VaultStore(client, mount="secret", prefix=self._prefix)
        try:
            while not self._halt.is_set():
                try:
                    self._once(store)
                except Exception as exc:  # a Vault hiccup: count it, never die
                    note_exception(exc, "consumer")
                    self.report.errors[f"vault:{type(exc).__name__}"] += 1
                self._halt.wait(self._rng.uniform(0.1, 0.35))
        finally:
            client.adapter.close()

    def _newest(self, store: VaultStore) -> tuple[int, str, str] | None:
        v = store.read(f"{self.report.account}/ssh-key")
        if v is None or v.data is None:
            return None
        key = str(v.data["private_key"])
        remember(key)
        return v.version, str(v.data["key_id"]), key

    def _once(self, store: VaultStore) -> None:
        newest = self._newest(store)
        bearer = store.read(f"{self.report.account}/bearer-token")
        if bearer is not None and bearer.data:
            remember(str(bearer.data.get("token", "")))
        if newest is None:
            return
        version, key_id, key = newest
        sdk = self._clients.get(key_id)
        if sdk is None:
            sdk = EncordUserClient.create_with_ssh_private_key(
                key, domain=self._url, requests_settings=FAST_SDK
            )
            self._clients = {key_id: sdk}
        self.report.calls += 1
        try:
            sdk.list_organisation_tags()
        except AuthenticationError as exc:
            note_exception(exc, "consumer 401")
            again = self._newest(store)
            if again is not None and again[1] == key_id:
                self.report.violations.append(
                    f"401 with key {key_id[:12]} while it was still the newest version "
                    f"(v{version}) at {time.strftime('%H:%M:%S')}"
                )
            else:
                self.report.stale_401 += 1
            return
        except Exception as exc:  # injected 500s and 429s reach the SDK too
            note_exception(exc, "consumer")
            self.report.errors[type(exc).__name__] += 1
            return
        self.report.ok += 1
        self.report.keys_used.add(key_id)


def journal_max_per_account(path: Path) -> dict[str, int]:
    """The largest ``key_count`` the sandbox journal shows for each account."""
    top: dict[str, int] = {}
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        account, count = entry.get("account"), entry.get("key_count")
        if isinstance(account, str) and isinstance(count, int):
            top[account] = max(top.get(account, 0), count)
    return top


def journal_deleted(path: Path) -> set[str]:
    return {
        e["key_id"]
        for e in map(json.loads, path.read_text().splitlines())
        if e.get("event") == "key.deleted"
    }


def chaos_seed_config(folder: Path, names: list[str]) -> dict[str, Any]:
    return {
        "service_accounts": [
            {
                "name": n,
                "hash": f"sa-{n}",
                "key_cap": SANDBOX_CAP,
                "bootstrap_key_file": str(folder / f"{n}.key"),
            }
            for n in names
        ]
    }


@dataclass
class ChaosResult:
    kills: int
    kills_by_aim: Counter[str]
    missed_aims: int
    rotations: dict[str, int]
    consumers: list[ConsumerReport]
    wall_s: float
    events: Counter[str]


def run_chaos(
    *,
    bao: OpenBaoDev,
    prefix: str,
    make_sandbox: MakeSandbox,
    tmp_path: Path,
    accounts: list[str],
    kills: int,
    seed: int,
) -> ChaosResult:
    """Set up, kill and restart the daemon ``kills`` times, settle, and check every promise."""
    started = time.monotonic()
    rng = random.Random(seed)  # noqa: S311 - chaos dice, not cryptography
    folder = tmp_path / "chaos"
    folder.mkdir()
    handle = make_sandbox(seed=chaos_seed_config(folder, accounts))
    assert handle.journal_path is not None
    journal = handle.journal_path
    env = base_env(
        bao,
        prefix,
        handle.url,
        ROTATOR_ACCOUNTS=",".join(f"{n}=sa-{n}" for n in accounts),
        ROTATOR_KEY_CAP=str(ROTATOR_CAP),
        ROTATOR_CREDENTIALS=CREDENTIALS,
    )

    # A human's break-glass key on the first account: never touched, but it takes a slot.
    glass = keys.generate(comment="break-glass")
    admin = keys.load_private((folder / f"{accounts[0]}.key").read_text())
    with EncordClient(handle.url, EncordAuth(admin)) as human:
        human.upload_key(f"sa-{accounts[0]}", "break-glass (alice)", glass.public_line)
    for name in accounts:
        rc, out, err = rotator_cli(
            ["bootstrap", name, "--private-key-file", str(folder / f"{name}.key")], env
        )
        assert rc == 0, f"seed={seed}: bootstrap {name}: {err[-500:]}"
        assert_no_secrets(out + err, "bootstrap output")

    store = VaultStore(connect(bao.addr, bao.root_token), mount="secret", prefix=prefix)
    handle.sandbox.faults = CHAOS_FAULTS
    stop = threading.Event()
    consumers = [
        Consumer(
            account=n, bao=bao, prefix=prefix, encord_url=handle.url, seed=seed + i, stop=stop
        )
        for i, n in enumerate(accounts)
    ]
    for c in consumers:
        c.start()
    procs: list[Proc] = []
    aims: Counter[str] = Counter()
    missed = 0
    try:
        for _ in range(kills):
            aim = rng.choice(KILL_AFTER)
            proc = Proc(["run"], env)
            procs.append(proc)
            try:
                if aim == "uptime":
                    time.sleep(rng.uniform(0.1, 2.5))
                else:
                    hit = proc.wait_for(lambda e, aim=aim: e.get("event") == aim, 6)  # type: ignore[misc]
                    missed += not hit
                    time.sleep(rng.uniform(0.0, 0.12))
                aims[aim] += 1
            finally:
                proc.popen.send_signal(signal.SIGKILL)
                proc.finish()
            assert proc.popen.returncode == -signal.SIGKILL, (
                f"seed={seed}: the daemon exited by itself ({proc.popen.returncode}) "
                f"before kill: {proc.text()[-1500:]}"
            )
        # The survivor: finishes or rolls back whatever the last kill left, then keeps going.
        final = Proc(["run"], env)
        procs.append(final)
        try:
            settle_end = time.monotonic() + 20
            settled = False
            while time.monotonic() < settle_end and not settled:
                time.sleep(0.3)
                finished = sum(
                    e.get("event") == "rotation.finished" and e.get("outcome") == "rotated"
                    for e in final.events()
                )
                states = [_state(store, n) for n in accounts]
                settled = finished >= len(accounts) and all(
                    all(ks.pending is None for ks in st.kinds.values()) for st in states
                )
            final.popen.send_signal(signal.SIGTERM)
            rc = final.finish(timeout=10)
            assert rc == 0, f"seed={seed}: exit {rc} on SIGTERM: {final.text()[-1500:]}"
        finally:
            final.kill()
    finally:
        stop.set()
        for c in consumers:
            c.join(timeout=10)
        handle.sandbox.faults = Faults()

    # --- every promise -----------------------------------------------------------------
    for p in procs:
        p.assert_all_json()  # every line JSON with an event, and no secret in any
    text = "\n".join(p.text() for p in procs)
    assert "Traceback" not in text, f"seed={seed}"
    events = [e for p in procs for e in p.events()]
    crashed = [e for e in events if e.get("event") == "check.crashed"]
    assert not crashed, f"seed={seed}: a check crashed (a bug, not an outage): {crashed[:3]}"
    # Every fault injected is transient: nothing may be taken for a permanent failure.
    odd = [
        e
        for e in events
        if (e.get("event") == "check.failed" and e.get("error_kind") != "transient")
        or (e.get("event") == "rotation.finished" and e.get("outcome") == "failed")
    ]
    assert not odd, f"seed={seed}: transient faults taken for permanent ones: {odd[:3]}"

    tops = journal_max_per_account(journal)
    for name in accounts:
        assert tops.get(name, 0) <= ROTATOR_CAP, (
            f"seed={seed}: {name} held {tops[name]} keys at once (cap {ROTATOR_CAP})"
        )

    rotations: dict[str, int] = {}
    for name in accounts:
        st = _state(store, name)
        assert all(ks.pending is None for ks in st.kinds.values()), (
            f"seed={seed}: {name} still has a rotation in flight after settling"
        )
        orphans = owned_orphans(handle.sandbox, name, st.owned_key_ids())
        assert orphans == [], f"seed={seed}: {name} has orphaned owned keys {orphans}"
        held = handle.sandbox.keys(name)
        assert len(held) <= ROTATOR_CAP, f"seed={seed}: {name} ends with {len(held)} keys"
        # Bootstrap wrote version 1; every later version is one promoted rotation.
        rotations[name] = store.current_version(f"{name}/ssh-key") - 1
        newest = store.read(f"{name}/ssh-key")
        assert newest is not None and newest.data is not None
        current = st.kind("ssh-key").current
        assert current is not None and current.key_id == newest.data["key_id"], (
            f"seed={seed}: {name}: the record's current key is not Vault's newest"
        )
        assert sdk_authenticates(handle.url, str(newest.data["private_key"]))

    assert glass.key_id in {k.key_id for k in handle.sandbox.keys(accounts[0])}, (
        f"seed={seed}: the break-glass key was deleted"
    )
    assert glass.key_id not in journal_deleted(journal), f"seed={seed}"

    for c in consumers:
        r = c.report
        assert r.violations == [], f"seed={seed}: {r.account}: {r.violations}"
        assert r.ok >= 5, f"seed={seed}: {r.account}: only {r.ok} good calls ({r.errors})"
        assert len(r.keys_used) >= 2, f"seed={seed}: {r.account} never saw a rotated key work"
    return ChaosResult(
        kills=kills,
        kills_by_aim=aims,
        missed_aims=missed,
        rotations=rotations,
        consumers=[c.report for c in consumers],
        wall_s=time.monotonic() - started,
        events=Counter(
            ":".join([e["event"], *[str(e[k]) for k in ("outcome", "error_kind") if e.get(k)]])
            for p in procs
            for e in p.events()
            if e.get("event") in NOTABLE
        ),
    )


def _state(store: VaultStore, name: str) -> Any:
    v = store.read(f"{name}/state")
    assert v is not None
    return from_dict(v.data, v.version, account=name)


def _summary(seed: int, result: ChaosResult) -> str:
    consumers = ", ".join(
        f"{r.account}: {r.ok}/{r.calls} ok, {r.stale_401} stale 401, {dict(r.errors)}"
        for r in result.consumers
    )
    return (
        f"chaos seed={seed}: {result.kills} kills {dict(result.kills_by_aim)} "
        f"({result.missed_aims} aimed at a step that did not come), rotations "
        f"{result.rotations}; events {dict(sorted(result.events.items()))}; "
        f"consumers {consumers}; {result.wall_s:.1f}s"
    )


def test_chaos_short(
    openbao: OpenBaoDev, vault_prefix: str, make_sandbox: MakeSandbox, tmp_path: Path
) -> None:
    """Twelve SIGKILLs under sandbox faults, two accounts, two SDK consumers: every promise
    holds."""
    seed = chaos_seed()
    print(f"chaos seed={seed} (repeat with ROTATOR_CHAOS_SEED={seed})")
    result = run_chaos(
        bao=openbao,
        prefix=vault_prefix,
        make_sandbox=make_sandbox,
        tmp_path=tmp_path,
        accounts=["alpha", "beta"],
        kills=12,
        seed=seed,
    )
    print(_summary(seed, result))
    for name, n in result.rotations.items():
        assert n >= 3, f"seed={seed}: {name} rotated only {n} times"


@pytest.mark.slow
def test_chaos_long(
    openbao: OpenBaoDev, vault_prefix: str, make_sandbox: MakeSandbox, tmp_path: Path
) -> None:
    """150 SIGKILLs under sandbox faults, three accounts and three SDK consumers: every
    promise holds."""
    seed = chaos_seed()
    print(f"chaos seed={seed} (repeat with ROTATOR_CHAOS_SEED={seed})")
    result = run_chaos(
        bao=openbao,
        prefix=vault_prefix,
        make_sandbox=make_sandbox,
        tmp_path=tmp_path,
        accounts=["alpha", "beta", "gamma"],
        kills=150,
        seed=seed,
    )
    print(_summary(seed, result))
    for name, n in result.rotations.items():
        assert n >= 25, f"seed={seed}: {name} rotated only {n} times"


# --- two deployments on one service account ----------------------------------------------------


def _journal(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _owners(journal: list[dict[str, Any]], adopted: dict[str, str]) -> dict[str, str]:
    """Key id -> deployment: the ``adopted`` admin keys, and every key added by a request
    signed with a key of that deployment (the journal's ``by``), in journal order."""
    owners = dict(adopted)
    for e in journal:
        if e.get("event") == "key.added" and e.get("by") in owners:
            owners.setdefault(e["key_id"], owners[e["by"]])
    return owners


def _deletions_by_owner(
    journal: list[dict[str, Any]], adopted: dict[str, str], instances: dict[str, str], seed: int
) -> Counter[str]:
    """Deletions per deployment, asserting that each deleted a key of its own: one it adopted
    or added (by the journal, not by title), and titled with its instance unless adopted."""
    owner_of = _owners(journal, adopted)
    deletions = Counter[str]()
    for e in journal:
        if e.get("event") != "key.deleted":
            continue
        whose, by = owner_of.get(e["key_id"]), owner_of.get(e.get("by") or "")
        assert whose and by, f"seed={seed}: a deletion of or by no one's key: {e}"
        assert whose == by, f"seed={seed}: {by} deleted {whose}'s key {e['key_id'][:12]}"
        assert e["title"].startswith(f"rotator:{instances[by]}:alpha:") or e["key_id"] in adopted, (
            f"seed={seed}: {by} deleted a key not titled by it: {e['title']}"
        )
        deletions[by] += 1
    return deletions


def test_two_deployments_share_one_account(
    openbao: OpenBaoDev, vault_prefix: str, make_sandbox: MakeSandbox, tmp_path: Path
) -> None:
    """Two deployments (different Vault prefixes, the same account name and service-account
    hash, cap 5) rotate one sandbox account under faults, each SIGKILLed a few times: the
    journal shows neither ever deleting a key titled by the other, the account never over 5
    keys, and each deployment's newest consumer version authenticates throughout."""
    seed = chaos_seed()
    print(f"chaos seed={seed} (repeat with ROTATOR_CHAOS_SEED={seed})")
    rng = random.Random(seed)  # noqa: S311 - chaos dice, not cryptography
    folder = tmp_path / "two"
    folder.mkdir()
    handle = make_sandbox(
        seed={
            "service_accounts": [
                {
                    "name": "alpha",
                    "hash": "sa-alpha",
                    "key_cap": 5,
                    "bootstrap_key_file": str(folder / "alpha.key"),
                }
            ]
        }
    )
    assert handle.journal_path is not None
    prefixes = {"staging": f"{vault_prefix}/staging", "prod": f"{vault_prefix}/prod"}
    envs = {
        d: base_env(openbao, p, handle.url, ROTATOR_KEY_CAP="5") for d, p in prefixes.items()
    }
    instances = {d: from_env(env).instance for d, env in envs.items()}
    assert instances["staging"] != instances["prod"]
    # Each deployment adopts an admin's key: the seeded one, and one more made for prod.
    admin = keys.load_private((folder / "alpha.key").read_text())
    prod_admin = keys.generate(comment="admin key (prod)")
    with EncordClient(handle.url, EncordAuth(admin)) as human:
        human.upload_key("sa-alpha", "admin key (prod)", prod_admin.public_line)
    (folder / "prod.key").write_text(prod_admin.private_openssh)
    adopted = {admin.key_id: "staging", prod_admin.key_id: "prod"}  # key id -> deployment
    for d, key_file in (("staging", "alpha.key"), ("prod", "prod.key")):
        rc, out, err = rotator_cli(
            ["bootstrap", "alpha", "--private-key-file", str(folder / key_file)], envs[d]
        )
        assert rc == 0, f"seed={seed}: bootstrap {d}: {err[-500:]}"

    stores = {
        d: VaultStore(connect(openbao.addr, openbao.root_token), mount="secret", prefix=p)
        for d, p in prefixes.items()
    }
    handle.sandbox.faults = CHAOS_FAULTS
    stop = threading.Event()
    consumers = {
        d: Consumer(account="alpha", bao=openbao, prefix=p, encord_url=handle.url,
                    seed=seed + i, stop=stop)
        for i, (d, p) in enumerate(prefixes.items())
    }
    for c in consumers.values():
        c.start()
    running = {d: Proc(["run"], env) for d, env in envs.items()}
    procs_of = {d: [proc] for d, proc in running.items()}
    try:
        for i in range(6):  # three kills each, some aimed just after a step
            d = ("staging", "prod")[i % 2]
            aim = rng.choice(KILL_AFTER)
            if aim == "uptime":
                time.sleep(rng.uniform(0.5, 1.5))
            else:
                running[d].wait_for(lambda e, aim=aim: e.get("event") == aim, 3)  # type: ignore[misc]
                time.sleep(rng.uniform(0.0, 0.12))
            running[d].popen.send_signal(signal.SIGKILL)
            running[d].finish()
            assert running[d].popen.returncode == -signal.SIGKILL, f"seed={seed}"
            running[d] = Proc(["run"], envs[d])
            procs_of[d].append(running[d])
        handle.sandbox.faults = Faults()
        for proc in running.values():  # the survivors finish whatever the kills left
            started = proc.wait_for(lambda e: e.get("event") == "lease.acquired", 10)
            assert started, f"seed={seed}: {proc.text()[-1500:]}"
        settle_end = time.monotonic() + 15
        settled = False
        while time.monotonic() < settle_end and not settled:
            time.sleep(0.3)
            settled = True
            for d, store in stores.items():
                st = _state(store, "alpha")
                left = owned_orphans(handle.sandbox, "alpha", st.owned_key_ids(),
                                     instance=instances[d])
                settled &= not left and all(ks.pending is None for ks in st.kinds.values())
            # ... and each deployment has deleted a key (its bootstrap key at least).
            seen = _journal(handle.journal_path)
            owners = _owners(seen, adopted)
            deleters = {owners.get(e.get("by") or "") for e in seen if e["event"] == "key.deleted"}
            settled &= set(envs) <= deleters
        for proc in running.values():
            proc.popen.send_signal(signal.SIGTERM)
            assert proc.finish(timeout=10) == 0, f"seed={seed}: {proc.text()[-1500:]}"
    finally:
        stop.set()
        for c in consumers.values():
            c.join(timeout=10)
        for proc in running.values():
            proc.kill()
        handle.sandbox.faults = Faults()

    procs = [p for ran in procs_of.values() for p in ran]
    for p in procs:
        p.assert_all_json()
        assert "Traceback" not in p.text(), f"seed={seed}"
    events = [e for p in procs for e in p.events()]
    assert not [e for e in events if e.get("event") == "check.crashed"], f"seed={seed}"

    # Whose is each key: the admin key a deployment adopted, or whatever key the deployment
    # signed its upload with (the journal says which). Titles are not trusted for this.
    journal = _journal(handle.journal_path)
    deletions = _deletions_by_owner(journal, adopted, instances, seed)
    outcomes = {
        d: Counter(
            f"{e['event']}:{e.get('outcome') or e.get('error_kind') or ''}"
            for p in ran
            for e in p.events()
            if e.get("event") in NOTABLE
        )
        for d, ran in procs_of.items()
    }
    assert set(deletions) == {"staging", "prod"}, f"seed={seed}: {deletions} {outcomes}"
    top = max(e["key_count"] for e in journal if isinstance(e.get("key_count"), int))
    assert top <= 5, f"seed={seed}: the account held {top} keys at once (cap 5)"
    assert settled, f"seed={seed}: a rotation in flight or an orphan left after settling"

    for d, store in stores.items():
        newest = store.read("alpha/ssh-key")
        assert newest is not None and newest.data is not None
        assert store.current_version("alpha/ssh-key") >= 3, f"seed={seed}: {d} rotated < 2x"
        assert sdk_authenticates(handle.url, str(newest.data["private_key"])), f"seed={seed}"
        r = consumers[d].report
        assert r.violations == [], f"seed={seed}: {d}: {r.violations}"
        assert r.ok >= 5 and len(r.keys_used) >= 2, f"seed={seed}: {d}: {r}"
    print(f"two deployments seed={seed}: deletions {dict(deletions)}, max keys {top}")
