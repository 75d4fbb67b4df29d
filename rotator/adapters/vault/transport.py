"""Bounds on every exchange with Vault: a total deadline and a size cap per answer.

``requests`` (and urllib3 below it) only knows per-operation timeouts: each connect, and each
read of the socket, may take up to ``VAULT_CLIENT_TIMEOUT``. A server that drips one byte
every few seconds never trips one, and holds a call for as long as it likes; and an answer is
read whole into memory, however large. :class:`BoundedAdapter`, mounted on the session hvac
uses, closes both:

- **Size.** The answer's body is read in chunks and the read stops once it passes
  :attr:`VaultBounds.max_answer_bytes` (1 MiB; Vault's answers to rotator are a few kB): a
  huge or endless answer costs at most the cap in memory, and the connection is dropped. A
  compressed answer is counted after decoding (urllib3 decodes at most a chunk at a time).
- **Time.** Every request gets a deadline, :attr:`VaultBounds.seconds` after it starts, for
  everything from connecting to the last byte of the answer. urllib3 offers no hook between
  the reads of the status line and headers (``http.client`` reads them a line at a time from
  a buffered socket file), so a watchdog does it: at the deadline it shuts the exchange's TCP
  socket down (``shutdown(SHUT_RDWR)``), which makes a read or write blocked in the
  requesting thread return at once. One watchdog thread serves every exchange of the
  process (:class:`_Watchdog`: a request arms and disarms it, a lock and a set operation
  each; it sleeps until the earliest deadline armed and ends after :data:`LINGER` idle
  seconds): a thread started per request cost more CPU than the rest of the request's
  client side. The watchdog holds a handle of its own on the
  socket (a duplicated file descriptor, taken when the socket is opened or, for a pooled
  connection, when the request is sent), so it reaches the socket during the TLS handshake
  too, when neither urllib3 nor ``ssl`` exposes it, and never touches an object the
  requesting thread is using. ``close()`` would not do: on Linux it does not wake a blocked
  ``recv``. The connect itself is given only the time left (``socket.create_connection``
  honours its timeout); name resolution is left to the system resolver's own timeouts.
- **Pooling.** A connection goes back to urllib3's pool only after its exchange has been
  disarmed, so a watchdog firing late can never shut down a connection another request has
  taken from the pool meanwhile; one whose socket was shut down is closed on its way back.

A passed deadline raises :class:`~rotator.adapters.vault.errors.DeadlinePassed` (a
``requests`` timeout), an over-size answer :class:`~rotator.adapters.vault.errors.AnswerTooLarge`;
:mod:`rotator.adapters.vault.errors` translates both, with every other failure, in its table.
SOCKS proxies, which urllib3 serves with connection classes of its own, get the size cap but
not the watchdog.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError

from rotator.adapters.vault.errors import AnswerTooLarge, DeadlinePassed

__all__ = ["DEADLINE_FACTOR", "BoundedAdapter", "VaultBounds", "bounded_session"]

DEADLINE_FACTOR = 2
"""A request's total deadline is this many ``VAULT_CLIENT_TIMEOUT`` periods: the most an
honest but slow Vault could take before (one wait to connect, one for the answer), so nothing
that worked before is cut short; a drip is."""

CHUNK_BYTES = 64 << 10
"""The answer is read this much at a time."""

LINGER = 3.0
"""Seconds the watchdog thread waits with nothing armed before it ends (the next request
starts it again): a daemon checking often keeps one thread, an idle one keeps none."""

_exchange: ContextVar[_Exchange | None] = ContextVar("rotator_vault_exchange", default=None)


@dataclass(frozen=True, slots=True)
class VaultBounds:
    """How long and how large one exchange with Vault may be.

    ``seconds``: one request, from connecting to the last byte of its answer
    (``DEADLINE_FACTOR`` × ``VAULT_CLIENT_TIMEOUT``: 10 s by default). Each hvac call is one
    request (redirects are refused), so this bounds every call.
    ``max_answer_bytes``: one answer's body. 1 MiB: Vault's answers to rotator (a key, a
    token description, a mount's settings) are a few kB; the pod's memory limit is 256 MiB.
    """

    seconds: float
    max_answer_bytes: int = 1 << 20

    def __post_init__(self) -> None:
        if not (self.seconds > 0 and self.max_answer_bytes > 0):
            raise ValueError("VaultBounds: need seconds > 0 and max_answer_bytes > 0")


class _Exchange:
    """One request's deadline, and the watchdog's handles on its socket."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._handles: list[socket.socket] = []
        self._fired = False
        self._over = False

    def left(self) -> float:
        return self.end - time.monotonic()

    def watch(self, sock: socket.socket) -> None:
        """Keep a handle on ``sock``'s TCP socket, to shut it down at the deadline."""
        with self._lock:
            if self._over:
                return
            handle = socket.fromfd(sock.fileno(), sock.family, sock.type, sock.proto)
            self._handles.append(handle)
            if self._fired:  # the deadline passed while connecting
                _shutdown(handle)

    def fire(self) -> None:
        """The deadline: shut the socket down, waking the requesting thread."""
        with self._lock:
            if self._over:
                return
            self._fired = True
            for handle in self._handles:
                _shutdown(handle)

    def finish(self) -> bool:
        """Disarm (idempotent); True if the deadline had fired by then."""
        with self._lock:
            if not self._over:
                self._over = True
                for handle in self._handles:
                    handle.close()
                self._handles.clear()
            return self._fired


class _Watchdog:
    """One thread firing every armed exchange whose deadline has passed.

    Arming and disarming are a lock and a set operation; the thread is woken only when an
    exchange is armed while it has no deadline to wait for, or with a deadline sooner than
    the one it waits for. An exchange disarmed early stays the thread's wake-up time at most
    (it then finds nothing due and waits for the next deadline). Exchanges are fired outside
    the watchdog's lock: the exchange's own lock is never taken under it.
    """

    def __init__(self, linger: float = LINGER) -> None:
        self._linger = linger
        self._cond = threading.Condition(threading.Lock())
        self._armed: set[_Exchange] = set()
        self._thread: threading.Thread | None = None
        self._wake_at: float | None = None  # the deadline the thread waits for (None: idle)

    def arm(self, exchange: _Exchange) -> None:
        with self._cond:
            self._armed.add(exchange)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="rotator-vault-watchdog", daemon=True
                )
                self._thread.start()
            elif self._wake_at is None or exchange.end < self._wake_at:
                self._cond.notify()

    def disarm(self, exchange: _Exchange) -> None:
        with self._cond:
            self._armed.discard(exchange)

    def _due(self) -> list[_Exchange] | None:
        """Wait (holding the lock) until an exchange is due; None once idle for ``linger``."""
        while True:
            now = time.monotonic()
            due = [e for e in self._armed if e.end <= now]
            if due:
                self._armed.difference_update(due)
                return due
            if self._armed:
                self._wake_at = min(e.end for e in self._armed)
                self._cond.wait(self._wake_at - now)
                continue
            self._wake_at = None
            if not self._cond.wait(self._linger) and not self._armed:
                self._thread = None  # under the lock: the next arm() starts another
                return None

    def _run(self) -> None:
        while True:
            with self._cond:
                due = self._due()
            if due is None:
                return
            for exchange in due:
                exchange.fire()


_WATCHDOG = _Watchdog()


def _shutdown(handle: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by the peer, or not connected
        handle.shutdown(socket.SHUT_RDWR)


class _WatchedHTTPConnection(HTTPConnection):
    """A urllib3 connection that shows its socket to the current exchange's watchdog."""

    def _new_conn(self) -> socket.socket:
        exchange = _exchange.get()
        if exchange is not None:
            left = exchange.left()
            if left <= 0:
                raise ConnectTimeoutError(self, "Vault deadline passed before connecting")
            if self.timeout is None or not isinstance(self.timeout, int | float):
                self.timeout = left
            else:
                self.timeout = min(self.timeout, left)
        sock = super()._new_conn()
        if exchange is not None:
            exchange.watch(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        exchange = _exchange.get()
        if exchange is not None and self.sock is not None:  # a pooled connection, reused
            exchange.watch(self.sock)
        super().request(*args, **kwargs)


class _WatchedHTTPSConnection(_WatchedHTTPConnection, HTTPSConnection):
    """The TLS variant (the handle is taken before the handshake)."""


class _DisarmingPool(HTTPConnectionPool):
    """A pool that disarms the returning connection's exchange before taking it back."""

    ConnectionCls = _WatchedHTTPConnection

    def _put_conn(self, conn: Any) -> None:
        exchange = _exchange.get()
        if exchange is not None and exchange.finish() and conn is not None:
            conn.close()  # its socket was shut down: never hand it out again
        super()._put_conn(conn)


class _DisarmingHTTPSPool(_DisarmingPool, HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_POOLS = {"http": _DisarmingPool, "https": _DisarmingHTTPSPool}


class BoundedAdapter(HTTPAdapter):
    """``requests``' own adapter, each request bounded by :class:`VaultBounds`.

    The per-request ``timeout`` hvac passes (``VAULT_CLIENT_TIMEOUT``) still bounds each
    connect and each read; the deadline bounds their sum.
    """

    def __init__(self, bounds: VaultBounds) -> None:
        self.bounds = bounds
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if type(manager) is urllib3.ProxyManager:  # not SOCKS: its pools are its own
            manager.pool_classes_by_scheme = _POOLS
        return manager

    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, stream: bool = False, **kwargs: Any
    ) -> requests.Response:
        """Send ``request`` and read its whole answer (``stream`` is ignored: the answer is
        always read here, capped); DeadlinePassed or AnswerTooLarge past the bounds."""
        exchange = _Exchange(self.bounds.seconds)
        token = _exchange.set(exchange)
        _WATCHDOG.arm(exchange)
        failed = False
        try:
            try:
                response = super().send(request, stream=True, **kwargs)
                self._read(response)
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError):
                if not exchange.finish():
                    raise
                failed = True  # raised below, outside this block: no chain to the request
            if exchange.finish() or failed:  # fired: even a clean end of answer is cut short
                raise DeadlinePassed(f"no complete answer within {self.bounds.seconds:g}s")
            return response
        finally:
            _WATCHDOG.disarm(exchange)
            exchange.finish()
            _exchange.reset(token)

    def _read(self, response: requests.Response) -> None:
        """Read the body into ``response.content``, or AnswerTooLarge past the cap."""
        cap = self.bounds.max_answer_bytes
        length = response.headers.get("Content-Length", "")
        body = bytearray()
        try:
            if length.isdigit() and int(length) > cap:
                raise AnswerTooLarge(f"more than {cap} bytes")
            for chunk in response.iter_content(CHUNK_BYTES):
                body += chunk
                if len(body) > cap:
                    raise AnswerTooLarge(f"more than {cap} bytes")
        except AnswerTooLarge:
            response.close()  # drops the connection: the rest is never read
            raise
        response._content = bytes(body)
        response._content_consumed = True


def bounded_session(timeout: float) -> requests.Session:
    """A ``requests`` session whose every exchange is bounded: ``DEADLINE_FACTOR`` ×
    ``timeout`` seconds in all, and :attr:`VaultBounds.max_answer_bytes` of answer."""
    session = requests.Session()
    adapter = BoundedAdapter(VaultBounds(seconds=DEADLINE_FACTOR * timeout))
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
