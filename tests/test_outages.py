"""Outages: Vault stopped and restarted, Encord answering only 5xx, the Vault token revoked.

The daemon runs as ``python -m rotator run``. Through each outage it must stay up, report
``/readyz`` false and then true again, back off instead of hammering the peer that is down
(every request it sends goes through a counting proxy), and after recovery have lost nothing
and rotated nothing twice.

Vault here is a real OpenBao server with Raft storage in a temporary folder (not a dev
server, which forgets everything when it stops), so stopping and starting it is a real
outage with the data kept, as in production.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import hvac
import pytest

from rotator.adapters.vault import VaultStore, connect
from rotator.core.state import from_dict
from rotator.dev.openbao import find_bao
from rotator.dev.sandbox import Faults
from tests.e2e import FAST_TIMINGS, Proc, owned_orphans, rotator_cli, sdk_authenticates
from tests.fixtures_sandbox import MakeSandbox, SandboxHandle
from tests.secret_scan import assert_no_secrets, remember

# --- a Vault that keeps its data across a restart ------------------------------------------


def _free_port_pair() -> int:
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no pair of free ports")


class DurableBao:
    """``bao server`` with Raft storage in ``folder``: initialised and unsealed on the first
    start (KV v2 at ``secret/``), unsealed again on every later start, data kept."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = _free_port_pair()
        self.addr = f"http://127.0.0.1:{self.port}"
        self.root_token = ""
        self._unseal_key = ""
        self._proc: subprocess.Popen[bytes] | None = None
        (folder / "raft").mkdir(parents=True)
        (folder / "bao.hcl").write_text(
            f'storage "raft" {{\n  path = "{folder / "raft"}"\n  node_id = "n1"\n'
            "  performance_multiplier = 1\n}\n"
            f'listener "tcp" {{\n  address = "127.0.0.1:{self.port}"\n'
            f'  cluster_address = "127.0.0.1:{self.port + 1}"\n  tls_disable = true\n}}\n'
            f'api_addr = "{self.addr}"\ncluster_addr = "http://127.0.0.1:{self.port + 1}"\n'
            "ui = false\n"
        )

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> DurableBao:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
        env["HOME"] = str(self.folder)
        log = (self.folder / "bao.log").open("ab")
        self._proc = subprocess.Popen(
            [find_bao(), "server", f"-config={self.folder / 'bao.hcl'}"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.folder,
            start_new_session=True,
        )
        log.close()
        # Initialising Raft storage can take several seconds on a loaded 2-core machine.
        client = hvac.Client(url=self.addr, timeout=30)
        try:
            _until(lambda: _answers(client), 20, "bao answers")
            if not client.sys.is_initialized():
                answer = client.sys.initialize(secret_shares=1, secret_threshold=1)
                self.root_token = answer["root_token"]
                self._unseal_key = answer["keys"][0]
                remember(self.root_token)
                remember(self._unseal_key)
                client.sys.submit_unseal_key(self._unseal_key)
                client.token = self.root_token
                _until(lambda: _try(lambda: _enable_kv2(client)), 20, "KV v2 enabled")
            else:
                client.sys.submit_unseal_key(self._unseal_key)
                client.token = self.root_token
            _until(lambda: _try(lambda: _probe_kv(client)), 20, "KV v2 answers")
        except BaseException:
            self.stop()  # never leave a server (and its Popen) behind a failed start
            raise
        finally:
            client.adapter.close()
        return self

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _answers(client: hvac.Client) -> bool:
    try:
        client.sys.read_health_status(method="GET")
    except Exception:
        return False
    return True


def _try(fn: Callable[[], Any]) -> bool:
    try:
        fn()
    except Exception:
        return False
    return True


def _enable_kv2(client: hvac.Client) -> None:
    client.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})


def _probe_kv(client: hvac.Client) -> None:
    client.secrets.kv.v2.create_or_update_secret("probe", {"ok": "1"}, mount_point="secret")


def _until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for: {what}")


@pytest.fixture(scope="module")
def durable_bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DurableBao]:
    """One durable OpenBao for this module (initialising Raft takes a couple of seconds)."""
    bao = DurableBao(tmp_path_factory.mktemp("durable-bao")).start()
    try:
        yield bao
    finally:
        bao.stop()


# --- a proxy that counts every request the daemon sends -----------------------------------

_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "host", "content-length"})


class CountingProxy:
    """Forwards HTTP requests to ``upstream`` unchanged and notes when each arrived.

    When the upstream cannot be reached the connection is closed without an answer, which
    the client sees as a connection error, as it would without the proxy.
    """

    def __init__(self, upstream: str) -> None:
        self.times: list[float] = []
        self._lock = threading.Lock()
        http = httpx.Client(base_url=upstream, trust_env=False, timeout=10)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                with proxy._lock:
                    proxy.times.append(time.monotonic())
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = [(k, v) for k, v in self.headers.items() if k.lower() not in _HOP]
                try:
                    answer = http.request(self.command, self.path, headers=headers, content=body)
                except httpx.HTTPError:
                    self.close_connection = True
                    return
                self.send_response(answer.status_code)
                for k, v in answer.headers.items():
                    if k.lower() not in _HOP and k.lower() != "content-encoding":
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_LIST = _forward  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

        self._http = http
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def between(self, start: float, end: float) -> int:
        with self._lock:
            return sum(start <= t < end for t in self.times)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)
        self._http.close()


# --- the rig: daemon + durable Vault + sandbox, both behind counting proxies ---------------


@dataclass
class Rig:
    bao: DurableBao
    handle: SandboxHandle
    vault_proxy: CountingProxy
    encord_proxy: CountingProxy
    store: VaultStore
    env: dict[str, str] = field(repr=False)
    proc: Proc | None = None
    ops_url: str = ""
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=2, trust_env=False))

    def start_daemon(self) -> None:
        self.proc = Proc(["run"], self.env)
        assert self.proc.wait_for(lambda e: e.get("event") == "ops.listening", 15), (
            self.proc.text()[-2000:]
        )
        (listening,) = [e for e in self.proc.events() if e.get("event") == "ops.listening"]
        self.ops_url = f"http://{listening['host']}:{listening['port']}"

    def ready(self) -> bool:
        return self.http.get(f"{self.ops_url}/readyz").status_code == 200

    def healthy(self) -> bool:
        return self.http.get(f"{self.ops_url}/healthz").status_code == 200

    def events(self, name: str, **match: object) -> list[dict[str, Any]]:
        assert self.proc is not None
        return [
            e
            for e in self.proc.events()
            if e.get("event") == name and all(e.get(k) == v for k, v in match.items())
        ]

    def rotated(self) -> int:
        return len(self.events("rotation.finished", outcome="rotated", kind="ssh-key"))

    def alive(self) -> bool:
        return self.proc is not None and self.proc.popen.poll() is None


@pytest.fixture
def rig(
    durable_bao: DurableBao, make_sandbox: MakeSandbox, vault_prefix: str
) -> Iterator[Rig]:
    """A bootstrapped account ``alpha`` and a daemon that has rotated at least once."""
    if not durable_bao.running:
        durable_bao.start()  # a previous test may have failed while Vault was down
    handle = make_sandbox()
    vault_proxy = CountingProxy(durable_bao.addr)
    encord_proxy = CountingProxy(handle.url)
    client = connect(durable_bao.addr, durable_bao.root_token)
    env = {
        "VAULT_ADDR": vault_proxy.url,
        "VAULT_TOKEN": durable_bao.root_token,
        "VAULT_CLIENT_TIMEOUT": "2s",
        "ROTATOR_VAULT_PREFIX": vault_prefix,
        "ENCORD_DOMAIN": encord_proxy.url,
        "ROTATOR_ACCOUNTS": "alpha=sa-alpha",
        **FAST_TIMINGS,
    }
    rc, out, err = rotator_cli(
        ["bootstrap", "alpha", "--private-key-file", str(handle.bootstrap_key_file)], env
    )
    assert rc == 0, err
    made = Rig(
        bao=durable_bao,
        handle=handle,
        vault_proxy=vault_proxy,
        encord_proxy=encord_proxy,
        store=VaultStore(client, mount="secret", prefix=vault_prefix),
        env=env,
    )
    try:
        yield made
    finally:
        if made.proc is not None:
            made.proc.kill()
        made.http.close()
        vault_proxy.stop()
        encord_proxy.stop()
        client.adapter.close()
        if not durable_bao.running:
            durable_bao.start()


def _running(rig: Rig) -> None:
    rig.start_daemon()
    _until(rig.ready, 15, "ready")
    _until(lambda: rig.rotated() >= 1, 15, "a first rotation")


@dataclass(frozen=True)
class Outage:
    """What the daemon did while a peer was away."""

    seconds: float
    requests: int  # to the peer that was away, after the daemon noticed
    first_half: int
    second_half: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def _ride_out(rig: Rig, proxy: CountingProxy, seconds: float) -> Outage:
    """The peer just went away: readiness falls, the daemon stays up and healthy, backs off."""
    _until(lambda: not rig.ready(), 10, "/readyz false")
    noticed = time.monotonic()
    end = noticed + seconds
    while time.monotonic() < end:
        assert rig.alive(), "the daemon exited during the outage"
        assert rig.healthy(), "an outage is not a crash: /healthz must stay 200"
        assert not rig.ready()
        time.sleep(0.25)
    mid = noticed + seconds / 2
    return Outage(
        seconds=seconds,
        requests=proxy.between(noticed, end),
        first_half=proxy.between(noticed, mid),
        second_half=proxy.between(mid, end),
    )


# Without back-off the daemon would check every ROTATOR_CHECK_INTERVAL (300 ms here), at
# least one request each: 3.3 requests/s. The bounds below are well under that.
NO_BACKOFF_RATE = 1 / 0.3


def _assert_backed_off(rig: Rig, outage: Outage, per_second: float) -> None:
    """No hot loop: a bounded request rate, fewer requests as the outage goes on, and each
    failed check backed off longer than the one before (exponentially)."""
    assert outage.rate <= per_second, f"{outage.requests} requests in {outage.seconds}s"
    assert outage.second_half <= outage.first_half, outage
    backoffs = [float(e["backoff_s"]) for e in rig.events("check.failed")]
    assert backoffs == sorted(backoffs), backoffs
    assert len(backoffs) >= 3 and backoffs[-1] >= 2 * backoffs[1] > 0, backoffs


def _recovered(rig: Rig, rotated_before: int) -> None:
    """Ready again, and rotating again."""
    _until(rig.ready, 20, "/readyz true again")
    _until(lambda: rig.rotated() > rotated_before, 15, "a rotation after recovery")


def _stop_and_check(rig: Rig) -> None:
    """SIGTERM, exit 0, every line JSON and secret-free; nothing lost, nothing rotated twice."""
    assert rig.proc is not None
    rig.proc.popen.send_signal(signal.SIGTERM)
    assert rig.proc.finish(timeout=10) == 0
    rig.proc.assert_all_json()
    text = rig.proc.text()
    assert "Traceback" not in text
    assert not rig.events("check.crashed")
    store = rig.store
    v = store.read("alpha/state")
    assert v is not None
    state = from_dict(v.data, v.version, account="alpha")
    assert all(ks.pending is None for ks in state.kinds.values()), "a rotation left in flight"
    assert owned_orphans(rig.handle.sandbox, "alpha", state.owned_key_ids()) == []
    # Nothing lost: every version of the consumer path is still there, each a new key, the
    # newest the record's current key, working at Encord. A version whose key was revoked is
    # destroyed on purpose (no revoked private key stays readable): it still answers, without
    # data; every live key's version is readable.
    current = store.current_version("alpha/ssh-key")
    versions: list[str | None] = []
    for n in range(1, current + 1):
        old = store.read_version("alpha/ssh-key", n)
        assert old is not None, f"version {n} lost"
        versions.append(None if old.data is None else str(old.data["key_id"]))
    readable = [key_id for key_id in versions if key_id is not None]
    assert len(set(readable)) == len(readable), "a key was promoted twice"
    ks = state.kind("ssh-key")
    assert ks.current is not None and ks.current.key_id == versions[-1]
    live = {ks.current.key_id, *(k.key_id for k in ks.retiring)}
    assert live <= set(readable), "a version holding a live key was destroyed"
    newest = store.read("alpha/ssh-key")
    assert newest is not None and newest.data is not None
    assert sdk_authenticates(rig.handle.url, str(newest.data["private_key"]))
    # Nothing rotated twice: each rotation this daemon finished is one new version, and every
    # key it registered at Encord is a promoted version or one it logged as cleaned up.
    assert rig.rotated() == len(versions) - 1, (rig.rotated(), len(versions))
    journal = rig.handle.journal_path
    assert journal is not None
    added = {
        e["key_id"]
        for e in map(json.loads, journal.read_text().splitlines())
        if e.get("event") == "key.added"
    }
    cleaned = {str(e.get("key_id")) for e in rig.events("key.orphan_deleted")} | {
        str(e.get("key_id"))
        for e in rig.events("rotation.finished")
        if e.get("outcome") in ("rolled_back", "failed")
    }
    # A destroyed version held a key this daemon revoked since (and logged as purged).
    revoked = {str(e.get("key_id")) for e in rig.events("key.revoked")}
    purged = {str(e.get("key_id")) for e in rig.events("vault.purged")}
    assert versions.count(None) <= len(revoked & purged), (versions, revoked, purged)
    unexplained = added - set(readable) - (revoked & purged) - cleaned
    assert not unexplained, f"keys registered twice or lost track of: {unexplained}"
    assert len(rig.handle.sandbox.keys("alpha")) <= 5
    assert_no_secrets(text)


# --- the outages --------------------------------------------------------------------------


def test_vault_stopped_mid_run_and_restarted(rig: Rig) -> None:
    """Vault goes away for 5 s: the daemon stays up, turns unready, backs off (bounded
    requests), turns ready when Vault is back, and has lost and doubled nothing."""
    _running(rig)
    before = rig.rotated()
    rig.bao.stop()
    try:
        outage = _ride_out(rig, rig.vault_proxy, 5.0)
    finally:
        rig.bao.start()
    print(f"vault outage: {outage}")
    failed = rig.events("check.failed", error_kind="transient")
    assert failed and all("VAULT_ADDR" in e["error"] for e in failed)
    # One check (one Vault request) per back-off step (0.6 s, 1.2 s, 2.4 s...).
    _assert_backed_off(rig, outage, per_second=NO_BACKOFF_RATE / 3)
    _recovered(rig, before)
    _stop_and_check(rig)


def test_encord_answering_only_5xx_for_a_while(rig: Rig) -> None:
    """Encord answers 500 to everything for 5 s: unready, bounded retries, then ready and
    rotating again with nothing lost or doubled."""
    _running(rig)
    before = rig.rotated()
    rig.handle.sandbox.faults = Faults(error_rate=1.0)
    try:
        outage = _ride_out(rig, rig.encord_proxy, 5.0)
    finally:
        rig.handle.sandbox.faults = Faults()
    print(f"encord outage: {outage}")
    failed = rig.events("check.failed")
    assert failed and all(e["error_kind"] == "transient" for e in failed)
    assert all("HTTP 500" in e["error"] for e in failed)
    # A check tries its first call 4 times (with jittered delays, ~0.7 s in all), then the
    # checks back off: about 3 checks in 5 s, 12 requests. Without check back-off it would
    # be 4 requests about every 0.9 s (4.4/s).
    _assert_backed_off(rig, outage, per_second=3.0)
    _recovered(rig, before)
    _stop_and_check(rig)


def test_vault_token_revoked_then_replaced(rig: Rig, tmp_path: Path) -> None:
    """The daemon's Vault token is revoked: it stays up, unready, backing off; once a new
    token is in VAULT_TOKEN_FILE it is ready and rotating again, nothing lost or doubled."""
    root = connect(rig.bao.addr, rig.bao.root_token)

    def new_token() -> str:
        answer = root.auth.token.create(policies=["root"], ttl="10m")
        token = str(answer["auth"]["client_token"])
        remember(token)
        return token

    try:
        token_file = tmp_path / "vault-token"
        token_file.write_text(new_token())
        token_file.chmod(0o600)
        del rig.env["VAULT_TOKEN"]
        rig.env["VAULT_TOKEN_FILE"] = str(token_file)
        _running(rig)
        before = rig.rotated()
        root.auth.token.revoke(token_file.read_text())
        outage = _ride_out(rig, rig.vault_proxy, 5.0)
        print(f"token revoked: {outage}")
        failed = rig.events("check.failed")
        assert failed and all(e["error_kind"] == "access_denied" for e in failed)
        assert all("VAULT_TOKEN" in e["error"] for e in failed)
        # Each check: the refused call and a look-up of the token (is it dead?), backed off.
        _assert_backed_off(rig, outage, per_second=NO_BACKOFF_RATE / 2)
        token_file.write_text(new_token())
        _recovered(rig, before)
        _stop_and_check(rig)
    finally:
        root.adapter.close()
