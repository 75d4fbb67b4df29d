"""Telling a person: a small JSON message to ``ROTATOR_NOTIFY_URL`` when something needs one.

The message is Slack-compatible (Slack's incoming webhooks read ``text``) and carries the
same facts as structured fields for any other receiver::

    {"text": "...", "event": "key.registration_required", "severity": "warning",
     "service": "rotator", "account": "ml-prod", "kind": "ssh-key", "key_id": "9f2c...",
     "title": "rotator-2026-03-02", "public_key": "ssh-ed25519 AAAA...", "hint": "..."}

Events (:data:`EVENTS`): ``key.registration_required`` and ``key.revocation_required``
(manual mode: a person adds or removes a key in Encord), ``rotation.failed`` (a rotation ended
with outcome ``failed``), ``rotation.blocked_by_cap`` and ``key.expiring_soon``.

What it promises:

- **Never blocks a rotation.** :meth:`Notifier.notify` checks the message, puts it on a
  bounded queue and returns at once; one worker thread sends. When the queue is full the
  oldest message is dropped (and counted).
- **Bounded in time.** One message, retries and back-off waits included, ends within
  :attr:`NotifyBounds.deadline_seconds`: every socket operation gets only what is left of that
  deadline (so a receiver dripping one byte a second cannot hold it), and the answer is read
  up to :attr:`NotifyBounds.max_answer_bytes`, then dropped.
- **Retried a little:** connection failures, 429 and 5xx, up to :attr:`NotifyBounds.attempts`
  times with doubling waits. Redirects are never followed (a 3xx is a failure).
- **Never carries a secret.** The payload is built from an allow-list of fields
  (:class:`Notice`), each of a checked shape; a value that looks like a private key, a token,
  a bearer credential, a webhook URL or a secret rotator handles is refused (``notify.refused``,
  naming the field, never the value) and nothing is sent.
- **The URL is a secret** (a Slack webhook's path is its credential): logs, errors and
  ``repr`` show only its scheme and host. Plain ``http`` is refused except to a loopback host.
- **Deduplicated:** the same (event, account, key_id) goes out at most once per
  :attr:`NotifyBounds.dedup`; manual mode repeats its request on every check. A message that
  could not be delivered (failed, or dropped from the queue) may go out again at once.

Logs: ``notify.sent``, ``notify.failed`` (``reason``: ``connect``, ``timeout``,
``status_<code>``, ``redirect_refused``, ``error_<ExceptionName>``), ``notify.dropped``,
``notify.refused``; each with ``target`` (scheme and host), never the URL.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

import httpx
import structlog

from rotator.adapters.bounded_http import BoundedTransport, deadline, mounts
from rotator.core.redaction import scrub
from rotator.core.vocab import CREDENTIALS, rfc3339, utc

__all__ = [
    "EVENTS",
    "Notice",
    "NotifyBounds",
    "NotifyStats",
    "NotifyTarget",
    "Notifier",
    "looks_secret",
    "parse_notify_url",
]

log = structlog.get_logger("rotator.notify")

Severity = Literal["info", "warning", "critical"]

EVENTS: Final[Mapping[str, Severity]] = {
    "key.registration_required": "warning",
    "key.revocation_required": "warning",
    "rotation.failed": "critical",
    "rotation.blocked_by_cap": "critical",
    "key.expiring_soon": "warning",
}
"""The events a person is told about, each with its default severity."""

_SEVERITIES: Final = ("info", "warning", "critical")
_ICONS: Final[Mapping[str, str]] = {
    "info": ":information_source:",
    "warning": ":warning:",
    "critical": ":rotating_light:",
}

# What a secret looks like, beyond what redaction.scrub() masks (private-key blocks, Vault
# tokens, bearer credentials, and every secret rotator registered while handling it).
# Distinctive prefixes match anywhere: glued to other text ("0hvs.…", "xBearer …") a secret
# is still one, and refusing a harmless message costs less than sending a secret. Short,
# common ones (s., sk-, AKIA) must start a word, or "task-…" would be refused.
_SECRET_SHAPES: Final = re.compile(
    r"PRIVATE KEY"
    r"|b3BlbnNzaC1rZXktdjE"  # base64 of "openssh-key-v1": the body of an OpenSSH private key
    r"|hv[sbr]\.[A-Za-z0-9_-]{20,}"  # Vault / OpenBao tokens
    r"|(?<![A-Za-z0-9])[sbr]\.[A-Za-z0-9]{24}(?![A-Za-z0-9])"  # their legacy form
    r"|bearer\s+[^\s\"',;]{8,}"  # an HTTP bearer credential
    r"|xox[abposr]-[A-Za-z0-9-]{10,}"  # Slack tokens
    r"|hooks\.slack\.com/"  # a Slack webhook URL (its path is the credential)
    r"|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\."  # a JWT
    r"|(?:gh[pousr]_|glpat-)[A-Za-z0-9_-]{16,}"  # GitHub, GitLab tokens
    r"|(?<![A-Za-z0-9])(?:sk-|AKIA)[A-Za-z0-9_-]{16,}"  # API keys, AWS access keys
    r"|[a-z][a-z0-9+.-]*://[^\s/@]+:[^\s/@]+@",  # credentials in a URL
    re.IGNORECASE,
)
_PUBLIC_KEY_RE: Final = re.compile(r"ssh-ed25519 [A-Za-z0-9+/]{60,100}={0,2}(?: [!-~]{1,100})?")
_CONTROL_RE: Final = re.compile(r"[\x00-\x1f\x7f]")
_TOKEN_RE: Final = re.compile(r"[!-~]{1,128}")  # printable ASCII, no spaces


def looks_secret(value: str) -> bool:
    """Whether ``value`` holds something that looks like a secret (so must not be sent)."""
    return scrub(value) != value or _SECRET_SHAPES.search(value) is not None


def _check_text(name: str, value: str, limit: int) -> None:
    if not value or len(value) > limit or _CONTROL_RE.search(value):
        raise ValueError(f"notice field {name!r}: 1 to {limit} characters, no control characters")


def _check_token(name: str, value: str) -> None:
    if not _TOKEN_RE.fullmatch(value):
        raise ValueError(f"notice field {name!r}: 1 to 128 printable characters, no spaces")


@dataclass(frozen=True, slots=True)
class Notice:
    """One message to a person: the only fields a notification may carry.

    ``event`` is one of :data:`EVENTS`; ``account`` rotator's name of the service account;
    ``kind`` the credential (``ssh-key``, ``api-key``, ``bearer-token``); ``key_id`` and
    ``title`` the key concerned; ``public_key`` the OpenSSH public line a person must add
    (``key.registration_required``); ``hint`` one line of advice; ``expires_at`` when the key
    expires (``key.expiring_soon``); ``severity`` defaults by event. Every string is checked
    for shape and refused (ValueError naming the field) if it looks like a secret.
    """

    event: str
    account: str
    kind: str | None = None
    key_id: str | None = None
    title: str | None = None
    public_key: str | None = None
    hint: str | None = None
    expires_at: datetime | None = None
    severity: Severity | None = None

    def __post_init__(self) -> None:
        if self.event not in EVENTS:
            raise ValueError(
                f"unknown notice event {self.event[:60]!r}: one of {', '.join(EVENTS)}"
            )
        if self.severity is None:
            object.__setattr__(self, "severity", EVENTS[self.event])
        elif self.severity not in _SEVERITIES:
            raise ValueError(f"notice severity must be one of {', '.join(_SEVERITIES)}")
        if self.kind is not None and self.kind not in CREDENTIALS:
            raise ValueError(f"notice field 'kind' must be one of {', '.join(CREDENTIALS)}")
        if self.expires_at is not None:
            object.__setattr__(self, "expires_at", utc(self.expires_at))
        _check_token("account", self.account)
        if self.key_id is not None:
            _check_token("key_id", self.key_id)
        if self.title is not None:
            _check_text("title", self.title, 200)
        if self.hint is not None:
            _check_text("hint", self.hint, 500)
        if self.public_key is not None and not _PUBLIC_KEY_RE.fullmatch(self.public_key):
            raise ValueError("notice field 'public_key' is not an ssh-ed25519 public line")
        for name in ("account", "key_id", "title", "public_key", "hint"):
            value = getattr(self, name)
            if value is not None and looks_secret(value):
                raise ValueError(f"notice field {name!r} looks like a secret; refused")

    @property
    def dedup_key(self) -> tuple[str, str, str | None]:
        """Messages with the same key are sent at most once per dedup interval."""
        return (self.event, self.account, self.key_id)

    def text(self, service: str) -> str:
        """The human line(s): Slack mrkdwn, with ``&``, ``<`` and ``>`` escaped."""
        what = self.kind or "credential"
        key = f" `{self.key_id}`" if self.key_id else ""
        titled = f" ({self.title})" if self.title else ""
        headline = {
            "key.registration_required": f"register the new {what}{titled} in Encord",
            "key.revocation_required": f"revoke the old {what}{key}{titled} in Encord",
            "rotation.failed": f"rotating the {what} failed",
            "rotation.blocked_by_cap": f"rotating the {what} is blocked: Encord's key cap is "
            "reached",
            "key.expiring_soon": f"the {what}{key} expires "
            + (rfc3339(self.expires_at) if self.expires_at else "soon"),
        }[self.event]
        lines = [f"{_ICONS[str(self.severity)]} {service}: account `{self.account}`: {headline}"]
        if self.public_key:
            lines.append(f"Public key: `{self.public_key}`")
        if self.hint:
            lines.append(self.hint)
        text = "\n".join(lines)
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    def payload(self, service: str) -> dict[str, str]:
        """The JSON object sent: ``text`` and the allow-listed fields that are set."""
        out = {"text": self.text(service), "event": self.event, "severity": str(self.severity)}
        out["service"] = service
        out["account"] = self.account
        for name in ("kind", "key_id", "title", "public_key", "hint"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.expires_at is not None:
            out["expires_at"] = rfc3339(self.expires_at)
        return out


@dataclass(frozen=True, slots=True)
class NotifyTarget:
    """Where messages go. The URL is a secret: ``str`` and ``repr`` show scheme and host."""

    url: str = field(repr=False)

    @property
    def shown(self) -> str:
        """``scheme://host[:port]``, safe to log."""
        parsed = httpx.URL(self.url)
        port = f":{parsed.port}" if parsed.port else ""
        host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
        return f"{parsed.scheme}://{host}{port}"

    def __str__(self) -> str:
        return self.shown


def _is_loopback(host: str) -> bool:
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_notify_url(text: str) -> NotifyTarget:
    """Check ``ROTATOR_NOTIFY_URL``: https, or http to a loopback host only.

    Raises ValueError in one line that never repeats the URL's path or query.
    """
    text = text.strip()
    try:
        url = httpx.URL(text)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise ValueError("not a URL: expected https://host/path") from None
    if url.scheme not in ("https", "http") or not url.host:
        raise ValueError(
            f"expected an https:// URL with a host, got scheme {url.scheme or 'none'!r}"
        )
    if url.scheme == "http" and not _is_loopback(url.host):
        raise ValueError(
            f"plain http is allowed only to a loopback host, not {url.host[:100]!r}: use https"
        )
    return NotifyTarget(text)


@dataclass(frozen=True, slots=True)
class NotifyBounds:
    """How a message is sent, and how much the notifier may hold.

    ``deadline_seconds``: one message, from the first connect to the last byte of the last
    attempt, back-off waits included. 5 s: a webhook answers in well under a second, and a
    person's message is worth little if it cannot get through in five.
    ``attempts`` (3) and ``backoff_seconds`` (0.5, doubled each time): for connection
    failures, 429 and 5xx; a retry that cannot start before the deadline is not made.
    ``max_answer_bytes``: the answer is read up to this, then dropped. 64 KiB: Slack answers
    ``ok``.
    ``queue_size``: messages waiting; the oldest is dropped past it. 100: a few per account.
    ``dedup``: the same (event, account, key_id) at most once per this. 1 h: manual mode
    repeats its request every check (minutes), a person needs it once an hour at most.
    """

    deadline_seconds: float = 5.0
    attempts: int = 3
    backoff_seconds: float = 0.5
    max_answer_bytes: int = 64 << 10
    queue_size: int = 100
    dedup: timedelta = timedelta(hours=1)

    def __post_init__(self) -> None:
        if self.deadline_seconds <= 0 or self.backoff_seconds < 0:
            raise ValueError("NotifyBounds: need deadline_seconds > 0 and backoff_seconds >= 0")
        if self.attempts < 1 or self.queue_size < 1 or self.max_answer_bytes < 1:
            raise ValueError("NotifyBounds: attempts, queue_size, max_answer_bytes must be >= 1")
        if self.dedup < timedelta(0):
            raise ValueError("NotifyBounds: dedup must not be negative")


@dataclass(frozen=True, slots=True)
class NotifyStats:
    """Counts since the notifier started (for metrics)."""

    queued: int = 0
    sent: int = 0
    failed: int = 0
    dropped: int = 0
    deduplicated: int = 0
    refused: int = 0


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """System CA roots, built once (loading them costs tens of ms)."""
    return httpx.create_ssl_context()


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class _Item:
    notice: Notice
    stamp: datetime  # the dedup entry this message made
    queued_at: float  # time.monotonic()


class _Retry(Exception):  # noqa: N818 - control flow inside _deliver
    def __init__(self, reason: str) -> None:
        self.reason = reason


class Notifier:
    """Sends :class:`Notice` s to one target from a bounded queue, on one worker thread.

    ``clock`` (UTC) drives deduplication; ``transport`` replaces the network in unit tests
    (then no deadline is enforced below httpx). Call :meth:`close` at shutdown.
    """

    def __init__(
        self,
        target: NotifyTarget,
        *,
        service: str = "rotator",
        bounds: NotifyBounds | None = None,
        clock: Callable[[], datetime] = _utcnow,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        _check_token("service", service)
        self.target = target
        self.service = service
        self.bounds = bounds if bounds is not None else NotifyBounds()
        self._clock = clock
        self._lock = threading.Condition()
        self._queue: deque[_Item] = deque()
        self._busy = False
        self._closing = False
        self._last_sent: dict[tuple[str, str, str | None], datetime] = {}
        self._counts = {name: 0 for name in NotifyStats.__dataclass_fields__}
        per_operation = httpx.Timeout(self.bounds.deadline_seconds)
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
        self._worker = threading.Thread(target=self._run, name="rotator-notify", daemon=True)
        self._worker.start()

    def __repr__(self) -> str:
        return f"Notifier(target={self.target.shown!r})"

    # --- the caller's side: never blocks, never raises -------------------------------------

    def notify(
        self,
        event: str,
        *,
        account: str,
        kind: str | None = None,
        key_id: str | None = None,
        title: str | None = None,
        public_key: str | None = None,
        hint: str | None = None,
        expires_at: datetime | None = None,
        severity: Severity | None = None,
    ) -> bool:
        """Queue a message; True if queued, False if refused (logged) or a duplicate."""
        try:
            notice = Notice(
                event=event,
                account=account,
                kind=kind,
                key_id=key_id,
                title=title,
                public_key=public_key,
                hint=hint,
                expires_at=expires_at,
                severity=severity,
            )
        except ValueError as exc:
            # The message names the field and what is wrong with it, never the value.
            self._count("refused")
            log.warning("notify.refused", notify_event=event[:60], reason=str(exc))
            return False
        return self.submit(notice)

    def submit(self, notice: Notice) -> bool:
        """Queue ``notice``; False if the same one went out within the dedup interval."""
        now = utc(self._clock())
        dropped: _Item | None = None
        with self._lock:
            if self._closing:
                return False
            last = self._last_sent.get(notice.dedup_key)
            if last is not None and now - last < self.bounds.dedup:
                self._counts["deduplicated"] += 1
                return False
            self._last_sent[notice.dedup_key] = now
            if len(self._last_sent) > 4 * self.bounds.queue_size + 1000:
                self._prune(now)
            if len(self._queue) >= self.bounds.queue_size:
                dropped = self._queue.popleft()
                self._forget(dropped)
                self._counts["dropped"] += 1
            self._queue.append(_Item(notice, now, time.monotonic()))
            self._counts["queued"] += 1
            self._lock.notify_all()
        if dropped is not None:
            log.warning(
                "notify.dropped",
                notify_event=dropped.notice.event,
                account=dropped.notice.account,
                reason="queue_full",
                dropped_total=self.stats().dropped,
            )
        return True

    def stats(self) -> NotifyStats:
        """The counts so far."""
        with self._lock:
            return NotifyStats(**self._counts)

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the queue to empty and the worker to go idle."""
        end = time.monotonic() + timeout
        with self._lock:
            while self._queue or self._busy:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
        return True

    def close(self, timeout: float | None = None) -> None:
        """Stop taking messages; give those queued up to ``timeout`` seconds (default: one
        message's deadline) to go out, then stop the worker."""
        with self._lock:
            self._closing = True
            self._lock.notify_all()
        self._worker.join(self.bounds.deadline_seconds if timeout is None else timeout)
        if not self._worker.is_alive():
            self._http.close()

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- bookkeeping (under the lock) --------------------------------------------------------

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def _forget(self, item: _Item) -> None:
        """An undelivered message may go out again at once."""
        if self._last_sent.get(item.notice.dedup_key) == item.stamp:
            del self._last_sent[item.notice.dedup_key]

    def _prune(self, now: datetime) -> None:
        for key, at in list(self._last_sent.items()):
            if now - at >= self.bounds.dedup:
                del self._last_sent[key]

    # --- the worker ------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closing:
                    self._busy = False
                    self._lock.notify_all()
                    self._lock.wait()
                if not self._queue:  # closing, nothing left
                    self._busy = False
                    self._lock.notify_all()
                    return
                item = self._queue.popleft()
                self._busy = True
            try:
                delivered = self._deliver(item)
            except Exception as exc:  # never let the worker die; never log the text
                log.error(
                    "notify.failed",
                    notify_event=item.notice.event,
                    account=item.notice.account,
                    target=self.target.shown,
                    reason=f"error_{type(exc).__name__}",
                )
                delivered = False
            with self._lock:
                self._counts["sent" if delivered else "failed"] += 1
                if not delivered:
                    self._forget(item)

    def _deliver(self, item: _Item) -> bool:
        notice, bounds = item.notice, self.bounds
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
                        waited_ms=round((started - item.queued_at) * 1000),
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
