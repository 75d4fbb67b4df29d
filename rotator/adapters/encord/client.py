"""Encord's public API and its key-management calls (contract Parts 1, 2): :class:`EncordClient`.

Each call builds its path, goes over an :class:`~rotator.adapters.encord.exchange.Exchange`
(bounded in time and size; GET and DELETE retried, a key-creating POST sent once) and reads
the answer with :mod:`rotator.adapters.encord.answers`. What a lost answer means is decided
here, per call:

* ``upload_key`` whose answer is lost (or which a gateway answers 502/504) lists the keys and
  looks for the key id it uploaded: found, it returns that key; missing, it raises
  :class:`RegistryUnavailable`.
* ``generate_key`` whose answer is lost raises :class:`AmbiguousWrite`: the caller reconciles by
  title, since only Encord ever held the private key.
* A POST that could not even connect was never sent: :class:`RegistryUnavailable`.
* ``delete_key`` answered 404 after an earlier attempt may have reached Encord counts as done.
* ``list_keys`` answered 404 or 405 on its first page raises
  :class:`KeyManagementUnavailable`: this Encord does not offer key management (or the
  service-account hash is wrong).
* A 401 whose ``Date`` header is more than a minute off this host's clock is
  :class:`ClockSkew`, not a dead key (:func:`~rotator.adapters.encord.answers.error_for`).
* ``list_keys`` refuses a listing whose pages together pass ``Bounds.max_list_bytes``, that
  repeats a page token, or that runs past 1000 pages (:class:`ProtocolError`).

Errors are the house tree (:mod:`rotator.core.errors`): one-line messages naming the call and the
status, perhaps Encord's ``code``, never a response body, Encord's ``message``, a key or a
token. Every error is raised outside the ``except`` block that noticed the problem, so no
``__cause__`` or ``__context__`` carries a library exception (whose text, or attributes such
as a ``JSONDecodeError``'s ``doc``, could hold a body).

:class:`RetryPolicy`, :class:`Bounds` and :data:`USER_AGENT` live in
:mod:`rotator.adapters.encord.exchange` and are re-exported here.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from types import TracebackType
from typing import Final, Self
from urllib.parse import quote

import httpx
import structlog

from rotator.adapters.encord.answers import (
    error_for,
    generated_key,
    key_page,
    parse_json,
    retry_after_of,
    text_field,
    uploaded_key,
)
from rotator.adapters.encord.exchange import (
    USER_AGENT,
    Bounds,
    Exchange,
    Lost,
    RetryPolicy,
    SharedTransport,
)
from rotator.core.errors import (
    AmbiguousWrite,
    ConfigError,
    KeyManagementUnavailable,
    ProtocolError,
    RegistryUnavailable,
)
from rotator.core.keys import key_id_of_line
from rotator.core.redaction import register_secret
from rotator.core.vocab import BearerToken, GeneratedKey, RemoteKey

__all__ = ["Bounds", "EncordClient", "RetryPolicy", "USER_AGENT"]

_log = structlog.get_logger(__name__)

_BASE = "/v2/public"
# A gateway's 502/504 to a POST may hide a write the origin did: treat it as a lost answer.
_GATEWAY_STATUSES: Final = frozenset({502, 504})
_MAX_PAGES: Final = 1000
_DEFAULT_RETRY: Final = RetryPolicy()
_DEFAULT_BOUNDS: Final = Bounds()


def _segment(value: str, what: str) -> str:
    if not value:
        raise ValueError(f"{what} must not be empty")
    if value in (".", ".."):
        # URL parsing would resolve them as dot segments and call another path.
        raise ValueError(f"{what} must not be '.' or '..'")
    return quote(value, safe="")


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
        retry: RetryPolicy = _DEFAULT_RETRY,
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
        self._exchange = Exchange(
            domain,
            auth,
            transport=transport,
            timeout=timeout,
            retry=retry,
            sleep=sleep,
            rng=rng,
            bounds=bounds,
        )

    def __repr__(self) -> str:
        return f"EncordClient(domain={self.domain!r}, auth={self._auth!r})"

    @property
    def clock_offset(self) -> float | None:
        """Encord's clock minus this host's, in seconds, by the ``Date`` header of the newest
        answer (good to about a second); None before any answer that carried one."""
        return self._exchange.last_offset

    def close(self) -> None:
        """Close the connection pool (and a transport given to this client)."""
        self._exchange.close()

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
        ex = self._exchange
        transport = SharedTransport(ex.transport) if ex.transport is not None else None
        return EncordClient(
            self.domain,
            auth,
            transport=transport,
            timeout=ex.timeout,
            retry=self.retry,
            sleep=ex.sleep,
            rng=ex.rng,
            bounds=self.bounds,
        )

    # -- Part 1 -------------------------------------------------------------------------

    def whoami(self) -> None:
        """Prove the key authenticates: 200 or 403 (authenticated, not authorised) pass."""
        call = "whoami"
        path = f"{_BASE}/organisation/organisation-tags"
        response, _ = self._exchange.idempotent(call, "GET", path)
        if response.status_code in (200, 204, 403):
            return
        raise error_for(call, response)

    def bearer_token(self) -> BearerToken:
        """Mint a bearer token (``GET /v2/public/user/bearer-token``)."""
        call = "bearer_token"
        response, _ = self._exchange.idempotent(call, "GET", f"{_BASE}/user/bearer-token")
        if response.status_code != 200:
            raise error_for(call, response)
        data = parse_json(call, response)
        token = text_field(data, "token") if isinstance(data, dict) else None
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
            response, _ = self._exchange.idempotent(call, "GET", path, params=params)
            if response.status_code in (404, 405) and token is None:
                raise KeyManagementUnavailable(
                    f"Encord {call}: HTTP {response.status_code} (no key management here, "
                    "or no such service account)",
                    status=response.status_code,
                )
            if response.status_code != 200:
                raise error_for(call, response)
            size += len(response.content)
            if size > self.bounds.max_list_bytes:
                raise ProtocolError(
                    f"Encord {call}: pages larger than {self.bounds.max_list_bytes} bytes in all"
                )
            page, next_token = key_page(call, response)
            keys.extend(page)
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
        outcome = self._exchange.post_once(call, path, {"title": title, "publicKey": public_line})
        if isinstance(outcome, Lost) and not outcome.sent:
            raise RegistryUnavailable(f"Encord {call}: {outcome.error}; key not registered")
        if isinstance(outcome, httpx.Response) and outcome.status_code not in _GATEWAY_STATUSES:
            if outcome.status_code != 200:
                raise error_for(call, outcome)
            return uploaded_key(call, outcome, key_id)
        return self._reconcile_upload(call, sa, key_id)

    def generate_key(self, sa: str, title: str) -> GeneratedKey:
        """Have Encord generate a key titled ``title``; its private half comes back this once.

        Sent once. A lost answer raises :class:`AmbiguousWrite`: reconcile by title.
        """
        call = "generate_key"
        path = f"{_BASE}/service-accounts/{_segment(sa, 'service account')}/keys/generate"
        outcome = self._exchange.post_once(call, path, {"title": title})
        if isinstance(outcome, Lost):
            if not outcome.sent:
                raise RegistryUnavailable(f"Encord {call}: {outcome.error}; key not generated")
            raise AmbiguousWrite(
                f"Encord {call}: answer lost ({outcome.error}); a key may have been generated"
            )
        if outcome.status_code in _GATEWAY_STATUSES:
            raise AmbiguousWrite(
                f"Encord {call}: HTTP {outcome.status_code} from a gateway; "
                "a key may have been generated",
                retry_after=retry_after_of(outcome),
            )
        if outcome.status_code != 200:
            raise error_for(call, outcome)
        return generated_key(call, outcome)

    def delete_key(self, sa: str, key_hash: str) -> None:
        """Revoke key ``key_hash``; :class:`NotFound` if Encord has no such key.

        A 404 on a retry after an attempt that may have reached Encord counts as deleted.
        """
        call = "delete_key"
        path = (
            f"{_BASE}/service-accounts/{_segment(sa, 'service account')}"
            f"/keys/{_segment(key_hash, 'key hash')}"
        )
        response, maybe_done = self._exchange.idempotent(call, "DELETE", path)
        if response.status_code in (200, 204):
            return
        if response.status_code == 404 and maybe_done:
            return
        raise error_for(call, response)

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
