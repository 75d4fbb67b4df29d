"""Encord v2 request signing (rotator.adapters.encord.signing), byte for byte against the
encord SDK."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from rotator.adapters.encord.signing import (
    SKEW_WINDOW_SECONDS,
    EncordAuth,
    SignatureError,
    content_digest,
    request_target,
    sign,
    verify,
)
from rotator.core import keys

DOMAIN = "https://api.encord.com"
CREATED = 1_790_000_000
SIGNED_HEADERS = ("Content-Digest", "Signature-Input", "Signature")
PAIR = keys.generate("signing-test")
OTHER = keys.generate("someone-else")


def _sdk(module: str) -> Any:
    """Import an encord SDK module; its pydantic models warn on import, which is not ours."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return importlib.import_module(module)


def _lookup(key_id: str) -> Ed25519PublicKey | None:
    return PAIR.private_key.public_key() if key_id == PAIR.key_id else None


def _frozen_datetime(timestamp: float) -> type[datetime]:
    class Frozen(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Frozen:
            moment = datetime.fromtimestamp(timestamp, tz=UTC)
            return cls.fromtimestamp(moment.timestamp(), tz=UTC)

    return Frozen


def _sign_with_sdk(
    monkeypatch: pytest.MonkeyPatch, prepared: requests.PreparedRequest, at: float
) -> requests.PreparedRequest:
    """Sign as the SDK does: its SshConfig (own key loading) and its request_signer."""
    signer = _sdk("encord.http.v2.request_signer")
    configs = _sdk("encord.configs")
    monkeypatch.setattr(signer, "datetime", _frozen_datetime(at))
    config = configs.SshConfig.from_ssh_private_key(PAIR.private_openssh)
    signed: requests.PreparedRequest = config.define_headers_v2(prepared)
    return signed


def _sign_with_rotator(request: httpx.Request, at: float) -> httpx.Request:
    """Send through an httpx.Client with EncordAuth (clock fixed) and capture what went out."""
    sent: list[httpx.Request] = []

    def handler(outgoing: httpx.Request) -> httpx.Response:
        sent.append(outgoing)
        return httpx.Response(204)

    with httpx.Client(
        transport=httpx.MockTransport(handler), auth=EncordAuth(PAIR, clock=lambda: at)
    ) as client:
        client.send(request)
    assert len(sent) == 1
    return sent[0]


def _sdk_request(
    method: str, path: str, params: dict[str, str] | None = None, payload: Any = None
) -> requests.PreparedRequest:
    """A request built as the SDK's ApiClient builds it (requests.Request(...).prepare())."""
    api_client = _sdk("encord.http.v2.api_client")
    assert hasattr(api_client.ApiClient, "_request_with_payload")
    return requests.Request(method=method, url=DOMAIN + path, params=params, json=payload).prepare()


SDK_CASES: dict[str, Callable[[], requests.PreparedRequest]] = {
    "get-with-query": lambda: _sdk_request(
        "GET",
        "/v2/public/service-accounts/sa-1/keys",
        params={"pageToken": "p/1 2+3=4&5", "pageSize": "100"},
    ),
    "post-json-body": lambda: _sdk_request(
        "POST",
        "/v2/public/service-accounts/sa-1/keys",
        payload={"title": "rotator 2026-11-29 é", "publicKey": PAIR.public_line},
    ),
    "delete-percent-encoded-path": lambda: _sdk_request(
        "DELETE", f"/v2/public/service-accounts/{quote('sa/1', safe='')}/keys/{quote('k y')}"
    ),
    "get-no-query": lambda: _sdk_request("GET", "/v2/public/user/bearer-token"),
}


@pytest.mark.parametrize("case", sorted(SDK_CASES))
def test_headers_are_byte_identical_to_the_sdk(monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    """EncordAuth writes exactly the SDK's Content-Digest, Signature-Input and Signature."""
    prepared = SDK_CASES[case]()
    assert prepared.url is not None and prepared.method is not None
    raw = prepared.body
    body = raw.encode() if isinstance(raw, str) else raw if isinstance(raw, bytes) else b""
    at = CREATED + 0.75  # both sides truncate to the same whole second
    ours = _sign_with_rotator(httpx.Request(prepared.method, prepared.url, content=body), at)
    theirs = _sign_with_sdk(monkeypatch, prepared, at)
    assert request_target(ours) == theirs.path_url
    assert ours.content == body
    assert {h: ours.headers[h] for h in SIGNED_HEADERS} == {
        h: theirs.headers[h] for h in SIGNED_HEADERS
    }
    assert f";created={CREATED};" in ours.headers["Signature-Input"]
    assert "Authorization" not in ours.headers


def test_delete_target_keeps_percent_encoding() -> None:
    """The signed target is the path as sent, escapes intact, not a decoded path."""
    request = httpx.Request("DELETE", f"{DOMAIN}/v2/public/service-accounts/sa%2F1/keys/k%20y")
    assert request_target(request) == "/v2/public/service-accounts/sa%2F1/keys/k%20y"


def test_empty_body_digest_is_the_known_constant() -> None:
    """sha-256 of no bytes, in the structured-field form Encord expects."""
    assert content_digest(b"") == "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:"
    signed = _sign_with_rotator(httpx.Request("GET", f"{DOMAIN}/v2/public/user/bearer-token"), 0)
    assert signed.headers["Content-Digest"] == content_digest(b"")


def test_auth_replaces_an_authorization_header() -> None:
    """A signed request carries no Authorization header, even if one was set."""
    request = httpx.Request(
        "GET", f"{DOMAIN}/v2/public/user/bearer-token", headers={"Authorization": "Bearer x"}
    )
    signed = _sign_with_rotator(request, CREATED)
    assert "Authorization" not in signed.headers
    assert all(h in signed.headers for h in SIGNED_HEADERS)


def test_auth_repr_shows_no_key_material() -> None:
    """EncordAuth's repr names a key id prefix only."""
    shown = repr(EncordAuth(PAIR))
    for line in PAIR.private_openssh.splitlines():
        assert line not in shown


def test_each_attempt_is_signed_afresh() -> None:
    """Sending the same request twice signs it twice, with the clock's new 'created'."""
    clock = iter([CREATED, CREATED + 7])
    seen: list[tuple[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.headers["Signature-Input"], request.headers["Signature"]))
        verify(
            request.method,
            request_target(request),
            request.headers,
            request.content,
            lookup=_lookup,
            now=CREATED + 7,
        )
        return httpx.Response(204)

    auth = EncordAuth(PAIR, clock=lambda: next(clock))
    with httpx.Client(transport=httpx.MockTransport(handler), auth=auth) as client:
        request = client.build_request("POST", f"{DOMAIN}/v2/public/x", content=b"{}")
        client.send(request)
        client.send(request)
    assert f"created={CREATED};" in seen[0][0]
    assert f"created={CREATED + 7};" in seen[1][0]
    assert seen[0][1] != seen[1][1]


# -- properties of sign()/verify() ------------------------------------------------------------

_METHODS = st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
_PRINTABLE = st.characters(min_codepoint=0x21, max_codepoint=0x7E)
_TARGETS = st.text(alphabet=_PRINTABLE, min_size=1, max_size=80).map(lambda t: "/" + t)
_OFFSETS = st.integers(min_value=-SKEW_WINDOW_SECONDS, max_value=SKEW_WINDOW_SECONDS)
_CREATED = st.integers(min_value=0, max_value=4_000_000_000)


def _signed(method: str, target: str, body: bytes, created: int) -> dict[str, str]:
    return sign(
        method, target, body, private_key=PAIR.private_key, key_id=PAIR.key_id, created=created
    )


def _verify(method: str, target: str, headers: dict[str, str], body: bytes, now: float) -> str:
    return verify(method, target, httpx.Headers(headers), body, lookup=_lookup, now=now)


def _replace_char(text: str, index: int, new: str) -> str:
    return text[:index] + new + text[index + 1 :]


@st.composite
def _one_char_change(draw: st.DrawFn, text: str, alphabet: st.SearchStrategy[str]) -> str:
    index = draw(st.integers(min_value=0, max_value=len(text) - 1))
    new = draw(alphabet.filter(lambda c: c != text[index]))
    return _replace_char(text, index, new)


@settings(max_examples=150)
@given(
    method=_METHODS,
    target=_TARGETS,
    body=st.binary(max_size=300),
    created=_CREATED,
    offset=_OFFSETS,
)
def test_verify_accepts_what_sign_makes(
    method: str, target: str, body: bytes, created: int, offset: int
) -> None:
    """Any method, target and body signed at 'created' verifies within ±300 s of it."""
    headers = _signed(method, target, body, created)
    assert _verify(method, target, headers, body, now=created + offset) == PAIR.key_id


# "." and ".." are dot segments: URL parsing resolves them, so they never reach the wire as
# such (the client refuses them as path segments).
_SEGMENTS = st.lists(
    st.text(min_size=1, max_size=12).filter(lambda s: s not in (".", "..")), min_size=1, max_size=4
)
_QUERIES = st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=12), max_size=3)


@settings(max_examples=100)
@given(method=_METHODS, segments=_SEGMENTS, query=_QUERIES, body=st.binary(max_size=200))
def test_verify_accepts_what_encord_auth_sends(
    method: str, segments: list[str], query: dict[str, str], body: bytes
) -> None:
    """A request signed by EncordAuth (any path segments, query and body) verifies as sent."""
    path = "/v2/public/" + "/".join(quote(s, safe="") for s in segments)
    request = httpx.Request(method, DOMAIN + path, params=query, content=body)
    EncordAuth(PAIR, clock=lambda: CREATED).sign_request(request)
    target = request_target(request)
    assert target.startswith(path)
    assert _verify(method, target, dict(request.headers), body, now=CREATED) == PAIR.key_id


@settings(max_examples=150)
@given(data=st.data(), body=st.binary(min_size=1, max_size=200), method=_METHODS, target=_TARGETS)
def test_verify_rejects_a_one_byte_change_to_the_body(
    data: st.DataObject, body: bytes, method: str, target: str
) -> None:
    """Changing any one byte of the body breaks the digest."""
    headers = _signed(method, target, body, CREATED)
    index = data.draw(st.integers(min_value=0, max_value=len(body) - 1))
    new = data.draw(st.integers(min_value=0, max_value=255).filter(lambda b: b != body[index]))
    changed = body[:index] + bytes([new]) + body[index + 1 :]
    with pytest.raises(SignatureError):
        _verify(method, target, headers, changed, now=CREATED)


@settings(max_examples=150)
@given(data=st.data(), method=_METHODS, target=_TARGETS, body=st.binary(max_size=100))
def test_verify_rejects_a_one_byte_change_to_the_target(
    data: st.DataObject, method: str, target: str, body: bytes
) -> None:
    """Changing any one character of the request target breaks the signature."""
    headers = _signed(method, target, body, CREATED)
    changed = data.draw(_one_char_change(target, _PRINTABLE))
    with pytest.raises(SignatureError):
        _verify(method, changed, headers, body, now=CREATED)


@settings(max_examples=100)
@given(data=st.data(), method=_METHODS, target=_TARGETS)
def test_verify_rejects_a_one_byte_change_to_the_method(
    data: st.DataObject, method: str, target: str
) -> None:
    """Changing one letter of the method to another letter breaks the signature.

    (Case is not a change: the SDK signs the upper-cased method, and so does rotator.)
    """
    headers = _signed(method, target, b"", CREATED)
    letters = st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    changed = data.draw(_one_char_change(method, letters))
    with pytest.raises(SignatureError):
        _verify(changed, target, headers, b"", now=CREATED)


@settings(max_examples=300)
@given(
    data=st.data(),
    name=st.sampled_from(SIGNED_HEADERS),
    method=_METHODS,
    target=_TARGETS,
    body=st.binary(max_size=100),
)
def test_verify_rejects_a_one_byte_change_to_any_signed_header(
    data: st.DataObject, name: str, method: str, target: str, body: bytes
) -> None:
    """Changing any one character of Content-Digest, Signature-Input or Signature is refused."""
    headers = _signed(method, target, body, CREATED)
    headers[name] = data.draw(_one_char_change(headers[name], _PRINTABLE))
    with pytest.raises(SignatureError):
        _verify(method, target, headers, body, now=CREATED)


def _signature_variants(signature_header: str) -> Iterator[str]:
    """Every one-character change of the base64 signature's last data character."""
    b64 = signature_header[len("encord-sig=:") : -1]
    index = len(b64.rstrip("=")) - 1
    for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/":
        if c != b64[index]:
            yield "encord-sig=:" + _replace_char(b64, index, c) + ":"


def test_verify_rejects_non_canonical_base64_signatures() -> None:
    """A Signature whose base64 differs only in unused padding bits is still a changed header."""
    headers = _signed("GET", "/v2/public/user/bearer-token", b"", CREATED)
    for variant in _signature_variants(headers["Signature"]):
        with pytest.raises(SignatureError):
            _verify(
                "GET",
                "/v2/public/user/bearer-token",
                headers | {"Signature": variant},
                b"",
                now=CREATED,
            )


@settings(max_examples=100)
@given(
    created=_CREATED,
    beyond=st.integers(min_value=1, max_value=10**9),
    sign_=st.sampled_from([-1, 1]),
)
def test_verify_rejects_outside_the_window(created: int, beyond: int, sign_: int) -> None:
    """A signature more than 300 s old, or from more than 300 s ahead, is refused."""
    headers = _signed("GET", "/x", b"", created)
    with pytest.raises(SignatureError, match="window"):
        _verify("GET", "/x", headers, b"", now=created + sign_ * (SKEW_WINDOW_SECONDS + beyond))


def test_window_edges_are_inclusive() -> None:
    """Exactly ±300 s is still inside the window; 301 s is not."""
    headers = _signed("GET", "/x", b"", CREATED)
    for now in (CREATED - 300, CREATED + 300):
        assert _verify("GET", "/x", headers, b"", now=now) == PAIR.key_id
    for now in (CREATED - 301, CREATED + 301):
        with pytest.raises(SignatureError):
            _verify("GET", "/x", headers, b"", now=now)


def test_unknown_key_is_refused() -> None:
    """A well-formed signature by a key the verifier does not know raises SignatureError."""
    headers = sign(
        "GET", "/x", b"", private_key=OTHER.private_key, key_id=OTHER.key_id, created=CREATED
    )
    with pytest.raises(SignatureError, match="unknown key"):
        _verify("GET", "/x", headers, b"", now=CREATED)


def test_key_id_of_another_key_is_refused() -> None:
    """A signature made by one key but claiming another's key id does not verify."""
    headers = sign(
        "GET", "/x", b"", private_key=OTHER.private_key, key_id=PAIR.key_id, created=CREATED
    )
    with pytest.raises(SignatureError, match="does not verify"):
        _verify("GET", "/x", headers, b"", now=CREATED)


@pytest.mark.parametrize("missing", SIGNED_HEADERS)
def test_missing_header_is_refused(missing: str) -> None:
    """A request lacking any one of the three headers is refused."""
    headers = _signed("GET", "/x", b"", CREATED)
    del headers[missing]
    with pytest.raises(SignatureError, match="missing"):
        _verify("GET", "/x", headers, b"", now=CREATED)


def test_headers_are_matched_case_insensitively() -> None:
    """Header names are looked up case-insensitively, as HTTP requires."""
    headers = {k.lower(): v for k, v in _signed("GET", "/x", b"", CREATED).items()}
    assert _verify("GET", "/x", headers, b"", now=CREATED) == PAIR.key_id
