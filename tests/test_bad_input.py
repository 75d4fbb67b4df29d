"""Bad input: every bad configuration and every bad piece of data gets one clear line.

Configuration rows run ``python -m rotator run`` with a bad environment: it must exit 2
(1 when the fault is a peer's, not the configuration's) with one JSON line per problem, each
naming the variable at fault, no traceback, and nothing written to Vault or Encord.

Data rows start from a bootstrapped account and spoil one thing a peer holds (the state
record, a key in Vault, Encord's answers): the daemon must stay up, say what is wrong in a
``check.failed`` line (``error`` names it), and change nothing it should not — Vault
versions and the keys at Encord stay as they were, and keys rotator does not own are never
deleted.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from rotator.adapters.encord.client import EncordClient
from rotator.adapters.encord.signing import EncordAuth
from rotator.adapters.vault import VaultStore
from rotator.core import keys
from rotator.dev.openbao import OpenBaoDev
from tests.e2e import Proc, base_env, rotator_cli
from tests.fixtures_openbao import MakeToken
from tests.fixtures_sandbox import SandboxHandle
from tests.secret_scan import assert_no_secrets


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- configuration ------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigRow:
    """Environment changes (None: unset) and the variables the problem lines must name."""

    changes: dict[str, str | None]
    names: tuple[str, ...]
    words: tuple[str, ...] = ()  # each problem line must also contain these, if given
    exit_code: int = 2


CONFIG_ROWS: dict[str, ConfigRow] = {
    # malformed durations
    "duration-word": ConfigRow({"ROTATOR_KEY_TTL": "soon"}, ("ROTATOR_KEY_TTL",), ("'soon'",)),
    "duration-no-unit": ConfigRow({"ROTATOR_GRACE": "1h30"}, ("ROTATOR_GRACE",), ("'1h30'",)),
    "duration-negative": ConfigRow(
        {"ROTATOR_CHECK_INTERVAL": "-5m"}, ("ROTATOR_CHECK_INTERVAL",), ("'-5m'",)
    ),
    "duration-zero": ConfigRow({"ROTATOR_ROTATE_BEFORE": "0s"}, ("ROTATOR_ROTATE_BEFORE",)),
    "duration-unknown-unit": ConfigRow({"ROTATOR_JITTER": "5w"}, ("ROTATOR_JITTER",)),
    "duration-fraction": ConfigRow(
        {"VAULT_CLIENT_TIMEOUT": "1.5s"}, ("VAULT_CLIENT_TIMEOUT",), ("'1.5s'",)
    ),
    "duration-overflow": ConfigRow(
        {"ROTATOR_BEARER_TTL": "99999999999999d"}, ("ROTATOR_BEARER_TTL",)
    ),
    "duration-over-100-years": ConfigRow(
        {"ROTATOR_KEY_TTL": "999999999d"}, ("ROTATOR_KEY_TTL",), ("100 years",)
    ),
    # inconsistent TTL / grace / cap
    "rotate-before-not-under-ttl": ConfigRow(
        {"ROTATOR_KEY_TTL": "3s", "ROTATOR_ROTATE_BEFORE": "3s"},
        ("ROTATOR_ROTATE_BEFORE",),
        ("ROTATOR_KEY_TTL",),
    ),
    "grace-over-rotate-before": ConfigRow(
        {"ROTATOR_GRACE": "2s"}, ("ROTATOR_GRACE",), ("ROTATOR_ROTATE_BEFORE",)
    ),
    "cap-too-small-for-two-kinds": ConfigRow(
        {"ROTATOR_CREDENTIALS": "ssh-key,api-key", "ROTATOR_KEY_CAP": "3"},
        ("ROTATOR_KEY_CAP",),
        ("at least 4",),
    ),
    "cap-zero": ConfigRow({"ROTATOR_KEY_CAP": "0"}, ("ROTATOR_KEY_CAP",)),
    "cap-not-a-number": ConfigRow({"ROTATOR_KEY_CAP": "five"}, ("ROTATOR_KEY_CAP",)),
    "bearer-ttl-under-interval": ConfigRow(
        {"ROTATOR_BEARER_TTL": "300ms"}, ("ROTATOR_BEARER_TTL",), ("ROTATOR_CHECK_INTERVAL",)
    ),
    "lease-under-interval": ConfigRow(
        {"ROTATOR_LEASE_TTL": "100ms"}, ("ROTATOR_LEASE_TTL",), ("ROTATOR_CHECK_INTERVAL",)
    ),
    # credential kinds
    "unknown-credential": ConfigRow(
        {"ROTATOR_CREDENTIALS": "ssh-key,passwords"}, ("ROTATOR_CREDENTIALS",), ("'passwords'",)
    ),
    "empty-credential-entry": ConfigRow(
        {"ROTATOR_CREDENTIALS": "ssh-key,,bearer-token"}, ("ROTATOR_CREDENTIALS",)
    ),
    # accounts
    "account-without-hash": ConfigRow({"ROTATOR_ACCOUNTS": "alpha"}, ("ROTATOR_ACCOUNTS",)),
    "account-name-with-slash": ConfigRow({"ROTATOR_ACCOUNTS": "a/b=sa-x"}, ("ROTATOR_ACCOUNTS",)),
    "account-duplicate": ConfigRow(
        {"ROTATOR_ACCOUNTS": "alpha=sa-alpha,alpha=sa-beta"}, ("ROTATOR_ACCOUNTS",), ("repeats",)
    ),
    "account-empty-name": ConfigRow({"ROTATOR_ACCOUNTS": "=sa-alpha"}, ("ROTATOR_ACCOUNTS",)),
    "account-empty-hash": ConfigRow({"ROTATOR_ACCOUNTS": "alpha="}, ("ROTATOR_ACCOUNTS",)),
    "accounts-missing": ConfigRow({"ROTATOR_ACCOUNTS": None}, ("ROTATOR_ACCOUNTS",)),
    "account-name-dot": ConfigRow({"ROTATOR_ACCOUNTS": ".=sa-x"}, ("ROTATOR_ACCOUNTS",), ("'.'",)),
    "account-name-dotdot": ConfigRow(
        {"ROTATOR_ACCOUNTS": "alpha=sa-alpha,..=sa-x"}, ("ROTATOR_ACCOUNTS",), ("'..'",)
    ),
    "account-name-colon": ConfigRow(
        {"ROTATOR_ACCOUNTS": "a=sa-1,a:x=sa-2"}, ("ROTATOR_ACCOUNTS",), ("':'",)
    ),
    "account-hash-twice": ConfigRow(
        {"ROTATOR_ACCOUNTS": "alpha=sa-alpha,beta=sa-alpha"}, ("ROTATOR_ACCOUNTS",), ("'alpha'",)
    ),
    # transport: plain http only to loopback, unless allowed
    "vault-plain-http-remote": ConfigRow(
        {"VAULT_ADDR": "http://vault.example.com:8200"},
        ("VAULT_ADDR",),
        ("ROTATOR_ALLOW_INSECURE_HTTP",),
    ),
    "encord-plain-http-remote": ConfigRow(
        {"ENCORD_DOMAIN": "http://10.1.2.3:8900"},
        ("ENCORD_DOMAIN",),
        ("ROTATOR_ALLOW_INSECURE_HTTP",),
    ),
    "insecure-http-not-a-bool": ConfigRow(
        {"ROTATOR_ALLOW_INSECURE_HTTP": "sometimes"}, ("ROTATOR_ALLOW_INSECURE_HTTP",)
    ),
    # Vault settings
    "vault-addr-no-scheme": ConfigRow({"VAULT_ADDR": "vault:8200"}, ("VAULT_ADDR",)),
    "vault-addr-missing": ConfigRow({"VAULT_ADDR": None}, ("VAULT_ADDR",)),
    "vault-addr-with-password": ConfigRow(
        {"VAULT_ADDR": "https://admin:hunter2hunter2@vault:8200"}, ("VAULT_ADDR",)
    ),
    "vault-token-missing": ConfigRow({"VAULT_TOKEN": None}, ("VAULT_TOKEN",)),
    "vault-token-file-missing": ConfigRow(
        {"VAULT_TOKEN": None, "VAULT_TOKEN_FILE": "/nonexistent/token"}, ("VAULT_TOKEN_FILE",)
    ),
    "vault-cacert-missing": ConfigRow({"VAULT_CACERT": "/nonexistent/ca.pem"}, ("VAULT_CACERT",)),
    "vault-mount-dotdot": ConfigRow({"ROTATOR_VAULT_MOUNT": "../secret"}, ("ROTATOR_VAULT_MOUNT",)),
    "vault-prefix-empty-segment": ConfigRow(
        {"ROTATOR_VAULT_PREFIX": "team//encord"}, ("ROTATOR_VAULT_PREFIX",)
    ),
    # the rest
    "encord-domain-ftp": ConfigRow({"ENCORD_DOMAIN": "ftp://api.encord.com"}, ("ENCORD_DOMAIN",)),
    "http-addr-no-port": ConfigRow({"ROTATOR_HTTP_ADDR": "localhost"}, ("ROTATOR_HTTP_ADDR",)),
    "http-addr-port-too-big": ConfigRow(
        {"ROTATOR_HTTP_ADDR": "127.0.0.1:99999"}, ("ROTATOR_HTTP_ADDR",)
    ),
    "concurrency-zero": ConfigRow({"ROTATOR_MAX_CONCURRENCY": "0"}, ("ROTATOR_MAX_CONCURRENCY",)),
    "log-format-xml": ConfigRow({"ROTATOR_LOG_FORMAT": "xml"}, ("ROTATOR_LOG_FORMAT",)),
    "log-level-verbose": ConfigRow({"ROTATOR_LOG_LEVEL": "verbose"}, ("ROTATOR_LOG_LEVEL",)),
    "dry-run-maybe": ConfigRow({"ROTATOR_DRY_RUN": "maybe"}, ("ROTATOR_DRY_RUN",)),
    "three-problems-at-once": ConfigRow(
        {"ROTATOR_KEY_TTL": "soon", "ROTATOR_CREDENTIALS": "ssh-key,x", "ROTATOR_KEY_CAP": "-1"},
        ("ROTATOR_KEY_TTL", "ROTATOR_CREDENTIALS", "ROTATOR_KEY_CAP"),
    ),
}


def _env_with(base: dict[str, str], changes: dict[str, str | None]) -> dict[str, str]:
    env = dict(base)
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def _problem_lines(proc: Proc) -> list[dict[str, Any]]:
    return [e for e in proc.events() if e.get("level") in ("error", "critical")]


@pytest.mark.parametrize("row", list(CONFIG_ROWS.values()), ids=list(CONFIG_ROWS))
def test_bad_configuration_exits_2_with_one_line_per_problem(
    row: ConfigRow,
    openbao: OpenBaoDev,
    vault_store: VaultStore,
    vault_prefix: str,
    sandbox: SandboxHandle,
) -> None:
    """A bad variable: exit 2 at once, one JSON line naming it per problem, nothing written."""
    env = _env_with(base_env(openbao, vault_prefix, sandbox.url), row.changes)
    keys_before = [k.key_id for k in sandbox.sandbox.keys("alpha")]
    start = time.monotonic()
    proc = Proc(["run"], env)
    try:
        rc = proc.finish(timeout=15)
    finally:
        proc.kill()
    assert time.monotonic() - start < 10
    assert rc == row.exit_code, proc.text()[-1500:]
    proc.assert_all_json()
    text = proc.text()
    assert "Traceback" not in text and "traceback" not in text
    problems = _problem_lines(proc)
    assert len(problems) == len(row.names), text
    for name, line in zip(row.names, sorted(problems, key=_first_name(row.names)), strict=True):
        rendered = json.dumps(line)
        assert name in rendered, f"{name} not named in {rendered}"
        for word in row.words:
            assert word in rendered, f"{word!r} not in {rendered}"
    assert all(e["event"] == "config.invalid" for e in problems)
    assert "hunter2" not in text
    # Nothing was written anywhere.
    assert vault_store.list() == []
    assert [k.key_id for k in sandbox.sandbox.keys("alpha")] == keys_before


def _first_name(names: tuple[str, ...]) -> Callable[[dict[str, Any]], int]:
    """Sort problem lines in the order of ``names`` (the first name each line mentions)."""

    def key(line: dict[str, Any]) -> int:
        text = json.dumps(line)
        hits = [i for i, n in enumerate(names) if str(line.get("problem", text)).startswith(n)]
        return hits[0] if hits else len(names)

    return key


# --- Vault at start-up: unreachable, not Vault, refused, the wrong mount -------------------


@dataclass(frozen=True)
class StartupRow:
    """A Vault problem found by the start-up check: the exit code and the variable named."""

    setup: Callable[[Any, MakeToken, str], dict[str, str]]  # (hvac client, make_token, url)
    name: str
    words: tuple[str, ...]
    exit_code: int
    command: str = "run"


def _kv1_mount(client: Any, make_token: MakeToken, url: str) -> dict[str, str]:
    mount = f"kv1-{uuid.uuid4().hex[:6]}"
    client.sys.enable_secrets_engine("kv", path=mount, options={"version": "1"})
    return {"ROTATOR_VAULT_MOUNT": mount}


def _transit_mount(client: Any, make_token: MakeToken, url: str) -> dict[str, str]:
    mount = f"tr-{uuid.uuid4().hex[:6]}"
    client.sys.enable_secrets_engine("transit", path=mount)
    return {"ROTATOR_VAULT_MOUNT": mount}


STARTUP_ROWS: dict[str, StartupRow] = {
    "kv-version-1-mount": StartupRow(
        _kv1_mount, "ROTATOR_VAULT_MOUNT", ("KV version 1",), exit_code=2
    ),
    "mount-of-another-type": StartupRow(
        _transit_mount, "ROTATOR_VAULT_MOUNT", ("transit",), exit_code=2
    ),
    "mount-missing": StartupRow(
        lambda c, t, u: {"ROTATOR_VAULT_MOUNT": "no-such-mount"},
        "ROTATOR_VAULT_MOUNT",
        ("does not exist",),
        exit_code=2,
    ),
    "token-without-access-to-the-mount": StartupRow(
        lambda c, t, u: {"VAULT_TOKEN": t('path "elsewhere/*" { capabilities = ["read"] }')},
        "ROTATOR_VAULT_MOUNT",
        ("no access",),
        exit_code=2,
    ),
    "token-refused": StartupRow(
        lambda c, t, u: {"VAULT_TOKEN": "hvs.NotARealTokenButLongEnough1234"},
        "VAULT_TOKEN",
        (),
        exit_code=1,
    ),
    "vault-addr-is-not-vault": StartupRow(
        lambda c, t, u: {"VAULT_ADDR": u},  # the Encord sandbox: HTTP, but not Vault
        "VAULT_ADDR",
        (),
        exit_code=2,
    ),
    "vault-unreachable": StartupRow(
        lambda c, t, u: {"VAULT_ADDR": f"http://127.0.0.1:{_closed_port()}"},
        "VAULT_ADDR",
        ("did not answer",),
        exit_code=1,
        command="plan",  # `run` waits 12 s for a Vault that may be starting (test_e2e)
    ),
}


@pytest.mark.parametrize("row", list(STARTUP_ROWS.values()), ids=list(STARTUP_ROWS))
def test_bad_vault_at_startup_gives_one_line_naming_the_variable(
    row: StartupRow,
    openbao: OpenBaoDev,
    vault_client: Any,
    vault_store: VaultStore,
    vault_prefix: str,
    make_token: MakeToken,
    sandbox: SandboxHandle,
) -> None:
    """A Vault that is away, not Vault, refuses the token or lacks a KV v2 mount: one line
    naming the variable to fix, the documented exit code, nothing written."""
    env = base_env(openbao, vault_prefix, sandbox.url)
    env.update(row.setup(vault_client, make_token, sandbox.url))
    keys_before = [k.key_id for k in sandbox.sandbox.keys("alpha")]
    start = time.monotonic()
    proc = Proc([row.command], env)
    try:
        rc = proc.finish(timeout=20)
    finally:
        proc.kill()
    assert time.monotonic() - start < 15
    text = proc.text()
    assert rc == row.exit_code, text[-1500:]
    proc.assert_all_json()
    assert "Traceback" not in text
    problems = _problem_lines(proc)
    assert len(problems) == 1, text
    line = json.dumps(problems[0])
    assert row.name in line, f"{row.name} not named in {line}"
    for word in row.words:
        assert word in line, f"{word!r} not in {line}"
    assert env["VAULT_TOKEN"] not in text
    assert vault_store.list() == []
    assert [k.key_id for k in sandbox.sandbox.keys("alpha")] == keys_before


# --- bad data: the state record, keys in Vault, Encord's answers ---------------------------


class GarbageEncord:
    """A local HTTP server that answers every request 200 with the same body."""

    def __init__(self, body: bytes) -> None:
        payload = body

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = _answer  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@dataclass
class Scene:
    """A bootstrapped account ``alpha`` that a row spoils before the daemon starts."""

    env: dict[str, str] = field(repr=False)  # holds the Vault token: never in a failure
    store: VaultStore
    handle: SandboxHandle
    signer: keys.KeyPair
    kept: list[str] = field(default_factory=list)  # key ids at Encord that must survive
    servers: list[GarbageEncord] = field(default_factory=list)

    def state(self) -> dict[str, Any]:
        v = self.store.read("alpha/state")
        assert v is not None and v.data is not None
        return v.data

    def write_state(self, data: dict[str, Any]) -> None:
        self.store.write("alpha/state", data, cas=self.store.current_version("alpha/state"))

    def edit_state(self, edit: Callable[[dict[str, Any]], None]) -> None:
        data = self.state()
        edit(data)
        self.write_state(data)

    def human_key(self, title: str) -> keys.KeyPair:
        """A key someone other than rotator registered on the account (rotator must keep it)."""
        pair = keys.generate(comment=title)
        with EncordClient(self.handle.url, EncordAuth(self.signer)) as human:
            human.upload_key("sa-alpha", title, pair.public_line)
        self.kept.append(pair.key_id)
        return pair

    def garbage_encord(self, body: bytes) -> None:
        server = GarbageEncord(body)
        self.servers.append(server)
        self.env["ENCORD_DOMAIN"] = server.url


@dataclass(frozen=True)
class DataRow:
    spoil: Callable[[Scene], None]
    words: tuple[str, ...]  # the line must contain all of these
    event: str = "check.failed"
    error_kind: str | None = "permanent"
    state_may_change: bool = False  # a blocked rotation records its outcome


def _current(data: dict[str, Any]) -> dict[str, Any]:
    current = data["kinds"]["ssh-key"]["current"]
    assert isinstance(current, dict)
    return current


def _revoke_signer(scene: Scene) -> None:
    """A human deletes rotator's current key at Encord, with a break-glass key of their own."""
    glass = scene.human_key("break-glass (alice)")
    with EncordClient(scene.handle.url, EncordAuth(glass)) as human:
        (current,) = [k for k in human.list_keys("sa-alpha") if k.key_id == scene.signer.key_id]
        human.delete_key("sa-alpha", current.key_hash)


def _unreadable_pending_key(scene: Scene) -> None:
    """A half-done rotation whose recorded private key is nonsense (its key is at Encord)."""
    pair = scene.human_key("break-glass (alice)")
    with EncordClient(scene.handle.url, EncordAuth(pair)) as human:
        (held,) = [k for k in human.list_keys("sa-alpha") if k.key_id == pair.key_id]
    pending = {
        "phase": "registered",
        "title": "rotator:alpha:20260101T000000Z-abcdef",
        "reason": "requested",
        "started_at": "2026-01-01T00:00:00Z",
        "key_id": held.key_id,
        "key_hash": held.key_hash,
        "public_key": held.public_key,
        "private_key": "not a key at all",
    }
    scene.edit_state(lambda d: d["kinds"]["ssh-key"].update(pending=pending))


def _fill_cap_with_foreign_keys(scene: Scene) -> None:
    scene.env["ROTATOR_KEY_CAP"] = "3"
    scene.human_key("break-glass (alice)")
    scene.human_key("rotator:other-account:20250101T000000Z-abc123")  # another account's


DATA_ROWS: dict[str, DataRow] = {
    "state-kind-not-an-object": DataRow(
        lambda s: s.write_state({"schema": 1, "kinds": {"ssh-key": "banana"}}),
        ("state record", "'ssh-key' is not an object"),
    ),
    "state-unknown-schema": DataRow(
        lambda s: s.write_state({"schema": 7, "kinds": {}}), ("state record", "unknown schema 7")
    ),
    "state-unknown-credential-kind": DataRow(
        lambda s: s.edit_state(lambda d: d["kinds"].update(passwords={})),
        ("state record", "unknown credential kind 'passwords'"),
    ),
    "state-kinds-a-list": DataRow(
        lambda s: s.write_state({"schema": 1, "kinds": ["ssh-key"]}),
        ("state record", "'kinds' is not an object"),
    ),
    "state-time-nonsense": DataRow(
        lambda s: s.edit_state(lambda d: _current(d).update(issued_at="last tuesday")),
        ("state record", "'issued_at' is not an RFC 3339 UTC time"),
    ),
    "state-time-far-future": DataRow(
        lambda s: s.edit_state(lambda d: _current(d).update(issued_at="9999-12-31T23:59:59Z")),
        ("state record", "'issued_at' is out of range"),
    ),
    "state-pending-phase-nonsense": DataRow(
        lambda s: s.edit_state(
            lambda d: d["kinds"]["ssh-key"].update(
                pending={
                    "phase": "halfway",
                    "title": "rotator:alpha:x",
                    "reason": "r",
                    "started_at": "2026-01-01T00:00:00Z",
                }
            )
        ),
        ("state record", "'pending.phase'"),
    ),
    "state-retiring-not-a-list": DataRow(
        lambda s: s.edit_state(lambda d: d["kinds"]["ssh-key"].update(retiring="none")),
        ("state record", "'retiring' is not a list"),
    ),
    "state-key-id-missing": DataRow(
        lambda s: s.edit_state(lambda d: _current(d).pop("key_id")),
        ("state record", "'key_id' is missing"),
    ),
    "unparseable-signer-key-in-vault": DataRow(
        lambda s: s.edit_state(lambda d: _current(d).update(private_key="not a key at all")),
        ("state record", "signer key unreadable"),
    ),
    "unparseable-pending-key-in-vault": DataRow(
        _unreadable_pending_key, ("state record", "pending ssh-key unreadable")
    ),
    "encord-answers-html": DataRow(
        lambda s: s.garbage_encord(b"<html><body>502 Bad Gateway</body></html>"),
        ("malformed JSON", "list_keys"),
    ),
    "encord-answers-truncated-json": DataRow(
        lambda s: s.garbage_encord(b'{"results": [{"keyId": '), ("malformed JSON", "list_keys")
    ),
    "encord-key-list-of-wrong-shape": DataRow(
        lambda s: s.garbage_encord(b'{"results": [{"keyId": "nope"}], "nextPageToken": null}'),
        ("malformed JSON", "list_keys"),
    ),
    "encord-key-list-not-a-list": DataRow(
        lambda s: s.garbage_encord(b'{"results": "all of them", "nextPageToken": null}'),
        ("malformed JSON", "list_keys"),
    ),
    "foreign-keys-fill-the-cap": DataRow(
        _fill_cap_with_foreign_keys,
        ("3/3 keys held",),
        event="rotation.blocked_by_cap",
        error_kind=None,
        state_may_change=True,
    ),
    "signer-revoked-at-encord-by-a-human": DataRow(
        _revoke_signer, ("Encord list_keys", "401"), error_kind="access_denied"
    ),
}


@pytest.fixture
def scene(
    openbao: OpenBaoDev, vault_store: VaultStore, vault_prefix: str, sandbox: SandboxHandle
) -> Iterator[Scene]:
    env = base_env(openbao, vault_prefix, sandbox.url, ROTATOR_CREDENTIALS="ssh-key")
    rc, out, err = rotator_cli(
        ["bootstrap", "alpha", "--private-key-file", str(sandbox.bootstrap_key_file)], env
    )
    assert rc == 0, err
    signer = keys.load_private(sandbox.bootstrap_key_file.read_text())
    made = Scene(env=env, store=vault_store, handle=sandbox, signer=signer)
    yield made
    for server in made.servers:
        server.stop()


def _versions(store: VaultStore) -> dict[str, int]:
    return {p: store.current_version(f"alpha/{p}") for p in ("state", "ssh-key", "bearer-token")}


@pytest.mark.parametrize("row", list(DATA_ROWS.values()), ids=list(DATA_ROWS))
def test_bad_data_gives_one_line_naming_it_and_changes_nothing(row: DataRow, scene: Scene) -> None:
    """Nonsense in the state record, an unreadable key, garbage or foreign keys from Encord:
    the daemon stays up, says what is wrong in one line, and changes nothing it should not."""
    row.spoil(scene)
    before = _versions(scene.store)
    keys_before = sorted(k.key_id for k in scene.handle.sandbox.keys("alpha"))
    proc = Proc(["run"], scene.env)
    try:
        assert proc.wait_for(lambda e: e.get("event") == row.event, 10), proc.text()[-2000:]
        time.sleep(0.5)  # a few more checks (with back-off): still the same line, still up
        assert proc.popen.poll() is None, "the daemon exited on bad data"
        proc.popen.send_signal(signal.SIGTERM)
        assert proc.finish(timeout=10) == 0
    finally:
        proc.kill()
    proc.assert_all_json()
    text = proc.text()
    assert "Traceback" not in text
    events = proc.events()
    lines = [e for e in events if e.get("event") == row.event]
    first = json.dumps(lines[0])
    for word in row.words:
        assert word in first, f"{word!r} not in {first}"
    assert "[redacted]" not in first, f"the line names no secret, yet was masked: {first}"
    if row.error_kind is not None:
        assert lines[0]["error_kind"] == row.error_kind, first
        assert len({e["error"] for e in lines}) == 1, "the same problem, the same line"
    assert not [e for e in events if e.get("event") == "check.crashed"], text[-2000:]
    # Nothing changed that should not have.
    after = _versions(scene.store)
    if row.state_may_change:
        before.pop("state"), after.pop("state")
    assert after == before
    assert sorted(k.key_id for k in scene.handle.sandbox.keys("alpha")) == keys_before
    assert set(scene.kept) <= set(keys_before)
    assert_no_secrets(text, "daemon output")
