"""``rotator doctor``, and the two diagnoses the daemon shares with it (issue: real Encord,
point 2): an Encord without key management, and a host whose clock is off Encord's.

Against the session's real OpenBao and the sandbox: a healthy setup under the shipped policy
(every line ok, exit 0, nothing written anywhere), a refused token, the shipped policy minus a
grant, a mount keeping one version, an Encord answering 404/405 to the key list, and a
sandbox whose clock runs 400 s behind (its ``Date`` header follows its clock). The daemon's
side runs real engines through the check runner, and once as a real process.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from rotator.adapters.encord.answers import error_for
from rotator.adapters.encord.client import EncordClient
from rotator.adapters.encord.registry import RegistryFactory
from rotator.core.errors import AccessDenied, ClockSkew, KeyManagementUnavailable
from rotator.dev.openbao import OpenBaoDev
from rotator.dev.sandbox.faults import Faults
from rotator.runtime.checks import CheckRunner
from rotator.runtime.config import Settings, from_env
from rotator.runtime.doctor import Finding, diagnose
from rotator.runtime.health import AccountHealth
from rotator.runtime.wiring import make_engines, make_factory, make_metrics, open_store
from tests.e2e import CALM_TIMINGS, Proc, base_env, rotator_cli
from tests.fixtures_sandbox import MakeSandbox, SandboxHandle
from tests.secret_scan import assert_no_secrets

POLICY = Path(__file__).resolve().parent.parent / "deploy" / "vault" / "rotator-policy.hcl"


def shipped_policy(prefix: str, *, without: str | None = None) -> str:
    """deploy/vault/rotator-policy.hcl for ``prefix``, perhaps minus the block of one path."""
    text = POLICY.read_text()
    if without is not None:
        block = re.compile(rf'(?ms)^path "{re.escape(without)}" \{{.*?^\}}\n')
        assert block.search(text), without
        text = block.sub("", text)
    return re.sub(r'(?m)^path "secret/(data|destroy)/encord/', rf'path "secret/\1/{prefix}/', text)


@pytest.fixture
def policy_token(vault_client: Any, vault_prefix: str) -> Iterator[Callable[..., str]]:
    """``policy_token(without=None, ttl="48h")``: a token holding only the shipped policy
    (not even ``default``), perhaps minus one path's grant."""
    made: list[tuple[str, str]] = []

    def make(*, without: str | None = None, ttl: str = "48h") -> str:
        name = f"doctor-{uuid.uuid4().hex[:8]}"
        vault_client.sys.create_or_update_policy(
            name=name, policy=shipped_policy(vault_prefix, without=without)
        )
        token = vault_client.auth.token.create(
            policies=[name], no_default_policy=True, ttl=ttl, renewable=True
        )["auth"]["client_token"]
        made.append((token, name))
        return str(token)

    yield make
    for token, name in made:
        vault_client.auth.token.revoke(token)
        vault_client.sys.delete_policy(name=name)


class Clock:
    """The sandbox's clock: the real one, ``offset`` seconds off."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def box(make_sandbox: MakeSandbox, clock: Clock) -> SandboxHandle:
    """A sandbox whose clock the test may set off the host's."""
    return make_sandbox(clock=clock)


def env_for(openbao: OpenBaoDev, prefix: str, box: SandboxHandle, **extra: str) -> dict[str, str]:
    return base_env(openbao, prefix, box.url, **{**CALM_TIMINGS, **extra})


def bootstrap(env: dict[str, str], box: SandboxHandle) -> None:
    code, _, err = rotator_cli(
        ["bootstrap", "alpha", "--private-key-file", str(box.bootstrap_key_file)], env
    )
    assert code == 0, err[-2000:]


def by_check(findings: list[Finding]) -> dict[str, Finding]:
    return {f.check: f for f in findings}


def vault_snapshot(vault_client: Any, prefix: str) -> dict[str, Any]:
    """Every path under ``prefix`` with its metadata (versions, times): what a write changes."""
    out: dict[str, Any] = {}
    todo = [prefix]
    while todo:
        folder = todo.pop()
        listed = vault_client.secrets.kv.v2.list_secrets(folder, mount_point="secret")
        for key in listed["data"]["keys"]:
            path = f"{folder}/{key.rstrip('/')}"
            if key.endswith("/"):
                todo.append(path)
            else:
                meta = vault_client.secrets.kv.v2.read_secret_metadata(path, mount_point="secret")
                out[path] = meta["data"]
    return out


# --- a healthy setup ---------------------------------------------------------------------


def test_a_healthy_setup_is_all_ok_and_doctor_writes_nothing(
    openbao: OpenBaoDev,
    vault_client: Any,
    vault_prefix: str,
    box: SandboxHandle,
    policy_token: Callable[..., str],
) -> None:
    """Under the shipped policy alone, with a bootstrapped account: every line ok, exit 0,
    the JSON document says the same; Vault's versions and metadata are unchanged and the
    sandbox journal shows no key added or deleted; no secret in the output."""
    env = env_for(openbao, vault_prefix, box, VAULT_TOKEN=policy_token())
    bootstrap(env, box)
    before = vault_snapshot(vault_client, vault_prefix)
    assert box.journal_path is not None
    journal = box.journal_path.read_text()
    code, out, err = rotator_cli(["doctor"], env)
    assert code == 0, out + err[-2000:]
    lines = out.splitlines()
    checks = [line for line in lines[:-1] if not line.startswith(" ")]
    assert checks and all(line.startswith("ok ") for line in checks), out
    for name in ("vault.reachable", "vault.token", "vault.mount", "vault.mount_settings",
                 "vault.capabilities", "account.key[alpha]", "encord.auth[alpha]",
                 "encord.key_management[alpha]", "encord.clock[alpha]"):  # fmt: skip
        assert sum(name == line.split()[1] for line in checks) == 1, (name, out)
    assert lines[-1] == f"{len(checks)} ok, 0 warn, 0 fail"
    code, out_json, err_json = rotator_cli(["doctor", "--json"], env)
    assert code == 0, err_json[-2000:]
    doc = json.loads(out_json)
    assert doc["event"] == "doctor" and doc["ok"] is True
    assert doc["counts"] == {"ok": len(checks), "warn": 0, "fail": 0}
    assert {c["status"] for c in doc["checks"]} == {"ok"}
    assert all(set(c) <= {"check", "status", "account", "detail", "hint"} for c in doc["checks"])
    assert [c.get("account") for c in doc["checks"]][-4:] == ["alpha"] * 4
    assert vault_snapshot(vault_client, vault_prefix) == before, "doctor wrote to Vault"
    assert box.journal_path.read_text() == journal, "doctor changed something at Encord"
    private_key = box.bootstrap_key_file.read_text()
    for text in (out, err, out_json, err_json):
        assert env["VAULT_TOKEN"] not in text and private_key.strip() not in text
        assert_no_secrets(text, "doctor output")


# --- Vault: token, capabilities, mount -----------------------------------------------------


def test_a_refused_token_fails_vault_token_and_stops_there(
    openbao: OpenBaoDev, vault_prefix: str, box: SandboxHandle
) -> None:
    """A token Vault does not know: Vault answers (ok), the token fails naming VAULT_TOKEN,
    no later check runs; exit 1."""
    env = env_for(openbao, vault_prefix, box, VAULT_TOKEN="hvs.not-a-real-token-at-all")
    code, out, err = rotator_cli(["doctor", "--json"], env)
    assert code == 1, err[-2000:]
    checks = json.loads(out)["checks"]
    assert [(c["check"], c["status"]) for c in checks] == [
        ("vault.reachable", "ok"),
        ("vault.token", "fail"),
    ]
    assert "VAULT_TOKEN" in checks[1]["hint"]
    assert "not-a-real-token" not in out + err


def test_a_short_fixed_token_warns(
    openbao: OpenBaoDev, vault_prefix: str, box: SandboxHandle, policy_token: Callable[..., str]
) -> None:
    """A fixed token with ten minutes left: a warning saying rotator stops when it runs out
    (exit 0: warnings allowed)."""
    env = env_for(openbao, vault_prefix, box, VAULT_TOKEN=policy_token(ttl="10m"))
    found = by_check(diagnose(from_env(env)))
    token = found["vault.token"]
    assert token.status == "warn" and "expires in" in token.detail, token
    assert token.hint is not None and "-period" in token.hint


@pytest.mark.parametrize(
    ("without", "status", "words"),
    [
        ("secret/destroy/encord/*", "fail", "missing update on secret/destroy/"),
        ("secret/data/encord/*", "fail", "missing create, read, update on secret/data/"),
        ("secret/config", "warn", "cannot read secret/config"),
        ("sys/capabilities-self", "warn", "may not ask sys/capabilities-self"),
    ],
    ids=["no-destroy", "no-data", "no-config", "no-capabilities-self"],
)
def test_the_shipped_policy_minus_a_grant_is_named(
    openbao: OpenBaoDev,
    vault_prefix: str,
    box: SandboxHandle,
    policy_token: Callable[..., str],
    without: str,
    status: str,
    words: str,
) -> None:
    """Take one grant out of the shipped policy: doctor names what is missing, where, and
    whether rotator can work without it."""
    env = env_for(openbao, vault_prefix, box, VAULT_TOKEN=policy_token(without=without))
    findings = diagnose(from_env(env))
    hits = [f for f in findings if words in f.detail]
    assert hits and {f.status for f in hits} == {status}, findings
    if without == "secret/config":
        assert any(f.detail.startswith("missing read on secret/config") for f in findings)
    vault_fails = [f for f in findings if f.check.startswith("vault.") and f.status == "fail"]
    assert bool(vault_fails) == (status == "fail"), findings


@pytest.fixture
def kv_mount(vault_client: Any) -> Iterator[Callable[..., str]]:
    """``kv_mount(**config)``: a fresh KV v2 mount with those settings (removed after)."""
    made: list[str] = []

    def make(**config: Any) -> str:
        path = f"kv-{uuid.uuid4().hex[:8]}"
        vault_client.sys.enable_secrets_engine("kv", path=path, options={"version": "2"})
        vault_client.secrets.kv.v2.configure(mount_point=path, **config)
        made.append(path)
        return path

    yield make
    for path in made:
        vault_client.sys.disable_secrets_engine(path=path)


def test_a_mount_keeping_one_version_fails_mount_settings(
    openbao: OpenBaoDev, kv_mount: Callable[..., str], box: SandboxHandle
) -> None:
    """A real mount with max_versions=1: the start-up check's own line, as a fail; exit 1.
    cas_required alone is fine."""
    env = base_env(openbao, "encord", box.url, ROTATOR_VAULT_MOUNT=kv_mount(max_versions=1))
    code, out, err = rotator_cli(["doctor"], {**env, **CALM_TIMINGS})
    assert code == 1, err[-2000:]
    line = next(line for line in out.splitlines() if "vault.mount_settings" in line)
    assert line.startswith("fail ") and "max_versions=1" in line, out
    env["ROTATOR_VAULT_MOUNT"] = kv_mount(cas_required=True)
    found = by_check(diagnose(from_env({**env, **CALM_TIMINGS})))
    assert found["vault.mount_settings"].status == "ok"
    assert "cas_required=true" in found["vault.mount_settings"].detail


def test_a_mount_that_is_not_kv2_fails_vault_mount(
    openbao: OpenBaoDev, vault_prefix: str, box: SandboxHandle
) -> None:
    """ROTATOR_VAULT_MOUNT naming no mount: vault.mount fails naming the variable."""
    env = env_for(openbao, vault_prefix, box, ROTATOR_VAULT_MOUNT="no-such-mount")
    found = by_check(diagnose(from_env(env)))
    assert found["vault.mount"].status == "fail"
    assert "ROTATOR_VAULT_MOUNT" in found["vault.mount"].detail
    assert "account.key" not in found


# --- Encord: key management ----------------------------------------------------------------


@pytest.mark.parametrize("status", [404, 405])
def test_an_encord_without_key_management_says_use_the_manual_registrar(
    openbao: OpenBaoDev, vault_prefix: str, box: SandboxHandle, status: int
) -> None:
    """The key list answered 404 or 405: key management fails with the hint
    ROTATOR_REGISTRAR=manual, the key itself still authenticates; in manual mode the same
    Encord is fine."""
    env = env_for(openbao, vault_prefix, box)
    bootstrap(env, box)
    box.sandbox.faults = Faults(key_management_status=status)
    found = by_check(diagnose(from_env(env)))
    km = found["encord.key_management"]
    assert km.status == "fail" and f"answered {status}" in km.detail, km
    assert km.hint is not None and "ROTATOR_REGISTRAR=manual" in km.hint
    assert found["encord.auth"].status == "ok"
    manual = by_check(diagnose(from_env({**env, "ROTATOR_REGISTRAR": "manual"})))
    assert manual["encord.key_management"].status == "ok"


def test_a_key_list_404_or_405_is_key_management_unavailable() -> None:
    """The client maps 404/405 on the key list's first page to KeyManagementUnavailable
    (a NotFound), with the status."""
    for status in (404, 405):
        client = EncordClient(
            "https://encord.test",
            transport=httpx.MockTransport(lambda r, s=status: httpx.Response(s)),
        )
        with client, pytest.raises(KeyManagementUnavailable) as info:
            client.list_keys("sa-alpha")
        assert info.value.status == status and f"HTTP {status}" in str(info.value)


class Always:
    """A lease that is always held (one replica)."""

    def acquire(self) -> bool:
        return True


@contextlib.contextmanager
def runner_for(settings: Settings) -> Iterator[tuple[CheckRunner, dict[str, AccountHealth]]]:
    """The daemon's check runner over real engines (real Vault, real sandbox)."""
    store = open_store(settings)
    factory = make_factory(settings)
    assert isinstance(factory, RegistryFactory)
    health = {a.name: AccountHealth() for a in settings.accounts}
    runner = CheckRunner(
        engines=make_engines(settings, store, factory),
        leases={a.name: Always() for a in settings.accounts},
        health=health,
        metrics=make_metrics(settings),
        stopping=threading.Event(),
        dry_run=False,
        interval=timedelta(0),  # no back-off between the test's checks
        on_result=lambda name, result: None,
    )
    try:
        yield runner, health
    finally:
        factory.close()
        assert store.session is not None
        store.session.close()


def test_the_daemon_says_key_management_is_unavailable_once(
    openbao: OpenBaoDev, vault_prefix: str, box: SandboxHandle
) -> None:
    """Checks against an Encord answering 404 to the key list: one
    encord.key_management_unavailable (hint ROTATOR_REGISTRAR=manual), then check.failed at
    debug level only; the account is not ready. Once a check succeeds and the 404 comes
    back, it is said once more."""
    env = env_for(openbao, vault_prefix, box)
    bootstrap(env, box)
    with runner_for(from_env(env)) as (runner, health):
        box.sandbox.faults = Faults(key_management_status=404)
        with capture_logs() as events:
            for _ in range(4):
                runner.run("alpha")
        ready, failures = health["alpha"].ready, health["alpha"].failures
        box.sandbox.faults = Faults()
        assert runner.run("alpha") is not None
        box.sandbox.faults = Faults(key_management_status=405)
        with capture_logs() as again:
            runner.run("alpha")
    hints = [e for e in events if e["event"] == "encord.key_management_unavailable"]
    assert len(hints) == 1 and hints[0]["hint"] == "ROTATOR_REGISTRAR=manual", events
    assert hints[0]["status"] == 404 and hints[0]["log_level"] == "error"
    failed = [e for e in events if e["event"] == "check.failed"]
    assert len(failed) == 4 and {e["log_level"] for e in failed} == {"debug"}
    assert ready is False and failures == 4
    assert health["alpha"].failures == 1  # the good check in between cleared them
    said = [e["status"] for e in again if e["event"] == "encord.key_management_unavailable"]
    assert said == [405]


# --- clock skew ----------------------------------------------------------------------------


def test_a_401_is_put_down_to_the_clock_only_when_encords_date_is_far_off() -> None:
    """error_for: a 401 whose Date header is 400 s off is ClockSkew with that offset; 30 s
    off, or without a Date header, it is a plain AccessDenied (the key)."""

    def answer(shift: float | None) -> httpx.Response:
        headers = {}
        if shift is not None:
            when = datetime.fromtimestamp(time.time() + shift, UTC)
            headers["Date"] = format_datetime(when, usegmt=True)
        return httpx.Response(401, headers=headers, json={"message": "no"})

    skewed = error_for("list_keys", answer(-400))
    assert isinstance(skewed, ClockSkew) and skewed.status == 401
    assert -402 <= skewed.offset <= -398 and "400 s behind" in str(skewed)
    for shift in (30.0, None):
        plain = error_for("list_keys", answer(shift))
        assert type(plain) is AccessDenied and plain.status == 401


def test_the_sandbox_dates_its_answers_by_its_own_clock(
    box: SandboxHandle, clock: Clock
) -> None:
    """The Date header follows the sandbox's clock, as Encord's follows Encord's."""
    clock.offset = -400
    with EncordClient(box.url) as client, pytest.raises(AccessDenied):
        client.whoami()  # unsigned: 401, dated
    assert client.clock_offset is not None and -402 <= client.clock_offset <= -398


@pytest.mark.parametrize("registrar", ["api", "manual"])
def test_the_daemon_blames_the_clock_not_the_key(
    openbao: OpenBaoDev,
    vault_client: Any,
    vault_prefix: str,
    box: SandboxHandle,
    clock: Clock,
    registrar: str,
) -> None:
    """With Encord's clock 400 s behind, every signature is refused: the check logs
    clock.skew_detected with the offset instead of check.failed, in both modes (the manual
    registrar does not take the 401 for a key gone), and the key stays current."""
    env = env_for(openbao, vault_prefix, box, ROTATOR_REGISTRAR=registrar)
    bootstrap(env, box)

    def current() -> tuple[str, str]:
        state = vault_client.secrets.kv.v2.read_secret_version(
            f"{vault_prefix}/alpha/state", mount_point="secret", raise_on_deleted_version=True
        )["data"]["data"]
        newest = vault_client.secrets.kv.v2.read_secret_version(
            f"{vault_prefix}/alpha/ssh-key", mount_point="secret", raise_on_deleted_version=True
        )["data"]["data"]
        return json.dumps(state, sort_keys=True), str(newest["key_id"])

    before = current()
    with runner_for(from_env(env)) as (runner, health):
        clock.offset = -400
        with capture_logs() as events:
            runner.run("alpha")
            runner.run("alpha")
        failures = health["alpha"].failures
        clock.offset = 0
        with capture_logs() as after:
            result = runner.run("alpha")
    skew = [e for e in events if e["event"] == "clock.skew_detected"]
    assert len(skew) == 2 and all(-402 <= e["offset_s"] <= -398 for e in skew), events
    assert "check.failed" not in {e["event"] for e in events}
    assert failures == 2
    assert result is not None and "clock.skew_detected" not in {e["event"] for e in after}
    assert current()[1] == before[1]  # consumers hold the same key
    assert before[1] in [k.key_id for k in box.sandbox.keys("alpha")]  # still at Encord


def test_doctor_and_the_daemon_as_processes_report_a_clock_400_s_off(
    openbao: OpenBaoDev, vault_prefix: str, box: SandboxHandle, clock: Clock
) -> None:
    """Real processes against a sandbox 400 s behind: doctor fails encord.clock and
    encord.auth with the offset (exit 1); `rotator run` logs clock.skew_detected, never
    check.failed. 120 s off, doctor only warns (signatures still pass)."""
    env = env_for(openbao, vault_prefix, box, ROTATOR_CHECK_INTERVAL="300ms")
    bootstrap(env, box)
    clock.offset = -400
    code, out, err = rotator_cli(["doctor", "--json"], env)
    assert code == 1, err[-2000:]
    found = {c["check"]: c for c in json.loads(out)["checks"]}
    assert found["encord.clock"]["status"] == "fail"
    assert "400 s ahead of Encord's" in found["encord.clock"]["detail"]
    assert found["encord.auth"]["status"] == "fail" and "clock" in found["encord.auth"]["hint"]
    proc = Proc(["run"], env)
    try:
        assert proc.wait_for(lambda e: e.get("event") == "clock.skew_detected", 20), proc.text()
    finally:
        proc.popen.terminate()
        proc.finish()
    events = proc.events()
    skew = next(e for e in events if e.get("event") == "clock.skew_detected")
    assert -402 <= skew["offset_s"] <= -398
    assert "check.failed" not in {e.get("event") for e in events}
    proc.assert_all_json()
    clock.offset = -120
    code, out, err = rotator_cli(["doctor", "--json"], env)
    assert code == 0, out + err[-2000:]
    found = {c["check"]: c for c in json.loads(out)["checks"]}
    assert found["encord.clock"]["status"] == "warn" and found["encord.auth"]["status"] == "ok"
