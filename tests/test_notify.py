"""Telling a person (rotator.adapters.notify): the message and its allow-list, the URL rules,
and delivery against a local receiver that answers well, slowly, wrongly or not at all —
never blocking the caller, always within the deadline, never carrying a secret."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator, MutableMapping
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from rotator.adapters.notify import (
    EVENTS,
    Notice,
    Notifier,
    NotifyBounds,
    NotifyTarget,
    looks_secret,
    parse_notify_url,
)
from rotator.core import keys
from rotator.core.redaction import register_secret

PUBLIC = keys.generate("rotator-test").public_line
KEY_ID = "9f" * 32
# Short deadlines keep the suite quick; the behaviour is the same at 5 s.
FAST = NotifyBounds(deadline_seconds=1.0, attempts=3, backoff_seconds=0.05)
# An enqueue that waited for delivery would take at least one deadline; half of one tells
# "returned at once" apart from that even on a loaded machine (this is no speed goal).
NOT_BLOCKED = FAST.deadline_seconds / 2
SLACK = 0.5  # scheduling slack on a busy machine


# --- a local receiver ------------------------------------------------------------------------


class Receiver:
    """An HTTP server on a loopback address that records each POST and answers as its script
    says, one step per request (the last step repeats): ``ok``, ``<status>``, ``redirect:<url>``,
    ``hang`` (never answers), ``drip_head`` (the status line a byte at a time), ``drip_body``
    (a 200, then its body a byte at a time), ``huge`` (a 200 with 64 MiB of body)."""

    def __init__(self, host: str, script: list[str]) -> None:
        self.script = script
        self.bodies: list[bytes] = []
        self.paths: list[str] = []
        self.arrived = threading.Semaphore(0)
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                step = receiver.record(self.path, body)
                receiver.answer(self, step)

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda *args: None  # type: ignore[method-assign]  # quiet
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base = f"http://{host}:{self.port}"

    @property
    def url(self) -> str:
        """A webhook-like URL whose path and query stand for the secret they are at Slack."""
        return f"{self.base}/services/T0/B0/pathsecret?token=querysecret"

    def record(self, path: str, body: bytes) -> str:
        self.paths.append(path)
        self.bodies.append(body)
        step = self.script[min(len(self.bodies), len(self.script)) - 1]
        self.arrived.release()
        return step

    def wait_for(self, count: int, timeout: float = 5.0) -> None:
        for _ in range(count):
            assert self.arrived.acquire(timeout=timeout), "the receiver got nothing"

    def answer(self, handler: BaseHTTPRequestHandler, step: str) -> None:
        wfile = handler.wfile
        if step == "hang":
            self.release.wait(30)
        elif step == "drip_head":
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n":
                if self.release.wait(0.2):
                    return
                wfile.write(bytes([byte]))
                wfile.flush()
        elif step == "drip_body":
            wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            for _ in range(1000):
                if self.release.wait(0.2):
                    return
                wfile.write(b"x")
                wfile.flush()
        elif step == "huge":
            size = 64 << 20
            wfile.write(f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode())
            chunk = b"x" * (1 << 16)
            for _ in range(size // len(chunk)):
                wfile.write(chunk)
        elif step.startswith("redirect:"):
            handler.send_response(307)
            handler.send_header("Location", step.removeprefix("redirect:"))
            handler.send_header("Content-Length", "0")
            handler.end_headers()
        else:
            status = 200 if step == "ok" else int(step)
            handler.send_response(status)
            handler.send_header("Content-Length", "2")
            handler.end_headers()
            wfile.write(b"ok")

    def messages(self) -> list[dict[str, Any]]:
        return [json.loads(body) for body in self.bodies]

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Callable[..., Receiver]]:
    """Start receivers (``receiver("ok")``, ``receiver("500", "ok", host="127.0.0.2")``)."""
    started: list[Receiver] = []

    def start(*script: str, host: str = "127.0.0.1") -> Receiver:
        started.append(Receiver(host, list(script) or ["ok"]))
        return started[-1]

    yield start
    for one in started:
        one.stop()


@pytest.fixture
def notifiers() -> Iterator[Callable[..., Notifier]]:
    """Make notifiers that are closed at the end of the test."""
    made: list[Notifier] = []

    def make(url: str, **kwargs: Any) -> Notifier:
        kwargs.setdefault("bounds", FAST)
        made.append(Notifier(parse_notify_url(url), **kwargs))
        return made[-1]

    yield make
    for notifier in made:
        notifier.close(timeout=5)


def ask(notifier: Notifier, **fields: Any) -> tuple[bool, float]:
    """Ask a person to register a key (``fields`` override the defaults); the answer and how
    long the call took (seconds)."""
    args: dict[str, Any] = {
        "account": "ml-prod",
        "kind": "ssh-key",
        "key_id": KEY_ID,
        "title": "rotator-2026-03-02",
        "public_key": PUBLIC,
        "hint": "Add it under Settings > Service accounts > Keys.",
    }
    args.update(fields)
    started = time.perf_counter()
    queued = notifier.notify("key.registration_required", **args)
    return queued, time.perf_counter() - started


def streamed(status: int) -> httpx.Response:
    """A MockTransport answer whose body is still to be read, as a network one is."""
    return httpx.Response(status, stream=httpx.ByteStream(b"ok"))


def events_named(
    events: list[MutableMapping[str, Any]], name: str
) -> list[MutableMapping[str, Any]]:
    return [e for e in events if e["event"] == name]


# --- delivery --------------------------------------------------------------------------------


def test_a_message_arrives_with_its_fields(
    receiver: Callable[..., Receiver], notifiers: Callable[..., Notifier]
) -> None:
    """The receiver gets one JSON message: Slack's ``text`` and every structured field, and
    ``notify.sent`` is logged naming only the scheme and host of the URL."""
    rx = receiver("ok")
    notifier = notifiers(rx.url, service="rotator-prod")
    with capture_logs() as logs:
        queued, took = ask(notifier)
        assert queued and took < NOT_BLOCKED
        assert notifier.flush(5)
    [message] = rx.messages()
    assert message == {
        "text": message["text"],
        "event": "key.registration_required",
        "severity": "warning",
        "service": "rotator-prod",
        "account": "ml-prod",
        "kind": "ssh-key",
        "key_id": KEY_ID,
        "title": "rotator-2026-03-02",
        "public_key": PUBLIC,
        "hint": "Add it under Settings > Service accounts > Keys.",
    }
    assert "rotator-prod" in message["text"] and "`ml-prod`" in message["text"]
    assert PUBLIC in message["text"] and "Settings &gt; Service" in message["text"]
    assert rx.paths == ["/services/T0/B0/pathsecret?token=querysecret"]
    [sent] = events_named(logs, "notify.sent")
    assert sent["target"] == rx.base and sent["status"] == 200 and sent["attempts"] == 1
    assert "pathsecret" not in repr(logs) and "querysecret" not in repr(logs)
    assert notifier.stats().sent == 1


@pytest.mark.parametrize("status", ["500", "503", "429"])
def test_a_busy_receiver_is_tried_again(
    status: str, receiver: Callable[..., Receiver], notifiers: Callable[..., Notifier]
) -> None:
    """429 and 5xx are retried after a short wait; the second attempt delivers the same body."""
    rx = receiver(status, "ok")
    notifier = notifiers(rx.url)
    with capture_logs() as logs:
        assert ask(notifier)[0]
        assert notifier.flush(5)
    assert len(rx.bodies) == 2 and rx.bodies[0] == rx.bodies[1]
    [sent] = events_named(logs, "notify.sent")
    assert sent["attempts"] == 2


def test_a_client_error_is_not_retried(
    receiver: Callable[..., Receiver], notifiers: Callable[..., Notifier]
) -> None:
    """A 4xx other than 429 will not get better: one attempt, ``notify.failed``."""
    rx = receiver("404")
    notifier = notifiers(rx.url)
    with capture_logs() as logs:
        ask(notifier)
        assert notifier.flush(5)
    assert len(rx.bodies) == 1
    [failed] = events_named(logs, "notify.failed")
    assert failed["reason"] == "status_404" and failed["attempts"] == 1


def test_a_redirect_is_not_followed(
    receiver: Callable[..., Receiver], notifiers: Callable[..., Notifier]
) -> None:
    """A 307 to another loopback address is a failure: that address hears nothing, and the
    first is not asked again."""
    elsewhere = receiver("ok", host="127.0.0.2")
    rx = receiver(f"redirect:{elsewhere.url}")
    notifier = notifiers(rx.url)
    with capture_logs() as logs:
        ask(notifier)
        assert notifier.flush(5)
    assert len(rx.bodies) == 1 and elsewhere.bodies == []
    [failed] = events_named(logs, "notify.failed")
    assert failed["reason"] == "redirect_refused"
    assert notifier.stats().failed == 1


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize(
    ("script", "reason", "attempts"),
    [
        (None, "connect", 3),  # nothing listens
        ("hang", "timeout", 1),  # accepts, reads, never answers
        ("drip_head", "timeout", 1),  # the status line a byte every 0.2 s
    ],
)
def test_a_receiver_that_is_down_hangs_or_drips_never_holds_anyone(
    script: str | None,
    reason: str,
    attempts: int,
    receiver: Callable[..., Receiver],
    notifiers: Callable[..., Notifier],
) -> None:
    """The caller's call returns at once however bad the receiver; the message is given up
    within its deadline (retries and back-off included) with ``notify.failed``."""
    url = receiver(script).url if script else f"http://127.0.0.1:{closed_port()}/hook"
    notifier = notifiers(url)
    with capture_logs() as logs:
        started = time.monotonic()
        queued, took = ask(notifier)
        assert queued and took < NOT_BLOCKED
        # Further messages queue behind it without waiting either.
        assert all(ask(notifier, key_id=f"k{i}")[1] < NOT_BLOCKED for i in range(3))
        assert notifier.flush(4 * FAST.deadline_seconds + 4 * SLACK)
        elapsed = time.monotonic() - started
    failed = events_named(logs, "notify.failed")
    assert len(failed) == 4
    assert {f["reason"] for f in failed} == {reason}
    assert failed[0]["attempts"] == attempts
    for one in failed:
        assert one["duration_ms"] <= FAST.deadline_seconds * 1000 + SLACK * 1000
    assert elapsed <= 4 * (FAST.deadline_seconds + SLACK)


def test_a_slow_body_after_the_status_does_not_outlast_the_deadline(
    receiver: Callable[..., Receiver], notifiers: Callable[..., Notifier]
) -> None:
    """A 200 whose body drips: the message counts as sent (the status arrived), and the
    exchange still ends by the deadline."""
    rx = receiver("drip_body")
    notifier = notifiers(rx.url)
    with capture_logs() as logs:
        ask(notifier)
        assert notifier.flush(FAST.deadline_seconds + 2 * SLACK)
    [sent] = events_named(logs, "notify.sent")
    assert sent["duration_ms"] <= (FAST.deadline_seconds + SLACK) * 1000


def test_a_huge_answer_is_read_only_up_to_the_cap(
    receiver: Callable[..., Receiver], notifiers: Callable[..., Notifier]
) -> None:
    """A 64 MiB answer is not read whole: reading stops at the cap, the message counts as
    sent, quickly."""
    rx = receiver("huge")
    notifier = notifiers(rx.url)
    with capture_logs() as logs:
        ask(notifier)
        assert notifier.flush(FAST.deadline_seconds + SLACK)
    [sent] = events_named(logs, "notify.sent")
    assert sent["duration_ms"] < FAST.deadline_seconds * 1000


def test_a_full_queue_drops_the_oldest_and_counts_it(
    receiver: Callable[..., Receiver], notifiers: Callable[..., Notifier]
) -> None:
    """With one message stuck in flight and room for two, four more push the two oldest
    waiting ones out; the newest two are delivered once the stuck one times out."""
    rx = receiver("hang", "ok")
    notifier = notifiers(rx.url, bounds=NotifyBounds(deadline_seconds=1.0, queue_size=2))
    with capture_logs() as logs:
        ask(notifier, key_id="k1")
        rx.wait_for(1)  # k1 is in flight
        for key in ("k2", "k3", "k4", "k5"):
            assert ask(notifier, key_id=key)[0]
        assert notifier.flush(5)
    assert [m["key_id"] for m in rx.messages()] == ["k1", "k4", "k5"]
    stats = notifier.stats()
    assert (stats.queued, stats.dropped, stats.failed, stats.sent) == (5, 2, 1, 2)
    assert len(events_named(logs, "notify.dropped")) == 2


def test_the_worker_survives_an_unexpected_error(notifiers: Callable[..., Notifier]) -> None:
    """A transport that raises something unforeseen fails that message, not the worker."""
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise RuntimeError("unforeseen")
        return streamed(200)

    notifier = notifiers("https://hooks.example.com/x", transport=httpx.MockTransport(handler))
    with capture_logs() as logs:
        ask(notifier, key_id="k1")
        assert notifier.flush(5)
        ask(notifier, key_id="k2")
        assert notifier.flush(5)
    assert [e["event"] for e in logs if e["event"].startswith("notify.")] == [
        "notify.failed",
        "notify.sent",
    ]
    assert events_named(logs, "notify.failed")[0]["reason"] == "error_RuntimeError"


def test_after_close_nothing_is_taken(notifiers: Callable[..., Notifier]) -> None:
    """close() stops the worker; later messages are not queued."""
    notifier = notifiers(
        "https://hooks.example.com/x",
        transport=httpx.MockTransport(lambda request: streamed(200)),
    )
    notifier.close(timeout=5)
    assert not ask(notifier)[0]


# --- deduplication ---------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_the_same_message_goes_out_once_per_interval(notifiers: Callable[..., Notifier]) -> None:
    """(event, account, key_id) is sent at most once an hour: repeats are counted, not sent;
    another key, account or event is a different message; after the hour it goes again."""
    sent: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return streamed(200)

    clock = FakeClock()
    notifier = notifiers(
        "https://hooks.example.com/x", transport=httpx.MockTransport(handler), clock=clock
    )
    assert ask(notifier)[0]
    assert not ask(notifier)[0]
    clock.now += timedelta(minutes=59, seconds=59)
    assert not ask(notifier)[0]
    assert ask(notifier, key_id="other")[0]
    assert ask(notifier, account="ml-staging")[0]
    assert notifier.notify("key.revocation_required", account="ml-prod", key_id=KEY_ID)
    clock.now += timedelta(seconds=1)
    assert ask(notifier)[0]
    assert notifier.flush(5)
    assert len(sent) == 5
    assert notifier.stats().deduplicated == 2


def test_an_undelivered_message_may_go_out_again_at_once(
    notifiers: Callable[..., Notifier],
) -> None:
    """A message the receiver refused does not hold back the next try of the same one."""
    answers = iter([400, 200])
    notifier = notifiers(
        "https://hooks.example.com/x",
        transport=httpx.MockTransport(lambda request: streamed(next(answers))),
        clock=FakeClock(),
    )
    assert ask(notifier)[0]
    assert notifier.flush(5)
    assert ask(notifier)[0]
    assert notifier.flush(5)
    assert (notifier.stats().failed, notifier.stats().sent) == (1, 1)


# --- no secret, ever -------------------------------------------------------------------------


def _secrets() -> dict[str, str]:
    """Values no message may carry, by what they are."""
    registered = "a-secret-rotator-registered-while-working"
    register_secret(registered)
    return {
        "openssh_private_key": keys.generate().private_openssh,
        "openssh_key_body": "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ",
        "pem_private_key": "-----BEGIN PRIVATE KEY-----MC4CAQAwBQYDK2VwBCIEIA==",
        "vault_token": "hvs.CAESIJ" + "q" * 24,
        "bearer": "Bearer " + "Zm9vYmFyYmF6cXV4" * 2,
        "slack_token": "xoxb-1234567890-abcdefghijkl",
        "slack_webhook": "https://hooks.slack.com/services/T00/B00/XXXXXXXXXXXXXXXX",
        "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJl",
        "github_token": "ghp_" + "a1" * 18,
        "url_credentials": "https://user:hunter2@example.com/",
        "registered": registered,
    }


SECRETS = _secrets()


@pytest.fixture(autouse=True)
def _registered_secret() -> None:
    """The registry of secrets is process-wide and other tests empty it (forget_secrets):
    register the one these tests rely on afresh for each test."""
    register_secret(SECRETS["registered"])


@pytest.mark.parametrize("field", ["hint", "title", "key_id", "account"])
def test_no_secret_reaches_the_receiver_or_the_logs(
    field: str, receiver: Callable[..., Receiver], notifiers: Callable[..., Notifier]
) -> None:
    """A secret in any field is refused — the call returns False, ``notify.refused`` names the
    field — and neither the receiver nor any log line ever holds it."""
    rx = receiver("ok")
    notifier = notifiers(rx.url)
    with capture_logs() as logs:
        for what, value in SECRETS.items():
            # In a free-text field, the secret sits inside ordinary words.
            text = value if field in ("key_id", "account") else f"see {value} here"
            assert not ask(notifier, **{"key_id": f"k-{what}", field: text})[0], what
        assert ask(notifier, key_id="clean")[0]
        assert notifier.flush(5)
    assert [m["key_id"] for m in rx.messages()] == ["clean"]
    refused = events_named(logs, "notify.refused")
    assert len(refused) == len(SECRETS)
    assert all(repr(field) in r["reason"] for r in refused)
    seen = repr(logs) + b"".join(rx.bodies).decode()
    for what, value in SECRETS.items():
        assert value not in seen, what
    assert notifier.stats().refused == len(SECRETS)


@given(
    st.sampled_from(sorted(SECRETS.values())),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40),
)
def test_a_secret_anywhere_in_free_text_is_refused(secret: str, before: str, after: str) -> None:
    """Whatever surrounds it, a secret in a hint makes the notice refuse to exist."""
    assert looks_secret(before + secret + after)
    with pytest.raises(ValueError, match="'hint'") as caught:
        Notice("rotation.failed", account="ml-prod", hint=before + secret + after)
    assert secret not in str(caught.value)


@pytest.mark.parametrize(
    "text",
    [
        "Add it under Settings > Service accounts > Keys.",
        "the bearer of bad news",
        "see docs.encord.com/platform-documentation/service-accounts for the steps",
        "task-assessment-document-name: Settings.service_accounts_page",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq4 is a public key, not a secret",
        "key 9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f expires soon",
    ],
)
def test_ordinary_text_is_not_taken_for_a_secret(text: str) -> None:
    """The secret shapes do not catch the words and ids a hint is made of."""
    assert not looks_secret(text)
    assert Notice("rotation.failed", account="ml-prod", hint=text).hint == text


def test_the_payload_is_the_allow_list() -> None:
    """A notice carries exactly the allow-listed fields that are set, no others."""
    notice = Notice(
        "key.expiring_soon",
        account="ml-prod",
        kind="api-key",
        key_id=KEY_ID,
        expires_at=datetime(2026, 3, 9, 12, 0, tzinfo=UTC),
    )
    payload = notice.payload("rotator")
    assert set(payload) == {
        "text",
        "event",
        "severity",
        "service",
        "account",
        "kind",
        "key_id",
        "expires_at",
    }
    assert payload["expires_at"] == "2026-03-09T12:00:00Z"
    assert payload["severity"] == "warning"
    assert "2026-03-09T12:00:00Z" in payload["text"]
    assert set(Notice("rotation.failed", account="a").payload("r")) == {
        "text",
        "event",
        "severity",
        "service",
        "account",
    }


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"event": "key.leaked"}, "unknown notice event 'key.leaked'"),
        ({"kind": "password"}, "'kind' must be one of"),
        ({"severity": "urgent"}, "severity must be one of"),
        ({"account": "ml prod"}, "'account'"),
        ({"key_id": ""}, "'key_id'"),
        ({"title": "two\nlines"}, "'title'"),
        ({"hint": "x" * 501}, "'hint'"),
        ({"public_key": "ssh-rsa AAAAB3NzaC1yc2E"}, "'public_key' is not an ssh-ed25519"),
    ],
)
def test_malformed_notices_are_refused_in_one_line(fields: dict[str, str], says: str) -> None:
    """Each field has a shape; a value outside it is refused, naming the field."""
    args: dict[str, Any] = {"event": "rotation.failed", "account": "ml-prod", **fields}
    with pytest.raises(ValueError) as caught:
        Notice(**args)
    assert says in str(caught.value) and "\n" not in str(caught.value)


def test_every_event_has_a_text() -> None:
    """Each event renders a text naming the account; severities default by event."""
    for event, severity in EVENTS.items():
        notice = Notice(event, account="ml-prod", kind="ssh-key", key_id="k1")
        assert notice.severity == severity
        assert "`ml-prod`" in notice.text("rotator")


# --- the URL ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.slack.com/services/T0/B0/secret",
        "http://127.0.0.1:8080/hook",
        "http://127.1.2.3/hook",
        "http://localhost:9000/hook",
        "http://[::1]:9000/hook",
    ],
)
def test_https_or_loopback_http_is_accepted(url: str) -> None:
    """https anywhere; plain http only to a loopback host."""
    assert parse_notify_url(url).url == url


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://hooks.example.com/T0/secretpath?token=secretquery", "not 'hooks.example.com'"),
        ("http://10.0.0.1/secretpath", "only to a loopback host"),
        ("ftp://example.com/secretpath", "got scheme 'ftp'"),
        ("hooks.example.com/secretpath", "expected an https:// URL"),
        ("https:///secretpath", "expected an https:// URL with a host"),
        ("", "expected an https:// URL"),
    ],
)
def test_other_urls_are_refused_without_repeating_their_secret_part(url: str, says: str) -> None:
    """The error names scheme or host, never the path or query."""
    with pytest.raises(ValueError) as caught:
        parse_notify_url(url)
    message = str(caught.value)
    assert says in message and "secret" not in message and "\n" not in message


def test_the_url_never_shows() -> None:
    """repr and str of the target and of a notifier give scheme and host only."""
    target = parse_notify_url("https://hooks.slack.com/services/T0/B0/secretpath?x=secretquery")
    assert str(target) == "https://hooks.slack.com"
    assert "secret" not in repr(target)
    assert NotifyTarget("http://127.0.0.1:9/secret").shown == "http://127.0.0.1:9"
    assert NotifyTarget("http://[::1]:9/secret").shown == "http://[::1]:9"
