"""The HTTP client for Encord's public API and its key-management calls (contract Parts 1, 2).

One :class:`EncordClient` wraps one ``httpx.Client``; requests are signed by the ``httpx.Auth``
it is given (normally :class:`~rotator.adapters.encord.signing.EncordAuth`), afresh on every
attempt.

Retries: idempotent calls (GET, DELETE) are retried on connect/read errors, timeouts, 429 and
500/502/503/504, with exponential back-off and full jitter, honouring ``Retry-After`` up to a
cap. A key-creating POST is sent once, never again:

* ``upload_key`` whose answer is lost (or which a gateway answers 502/504) lists the keys and
  looks for the key id it uploaded: found, it returns that key; missing, it raises
  :class:`RegistryUnavailable`.
* ``generate_key`` whose answer is lost raises :class:`AmbiguousWrite`: the caller reconciles by
  title, since only Encord ever held the private key.
* A POST that could not even connect was never sent: :class:`RegistryUnavailable`.

Bounds (:mod:`rotator.adapters.encord.transport`): every attempt ends within
``Bounds.attempt_seconds`` and every call, retries included, within ``Bounds.call_seconds``,
however slowly a server drips its answer; an answer larger than ``Bounds.max_answer_bytes`` (a
key listing: ``max_list_bytes`` over all its pages) is cut off there and refused.

Errors are the house tree (:mod:`rotator.core.errors`): one-line messages naming the call and the
status, perhaps Encord's ``code``, never a response body, Encord's ``message``, a key or a
token. Every error is raised outside the ``except`` block that noticed the problem, so no
``__cause__`` or ``__context__`` carries a library exception (whose text, or attributes such
as a ``JSONDecodeError``'s ``doc``, could hold a body).
"""

from __future__ import annotations

import functools
import json
import math
import random
import re
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from types import TracebackType
from typing import Any, Final, Literal, Self
from urllib.parse import quote

import httpcore
import httpx
import structlog

from rotator.adapters.encord.transport import (
    AnswerTooLarge,
    BoundedTransport,
    Bounds,
    deadline,
    mounts,
    read_capped,
)
from rotator.core.errors import (
    AccessDenied,
    AmbiguousWrite,
    ConfigError,
    KeyFormatError,
    NotFound,
    ProtocolError,
    RegistryRejected,
    RegistryUnavailable,
    RotatorError,
)
from rotator.core.keys import key_id_of_line, load_private
from rotator.core.redaction import register_secret
from rotator.core.vocab import (
    BearerToken,
    GeneratedKey,
    Origin,
    RemoteKey,
    in_time_range,
    parse_rfc3339,
)

__all__ = ["Bounds", "EncordClient", "RetryPolicy", "USER_AGENT"]

try:
    _VERSION = version("rotator")
except PackageNotFoundError:  # running from a source tree that was never installed
    _VERSION = "0+unknown"

USER_AGENT: Final = f"rotator/{_VERSION}"

_log = structlog.get_logger(__name__)

_BASE = "/v2/public"
_RETRY_STATUSES: Final = frozenset({429, 500, 502, 503, 504})
# A gateway's 502/504 to a POST may hide a write the origin did: treat it as a lost answer.
_GATEWAY_STATUSES: Final = frozenset({502, 504})
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
_CODE_RE: Final = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
_KEY_ID_RE: Final = re.compile(r"^[0-9a-f]{64}$")
_ORIGINS: Final[frozenset[str]] = frozenset({"uploaded", "generated"})
_MAX_PAGES: Final = 1000
_DEFAULT_BOUNDS: Final = Bounds()
_MALFORMED: Final = object()


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


def _segment(value: str, what: str) -> str:
    if not value:
        raise ValueError(f"{what} must not be empty")
    if value in (".", ".."):
        # URL parsing would resolve them as dot segments and call another path.
        raise ValueError(f"{what} must not be '.' or '..'")
    return quote(value, safe="")


def _retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` as seconds, if it is a plain non-negative number (else None)."""
    raw = response.headers.get("Retry-After")
    if raw is None:
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return value


def _json(call: str, response: httpx.Response) -> object:
    data: object
    try:
        data = json.loads(response.content)
    except (ValueError, RecursionError):
        data = _MALFORMED
    if data is _MALFORMED:
        raise ProtocolError(f"Encord answered malformed JSON for {call}")
    return data


def _error_code(response: httpx.Response) -> str | None:
    """Encord's ``code``, only if it looks like one (``KEY_LIMIT_REACHED``): never free text."""
    data: object
    try:
        data = json.loads(response.content)
    except (ValueError, RecursionError):
        return None
    if isinstance(data, dict):
        code = data.get("code")
        if isinstance(code, str) and _CODE_RE.match(code):
            return code
    return None


def _error_for(call: str, response: httpx.Response) -> RotatorError:
    """The house error for a non-success answer (no body, no message, no secret)."""
    status = response.status_code
    if status == 400:
        code = _error_code(response)
        suffix = f" {code}" if code else ""
        return RegistryRejected(f"Encord {call}: HTTP 400{suffix}", code=code, status=400)
    if status == 409:
        code = _error_code(response) or "DUPLICATE_KEY"
        return RegistryRejected(f"Encord {call}: HTTP 409 {code}", code=code, status=409)
    if status in (401, 403):
        return AccessDenied(f"Encord {call}: HTTP {status}", status=status)
    if status == 404:
        return NotFound(f"Encord {call}: HTTP 404")
    if status == 429 or 500 <= status <= 599:
        return RegistryUnavailable(
            f"Encord {call}: HTTP {status}", retry_after=_retry_after(response)
        )
    return ProtocolError(f"Encord {call}: unexpected HTTP {status}")


def _field(obj: Mapping[str, Any], name: str) -> str | None:
    value = obj.get(name)
    return value if isinstance(value, str) and value else None


def _remote_key(obj: object) -> RemoteKey | None:
    """A Key object of the contract, or None if it is not one."""
    if not isinstance(obj, dict):
        return None
    key_hash = _field(obj, "keyHash")
    key_id = _field(obj, "keyId")
    title = obj.get("title")
    public_key = _field(obj, "publicKey")
    origin = _field(obj, "origin")
    created = _field(obj, "createdAt")
    if (
        key_hash is None
        or key_id is None
        or not _KEY_ID_RE.match(key_id)
        or not isinstance(title, str)
        or public_key is None
        or origin not in _ORIGINS
        or created is None
    ):
        return None
    created_at = None
    try:
        created_at = parse_rfc3339(created)
    except ValueError:
        created_at = None
    if created_at is None or not in_time_range(created_at):
        return None
    kind: Origin = "generated" if origin == "generated" else "uploaded"
    return RemoteKey(
        key_hash=key_hash,
        key_id=key_id,
        title=title,
        public_key=public_key,
        origin=kind,
        created_at=created_at,
    )


@dataclass(frozen=True, slots=True)
class _Lost:
    """A POST whose answer never came (``sent`` False: it never left, nothing happened)."""

    error: str
    sent: bool


class _SharedTransport(httpx.BaseTransport):
    """Lends another client's transport without taking ownership (``close`` is a no-op)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self._inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._inner.handle_request(request)

    def close(self) -> None:
        """The owning client closes the transport."""


class EncordClient:
    """Encord's public API (Part 1) and key management (Part 2), over one ``httpx.Client``.

    ``domain`` is ``https://api.encord.com``, ``https://api.us.encord.com`` or a private
    deployment's base URL. ``auth`` signs each request (``EncordAuth``). ``transport`` lets
    tests use ``httpx.MockTransport``; ``sleep`` and ``rng`` make back-off testable. ``bounds``
    limits every attempt and call in time and every answer in size.
    """

    def __init__(
        self,
        domain: str,
        auth: httpx.Auth | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: httpx.Timeout | None = None,
        retry: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        bounds: Bounds = _DEFAULT_BOUNDS,
    ) -> None:
        url: httpx.URL | None = None
        try:
            url = httpx.URL(domain)
        except (httpx.InvalidURL, TypeError):
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            # Not echoed: a malformed URL may still carry credentials.
            raise ConfigError("Encord domain must be an http(s) URL like https://api.encord.com")
        if url.userinfo:
            raise ConfigError("Encord domain must not carry credentials (user:password@)")
        self.domain = domain
        self.retry = retry
        self.bounds = bounds
        self._auth = auth
        self._transport = transport
        self._timeout = timeout if timeout is not None else _default_timeout()
        self._sleep = sleep
        self._rng = rng if rng is not None else random.SystemRandom()
        # No transport given (the daemon): httpx's own, bounded by the thread's deadline, and
        # one for each proxy the environment names, as httpx itself would mount them.
        own = BoundedTransport(verify=_tls_context()) if transport is None else None
        self._http = httpx.Client(
            base_url=domain,
            auth=auth,
            transport=transport if transport is not None else own,
            mounts=mounts(_tls_context()) if transport is None else None,
            trust_env=False,
            timeout=self._timeout,
            headers={"User-Agent": USER_AGENT},
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"EncordClient(domain={self.domain!r}, auth={self._auth!r})"

    def close(self) -> None:
        """Close the connection pool (and a transport given to this client)."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def with_auth(self, auth: httpx.Auth) -> EncordClient:
        """A client with the same domain, timeouts, retry policy and transport, another key.

        A transport given to this client is shared, not owned: closing the new client leaves it
        open; closing this one closes it.
        """
        transport = _SharedTransport(self._transport) if self._transport is not None else None
        return EncordClient(
            self.domain,
            auth,
            transport=transport,
            timeout=self._timeout,
            retry=self.retry,
            sleep=self._sleep,
            rng=self._rng,
            bounds=self.bounds,
        )

    # -- Part 1 -------------------------------------------------------------------------

    def whoami(self) -> None:
        """Prove the key authenticates: 200 or 403 (authenticated, not authorised) pass."""
        call = "whoami"
        response, _ = self._idempotent(call, "GET", f"{_BASE}/organisation/organisation-tags")
        if response.status_code in (200, 204, 403):
            return
        raise _error_for(call, response)

    def bearer_token(self) -> BearerToken:
        """Mint a bearer token (``GET /v2/public/user/bearer-token``)."""
        call = "bearer_token"
        response, _ = self._idempotent(call, "GET", f"{_BASE}/user/bearer-token")
        if response.status_code != 200:
            raise _error_for(call, response)
        data = _json(call, response)
        token = _field(data, "token") if isinstance(data, dict) else None
        if token is None:
            raise ProtocolError(f"Encord answered malformed JSON for {call}")
        register_secret(token)  # masked in every later log line, wherever it turns up
        return BearerToken(token=token)

    # -- Part 2 -------------------------------------------------------------------------

    def list_keys(self, sa: str) -> list[RemoteKey]:
        """Every key of service account ``sa``, following ``nextPageToken``."""
        call = "list_keys"
        path = f"{_BASE}/service-accounts/{_segment(sa, 'service account')}/keys"
        keys: list[RemoteKey] = []
        token: str | None = None
        seen: set[str] = set()
        size = 0
        for _ in range(_MAX_PAGES):
            params = {"pageToken": token} if token is not None else None
            response, _ = self._idempotent(call, "GET", path, params=params)
            if response.status_code != 200:
                raise _error_for(call, response)
            size += len(response.content)
            if size > self.bounds.max_list_bytes:
                raise ProtocolError(
                    f"Encord {call}: pages larger than {self.bounds.max_list_bytes} bytes in all"
                )
            page = _json(call, response)
            results = page.get("results") if isinstance(page, dict) else None
            next_token = page.get("nextPageToken") if isinstance(page, dict) else _MALFORMED
            if not isinstance(results, list) or not (
                next_token is None or (isinstance(next_token, str) and next_token)
            ):
                raise ProtocolError(f"Encord answered malformed JSON for {call}")
            for item in results:
                key = _remote_key(item)
                if key is None:
                    raise ProtocolError(f"Encord answered malformed JSON for {call}")
                keys.append(key)
            if next_token is None:
                return keys
            if next_token in seen:
                raise ProtocolError(f"Encord {call}: pagination repeats a page token")
            seen.add(next_token)
            token = next_token
        raise ProtocolError(f"Encord {call}: more than {_MAX_PAGES} pages")

    def upload_key(self, sa: str, title: str, public_line: str) -> RemoteKey:
        """Register ``public_line`` (``ssh-ed25519 AAAA... comment``) under ``title``.

        Sent once. If the answer is lost, the key list says whether it was registered.
        """
        call = "upload_key"
        key_id = key_id_of_line(public_line)  # KeyFormatError before anything is sent
        path = f"{_BASE}/service-accounts/{_segment(sa, 'service account')}/keys"
        outcome = self._post_once(call, path, {"title": title, "publicKey": public_line})
        if isinstance(outcome, _Lost) and not outcome.sent:
            raise RegistryUnavailable(f"Encord {call}: {outcome.error}; key not registered")
        if isinstance(outcome, httpx.Response) and outcome.status_code not in _GATEWAY_STATUSES:
            if outcome.status_code != 200:
                raise _error_for(call, outcome)
            key = _remote_key(_json(call, outcome))
            if key is None:
                raise ProtocolError(f"Encord answered malformed JSON for {call}")
            if key.key_id != key_id:
                raise ProtocolError(f"Encord {call}: answered a key other than the one uploaded")
            return key
        return self._reconcile_upload(call, sa, key_id)

    def generate_key(self, sa: str, title: str) -> GeneratedKey:
        """Have Encord generate a key titled ``title``; its private half comes back this once.

        Sent once. A lost answer raises :class:`AmbiguousWrite`: reconcile by title.
        """
        call = "generate_key"
        path = f"{_BASE}/service-accounts/{_segment(sa, 'service account')}/keys/generate"
        outcome = self._post_once(call, path, {"title": title})
        if isinstance(outcome, _Lost):
            if not outcome.sent:
                raise RegistryUnavailable(f"Encord {call}: {outcome.error}; key not generated")
            raise AmbiguousWrite(
                f"Encord {call}: answer lost ({outcome.error}); a key may have been generated"
            )
        if outcome.status_code in _GATEWAY_STATUSES:
            raise AmbiguousWrite(
                f"Encord {call}: HTTP {outcome.status_code} from a gateway; "
                "a key may have been generated",
                retry_after=_retry_after(outcome),
            )
        if outcome.status_code != 200:
            raise _error_for(call, outcome)
        data = _json(call, outcome)
        key = _remote_key(data)
        private = _field(data, "privateKey") if isinstance(data, dict) else None
        if key is None or private is None:
            raise ProtocolError(f"Encord answered malformed JSON for {call}")
        pair = None
        try:
            pair = load_private(private)
        except KeyFormatError:
            pair = None
        if pair is None:
            raise ProtocolError(f"Encord {call}: privateKey is not an unencrypted Ed25519 key")
        if pair.key_id != key.key_id:
            raise ProtocolError(f"Encord {call}: privateKey does not match keyId")
        return GeneratedKey(key=key, private_openssh=pair.private_openssh)

    def delete_key(self, sa: str, key_hash: str) -> None:
        """Revoke key ``key_hash``; :class:`NotFound` if Encord has no such key.

        A 404 on a retry after an attempt that may have reached Encord counts as deleted.
        """
        call = "delete_key"
        path = (
            f"{_BASE}/service-accounts/{_segment(sa, 'service account')}"
            f"/keys/{_segment(key_hash, 'key hash')}"
        )
        response, maybe_done = self._idempotent(call, "DELETE", path)
        if response.status_code in (200, 204):
            return
        if response.status_code == 404 and maybe_done:
            return
        raise _error_for(call, response)

    # -- plumbing -------------------------------------------------------------------------

    def _idempotent(
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
        last = ""
        retry_after: float | None = None
        end = time.monotonic() + self.bounds.call_seconds
        attempt = 0
        for attempt in range(1, self.retry.attempts + 1):  # noqa: B007 - read after the loop
            status: int | None = None
            error: str | None = None
            fatal: str | None = None
            response: httpx.Response | None = None
            try:
                response = self._send(call, method, path, end, params=params)
            except _RETRYABLE_ERRORS as exc:
                error = type(exc).__name__
                if not isinstance(exc, _NOT_SENT_ERRORS):
                    maybe_done = True
            except httpx.TransportError as exc:
                fatal = type(exc).__name__
            if fatal is not None:
                raise RegistryUnavailable(f"Encord {call}: request failed ({fatal})")
            if response is not None:
                if response.status_code not in _RETRY_STATUSES:
                    return response, maybe_done
                status = response.status_code
                retry_after = _retry_after(response)
                if status != 429:
                    maybe_done = True
                last = f"HTTP {status}"
            else:
                retry_after = None
                last = str(error)
            if attempt == self.retry.attempts:
                break
            delay = self.retry.delay(attempt, self._rng, retry_after)
            if time.monotonic() + delay >= end:
                raise RegistryUnavailable(
                    f"Encord {call}: gave up after {attempt} attempts in "
                    f"{self.bounds.call_seconds:g} s (last: {last})",
                    retry_after=retry_after,
                )
            _log.debug(
                "encord.retrying",
                call=call,
                attempt=attempt,
                delay=round(delay, 3),
                status=status,
                error=error,
            )
            self._sleep(delay)
        raise RegistryUnavailable(
            f"Encord {call}: gave up after {self.retry.attempts} attempts (last: {last})",
            retry_after=retry_after,
        )

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
        return httpx.Response(
            streamed.status_code, headers=headers, content=content, request=request
        )

    def _post_once(self, call: str, path: str, body: dict[str, str]) -> httpx.Response | _Lost:
        end = time.monotonic() + self.bounds.attempt_seconds
        try:
            return self._send(call, "POST", path, end, body=body)
        except ProtocolError:
            lost = _Lost(error="answer too large", sent=True)
        except _NOT_SENT_ERRORS as exc:
            lost = _Lost(error=f"could not connect ({type(exc).__name__})", sent=False)
        except httpx.TransportError as exc:
            lost = _Lost(error=type(exc).__name__, sent=True)
        _log.debug("encord.answer_lost", call=call, error=lost.error, sent=lost.sent)
        return lost

    def _reconcile_upload(self, call: str, sa: str, key_id: str) -> RemoteKey:
        keys: list[RemoteKey] | None = None
        unavailable: RegistryUnavailable | None = None
        try:
            keys = self.list_keys(sa)
        except RegistryUnavailable as exc:
            unavailable = exc
        if unavailable is not None or keys is None:
            raise AmbiguousWrite(
                f"Encord {call}: upload answer lost and the key list is unavailable",
                retry_after=unavailable.retry_after if unavailable else None,
            )
        for key in keys:
            if key.key_id == key_id:
                _log.debug("encord.upload_reconciled", call=call, key_id=key_id, found=True)
                return key
        _log.debug("encord.upload_reconciled", call=call, key_id=key_id, found=False)
        raise RegistryUnavailable(f"Encord {call}: upload answer lost; key not registered")
