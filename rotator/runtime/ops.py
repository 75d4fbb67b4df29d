"""Health and metrics: what the daemon tells an orchestrator and Prometheus.

:class:`Metrics` owns its own :class:`prometheus_client.CollectorRegistry` (never the global
one, so tests and several daemons in one process do not clash). The daemon feeds it after
every check (:meth:`Metrics.after_check`, :meth:`Metrics.check_failed`); key age and time to
expiry are computed when Prometheus scrapes, from the issue and expiry times the last check
saw, so they move between checks.

:class:`OpsServer` serves three paths over plain HTTP:

- ``/healthz``: 200 ``{"status": "ok", ...}`` while the process and its scheduler are alive,
  else 503 (restart me);
- ``/readyz``: 200 when Vault and Encord answered every account's last check, else 503, with
  one entry per account saying which answered;
- ``/metrics``: the registry in Prometheus text format (or OpenMetrics, if asked for).

Anything else is 404. Requests are logged through structlog at debug level only, never to
stderr, so in ``json`` mode every line the process writes stays JSON.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from rotator.core.engine import CheckResult
from rotator.core.errors import ERROR_KINDS
from rotator.core.state import AccountState
from rotator.core.vocab import KEY_KINDS, ROTATION_RESULTS

log = structlog.get_logger("rotator.ops")

# Label values set up at 0 so that ``increase()`` sees the first one: the outcomes a rotation
# attempt can end in (engine ``rotation.finished``), and the error kinds of ``check.failed``.
ROTATION_OUTCOMES: Final = ROTATION_RESULTS

Probe = Callable[[], tuple[bool, dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class _Times:
    """Issue and expiry time of one credential, as UNIX seconds."""

    issued_at: float
    expires_at: float


class _ScrapeTimeCollector:
    """Key age and seconds to expiry, computed from the last known times at each scrape."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        return self._families(self._metrics.clock())

    def _families(self, now: float | None = None) -> list[Metric]:
        age = GaugeMetricFamily(
            "rotator_key_age_seconds",
            "Seconds since the current key of this credential was issued.",
            labels=["account", "credential"],
        )
        expiry = GaugeMetricFamily(
            "rotator_key_expiry_seconds",
            "Seconds until the current key of this credential expires (negative: expired).",
            labels=["account", "credential"],
        )
        bearer = GaugeMetricFamily(
            "rotator_bearer_token_expiry_seconds",
            "Seconds until the bearer token in Vault expires (negative: expired).",
            labels=["account"],
        )
        if now is not None:
            keys, tokens = self._metrics._times_snapshot()
            for (account, credential), t in sorted(keys.items()):
                age.add_metric([account, credential], now - t.issued_at)
                expiry.add_metric([account, credential], t.expires_at - now)
            for account, t in sorted(tokens.items()):
                bearer.add_metric([account], t.expires_at - now)
        return [age, expiry, bearer]


class Metrics:
    """The daemon's Prometheus metrics, in a registry of their own (:attr:`registry`).

    ``accounts`` and ``kinds`` (the rotated key kinds) are known up front so that counters
    start at 0 for every label set an alert may watch.
    """

    def __init__(
        self,
        accounts: Sequence[str],
        *,
        key_cap: int,
        kinds: Iterable[str] = ("ssh-key",),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.clock = clock
        self.registry = CollectorRegistry(auto_describe=True)
        self._lock = threading.Lock()
        self._keys: dict[tuple[str, str], _Times] = {}
        self._tokens: dict[str, _Times] = {}
        r = self.registry
        self.rotations = Counter(
            "rotator_rotations",
            "Rotation attempts by account, credential and outcome.",
            ["account", "credential", "outcome"],
            registry=r,
        )
        self.errors = Counter(
            "rotator_errors",
            "Failed checks by account and error kind.",
            ["account", "kind"],
            registry=r,
        )
        self.keys_at_encord = Gauge(
            "rotator_keys_at_encord",
            "Keys the account holds at Encord (any owner), as of the last full check.",
            ["account"],
            registry=r,
        )
        self.key_cap = Gauge(
            "rotator_key_cap", "Keys the account may hold at Encord.", ["account"], registry=r
        )
        self.last_success = Gauge(
            "rotator_last_success_timestamp_seconds",
            "When this credential was last rotated (bearer-token: minted) successfully.",
            ["account", "credential"],
            registry=r,
        )
        self.lease_held = Gauge(
            "rotator_lease_held",
            "1 while this replica holds the account's lease, else 0.",
            ["account"],
            registry=r,
        )
        self.check_last = Gauge(
            "rotator_check_last_timestamp_seconds",
            "When the account's last check ended, successful or not.",
            ["account"],
            registry=r,
        )
        self.ready = Gauge(
            "rotator_ready",
            "1 when Vault and Encord answered the account's last check, else 0.",
            ["account"],
            registry=r,
        )
        self.up = Gauge("rotator_up", "1 while the daemon runs.", registry=r)
        r.register(_ScrapeTimeCollector(self))

        self.up.set(1)
        kinds = tuple(kinds)
        for account in accounts:
            self.key_cap.labels(account).set(key_cap)
            self.ready.labels(account).set(0)
            for kind in kinds:
                for outcome in ROTATION_OUTCOMES:
                    self.rotations.labels(account, kind, outcome)
            for error_kind in ERROR_KINDS:
                self.errors.labels(account, error_kind)

    # --- updates from the daemon --------------------------------------------------------------

    def after_check(self, account: str, result: CheckResult, now: datetime) -> None:
        """Record a check that ended without an error."""
        for kind, outcome in result.rotations:
            self.rotations.labels(account, kind, outcome).inc()
        state = result.state
        if state is not None:
            self.keys_at_encord.labels(account).set(result.keys_held)
            self._record_state(account, state)
        self.check_last.labels(account).set(now.timestamp())
        self.ready.labels(account).set(0 if "not_bootstrapped" in result.outcomes else 1)

    def check_failed(self, account: str, kind: str, now: datetime | None = None) -> None:
        """Record a failed check; ``kind`` is one of :data:`ERROR_KINDS`."""
        self.errors.labels(account, kind).inc()
        self.check_last.labels(account).set(now.timestamp() if now else self.clock())
        self.ready.labels(account).set(0)

    def set_lease_held(self, account: str, held: bool) -> None:
        """Record whether this replica holds ``account``'s lease."""
        self.lease_held.labels(account).set(1 if held else 0)

    def _record_state(self, account: str, state: AccountState) -> None:
        keys: dict[tuple[str, str], _Times] = {}
        for kind in KEY_KINDS:
            ks = state.kind(kind)
            if ks.current is not None:
                keys[(account, kind)] = _Times(
                    ks.current.issued_at.timestamp(), ks.current.expires_at.timestamp()
                )
            if ks.last_success is not None:
                self.last_success.labels(account, kind).set(ks.last_success.timestamp())
        bearer = state.bearer
        if bearer is not None:
            self.last_success.labels(account, "bearer-token").set(bearer.issued_at.timestamp())
        with self._lock:
            for key in [k for k in self._keys if k[0] == account]:
                del self._keys[key]
            self._keys.update(keys)
            if state.bearer is not None:
                self._tokens[account] = _Times(
                    state.bearer.issued_at.timestamp(), state.bearer.expires_at.timestamp()
                )
            else:
                self._tokens.pop(account, None)

    def _times_snapshot(self) -> tuple[dict[tuple[str, str], _Times], dict[str, _Times]]:
        with self._lock:
            return dict(self._keys), dict(self._tokens)

    # --- rendering ----------------------------------------------------------------------------

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The registry as ``(body, content type)``: Prometheus text, or OpenMetrics when
        ``accept`` (an HTTP Accept header) asks for it."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


# --- the HTTP server ------------------------------------------------------------------------


def _json(ok: bool, details: dict[str, Any], bad: str) -> bytes:
    body = {"status": "ok" if ok else bad, **details}
    return (json.dumps(body, sort_keys=True, default=str) + "\n").encode()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "rotator"
    sys_version = ""  # do not advertise the Python version
    protocol_version = "HTTP/1.0"
    timeout = 10  # seconds: an idle or slow client does not hold a thread for long

    def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
        self._answer(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(head=True)

    def _answer(self, *, head: bool) -> None:
        path = self.path.split("?", 1)[0]
        ops = self.server.ops
        try:
            if path == "/metrics":
                body, content_type = ops.metrics.render(self.headers.get("Accept"))
                status = 200
            else:
                content_type = "application/json"
                if path == "/healthz":
                    ok, details = ops.healthy()
                    body, status = _json(ok, details, "unhealthy"), 200 if ok else 503
                elif path == "/readyz":
                    ok, details = ops.ready()
                    body, status = _json(ok, details, "not_ready"), 200 if ok else 503
                else:
                    body, status = _json(False, {"path": path[:200]}, "not_found"), 404
        except Exception as exc:
            # A bug in a probe: answer 500 and log its type (never its text).
            log.exception("ops.probe_crashed", path=path, error_type=type(exc).__name__)
            body, content_type, status = _json(False, {}, "error"), "application/json", 500
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
        # http.server writes every request and error to stderr; route them to debug logs.
        log.debug("ops.http", client=self.client_address[0], message=format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a hung client never keeps the process alive
    block_on_close = False
    allow_reuse_address = True
    ops: OpsServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver prints a traceback to stderr (e.g. a client that hangs up mid-answer);
        # in json mode every line must be JSON, so it goes to the debug log instead.
        log.debug("ops.connection_error", client=str(client_address[0]), exc_info=True)


class OpsServer:
    """``/healthz``, ``/readyz`` and ``/metrics`` on ``host:port`` (port 0: a free one).

    ``healthy`` and ``ready`` return ``(ok, details)``; ``details`` goes into the JSON body.
    Served by the standard library's threading HTTP server in a daemon thread.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        metrics: Metrics,
        healthy: Probe,
        ready: Probe,
    ) -> None:
        self.host = host
        self.port = port
        self.metrics = metrics
        self.healthy = healthy
        self.ready = ready
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int] | None:
        """The bound ``(host, port)`` while serving, else None."""
        if self._server is None:
            return None
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> tuple[str, int]:
        """Bind and serve in a background thread; return the bound ``(host, port)``.

        Raises :class:`OSError` when the address cannot be bound (in use, not local...).
        """
        if self._server is not None:
            raise RuntimeError("OpsServer already started")
        family = _family(self.host, self.port)
        server_class = type("_BoundServer", (_Server,), {"address_family": family})
        server: _Server = server_class((self.host, self.port), _Handler)
        server.ops = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="rotator-ops-http",
            daemon=True,
        )
        self._thread.start()
        address = self.address
        assert address is not None
        return address

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)


def _family(host: str, port: int) -> socket.AddressFamily:
    """IPv4 or IPv6, as the host (an address or a name) resolves for listening."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    return infos[0][0] if infos else socket.AF_INET
