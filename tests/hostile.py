"""Hostile HTTP peers for tests: local servers that misbehave the way real networks and
broken (or malicious) endpoints do.

:class:`HostileServer` listens on a loopback address (``127.0.0.2`` is loopback too, so a
redirect can point at "another host") and answers every request with one :data:`Behaviour`:

- ``drip_headers``: a status line, then one byte of headers every ``interval`` seconds, forever;
- ``drip_body``: complete headers announcing 1 MiB, then one byte every ``interval`` seconds;
- ``huge_body``: headers announcing ``huge_bytes`` and the bytes as fast as the client reads;
- ``endless_chunked``: a chunked answer whose chunks never end;
- ``silent``: reads the request and never answers;
- ``redirect``: ``307`` to ``location``, with ``Location`` and an empty body.

It records what it saw (request lines and headers, bodies) and how many bytes it managed to
send, so a test can check that a client gave up and what it sent where. Every loop is bounded:
the server stops sending when the client hangs up or the server is closed, and never runs
longer than ``max_seconds``.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Literal

Behaviour = Literal[
    "drip_headers", "drip_body", "huge_body", "endless_chunked", "silent", "redirect"
]


@dataclass
class Seen:
    """One request as the server received it."""

    request_line: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HostileServer:
    """A one-behaviour HTTP/1.1 server on ``host``; use as a context manager."""

    behaviour: Behaviour
    host: str = "127.0.0.1"
    interval: float = 0.2
    huge_bytes: int = 150 << 20
    location: str = ""
    max_seconds: float = 60.0
    seen: list[Seen] = field(default_factory=list)
    bytes_sent: int = 0
    _sock: socket.socket | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self._sock is not None
        return f"http://{self.host}:{self._sock.getsockname()[1]}"

    def __enter__(self) -> HostileServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        sock.listen(16)
        sock.settimeout(0.2)
        self._sock = sock
        accept = threading.Thread(target=self._accept, name="hostile-accept", daemon=True)
        accept.start()
        self._threads.append(accept)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._sock is not None:
            self._sock.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def _accept(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            worker = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            worker.start()
            self._threads.append(worker)

    def _read_request(self, conn: socket.socket) -> Seen | None:
        conn.settimeout(5)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        while len(rest) < length:
            chunk = conn.recv(65536)
            if not chunk:
                break
            rest += chunk
        return Seen(request_line=lines[0], headers=headers, body=rest[:length])

    def _send(self, conn: socket.socket, data: bytes) -> bool:
        try:
            conn.sendall(data)
        except OSError:
            return False
        with self._lock:
            self.bytes_sent += len(data)
        return True

    def _serve(self, conn: socket.socket) -> None:
        started = time.monotonic()

        def going() -> bool:
            return not self._stop.is_set() and time.monotonic() - started < self.max_seconds

        with conn:
            try:
                seen = self._read_request(conn)
            except OSError:
                return
            if seen is None:
                return
            with self._lock:
                self.seen.append(seen)
            conn.settimeout(5)
            b = self.behaviour
            if b == "redirect":
                self._send(
                    conn,
                    f"HTTP/1.1 307 Temporary Redirect\r\nLocation: {self.location}\r\n"
                    # One answer per connection: say so, or a client may reuse the socket
                    # this server is about to close and see a reset instead of the 307.
                    "Content-Length: 0\r\nConnection: close\r\n\r\n".encode(),
                )
            elif b == "silent":
                while going():
                    time.sleep(0.05)
            elif b == "drip_headers":
                ok = self._send(conn, b"HTTP/1.1 200 OK\r\n")
                while ok and going():
                    time.sleep(self.interval)
                    ok = self._send(conn, b"X")
            elif b == "drip_body":
                ok = self._send(
                    conn,
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 1048576\r\n\r\n",
                )
                while ok and going():
                    time.sleep(self.interval)
                    ok = self._send(conn, b" ")
            elif b == "huge_body":
                ok = self._send(
                    conn,
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {self.huge_bytes}\r\n\r\n".encode(),
                )
                block = b" " * 65536
                sent = 0
                while ok and going() and sent < self.huge_bytes:
                    ok = self._send(conn, block)
                    sent += len(block)
            elif b == "endless_chunked":
                ok = self._send(
                    conn,
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n",
                )
                chunk = b"10000\r\n" + b" " * 65536 + b"\r\n"
                while ok and going():
                    ok = self._send(conn, chunk)
