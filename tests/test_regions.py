"""Regions: an account names its Encord domain (``name=hash@domain``), and one deployment
serves accounts in two regions, each at its own Encord (two sandboxes), nothing at the other."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rotator.adapters.encord.registry import RegistryFactory
from rotator.adapters.vault import VaultStore
from rotator.core.errors import ConfigError
from rotator.core.vocab import Account
from rotator.dev.openbao import OpenBaoDev
from rotator.runtime.config import from_env, settings_summary
from rotator.runtime.wiring import make_factory
from tests.e2e import CALM_TIMINGS, Proc, base_env, rotator_cli, sdk_authenticates
from tests.fixtures_sandbox import MakeSandbox, SandboxHandle

BASE = {
    "VAULT_ADDR": "https://vault.example.com:8200",
    "VAULT_TOKEN": "hvs.regions-test-token-000000000",
}


def settings(accounts: str, **extra: str) -> Any:
    return from_env({**BASE, "ROTATOR_ACCOUNTS": accounts, **extra})


def problems(accounts: str, **extra: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        settings(accounts, **extra)
    return list(info.value.problems)


# ---------------------------------------------------------------- parsing


def test_an_account_may_name_its_domain_and_the_others_use_encord_domain() -> None:
    """``name=hash@URL`` gives the account that domain (trailing slash dropped, as for
    ENCORD_DOMAIN); an account without one uses ENCORD_DOMAIN."""
    s = settings(
        " ml = HASH@https://api.us.encord.com/ , eu=HASH2",
        ENCORD_DOMAIN="https://api.encord.com",
    )
    assert s.accounts == (
        Account("ml", "HASH", "https://api.us.encord.com"),
        Account("eu", "HASH2"),
    )
    assert [s.domain_of(a) for a in s.accounts] == [
        "https://api.us.encord.com",
        "https://api.encord.com",
    ]
    shown: Any = settings_summary(s)["accounts"]
    assert [a["domain"] for a in shown] == ["https://api.us.encord.com", "https://api.encord.com"]
    factory = make_factory(s)
    assert isinstance(factory, RegistryFactory)
    assert factory.domain_of("HASH") == "https://api.us.encord.com"
    assert factory.domain_of("HASH2") == "https://api.encord.com"


@pytest.mark.parametrize(
    ("accounts", "words"),
    [
        ("ml=HASH@", "the domain after '@' is empty"),
        ("ml=HASH@api.us.encord.com", "is not an Encord domain: expected an http(s) URL"),
        ("ml=HASH@ftp://api.us.encord.com", "expected an http(s) URL"),
        ("ml=HASH@https://api.us.encord.com/?region=us", "must not have a query"),
        ("ml=HASH@https://host:99999", "expected an http(s) URL"),
        ("ok=H1,ml=HASH@https://", "entry 2"),
    ],
)
def test_a_bad_domain_is_one_clear_line(accounts: str, words: str) -> None:
    """A missing or malformed domain is one line naming ROTATOR_ACCOUNTS and the entry."""
    found = problems(accounts)
    assert len(found) == 1, found
    assert found[0].startswith("ROTATOR_ACCOUNTS: entry ") and words in found[0], found
    assert "\n" not in found[0]


def test_a_domain_with_a_password_is_refused_without_echoing_it() -> None:
    """``user:pass@`` in an account's domain is refused, and neither the entry nor the
    password is shown."""
    found = problems("ml=HASH@https://admin:hunter2-secret@api.us.encord.com")
    assert len(found) == 1 and found[0].startswith("ROTATOR_ACCOUNTS: entry 1 (not shown)")
    assert "hunter2" not in found[0] and "admin" not in found[0]


@pytest.mark.parametrize(
    ("domain", "allowed"),
    [
        ("http://127.0.0.1:8080", True),
        ("http://localhost:9000", True),
        ("http://[::1]:9000", True),
        ("https://api.us.encord.com", True),
        ("http://api.us.encord.com", False),
        ("http://10.0.0.8:80", False),
    ],
)
def test_plain_http_domains_follow_the_encord_domain_rule(domain: str, allowed: bool) -> None:
    """An account's plain http:// domain is refused unless loopback or
    ROTATOR_ALLOW_INSECURE_HTTP=true, with one line naming the account."""
    accounts = f"ok=H1,us=H2@{domain}"
    if allowed:
        assert settings(accounts).accounts[1].domain == domain
        return
    found = problems(accounts)
    assert len(found) == 1 and found[0].startswith("ROTATOR_ACCOUNTS: the domain of account")
    assert "'us'" in found[0] and "ROTATOR_ALLOW_INSECURE_HTTP=true" in found[0]
    assert settings(accounts, ROTATOR_ALLOW_INSECURE_HTTP="true").accounts[1].domain == domain


# ---------------------------------------------------------------- two regions, one daemon


def _closed_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def _region(make_sandbox: MakeSandbox, tmp_path: Path, name: str) -> SandboxHandle:
    folder = tmp_path / f"region-{name}"
    folder.mkdir()
    seed = {
        "service_accounts": [
            {"name": name, "hash": f"sa-{name}", "bootstrap_key_file": str(folder / "k")}
        ]
    }
    return make_sandbox(seed=seed)


def _revoked(account: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e.get("event") == "key.revoked" and e.get("account") == account


def _journal(handle: SandboxHandle) -> list[dict[str, Any]]:
    assert handle.journal_path is not None
    if not handle.journal_path.exists():
        return []
    return [json.loads(line) for line in handle.journal_path.read_text().splitlines()]


def test_one_daemon_rotates_each_account_at_its_own_region(
    openbao: OpenBaoDev,
    vault_store: VaultStore,
    vault_prefix: str,
    make_sandbox: MakeSandbox,
    tmp_path: Path,
) -> None:
    """Two sandboxes stand for two regions; ENCORD_DOMAIN points nowhere. A real daemon
    bootstraps and rotates ``us`` at the first and ``eu`` at the second: each new key works
    at its own region and is unknown at the other, and neither sandbox ever saw a request
    signed by the other's keys."""
    us = _region(make_sandbox, tmp_path, "us")
    eu = _region(make_sandbox, tmp_path, "eu")
    env = base_env(
        openbao,
        vault_prefix,
        _closed_url(),
        ROTATOR_ACCOUNTS=f"us=sa-us@{us.url},eu=sa-eu@{eu.url}",
        ROTATOR_CREDENTIALS="ssh-key",
    )
    for handle in (us, eu):
        rc, _, err = rotator_cli(
            ["bootstrap", handle.account, "--private-key-file", str(handle.bootstrap_key_file)],
            env,
        )
        assert rc == 0, err
    proc = Proc(["run"], env)
    try:
        for name in ("us", "eu"):
            assert proc.wait_for(_revoked(name), 30), proc.text()[-3000:]
    finally:
        proc.popen.terminate()
        proc.finish()
    proc.assert_all_json()
    for mine, other in ((us, eu), (eu, us)):
        v = vault_store.read(f"{mine.account}/ssh-key")
        assert v is not None and v.data is not None and v.version > 1
        key = str(v.data["private_key"])
        assert sdk_authenticates(mine.url, key)
        with pytest.raises(Exception, match="(?i)auth|401"):
            sdk_authenticates(other.url, key)
        at_home = {k.key_id for k in mine.sandbox.keys(mine.account)}
        assert v.data["key_id"] in at_home
        journal = _journal(mine)
        assert any(line.get("account") == mine.account for line in journal)
        assert all(line.get("account") in (mine.account, None) for line in journal), journal
    # The probes above were the only strangers each sandbox saw: the daemon sent none.
    for handle in (us, eu):
        failed = [line for line in _journal(handle) if line.get("event") == "auth.failed"]
        assert len(failed) == 1, failed
    # rotator doctor asks each account's own region too (ENCORD_DOMAIN answers nothing).
    rc, out, err = rotator_cli(["doctor", "--json"], env)
    auth = {c["account"]: c["status"] for c in json.loads(out)["checks"]
            if c["check"] == "encord.auth"}
    assert auth == {"us": "ok", "eu": "ok"}, out + err


def test_calm_daemon_reports_each_accounts_domain(
    openbao: OpenBaoDev, vault_prefix: str, make_sandbox: MakeSandbox, tmp_path: Path
) -> None:
    """``daemon.started`` shows the domain each account is served at."""
    us = _region(make_sandbox, tmp_path, "us")
    default = _closed_url()
    env = base_env(
        openbao, vault_prefix, default, ROTATOR_ACCOUNTS=f"us=sa-us@{us.url},eu=sa-eu",
        **CALM_TIMINGS,
    )
    proc = Proc(["run"], env)
    try:
        assert proc.wait_for(lambda e: e.get("event") == "daemon.started", 15), proc.text()
    finally:
        proc.popen.terminate()
        proc.finish()
    started = next(e for e in proc.events() if e["event"] == "daemon.started")
    assert started["settings"]["accounts"] == [
        {"name": "us", "hash": "sa-us", "domain": us.url},
        {"name": "eu", "hash": "sa-eu", "domain": default},
    ]
