"""ROTATOR_ROTATION_WINDOW end to end: a real daemon process against a real OpenBao and the
sandbox, first with a window closed now, then with one open now."""

from __future__ import annotations

import json
import signal
import time
from datetime import UTC, datetime

from rotator.adapters.vault import VaultStore
from rotator.core.window import DAYS
from rotator.dev.openbao import OpenBaoDev
from tests.e2e import Proc, base_env, rotator_cli
from tests.fixtures_sandbox import SandboxHandle


def _version(store: VaultStore, rel: str) -> int:
    v = store.read(rel)
    return 0 if v is None else v.version


def test_a_closed_window_holds_a_due_key_and_an_open_one_lets_it_rotate(
    openbao: OpenBaoDev, vault_store: VaultStore, vault_prefix: str, sandbox: SandboxHandle
) -> None:
    """Keys due 3 s after issue but living 8 d: with a window that opens the day after
    tomorrow, the daemon defers the rotation (the key stays, Encord unchanged) while it
    refreshes the bearer token, and plan/status show the next opening; restarted with a
    window open now, it rotates, without an override."""
    closed_day = DAYS[(datetime.now(UTC).weekday() + 2) % 7]
    closed = f"{closed_day} 12:00-12:01 UTC"
    env = base_env(
        openbao,
        vault_prefix,
        sandbox.url,
        ROTATOR_KEY_TTL="8d",
        ROTATOR_ROTATE_BEFORE="7d23h59m57s",
        ROTATOR_GRACE="1s",
        ROTATOR_LOG_LEVEL="debug",
        ROTATOR_ROTATION_WINDOW=closed,
    )
    rc, _, err = rotator_cli(
        ["bootstrap", "alpha", "--private-key-file", str(sandbox.bootstrap_key_file)], env
    )
    assert rc == 0, err
    time.sleep(3)  # the bootstrap key is due now
    ssh = _version(vault_store, "alpha/ssh-key")
    keys = {k.key_id for k in sandbox.sandbox.keys("alpha")}
    daemon = Proc(["run"], env)
    procs = [daemon]
    try:
        assert daemon.wait_for(lambda e: e["event"] == "rotation.deferred", 15), daemon.text()
        bearer = _version(vault_store, "alpha/bearer-token")
        time.sleep(3)
        assert _version(vault_store, "alpha/bearer-token") > bearer, "bearer not refreshed"
        assert _version(vault_store, "alpha/ssh-key") == ssh, "rotated in a closed window"
        assert {k.key_id for k in sandbox.sandbox.keys("alpha")} == keys
        names = [e["event"] for e in daemon.events()]
        assert "rotation.started" not in names and "rotation.window_overridden" not in names

        rc, out, err = rotator_cli(["plan", "--json"], env)
        assert rc == 0, err
        (entry,) = json.loads(out)["accounts"]
        assert entry["window"]["window"] == closed and entry["window"]["open"] is False
        opens = datetime.fromisoformat(entry["window"]["opens_at"])
        assert opens.weekday() == DAYS.index(closed_day) and (opens.hour, opens.minute) == (12, 0)
        assert entry["actions"][0]["action"] == "Deferred"
        rc, out, err = rotator_cli(["status"], env)
        assert rc == 0, err
        assert (
            f"alpha: rotation window closed ({closed}); rotations due by age wait until "
            f"{opens.strftime('%Y-%m-%d %H:%M')} UTC (in "
        ) in out
        rc, out, err = rotator_cli(["plan"], env)
        assert rc == 0, err
        assert f"closed, opens {opens.strftime('%Y-%m-%d %H:%M')} UTC (in " in out
        daemon.popen.send_signal(signal.SIGTERM)
        assert daemon.finish() == 0

        daemon = Proc(["run"], {**env, "ROTATOR_ROTATION_WINDOW": "mon-sun 00:00-24:00 UTC"})
        procs.append(daemon)
        assert daemon.wait_for(
            lambda e: e["event"] == "rotation.finished" and e.get("outcome") == "rotated", 20
        ), daemon.text()[-3000:]
        assert _version(vault_store, "alpha/ssh-key") > ssh
        assert "rotation.window_overridden" not in [e["event"] for e in daemon.events()]
        daemon.popen.send_signal(signal.SIGTERM)
        assert daemon.finish() == 0
    finally:
        for p in procs:
            p.kill()
    for p in procs:
        p.assert_all_json()
