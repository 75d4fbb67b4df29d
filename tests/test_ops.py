"""Health and metrics: the Metrics registry, the ops HTTP server, and both wired into a real
daemon against OpenBao and the sandbox."""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from rotator.adapters.encord.client import RetryPolicy
from rotator.adapters.encord.registry import registry_factory
from rotator.core.admin import bootstrap
from rotator.core.engine import CheckResult
from rotator.core.errors import ConfigError
from rotator.core.policy import Blocked
from rotator.core.state import AccountState, BearerState, KeyRecord, KindState
from rotator.dev.openbao import OpenBaoDev
from rotator.dev.sandbox import Faults
from rotator.runtime import logs
from rotator.runtime.config import from_env
from rotator.runtime.daemon import Daemon
from rotator.runtime.endpoints import OpsServer
from rotator.runtime.metrics import Metrics
from tests.e2e import Proc, base_env
from tests.fixtures_sandbox import MakeSandbox
from tests.secret_scan import assert_no_secrets

T0 = datetime(2030, 1, 1, tzinfo=UTC)

# The outcome label values of rotator_rotations_total, written out here on purpose: the
# metric's contract, which the vocabulary the code builds them from must keep.
ROTATION_OUTCOMES = ("rotated", "failed", "blocked_by_cap", "rolled_back")
ERROR_KIND_LABELS = ("transient", "access_denied", "permanent", "internal")

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, keyed by (name, sorted labels)."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, tuple(sorted(labels.items()))))


def scrape(metrics: Metrics) -> Samples:
    body, _ = metrics.render()
    return samples(body.decode())


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.now = start.timestamp()

    def __call__(self) -> float:
        return self.now


def key(kind: str, issued: datetime, ttl: timedelta) -> KeyRecord:
    return KeyRecord(
        key_id=f"{kind}-id",
        key_hash=f"{kind}-hash",
        public_key="ssh-ed25519 AAAA-not-a-real-key",
        title="rotator:alpha:test",
        origin="uploaded",
        issued_at=issued,
        expires_at=issued + ttl,
        private_key="placeholder, not a key",
    )


def state(*, with_api: bool = False, bearer: bool = True) -> AccountState:
    kinds = {
        "ssh-key": KindState(
            current=key("ssh-key", T0 - timedelta(days=10), timedelta(days=90)),
            last_success=T0 - timedelta(days=10),
        )
    }
    if with_api:
        kinds["api-key"] = KindState(current=key("api-key", T0, timedelta(days=30)))
    token = BearerState(T0, T0 + timedelta(hours=1), minted_with="ssh-key-id")
    return AccountState(kinds=kinds, bearer=token if bearer else None, version=3)


# --- Metrics ---------------------------------------------------------------------------------


def test_fresh_metrics_have_zeroed_counters_cap_and_up() -> None:
    """Before any check: every rotation and error counter is 0, cap and up are set, not ready."""
    m = Metrics(["alpha", "beta"], key_cap=5, kinds=("ssh-key", "api-key"))
    found = scrape(m)
    assert value(found, "rotator_up") == 1
    for account in ("alpha", "beta"):
        assert value(found, "rotator_key_cap", account=account) == 5
        assert value(found, "rotator_ready", account=account) == 0
        for kind in ("ssh-key", "api-key"):
            for outcome in ROTATION_OUTCOMES:
                labels = {"account": account, "credential": kind, "outcome": outcome}
                assert value(found, "rotator_rotations_total", **labels) == 0
        for error_kind in ERROR_KIND_LABELS:
            assert value(found, "rotator_errors_total", account=account, kind=error_kind) == 0
    names = {name for name, _ in found}
    assert "rotator_key_age_seconds" not in names  # no key known yet
    assert "rotator_keys_at_encord" not in names
    assert "rotator_lease_held" not in names


def test_after_check_records_rotations_keys_and_times() -> None:
    """A check's rotations, keys held, key times, last success and bearer expiry are exposed."""
    clock = FakeClock(T0)
    m = Metrics(["alpha"], key_cap=5, kinds=("ssh-key", "api-key"), clock=clock)
    result = CheckResult(
        account="alpha",
        outcomes=["rotated", "bearer_minted"],
        keys_held=3,
        rotations=[("ssh-key", "rotated")],
        state=state(with_api=True),
    )
    m.after_check("alpha", result, T0)
    found = scrape(m)
    rotated = {"account": "alpha", "credential": "ssh-key", "outcome": "rotated"}
    assert value(found, "rotator_rotations_total", **rotated) == 1
    assert value(found, "rotator_rotations_total", **{**rotated, "outcome": "failed"}) == 0
    assert value(found, "rotator_keys_at_encord", account="alpha") == 3
    assert value(found, "rotator_key_cap", account="alpha") == 5
    ssh = {"account": "alpha", "credential": "ssh-key"}
    api = {"account": "alpha", "credential": "api-key"}
    assert value(found, "rotator_key_age_seconds", **ssh) == 10 * 86400
    assert value(found, "rotator_key_expiry_seconds", **ssh) == 80 * 86400
    assert value(found, "rotator_key_age_seconds", **api) == 0
    assert value(found, "rotator_key_expiry_seconds", **api) == 30 * 86400
    ten_days_ago = (T0 - timedelta(days=10)).timestamp()
    assert value(found, "rotator_last_success_timestamp_seconds", **ssh) == ten_days_ago
    bearer = {"account": "alpha", "credential": "bearer-token"}
    assert value(found, "rotator_last_success_timestamp_seconds", **bearer) == T0.timestamp()
    assert value(found, "rotator_bearer_token_expiry_seconds", account="alpha") == 3600
    assert value(found, "rotator_check_last_timestamp_seconds", account="alpha") == T0.timestamp()
    assert value(found, "rotator_ready", account="alpha") == 1


def test_key_age_and_expiry_move_between_checks() -> None:
    """Age and time to expiry are computed at scrape time, and expiry goes negative."""
    clock = FakeClock(T0)
    m = Metrics(["alpha"], key_cap=5, clock=clock)
    m.after_check("alpha", CheckResult(account="alpha", keys_held=1, state=state()), T0)
    ssh = {"account": "alpha", "credential": "ssh-key"}
    clock.now += 3600
    found = scrape(m)
    assert value(found, "rotator_key_age_seconds", **ssh) == 10 * 86400 + 3600
    assert value(found, "rotator_key_expiry_seconds", **ssh) == 80 * 86400 - 3600
    clock.now = (T0 + timedelta(days=81)).timestamp()
    found = scrape(m)
    assert value(found, "rotator_key_expiry_seconds", **ssh) == -86400
    assert value(found, "rotator_bearer_token_expiry_seconds", account="alpha") < 0  # type: ignore[operator]


def test_a_newer_state_replaces_the_key_series_of_its_account_only() -> None:
    """A kind gone from the record loses its series; other accounts keep theirs."""
    m = Metrics(["alpha", "beta"], key_cap=5, kinds=("ssh-key", "api-key"), clock=FakeClock(T0))
    m.after_check("alpha", CheckResult(account="alpha", state=state(with_api=True)), T0)
    m.after_check("beta", CheckResult(account="beta", state=state(with_api=True)), T0)
    m.after_check("alpha", CheckResult(account="alpha", state=state(bearer=False)), T0)
    found = scrape(m)
    api = {"credential": "api-key"}
    assert value(found, "rotator_key_age_seconds", account="alpha", **api) is None
    assert value(found, "rotator_key_age_seconds", account="beta", **api) == 0
    assert value(found, "rotator_bearer_token_expiry_seconds", account="alpha") is None
    assert value(found, "rotator_bearer_token_expiry_seconds", account="beta") == 3600


def test_a_standby_replica_is_ready_and_exports_no_key_series() -> None:
    """Standing by (another replica holds the lease) is ready, not a failure, and drops what
    this replica last knew of the account's keys, so stale expiry cannot raise an alert."""
    m = Metrics(["alpha", "beta"], key_cap=5, kinds=("ssh-key", "api-key"), clock=FakeClock(T0))
    m.set_lease_held("alpha", True)
    m.after_check("alpha", CheckResult(account="alpha", keys_held=2, state=state()), T0)
    m.after_check("beta", CheckResult(account="beta", keys_held=2, state=state()), T0)
    later = T0 + timedelta(minutes=5)
    m.stand_by("alpha", later)
    found = scrape(m)
    assert value(found, "rotator_ready", account="alpha") == 1
    assert value(found, "rotator_lease_held", account="alpha") == 0
    assert value(found, "rotator_check_last_timestamp_seconds", account="alpha") == (
        later.timestamp()
    )
    ssh = {"credential": "ssh-key"}
    for name in ("rotator_key_age_seconds", "rotator_key_expiry_seconds"):
        assert value(found, name, account="alpha", **ssh) is None
        assert value(found, name, account="beta", **ssh) is not None
    assert value(found, "rotator_bearer_token_expiry_seconds", account="alpha") is None
    assert value(found, "rotator_keys_at_encord", account="alpha") is None
    assert value(found, "rotator_keys_at_encord", account="beta") == 2
    for credential in ("ssh-key", "bearer-token"):
        labels = {"account": "alpha", "credential": credential}
        assert value(found, "rotator_last_success_timestamp_seconds", **labels) is None
    m.stand_by("alpha", later)  # again: nothing left to drop, no error


def test_build_info_and_process_metrics() -> None:
    """rotator_build_info names the running version and Python; the private registry carries
    the standard process_* and python_* families too."""
    import platform

    from rotator import __version__

    found = scrape(Metrics(["alpha"], key_cap=5))
    labels = {"version": __version__, "python": platform.python_version()}
    assert value(found, "rotator_build_info", **labels) == 1
    assert value(found, "process_start_time_seconds") is not None
    assert (value(found, "process_resident_memory_bytes") or 0) > 0


def test_blocked_by_cap_is_counted_once_whether_engine_or_policy_blocked() -> None:
    """A policy block (no rotation started) and an Encord KEY_LIMIT refusal each count once
    (the engine reports both in ``rotations``; a dry run's planned block counts nothing)."""
    m = Metrics(["alpha"], key_cap=2, clock=FakeClock(T0))
    labels = {"account": "alpha", "credential": "ssh-key", "outcome": "blocked_by_cap"}
    policy_block = CheckResult(
        account="alpha",
        actions=[Blocked(kind="ssh-key", reason="blocked_by_cap", detail="2/2 keys")],
        outcomes=["blocked_by_cap"],
        rotations=[("ssh-key", "blocked_by_cap")],
        state=state(),
    )
    m.after_check("alpha", policy_block, T0)
    assert value(scrape(m), "rotator_rotations_total", **labels) == 1
    engine_block = CheckResult(
        account="alpha",
        outcomes=["blocked_by_cap"],
        rotations=[("ssh-key", "blocked_by_cap")],
        state=state(),
    )
    m.after_check("alpha", engine_block, T0)
    assert value(scrape(m), "rotator_rotations_total", **labels) == 2
    dry_run = CheckResult(account="alpha", actions=list(policy_block.actions))  # planned only
    m.after_check("alpha", dry_run, T0)
    assert value(scrape(m), "rotator_rotations_total", **labels) == 2


def test_check_failed_counts_errors_by_kind_and_clears_ready() -> None:
    """A failed check adds to errors_total{kind}, stamps the check time and sets ready 0."""
    clock = FakeClock(T0)
    m = Metrics(["alpha"], key_cap=5, clock=clock)
    m.after_check("alpha", CheckResult(account="alpha", state=state()), T0)
    clock.now += 60
    m.check_failed("alpha", "transient")
    m.check_failed("alpha", "transient")
    m.check_failed("alpha", "access_denied", T0 + timedelta(minutes=5))
    found = scrape(m)
    assert value(found, "rotator_errors_total", account="alpha", kind="transient") == 2
    assert value(found, "rotator_errors_total", account="alpha", kind="access_denied") == 1
    assert value(found, "rotator_errors_total", account="alpha", kind="permanent") == 0
    assert value(found, "rotator_ready", account="alpha") == 0
    last = value(found, "rotator_check_last_timestamp_seconds", account="alpha")
    assert last == (T0 + timedelta(minutes=5)).timestamp()
    # Key times survive a failed check: they are what Vault holds.
    ssh = {"account": "alpha", "credential": "ssh-key"}
    assert value(found, "rotator_key_age_seconds", **ssh) == 10 * 86400 + 60


def test_not_bootstrapped_check_is_not_ready_and_leaves_keys_unknown() -> None:
    """A check of an account never bootstrapped: ready 0 and no keys_at_encord guess."""
    m = Metrics(["alpha"], key_cap=5)
    m.after_check("alpha", CheckResult(account="alpha", outcomes=["not_bootstrapped"]), T0)
    found = scrape(m)
    assert value(found, "rotator_ready", account="alpha") == 0
    assert value(found, "rotator_keys_at_encord", account="alpha") is None
    assert value(found, "rotator_check_last_timestamp_seconds", account="alpha") == T0.timestamp()


def test_lease_held_gauge_follows_set_lease_held() -> None:
    """set_lease_held sets rotator_lease_held to 1 and back to 0."""
    m = Metrics(["alpha"], key_cap=5)
    m.set_lease_held("alpha", True)
    assert value(scrape(m), "rotator_lease_held", account="alpha") == 1
    m.set_lease_held("alpha", False)
    assert value(scrape(m), "rotator_lease_held", account="alpha") == 0


def test_two_instances_do_not_clash_and_leave_the_global_registry_alone() -> None:
    """Each Metrics has its own registry: no duplicate-name error, no shared values."""
    a = Metrics(["alpha"], key_cap=5)
    b = Metrics(["alpha"], key_cap=7)
    a.check_failed("alpha", "internal")
    assert value(scrape(a), "rotator_errors_total", account="alpha", kind="internal") == 1
    assert value(scrape(b), "rotator_errors_total", account="alpha", kind="internal") == 0
    assert value(scrape(b), "rotator_key_cap", account="alpha") == 7
    assert REGISTRY.get_sample_value("rotator_up") is None


def test_render_speaks_openmetrics_when_asked() -> None:
    """An OpenMetrics Accept header gets OpenMetrics (with # EOF); otherwise Prometheus text."""
    m = Metrics(["alpha"], key_cap=5)
    body, content_type = m.render("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.decode().rstrip().endswith("# EOF")
    body, content_type = m.render(None)
    assert content_type.startswith("text/plain")
    assert "# EOF" not in body.decode()


# --- OpsServer -------------------------------------------------------------------------------


class Probes:
    def __init__(self) -> None:
        self.healthy = True
        self.ready = False
        self.crash = False

    def health(self) -> tuple[bool, dict[str, Any]]:
        if self.crash:
            raise RuntimeError("probe bug with a detail that must not be shown")
        return self.healthy, {"problems": [] if self.healthy else ["stopping"]}

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        return self.ready, {"accounts": {"alpha": {"ready": self.ready}}}


@pytest.fixture
def served() -> Iterator[tuple[OpsServer, Probes, str]]:
    probes = Probes()
    metrics = Metrics(["alpha"], key_cap=5)
    server = OpsServer(
        "127.0.0.1", 0, metrics=metrics, healthy=probes.health, ready=probes.readiness
    )
    host, port = server.start()
    try:
        yield server, probes, f"http://{host}:{port}"
    finally:
        server.stop()


def test_server_answers_health_ready_metrics_and_404(
    served: tuple[OpsServer, Probes, str], capfd: pytest.CaptureFixture[str]
) -> None:
    """/healthz and /readyz follow their probes (200/503, JSON); /metrics parses; else 404."""
    server, probes, url = served
    assert server.address is not None and server.address[1] != 0
    with capture_logs() as events, httpx.Client(base_url=url, timeout=5) as client:
        r = client.get("/healthz")
        assert r.status_code == 200 and r.json() == {"status": "ok", "problems": []}
        r = client.get("/readyz")
        assert r.status_code == 503
        assert r.json() == {"status": "not_ready", "accounts": {"alpha": {"ready": False}}}
        assert r.headers["content-type"] == "application/json"
        probes.ready, probes.healthy = True, False
        assert client.get("/readyz").status_code == 200
        r = client.get("/healthz")
        assert r.status_code == 503 and r.json()["status"] == "unhealthy"
        r = client.get("/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        assert value(samples(r.text), "rotator_key_cap", account="alpha") == 5
        r = client.get("/metrics?x=1")
        assert r.status_code == 200
        for path in ("/", "/metricsx", "/healthz/extra"):
            r = client.get(path)
            assert r.status_code == 404 and r.json()["status"] == "not_found"
        r = client.head("/healthz")
        assert r.status_code == 503 and r.content == b""
        assert client.post("/healthz").status_code == 501
    assert "Python" not in r.headers.get("server", "")
    # No request line reaches stderr; http.server's chatter goes to debug events.
    out, err = capfd.readouterr()
    assert err == "" and out == ""
    assert any(e["event"] == "ops.http" and e["log_level"] == "debug" for e in events)


def test_a_crashing_probe_gives_500_without_its_text(
    served: tuple[OpsServer, Probes, str],
) -> None:
    """A probe that raises: 500, an ops.probe_crashed event with the type, no message text."""
    _, probes, url = served
    probes.crash = True
    with capture_logs() as events:
        r = httpx.get(f"{url}/healthz", timeout=5)
    assert r.status_code == 500 and r.json() == {"status": "error"}
    crashed = [e for e in events if e["event"] == "ops.probe_crashed"]
    assert crashed and crashed[0]["error_type"] == "RuntimeError"
    assert "must not be shown" not in r.text


def test_stop_closes_the_port_and_is_idempotent(served: tuple[OpsServer, Probes, str]) -> None:
    """After stop() nothing listens on the port; a second stop() is harmless."""
    server, _, _ = served
    address = server.address
    assert address is not None
    server.stop()
    server.stop()
    assert server.address is None
    with pytest.raises(ConnectionRefusedError), socket.create_connection(address, timeout=2):
        pass


def test_start_twice_is_refused_and_a_busy_port_raises_oserror() -> None:
    """start() on a started server raises; binding a port someone holds raises OSError."""
    metrics = Metrics(["alpha"], key_cap=5)
    probes = Probes()
    first = OpsServer(
        "127.0.0.1", 0, metrics=metrics, healthy=probes.health, ready=probes.readiness
    )
    _, port = first.start()
    try:
        with pytest.raises(RuntimeError):
            first.start()
        second = OpsServer(
            "127.0.0.1", port, metrics=metrics, healthy=probes.health, ready=probes.readiness
        )
        with pytest.raises(OSError):
            second.start()
    finally:
        first.stop()


def test_server_listens_on_ipv6_loopback() -> None:
    """An IPv6 host ('::1', as ROTATOR_HTTP_ADDR='[::1]:0' gives) is served over IPv6."""
    probes = Probes()
    server = OpsServer(
        "::1", 0, metrics=Metrics([], key_cap=5), healthy=probes.health, ready=probes.readiness
    )
    host, port = server.start()
    try:
        assert host == "::1" and port > 0
        assert httpx.get(f"http://[::1]:{port}/healthz", timeout=5).status_code == 200
    finally:
        server.stop()


# --- wired into the daemon -------------------------------------------------------------------


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_daemon_busy_http_addr_is_a_config_error_naming_the_variable(
    openbao: OpenBaoDev, vault_prefix: str
) -> None:
    """A ROTATOR_HTTP_ADDR someone else holds: start() raises ConfigError, nothing scheduled."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = base_env(
            openbao, vault_prefix, "http://127.0.0.1:9", ROTATOR_HTTP_ADDR=f"127.0.0.1:{port}"
        )
        daemon = Daemon(from_env(env))
        with pytest.raises(ConfigError, match="ROTATOR_HTTP_ADDR: cannot listen on 127.0.0.1"):
            daemon.start()
    assert not daemon.scheduler.running
    assert daemon.ops_port is None


def test_run_on_a_busy_http_addr_exits_2_with_one_json_line(
    openbao: OpenBaoDev, vault_prefix: str, make_sandbox: MakeSandbox
) -> None:
    """`rotator run` whose ROTATOR_HTTP_ADDR is taken: exit 2, a JSON line naming it."""
    handle = make_sandbox()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = base_env(openbao, vault_prefix, handle.url, ROTATOR_HTTP_ADDR=f"127.0.0.1:{port}")
        proc = Proc(["run"], env)
        rc = proc.finish(timeout=20)
    assert rc == 2
    proc.assert_all_json()
    errors = [e for e in proc.events() if e.get("level") == "error"]
    assert len(errors) == 1 and f"ROTATOR_HTTP_ADDR: cannot listen on 127.0.0.1:{port}" in str(
        errors[0]
    )


def test_run_serves_the_endpoints_and_keeps_every_line_json(
    openbao: OpenBaoDev, vault_prefix: str, make_sandbox: MakeSandbox
) -> None:
    """`rotator run` on port 0 logs the picked port; requests, bad ones included, print no
    non-JSON line; SIGTERM still exits 0."""
    handle = make_sandbox()
    env = base_env(openbao, vault_prefix, handle.url, ROTATOR_LOG_LEVEL="debug")
    proc = Proc(["run"], env)
    try:
        assert proc.wait_for(lambda e: e.get("event") == "ops.listening", 20), proc.text()[-2000:]
        port = next(e["port"] for e in proc.events() if e["event"] == "ops.listening")
        assert isinstance(port, int) and port > 0
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            assert client.get("/healthz").status_code == 200
            assert client.get("/nope").status_code == 404
            assert "rotator_up 1.0" in client.get("/metrics").text
            # Not bootstrapped: checked, but Encord was never asked.
            _wait(lambda: client.get("/readyz").json()["accounts"]["alpha"]["reason"]
                  == "not_bootstrapped", 10, "a first check")
            assert client.get("/readyz").status_code == 503
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            raw.sendall(b"BREW /pot HTTP/1.0\r\n\r\n")  # http.server answers 501, logs an error
            assert raw.recv(100).startswith(b"HTTP/1.0 501")
        assert proc.wait_for(lambda e: e.get("event") == "ops.http", 5)
        proc.popen.send_signal(signal.SIGTERM)
        assert proc.finish(timeout=10) == 0
    finally:
        proc.kill()
    proc.assert_all_json()


def test_daemon_serves_health_readiness_and_metrics_through_an_outage(
    openbao: OpenBaoDev, vault_prefix: str, make_sandbox: MakeSandbox
) -> None:
    """Real daemon: healthy; not ready until checked; rotations and key gauges exported; an
    Encord outage makes it not ready and counts errors; recovery makes it ready again."""
    handle = make_sandbox()
    settings = from_env(base_env(openbao, vault_prefix, handle.url))
    quick = RetryPolicy(attempts=2, base_delay=0.05, max_delay=0.1)
    daemon = Daemon(settings, factory=registry_factory(handle.url, retry=quick))
    bootstrap(daemon.engines["alpha"].context, handle.bootstrap_key_file.read_text())
    health = daemon.health["alpha"]
    texts: list[str] = []

    def get(client: httpx.Client, path: str) -> httpx.Response:
        r = client.get(path)
        texts.append(r.text)
        return r

    def metric(client: httpx.Client, name: str, **labels: str) -> float | None:
        return value(samples(get(client, "/metrics").text), name, **labels)

    assert daemon.ops_port is None
    health.lock.acquire()  # hold the first check back: the account is "never checked"
    held = True
    with capture_logs() as events:
        daemon.start()
        try:
            port = daemon.ops_port
            assert port is not None and port != 0
            listening = [e for e in events if e["event"] == "ops.listening"]
            assert listening == [
                {
                    "event": "ops.listening",
                    "log_level": "info",
                    "host": "127.0.0.1",
                    "port": port,
                    "paths": ["/healthz", "/readyz", "/metrics"],
                }
            ]
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
                r = get(client, "/healthz")
                assert r.status_code == 200 and r.json() == {"status": "ok", "problems": []}
                r = get(client, "/readyz")
                assert r.status_code == 503
                alpha = r.json()["accounts"]["alpha"]
                assert alpha["ready"] is False and alpha["reason"] == "never_checked"

                # A check running far too long makes the process unhealthy.
                health.running_since = time.monotonic() - 10
                daemon.stuck_after = timedelta(seconds=5)
                r = get(client, "/healthz")
                assert r.status_code == 503 and "check_stuck:alpha" in r.json()["problems"]
                health.running_since = None
                daemon.stuck_after = timedelta(minutes=30)
                health.lock.release()
                held = False

                _wait(lambda: get(client, "/readyz").status_code == 200, 10, "ready")
                alpha = json.loads(texts[-1])["accounts"]["alpha"]
                assert alpha["vault"] is True and alpha["encord"] is True
                rotated = {"account": "alpha", "credential": "ssh-key", "outcome": "rotated"}
                _wait(
                    lambda: (metric(client, "rotator_rotations_total", **rotated) or 0) >= 1,
                    15,
                    "a rotation",
                )
                found = samples(get(client, "/metrics").text)
                ssh = {"account": "alpha", "credential": "ssh-key"}
                held_keys = value(found, "rotator_keys_at_encord", account="alpha")
                assert held_keys is not None and 1 <= held_keys <= 5
                assert value(found, "rotator_key_cap", account="alpha") == 5
                expiry = value(found, "rotator_key_expiry_seconds", **ssh)
                assert expiry is not None and -1 < expiry <= 3  # KEY_TTL is 3s in FAST_TIMINGS
                age = value(found, "rotator_key_age_seconds", **ssh)
                assert age is not None and 0 <= age < 5
                last = value(found, "rotator_last_success_timestamp_seconds", **ssh)
                assert last is not None and abs(time.time() - last) < 10
                assert value(found, "rotator_ready", account="alpha") == 1
                assert value(found, "rotator_up") == 1
                transient = {"account": "alpha", "kind": "transient"}
                errors_before = value(found, "rotator_errors_total", **transient)
                assert errors_before == 0

                handle.sandbox.faults = Faults(error_rate=1.0)
                _wait(lambda: get(client, "/readyz").status_code == 503, 10, "not ready")
                alpha = json.loads(texts[-1])["accounts"]["alpha"]
                assert alpha["reason"] == "check_failed" and alpha["error_kind"] == "transient"
                assert alpha["encord"] is False and alpha["vault"] is True
                assert (metric(client, "rotator_errors_total", **transient) or 0) >= 1
                assert metric(client, "rotator_ready", account="alpha") == 0
                assert get(client, "/healthz").status_code == 200  # an outage is not a crash

                handle.sandbox.faults = Faults()
                _wait(lambda: get(client, "/readyz").status_code == 200, 15, "ready again")
                assert metric(client, "rotator_ready", account="alpha") == 1
        finally:
            if held:
                health.lock.release()
            daemon.stop()
            logs.reset()
    with pytest.raises(ConnectionRefusedError), socket.create_connection(
        ("127.0.0.1", port), timeout=2
    ):
        pass
    assert_no_secrets("\n".join(texts), "ops endpoints")
