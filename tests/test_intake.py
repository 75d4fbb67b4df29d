"""Key intake against the real OpenBao and the sandbox, with tests playing the Encord admin who
creates a key in the UI ("New API key" -> "Add API key": Encord makes the pair, the browser
downloads the private key) and hands its file over: by writing it to Vault at
``{prefix}/{NAME}/incoming`` with a token holding only deploy/vault/key-intake-policy.hcl, or
with ``rotator adopt``. Consumers read the newest version and authenticate with the real
encord SDK."""

from __future__ import annotations

import json
import re
from collections.abc import MutableMapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from structlog.testing import capture_logs

from rotator.adapters.encord.client import EncordClient
from rotator.adapters.encord.registry import registry_factory
from rotator.adapters.encord.signing import EncordAuth
from rotator.adapters.vault import VaultStore, connect
from rotator.core import keys
from rotator.core.admin import bootstrap, pause, resume
from rotator.core.engine import Engine
from rotator.core.policy import Policy
from rotator.core.transitions import ceil_second
from rotator.core.vocab import Account
from rotator.dev.openbao import OpenBaoDev
from rotator.runtime.render import short_id
from tests.e2e import base_env, rotator_cli, sdk_authenticates
from tests.fixtures_sandbox import MakeSandbox, SandboxHandle
from tests.secret_scan import assert_no_secrets, remember

REPO = Path(__file__).resolve().parent.parent
INTAKE_POLICY = REPO / "deploy" / "vault" / "key-intake-policy.hcl"
GRACE = timedelta(hours=1)

SEEN: list[MutableMapping[str, Any]] = []


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def events(logs: list[MutableMapping[str, Any]], name: str) -> list[MutableMapping[str, Any]]:
    SEEN.extend(logs)
    return [e for e in logs if e["event"] == name]


def make_engine(store: VaultStore, url: str, clock: Clock, *, manual: bool) -> Engine:
    policy = Policy(
        key_ttl=timedelta(days=90),
        rotate_before=timedelta(days=14),
        grace=GRACE,
        key_cap=5,
        kinds=("ssh-key",),
    )
    return Engine(
        account=Account("alpha", "sa-alpha"),
        store=store,
        registry_factory=registry_factory(url, manual=manual),
        policy=policy,
        clock=clock,
        sleep=lambda s: None,
    )


def intake_policy(prefix: str) -> str:
    """deploy/vault/key-intake-policy.hcl for the test's own prefix."""
    text = INTAKE_POLICY.read_text()
    assert re.findall(r'(?m)^path "([^"]+)"', text) == ["secret/data/encord/+/incoming"]
    return text.replace('path "secret/data/encord/', f'path "secret/data/{prefix}/')


def person_token(vault_client: Any, prefix: str) -> str:
    """A token holding only the intake policy (not even ``default``), as an admin gets."""
    name = f"intake-{prefix.split('/')[0]}"
    vault_client.sys.create_or_update_policy(name=name, policy=intake_policy(prefix))
    answer = vault_client.auth.token.create(policies=[name], no_default_policy=True, ttl="10m")
    token = answer["auth"]["client_token"]
    assert isinstance(token, str)
    return token


def hand_over(openbao: OpenBaoDev, token: str, prefix: str, data: dict[str, str]) -> int:
    """The admin writes ``data`` to ``{prefix}/alpha/incoming`` (no check-and-set, as
    ``bao kv put`` does); answers the version written."""
    person = connect(openbao.addr, token)
    try:
        answer = person.secrets.kv.v2.create_or_update_secret(
            path=f"{prefix}/alpha/incoming", secret=data, mount_point="secret"
        )
    finally:
        person.adapter.close()
    return int(answer["data"]["version"])


def assert_incoming_destroyed(vault_client: Any, prefix: str, newest: int) -> None:
    """Every version of the incoming path up to ``newest`` is destroyed, not soft-deleted."""
    meta = vault_client.secrets.kv.v2.read_secret_metadata(
        path=f"{prefix}/alpha/incoming", mount_point="secret"
    )["data"]["versions"]
    assert {int(v) for v in meta} >= set(range(1, newest + 1))
    for version in range(1, newest + 1):
        assert meta[str(version)]["destroyed"] is True, f"incoming version {version} readable"


def readable_private_keys(store: VaultStore, rel: str) -> set[str]:
    """Key ids of every private key in any readable version of ``rel``."""
    newest = store.read(rel)
    found: set[str] = set()
    for version in range(1, (newest.version if newest else 0) + 1):
        got = store.read_version(rel, version)
        if got is None or got.data is None:
            continue
        for text in re.findall(r"-----BEGIN OPENSSH PRIVATE KEY-----[^-]+-----END OPENSSH "
                               r"PRIVATE KEY-----", json.dumps(got.data).replace("\\n", "\n")):
            found.add(keys.load_private(text).key_id)
    return found


def rsa_openssh() -> str:
    text = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode("ascii")
    remember(text)
    return text


def test_manual_ui_key_handed_over_in_vault_is_promoted_and_the_old_key_revoked(
    openbao: OpenBaoDev,
    vault_client: Any,
    vault_store: VaultStore,
    vault_prefix: str,
    sandbox: SandboxHandle,
) -> None:
    """Manual registrar: the request names the title to type and both ways; the admin
    creates a key in the UI under that title and writes its file to the incoming path with
    a write-only token. The next check adopts it: consumers get a working key, the old key
    its grace, rotator's unregistered pending key is dropped (and purged), every incoming
    version is destroyed; after the grace the old key is asked for by title and key id as
    the UI shows it, and forgotten once its 401 confirms the deletion."""
    clock = Clock()
    engine = make_engine(vault_store, sandbox.url, clock, manual=True)
    old = bootstrap(engine.context, sandbox.bootstrap_key_file.read_text())
    with capture_logs() as logs:
        assert "awaiting_registration" in engine.check(force=frozenset({"ssh-key"})).outcomes
    (ask,) = events(logs, "key.registration_required")
    title = ask["title"]
    assert "add this public key" in ask["hint"] and "create a new API key" in ask["hint"]
    assert ask["or_hand_over"].startswith("rotator adopt alpha --private-key-file FILE")
    assert "alpha/incoming, field private_key" in ask["or_hand_over"]
    pending = engine.load_state().kind("ssh-key").pending
    assert pending is not None and pending.title == title and pending.key_id

    ui_file = sandbox.sandbox.create_key_in_ui("alpha", title)
    new_id = keys.load_private(ui_file).key_id
    written = hand_over(openbao, person_token(vault_client, vault_prefix), vault_prefix,
                        {"private_key": ui_file})
    with capture_logs() as logs:
        done = engine.check()
    assert "adopted" in done.outcomes and ("ssh-key", "rotated") in done.rotations
    (adopted,) = events(logs, "key.adopted")
    assert adopted["key_id"] == new_id and adopted["title"] == title
    assert adopted["old_key_id"] == old.key_id and adopted["dropped_key_id"] == pending.key_id
    assert adopted["source"] == "incoming" and adopted["retired_key_id"] is None
    assert events(logs, "vault.incoming_cleared")[0]["versions"] == [written]

    consumer = vault_store.read("alpha/ssh-key")
    assert consumer is not None and consumer.data is not None
    assert consumer.data["key_id"] == new_id
    assert sdk_authenticates(sandbox.url, str(consumer.data["private_key"]))
    state = engine.load_state()
    ks = state.kind("ssh-key")
    assert ks.current is not None and ks.current.key_id == new_id and ks.current.title == title
    assert ks.pending is None and ks.last is not None and ks.last.reason == "intake"
    assert [k.key_id for k in ks.retiring] == [old.key_id]
    assert ks.retiring[0].retire_after == ceil_second(clock.now + GRACE)
    assert_incoming_destroyed(vault_client, vault_prefix, written)
    assert pending.key_id not in readable_private_keys(vault_store, "alpha/state")
    assert state.bearer is not None and state.bearer.minted_with == new_id

    # Grace over: the old key is asked for as the UI shows it, until its 401.
    clock.now += GRACE + timedelta(seconds=1)
    with capture_logs() as logs:
        assert "awaiting_revocation" in engine.check().outcomes
    (revoke,) = events(logs, "key.revocation_required")
    (at_encord,) = [k for k in sandbox.sandbox.keys("alpha") if k.key_id == old.key_id]
    assert (revoke["title"], revoke["key_id"]) == (at_encord.title, at_encord.key_id)
    with EncordClient(sandbox.url, EncordAuth(keys.load_private(ui_file))) as admin:
        admin.delete_key("sa-alpha", at_encord.key_hash)
    with capture_logs() as logs:
        assert "forgotten" in engine.check().outcomes
    assert [k.key_id for k in sandbox.sandbox.keys("alpha")] == [new_id]
    text = repr(SEEN)
    assert ui_file.strip() not in text
    assert_no_secrets(text, "key-intake log events")


def test_bad_incoming_keys_are_rejected_cleared_and_change_nothing(
    openbao: OpenBaoDev,
    vault_client: Any,
    vault_store: VaultStore,
    vault_prefix: str,
    sandbox: SandboxHandle,
) -> None:
    """Not Ed25519, garbage, a key Encord does not know, the current key again, no
    ``private_key`` field, a good key while the account is paused: each gives
    ``key.intake_rejected`` with its reason (never the key text), its versions are
    destroyed, and the record and the consumer path stay as they were."""
    clock = Clock()
    engine = make_engine(vault_store, sandbox.url, clock, manual=True)
    current = sandbox.bootstrap_key_file.read_text()
    bootstrap(engine.context, current)
    engine.check()  # bearer token minted: later checks have nothing else to do
    token = person_token(vault_client, vault_prefix)
    garbage = "this is not a key at all, only some words a person pasted by mistake"
    remember(garbage)
    cases = [
        ({"private_key": rsa_openssh()}, "not_ed25519"),
        ({"private_key": garbage}, "unreadable"),
        ({"private_key": keys.generate().private_openssh}, "does_not_authenticate"),
        ({"private_key": current}, "current_key"),
        ({"key": keys.generate().private_openssh}, "no_private_key"),
    ]
    for data, reason in cases:
        before_state = engine.load_state()
        before_consumer = vault_store.read("alpha/ssh-key")
        written = hand_over(openbao, token, vault_prefix, data)
        with capture_logs() as logs:
            result = engine.check()
        assert result.outcomes[0] == "intake_rejected", (reason, result.outcomes)
        (rejected,) = events(logs, "key.intake_rejected")
        assert rejected["reason"] == reason and rejected["source"] == "incoming"
        assert not events(logs, "key.adopted")
        assert engine.load_state() == before_state, reason
        assert vault_store.read("alpha/ssh-key") == before_consumer, reason
        assert_incoming_destroyed(vault_client, vault_prefix, written)
        text = repr(logs)
        for value in data.values():
            assert value.strip() not in text
        assert_no_secrets(text, f"logs of a rejected {reason} key")
    assert len(sandbox.sandbox.keys("alpha")) == 1

    # A paused account changes no key: a good key is refused too, and adopted once resumed.
    pause(engine.context, by="tester@host", reason="audit")
    ui_file = sandbox.sandbox.create_key_in_ui("alpha", "while paused")
    before_consumer = vault_store.read("alpha/ssh-key")
    written = hand_over(openbao, token, vault_prefix, {"private_key": ui_file})
    with capture_logs() as logs:
        assert "intake_rejected" in engine.check().outcomes
    (rejected,) = events(logs, "key.intake_rejected")
    assert rejected["reason"] == "paused" and "rotator resume alpha" in rejected["error"]
    assert vault_store.read("alpha/ssh-key") == before_consumer
    assert_incoming_destroyed(vault_client, vault_prefix, written)
    resume(engine.context, by="tester@host")
    hand_over(openbao, token, vault_prefix, {"private_key": ui_file, "title": "while paused"})
    assert "adopted" in engine.check().outcomes
    assert_no_secrets(repr(SEEN), "logs")


def test_a_pending_key_registered_as_well_retires_at_once(
    openbao: OpenBaoDev,
    vault_client: Any,
    vault_store: VaultStore,
    vault_prefix: str,
    sandbox: SandboxHandle,
) -> None:
    """The admin did both: added rotator's public key and handed over a UI key. The UI key
    is adopted; rotator's key, registered but never read by a consumer, retires with no
    grace and is asked for at once, by title and key id."""
    clock = Clock()
    engine = make_engine(vault_store, sandbox.url, clock, manual=True)
    bootstrap(engine.context, sandbox.bootstrap_key_file.read_text())
    engine.check(force=frozenset({"ssh-key"}))
    pending = engine.load_state().kind("ssh-key").pending
    assert pending is not None and pending.public_key
    signer = keys.load_private(sandbox.bootstrap_key_file.read_text())
    with EncordClient(sandbox.url, EncordAuth(signer)) as admin:
        admin.upload_key("sa-alpha", pending.title, pending.public_key)
    ui_file = sandbox.sandbox.create_key_in_ui("alpha", pending.title)
    hand_over(openbao, person_token(vault_client, vault_prefix), vault_prefix,
              {"private_key": ui_file})
    with capture_logs() as logs:
        engine.check()
    (adopted,) = events(logs, "key.adopted")
    assert adopted["retired_key_id"] == pending.key_id and adopted["dropped_key_id"] is None
    asked = {e["key_id"] for e in events(logs, "key.revocation_required")}
    assert pending.key_id in asked
    consumer = vault_store.read("alpha/ssh-key")
    assert consumer is not None and consumer.data is not None
    assert consumer.data["key_id"] == keys.load_private(ui_file).key_id
    assert_no_secrets(repr(logs), "logs")


def _cli_env(openbao: OpenBaoDev, prefix: str, url: str, **extra: str) -> dict[str, str]:
    return base_env(openbao, prefix, url, ROTATOR_KEY_TTL="90d", ROTATOR_ROTATE_BEFORE="14d",
                    ROTATOR_GRACE="1h", ROTATOR_BEARER_TTL="1h", **extra)


def test_rotator_adopt_in_manual_mode_says_what_it_did_and_refuses_bad_files(
    openbao: OpenBaoDev,
    vault_store: VaultStore,
    vault_prefix: str,
    sandbox: SandboxHandle,
    tmp_path: Path,
) -> None:
    """``rotator adopt`` with the manual registrar: a sentence for a person (title, key
    ids, until when the old key stays valid); the daemon's record carries on from it. The
    current key again, garbage and an unknown key are refused in one line, exit 2 for the
    file and 1 when Encord refuses it, with ``--json`` documents; no key text is printed."""
    clock = Clock()
    engine = make_engine(vault_store, sandbox.url, clock, manual=True)
    old = bootstrap(engine.context, sandbox.bootstrap_key_file.read_text())
    engine.check(force=frozenset({"ssh-key"}))
    pending = engine.load_state().kind("ssh-key").pending
    assert pending is not None
    ui_file = sandbox.sandbox.create_key_in_ui("alpha", pending.title)
    new_id = keys.load_private(ui_file).key_id
    key_file = tmp_path / "downloaded.key"
    key_file.write_text(ui_file)
    env = _cli_env(openbao, vault_prefix, sandbox.url, ROTATOR_REGISTRAR="manual")

    code, out, err = rotator_cli(["adopt", "alpha", "--private-key-file", str(key_file)], env)
    assert code == 0, err[-2000:]
    assert out.startswith(f"alpha: adopted key '{pending.title}' ({short_id(new_id)}) as the "
                          "current ssh-key"), out
    assert f"previous key 'bootstrap' ({short_id(old.key_id)}) keeps working until" in out
    assert out.rstrip().endswith("then rotator asks you to delete it"), out
    assert '"event": "key.adopted"' in err and ui_file.strip() not in out + err
    ks = engine.load_state().kind("ssh-key")
    assert ks.current is not None and ks.current.key_id == new_id and ks.pending is None
    assert "rotated" not in engine.check().outcomes  # nothing left in flight

    bad = tmp_path / "bad.key"
    for text, reason, exit_code in (
        (ui_file, "current_key", 2),
        ("not a key, only words typed by mistake\n", "unreadable", 2),
        (keys.generate().private_openssh, "does_not_authenticate", 1),
    ):
        bad.write_text(text)
        code, out, err = rotator_cli(
            ["adopt", "alpha", "--private-key-file", str(bad), "--json"], env
        )
        assert code == exit_code, (reason, err[-2000:])
        answer = json.loads(out)
        assert answer["event"] == "adopt.rejected" and answer["reason"] == reason
        assert text.strip() not in out + err
    assert engine.load_state().kind("ssh-key").current == ks.current


def test_rotator_adopt_in_api_mode_puts_an_emergency_key_in_service(
    openbao: OpenBaoDev,
    vault_store: VaultStore,
    vault_prefix: str,
    make_sandbox: MakeSandbox,
    tmp_path: Path,
) -> None:
    """api registrar, an emergency: the admin created a key in the UI. ``rotator adopt
    --json`` takes it with Encord's own title, the old key gets its grace and is then
    revoked by rotator itself; a UI key of another service account is refused."""
    seed = {
        "service_accounts": [
            {"name": n, "hash": f"sa-{n}", "key_cap": 5,
             "bootstrap_key_file": str(tmp_path / f"{n}.key")}
            for n in ("alpha", "beta")
        ]
    }
    box = make_sandbox(seed=seed)
    clock = Clock()
    engine = make_engine(vault_store, box.url, clock, manual=False)
    old = bootstrap(engine.context, box.bootstrap_key_file.read_text())
    env = _cli_env(openbao, vault_prefix, box.url)

    other = tmp_path / "beta-ui.key"
    other.write_text(box.sandbox.create_key_in_ui("beta", "beta's key"))
    code, out, err = rotator_cli(
        ["adopt", "alpha", "--private-key-file", str(other), "--json"], env
    )
    assert code == 1 and json.loads(out)["reason"] == "not_this_account", err[-2000:]

    ui_file = box.sandbox.create_key_in_ui("alpha", "break-glass 2026-12")
    key_file = tmp_path / "ui.key"
    key_file.write_text(ui_file)
    code, out, err = rotator_cli(
        ["adopt", "alpha", "--private-key-file", str(key_file), "--json"], env
    )
    assert code == 0, err[-2000:]
    done = json.loads(out)
    new_id = keys.load_private(ui_file).key_id
    assert done["event"] == "adopt.done" and done["key_id"] == new_id
    assert done["title"] == "break-glass 2026-12" and done["old_key_id"] == old.key_id
    assert ui_file.strip() not in out + err
    consumer = vault_store.read("alpha/ssh-key")
    assert consumer is not None and consumer.data is not None
    assert sdk_authenticates(box.url, str(consumer.data["private_key"]))
    clock.now = datetime.now(UTC) + GRACE + timedelta(seconds=1)  # the CLI's grace is over
    with capture_logs() as logs:
        assert "revoked" in engine.check().outcomes
    assert events(logs, "key.revoked")[0]["key_id"] == old.key_id
    assert {k.key_id for k in box.sandbox.keys("alpha")} == {new_id}


def test_sandbox_ui_call_creates_a_titled_generated_key_and_hands_over_its_file(
    make_sandbox: MakeSandbox,
) -> None:
    """The sandbox's stand-in for the UI (``POST /_sandbox/ui/keys``, loopback only, and
    :meth:`Sandbox.create_key_in_ui`): Encord makes the pair, keeps the typed title, answers
    the OpenSSH private key the SDK works with, journals ``by: ui``, and respects the cap."""
    box = make_sandbox()
    answer = httpx.post(f"{box.url}/_sandbox/ui/keys",
                        json={"account": "alpha", "title": "typed in the UI"})
    assert answer.status_code == 200
    body = answer.json()
    private = body.pop("privateKey")
    remember(private)
    assert body["title"] == "typed in the UI" and body["origin"] == "generated"
    assert keys.load_private(private).key_id == body["keyId"]
    assert sdk_authenticates(box.url, private)
    assert box.journal_path is not None
    journal = [json.loads(line) for line in box.journal_path.read_text().splitlines()]
    assert [e.get("by") for e in journal if e.get("title") == "typed in the UI"] == ["ui"]
    for _ in range(3):
        box.sandbox.create_key_in_ui("alpha", "more")
    full = httpx.post(f"{box.url}/_sandbox/ui/keys", json={"account": "alpha", "title": "x"})
    assert (full.status_code, full.json()["code"]) == (400, "KEY_LIMIT_REACHED")
    missing = httpx.post(f"{box.url}/_sandbox/ui/keys", json={"account": "nobody", "title": "x"})
    assert missing.status_code == 404
    assert httpx.get(f"{box.url}/_sandbox/ui/keys").status_code == 405


def test_docs_document_intake_events_commands_and_policy() -> None:
    """docs/commands.md ("Manual registration") names the intake events, the command and the
    write-only policy."""
    text = (REPO / "docs" / "commands.md").read_text()
    for needed in ("`key.adopted`", "`key.intake_rejected`", "`vault.incoming_cleared`",
                   "`key.intake_failed`", "rotator adopt", "key-intake-policy.hcl",
                   "bao kv put -mount=secret encord/"):
        assert needed in text, needed
    from rotator.core.intake import REASONS

    for reason in REASONS:
        assert f"`{reason}`" in text, reason


def test_the_daemon_takes_an_incoming_key_at_its_next_check(
    openbao: OpenBaoDev,
    vault_client: Any,
    vault_store: VaultStore,
    vault_prefix: str,
    sandbox: SandboxHandle,
) -> None:
    """``rotator run`` (leases, pooled and fenced registries, as deployed), manual registrar:
    a key the admin writes to the incoming path is adopted at the next check, consumers
    get it, and the daemon's output holds no key."""
    import signal

    from tests.e2e import CALM_TIMINGS, Proc

    env = base_env(openbao, vault_prefix, sandbox.url, ROTATOR_REGISTRAR="manual",
                   **CALM_TIMINGS)
    code, _, err = rotator_cli(
        ["bootstrap", "alpha", "--private-key-file", str(sandbox.bootstrap_key_file)], env
    )
    assert code == 0, err[-2000:]
    daemon = Proc(["run"], env)
    try:
        assert daemon.wait_for(lambda e: e.get("event") == "check.finished"
                               or e.get("event") == "bearer.minted", 20), daemon.text()
        ui_file = sandbox.sandbox.create_key_in_ui("alpha", "handed over while running")
        hand_over(openbao, person_token(vault_client, vault_prefix), vault_prefix,
                  {"private_key": ui_file, "title": "handed over while running"})
        assert daemon.wait_for(lambda e: e.get("event") == "key.adopted", 20), daemon.text()
        daemon.popen.send_signal(signal.SIGTERM)
        assert daemon.finish(timeout=15) == 0
    finally:
        daemon.kill()
    (adopted,) = [e for e in daemon.events() if e.get("event") == "key.adopted"]
    assert adopted["key_id"] == keys.load_private(ui_file).key_id
    assert adopted["title"] == "handed over while running"  # no rotation asked for a title
    consumer = vault_store.read("alpha/ssh-key")
    assert consumer is not None and consumer.data is not None
    assert sdk_authenticates(sandbox.url, str(consumer.data["private_key"]))
    assert not [e for e in daemon.events() if e.get("event") in ("check.failed",
                                                                  "key.intake_failed")]
    assert ui_file.strip() not in daemon.text()
    daemon.assert_all_json()
