"""The ops endpoints: what the daemon tells an orchestrator, over plain HTTP.

:class:`OpsServer` serves three paths:

- ``/healthz``: 200 ``{"status": "ok", ...}`` while the process and its scheduler are alive,
  else 503 (restart me);
- ``/readyz``: 200 when Vault and Encord answered every account's last check, else 503, with
  one entry per account saying which answered;
- ``/metrics``: the :class:`~rotator.runtime.metrics.Metrics` registry in Prometheus text
  format (or OpenMetrics, if asked for).

Anything else is 404. The answers come from two probes the daemon supplies
(:mod:`rotator.runtime.health` builds them). Requests are logged through structlog at debug
level only, never to stderr, so in ``json`` mode every line the process writes stays JSON.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog

from rotator.runtime.metrics import Metrics

log = structlog.get_logger("rotator.ops")

Probe = Callable[[], tuple[bool, dict[str, Any]]]
"""A health or readiness probe: ``(ok, details)``; ``details`` goes into the JSON body."""


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
