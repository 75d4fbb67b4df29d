"""Reading Encord's answers (contract Parts 1, 2): JSON bodies, Key objects, error statuses.

Every function here takes an ``httpx.Response`` already read (capped) by the exchange, and
returns a value of :mod:`rotator.core.vocab` or raises an error of the house tree
(:mod:`rotator.core.errors`). Messages name the call and the status, perhaps Encord's ``code``
(only if it looks like one), never a response body, Encord's ``message``, a key or a token.
Every error is raised outside the ``except`` block that noticed the problem, so no
``__cause__`` or ``__context__`` carries a library exception (a ``JSONDecodeError``'s ``doc``
is the body).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any, Final

import httpx

from rotator.core.errors import (
    SKEW_TOLERANCE,
    AccessDenied,
    ClockSkew,
    KeyFormatError,
    NotFound,
    ProtocolError,
    RegistryRejected,
    RegistryUnavailable,
    RotatorError,
)
from rotator.core.keys import load_private
from rotator.core.vocab import GeneratedKey, Origin, RemoteKey, in_time_range, parse_rfc3339

__all__ = [
    "clock_offset",
    "error_for",
    "generated_key",
    "key_page",
    "parse_json",
    "retry_after_of",
    "text_field",
    "uploaded_key",
]

_CODE_RE: Final = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
_KEY_ID_RE: Final = re.compile(r"^[0-9a-f]{64}$")
_ORIGINS: Final[frozenset[str]] = frozenset({"uploaded", "generated"})
_MALFORMED: Final = object()


def retry_after_of(response: httpx.Response) -> float | None:
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


def clock_offset(response: httpx.Response, *, now: float | None = None) -> float | None:
    """Encord's clock minus ours (seconds), from the answer's ``Date`` header; None without
    a readable one. ``now``: when the answer arrived (default: now). The header names a whole
    second, so the result is good to about a second plus the round trip: plenty to tell a
    clock minutes off, which is all it is used for."""
    raw = response.headers.get("Date")
    if not raw:
        return None
    try:
        theirs = parsedate_to_datetime(raw).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if not math.isfinite(theirs):
        return None
    return theirs + 0.5 - (time.time() if now is None else now)


def parse_json(call: str, response: httpx.Response) -> object:
    """The answer's JSON, or ProtocolError (not chained to the decoder's error)."""
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


def error_for(call: str, response: httpx.Response) -> RotatorError:
    """The house error for a non-success answer (no body, no message, no secret)."""
    status = response.status_code
    if status == 400:
        code = _error_code(response)
        suffix = f" {code}" if code else ""
        return RegistryRejected(f"Encord {call}: HTTP 400{suffix}", code=code, status=400)
    if status == 409:
        code = _error_code(response) or "DUPLICATE_KEY"
        return RegistryRejected(f"Encord {call}: HTTP 409 {code}", code=code, status=409)
    if status == 401:
        offset = clock_offset(response)
        if offset is not None and abs(offset) > SKEW_TOLERANCE:
            way = "ahead of" if offset > 0 else "behind"
            return ClockSkew(
                f"Encord {call}: HTTP 401, and Encord's clock is {abs(offset):.0f} s {way} "
                "this host's (Encord refuses signatures more than 300 s off): fix the clock",
                offset=offset,
            )
    if status in (401, 403):
        return AccessDenied(f"Encord {call}: HTTP {status}", status=status)
    if status == 404:
        return NotFound(f"Encord {call}: HTTP 404")
    if status == 429 or 500 <= status <= 599:
        return RegistryUnavailable(
            f"Encord {call}: HTTP {status}", retry_after=retry_after_of(response)
        )
    return ProtocolError(f"Encord {call}: unexpected HTTP {status}")


def text_field(obj: Mapping[str, Any], name: str) -> str | None:
    """``obj[name]`` if it is a non-empty string, else None."""
    value = obj.get(name)
    return value if isinstance(value, str) and value else None


def _remote_key(obj: object) -> RemoteKey | None:
    """A Key object of the contract, or None if it is not one."""
    if not isinstance(obj, dict):
        return None
    key_hash = text_field(obj, "keyHash")
    key_id = text_field(obj, "keyId")
    title = obj.get("title")
    public_key = text_field(obj, "publicKey")
    origin = text_field(obj, "origin")
    created = text_field(obj, "createdAt")
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


def key_page(call: str, response: httpx.Response) -> tuple[list[RemoteKey], str | None]:
    """One page of a key listing: its keys and the next page's token (None on the last)."""
    page = parse_json(call, response)
    results = page.get("results") if isinstance(page, dict) else None
    next_token = page.get("nextPageToken") if isinstance(page, dict) else _MALFORMED
    if not isinstance(results, list) or not (
        next_token is None or (isinstance(next_token, str) and next_token)
    ):
        raise ProtocolError(f"Encord answered malformed JSON for {call}")
    keys: list[RemoteKey] = []
    for item in results:
        key = _remote_key(item)
        if key is None:
            raise ProtocolError(f"Encord answered malformed JSON for {call}")
        keys.append(key)
    return keys, next_token


def uploaded_key(call: str, response: httpx.Response, key_id: str) -> RemoteKey:
    """The Key object answering an upload, which must be the key uploaded (``key_id``)."""
    key = _remote_key(parse_json(call, response))
    if key is None:
        raise ProtocolError(f"Encord answered malformed JSON for {call}")
    if key.key_id != key_id:
        raise ProtocolError(f"Encord {call}: answered a key other than the one uploaded")
    return key


def generated_key(call: str, response: httpx.Response) -> GeneratedKey:
    """The Key object answering a generation, with its private half, which must match it."""
    data = parse_json(call, response)
    key = _remote_key(data)
    private = text_field(data, "privateKey") if isinstance(data, dict) else None
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
