"""Bounded HTTP: a total deadline on every exchange and a size cap on every answer.

Shared by the adapters that speak HTTP to a server they do not control (Encord, the person
notifier); each decides its own limits, this module only enforces them.

httpx's timeouts are per network operation: a server that drips one byte every few seconds
never trips a 10 s read timeout, and holds a call for as long as it likes; and an answer is
read whole into memory, however large. Both are closed here:

- :func:`deadline` sets, for the calling thread, the moment by which the exchange in hand must
  be over; the network backend of :class:`BoundedTransport` gives every socket operation only
  the time left until then (``httpcore`` asks the backend for each connect, TLS handshake,
  read and write, so a drip cannot outlast it);
- :func:`read_capped` reads an answer's body in chunks and stops at the cap, so a huge or
  endless answer costs at most the cap in memory.

Proxies from the environment (``HTTPS_PROXY``, ``NO_PROXY``...) keep working: :func:`mounts`
builds a bounded transport for each, as httpx would have built a plain one.
"""

from __future__ import annotations

import contextlib
import ssl
import time
import typing
from collections.abc import Iterator
from contextvars import ContextVar

import httpcore
import httpx

__all__ = ["AnswerTooLarge", "BoundedTransport", "deadline", "mounts", "read_capped"]

_deadline: ContextVar[float | None] = ContextVar("rotator_http_deadline", default=None)


class AnswerTooLarge(Exception):  # noqa: N818 - a condition each caller turns into its own error
    """An answer's body passed the cap; reading stopped there."""


@contextlib.contextmanager
def deadline(at: float) -> Iterator[None]:
    """Every socket operation of this thread ends by ``at`` (``time.monotonic`` seconds), or
    by an enclosing deadline if that is sooner: a nested deadline only ever shortens (a call's
    own inside the end of the lease it is fenced by, :mod:`rotator.adapters.lease`)."""
    outer = _deadline.get()
    token = _deadline.set(at if outer is None else min(at, outer))
    try:
        yield
    finally:
        _deadline.reset(token)


def _left(timeout: float | None, expired: type[Exception]) -> float | None:
    """The operation's own timeout, cut to what is left of the deadline (raise if none is)."""
    end = _deadline.get()
    if end is None:
        return timeout
    left = end - time.monotonic()
    if left <= 0:
        raise expired("deadline passed")
    return left if timeout is None else min(timeout, left)


class _BoundedStream(httpcore.NetworkStream):
    """A socket stream whose every operation respects the thread's deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(
            ssl_context, server_hostname, _left(timeout, httpcore.ConnectTimeout)
        )
        return _BoundedStream(inner)

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class _BoundedBackend(httpcore.NetworkBackend):
    """httpcore's network backend, each stream it opens bounded by the thread's deadline."""

    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(
            host, port, _left(timeout, httpcore.ConnectTimeout), local_address, socket_options
        )
        return _BoundedStream(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_unix_socket(
            path, _left(timeout, httpcore.ConnectTimeout), socket_options
        )
        return _BoundedStream(stream)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class BoundedTransport(httpx.HTTPTransport):
    """httpx's own transport, its connection pool given the bounded network backend."""

    def __init__(self, **kwargs: typing.Any) -> None:
        super().__init__(**kwargs)
        pool = self._pool  # ConnectionPool, or HTTPProxy / SOCKSProxy (its subclasses)
        pool._network_backend = _BoundedBackend(pool._network_backend)


def mounts(verify: ssl.SSLContext) -> dict[str, httpx.BaseTransport | None]:
    """Bounded transports for the proxies the environment names, as httpx would mount them."""
    from httpx._utils import get_environment_proxies  # httpx's own reading of *_PROXY

    out: dict[str, httpx.BaseTransport | None] = {}
    for pattern, proxy in get_environment_proxies().items():
        out[pattern] = None if proxy is None else BoundedTransport(verify=verify, proxy=proxy)
    return out


def read_capped(response: httpx.Response, cap: int) -> bytes:
    """The body of a streamed ``response``, or AnswerTooLarge once it passes ``cap`` bytes.

    The response is closed either way, so the connection is released (or dropped)."""
    body = bytearray()
    try:
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > cap:
                raise AnswerTooLarge(f"more than {cap} bytes")
    finally:
        response.close()
    return bytes(body)
