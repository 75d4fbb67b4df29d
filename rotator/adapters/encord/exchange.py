"""How a request goes to Encord and its answer comes back: bounded, retried or sent once.

:class:`Exchange` owns one ``httpx.Client`` for one Encord domain. Requests are signed by the
``httpx.Auth`` it is given (normally :class:`~rotator.adapters.encord.signing.EncordAuth`),
afresh on every attempt. It offers two ways to make a call:

* :meth:`Exchange.idempotent` (GET, DELETE) retries connect/read errors, timeouts, 429 and
  500/502/503/504 as :class:`RetryPolicy` says: exponential back-off with full jitter,
  honouring ``Retry-After`` up to a cap. It reports whether an earlier attempt may have reached
  Encord and acted (DELETE's 404 rule).
* :meth:`Exchange.post_once` (a key-creating POST) sends once, never again; an answer that never
  came is a :class:`Lost` saying whether the request left at all, for the caller to reconcile.

:class:`Bounds`, enforced through :mod:`rotator.adapters.bounded_http`: every attempt ends
within ``Bounds.attempt_seconds`` and every call, retries included, within
``Bounds.call_seconds``, however slowly a server drips its answer; an answer larger than
``Bounds.max_answer_bytes`` is cut off there and refused (:class:`ProtocolError`).

Errors raised here are :class:`RegistryUnavailable` (gave up, or a transport failure retrying
cannot help) and :class:`ProtocolError` (answer too large): one line naming the call, never a
body; each raised outside the ``except`` block that noticed the problem, so no library
exception rides along as ``__cause__`` or ``__context__``.
"""

from __future__ import annotations

import functools
import math
import random
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Final, Literal

import httpcore
import httpx
import structlog

from rotator.adapters.bounded_http import (
    AnswerTooLarge,
    BoundedTransport,
    deadline,
    mounts,
    read_capped,
)
from rotator.adapters.encord.answers import clock_offset, retry_after_of
from rotator.core.errors import ProtocolError, RegistryUnavailable

__all__ = ["Bounds", "Exchange", "Lost", "RetryPolicy", "SharedTransport", "USER_AGENT"]

try:
    _VERSION = version("rotator")
except PackageNotFoundError:  # running from a source tree that was never installed
    _VERSION = "0+unknown"

USER_AGENT: Final = f"rotator/{_VERSION}"

# The logger keeps the name it had when this lived in client.py: log lines are unchanged.
_log = structlog.get_logger("rotator.adapters.encord.client")

_RETRY_STATUSES: Final = frozenset({429, 500, 502, 503, 504})
# Failures after which the request may have reached Encord (used by DELETE's 404 rule).
_RETRYABLE_ERRORS: Final = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    httpx.ProxyError,
)
# Failures where no byte of the request reached Encord.
_NOT_SENT_ERRORS: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Headers that describe the body as it came over the wire, not as read_capped returns it.
_WIRE_HEADERS: Final = frozenset({"content-encoding", "content-length", "transfer-encoding"})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How idempotent calls are retried.

    ``attempts`` counts every try, the first included. Back-off before try ``n + 1`` is drawn
    uniformly from ``[0, min(max_delay, base_delay * 2**(n - 1))]`` seconds ("full jitter"),
    unless Encord sent ``Retry-After: <seconds>``: that is waited instead, capped at
    ``max_retry_after`` seconds so a throttled daemon still gives up in bounded time.
    """

    attempts: int = 4
    base_delay: float = 0.2
    max_delay: float = 5.0
    max_retry_after: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")
        for name in ("base_delay", "max_delay", "max_retry_after"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"RetryPolicy.{name} must be a finite number of seconds >= 0")

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
        """Seconds to wait after failed try number ``attempt`` (1-based)."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** min(attempt - 1, 64))
        return rng.uniform(0.0, ceiling)


@dataclass(frozen=True, slots=True)
class Bounds:
    """How long and how large an exchange with Encord may be.

    ``attempt_seconds``: one HTTP attempt, from connecting to the last byte of the answer. 15 s:
    a healthy Encord answers in well under a second, and a check must stay far inside its lease.
    ``call_seconds``: one call with all its retries and back-off waits; a retry that could not
    finish in time is not started. 45 s: three slow attempts at most.
    ``max_answer_bytes``: one answer's body (each page of a key list). 1 MiB: a page of keys is
    a few kB; the pod's memory limit is 256 MiB.
    ``max_list_bytes``: every page of one key listing together. 4 MiB.
    """

    attempt_seconds: float = 15.0
    call_seconds: float = 45.0
    max_answer_bytes: int = 1 << 20
    max_list_bytes: int = 4 << 20

    def __post_init__(self) -> None:
        if not (0 < self.attempt_seconds <= self.call_seconds):
            raise ValueError("Bounds: need 0 < attempt_seconds <= call_seconds")
        if not (0 < self.max_answer_bytes <= self.max_list_bytes):
            raise ValueError("Bounds: need 0 < max_answer_bytes <= max_list_bytes")


@dataclass(frozen=True, slots=True)
class Lost:
    """A POST whose answer never came (``sent`` False: it never left, nothing happened)."""

    error: str
    sent: bool


@dataclass(frozen=True, slots=True)
class _Retryable:
    """A try of an idempotent call worth another: what went wrong (``last``: ``HTTP 503`` or
    the error's class name), and whether it may have reached Encord and acted."""

    last: str
    status: int | None
    error: str | None
    retry_after: float | None
    maybe_done: bool


class SharedTransport(httpx.BaseTransport):
    """Lends another client's transport without taking ownership (``close`` is a no-op)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self._inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._inner.handle_request(request)

    def close(self) -> None:
        """The owning client closes the transport."""


def _default_timeout() -> httpx.Timeout:
    return httpx.Timeout(10.0, connect=5.0)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The TLS context (system CA roots) every client shares, built once per process.

    httpx builds one per client otherwise, and loading the CA bundle costs 20-30 ms of CPU;
    rotator makes two or three clients per check (bench/idle.py: 2.0 CPU-s/min for 10 idle
    accounts checked every 5 s, 0.4 with the context shared). Contexts are thread-safe.
    """
    return httpx.create_ssl_context()


class Exchange:
    """One ``httpx.Client`` to one Encord domain: bounded attempts, retried or sent once.

    ``transport`` (tests: ``httpx.MockTransport``) replaces the network; without one, httpx's
    own transport is used, bounded by the thread's deadline, plus one for each proxy the
    environment names. ``timeout`` defaults to 10 s per operation (5 s to connect); ``rng``
    to ``random.SystemRandom()``. :attr:`transport`, :attr:`timeout`, :attr:`sleep` and
    :attr:`rng` are kept as given (resolved) so a client for another key can share them.
    """

    def __init__(
        self,
        domain: str,
        auth: httpx.Auth | None,
        *,
        transport: httpx.BaseTransport | None,
        timeout: httpx.Timeout | None,
        retry: RetryPolicy,
        sleep: Callable[[float], None],
        rng: random.Random | None,
        bounds: Bounds,
    ) -> None:
        self.retry = retry
        self.bounds = bounds
        self.transport = transport
        self.timeout = timeout if timeout is not None else _default_timeout()
        self.sleep = sleep
        self.rng = rng if rng is not None else random.SystemRandom()
        self.last_offset: float | None = None
        """Encord's clock minus ours (seconds) by the newest answer's ``Date`` header."""
        # No transport given (the daemon): httpx's own, bounded by the thread's deadline, and
        # one for each proxy the environment names, as httpx itself would mount them.
        own = BoundedTransport(verify=_tls_context()) if transport is None else None
        self._http = httpx.Client(
            base_url=domain,
            auth=auth,
            transport=transport if transport is not None else own,
            mounts=mounts(_tls_context()) if transport is None else None,
            trust_env=False,
            timeout=self.timeout,
            headers={"User-Agent": USER_AGENT},
            follow_redirects=False,
        )

    def close(self) -> None:
        """Close the connection pool (and a transport given to this exchange)."""
        self._http.close()

    def idempotent(
        self,
        call: str,
        method: Literal["GET", "DELETE"],
        path: str,
        *,
        params: Mapping[str, str] | None = None,
    ) -> tuple[httpx.Response, bool]:
        """Send with retries. Returns the first non-retryable answer, and whether an earlier
        attempt may have reached Encord and acted (lost answer, or a 5xx)."""
        maybe_done = False
        end = time.monotonic() + self.bounds.call_seconds
        tried: _Retryable | None = None
        for attempt in range(1, self.retry.attempts + 1):
            outcome = self._attempt(call, method, path, end, params)
            if isinstance(outcome, httpx.Response):
                return outcome, maybe_done
            tried = outcome
            maybe_done = maybe_done or tried.maybe_done
            if attempt < self.retry.attempts:
                self._back_off(call, attempt, tried, end)
        assert tried is not None  # RetryPolicy.attempts >= 1: the loop ran
        raise RegistryUnavailable(
            f"Encord {call}: gave up after {self.retry.attempts} attempts (last: {tried.last})",
            retry_after=tried.retry_after,
        )

    def _attempt(
        self,
        call: str,
        method: str,
        path: str,
        end: float,
        params: Mapping[str, str] | None,
    ) -> httpx.Response | _Retryable:
        """One try: an answer not to retry, or why another try is worth making. A transport
        failure that retrying cannot help raises RegistryUnavailable."""
        response: httpx.Response | None = None
        error: str | None = None
        fatal: str | None = None
        sent = False
        try:
            response = self._send(call, method, path, end, params=params)
        except _RETRYABLE_ERRORS as exc:
            error = type(exc).__name__
            sent = not isinstance(exc, _NOT_SENT_ERRORS)
        except httpx.TransportError as exc:
            fatal = type(exc).__name__
        if fatal is not None:
            raise RegistryUnavailable(f"Encord {call}: request failed ({fatal})")
        if response is None:
            return _Retryable(str(error), None, error, retry_after=None, maybe_done=sent)
        status = response.status_code
        if status not in _RETRY_STATUSES:
            return response
        return _Retryable(
            f"HTTP {status}",
            status,
            None,
            retry_after=retry_after_of(response),
            maybe_done=status != 429,
        )

    def _back_off(self, call: str, attempt: int, tried: _Retryable, end: float) -> None:
        """Wait before the next try; give up instead if the wait would reach ``end``."""
        delay = self.retry.delay(attempt, self.rng, tried.retry_after)
        if time.monotonic() + delay >= end:
            raise RegistryUnavailable(
                f"Encord {call}: gave up after {attempt} attempts in "
                f"{self.bounds.call_seconds:g} s (last: {tried.last})",
                retry_after=tried.retry_after,
            )
        _log.debug(
            "encord.retrying",
            call=call,
            attempt=attempt,
            delay=round(delay, 3),
            status=tried.status,
            error=tried.error,
        )
        self.sleep(delay)

    def _send(
        self,
        call: str,
        method: str,
        path: str,
        end: float,
        *,
        params: Mapping[str, str] | None = None,
        body: dict[str, str] | None = None,
    ) -> httpx.Response:
        """One attempt, over by ``end`` or ``Bounds.attempt_seconds`` from now, whichever comes
        first; its answer read whole but never past ``Bounds.max_answer_bytes``.

        Raises httpx's errors (a passed deadline is a ``ReadTimeout`` or ``ConnectTimeout``),
        and ProtocolError for an answer over the cap.
        """
        cap = self.bounds.max_answer_bytes
        too_large = False
        request = self._http.build_request(method, path, params=params, json=body)
        sent = time.time()
        with deadline(min(end, time.monotonic() + self.bounds.attempt_seconds)):
            streamed = self._http.send(request, stream=True)
            try:
                content = read_capped(streamed, cap)
            except AnswerTooLarge:
                too_large = True
            except httpcore.TimeoutException as exc:  # raised between httpx's mapped reads
                raise httpx.ReadTimeout(str(exc), request=request) from None
        if too_large:
            raise ProtocolError(f"Encord {call}: answer larger than {cap} bytes")
        headers = [(k, v) for k, v in streamed.headers.items() if k.lower() not in _WIRE_HEADERS]
        answer = httpx.Response(
            streamed.status_code, headers=headers, content=content, request=request
        )
        offset = clock_offset(answer, now=(sent + time.time()) / 2)
        if offset is not None:
            self.last_offset = offset
        return answer

    def post_once(self, call: str, path: str, body: dict[str, str]) -> httpx.Response | Lost:
        """Send a POST once, bounded by ``Bounds.attempt_seconds``: its answer, or
        :class:`Lost` if none came (an answer over the cap counts as lost, after sending)."""
        end = time.monotonic() + self.bounds.attempt_seconds
        try:
            return self._send(call, "POST", path, end, body=body)
        except ProtocolError:
            lost = Lost(error="answer too large", sent=True)
        except _NOT_SENT_ERRORS as exc:
            lost = Lost(error=f"could not connect ({type(exc).__name__})", sent=False)
        except httpx.TransportError as exc:
            lost = Lost(error=type(exc).__name__, sent=True)
        _log.debug("encord.answer_lost", call=call, error=lost.error, sent=lost.sent)
        return lost
