"""Every Vault call is bounded in time and in size, whatever the server does (issue:
hostile endpoints, point 6). Store calls and logins go to local hostile servers
(tests/hostile.py), or through a relay (tests/relay.py) that makes a real server drip.

Before the bounds, VAULT_CLIENT_TIMEOUT was per socket operation: a server dripping one byte
every few seconds held one call for as long as it dripped, and a 150 MiB answer was read whole
into memory (408 MiB for the process, against a pod limit of 256 MiB)."""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import json
import signal
import socket
import ssl
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from rotator.adapters.vault import (
    AppRoleLogin,
    TokenLogin,
    VaultSession,
    VaultSettings,
    VaultStore,
    connect,
)
from rotator.adapters.vault.transport import DEADLINE_FACTOR, VaultBounds
from rotator.core.errors import ProtocolError, RotatorError, StoreUnavailable
from rotator.dev.openbao import OpenBaoDev
from tests.e2e import CALM_TIMINGS, Proc, base_env, rotator_cli
from tests.fixtures_sandbox import SandboxHandle
from tests.hostile import Behaviour, HostileServer
from tests.relay import Relay

TOKEN = "hvs.CAESIFakeTokenThatMustNotLeak0123456789ab"
SECRET_ID = "5f2e6c1a-aaaa-bbbb-cccc-secretidmustnot"
TIMEOUT = 0.5  # VAULT_CLIENT_TIMEOUT of these clients: each connect, each read
DEADLINE = DEADLINE_FACTOR * TIMEOUT  # one whole request
SLACK = 1.5  # seconds: scheduling on a loaded machine, closing sockets
CAP = VaultBounds(seconds=1).max_answer_bytes


def _store(url: str, *, cacert: str | None = None) -> VaultStore:
    return VaultStore(
        connect(url, TOKEN, timeout=TIMEOUT, cacert=cacert), mount="secret", prefix="t/encord"
    )


STORE_CALLS: dict[str, Callable[[VaultStore], object]] = {
    "check": lambda s: s.check(),
    "read": lambda s: s.read("a/state"),
    "list": lambda s: s.list(""),
    "write": lambda s: s.write("a/state", {"n": 1}, cas=0),
}


def _timed(call: Callable[[], object]) -> tuple[RotatorError, float]:
    started = time.monotonic()
    with pytest.raises(RotatorError) as caught:
        call()
    return caught.value, time.monotonic() - started


@pytest.mark.parametrize("behaviour", ["drip_headers", "drip_body"])
@pytest.mark.parametrize("call", sorted(STORE_CALLS))
def test_a_dripping_vault_cannot_hold_a_store_call(behaviour: Behaviour, call: str) -> None:
    """A drip (never a pause long enough for a per-read timeout) ends the call at its total
    deadline, as StoreUnavailable naming VAULT_ADDR and the deadline; no token in it."""
    with HostileServer(behaviour, interval=0.1) as server:
        url = server.url
        error, elapsed = _timed(lambda: STORE_CALLS[call](_store(url)))
    assert elapsed < DEADLINE + SLACK, f"{call} held for {elapsed:.1f}s"
    assert isinstance(error, StoreUnavailable), error
    message = str(error)
    assert message.startswith("Vault at VAULT_ADDR did not answer: no complete answer within 1s")
    assert f"VAULT_ADDR={url}" in message and TOKEN not in message
    assert "\n" not in message


@pytest.mark.parametrize("call", sorted(STORE_CALLS))
def test_a_silent_vault_is_given_up_on_within_the_deadline(call: str) -> None:
    """A server that never answers is caught by the per-read timeout, inside the deadline."""
    with HostileServer("silent") as server:
        error, elapsed = _timed(lambda: STORE_CALLS[call](_store(server.url)))
    assert isinstance(error, StoreUnavailable) and "VAULT_ADDR" in str(error)
    assert elapsed < DEADLINE + SLACK


@pytest.mark.parametrize("behaviour", ["huge_body", "endless_chunked"])
@pytest.mark.parametrize("call", ["check", "read", "list"])
def test_a_huge_or_endless_answer_is_cut_off_at_the_cap(behaviour: Behaviour, call: str) -> None:
    """Reading stops at 1 MiB: memory stays bounded (the server offers 150 MiB or no end),
    and one line names VAULT_ADDR and the cap."""
    with HostileServer(behaviour) as server:
        url = server.url
        store = _store(url)
        tracemalloc.start()
        try:
            error, elapsed = _timed(lambda: STORE_CALLS[call](store))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert isinstance(error, ProtocolError), error
    assert str(error).startswith(f"Vault at VAULT_ADDR answered more than {CAP} bytes")
    assert f"VAULT_ADDR={url}" in str(error)
    assert peak < 4 * CAP, f"peak {peak} bytes while reading a {behaviour} answer"
    assert elapsed < DEADLINE + SLACK


def _approle(url: str) -> VaultSession:
    auth = AppRoleLogin(role_id="role-id-1234", secret_id=SECRET_ID)
    return VaultSession(VaultSettings(addr=url, timeout=timedelta(seconds=TIMEOUT), auth=auth))


def _token(url: str) -> VaultSession:
    return VaultSession(
        VaultSettings(addr=url, token=TOKEN, timeout=timedelta(seconds=TIMEOUT), auth=TokenLogin())
    )


LOGINS: dict[str, Callable[[str], VaultSession]] = {"approle": _approle, "token": _token}


@pytest.mark.parametrize(
    "behaviour", ["drip_headers", "drip_body", "silent", "huge_body", "endless_chunked"]
)
@pytest.mark.parametrize("method", sorted(LOGINS))
def test_a_login_is_bounded_as_every_store_call(behaviour: Behaviour, method: str) -> None:
    """Logins go through side clients: the same deadline and cap, one line naming
    VAULT_ADDR, never the secret ID or the token."""
    with HostileServer(behaviour, interval=0.1) as server:
        session = LOGINS[method](server.url)
        tracemalloc.start()
        try:
            error, elapsed = _timed(session.login)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            session.close()
    expected = ProtocolError if behaviour in ("huge_body", "endless_chunked") else StoreUnavailable
    assert isinstance(error, expected), error
    assert "VAULT_ADDR" in str(error)
    assert SECRET_ID not in str(error) and TOKEN not in str(error)
    assert elapsed < DEADLINE + SLACK
    assert peak < 4 * CAP
    if method == "approle" and server.seen:
        assert SECRET_ID.encode() in server.seen[0].body  # it was a real login attempt


# --- TLS: the handshake itself, and a pooled connection, dripped --------------------------


def _tls_context(folder: Path) -> ssl.SSLContext:
    """A CA (``ca.crt`` in ``folder``) and a server certificate for 127.0.0.1 it signed."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test vault CA")])

    def cert(subject: x509.Name, public: Any, *, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(ca_name)
            .public_key(public).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        return builder.sign(ca_key, hashes.SHA256())

    pem = serialization.Encoding.PEM
    ca_cert = cert(ca_name, ca_key.public_key(), ca=True)
    leaf = cert(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vault")]),
                key.public_key(), ca=False)
    (folder / "ca.crt").write_bytes(ca_cert.public_bytes(pem))
    (folder / "server.pem").write_bytes(
        leaf.public_bytes(pem)
        + key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "server.pem")
    return context


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, str]:
    """A server TLS context for 127.0.0.1, and the CA file that verifies it."""
    folder = tmp_path_factory.mktemp("tls")
    return _tls_context(folder), str(folder / "ca.crt")


@dataclass
class TlsHostileServer(HostileServer):
    """A :class:`HostileServer` behind TLS: each drip is a TLS record of its own, and
    ``ssl``'s own per-record timeout never trips."""

    context: ssl.SSLContext | None = None

    @property
    def url(self) -> str:
        return super().url.replace("http://", "https://", 1)

    def _serve(self, conn: socket.socket) -> None:
        assert self.context is not None
        conn.settimeout(5)
        try:
            wrapped = self.context.wrap_socket(conn, server_side=True)
        except OSError:
            conn.close()
            return
        super()._serve(wrapped)


@pytest.mark.parametrize("behaviour", ["drip_headers", "drip_body"])
def test_a_dripping_vault_behind_tls_cannot_hold_a_call(
    tls: tuple[ssl.SSLContext, str], behaviour: Behaviour
) -> None:
    """Over TLS too (the watchdog reaches the socket under ``ssl``), the call ends at its
    deadline as StoreUnavailable."""
    context, cacert = tls
    with TlsHostileServer(behaviour, interval=0.1, context=context) as server:
        url = server.url
        error, elapsed = _timed(lambda: _store(url, cacert=cacert).read("a/state"))
    assert isinstance(error, StoreUnavailable) and "within 1s" in str(error), error
    assert elapsed < DEADLINE + SLACK


@pytest.fixture
def tls_vault(tls: tuple[ssl.SSLContext, str]) -> Iterator[tuple[int, str]]:
    """A TLS server answering every request as Vault answers a path with nothing there
    (404, no errors): its port, and the CA file that verifies it."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: the client pools its connection

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            data = json.dumps({"errors": []}).encode()
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    context, cacert = tls
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], cacert
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_vault_cacert_is_trusted_and_nothing_else(tls_vault: tuple[int, str]) -> None:
    """VAULT_CACERT verifies Vault's certificate; without it the system CAs refuse it. Before,
    hvac let the session's default ``verify=True`` win, so VAULT_CACERT was ignored."""
    port, cacert = tls_vault
    url = f"https://127.0.0.1:{port}"
    assert _store(url, cacert=cacert).read("a") is None
    error, _ = _timed(lambda: _store(url).read("a"))
    assert isinstance(error, StoreUnavailable) and "SSLError" in str(error), error


def test_a_dripped_tls_handshake_ends_within_the_deadline(tls_vault: tuple[int, str]) -> None:
    """The server's half of the handshake arrives one byte every 0.1 s: the call ends within
    its deadline, as StoreUnavailable. (A guard: ``ssl`` already bounds a whole handshake by
    the socket timeout, and the watchdog's handle, taken before the handshake, must not
    disturb it.)"""
    port, cacert = tls_vault
    with Relay(("127.0.0.1", port), interval=0.1, mode="drip") as relay:
        error, elapsed = _timed(lambda: _store(relay.url("https"), cacert=cacert).read("a"))
    assert isinstance(error, StoreUnavailable) and "VAULT_ADDR" in str(error), error
    assert elapsed < DEADLINE + SLACK


def test_a_pooled_tls_connection_that_starts_dripping(tls_vault: tuple[int, str]) -> None:
    """Calls share one pooled TLS connection; when it starts dripping, the call in hand ends
    within its deadline, and once the server behaves the next call works, on a new
    connection: the broken one is never handed out again."""
    port, cacert = tls_vault
    with Relay(("127.0.0.1", port), interval=0.1) as relay:
        store = _store(relay.url("https"), cacert=cacert)
        assert store.read("a") is None and store.read("b") is None
        assert relay.connections == 1
        relay.mode = "drip"
        error, elapsed = _timed(lambda: store.read("c"))
        assert isinstance(error, StoreUnavailable) and elapsed < DEADLINE + SLACK
        relay.mode = "pass"
        assert store.read("d") is None
        assert relay.connections == 2


# --- a healthy Vault: the bounds cost nothing ---------------------------------------------


def test_concurrent_calls_on_pooled_connections_all_succeed(
    openbao: OpenBaoDev, vault_prefix: str
) -> None:
    """Four threads share one client's connection pool for 200 calls against the real
    OpenBao: every call succeeds (no watchdog touches a connection it no longer owns), and
    the watchdog thread ends once no call is in flight."""
    client = connect(openbao.addr, openbao.root_token, timeout=TIMEOUT)
    store = VaultStore(client, mount="secret", prefix=vault_prefix)
    before = threading.active_count()
    failures: list[BaseException] = []

    def work(n: int) -> None:
        try:
            version = 0
            for _ in range(25):
                version = store.write(f"w{n}", {"v": version}, cas=version)
                got = store.read(f"w{n}")
                assert got is not None and got.version == version
        except BaseException as exc:  # noqa: BLE001 - collected and reported below
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    client.adapter.close()
    assert not failures, failures[:3]
    # The shared watchdog thread ends after LINGER seconds with nothing armed.
    _until(lambda: threading.active_count() <= before, 10, "every watchdog thread gone")


def test_bounds_are_validated() -> None:
    """Nonsense bounds are refused at construction."""
    with pytest.raises(ValueError, match="seconds > 0"):
        VaultBounds(seconds=0)
    with pytest.raises(ValueError, match="max_answer_bytes > 0"):
        VaultBounds(seconds=1, max_answer_bytes=0)


# --- the daemon: Vault stalls mid-run -----------------------------------------------------

STALL = 8.0  # seconds Vault drips


def test_the_daemon_rides_out_a_vault_that_starts_dripping(
    openbao: OpenBaoDev, sandbox: SandboxHandle, vault_prefix: str
) -> None:
    """`rotator run` whose Vault (behind a relay) starts dripping: it stays up and healthy,
    turns unready, logs one transient check.failed per failed check (each within the deadline,
    backing off, no other error), is ready again once Vault behaves, and stops cleanly."""
    host, port = openbao.addr.removeprefix("http://").rsplit(":", 1)
    with Relay((host, int(port)), interval=0.3) as relay:
        env = base_env(
            openbao, vault_prefix, sandbox.url, **CALM_TIMINGS,
            VAULT_ADDR=relay.url(), VAULT_CLIENT_TIMEOUT="1s",
        )
        code, _, err = rotator_cli(
            ["bootstrap", "alpha", "--private-key-file", str(sandbox.bootstrap_key_file)], env
        )
        assert code == 0, err
        proc = Proc(["run"], env)
        http = httpx.Client(timeout=2, trust_env=False)
        try:
            _ride_out_a_stall(proc, relay, http)
            proc.popen.send_signal(signal.SIGTERM)
            assert proc.finish(timeout=10) == 0
        finally:
            http.close()
            proc.kill()
        proc.assert_all_json()


def _until(predicate: Callable[[], bool], seconds: float, what: str) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"not {what} within {seconds}s")


def _ride_out_a_stall(proc: Proc, relay: Relay, http: httpx.Client) -> None:
    assert proc.wait_for(lambda e: e.get("event") == "ops.listening", 15), proc.text()[-2000:]
    (listening,) = [e for e in proc.events() if e.get("event") == "ops.listening"]
    ops = f"http://{listening['host']}:{listening['port']}"

    def ready() -> bool:
        return http.get(f"{ops}/readyz").status_code == 200

    _until(ready, 15, "ready")
    already = len(proc.events())
    relay.mode = "drip"
    _until(lambda: not ready(), 2 * DEADLINE_FACTOR * 1.0 + 5, "unready once Vault drips")
    end = time.monotonic() + STALL
    while time.monotonic() < end:
        assert proc.popen.poll() is None, "the daemon exited while Vault dripped"
        assert http.get(f"{ops}/healthz").status_code == 200, "a stall is not a crash"
        assert not ready()
        time.sleep(0.25)
    during = proc.events()[already:]
    relay.mode = "pass"
    _until(ready, 30, "ready again once Vault behaves")

    failed = [e for e in during if e.get("event") == "check.failed"]
    assert failed, "no check.failed while Vault dripped"
    for e in failed:
        assert e["error_kind"] == "transient" and e["error_type"] == "StoreUnavailable", e
        assert "did not answer: no complete answer within 2s" in e["error"], e
    # One line per failed check, each check held at most one deadline, then backed off:
    # far fewer than one per check interval (300 ms).
    assert len(failed) <= STALL / 2 + 2, [e["failures"] for e in failed]
    assert [e["failures"] for e in failed] == list(range(1, len(failed) + 1))
    others = [
        e for e in during
        if e.get("level") in ("error", "critical") and e.get("event") != "check.failed"
    ]
    assert not others, others[:3]
