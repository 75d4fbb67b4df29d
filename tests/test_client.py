"""The Encord HTTP client (rotator.adapters.encord.client) against scripted answers; never a
socket."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from rotator.adapters.encord.client import USER_AGENT, EncordClient, RetryPolicy
from rotator.adapters.encord.signing import EncordAuth, request_target, verify
from rotator.core import keys
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
from rotator.core.vocab import BearerToken, RemoteKey
from tests.secret_scan import exception_chain_texts

DOMAIN = "https://api.encord.test"
CREATED = 1_790_000_000
SA = "sa-hash-1"
KEYS_PATH = f"/v2/public/service-accounts/{SA}/keys"
SECRET_MESSAGE = "SECRET-MESSAGE-do-not-leak"
TOKEN = "BEARER-TOKEN-do-not-leak-0123456789"
SIGNER = keys.generate("signer")
UPLOADED = keys.generate("uploaded")
GENERATED = keys.generate("generated")

Outcome = httpx.Response | type[httpx.TransportError]


class Script:
    """A MockTransport handler answering each request with the next scripted outcome."""

    def __init__(self, *outcomes: Outcome) -> None:
        self.outcomes = list(outcomes)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert self.outcomes, f"unexpected extra request {request.method} {request.url}"
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, httpx.Response):
            return outcome
        raise outcome("simulated failure", request=request)

    @property
    def methods(self) -> list[str]:
        return [r.method for r in self.requests]


class Sleeps(list[float]):
    """Records every back-off instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make(
    script: Script,
    *,
    retry: RetryPolicy | None = None,
    clock: Callable[[], float] = lambda: CREATED,
    seed: int = 7,
) -> tuple[EncordClient, Sleeps]:
    sleeps = Sleeps()
    client = EncordClient(
        DOMAIN,
        EncordAuth(SIGNER, clock=clock),
        transport=httpx.MockTransport(script),
        retry=retry if retry is not None else RetryPolicy(),
        sleep=sleeps,
        rng=random.Random(seed),
    )
    return client, sleeps


def key_json(
    pair: keys.KeyPair = UPLOADED,
    *,
    key_hash: str = "kh-1",
    title: str = "rotator",
    origin: str = "uploaded",
    created: str = "2026-11-29T12:00:00Z",
) -> dict[str, Any]:
    return {
        "keyHash": key_hash,
        "keyId": pair.key_id,
        "title": title,
        "publicKey": pair.public_line,
        "origin": origin,
        "createdAt": created,
    }


def ok(payload: Any) -> httpx.Response:
    return httpx.Response(200, json=payload)


def page(items: list[dict[str, Any]], next_token: str | None = None) -> httpx.Response:
    return ok({"results": items, "nextPageToken": next_token})


def error(status: int, code: str | None = None, **headers: str) -> httpx.Response:
    """An error answer whose message holds things that must never reach an exception."""
    body: dict[str, Any] = {
        "message": f"{SECRET_MESSAGE} token={TOKEN} key={GENERATED.private_openssh}"
    }
    if code is not None:
        body["code"] = code
    return httpx.Response(status, json=body, headers=headers)


def assert_no_secrets(exc: BaseException) -> None:
    """No response message, bearer token or private-key line anywhere in the exception."""
    private_lines = [
        line
        for pair in (GENERATED, UPLOADED, SIGNER)
        for line in pair.private_openssh.splitlines()
        if not line.startswith("-----")
    ]
    for text in exception_chain_texts(exc):
        assert SECRET_MESSAGE not in text
        assert TOKEN not in text
        for line in private_lines:
            assert line not in text
    assert "\n" not in str(exc)


def expected_jitter(seed: int, attempts: int, policy: RetryPolicy) -> list[float]:
    """The back-offs a seeded Random gives under full jitter."""
    rng = random.Random(seed)
    return [
        rng.uniform(0.0, min(policy.max_delay, policy.base_delay * 2 ** (n - 1)))
        for n in range(1, attempts)
    ]


# -- status mapping -----------------------------------------------------------------------

MAPPING: list[tuple[httpx.Response, type[RotatorError], dict[str, Any]]] = [
    (
        error(400, "KEY_LIMIT_REACHED"),
        RegistryRejected,
        {"code": "KEY_LIMIT_REACHED", "status": 400},
    ),
    (
        error(400, "INVALID_PUBLIC_KEY"),
        RegistryRejected,
        {"code": "INVALID_PUBLIC_KEY", "status": 400},
    ),
    (error(400, "SOMETHING_NEW"), RegistryRejected, {"code": "SOMETHING_NEW", "status": 400}),
    (error(400), RegistryRejected, {"code": None, "status": 400}),
    (error(400, f"not a code: {SECRET_MESSAGE}"), RegistryRejected, {"code": None}),
    (error(409, "DUPLICATE_KEY"), RegistryRejected, {"code": "DUPLICATE_KEY", "status": 409}),
    (error(409), RegistryRejected, {"code": "DUPLICATE_KEY", "status": 409}),
    (error(401), AccessDenied, {"status": 401}),
    (error(403), AccessDenied, {"status": 403}),
    (error(404), NotFound, {}),
    (error(429, **{"Retry-After": "7"}), RegistryUnavailable, {"retry_after": 7.0}),
    (error(500), RegistryUnavailable, {"retry_after": None}),
    (error(503, **{"Retry-After": "2.5"}), RegistryUnavailable, {"retry_after": 2.5}),
    (error(501), RegistryUnavailable, {}),
    (httpx.Response(201, json=key_json()), ProtocolError, {}),
    (error(302), ProtocolError, {}),
    (error(413), ProtocolError, {}),
    (error(418), ProtocolError, {}),
]


@pytest.mark.parametrize(
    ("answer", "kind", "attrs"),
    MAPPING,
    ids=[f"{a.status_code}-{k.__name__}-{i}" for i, (a, k, _) in enumerate(MAPPING)],
)
def test_upload_maps_every_status(
    answer: httpx.Response, kind: type[RotatorError], attrs: dict[str, Any]
) -> None:
    """Each status of a (never retried) upload becomes its house error, body-free."""
    script = Script(answer)
    client, sleeps = make(script)
    with pytest.raises(kind) as info:
        client.upload_key(SA, "t", UPLOADED.public_line)
    assert type(info.value) is kind
    for name, value in attrs.items():
        assert getattr(info.value, name) == value
    assert script.methods == ["POST"]
    assert sleeps == []
    assert "upload_key" in str(info.value)
    assert str(answer.status_code) in str(info.value)
    assert_no_secrets(info.value)


@pytest.mark.parametrize(
    ("answer", "kind", "attrs"),
    [
        (error(400, "BAD_PAGE_TOKEN"), RegistryRejected, {"code": "BAD_PAGE_TOKEN"}),
        (error(401), AccessDenied, {"status": 401}),
        (error(403), AccessDenied, {"status": 403}),
        (error(404), NotFound, {}),
        (error(409), RegistryRejected, {"status": 409}),
        (error(501), RegistryUnavailable, {}),
        (httpx.Response(201, json={"results": [], "nextPageToken": None}), ProtocolError, {}),
        (httpx.Response(204), ProtocolError, {}),
    ],
)
def test_list_keys_maps_non_retryable_statuses_without_retrying(
    answer: httpx.Response, kind: type[RotatorError], attrs: dict[str, Any]
) -> None:
    """A GET answered with a non-retryable status raises at once, one request sent."""
    script = Script(answer)
    client, sleeps = make(script)
    with pytest.raises(kind) as info:
        client.list_keys(SA)
    for name, value in attrs.items():
        assert getattr(info.value, name) == value
    assert len(script.requests) == 1
    assert sleeps == []
    assert "list_keys" in str(info.value)
    assert_no_secrets(info.value)


def test_whoami_passes_on_200_and_403() -> None:
    """whoami: 200 or 403 prove the key authenticates (403 is 'authenticated, not allowed')."""
    script = Script(ok({"results": [], "nextPageToken": None}), error(403))
    client, _ = make(script)
    client.whoami()
    client.whoami()
    assert [request_target(r) for r in script.requests] == [
        "/v2/public/organisation/organisation-tags"
    ] * 2


def test_whoami_401_is_access_denied() -> None:
    """whoami: 401 means the key is unknown, deleted or of another region."""
    client, _ = make(Script(error(401)))
    with pytest.raises(AccessDenied) as info:
        client.whoami()
    assert info.value.status == 401
    assert_no_secrets(info.value)


def test_bearer_token_is_parsed_and_hidden() -> None:
    """bearer_token returns the token in a BearerToken whose repr does not show it."""
    script = Script(ok({"token": TOKEN}))
    client, _ = make(script)
    token = client.bearer_token()
    assert token == BearerToken(token=TOKEN)
    assert TOKEN not in repr(token) and TOKEN not in str(token)
    assert request_target(script.requests[0]) == "/v2/public/user/bearer-token"
    assert script.methods == ["GET"]


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, content=b"{not json " + TOKEN.encode()),
        httpx.Response(200, content=b"\xff\xfe" + TOKEN.encode()),
        ok({"token": None}),
        ok({"token": ""}),
        ok({"tok": TOKEN}),
        ok([TOKEN]),
        httpx.Response(204),
        httpx.Response(201, json={"token": TOKEN}),
    ],
)
def test_bearer_token_malformed_answers_are_protocol_errors(answer: httpx.Response) -> None:
    """A token answer off the contract raises ProtocolError that never quotes the token."""
    client, _ = make(Script(answer))
    with pytest.raises(ProtocolError) as info:
        client.bearer_token()
    assert_no_secrets(info.value)
    assert info.value.__context__ is None


# -- pagination ----------------------------------------------------------------------------


def test_list_keys_follows_next_page_token() -> None:
    """Pages are fetched with pageToken until nextPageToken is null, in order."""
    first, second, third = (keys.generate() for _ in range(3))
    script = Script(
        page([key_json(first, key_hash="a")], "tok/1 +&="),
        page([key_json(second, key_hash="b"), key_json(third, key_hash="c")], "tok2"),
        page([], None),
    )
    client, _ = make(script)
    listed = client.list_keys(SA)
    assert [k.key_hash for k in listed] == ["a", "b", "c"]
    assert [k.key_id for k in listed] == [first.key_id, second.key_id, third.key_id]
    assert [r.url.params.get("pageToken") for r in script.requests] == [
        None,
        "tok/1 +&=",
        "tok2",
    ]
    assert all(r.url.path == KEYS_PATH for r in script.requests)


def test_list_keys_parses_the_key_object() -> None:
    """Every Key field of the contract lands in RemoteKey, createdAt as aware UTC."""
    client, _ = make(
        Script(page([key_json(origin="generated", created="2026-11-29T13:00:00+01:00")]))
    )
    (key,) = client.list_keys(SA)
    assert key == RemoteKey(
        key_hash="kh-1",
        key_id=UPLOADED.key_id,
        title="rotator",
        public_key=UPLOADED.public_line,
        origin="generated",
        created_at=datetime(2026, 11, 29, 12, 0, tzinfo=UTC),
    )


def test_list_keys_refuses_a_repeating_page_token() -> None:
    """A server that hands back a page token twice cannot trap the client in a loop."""
    client, _ = make(Script(page([], "same"), page([], "same")))
    with pytest.raises(ProtocolError, match="page token"):
        client.list_keys(SA)


def test_service_account_is_percent_encoded() -> None:
    """A service-account hash is one path segment: '/' and ' ' are escaped."""
    script = Script(page([]))
    client, _ = make(script)
    client.list_keys("sa/1 x")
    assert request_target(script.requests[0]) == "/v2/public/service-accounts/sa%2F1%20x/keys"


def _bad_key_objects() -> list[Any]:
    good = key_json()
    broken: list[Any] = [None, "key", [good]]
    for name in good:
        broken.append({k: v for k, v in good.items() if k != name})
        broken.append(good | {name: 12})
    broken += [
        good | {"keyId": "ABC"},
        good | {"keyId": UPLOADED.key_id.upper()},
        good | {"origin": "imported"},
        good | {"createdAt": "yesterday"},
        good | {"createdAt": "2026-11-29T12:00:00"},  # naive: not RFC 3339
        good | {"keyHash": ""},
    ]
    return broken


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, content=b"<html>" + SECRET_MESSAGE.encode()),
        httpx.Response(200, content=b"[" * 100_000),
        ok(None),
        ok([]),
        ok({"results": {}, "nextPageToken": None}),
        ok({"nextPageToken": None}),
        ok({"results": [], "nextPageToken": 5}),
        ok({"results": [], "nextPageToken": ""}),
        *(page([bad]) for bad in _bad_key_objects()),
    ],
)
def test_list_keys_malformed_json_is_a_protocol_error(answer: httpx.Response) -> None:
    """Non-JSON or wrong-shape JSON on a 200 raises ProtocolError naming the call, nothing more."""
    client, _ = make(Script(answer))
    with pytest.raises(ProtocolError) as info:
        client.list_keys(SA)
    assert str(info.value) == "Encord answered malformed JSON for list_keys"
    assert info.value.__context__ is None
    assert_no_secrets(info.value)


# -- retries -------------------------------------------------------------------------------


def test_get_retries_with_full_jitter_then_succeeds() -> None:
    """503, 502, 500 then 200: four attempts, three back-offs drawn by the seeded rng."""
    script = Script(error(503), error(502), error(500), page([]))
    client, sleeps = make(script, seed=11)
    assert client.list_keys(SA) == []
    assert len(script.requests) == 4
    policy = RetryPolicy()
    assert sleeps == expected_jitter(11, 4, policy)
    for n, delay in enumerate(sleeps, start=1):
        assert 0 <= delay <= min(policy.max_delay, policy.base_delay * 2 ** (n - 1))


def test_backoff_ceiling_is_capped_by_max_delay() -> None:
    """The jitter ceiling doubles per attempt but never exceeds max_delay."""
    policy = RetryPolicy(attempts=9, base_delay=1.0, max_delay=3.0)
    script = Script(*[error(504)] * 8, page([]))
    client, sleeps = make(script, retry=policy, seed=3)
    client.list_keys(SA)
    assert sleeps == expected_jitter(3, 9, policy)
    assert max(sleeps) <= 3.0


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectError,
        httpx.ConnectTimeout,
        httpx.ReadTimeout,
        httpx.ReadError,
        httpx.RemoteProtocolError,
        httpx.PoolTimeout,
        httpx.WriteError,
    ],
)
def test_get_retries_transport_failures(failure: type[httpx.TransportError]) -> None:
    """Connect/read errors, timeouts and dropped connections are retried for a GET."""
    script = Script(failure, ok({"token": TOKEN}))
    client, sleeps = make(script)
    assert client.bearer_token().token == TOKEN
    assert len(script.requests) == 2
    assert len(sleeps) == 1


def test_get_gives_up_after_attempts() -> None:
    """Four 503s: four attempts, three sleeps, then RegistryUnavailable naming the last status."""
    script = Script(*[error(503)] * 4)
    client, sleeps = make(script)
    with pytest.raises(RegistryUnavailable) as info:
        client.list_keys(SA)
    assert type(info.value) is RegistryUnavailable
    assert len(script.requests) == 4
    assert len(sleeps) == 3
    assert "gave up after 4 attempts" in str(info.value)
    assert "HTTP 503" in str(info.value)
    assert info.value.retry_after is None
    assert_no_secrets(info.value)


def test_give_up_after_transport_failures_has_no_chain() -> None:
    """Giving up after timeouts raises RegistryUnavailable with no library exception attached."""
    script = Script(*[httpx.ReadTimeout] * 2)
    client, sleeps = make(script, retry=RetryPolicy(attempts=2))
    with pytest.raises(RegistryUnavailable, match="ReadTimeout") as info:
        client.bearer_token()
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert len(sleeps) == 1


def test_retry_after_is_honoured_and_capped() -> None:
    """Retry-After is waited exactly; beyond max_retry_after it is capped; the last is kept."""
    script = Script(
        error(429, **{"Retry-After": "2"}),
        error(503, **{"Retry-After": "3600"}),
        error(429, **{"Retry-After": "soon"}),
        error(429, **{"Retry-After": "90"}),
    )
    client, sleeps = make(script, seed=5)
    with pytest.raises(RegistryUnavailable) as info:
        client.list_keys(SA)
    unparsable_jitter = random.Random(5).uniform(0.0, 0.2 * 2**2)  # rng's first use: try 3
    assert sleeps == [2.0, 30.0, unparsable_jitter]
    assert info.value.retry_after == 90.0


def test_single_attempt_policy_never_sleeps() -> None:
    """With attempts=1 a 503 is final at once."""
    script = Script(error(503, **{"Retry-After": "4"}))
    client, sleeps = make(script, retry=RetryPolicy(attempts=1))
    with pytest.raises(RegistryUnavailable) as info:
        client.whoami()
    assert sleeps == []
    assert info.value.retry_after == 4.0


def test_every_attempt_is_signed_afresh() -> None:
    """Retries are new requests: each carries a signature with the clock's current 'created'."""
    ticks = iter([CREATED, CREATED + 3, CREATED + 9])
    script = Script(httpx.ReadTimeout, error(503), page([]))
    client, _ = make(script, clock=lambda: next(ticks))
    client.list_keys(SA)
    created = [r.headers["Signature-Input"].split(";")[1] for r in script.requests]
    assert created == [f"created={CREATED}", f"created={CREATED + 3}", f"created={CREATED + 9}"]
    for request, now in zip(script.requests, (CREATED, CREATED + 3, CREATED + 9), strict=True):
        verify(
            request.method,
            request_target(request),
            request.headers,
            request.content,
            lookup=lambda k: SIGNER.private_key.public_key() if k == SIGNER.key_id else None,
            now=now,
        )


def test_retrying_is_logged_without_secrets() -> None:
    """Each back-off logs encord.retrying with call, attempt, delay and status; no secret."""
    script = Script(error(429, **{"Retry-After": "1"}), ok({"token": TOKEN}))
    client, _ = make(script)
    with capture_logs() as logs:
        client.bearer_token()
    retrying = [e for e in logs if e["event"] == "encord.retrying"]
    assert retrying == [
        {
            "event": "encord.retrying",
            "log_level": "debug",
            "call": "bearer_token",
            "attempt": 1,
            "delay": 1.0,
            "status": 429,
            "error": None,
        }
    ]
    assert TOKEN not in repr(logs)


# -- DELETE ------------------------------------------------------------------------------


def test_delete_sends_percent_encoded_segments() -> None:
    """delete_key escapes both path segments and succeeds on 204."""
    script = Script(httpx.Response(204))
    client, _ = make(script)
    client.delete_key("sa/1", "k y")
    assert script.methods == ["DELETE"]
    assert request_target(script.requests[0]) == "/v2/public/service-accounts/sa%2F1/keys/k%20y"
    assert script.requests[0].content == b""


def test_delete_404_is_not_found() -> None:
    """A first-attempt 404 means there was no such key."""
    client, _ = make(Script(error(404)))
    with pytest.raises(NotFound) as info:
        client.delete_key(SA, "kh-1")
    assert_no_secrets(info.value)


@pytest.mark.parametrize("first", [httpx.ReadTimeout, httpx.RemoteProtocolError, error(502)])
def test_delete_404_after_a_lost_answer_counts_as_deleted(first: Outcome) -> None:
    """DELETE is retried; a 404 after an attempt that may have acted means it did."""
    script = Script(first, error(404))
    client, sleeps = make(script)
    client.delete_key(SA, "kh-1")
    assert script.methods == ["DELETE", "DELETE"]
    assert len(sleeps) == 1


@pytest.mark.parametrize("first", [httpx.ConnectError, error(429)])
def test_delete_404_after_a_refused_attempt_is_not_found(first: Outcome) -> None:
    """After a connect failure or a 429 nothing was deleted, so a later 404 is NotFound."""
    script = Script(first, error(404))
    client, _ = make(script)
    with pytest.raises(NotFound):
        client.delete_key(SA, "kh-1")
    assert len(script.requests) == 2


def test_delete_rejects_empty_segments() -> None:
    """An empty service account or key hash is a programming error, not a request."""
    script = Script()
    client, _ = make(script)
    with pytest.raises(ValueError, match="key hash"):
        client.delete_key(SA, "")
    with pytest.raises(ValueError, match="service account"):
        client.list_keys("")
    for dots in (".", ".."):  # dot segments would be resolved to another path
        with pytest.raises(ValueError, match="key hash"):
            client.delete_key(SA, dots)
    assert script.requests == []


# -- upload (POST, sent once) ---------------------------------------------------------------


def test_upload_sends_title_and_public_line_and_returns_the_key() -> None:
    """upload_key POSTs {title, publicKey} once and returns the Key Encord answers."""
    script = Script(ok(key_json(title="rotator 1")))
    client, _ = make(script)
    key = client.upload_key(SA, "rotator 1", UPLOADED.public_line)
    assert key.key_id == UPLOADED.key_id and key.title == "rotator 1"
    (request,) = script.requests
    assert request.method == "POST" and request.url.path == KEYS_PATH
    assert json.loads(request.content) == {"title": "rotator 1", "publicKey": UPLOADED.public_line}
    assert request.headers["Content-Type"] == "application/json"


def test_upload_refuses_a_bad_public_line_before_sending() -> None:
    """A public line that is not Ed25519 raises KeyFormatError and nothing is sent."""
    script = Script()
    client, _ = make(script)
    with pytest.raises(KeyFormatError):
        client.upload_key(SA, "t", "ssh-rsa AAAAB3NzaC1yc2E")
    assert script.requests == []


def test_upload_answer_for_another_key_is_a_protocol_error() -> None:
    """Encord answering a key other than the one uploaded is off contract."""
    client, _ = make(Script(ok(key_json(GENERATED))))
    with pytest.raises(ProtocolError, match="other than"):
        client.upload_key(SA, "t", UPLOADED.public_line)


@pytest.mark.parametrize(
    "lost",
    [
        httpx.ReadTimeout,
        httpx.ReadError,
        httpx.RemoteProtocolError,
        httpx.WriteTimeout,
        error(504),
        error(502),
    ],
)
def test_upload_lost_answer_then_list_finds_the_key(lost: Outcome) -> None:
    """A lost upload answer is settled by listing: found by key id, returned, one POST only."""
    script = Script(
        lost,
        page([key_json(GENERATED, key_hash="other")], "p2"),
        page([key_json(UPLOADED, key_hash="mine")]),
    )
    client, _ = make(script)
    key = client.upload_key(SA, "t", UPLOADED.public_line)
    assert key.key_hash == "mine"
    assert script.methods == ["POST", "GET", "GET"]


@pytest.mark.parametrize("lost", [httpx.ReadTimeout, httpx.RemoteProtocolError, error(504)])
def test_upload_lost_answer_and_key_absent_is_unavailable(lost: Outcome) -> None:
    """Lost answer and the key is not listed: RegistryUnavailable, never a second POST."""
    script = Script(lost, page([key_json(GENERATED)]))
    client, _ = make(script)
    with pytest.raises(RegistryUnavailable, match="upload answer lost; key not registered") as info:
        client.upload_key(SA, "t", UPLOADED.public_line)
    assert not isinstance(info.value, AmbiguousWrite)
    assert script.methods == ["POST", "GET"]
    assert info.value.__context__ is None


def test_upload_lost_answer_and_list_unavailable_is_ambiguous() -> None:
    """If the list cannot be read either, whether the key exists is unknown: AmbiguousWrite."""
    script = Script(httpx.ReadTimeout, *[error(503, **{"Retry-After": "6"})] * 4)
    client, _ = make(script)
    with pytest.raises(AmbiguousWrite) as info:
        client.upload_key(SA, "t", UPLOADED.public_line)
    assert script.methods == ["POST"] + ["GET"] * 4
    assert info.value.retry_after == 6.0
    assert info.value.__context__ is None


def test_upload_lost_answer_then_list_denied_propagates() -> None:
    """A permanent error while reconciling (403) is raised as it is."""
    script = Script(httpx.ReadTimeout, error(403))
    client, _ = make(script)
    with pytest.raises(AccessDenied):
        client.upload_key(SA, "t", UPLOADED.public_line)
    assert script.methods == ["POST", "GET"]


@pytest.mark.parametrize("failure", [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout])
def test_upload_that_never_connected_is_unavailable_without_listing(
    failure: type[httpx.TransportError],
) -> None:
    """A POST that could not connect was never sent: RegistryUnavailable, no list, no retry."""
    script = Script(failure)
    client, sleeps = make(script)
    with pytest.raises(RegistryUnavailable, match="could not connect") as info:
        client.upload_key(SA, "t", UPLOADED.public_line)
    assert not isinstance(info.value, AmbiguousWrite)
    assert script.methods == ["POST"]
    assert sleeps == []


@pytest.mark.parametrize(
    "answer", [error(500), error(503, **{"Retry-After": "9"}), error(429, **{"Retry-After": "9"})]
)
def test_post_5xx_and_429_are_never_retried(answer: httpx.Response) -> None:
    """An upload or generate answered 429/500/503 is not created and not sent again."""
    for call in ("upload", "generate"):
        script = Script(answer)
        client, sleeps = make(script)
        with pytest.raises(RegistryUnavailable) as info:
            if call == "upload":
                client.upload_key(SA, "t", UPLOADED.public_line)
            else:
                client.generate_key(SA, "t")
        assert not isinstance(info.value, AmbiguousWrite)
        assert script.methods == ["POST"]
        assert sleeps == []
        assert info.value.retry_after == (9.0 if "Retry-After" in answer.headers else None)
        assert_no_secrets(info.value)


@pytest.mark.parametrize(
    "answer",
    [httpx.Response(200, content=b"oops " + SECRET_MESSAGE.encode()), ok({"keyHash": "x"}), ok([])],
)
def test_upload_malformed_answer_is_a_protocol_error(answer: httpx.Response) -> None:
    """A 200 upload answer that is not a Key raises ProtocolError."""
    client, _ = make(Script(answer))
    with pytest.raises(ProtocolError, match="malformed JSON for upload_key") as info:
        client.upload_key(SA, "t", UPLOADED.public_line)
    assert_no_secrets(info.value)


# -- generate (POST, sent once) -------------------------------------------------------------


def generated_answer(
    private: str | None = GENERATED.private_openssh, **overrides: Any
) -> httpx.Response:
    body = key_json(GENERATED, origin="generated", title="api") | {"privateKey": private}
    return ok(body | overrides)


def test_generate_returns_key_and_private_half_hidden_from_repr() -> None:
    """generate_key POSTs {title} and returns the key with its private text, repr hiding it."""
    script = Script(generated_answer())
    client, _ = make(script)
    result = client.generate_key(SA, "api")
    assert result.key.key_id == GENERATED.key_id and result.key.origin == "generated"
    assert keys.load_private(result.private_openssh).key_id == GENERATED.key_id
    for line in GENERATED.private_openssh.splitlines()[1:-1]:
        assert line not in repr(result)
    (request,) = script.requests
    assert request.url.path == f"{KEYS_PATH}/generate"
    assert json.loads(request.content) == {"title": "api"}


@pytest.mark.parametrize(
    "lost",
    [httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError, error(504)],
)
def test_generate_lost_answer_is_ambiguous(lost: Outcome) -> None:
    """A lost generate answer raises AmbiguousWrite after exactly one POST."""
    script = Script(lost)
    client, sleeps = make(script)
    with pytest.raises(AmbiguousWrite) as info:
        client.generate_key(SA, "api")
    assert script.methods == ["POST"]
    assert sleeps == []
    assert info.value.__context__ is None


def test_generate_that_never_connected_is_not_ambiguous() -> None:
    """A generate that could not connect surely created nothing."""
    script = Script(httpx.ConnectError)
    client, _ = make(script)
    with pytest.raises(RegistryUnavailable) as info:
        client.generate_key(SA, "api")
    assert not isinstance(info.value, AmbiguousWrite)


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        (generated_answer(private=UPLOADED.private_openssh), "does not match"),
        (generated_answer(private="-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n"), "not an"),
        (generated_answer(private=f"garbage {TOKEN}"), "not an"),
        (generated_answer(private=None), "malformed JSON"),
        (generated_answer(keyId="nothex"), "malformed JSON"),
        (httpx.Response(200, content=GENERATED.private_openssh.encode()), "malformed JSON"),
        (httpx.Response(201, json={}), "unexpected HTTP 201"),
    ],
)
def test_generate_bad_answers_are_protocol_errors_without_key_text(
    answer: httpx.Response, match: str
) -> None:
    """An off-contract generate answer raises ProtocolError quoting no private-key line."""
    client, _ = make(Script(answer))
    with pytest.raises(ProtocolError, match=match) as info:
        client.generate_key(SA, "api")
    assert_no_secrets(info.value)
    assert info.value.__context__ is None


# -- wire details, construction -------------------------------------------------------------


def test_requests_are_signed_and_carry_no_authorization() -> None:
    """Every call sends the three signature headers, our User-Agent, and no Authorization."""
    script = Script(
        ok({}),
        ok({"token": TOKEN}),
        page([]),
        ok(key_json()),
        generated_answer(),
        httpx.Response(204),
    )
    client, _ = make(script)
    client.whoami()
    client.bearer_token()
    client.list_keys(SA)
    client.upload_key(SA, "t", UPLOADED.public_line)
    client.generate_key(SA, "api")
    client.delete_key(SA, "kh")
    assert script.methods == ["GET", "GET", "GET", "POST", "POST", "DELETE"]
    for request in script.requests:
        assert "authorization" not in request.headers
        assert request.headers["User-Agent"] == USER_AGENT
        assert f'keyid="{SIGNER.key_id}"' in request.headers["Signature-Input"]
        assert request.headers["Content-Digest"].startswith("sha-256=:")
        assert request.headers["Signature"].startswith("encord-sig=:")
        assert request.url.host == "api.encord.test"
    assert USER_AGENT.startswith("rotator/")


def test_default_timeouts_are_short() -> None:
    """By default connect times out after 5 s and read after 10 s."""
    script = Script(ok({"token": TOKEN}))
    client, _ = make(script)
    client.bearer_token()
    timeout = script.requests[0].extensions["timeout"]
    assert timeout["connect"] == 5.0 and timeout["read"] == 10.0


def test_domain_with_a_path_prefix_is_kept() -> None:
    """A private deployment under a path prefix gets '/prefix/v2/public/...'."""
    script = Script(ok({"token": TOKEN}))
    client = EncordClient("https://encord.corp.test/api", transport=httpx.MockTransport(script))
    client.bearer_token()
    assert script.requests[0].url.path == "/api/v2/public/user/bearer-token"


@pytest.mark.parametrize(
    "domain",
    ["", "api.encord.com", "ftp://api.encord.com", "https://", "https://u:s3cr3t@api.encord.com"],
)
def test_bad_domain_is_a_config_error(domain: str) -> None:
    """A domain that is not a credential-free http(s) URL is refused, without echoing it."""
    with pytest.raises(ConfigError) as info:
        EncordClient(domain)
    assert "s3cr3t" not in str(info.value)


class ClosingTransport(httpx.MockTransport):
    """A MockTransport that remembers being closed."""

    closed = False

    def close(self) -> None:
        self.closed = True


def test_with_auth_shares_settings_and_transport_but_signs_with_the_other_key() -> None:
    """with_auth keeps domain, retry policy and transport; closing it leaves the transport open."""
    script = Script(ok({"token": TOKEN}), ok({"token": TOKEN}))
    transport = ClosingTransport(script)
    policy = RetryPolicy(attempts=2)
    with EncordClient(
        DOMAIN, EncordAuth(SIGNER, clock=lambda: CREATED), transport=transport, retry=policy
    ) as client:
        other = client.with_auth(EncordAuth(UPLOADED, clock=lambda: CREATED))
        assert other.domain == DOMAIN and other.retry is policy
        other.bearer_token()
        other.close()
        assert not transport.closed
        client.bearer_token()
    assert transport.closed
    ids = [r.headers["Signature-Input"].split('keyid="')[1][:64] for r in script.requests]
    assert ids == [UPLOADED.key_id, SIGNER.key_id]


def test_client_repr_shows_no_key() -> None:
    """The client's repr names the domain and a key-id prefix only."""
    client, _ = make(Script())
    shown = repr(client)
    assert DOMAIN in shown
    for line in SIGNER.private_openssh.splitlines()[1:-1]:
        assert line not in shown


@pytest.mark.parametrize(
    "kwargs",
    [
        {"attempts": 0},
        {"base_delay": -1.0},
        {"max_delay": float("nan")},
        {"max_retry_after": float("inf")},
    ],
)
def test_retry_policy_rejects_nonsense(kwargs: dict[str, Any]) -> None:
    """A retry policy with no attempts or negative/non-finite delays is refused."""
    with pytest.raises(ValueError, match="RetryPolicy"):
        RetryPolicy(**kwargs)


def test_retry_policy_defaults() -> None:
    """Defaults: 4 attempts, 0.2 s base, 5 s max back-off, Retry-After capped at 30 s."""
    assert RetryPolicy() == RetryPolicy(
        attempts=4, base_delay=0.2, max_delay=5.0, max_retry_after=30.0
    )
