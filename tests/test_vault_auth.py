"""Vault authentication: settings, login, renewal and login again (ROTATOR_VAULT_AUTH).

AppRole, token renewal, max TTL, revocation and token files run against the session's real
OpenBao. Kubernetes login is NOT exercised against a real Kubernetes: OpenBao's kubernetes
auth method must call a Kubernetes API server to review the service-account JWT, and the
test environment has none. Those tests check the settings and that the session posts the
role and the JWT it read from VAULT_K8S_JWT_FILE to ``auth/<mount>/login`` of a small local
HTTP server standing in for Vault.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

import pytest
from structlog.testing import capture_logs

from rotator.adapters.vault import (
    K8S_JWT_FILE,
    AppRoleLogin,
    KubernetesLogin,
    TokenLogin,
    VaultSession,
    VaultSettings,
    VaultStore,
)
from rotator.core.errors import AccessDenied, ConfigError
from rotator.core.keys import KeyPair
from rotator.core.ports import Registry
from rotator.core.vocab import Account
from rotator.dev.openbao import OpenBaoDev
from rotator.runtime.config import Settings, from_env, settings_summary
from rotator.runtime.daemon import Daemon
from rotator.runtime.wiring import open_store, wait_for_vault
from tests.e2e import Proc, base_env
from tests.fixtures_sandbox import SandboxHandle
from tests.secret_scan import remember

ROLE_ID = "0b7a4c1e-5d2f-4e8a-9c3b-role-id-for-tests"
SECRET_ID = "9f1e2d3c-4b5a-6978-8a9b-SECRET-ID-for-tests"
TOKEN = "hvs.CAESIJlU2sFakeVaultTokenForTests0123"

BASE = {"VAULT_ADDR": "https://vault.example.com:8200", "ROTATOR_ACCOUNTS": "ml=sa-hash-1"}


def problems_of(environ: dict[str, str]) -> list[str]:
    """The problems from_env reports for ``environ`` (fails if it reports none)."""
    with pytest.raises(ConfigError) as info:
        from_env(environ)
    return info.value.problems


def approle_env(**extra: str) -> dict[str, str]:
    return {
        **BASE,
        "ROTATOR_VAULT_AUTH": "approle",
        "VAULT_ROLE_ID": ROLE_ID,
        "VAULT_SECRET_ID": SECRET_ID,
        **extra,
    }


# ==================================================================== settings


def test_token_auth_is_the_default_and_unchanged() -> None:
    """Without ROTATOR_VAULT_AUTH, VAULT_TOKEN is used as before and auth is plain token auth."""
    s = from_env({**BASE, "VAULT_TOKEN": TOKEN})
    assert s.vault.token == TOKEN
    assert s.vault.auth == TokenLogin()
    assert isinstance(s.vault.auth, TokenLogin)
    assert s.vault.auth.method == "token" and s.vault.auth.token_file is None
    assert VaultSettings(addr="http://v:8200", token=TOKEN).auth == TokenLogin()


def test_token_file_is_remembered_for_relogin(tmp_path: Path) -> None:
    """With VAULT_TOKEN_FILE the file's path is kept, so a re-login can read it again."""
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    s = from_env({**BASE, "ROTATOR_VAULT_AUTH": "token", "VAULT_TOKEN_FILE": str(path)})
    assert s.vault.token == TOKEN
    assert isinstance(s.vault.auth, TokenLogin)
    assert s.vault.auth.token_file == str(path)
    assert s.vault.auth.variables == "VAULT_TOKEN_FILE"


def test_approle_settings_parsed() -> None:
    """ROTATOR_VAULT_AUTH=approle takes VAULT_ROLE_ID, VAULT_SECRET_ID and VAULT_APPROLE_MOUNT."""
    s = from_env(approle_env(VAULT_APPROLE_MOUNT="/team/approle/", ROTATOR_VAULT_AUTH="AppRole"))
    auth = s.vault.auth
    assert isinstance(auth, AppRoleLogin)
    assert (auth.method, auth.role_id, auth.secret_id) == ("approle", ROLE_ID, SECRET_ID)
    assert auth.secret_id_file is None
    assert auth.mount_point == "team/approle"
    assert s.vault.token == ""
    assert from_env(approle_env()).vault.auth.mount_point == "approle"


def test_approle_secret_id_from_file(tmp_path: Path) -> None:
    """VAULT_SECRET_ID_FILE stands in for VAULT_SECRET_ID; its content is stripped."""
    path = tmp_path / "secret-id"
    path.write_text(f"\n{SECRET_ID}\n")
    environ = approle_env(VAULT_SECRET_ID_FILE=str(path))
    del environ["VAULT_SECRET_ID"]
    auth = from_env(environ).vault.auth
    assert isinstance(auth, AppRoleLogin)
    assert (auth.secret_id, auth.secret_id_file) == (SECRET_ID, str(path))
    assert auth.variables == "VAULT_ROLE_ID and VAULT_SECRET_ID_FILE"


def test_approle_missing_everything_lists_every_problem() -> None:
    """approle without role or secret ID names both (and any other bad variable) at once."""
    problems = problems_of(
        {**BASE, "ROTATOR_VAULT_AUTH": "approle", "ROTATOR_KEY_TTL": "soon"}
    )
    assert sorted(p.split(":")[0] for p in problems) == [
        "ROTATOR_KEY_TTL",
        "VAULT_ROLE_ID",
        "VAULT_SECRET_ID",
    ]
    assert all("\n" not in p for p in problems)


@pytest.mark.parametrize(
    ("extra", "drop", "name"),
    [
        ({"VAULT_SECRET_ID_FILE": "/nonexistent/secret-id"}, "VAULT_SECRET_ID", None),
        ({"VAULT_SECRET_ID_FILE": "x"}, None, "VAULT_SECRET_ID"),
        ({"VAULT_TOKEN": TOKEN}, None, "VAULT_TOKEN"),
        ({"VAULT_APPROLE_MOUNT": "a//b"}, None, "VAULT_APPROLE_MOUNT"),
        ({"VAULT_SECRET_ID": "two words"}, None, "VAULT_SECRET_ID"),
        ({"VAULT_ROLE_ID": "role id"}, None, "VAULT_ROLE_ID"),
        ({"ROTATOR_VAULT_AUTH": "ldap"}, None, "ROTATOR_VAULT_AUTH"),
    ],
)
def test_each_bad_auth_setting_gives_one_problem(
    extra: dict[str, str], drop: str | None, name: str | None
) -> None:
    """One bad auth variable yields one problem line naming it, never echoing a credential."""
    environ = approle_env(**extra)
    if drop:
        del environ[drop]
    problems = problems_of(environ)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{name or 'VAULT_SECRET_ID_FILE'}: ")
    for secret in (SECRET_ID, ROLE_ID, TOKEN, "two words"):
        assert secret not in problems[0]


def test_credentials_pasted_elsewhere_are_not_echoed() -> None:
    """A secret or role ID pasted into another variable is not repeated in its problem."""
    problems = problems_of(approle_env(ROTATOR_KEY_TTL=SECRET_ID, ROTATOR_GRACE=ROLE_ID))
    assert len(problems) == 2
    assert all(SECRET_ID not in p and ROLE_ID not in p for p in problems)
    assert SECRET_ID[:20] not in " ".join(problems)


def test_credentials_never_in_repr_or_summary() -> None:
    """Neither repr nor settings_summary shows the role ID, the secret ID or a token."""
    s = from_env(approle_env())
    for text in (repr(s), str(s), repr(s.vault), repr(s.vault.auth),
                 json.dumps(settings_summary(s))):
        assert SECRET_ID not in text and ROLE_ID not in text
    assert settings_summary(s)["vault_auth"] == {
        "method": "approle", "mount": "approle", "secret_id_from_file": False,
    }
    assert set(s.vault.secret_values) == {SECRET_ID, ROLE_ID}


def test_token_auth_hints_at_approle_when_role_id_is_set() -> None:
    """Role and secret IDs without ROTATOR_VAULT_AUTH: the VAULT_TOKEN problem says what to set."""
    environ = approle_env()
    del environ["ROTATOR_VAULT_AUTH"]
    (problem,) = problems_of(environ)
    assert problem.startswith("VAULT_TOKEN: required")
    assert "ROTATOR_VAULT_AUTH=approle" in problem


def test_kubernetes_settings_parsed(tmp_path: Path) -> None:
    """kubernetes takes VAULT_K8S_ROLE, VAULT_K8S_JWT_FILE (not read yet) and VAULT_K8S_MOUNT."""
    missing = str(tmp_path / "not-yet-there")
    s = from_env(
        {
            **BASE,
            "ROTATOR_VAULT_AUTH": "kubernetes",
            "VAULT_K8S_ROLE": "rotator",
            "VAULT_K8S_JWT_FILE": missing,
            "VAULT_K8S_MOUNT": "k8s-prod",
        }
    )
    auth = s.vault.auth
    assert isinstance(auth, KubernetesLogin)
    assert (auth.method, auth.k8s_role, auth.jwt_file, auth.mount_point) == (
        "kubernetes", "rotator", missing, "k8s-prod",
    )
    default = from_env({**BASE, "ROTATOR_VAULT_AUTH": "kubernetes", "VAULT_K8S_ROLE": "r"})
    assert isinstance(default.vault.auth, KubernetesLogin)
    assert default.vault.auth.jwt_file == K8S_JWT_FILE
    assert default.vault.auth.mount_point == "kubernetes"
    assert settings_summary(default)["vault_auth"] == {
        "method": "kubernetes", "mount": "kubernetes", "role": "r", "jwt_file": K8S_JWT_FILE,
    }


def test_kubernetes_problems() -> None:
    """kubernetes without a role, with a bad role or a bad mount: one line per variable."""
    problems = problems_of({**BASE, "ROTATOR_VAULT_AUTH": "kubernetes", "VAULT_TOKEN": TOKEN})
    assert sorted(p.split(":")[0] for p in problems) == ["VAULT_K8S_ROLE", "VAULT_TOKEN"]
    problems = problems_of(
        {**BASE, "ROTATOR_VAULT_AUTH": "kubernetes", "VAULT_K8S_ROLE": "a/b",
         "VAULT_K8S_MOUNT": "../k8s"}
    )
    assert sorted(p.split(":")[0] for p in problems) == ["VAULT_K8S_MOUNT", "VAULT_K8S_ROLE"]


def test_vault_auth_built_in_code_is_validated() -> None:
    """A login built directly refuses a method without its credential, naming variables."""
    with pytest.raises(ConfigError) as info:
        AppRoleLogin(role_id=ROLE_ID)
    assert info.value.problems == [
        "VAULT_SECRET_ID: required with ROTATOR_VAULT_AUTH=approle (or VAULT_SECRET_ID_FILE)"
    ]
    with pytest.raises(ConfigError, match="VAULT_K8S_ROLE"):
        KubernetesLogin()


# ==================================================================== AppRole on OpenBao


@dataclass(frozen=True)
class AppRole:
    mount: str
    role_id: str
    secret_id: str
    policy: str


class MakeAppRole(Protocol):
    def __call__(self, **role: Any) -> AppRole: ...


class Clock:
    """time.monotonic plus an offset a test can move forward (Vault's clock stays real)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


@pytest.fixture
def make_approle(vault_client: Any, vault_prefix: str) -> Iterator[MakeAppRole]:
    """Enable AppRole on a mount of its own, with a role whose policy grants the prefix."""
    made: list[AppRole] = []

    def make(**role: Any) -> AppRole:
        name = f"ar-{uuid.uuid4().hex[:8]}"
        vault_client.sys.enable_auth_method("approle", path=name)
        vault_client.sys.create_or_update_policy(
            name=name,
            policy=(
                f'path "secret/+/{vault_prefix}*" '
                '{ capabilities = ["create", "read", "update", "delete", "list"] }'
            ),
        )
        vault_client.auth.approle.create_or_update_approle(
            "rotator", token_policies=[name], mount_point=name, **role
        )
        role_id = vault_client.auth.approle.read_role_id("rotator", mount_point=name)
        secret = vault_client.auth.approle.generate_secret_id("rotator", mount_point=name)
        made.append(
            AppRole(name, role_id["data"]["role_id"], secret["data"]["secret_id"], name)
        )
        remember(made[-1].secret_id)
        return made[-1]

    yield make
    for approle in made:
        vault_client.sys.disable_auth_method(approle.mount)  # revokes its tokens too
        vault_client.sys.delete_policy(approle.policy)


def approle_settings(openbao: OpenBaoDev, prefix: str, role: AppRole, **auth: Any) -> VaultSettings:
    fields: dict[str, Any] = {
        "role_id": role.role_id,
        "secret_id": role.secret_id,
        "mount": role.mount,
        **auth,
    }
    return VaultSettings(
        addr=openbao.addr,
        prefix=prefix,
        timeout=timedelta(seconds=5),
        auth=AppRoleLogin(**fields),
    )


def session_for(
    openbao: OpenBaoDev, prefix: str, role: AppRole, clock: Clock | None = None, **auth: Any
) -> tuple[VaultSession, VaultStore]:
    session = VaultSession(approle_settings(openbao, prefix, role, **auth), clock=clock or Clock())
    return session, session.store(mount="secret", prefix=prefix)


def event_names(events: Sequence[Mapping[str, Any]]) -> list[str]:
    return [str(e["event"]) for e in events]


def accessor_ttl(vault_client: Any, accessor: str) -> int:
    ttl = vault_client.auth.token.lookup_accessor(accessor)["data"]["ttl"]
    assert isinstance(ttl, int)
    return ttl


def test_approle_login_then_the_store_works(
    openbao: OpenBaoDev, vault_prefix: str, make_approle: MakeAppRole
) -> None:
    """An AppRole session logs in on first use and its store passes check(), writes and reads."""
    role = make_approle(token_ttl="1m", token_max_ttl="5m")
    session, store = session_for(openbao, vault_prefix, role)
    assert session.token_info is None
    with capture_logs() as events:
        store.check()
        version = store.write("ml/ssh-key", {"x": "1"}, cas=0)
        got = store.read("ml/ssh-key")
    info = session.token_info
    assert info is not None and info.renewable and 55 <= info.ttl <= 60
    assert role.policy in info.policies
    assert got is not None and got.data == {"x": "1"} and got.version == version
    logged_in = [e for e in events if e["event"] == "vault.logged_in"]
    assert len(logged_in) == 1 and logged_in[0]["method"] == "approle"
    assert logged_in[0]["renewable"] is True and role.policy in logged_in[0]["policies"]
    token = session.client.token
    text = repr(events) + repr(session) + repr(store)
    assert token not in text and role.secret_id not in text and role.role_id not in text
    session.close()


def test_renewal_before_the_ttl_runs_out_keeps_the_same_token(
    openbao: OpenBaoDev, vault_prefix: str, make_approle: MakeAppRole, vault_client: Any
) -> None:
    """With less than a third of its TTL left the token is renewed: same accessor, TTL reset."""
    role = make_approle(token_ttl="6s", token_max_ttl="1m")
    clock = Clock()
    session, store = session_for(openbao, vault_prefix, role, clock)
    session.login()
    info = session.token_info
    assert info is not None
    assert session.maintain() == "idle"  # plenty left: nothing to do
    time.sleep(1.2)
    before = accessor_ttl(vault_client, info.accessor)
    assert before <= 5
    clock.offset = 3.5  # the session now believes less than 2 s (a third of 6 s) is left
    with capture_logs() as events:
        assert session.maintain() == "renewed"
    renewed = session.token_info
    assert renewed is not None and renewed.accessor == info.accessor
    assert accessor_ttl(vault_client, info.accessor) >= 5  # reset to the role's 6 s
    assert event_names(events) == ["vault.token_renewed"]
    assert store.read("nothing-here") is None
    session.close()


def test_near_max_ttl_the_session_logs_in_again(
    openbao: OpenBaoDev, vault_prefix: str, make_approle: MakeAppRole
) -> None:
    """A renewal capped by the max TTL buys too little: the session logs in for a new token."""
    role = make_approle(token_ttl="3s", token_max_ttl="3s")
    session, store = session_for(openbao, vault_prefix, role)
    first = session.login()
    time.sleep(2.2)  # under a third of 3 s left, and the max TTL caps any renewal
    with capture_logs() as events:
        outcome = session.maintain()
    assert outcome == "relogged", events
    relogin = [e for e in events if e["event"] == "vault.relogin"]
    assert len(relogin) == 1 and relogin[0]["reason"] == "max_ttl"
    second = session.token_info
    assert second is not None and second.accessor != first.accessor
    time.sleep(1.0)  # the first token has expired by now; the new one works
    store.write("k", {"v": "after-relogin"}, cas=0)
    got = store.read("k")
    assert got is not None and got.data == {"v": "after-relogin"}
    session.close()


def test_revoked_token_renewal_refused_then_login_again(
    openbao: OpenBaoDev, vault_prefix: str, make_approle: MakeAppRole, vault_client: Any
) -> None:
    """A token revoked behind the session's back: renewal is refused, it logs in again."""
    role = make_approle(token_ttl="6s", token_max_ttl="1m")
    clock = Clock()
    session, store = session_for(openbao, vault_prefix, role, clock)
    first = session.login()
    vault_client.auth.token.revoke_accessor(first.accessor)
    clock.offset = 5.0
    with capture_logs() as events:
        assert session.maintain() == "relogged"
    names = event_names(events)
    assert names == ["vault.renewal_failed", "vault.relogin", "vault.logged_in"]
    assert events[0]["status"] == 403
    assert events[1]["reason"] == "renewal_refused"
    second = session.token_info
    assert second is not None and second.accessor != first.accessor
    store.write("k", {"v": "1"}, cas=0)
    session.close()


def test_non_renewable_token_is_replaced_by_a_new_login(
    openbao: OpenBaoDev, vault_prefix: str, make_approle: MakeAppRole
) -> None:
    """A batch token cannot be renewed: near its end the session logs in, without renewing."""
    role = make_approle(token_ttl="6s", token_type="batch")
    clock = Clock()
    session, store = session_for(openbao, vault_prefix, role, clock)
    first = session.login()
    assert first.renewable is False
    token = session.client.token
    clock.offset = 5.0
    with capture_logs() as events:
        assert session.maintain() == "relogged"
    assert event_names(events) == ["vault.relogin", "vault.logged_in"]
    assert events[0]["reason"] == "not_renewable"
    assert session.client.token != token
    assert store.list() == []
    session.close()


def test_a_store_call_refused_for_a_dead_token_logs_in_and_retries_once(
    openbao: OpenBaoDev, vault_prefix: str, make_approle: MakeAppRole, vault_client: Any
) -> None:
    """A call refused because the token died logs in again and succeeds; a policy 403 does not."""
    role = make_approle(token_ttl="1m", token_max_ttl="5m")
    session, store = session_for(openbao, vault_prefix, role)
    store.write("k", {"v": "1"}, cas=0)
    first = session.token_info
    assert first is not None
    vault_client.auth.token.revoke_accessor(first.accessor)
    with capture_logs() as events:
        got = store.read("k")
    assert got is not None and got.data == {"v": "1"}
    relogin = [e for e in events if e["event"] == "vault.relogin"]
    assert len(relogin) == 1 and relogin[0]["reason"] == "token_rejected"
    token = session.client.token

    outside = VaultStore(session.client, mount="secret", prefix="not-granted", session=session)
    with capture_logs() as events, pytest.raises(AccessDenied) as info:
        outside.read("k")
    assert "vault.relogin" not in event_names(events)
    assert session.client.token == token  # a policy refusal keeps the token
    assert "VAULT_ROLE_ID" in str(info.value) and token not in str(info.value)
    session.close()


def test_wrong_secret_id_is_one_line_naming_the_variable(
    openbao: OpenBaoDev, vault_prefix: str, make_approle: MakeAppRole
) -> None:
    """A refused AppRole login at start-up: AccessDenied at once, naming VAULT_SECRET_ID only."""
    role = make_approle(token_ttl="1m")
    wrong = "00000000-1111-2222-3333-wrong-secret-id"
    vault = approle_settings(openbao, vault_prefix, role, secret_id=wrong)
    settings = Settings(vault=vault, accounts=(Account("ml", "h"),))
    store = open_store(settings)
    started = time.monotonic()
    with pytest.raises(AccessDenied) as info:
        wait_for_vault(store)
    assert time.monotonic() - started < 3  # refused at once, not retried to the deadline
    message = str(info.value)
    assert "VAULT_SECRET_ID" in message and "VAULT_ROLE_ID" in message and "\n" not in message
    assert wrong not in message and role.role_id not in message
    assert info.value.__cause__ is None and info.value.__context__ is None


def test_secret_id_file_is_read_again_at_each_login(
    openbao: OpenBaoDev, vault_prefix: str, make_approle: MakeAppRole, tmp_path: Path
) -> None:
    """VAULT_SECRET_ID_FILE is re-read at login: a fixed file lets the next login succeed."""
    role = make_approle(token_ttl="1m")
    path = tmp_path / "secret-id"
    path.write_text("stale-secret-id-0000000000000000\n")
    session, _ = session_for(
        openbao, vault_prefix, role, secret_id=None, secret_id_file=str(path)
    )
    with pytest.raises(AccessDenied, match="VAULT_SECRET_ID_FILE"):
        session.login()
    path.write_text(role.secret_id + "\n")
    assert session.login().ttl > 0
    path.unlink()
    with pytest.raises(ConfigError) as info:
        session.login()
    assert info.value.problems[0].startswith("VAULT_SECRET_ID_FILE: cannot read file")
    session.close()


# ==================================================================== token auth


def token_session(
    openbao: OpenBaoDev, prefix: str, token: str, *, token_file: Path | None = None,
    clock: Clock | None = None,
) -> tuple[VaultSession, VaultStore]:
    auth = TokenLogin(token_file=str(token_file) if token_file else None)
    settings = VaultSettings(addr=openbao.addr, token=token, prefix=prefix, auth=auth)
    session = VaultSession(settings, clock=clock or Clock())
    return session, session.store(prefix=prefix)


def prefix_policy(prefix: str) -> str:
    return (
        f'path "secret/+/{prefix}*" '
        '{ capabilities = ["create", "read", "update", "delete", "list"] }'
    )


def test_token_file_rewritten_by_a_sidecar_is_picked_up(
    openbao: OpenBaoDev, vault_prefix: str, make_token: Any, vault_client: Any, tmp_path: Path
) -> None:
    """Token auth from VAULT_TOKEN_FILE: after the token is revoked, the rewritten file is used."""
    first, second = make_token(prefix_policy(vault_prefix)), make_token(prefix_policy(vault_prefix))
    path = tmp_path / "token"
    path.write_text(first + "\n")
    session, store = token_session(openbao, vault_prefix, first, token_file=path)
    store.write("k", {"v": "1"}, cas=0)
    info = session.token_info
    assert info is not None and info.renewable and info.ttl > 500
    path.write_text(second + "\n")  # the sidecar's new token...
    vault_client.auth.token.revoke(first)  # ...and the old one is gone
    with capture_logs() as events:
        got = store.read("k")
    assert got is not None and got.data == {"v": "1"}
    assert session.client.token == second
    assert "vault.relogin" in event_names(events)
    assert first not in repr(events) and second not in repr(events)
    session.close()


def test_token_file_unchanged_and_refused_logs_token_expiring(
    openbao: OpenBaoDev, vault_prefix: str, make_token: Any, vault_client: Any, tmp_path: Path
) -> None:
    """When the file still holds the refused token, vault.token_expiring is an error log."""
    token = make_token(prefix_policy(vault_prefix))
    path = tmp_path / "token"
    path.write_text(token)
    clock = Clock()
    session, store = token_session(openbao, vault_prefix, token, token_file=path, clock=clock)
    session.login()
    vault_client.auth.token.revoke(token)
    clock.offset = 10_000.0  # near the end of its 10 minutes, as the session sees it
    with capture_logs() as events:
        assert session.maintain() == "failed"
    expiring = [e for e in events if e["event"] == "vault.token_expiring"]
    assert len(expiring) == 1 and expiring[0]["log_level"] == "error"
    assert "VAULT_TOKEN_FILE" in expiring[0]["hint"]
    with pytest.raises(AccessDenied, match="VAULT_TOKEN_FILE"):
        store.read("k")
    session.close()


def test_static_token_renewed_and_its_end_reported(
    openbao: OpenBaoDev, vault_prefix: str, make_token: Any, vault_client: Any
) -> None:
    """A VAULT_TOKEN is renewed while it can be; once refused, vault.token_expiring is logged."""
    token = make_token(prefix_policy(vault_prefix), ttl="9s")
    clock = Clock()
    session, store = token_session(openbao, vault_prefix, token, clock=clock)
    store.check()
    clock.offset = 7.0
    with capture_logs() as events:
        assert session.maintain() == "renewed"
    assert event_names(events) == ["vault.token_renewed"]
    clock.offset = 7.0 + 7.0
    vault_client.auth.token.revoke(token)
    with capture_logs() as events:
        assert session.maintain() == "failed"
    assert event_names(events) == ["vault.renewal_failed", "vault.token_expiring"]
    assert "VAULT_TOKEN" in events[1]["hint"]
    session.close()


def test_root_token_is_left_alone(openbao: OpenBaoDev, vault_prefix: str) -> None:
    """A token that never expires (ttl 0) is neither renewed nor replaced."""
    session, store = token_session(openbao, vault_prefix, openbao.root_token)
    store.check()
    info = session.token_info
    assert info is not None and info.ttl == 0 and info.expires_at is None
    assert session.maintain() == "idle"
    assert session.maintain_interval() == 30.0
    session.close()


def test_maintain_before_any_login_logs_in(openbao: OpenBaoDev, vault_prefix: str) -> None:
    """maintain() on a session that never logged in logs in; a refused token is logged, unshown."""
    session, _ = token_session(openbao, vault_prefix, openbao.root_token)
    assert session.maintain() == "relogged"
    assert session.token_info is not None and session.maintain() == "idle"
    session.close()
    bogus = "hvs.NotARealTokenButLongEnough5678"
    session, _ = token_session(openbao, vault_prefix, bogus)
    with capture_logs() as events:
        assert session.maintain() == "failed"
    assert event_names(events) == ["vault.relogin_failed"]
    assert "VAULT_TOKEN" in events[0]["error"] and bogus not in repr(events)
    session.close()


# ==================================================================== Kubernetes (no real k8s)


class FakeVault:
    """A local HTTP server answering ``POST /v1/auth/<mount>/login`` as Vault would.

    It records each request (path, X-Vault-Token header, JSON body) and answers ``status``
    with a login answer for ``token``.
    """

    def __init__(self, token: str, status: int = 200) -> None:
        self.token = token
        self.status = status
        self.requests: list[tuple[str, str | None, dict[str, Any]]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                fake.requests.append((self.path, self.headers.get("X-Vault-Token"), body))
                if fake.status == 200:
                    answer: dict[str, Any] = {
                        "auth": {
                            "client_token": fake.token,
                            "accessor": "acc-k8s",
                            "policies": ["default", "rotator"],
                            "lease_duration": 600,
                            "renewable": True,
                        }
                    }
                else:
                    answer = {"errors": ["permission denied"]}
                data = json.dumps(answer).encode()
                self.send_response(fake.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def addr(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_vault() -> Iterator[FakeVault]:
    """A stand-in for Vault's kubernetes login endpoint."""
    fake = FakeVault("fake-k8s-vault-token-0123456789abcdef")
    try:
        yield fake
    finally:
        fake.close()


FIRST_JWT = "eyJhbGciOiJSUzI1NiJ9.first-jwt.sig"


def k8s_session(fake: FakeVault, jwt_file: Path, clock: Clock | None = None) -> VaultSession:
    auth = KubernetesLogin(k8s_role="rotator", jwt_file=str(jwt_file), mount="k8s-east")
    return VaultSession(VaultSettings(addr=fake.addr, auth=auth), clock=clock or Clock())


def test_kubernetes_login_posts_the_jwt_from_the_file(
    fake_vault: FakeVault, tmp_path: Path
) -> None:
    """The session posts VAULT_K8S_ROLE and the JWT read at login time to auth/<mount>/login."""
    jwt_file = tmp_path / "token"
    jwt_file.write_text(FIRST_JWT + "\n")
    clock = Clock()
    session = k8s_session(fake_vault, jwt_file, clock)
    with capture_logs() as events:
        info = session.login()
    assert fake_vault.requests == [
        ("/v1/auth/k8s-east/login", None, {"role": "rotator", "jwt": FIRST_JWT}),
    ]
    assert session.client.token == fake_vault.token
    assert (info.accessor, info.ttl, info.renewable) == ("acc-k8s", 600.0, True)
    assert events[0]["event"] == "vault.logged_in" and events[0]["method"] == "kubernetes"
    assert "first-jwt" not in repr(events) and fake_vault.token not in repr(events)

    jwt_file.write_text("eyJhbGciOiJSUzI1NiJ9.rotated-jwt.sig")  # kubelet rotated it
    clock.offset = 700.0  # expired as the session sees it: log in again
    assert session.maintain() == "relogged"
    assert fake_vault.requests[-1][2]["jwt"] == "eyJhbGciOiJSUzI1NiJ9.rotated-jwt.sig"
    assert fake_vault.requests[-1][1] is None  # the old token is never sent to login
    session.close()


def test_kubernetes_unreadable_jwt_file_names_the_variable(
    fake_vault: FakeVault, tmp_path: Path
) -> None:
    """A JWT file that cannot be read is a ConfigError naming VAULT_K8S_JWT_FILE at start-up."""
    settings = Settings(
        vault=VaultSettings(
            addr=fake_vault.addr,
            auth=KubernetesLogin(k8s_role="r", jwt_file=str(tmp_path / "none")),
        ),
        accounts=(Account("ml", "h"),),
    )
    with pytest.raises(ConfigError) as info:
        wait_for_vault(open_store(settings))
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith("VAULT_K8S_JWT_FILE: cannot read file")
    assert fake_vault.requests == []


def test_kubernetes_refused_login_names_the_role(fake_vault: FakeVault, tmp_path: Path) -> None:
    """Vault refusing the JWT gives one AccessDenied line naming VAULT_K8S_ROLE, no JWT."""
    jwt_file = tmp_path / "token"
    jwt_file.write_text("eyJhbGciOiJSUzI1NiJ9.refused-jwt.sig")
    fake_vault.status = 403
    session = k8s_session(fake_vault, jwt_file)
    with pytest.raises(AccessDenied) as info:
        session.login()
    message = str(info.value)
    assert "VAULT_K8S_ROLE" in message and "auth/k8s-east/login" in message
    assert "refused-jwt" not in message and info.value.status == 403
    session.close()


def test_a_404_on_login_means_vault_addr_is_not_vault(
    fake_vault: FakeVault, tmp_path: Path
) -> None:
    """Vault answers 403 for a missing auth mount, so a 404 at login names VAULT_ADDR."""
    jwt_file = tmp_path / "token"
    jwt_file.write_text(FIRST_JWT)
    fake_vault.status = 404
    session = k8s_session(fake_vault, jwt_file)
    with pytest.raises(ConfigError) as info:
        session.login()
    (problem,) = info.value.problems
    assert problem.startswith("VAULT_ADDR: ") and "VAULT_K8S_MOUNT" in problem
    session.close()


# ==================================================================== the daemon


def no_registry(account_hash: str, key: KeyPair) -> Registry:
    raise AssertionError("no account, so no registry is ever needed")


def test_daemon_schedules_token_upkeep(
    openbao: OpenBaoDev, vault_prefix: str, make_approle: MakeAppRole
) -> None:
    """Daemon.start() adds the Vault upkeep job on its own executor, paced by the token TTL."""
    role = make_approle(token_ttl="12s", token_max_ttl="1m")
    settings = Settings(
        vault=approle_settings(openbao, vault_prefix, role),
        accounts=(),
        http_host="127.0.0.1",
        http_port=0,
    )
    daemon = Daemon(settings, factory=no_registry)
    wait_for_vault(daemon.store)
    daemon.start()
    try:
        job = daemon.scheduler.get_job("vault:maintain")
        assert job is not None and job.executor == "vault"
        assert job.trigger.interval == timedelta(seconds=2)  # a sixth of 12 s
    finally:
        daemon.stop(reason="test")
        assert daemon.store.session is not None
        daemon.store.session.close()


def test_rotator_run_with_approle_renews_and_logs_in_again(
    openbao: OpenBaoDev, vault_prefix: str, make_approle: MakeAppRole, sandbox: SandboxHandle
) -> None:
    """`rotator run` with AppRole logs in, renews its token and logs in again past max TTL."""
    role = make_approle(token_ttl="2s", token_max_ttl="3s")
    env = base_env(
        openbao,
        vault_prefix,
        sandbox.url,
        ROTATOR_VAULT_AUTH="approle",
        VAULT_ROLE_ID=role.role_id,
        VAULT_SECRET_ID=role.secret_id,
        VAULT_APPROLE_MOUNT=role.mount,
    )
    del env["VAULT_TOKEN"]
    proc = Proc(["run"], env)
    try:
        assert proc.wait_for(lambda e: e["event"] == "vault.token_renewed", timeout=8)
        assert proc.wait_for(lambda e: e["event"] == "vault.relogin", timeout=8)
    finally:
        proc.popen.terminate()
        rc = proc.finish(timeout=15)
    assert rc == 0
    proc.assert_all_json()
    logged_in = [e for e in proc.events() if e["event"] == "vault.logged_in"]
    assert len(logged_in) >= 2 and all(e["method"] == "approle" for e in logged_in)
    text = proc.text()
    assert role.secret_id not in text and role.role_id not in text


def test_rotator_run_with_a_refused_approle_login_exits_naming_the_variables(
    openbao: OpenBaoDev, vault_prefix: str, make_approle: MakeAppRole, sandbox: SandboxHandle
) -> None:
    """`rotator run` whose AppRole login is refused: exit 1, one JSON error line, no secret."""
    role = make_approle(token_ttl="1m")
    wrong = "11111111-2222-3333-4444-refused-secret-id"
    env = base_env(
        openbao,
        vault_prefix,
        sandbox.url,
        ROTATOR_VAULT_AUTH="approle",
        VAULT_ROLE_ID=role.role_id,
        VAULT_SECRET_ID=wrong,
        VAULT_APPROLE_MOUNT=role.mount,
    )
    del env["VAULT_TOKEN"]
    proc = Proc(["run"], env)
    try:
        rc = proc.finish(timeout=15)
    finally:
        proc.kill()
    assert rc == 1
    proc.assert_all_json()
    errors = [e for e in proc.events() if e.get("level") == "error"]
    assert len(errors) == 1 and errors[0]["event"] == "daemon.vault_denied"
    assert "VAULT_SECRET_ID" in errors[0]["error"] and "VAULT_SECRET_ID" in errors[0]["hint"]
    assert wrong not in proc.text() and role.role_id not in proc.text()
