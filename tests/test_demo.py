"""The README's "run it" command: `rotator demo` shows rotations and stops cleanly on Ctrl-C."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import httpx

from tests.e2e import Proc


def test_demo_rotates_and_stops_all_three_on_ctrl_c(tmp_path: Path) -> None:
    """Within 30 s the demo logs several issue -> verify -> store -> revoke cycles, its consumer
    authenticates with every key (its own lines show key ids short), and SIGINT stops daemon,
    sandbox and OpenBao with exit 0; the folder given with --workdir is kept."""
    proc = Proc(["demo", "--workdir", str(tmp_path / "demo")], {})
    try:
        assert proc.wait_for(
            lambda e: len([x for x in proc.events() if x.get("event") == "key.revoked"]) >= 2, 40
        ), proc.text()[-3000:]
        ready = next(e for e in proc.events() if e["event"] == "demo.ready")
        start = time.monotonic()
        proc.popen.send_signal(signal.SIGINT)
        assert proc.finish(timeout=15) == 0
        assert time.monotonic() - start < 10
    finally:
        proc.kill()
    proc.assert_all_json()
    events = [e["event"] for e in proc.events()]
    rotated = [
        e for e in proc.events() if e["event"] == "rotation.finished" and e["outcome"] == "rotated"
    ]
    assert len(rotated) >= 2
    for name in (
        "rotation.started",
        "key.registered",
        "key.verified",
        "vault.written",
        "consumer.authenticated",
        "daemon.stopped",
        "demo.finished",
    ):
        assert name in events, name
    assert "consumer.rejected" not in events
    finished = next(e for e in proc.events() if e["event"] == "demo.finished")
    assert finished["max_keys_held"] <= 5 and finished["keys_added"] >= 3
    assert finished["workdir_removed"] is False and (tmp_path / "demo" / "vault-token").exists()
    mine = ("consumer.authenticated", "demo.bootstrapped")
    own = [e for e in proc.events() if e["event"] in mine]
    assert own and all(re.fullmatch(r"[0-9a-f]{12}…", e["key_id"]) for e in own), own[:2]
    # OpenBao and the sandbox are gone with it.
    for url in (ready["vault_addr"] + "/v1/sys/health", ready["sandbox_url"]):
        try:
            httpx.get(url, timeout=2)
        except httpx.TransportError:
            continue
        raise AssertionError(f"{url} still answers after the demo stopped")


def test_demo_removes_the_folder_it_made(tmp_path: Path) -> None:
    """Without --workdir the demo makes a temporary folder (the dev Vault's token, the
    sandbox's key) and removes it when it ends; nothing else in the temporary area goes."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    (tmp / "someone-elses").write_text("kept")
    proc = Proc(["demo", "--duration", "3"], {"TMPDIR": str(tmp)})
    try:
        assert proc.finish(timeout=60) == 0, proc.text()[-3000:]
    finally:
        proc.kill()
    proc.assert_all_json()
    ready = next(e for e in proc.events() if e["event"] == "demo.ready")
    work = Path(ready["workdir"])
    assert work.parent == tmp and work.name.startswith("rotator-demo-")
    assert Path(ready["vault_login_file"]).parent == work
    finished = next(e for e in proc.events() if e["event"] == "demo.finished")
    assert finished["workdir_removed"] is True
    assert not work.exists() and [p.name for p in tmp.iterdir()] == ["someone-elses"]
