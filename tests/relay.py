"""A TCP relay for tests: in front of a real server, it passes bytes through until told to
misbehave, then drips or holds what the server answers.

:class:`Relay` listens on 127.0.0.1 and opens one connection to ``upstream`` per client
connection. What the client sends always goes through at once; what the upstream answers goes
through according to :attr:`Relay.mode`, read afresh for every byte, so a switch reaches
connections already open (a client's pooled keep-alive connection included):

- ``pass``: as it comes;
- ``drip``: one byte every ``interval`` seconds (a TLS handshake too, when the upstream speaks
  TLS: the relay does not look at the bytes);
- ``hold``: nothing, until the mode changes.

Every loop is bounded: it ends when either side hangs up or the relay is closed.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

Mode = Literal["pass", "drip", "hold"]


@dataclass
class Relay:
    """A switchable TCP relay to ``upstream`` (``(host, port)``); use as a context manager."""

    upstream: tuple[str, int]
    interval: float = 0.2
    mode: Mode = "pass"
    connections: int = 0
    _sock: socket.socket | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _open: list[socket.socket] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, scheme: str = "http") -> str:
        assert self._sock is not None
        return f"{scheme}://127.0.0.1:{self._sock.getsockname()[1]}"

    def __enter__(self) -> Relay:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        sock.settimeout(0.2)
        self._sock = sock
        self._start(self._accept)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._sock is not None:
            self._sock.close()
        with self._lock:
            for conn in self._open:
                _hang_up(conn)
        for thread in list(self._threads):
            thread.join(timeout=5)
        with self._lock:
            for conn in self._open:
                conn.close()

    def _start(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        with self._lock:
            self._threads.append(thread)

    def _accept(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                client, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self.connections += 1
                self._open += [client, upstream]
            self._start(self._pump, client, upstream, False)
            self._start(self._pump, upstream, client, True)

    def _pump(self, src: socket.socket, dst: socket.socket, answers: bool) -> None:
        src.settimeout(0.2)
        try:
            while not self._stop.is_set():
                try:
                    data = src.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    break
                if answers:
                    self._deliver(dst, data)
                else:
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            _hang_up(src)
            _hang_up(dst)

    def _deliver(self, dst: socket.socket, data: bytes) -> None:
        """Send ``data`` as the mode says, checking the mode before every byte."""
        sent = 0
        while sent < len(data) and not self._stop.is_set():
            mode = self.mode
            if mode == "pass":
                dst.sendall(data[sent:])
                return
            if mode == "hold":
                time.sleep(0.05)
                continue
            dst.sendall(data[sent : sent + 1])
            sent += 1
            time.sleep(self.interval)


def _hang_up(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)
