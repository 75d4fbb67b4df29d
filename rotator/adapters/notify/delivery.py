"""Getting one message through: :class:`Delivery` posts a :class:`~.notice.Notice` to the
target within its deadline, retrying a little, and logs ``notify.sent`` or ``notify.failed``.

The only module of the package that speaks HTTP, and the one place it imports the
bounded-HTTP helpers (every socket operation gets only what is left of the deadline).
"""

from __future__ import annotations

import functools
import json
import ssl
import time

import httpx
import structlog

from rotator.adapters.bounded_http import BoundedTransport, deadline, mounts
from rotator.adapters.notify.bounds import NotifyBounds
from rotator.adapters.notify.notice import Notice
from rotator.adapters.notify.target import NotifyTarget

log = structlog.get_logger("rotator.notify")


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """System CA roots, built once (loading them costs tens of ms)."""
    return httpx.create_ssl_context()


class _Retry(Exception):  # noqa: N818 - control flow inside Delivery.send
    def __init__(self, reason: str) -> None:
        self.reason = reason


class Delivery:
    """Posts messages to one target over one HTTP client; ``transport`` replaces the network
    in unit tests (then no deadline is enforced below httpx). Call :meth:`close` when done."""

    def __init__(
        self,
        target: NotifyTarget,
        *,
        service: str,
        bounds: NotifyBounds,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.target = target
        self.service = service
        self.bounds = bounds
        per_operation = httpx.Timeout(bounds.deadline_seconds)
        self._http = httpx.Client(
            transport=transport
            if transport is not None
            else BoundedTransport(verify=_tls_context()),
            mounts=mounts(_tls_context()) if transport is None else None,
            trust_env=False,
            timeout=per_operation,
            follow_redirects=False,
            headers={"Content-Type": "application/json", "User-Agent": f"{service}-notify"},
        )

    def close(self) -> None:
        self._http.close()

    def send(self, notice: Notice, queued_at: float) -> bool:
        """Post ``notice`` (queued at ``queued_at``, ``time.monotonic()``); True if delivered.

        Raises only what nobody foresaw (the worker logs it as a failure)."""
        bounds = self.bounds
        body = json.dumps(notice.payload(self.service)).encode()
        started = time.monotonic()
        end = started + bounds.deadline_seconds
        fields = {
            "notify_event": notice.event,
            "account": notice.account,
            "key_id": notice.key_id,
            "target": self.target.shown,
        }
        reason = "deadline"
        attempt = 0
        with deadline(end):
            while attempt < bounds.attempts:
                if attempt:
                    wait = bounds.backoff_seconds * 2 ** (attempt - 1)
                    if time.monotonic() + wait >= end:
                        break
                    time.sleep(wait)
                attempt += 1
                try:
                    status = self._post(body)
                except _Retry as retry:
                    reason = retry.reason
                    continue
                except httpx.TimeoutException:
                    reason = "timeout"
                    break
                except httpx.HTTPError as exc:  # the text may hold the URL: log the class only
                    reason = f"error_{type(exc).__name__}"
                    break
                if 200 <= status < 300:
                    log.info(
                        "notify.sent",
                        **fields,
                        status=status,
                        attempts=attempt,
                        duration_ms=round((time.monotonic() - started) * 1000),
                        waited_ms=round((started - queued_at) * 1000),
                    )
                    return True
                reason = "redirect_refused" if 300 <= status < 400 else f"status_{status}"
                break
        log.warning(
            "notify.failed",
            **fields,
            reason=reason,
            attempts=attempt,
            duration_ms=round((time.monotonic() - started) * 1000),
        )
        return False

    def _post(self, body: bytes) -> int:
        """One attempt: the answer's status. Its body is read up to the cap (so the connection
        can be reused) and dropped; once the status is in, a slow body does not matter.

        Raises _Retry for what is worth another attempt (no connection, 429, 5xx)."""
        try:
            with self._http.stream("POST", self.target.url, content=body) as response:
                status = response.status_code
                read = 0
                try:
                    for chunk in response.iter_raw():
                        read += len(chunk)
                        if read > self.bounds.max_answer_bytes:
                            break
                except httpx.TimeoutException:
                    pass  # the deadline passed while the body dripped: the status stands
        except (httpx.ConnectError, httpx.ConnectTimeout):
            raise _Retry("connect") from None
        if status == 429 or status >= 500:
            raise _Retry(f"status_{status}")
        return status
