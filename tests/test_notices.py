"""Telling a person, wired: ROTATOR_NOTIFY_URL, the engine's notices (registration or
revocation required, rotation failed, blocked by the cap, a key expiring soon), and a real
daemon posting them to a local receiver, never slowed down by one that hangs or fails."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, MutableMapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from rotator.adapters.encord.client import EncordClient
from rotator.adapters.encord.registry import registry_factory
from rotator.adapters.encord.signing import EncordAuth
from rotator.adapters.vault import VaultStore
from rotator.core import keys
from rotator.core.admin import bootstrap
from rotator.core.engine import Engine
from rotator.core.errors import ConfigError
from rotator.core.policy import Policy
from rotator.core.vocab import Account
from rotator.dev.openbao import OpenBaoDev
from rotator.dev.sandbox import Faults
from rotator.runtime.config import from_env, settings_summary
from tests.e2e import Proc, base_env, rotator_cli
from tests.fixtures_sandbox import MakeSandbox, SandboxHandle
from tests.secret_scan import assert_no_secrets
from tests.test_notify import Receiver

BASE = {
    "VAULT_ADDR": "https://vault.example.com:8200",
    "VAULT_TOKEN": "hvs.notices-test-token-00000000",
    "ROTATOR_ACCOUNTS": "alpha=sa-alpha",
}


class Told:
    """A :class:`~rotator.core.ports.Notices` that records what it is told."""

    def __init__(self) -> None:
        self.notices: list[dict[str, Any]] = []

    def notify(self, event: str, **fields: Any) -> bool:
        self.notices.append({"event": event, **fields})
        return True

    def events(self) -> list[str]:
        return [n["event"] for n in self.notices]


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def engine(
    store: VaultStore, url: str, told: Any, *, manual: bool = False, cap: int = 5,
    clock: Clock | None = None,
) -> Engine:
    policy = Policy(
        key_ttl=timedelta(days=90),
        rotate_before=timedelta(days=14),
        grace=timedelta(hours=1),
        key_cap=cap,
        kinds=("ssh-key",),
        bearer=False,
    )
    return Engine(
        account=Account("alpha", "sa-alpha"),
        store=store,
        registry_factory=registry_factory(url, manual=manual),
        policy=policy,
        clock=clock or Clock(),
        sleep=lambda s: None,
        verify_attempts=1,
        notices=told,
    )


# ---------------------------------------------------------------- configuration


def test_notify_url_is_optional_checked_and_never_shown() -> None:
    """Unset, no one is told; https (or http to loopback) is taken, and settings_summary
    shows only its scheme and host; a bad one is one line that never repeats its path."""
    assert from_env(BASE).notify_url is None
    url = "https://hooks.example.com/services/T0/B0/pathsecret"
    s = from_env({**BASE, "ROTATOR_NOTIFY_URL": url})
    assert s.notify_url is not None and s.notify_url.url == url
    assert settings_summary(s)["notify"] == "https://hooks.example.com"
    assert "pathsecret" not in json.dumps(settings_summary(s)) + repr(s)
    for bad in ("http://hooks.example.com/services/pathsecret", "ftp://x/pathsecret", "nope"):
        with pytest.raises(ConfigError) as info:
            from_env({**BASE, "ROTATOR_NOTIFY_URL": bad})
        (problem,) = info.value.problems
        assert problem.startswith("ROTATOR_NOTIFY_URL: ") and "pathsecret" not in problem


# ---------------------------------------------------------------- the engine's notices


def test_manual_mode_tells_a_person_to_register_and_to_revoke(
    vault_store: VaultStore, sandbox: SandboxHandle
) -> None:
    """A due key in manual mode: the person is told the title and public line to add; once
    grace is over, the title and key id of the key to delete."""
    clock = Clock()
    told = Told()
    e = engine(vault_store, sandbox.url, told, manual=True, clock=clock)
    text = sandbox.bootstrap_key_file.read_text()
    old = bootstrap(e.context, text)
    with capture_logs() as logs:
        e.check(force=frozenset({"ssh-key"}))
    asked = [n for n in told.notices if n["event"] == "key.registration_required"]
    (logged,) = [x for x in logs if x["event"] == "key.registration_required"]
    assert len(asked) == 1 and asked[0]["account"] == "alpha" and asked[0]["kind"] == "ssh-key"
    assert asked[0]["title"] == logged["title"] and asked[0]["title"].startswith("rotator:")
    assert asked[0]["public_key"] == logged["public_key"]
    admin = EncordClient(sandbox.url, EncordAuth(keys.load_private(text)))
    admin.upload_key("sa-alpha", asked[0]["title"], asked[0]["public_key"])
    admin.close()
    e.check()
    clock.now += timedelta(hours=1, seconds=1)
    e.check()
    revoke = [n for n in told.notices if n["event"] == "key.revocation_required"]
    assert revoke and revoke[0]["key_id"] == old.key_id and revoke[0]["title"] == old.title
    assert_no_secrets(repr(told.notices), "notices")


def test_a_blocked_rotation_is_told(
    vault_store: VaultStore, make_sandbox: MakeSandbox, tmp_path: Path
) -> None:
    """No room under the cap: ``rotation.blocked_by_cap`` reaches a person."""
    sandbox = make_sandbox()
    told = Told()
    e = engine(vault_store, sandbox.url, told, cap=1)
    bootstrap(e.context, sandbox.bootstrap_key_file.read_text())
    e.check(force=frozenset({"ssh-key"}))
    (blocked,) = [n for n in told.notices if n["event"] == "rotation.blocked_by_cap"]
    assert blocked["kind"] == "ssh-key" and "1/1 keys held" in blocked["hint"]


def test_a_failed_rotation_is_told(vault_store: VaultStore, make_sandbox: MakeSandbox) -> None:
    """A new key that never authenticates: ``rotation.failed`` with the key and why."""
    sandbox = make_sandbox(faults=Faults(propagation_ms=3_600_000))
    told = Told()
    e = engine(vault_store, sandbox.url, told)
    bootstrap(e.context, sandbox.bootstrap_key_file.read_text())
    result = e.check(force=frozenset({"ssh-key"}))
    assert ("ssh-key", "failed") in result.rotations
    (failed,) = [n for n in told.notices if n["event"] == "rotation.failed"]
    assert failed["kind"] == "ssh-key" and failed["key_id"]
    assert failed["hint"] == "new key never authenticated"


def test_a_key_expiring_soon_is_logged_and_told(
    vault_store: VaultStore, sandbox: SandboxHandle
) -> None:
    """With rotations failing, a current key with less than a quarter of ROTATE_BEFORE left
    is logged as ``key.expiring_soon`` and a person is told when it expires; not before."""
    clock = Clock()
    told = Told()
    e = engine(vault_store, sandbox.url, told, cap=1, clock=clock)
    record = bootstrap(e.context, sandbox.bootstrap_key_file.read_text())
    clock.now = record.expires_at - timedelta(days=3, hours=12, seconds=10)
    e.check()
    assert "key.expiring_soon" not in told.events()
    clock.now += timedelta(seconds=20)
    with capture_logs() as logs:
        e.check()
    (soon,) = [n for n in told.notices if n["event"] == "key.expiring_soon"]
    assert soon["key_id"] == record.key_id
    assert soon["expires_at"] == record.expires_at.replace(microsecond=0)
    assert any(x["event"] == "key.expiring_soon" and x["key_id"] == record.key_id for x in logs)


def test_a_notifier_that_fails_never_stops_a_check(
    vault_store: VaultStore, make_sandbox: MakeSandbox
) -> None:
    """A notifier that raises is logged by type only, and the check carries on."""

    class Broken:
        def notify(self, event: str, **fields: Any) -> bool:
            raise RuntimeError("pathsecret in a message")

    sandbox = make_sandbox()
    e = engine(vault_store, sandbox.url, Broken(), cap=1)
    bootstrap(e.context, sandbox.bootstrap_key_file.read_text())
    with capture_logs() as logs:
        result = e.check(force=frozenset({"ssh-key"}))
    assert ("ssh-key", "blocked_by_cap") in result.rotations
    crashed = [x for x in logs if x["event"] == "notify.crashed"]
    assert crashed and crashed[0]["error_type"] == "RuntimeError"
    assert "pathsecret" not in repr(logs)


# ---------------------------------------------------------------- a real daemon


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    started: list[Receiver] = []

    def start(*script: str) -> Receiver:
        started.append(Receiver("127.0.0.1", list(script)))
        return started[-1]

    yield start
    for one in started:
        one.stop()


def _bootstrap(env: dict[str, str], sandbox: SandboxHandle) -> None:
    rc, _, err = rotator_cli(
        ["bootstrap", "alpha", "--private-key-file", str(sandbox.bootstrap_key_file)], env
    )
    assert rc == 0, err


def test_a_daemon_tells_the_receiver_what_title_to_type(
    openbao: OpenBaoDev,
    vault_prefix: str,
    sandbox: SandboxHandle,
    receivers: Callable[..., Receiver],
) -> None:
    """A manual-mode account falls due: the receiver gets ``key.registration_required`` with
    the title and public line the daemon logged, a Slack ``text`` naming them, no secret;
    and the webhook URL's secret path appears nowhere in the daemon's output."""
    receiver = receivers("ok")
    env = base_env(
        openbao, vault_prefix, sandbox.url,
        ROTATOR_REGISTRAR="manual", ROTATOR_CREDENTIALS="ssh-key",
        ROTATOR_NOTIFY_URL=receiver.url,
    )
    _bootstrap(env, sandbox)
    proc = Proc(["run"], env)
    try:
        assert proc.wait_for(lambda e: e.get("event") == "key.registration_required", 20)
        receiver.wait_for(1, timeout=10)
        assert proc.wait_for(lambda e: e.get("event") == "notify.sent", 10), proc.text()[-2000:]
    finally:
        proc.popen.terminate()
        assert proc.finish() == 0
    proc.assert_all_json()
    logged = next(e for e in proc.events() if e["event"] == "key.registration_required")
    (message,) = [m for m in receiver.messages() if m["event"] == "key.registration_required"]
    assert message["account"] == "alpha" and message["kind"] == "ssh-key"
    assert message["title"] == logged["title"] and message["public_key"] == logged["public_key"]
    assert logged["title"] in message["text"] and logged["public_key"] in message["text"]
    assert receiver.paths[0] == "/services/T0/B0/pathsecret?token=querysecret"
    assert "pathsecret" not in proc.text() and "querysecret" not in proc.text()
    started = next(e for e in proc.events() if e["event"] == "daemon.started")
    assert started["settings"]["notify"] == receiver.base
    assert_no_secrets(b"".join(receiver.bodies).decode(), "messages to the receiver")


class Admin:
    """Plays the Encord admin of a manual-mode account from another organisation member's
    key: adds each key rotator asks for, with the title it says, and deletes each it asks to
    be deleted, as soon as the daemon logs the request."""

    def __init__(self, url: str, key_file: Path, proc: Proc) -> None:
        self.client = EncordClient(url, EncordAuth(keys.load_private(key_file.read_text())))
        self.proc = proc
        self.done: set[tuple[str, str]] = set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(0.05):
            for e in self.proc.events():
                self._act(e)

    def _act(self, e: MutableMapping[str, Any]) -> None:
        what = (str(e.get("event")), str(e.get("key_id")))
        if what in self.done:
            return
        if what[0] == "key.registration_required":
            self.client.upload_key("sa-alpha", e["title"], e["public_key"])
        elif what[0] == "key.revocation_required":
            for k in self.client.list_keys("sa-alpha"):
                if k.key_id == e["key_id"]:
                    self.client.delete_key("sa-alpha", k.key_hash)
        else:
            return
        self.done.add(what)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.client.close()


@pytest.mark.parametrize("answer", ["hang", "500"])
def test_a_receiver_that_hangs_or_fails_does_not_slow_rotations(
    openbao: OpenBaoDev,
    vault_prefix: str,
    make_sandbox: MakeSandbox,
    tmp_path: Path,
    receivers: Callable[..., Receiver],
    answer: str,
) -> None:
    """Manual mode, a key due every 1.5 s, an admin who acts at once, two messages per
    rotation, and a receiver that never answers (or answers 500). Each message may take the
    notifier up to 5 s; rotations must not wait for it: several complete in 12 s (waiting
    would allow at most one), and the daemon logs why the messages failed."""
    folder = tmp_path / "seed"
    folder.mkdir()
    seed = {
        "service_accounts": [
            {"name": "alpha", "hash": "sa-alpha", "bootstrap_key_file": str(folder / "a")},
            {"name": "admin", "hash": "sa-admin", "role": "admin",
             "bootstrap_key_file": str(folder / "admin")},
        ]
    }
    sandbox = make_sandbox(seed=seed)
    receiver = receivers(answer)
    env = base_env(
        openbao, vault_prefix, sandbox.url,
        ROTATOR_REGISTRAR="manual", ROTATOR_CREDENTIALS="ssh-key",
        ROTATOR_NOTIFY_URL=receiver.url,
    )
    _bootstrap(env, sandbox)
    proc = Proc(["run"], env)
    admin = Admin(sandbox.url, folder / "admin", proc)
    try:
        assert proc.wait_for(lambda e: e.get("event") == "daemon.started", 15)
        time.sleep(12)
        rotated = [
            e for e in proc.events()
            if e["event"] == "rotation.finished" and e["outcome"] == "rotated"
        ]
        assert len(rotated) >= 3, proc.text()[-3000:]
        assert receiver.bodies, "the receiver was asked"
        reason = "timeout" if answer == "hang" else "status_500"
        assert proc.wait_for(
            lambda e: e.get("event") == "notify.failed" and e.get("reason") == reason, 10
        ), proc.text()[-3000:]
        stopping = time.monotonic()
        proc.popen.terminate()
        assert proc.finish() == 0
        assert time.monotonic() - stopping < 10, "a stuck receiver holds up shutdown"
    finally:
        admin.close()
        proc.kill()
    proc.assert_all_json()
