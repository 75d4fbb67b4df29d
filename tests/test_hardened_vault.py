"""Vault as hardened sites configure it: KV v2 mounts with ``delete_version_after``,
``max_versions`` and ``cas_required`` (issue: Vault as operators configure it).

Each test enables a mount of its own on the session's real OpenBao with the settings under
test. Settings that break a promise are refused at start-up with one line naming the setting
(exit 2); the others must work for real: bootstrap, rotations, consumers on working keys.

Before: every version under ``delete_version_after`` carries a *future* ``deletion_time``,
which rotator read as "deleted": the state record looked empty, every check logged
``account.not_bootstrapped``, leases were "lost" before every write and nothing rotated.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from rotator.adapters.vault import VaultStore, connect
from rotator.dev.openbao import OpenBaoDev
from tests.e2e import Proc, base_env, rotator_cli, sdk_authenticates
from tests.fixtures_sandbox import SandboxHandle

MakeMount = Callable[..., str]


@pytest.fixture
def kv_mount(vault_client: Any) -> Iterator[MakeMount]:
    """``kv_mount(max_versions=.., cas_required=.., delete_version_after=..)``: a fresh KV v2
    mount with those settings (removed after the test)."""
    made: list[str] = []

    def make(**config: Any) -> str:
        path = f"kv-{uuid.uuid4().hex[:8]}"
        vault_client.sys.enable_secrets_engine("kv", path=path, options={"version": "2"})
        if config:
            vault_client.secrets.kv.v2.configure(mount_point=path, **config)
        made.append(path)
        return path

    yield make
    for path in made:
        vault_client.sys.disable_secrets_engine(path=path)


def test_a_version_scheduled_for_deletion_is_alive_until_then(
    openbao: OpenBaoDev, kv_mount: MakeMount
) -> None:
    """Under delete_version_after every version has a future deletion_time and must read as
    data; once that time has passed (a path set to 1s), it reads as deleted."""
    mount = kv_mount(delete_version_after="1h")
    store = VaultStore(connect(openbao.addr, openbao.root_token), mount=mount, prefix="p")
    store.write("a/state", {"x": "1"}, cas=0)
    v = store.read("a/state")
    assert v is not None and v.data == {"x": "1"}
    client = connect(openbao.addr, openbao.root_token)
    client.secrets.kv.v2.update_metadata("p/a/short", delete_version_after="1s", mount_point=mount)
    store.write("a/short", {"y": "2"}, cas=0)
    fresh = store.read("a/short")
    assert fresh is not None and fresh.data == {"y": "2"}
    time.sleep(1.6)
    gone = store.read("a/short")
    assert gone is not None and gone.data is None


@pytest.mark.parametrize(
    ("config", "timings", "words"),
    [
        ({"delete_version_after": "1h"}, {}, "delete_version_after=1h"),
        ({"max_versions": 1}, {}, "max_versions=1"),
    ],
    ids=["delete-after-shorter-than-key-ttl", "one-version-only"],
)
def test_mount_settings_that_break_a_promise_are_refused_at_start(
    openbao: OpenBaoDev,
    kv_mount: MakeMount,
    sandbox: SandboxHandle,
    config: dict[str, Any],
    timings: dict[str, str],
    words: str,
) -> None:
    """`rotator run` exits 2 with one line naming the setting, before touching any account."""
    mount = kv_mount(**config)
    env = base_env(
        openbao, "encord", sandbox.url, ROTATOR_VAULT_MOUNT=mount, ROTATOR_KEY_TTL="90d",
        ROTATOR_ROTATE_BEFORE="14d", ROTATOR_GRACE="1h", ROTATOR_BEARER_TTL="1h", **timings,
    )
    code, out, err = rotator_cli(["run"], env, timeout=30)
    assert code == 2, err[-2000:]
    lines = (out + err).splitlines()
    problems = [json.loads(line) for line in lines if "\"config.invalid\"" in line]
    assert len(problems) == 1 and words in problems[0]["problem"], err[-2000:]
    assert problems[0]["problem"].startswith("ROTATOR_VAULT_MOUNT:")


@pytest.mark.parametrize(
    "config",
    [
        {"delete_version_after": "1h"},  # longer than the test's 3s key TTL
        {"max_versions": 2},
        {"cas_required": True},
        {"cas_required": True, "max_versions": 3, "delete_version_after": "2h"},
    ],
    ids=["delete-after-1h", "two-versions", "cas-required", "all-three"],
)
def test_hardened_mounts_that_keep_the_promises_work(
    openbao: OpenBaoDev, kv_mount: MakeMount, sandbox: SandboxHandle, config: dict[str, Any]
) -> None:
    """On a hardened mount rotator bootstraps and rotates for real: several promotions, the
    newest consumer version always works with the SDK, nothing reads as not bootstrapped."""
    mount = kv_mount(**config)
    env = base_env(openbao, "encord", sandbox.url, ROTATOR_VAULT_MOUNT=mount)
    code, out, err = rotator_cli(
        ["bootstrap", "alpha", "--private-key-file", str(sandbox.bootstrap_key_file)], env
    )
    assert code == 0, err[-2000:]
    store = VaultStore(connect(openbao.addr, openbao.root_token), mount=mount, prefix="encord")
    proc = Proc(["run"], env)
    try:
        assert proc.wait_for(
            lambda e: e.get("event") == "rotation.finished" and e.get("outcome") == "rotated", 20
        ), proc.text()[-3000:]
        assert proc.wait_for(lambda e: e.get("event") == "key.revoked", 20), proc.text()[-3000:]
    finally:
        proc.popen.terminate()
        proc.finish()
    events = {e.get("event") for e in proc.events()}
    assert "account.not_bootstrapped" not in events
    assert "lease.lost" not in events
    newest = store.read("alpha/ssh-key")
    assert newest is not None and newest.data is not None and newest.version >= 2
    assert sdk_authenticates(sandbox.url, str(newest.data["private_key"]))
