"""The sandbox as a real local HTTP server, usable in-process (:class:`Sandbox`) or from the CLI.

Why the standard library's ``http.server.ThreadingHTTPServer``: the signature covers the
request target exactly as the client sent it, and ``BaseHTTPRequestHandler.path`` is that raw
target, untouched; and a fault must commit a write and then drop the connection without any
answer, which a handler does by simply not writing. Both come directly, with no dependency.

It speaks HTTP/1.1 with ``Content-Length`` and keep-alive; one thread per connection; all
state behind one lock (see :mod:`rotator.dev.sandbox.store`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from rotator.core.errors import ConfigError
from rotator.core.vocab import RemoteKey
from rotator.dev.sandbox.api import Api, Reply, Request
from rotator.dev.sandbox.faults import Faults
from rotator.dev.sandbox.seed import SeedConfig
from rotator.dev.sandbox.store import Store

log = logging.getLogger("rotator.sandbox")

MAX_BODY_BYTES = 1 << 20
IDLE_TIMEOUT_SECONDS = 30.0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "encord-sandbox"
    sys_version = ""
    timeout = IDLE_TIMEOUT_SECONDS
    # Headers and body go out in two writes; with Nagle on, the body waits for the client's
    # delayed ACK (~40 ms on Linux) on every kept-alive request. Real servers set TCP_NODELAY.
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._serve()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET  # noqa: N815

    def _serve(self) -> None:
        if self.headers.get("Transfer-Encoding"):
            self._send(Reply(411, {"message": "send a Content-Length body"}), close=True)
            return
        raw_length = self.headers.get("Content-Length", "0").strip() or "0"
        if not raw_length.isdigit():
            self._send(Reply(400, {"message": "bad Content-Length"}), close=True)
            return
        length = int(raw_length)
        if length > MAX_BODY_BYTES:
            self._send(Reply(413, {"message": "body too large"}), close=True)
            return
        body = self.rfile.read(length) if length else b""
        if len(body) < length:
            self.close_connection = True
            return
        request = Request(
            method=self.command,
            target=self.path,
            headers=httpx.Headers(list(self.headers.items())),
            body=body,
            client_host=str(self.client_address[0]),
        )
        reply = self.server.api.handle(request)
        if reply.drop:
            # The write is committed; answer nothing and close, as a lost answer would look.
            self.close_connection = True
            return
        self._send(reply)

    def _send(self, reply: Reply, *, close: bool = False) -> None:
        self.send_response(reply.status)
        for name, value in reply.headers:
            self.send_header(name, value)
        payload = b""
        if reply.status != 204:
            payload = json.dumps(reply.body).encode("utf-8") if reply.body is not None else b""
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(payload)

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The ``Date`` header, on the sandbox's clock (which tests may set off the host's),
        as Encord's answers carry Encord's own time."""
        return super().date_time_string(self.server.api.clock() if timestamp is None else timestamp)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s " + format, self.client_address[0], *args)


class _Server(ThreadingHTTPServer):
    """Tracks open connections so ``stop`` can end idle keep-alive ones at once."""

    daemon_threads = False
    block_on_close = True

    def __init__(self, address: tuple[str, int], api: Api) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.api = api
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn) that can stall; skip it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._open_lock:
            open_now = list(self._open)
        for conn in open_now:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s ended with an error", client_address, exc_info=True)


def _path(value: str | os.PathLike[str] | None) -> Path | None:
    return None if value is None else Path(value)


class Sandbox:
    """A local Encord stand-in: Part 1 and Part 2 of the contract, signatures checked.

    ``start()`` binds, writes the bootstrap key files, then serves in a background thread;
    ``stop()`` ends it. Usable as a context manager. With an existing ``state_path`` its
    accounts and keys are used as saved (no new bootstrap key); only seed accounts the state
    lacks are created and bootstrapped. A relative ``bootstrap_key_file`` in a dict seed is
    taken against the working directory (:meth:`SeedConfig.load` uses the seed's folder).
    """

    def __init__(
        self,
        seed: SeedConfig | Mapping[str, Any],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        journal_path: str | os.PathLike[str] | None = None,
        state_path: str | os.PathLike[str] | None = None,
        faults: Faults = Faults(),  # noqa: B008 - frozen value
        clock: Callable[[], float] = time.time,
        page_size: int = 3,
        token_ttl: float = 86400.0,
    ) -> None:
        self.seed = seed if isinstance(seed, SeedConfig) else SeedConfig.from_dict(seed)
        problems = []
        if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
            problems.append(f"page_size: expected an integer >= 1, got {page_size!r}")
        if not token_ttl > 0:
            problems.append(f"token_ttl: expected seconds > 0, got {token_ttl!r}")
        if problems:
            raise ConfigError(problems)
        self._host = host
        self._port = port
        self.journal_path = _path(journal_path)
        self.state_path = _path(state_path)
        self._store = Store(clock=clock, journal_path=self.journal_path, state_path=self.state_path)
        self._api = Api(
            self._store, faults=faults, clock=clock, page_size=page_size, token_ttl=token_ttl
        )
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._started = False

    def start(self) -> Sandbox:
        """Listen, write bootstrap key files (if the state is new), then serve; returns self."""
        if self._started:
            raise RuntimeError("a Sandbox starts once; make a new one to restart")
        self._started = True
        try:
            server = _Server((self._host, self._port), self._api)
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {self._host}:{self._port} ({exc.strerror})"
            ) from None
        try:
            self._store.open(self.seed)
        except BaseException:
            server.server_close()
            self._store.close()
            raise
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"encord-sandbox:{server.server_port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, end open connections, close the journal; safe to call twice."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        thread.join()
        self._store.close()
        self._server = self._thread = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (IPv6 hosts in brackets)."""
        if self._server is None:
            raise RuntimeError("sandbox not started")
        host = self._server.server_name
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self._server.server_port}"

    @property
    def faults(self) -> Faults:
        return self._api.faults

    @faults.setter
    def faults(self, value: Faults) -> None:
        self._api.faults = value

    def keys(self, account_name: str) -> list[RemoteKey]:
        """The keys an account holds now, oldest first; KeyError for an unknown account."""
        return self._store.keys_of(account_name)

    def create_key_in_ui(self, account_name: str, title: str) -> str:
        """A person at the Encord UI: "New API key", ``title``, "Add API key". Encord makes
        the key pair; the answer is the text of the file the browser downloads (the OpenSSH
        private key). KeyError for an unknown account; Refused when it is full."""
        account = self._store.account(account_name)
        if account is None:
            raise KeyError(account_name)
        return self._store.create_in_ui(account, title)[1]

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
