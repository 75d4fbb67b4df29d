"""What the sandbox answers: one request in, one :class:`Reply` out; no sockets here.

Routes (see ``encord-api.md``)::

    GET    /v2/public/user/bearer-token                       Part 1, signed
    GET    /v2/public/organisation/organisation-tags          Part 1, signed or Bearer
    GET    /v2/public/service-accounts/{sa}/keys[?pageToken]  Part 2, signed
    POST   /v2/public/service-accounts/{sa}/keys              Part 2, signed
    POST   /v2/public/service-accounts/{sa}/keys/generate     Part 2, signed
    DELETE /v2/public/service-accounts/{sa}/keys/{keyHash}    Part 2, signed
    GET    /_sandbox/faults, PUT /_sandbox/faults, GET /_sandbox/state   loopback only
    POST   /_sandbox/ui/keys  {"account": name, "title": str}            loopback only: a
           person's "New API key" in the Encord UI; answers the Key plus "privateKey"

Order for ``/v2/public``: latency, injected 500, injected 429, authentication (401), unknown
route (404), method (405), unknown ``{sa}`` (404), authorisation (403), then the call.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qs, unquote

from rotator.adapters.encord.signing import SignatureError, verify
from rotator.core import keys
from rotator.core.errors import ConfigError
from rotator.dev.sandbox.faults import Faults
from rotator.dev.sandbox.store import Account, Refused, Store, key_json, rfc3339_micro

PUBLIC_PREFIX = "/v2/public/"
CONTROL_PREFIX = "/_sandbox/"
_KEYID_RE = re.compile(r'keyid="([0-9a-f]{64})"')

_BEARER = ("user", "bearer-token")
_TAGS = ("organisation", "organisation-tags")


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request as received: ``target`` is the raw request target (path + ``?query``)."""

    method: str
    target: str
    headers: Mapping[str, str] = field(repr=False)  # case-insensitive; may hold a token
    body: bytes = field(repr=False)
    client_host: str = ""


@dataclass(frozen=True, slots=True)
class Reply:
    """One answer: ``body`` is JSON (None: no body); ``drop``: close without answering."""

    status: int
    body: Any = field(default=None, repr=False)  # may hold a private key or a token
    headers: tuple[tuple[str, str], ...] = ()
    drop: bool = False


def _error(status: int, message: str, code: str | None = None, **headers: str) -> Reply:
    body = {"message": message} if code is None else {"message": message, "code": code}
    return Reply(status, body, tuple(headers.items()))


def is_loopback(host: str) -> bool:
    """Whether a client address is loopback (IPv4, IPv6, or IPv4-mapped IPv6)."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


class _Denied(Exception):
    """Authentication failed; the reason is safe to show (no key or token text)."""


class Api:
    """The sandbox's behaviour, shared by every connection thread."""

    def __init__(
        self,
        store: Store,
        *,
        faults: Faults,
        clock: Callable[[], float],
        page_size: int,
        token_ttl: float,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._store = store
        self._faults = faults
        self._faults_lock = threading.Lock()
        self._clock = clock
        self._page_size = page_size
        self._token_ttl = token_ttl
        self._sleep = sleep
        self._random = random.Random()  # noqa: S311 - fault dice, not cryptography
        self._added: dict[str, float] = {}  # key id -> when the API added it (propagation_ms)

    @property
    def clock(self) -> Callable[[], float]:
        """The sandbox's clock: signatures are checked against it, answers dated by it."""
        return self._clock

    @property
    def faults(self) -> Faults:
        with self._faults_lock:
            return self._faults

    @faults.setter
    def faults(self, value: Faults) -> None:
        with self._faults_lock:
            self._faults = value

    def _roll(self, rate: float) -> bool:
        with self._faults_lock:
            return rate > 0 and self._random.random() < rate

    def handle(self, request: Request) -> Reply:
        path = request.target.partition("?")[0]
        if path.startswith(PUBLIC_PREFIX):
            return self._public(request)
        if path.startswith(CONTROL_PREFIX):
            return self._control(request)
        return _error(404, "not found", "NOT_FOUND")

    # -- /_sandbox --------------------------------------------------------------------

    def _control(self, request: Request) -> Reply:
        if not is_loopback(request.client_host):
            return _error(403, "the sandbox control API answers loopback clients only", "FORBIDDEN")
        path = request.target.partition("?")[0]
        if path == "/_sandbox/faults" and request.method == "GET":
            return Reply(200, self.faults.to_json())
        if path == "/_sandbox/faults" and request.method == "PUT":
            changes = _json_object(request.body)
            if changes is None:
                return _error(400, "body must be a JSON object", "INVALID_REQUEST")
            with self._faults_lock:
                try:
                    self._faults = self._faults.updated(changes)
                except ConfigError as exc:
                    return _error(400, str(exc), "INVALID_FAULTS")
                return Reply(200, self._faults.to_json())
        if path == "/_sandbox/state" and request.method == "GET":
            return Reply(200, {"accounts": self._store.snapshot()})
        if path == "/_sandbox/ui/keys" and request.method == "POST":
            return self._create_in_ui(request.body)
        if path in ("/_sandbox/faults", "/_sandbox/state", "/_sandbox/ui/keys"):
            return _error(405, "method not allowed", "METHOD_NOT_ALLOWED")
        return _error(404, "not found", "NOT_FOUND")

    def _create_in_ui(self, body: bytes) -> Reply:
        data = _json_object(body)
        if data is None or not isinstance(data.get("title"), str):
            message = "body must be a JSON object with 'account' and a string 'title'"
            return _error(400, message, "INVALID_REQUEST")
        account = self._store.account(str(data.get("account")))
        if account is None:
            return _error(404, "no such service account", "NOT_FOUND")
        try:
            key, private = self._store.create_in_ui(account, data["title"])
        except Refused as exc:
            return _error(exc.status, exc.message, exc.code)
        return Reply(200, {**key_json(key), "privateKey": private})

    # -- /v2/public -------------------------------------------------------------------

    def _public(self, request: Request) -> Reply:
        faults = self.faults
        if faults.latency_ms:
            self._sleep(faults.latency_ms / 1000)
        if self._roll(faults.error_rate):
            return Reply(500, {"message": "injected"})
        if self._roll(faults.throttle_rate):
            return _error(
                429, "rate limited", "RATE_LIMITED", **{"Retry-After": str(faults.retry_after)}
            )

        path, _, query = request.target.partition("?")
        parts = tuple(unquote(p) for p in path[len(PUBLIC_PREFIX) :].split("/"))
        with self._store.lock:
            try:
                principal = self._authenticate(request, bearer_ok=parts == _TAGS)
                self._propagated(request, faults.propagation_ms)
            except _Denied as exc:
                return _error(401, f"authentication failed: {exc}", "UNAUTHENTICATED")
            reply = self._route(request, parts, query, principal)
        # The only 200 answers to a POST under service-accounts are upload and generate.
        creates = request.method == "POST" and parts[0] == "service-accounts"
        if creates and reply.status == 200 and self._roll(faults.drop_upload_rate):
            return replace(reply, drop=True)
        return reply

    def _authenticate(self, request: Request, *, bearer_ok: bool) -> Account:
        headers = request.headers
        authorization = headers.get("Authorization", "")
        if "Signature-Input" not in headers and authorization.startswith("Bearer "):
            return self._authenticate_bearer(authorization[len("Bearer ") :].strip(), bearer_ok)
        claimed = _KEYID_RE.search(headers.get("Signature-Input", ""))
        key_id = claimed.group(1) if claimed else None
        try:
            verified = verify(
                request.method,
                request.target,
                headers,
                request.body,
                lookup=self._store.public_key,
                now=self._clock(),
            )
        except SignatureError as exc:
            reason = str(exc)
            if reason == "unknown key" and key_id and self._store.was_deleted(key_id):
                reason = "deleted key"
            owner = self._store.owner_of(key_id) if key_id else None
            self._store.journal("auth.failed", account=owner, key_id=key_id, reason=reason)
            raise _Denied(reason) from None
        account = self._store.owner_of(verified)
        if account is None:  # deleted between lookup and now: cannot happen under the lock
            raise _Denied("unknown key")
        return account

    def _propagated(self, request: Request, propagation_ms: int) -> None:
        """Refuse a key added through the API less than ``propagation_ms`` ago (a fault)."""
        claimed = _KEYID_RE.search(request.headers.get("Signature-Input", ""))
        added = self._added.get(claimed.group(1)) if claimed else None
        if claimed is None or added is None or self._clock() - added >= propagation_ms / 1000:
            return
        owner = self._store.owner_of(claimed.group(1))
        self._store.journal(
            "auth.failed", account=owner, key_id=claimed.group(1), reason="not propagated"
        )
        raise _Denied("unknown key")

    def _authenticate_bearer(self, token: str, bearer_ok: bool) -> Account:
        account, reason = self._store.token_owner(token)
        if account is not None and not reason and bearer_ok:
            return account
        reason = reason or "bearer tokens are accepted by organisation-tags only"
        self._store.journal("auth.failed", account=account, key_id=None, reason=reason)
        raise _Denied(reason)

    def _route(
        self, request: Request, parts: tuple[str, ...], query: str, principal: Account
    ) -> Reply:
        method = request.method
        if parts == _BEARER:
            if method != "GET":
                return _error(405, "method not allowed", "METHOD_NOT_ALLOWED")
            return Reply(200, {"token": self._store.mint_token(principal, self._token_ttl)})
        if parts == _TAGS:
            if method != "GET":
                return _error(405, "method not allowed", "METHOD_NOT_ALLOWED")
            return Reply(200, {"results": [], "nextPageToken": None})
        if len(parts) < 3 or parts[0] != "service-accounts" or parts[2] != "keys" or len(parts) > 4:
            return _error(404, "not found", "NOT_FOUND")
        withheld = self.faults.key_management_status
        if withheld:  # an Encord without key management (Part 2), as the real one today
            return _error(withheld, "not found" if withheld == 404 else "method not allowed")

        if len(parts) == 3:
            allowed: tuple[str, ...] = ("GET", "POST")
        else:
            allowed = ("POST", "DELETE") if parts[3] == "generate" else ("DELETE",)
        if method not in allowed:
            return _error(405, "method not allowed", "METHOD_NOT_ALLOWED")
        account = self._store.account_by_hash(parts[1])
        if account is None:
            return _error(404, "no such service account", "NOT_FOUND")
        if not _may_manage(principal, account):
            return _error(403, "not allowed to manage this service account's keys", "FORBIDDEN")

        # The key that signed the call (verified above), for the journal of adds and deletes.
        signer = _KEYID_RE.search(request.headers.get("Signature-Input", ""))
        by = signer.group(1) if signer else None
        if method == "DELETE":
            if self._store.delete_key(account, parts[3], by=by) is None:
                return _error(404, "no such key on this service account", "NOT_FOUND")
            return Reply(204)
        if method == "GET":
            return self._list(account, query)
        return self._create(account, request.body, generate=len(parts) == 4, by=by)

    def _list(self, account: Account, query: str) -> Reply:
        tokens = parse_qs(query, keep_blank_values=True).get("pageToken", [])
        after = ""
        if tokens:
            after = _read_page_token(tokens[-1], account.account_hash) or ""
            if not after:
                return _error(400, "invalid pageToken", "INVALID_PAGE_TOKEN")
        ordered = sorted(account.keys, key=lambda k: k.created_at)
        rest = [k for k in ordered if rfc3339_micro(k.created_at) > after]
        page = rest[: self._page_size]
        next_token = None
        if len(rest) > len(page):
            next_token = _page_token(account.account_hash, rfc3339_micro(page[-1].created_at))
        return Reply(200, {"results": [key_json(k) for k in page], "nextPageToken": next_token})

    def _create(
        self, account: Account, body: bytes, *, generate: bool, by: str | None
    ) -> Reply:
        data = _json_object(body)
        if data is None:
            return _error(400, "body must be a JSON object", "INVALID_REQUEST")
        title = data.get("title")
        if not isinstance(title, str):
            return _error(400, "title must be a string", "INVALID_REQUEST")
        try:
            if generate:
                pair = keys.generate()
                key = self._store.add_key(
                    account, title=title, public_line=pair.public_line, origin="generated", by=by
                )
                self._added[key.key_id] = self._clock()
                return Reply(200, {**key_json(key), "privateKey": pair.private_openssh})
            public_line = data.get("publicKey")
            if not isinstance(public_line, str):
                return _error(400, "publicKey must be a string", "INVALID_REQUEST")
            line = public_line.strip()
            if "\n" in line or "\r" in line:
                return _error(400, "publicKey must be one OpenSSH line", "INVALID_PUBLIC_KEY")
            key = self._store.add_key(
                account, title=title, public_line=line, origin="uploaded", by=by
            )
            self._added[key.key_id] = self._clock()
            return Reply(200, key_json(key))
        except Refused as exc:
            return _error(exc.status, exc.message, exc.code)


def _may_manage(principal: Account, account: Account) -> bool:
    if principal is account:
        return True
    return principal.role == "admin" and principal.organisation == account.organisation


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _page_token(account_hash: str, after: str) -> str:
    raw = json.dumps({"sa": account_hash, "after": after}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _read_page_token(token: str, account_hash: str) -> str | None:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or data.get("sa") != account_hash:
        return None
    after = data.get("after")
    return after if isinstance(after, str) and after else None
