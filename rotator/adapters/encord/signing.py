"""Encord v2 request signing (HTTP message signatures, Ed25519), and its verifier.

The signed message is four lines joined by ``\\n`` (the last one ends
``;alg="ed25519"``)::

    "@method": GET
    "@request-target": /v2/public/user/bearer-token
    "content-digest": sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:
    "@signature-params": ("@method" "@request-target" "content-digest");created=...;keyid=...

This is byte-for-byte what the ``encord`` SDK (``encord.http.v2.request_signer``) sends; the
test suite proves it against the SDK itself. The verifier is what the sandbox uses, and is as
strict as Encord: raw request target, exact digest, a ``created`` window of ±300 s.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import time
from collections.abc import Callable, Generator, Mapping

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from rotator.core.keys import KeyPair

LABEL = "encord-sig"
COVERED = '("@method" "@request-target" "content-digest")'
SKEW_WINDOW_SECONDS = 300

_INPUT_RE = re.compile(
    r'^encord-sig=\("@method" "@request-target" "content-digest"\)'
    r';created=(?P<created>[0-9]{1,12});keyid="(?P<keyid>[0-9a-f]{64})";alg="ed25519"$'
)
_SIG_RE = re.compile(r"^encord-sig=:(?P<sig>[A-Za-z0-9+/=]+):$")


def content_digest(body: bytes) -> str:
    """``sha-256=:<base64 sha256(body)>:``."""
    return f"sha-256=:{base64.b64encode(hashlib.sha256(body).digest()).decode('ascii')}:"


def signature_params(created: int, key_id: str) -> str:
    """The Signature-Input value after ``encord-sig=``."""
    return f'{COVERED};created={created};keyid="{key_id}";alg="ed25519"'


def signature_base(method: str, target: str, digest: str, params: str) -> bytes:
    """The exact bytes Ed25519 signs."""
    return "\n".join(
        (
            f'"@method": {method.upper()}',
            f'"@request-target": {target}',
            f'"content-digest": {digest}',
            f'"@signature-params": {params}',
        )
    ).encode("utf-8")


def sign(
    method: str,
    target: str,
    body: bytes,
    *,
    private_key: Ed25519PrivateKey,
    key_id: str,
    created: int,
) -> dict[str, str]:
    """The three headers for one request: Content-Digest, Signature-Input, Signature."""
    digest = content_digest(body)
    params = signature_params(created, key_id)
    signature = private_key.sign(signature_base(method, target, digest, params))
    return {
        "Content-Digest": digest,
        "Signature-Input": f"{LABEL}={params}",
        "Signature": f"{LABEL}=:{base64.b64encode(signature).decode('ascii')}:",
    }


def request_target(request: httpx.Request) -> str:
    """Path as sent (percent-encoded) plus ``?query`` if any."""
    return request.url.raw_path.decode("ascii")


class EncordAuth(httpx.Auth):
    """Signs every request, each attempt afresh, with one Ed25519 key.

    The key's private half is held by the :class:`~rotator.core.keys.KeyPair` (hidden from repr).
    """

    requires_request_body = True

    def __init__(self, key: KeyPair, *, clock: Callable[[], float] = time.time) -> None:
        self._private = key.private_key
        self.key_id = key.key_id
        self._clock = clock

    def __repr__(self) -> str:
        return f"EncordAuth(key_id={self.key_id[:12]}...)"

    def sign_request(self, request: httpx.Request) -> None:
        request.headers.pop("Authorization", None)
        request.headers.update(
            sign(
                request.method,
                request_target(request),
                request.content,
                private_key=self._private,
                key_id=self.key_id,
                created=int(self._clock()),
            )
        )

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self.sign_request(request)
        yield request


class SignatureError(Exception):
    """Why a request's signature was refused (safe to log: no key material)."""


def verify(
    method: str,
    target: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    lookup: Callable[[str], Ed25519PublicKey | None],
    now: float,
    window: int = SKEW_WINDOW_SECONDS,
) -> str:
    """Check a signed request as Encord does; return the key id, or raise SignatureError.

    ``headers`` must be case-insensitive (httpx.Headers, email.message.Message...).
    """
    digest = headers.get("Content-Digest")
    sig_input = headers.get("Signature-Input")
    sig = headers.get("Signature")
    if not digest or not sig_input or not sig:
        raise SignatureError("missing signature headers")
    if digest != content_digest(body):
        raise SignatureError("content digest does not match the body")
    m = _INPUT_RE.match(sig_input)
    if m is None:
        raise SignatureError("malformed Signature-Input")
    created = int(m.group("created"))
    if abs(now - created) > window:
        raise SignatureError("signature created outside the allowed window")
    s = _SIG_RE.match(sig)
    if s is None:
        raise SignatureError("malformed Signature")
    try:
        raw = base64.b64decode(s.group("sig"), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("malformed Signature") from None
    if base64.b64encode(raw).decode("ascii") != s.group("sig"):
        # Non-canonical base64 (stray padding bits) decodes to the same bytes: a changed header
        # must not verify.
        raise SignatureError("malformed Signature")
    key_id = m.group("keyid")
    public = lookup(key_id)
    if public is None:
        raise SignatureError("unknown key")
    params = sig_input[len(LABEL) + 1 :]
    try:
        public.verify(raw, signature_base(method, target, digest, params))
    except InvalidSignature:
        raise SignatureError("signature does not verify") from None
    return key_id
