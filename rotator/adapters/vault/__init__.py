"""The Vault (KV version 2) adapter: the one module of rotator that imports ``hvac``.

Everything rotator keeps in Vault lives under ``{mount}/{prefix}/...`` and every write is a
check-and-set: ``write(rel, data, cas=n)`` succeeds only if the path's current version is
``n`` (``0``: the path must not exist yet), so two writers can never silently overwrite
each other.

hvac's errors are translated here, at the boundary, into rotator's own tree::

    cannot connect, timeout, 429, 5xx, sealed   -> StoreUnavailable  (names VAULT_ADDR)
    401 / 403                                   -> AccessDenied      (names VAULT_TOKEN, or
                                                   the login's variables: VAULT_ROLE_ID...)
    400 "check-and-set parameter did not match" -> StoreConflict
    no such mount, or a mount that is not KV v2 -> ConfigError       (names ROTATOR_VAULT_MOUNT)
    an answer of an unexpected shape            -> CorruptState

The rotator errors are raised *outside* the ``except`` block, so they carry no
``__cause__`` or ``__context__``: hvac's exceptions keep the response body, and the
``requests`` exceptions keep the request, headers (``X-Vault-Token``) included. Messages are
one line and never hold a token, secret data or a response body.

:class:`VaultSession` owns the hvac client and its token: it logs in (``token``,
``approle`` or ``kubernetes``), renews the token before its TTL runs out
(:meth:`VaultSession.maintain`, run periodically by the daemon), and logs in again when
renewal is refused or the token reaches its max TTL. A :class:`VaultStore` made by
:meth:`VaultSession.store` logs in on first use and, when Vault refuses a token that has
died (expired or revoked), logs in again and retries that one call once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, NoReturn, TypeVar
from urllib.parse import urlsplit

import hvac
import hvac.exceptions
import hvac.utils
import requests
import structlog

from rotator.core import redaction as logs
from rotator.core.errors import (
    AccessDenied,
    ConfigError,
    CorruptState,
    RotatorError,
    StoreConflict,
    StoreUnavailable,
)
from rotator.core.vocab import parse_rfc3339, utc
from rotator.runtime.config import VaultSettings

__all__ = ["TokenInfo", "Versioned", "VaultSession", "VaultStore", "connect"]

log = structlog.get_logger("rotator.vault")

T = TypeVar("T")

_UNAVAILABLE: tuple[type[BaseException], ...] = (
    hvac.exceptions.VaultDown,
    hvac.exceptions.InternalServerError,
    hvac.exceptions.BadGateway,
    hvac.exceptions.VaultNotInitialized,
    hvac.exceptions.RateLimitExceeded,
    hvac.exceptions.UnexpectedError,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
)


def connect(
    addr: str,
    token: str,
    *,
    cacert: str | None = None,
    namespace: str | None = None,
    timeout: float = 5.0,
) -> hvac.Client:
    """An hvac client for ``addr`` with ``token``; opens no connection (``check()`` does).

    ``cacert`` is a CA bundle path for TLS verification (system roots when None); ``timeout``
    is seconds per HTTP request, short so a dead Vault is noticed quickly. The caller owns
    the client and closes it with ``client.adapter.close()``.
    """
    _validate(addr, token, timeout)
    return _client(addr, token, cacert=cacert, namespace=namespace, timeout=timeout)


def _validate(addr: str, token: str | None, timeout: float) -> None:
    """ConfigError listing every problem with the address, the token (unless None: it is
    obtained later by logging in) and the timeout."""
    problems = []
    try:
        parts = urlsplit(addr)
        usable = parts.scheme in ("http", "https") and bool(parts.hostname)
        _ = parts.port  # raises ValueError on a port that is not a number in range
    except ValueError:
        usable = False
    if not usable:
        problems.append(
            f"VAULT_ADDR: expected a URL like https://vault:8200, got {_safe_addr(addr)!r}"
        )
    if token is not None and (not token or token != token.strip()):
        problems.append("VAULT_TOKEN: empty, or has surrounding whitespace")
    if timeout <= 0:
        problems.append(f"Vault timeout: expected seconds > 0, got {timeout!r}")
    if problems:
        raise ConfigError(problems)


def _client(
    addr: str, token: str, *, cacert: str | None, namespace: str | None, timeout: float
) -> hvac.Client:
    # Pass every setting explicitly: hvac would otherwise fall back to VAULT_* variables and
    # ~/.vault-token, and rotator reads its environment in one place only. An empty token
    # (not None) sends no X-Vault-Token header at all.
    return hvac.Client(
        url=addr,
        token=token,
        verify=cacert if cacert else True,
        timeout=timeout,
        namespace=namespace or None,
    )


@dataclass(frozen=True, slots=True)
class Versioned:
    """One version of a KV v2 secret; ``data`` is None when it was deleted or destroyed."""

    data: dict[str, Any] | None = field(repr=False)
    version: int
    created_time: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "created_time", utc(self.created_time))

    @property
    def deleted(self) -> bool:
        """True when this version's data is gone (soft-deleted or destroyed)."""
        return self.data is None


class VaultStore:
    """Check-and-set access to ``{mount}/{prefix}/...`` on a KV version 2 mount.

    With a ``session`` (see :meth:`VaultSession.store`) every call first makes sure the
    session has logged in, and a call refused (401/403) because the token died is retried
    once after the session logged in again.
    """

    def __init__(
        self,
        client: hvac.Client,
        *,
        mount: str = "secret",
        prefix: str = "encord",
        session: VaultSession | None = None,
    ) -> None:
        self._client = client
        self._session = session
        self._who = session.credential if session is not None else "VAULT_TOKEN"
        self.mount = _clean_path(mount.strip("/"), what="mount", allow_empty=False)
        self.prefix = _clean_path(prefix.strip("/"), what="prefix", allow_empty=True)

    @property
    def session(self) -> VaultSession | None:
        """The session that keeps this store's token alive (None: a fixed token)."""
        return self._session

    def __repr__(self) -> str:
        return f"VaultStore(mount={self.mount!r}, prefix={self.prefix!r})"

    # -- health -----------------------------------------------------------------------------

    def check(self) -> None:
        """Prove that Vault answers, the token is valid and the mount is KV version 2.

        Raises StoreUnavailable (VAULT_ADDR), AccessDenied (VAULT_TOKEN, or the variables of
        the login method) or ConfigError (ROTATOR_VAULT_MOUNT). Uses
        ``auth/token/lookup-self`` (granted by the default policy) and
        ``sys/internal/ui/mounts/{mount}``, which any token with access to the mount may read.
        """
        self._call(
            "look up", "auth/token/lookup-self", lambda: self._client.auth.token.lookup_self()
        )
        bad_mount = f"ROTATOR_VAULT_MOUNT: {self.mount!r} is not a KV version 2 mount"
        url = hvac.utils.format_url("/v1/sys/internal/ui/mounts/{mount}", mount=self.mount)
        try:
            answer = self._call(
                "read mount",
                f"sys/internal/ui/mounts/{self.mount}",
                lambda: self._client.adapter.get(url),
            )
        except AccessDenied:
            # The token is valid (lookup-self passed), so a 403 here is Vault's "preflight
            # capability check": the mount does not exist, or this token may not use it.
            answer = None
        if answer is None:
            raise ConfigError(
                f"{bad_mount} (it does not exist, or the token ({self._who}) has no access to it)"
            )
        info = _get(answer, "data", dict, where="mount description")
        options = info.get("options") or {}
        if info.get("type") != "kv" or not isinstance(options, dict):
            raise ConfigError(f"{bad_mount} (its type is {str(info.get('type'))[:40]!r})")
        if str(options.get("version")) != "2":
            version = str(options.get("version") or "1")[:10]
            raise ConfigError(f"{bad_mount} (it is KV version {version})")

    # -- reads ------------------------------------------------------------------------------

    def read(self, rel: str) -> Versioned | None:
        """The latest version of ``{prefix}/{rel}``; None if it never existed or was destroyed
        with all its metadata. A soft-deleted latest version gives ``Versioned(data=None)``."""
        return self._read(rel, None)

    def read_version(self, rel: str, version: int) -> Versioned | None:
        """Version ``version`` of ``{prefix}/{rel}``; None if that version does not exist
        (never written, or pruned by max_versions)."""
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValueError(f"version must be an integer >= 1, got {version!r}")
        return self._read(rel, version)

    def current_version(self, rel: str) -> int:
        """The path's current version (metadata ``current_version``); 0 if absent.

        This is the number to pass as ``cas`` to replace the latest version, even when that
        version is deleted.
        """
        path = self._path(rel)
        answer = self._call(
            "read metadata of",
            path,
            lambda: self._client.secrets.kv.v2.read_secret_metadata(path, mount_point=self.mount),
            not_found=lambda _: None,
        )
        if answer is None:
            return 0
        meta = _get(answer, "data", dict, where=f"metadata of {self.mount}/{path}")
        return _get(meta, "current_version", int, where=f"metadata of {self.mount}/{path}")

    def list(self, rel: str = "") -> list[str]:
        """Child names under ``{prefix}/{rel}/``, sorted, without the trailing ``/`` Vault puts
        on folders (a name that is both a secret and a folder appears once); [] if none."""
        path = self._path(rel, allow_root=True)
        answer = self._call(
            "list",
            path,
            lambda: self._client.secrets.kv.v2.list_secrets(path, mount_point=self.mount),
            not_found=lambda _: None,
        )
        if answer is None:
            return []
        keys = _get(
            _get(answer, "data", dict, where=f"list of {self.mount}/{path}"),
            "keys",
            list,
            where=f"list of {self.mount}/{path}",
        )
        if not all(isinstance(k, str) and k.strip("/") for k in keys):
            raise CorruptState(f"Vault listed odd names under {self.mount}/{path}")
        return sorted({k.rstrip("/") for k in keys})

    # -- writes -----------------------------------------------------------------------------

    def write(self, rel: str, data: Mapping[str, Any], *, cas: int) -> int:
        """Write a new version if the current one is ``cas`` (0: must not exist yet).

        Returns the new version number; raises StoreConflict if another writer moved first.
        """
        if isinstance(cas, bool) or not isinstance(cas, int) or cas < 0:
            raise ValueError(f"cas must be an integer >= 0, got {cas!r}")
        path = self._path(rel)
        secret = dict(data)
        answer = self._call(
            "write",
            path,
            lambda: self._client.secrets.kv.v2.create_or_update_secret(
                path, secret, cas=cas, mount_point=self.mount
            ),
        )
        where = f"write answer for {self.mount}/{path}"
        return _get(_get(answer, "data", dict, where=where), "version", int, where=where)

    def destroy(self, rel: str) -> None:
        """Delete the metadata and every version of ``{prefix}/{rel}`` (no-op if absent)."""
        path = self._path(rel)
        self._call(
            "destroy",
            path,
            lambda: self._client.secrets.kv.v2.delete_metadata_and_all_versions(
                path, mount_point=self.mount
            ),
        )

    def set_max_versions(self, rel: str, n: int) -> None:
        """Keep at most ``n`` versions of ``{prefix}/{rel}`` (0: the mount's default).

        Only ``max_versions`` is sent, so other metadata (``delete_version_after``...) is left
        as it is; hvac's ``update_metadata`` would reset it.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"max_versions must be an integer >= 0, got {n!r}")
        path = self._path(rel)
        url = hvac.utils.format_url("/v1/{mount}/metadata/{path}", mount=self.mount, path=path)
        self._call(
            "update metadata of",
            path,
            lambda: self._client.adapter.post(url, json={"max_versions": n}),
        )

    # -- internals --------------------------------------------------------------------------

    def _path(self, rel: str, *, allow_root: bool = False) -> str:
        rel = _clean_path(rel, what="path", allow_empty=allow_root)
        return "/".join(p for p in (self.prefix, rel) if p)

    def _read(self, rel: str, version: int | None) -> Versioned | None:
        path = self._path(rel)
        answer = self._call(
            "read",
            path,
            lambda: self._client.secrets.kv.v2.read_secret_version(
                path, version=version, mount_point=self.mount, raise_on_deleted_version=False
            ),
            not_found=_destroyed_version,
        )
        if answer is None:
            return None
        where = f"{self.mount}/{path}"
        body = _get(answer, "data", dict, where=where)
        meta = _get(body, "metadata", dict, where=where)
        data = body.get("data")
        if data is not None and not isinstance(data, dict):
            raise CorruptState(f"Vault answered a non-object secret at {where}")
        number = _get(meta, "version", int, where=where)
        created_text = _get(meta, "created_time", str, where=where)
        try:
            created = parse_rfc3339(created_text)
        except ValueError:
            raise CorruptState(f"Vault answered an unreadable created_time at {where}") from None
        gone = bool(meta.get("deletion_time")) or meta.get("destroyed") is True
        return Versioned(data=None if gone else data, version=number, created_time=created)

    def _call(
        self,
        op: str,
        path: str,
        fn: Callable[[], T],
        *,
        not_found: Callable[[Any], T] | None = None,
    ) -> T:
        """Run one hvac call, translating its failures into rotator's errors (no chain).

        With a session: log in first if needed, and when the token is refused, let the
        session find out whether it died; if it was replaced, run ``fn`` once more.
        """
        session = self._session
        if session is None:
            return self._call_once(op, path, fn, not_found)
        session.ensure()
        used = self._client.token
        try:
            return self._call_once(op, path, fn, not_found)
        except AccessDenied as denied:
            first = denied
        # Outside the except block, so a retry's error does not chain to the first one.
        if not session.recover(used):
            _raise(first)
        return self._call_once(op, path, fn, not_found)

    def _call_once(
        self, op: str, path: str, fn: Callable[[], T], not_found: Callable[[Any], T] | None
    ) -> T:
        try:
            return fn()
        except hvac.exceptions.InvalidPath as exc:
            if _no_route(exc):
                failure: RotatorError = ConfigError(
                    f"ROTATOR_VAULT_MOUNT: {self.mount!r} is not a KV version 2 mount "
                    f"(Vault has no route for {op} {self.mount}/{path})"
                )
            elif not_found is not None:
                return not_found(exc)
            else:
                failure = CorruptState(f"Vault answered 404 to {op} {self.mount}/{path}")
        except (hvac.exceptions.VaultError, requests.exceptions.RequestException) as exc:
            failure = self._translate(exc, op, path)
        _raise(failure)

    def _translate(self, exc: Exception, op: str, path: str) -> RotatorError:
        where = f"{self.mount}/{path}"
        if isinstance(exc, _UNAVAILABLE):
            return StoreUnavailable(
                f"Vault at VAULT_ADDR did not answer: {type(exc).__name__} "
                f"(on {op} {where}; VAULT_ADDR={_safe_addr(self._client.url)})"
            )
        if isinstance(exc, hvac.exceptions.Forbidden | hvac.exceptions.Unauthorized):
            status = 403 if isinstance(exc, hvac.exceptions.Forbidden) else 401
            return AccessDenied(
                f"Vault refused the token ({self._who}) for {op} {where}", status=status
            )
        if isinstance(exc, hvac.exceptions.InvalidRequest) and any(
            "check-and-set" in e for e in _errors(exc)
        ):
            return StoreConflict(f"Vault check-and-set failed for {op} {where}: version moved on")
        if isinstance(exc, hvac.exceptions.InvalidRequest):
            return CorruptState(f"Vault rejected {op} {where} as a bad request (400)")
        if isinstance(exc, requests.exceptions.RequestException):
            return StoreUnavailable(
                f"Vault at VAULT_ADDR did not answer: {type(exc).__name__} "
                f"(on {op} {where}; VAULT_ADDR={_safe_addr(self._client.url)})"
            )
        return CorruptState(f"Vault answered {type(exc).__name__} to {op} {where}")


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What Vault said about the session's current token; never the token itself."""

    accessor: str
    """The token's accessor ('' for batch tokens, which have none)."""
    policies: tuple[str, ...]
    ttl: float
    """Seconds the token had left when Vault last described it (login, lookup or renewal);
    0 for a token that never expires (a root token)."""
    renewable: bool
    expires_at: float | None
    """When it runs out, on the session's clock (``time.monotonic`` by default); None: never."""


# Renew once less than this share of the token's TTL is left.
RENEW_SHARE = 1 / 3
# A renewal that grants less than this share of the TTL the token was issued with means the
# token is near its max TTL: log in again rather than renew ever shorter stubs.
RELOGIN_SHARE = 1 / 2
# How often the daemon should call maintain() at most, in seconds.
MAINTAIN_EVERY = 30.0


class VaultSession:
    """The hvac client and its token: login, renewal, and login again. Thread-safe.

    ``ROTATOR_VAULT_AUTH`` decides how a token is obtained:

    - ``token``: the given token (re-read from ``VAULT_TOKEN_FILE`` when that was the
      source); "login" looks it up (``auth/token/lookup-self``) to learn its TTL;
    - ``approle``: ``auth/{mount}/login`` with ``VAULT_ROLE_ID`` and ``VAULT_SECRET_ID``
      (re-read from ``VAULT_SECRET_ID_FILE`` at every login);
    - ``kubernetes``: ``auth/{mount}/login`` with ``VAULT_K8S_ROLE`` and the service-account
      JWT read from ``VAULT_K8S_JWT_FILE`` at every login.

    Logins go through a separate, token-less client, so the old token is never sent along
    and a refused login leaves the working token in place. Every token, secret ID and JWT
    is registered with the log redactor. Nothing touches the network until :meth:`login`,
    :meth:`ensure` or a store call. ``clock`` is injectable for tests.
    """

    def __init__(
        self, settings: VaultSettings, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._settings = settings
        self._auth = settings.auth
        self._clock = clock
        self._lock = threading.RLock()
        self._info: TokenInfo | None = None
        self._issued_ttl = 0.0  # the TTL the current token was issued (or last looked up) with
        static = self._auth.method == "token" and self._auth.token_file is None
        _validate(settings.addr, settings.token if static else None, self._timeout)
        # No token until login() has checked one: a store call logs in first.
        self.client = self._side_client("")

    def __repr__(self) -> str:
        return (
            f"VaultSession(addr={_safe_addr(self._settings.addr)!r}, "
            f"method={self._auth.method!r}, logged_in={self._info is not None})"
        )

    # -- what it is -------------------------------------------------------------------------

    @property
    def method(self) -> str:
        """``token``, ``approle`` or ``kubernetes``."""
        return self._auth.method

    @property
    def credential(self) -> str:
        """Where the token comes from, naming the variables (for error messages)."""
        if self._auth.method == "approle":
            return f"from the AppRole login with {self._auth.variables}"
        if self._auth.method == "kubernetes":
            return f"from the Kubernetes login with {self._auth.variables}"
        return self._auth.variables

    @property
    def token_info(self) -> TokenInfo | None:
        """The current token's description; None before the first login."""
        return self._info

    def store(self, *, mount: str = "secret", prefix: str = "encord") -> VaultStore:
        """A :class:`VaultStore` on this session's client that logs in on first use."""
        return VaultStore(self.client, mount=mount, prefix=prefix, session=self)

    def maintain_interval(self) -> float:
        """Seconds between :meth:`maintain` calls: 30, or a sixth of a shorter TTL (>= 1)."""
        ttl = self._issued_ttl
        if ttl <= 0:
            return MAINTAIN_EVERY
        return max(1.0, min(MAINTAIN_EVERY, ttl / 6))

    def close(self) -> None:
        """Close the client's connections (the token is left to expire by itself)."""
        self.client.adapter.close()

    # -- login ------------------------------------------------------------------------------

    def ensure(self) -> None:
        """Log in unless already logged in."""
        if self._info is not None:
            return
        with self._lock:
            if self._info is None:
                self.login()

    def login(self) -> TokenInfo:
        """Obtain a token by the configured method and make the client use it.

        Raises AccessDenied (naming the credential's variables) when Vault refuses it,
        StoreUnavailable (VAULT_ADDR) when Vault does not answer, ConfigError when a file
        cannot be read or the auth mount does not exist.
        """
        with self._lock:
            started = self._clock()
            if self._auth.method == "token":
                token = self._current_static_token()
                info, issued_ttl = self._lookup(token, started)
            else:
                answer = self._login_request()
                token, info = _auth_answer(answer, started, where=self._login_path)
                issued_ttl = info.ttl
            logs.register_secret(token)
            first = self._info is None
            self.client.token = token
            self._info = info
            self._issued_ttl = issued_ttl
            # Token auth's first "login" only looks up the token it was given: not news, and
            # one-shot commands keep stderr for their one result line.
            emit = log.debug if first and self._auth.method == "token" else log.info
            emit(
                "vault.logged_in",
                method=self._auth.method,
                ttl=round(info.ttl),
                renewable=info.renewable,
                policies=list(info.policies),
            )
            return info

    # -- upkeep -----------------------------------------------------------------------------

    def maintain(self) -> str:
        """Keep the token alive; call it periodically (see :meth:`maintain_interval`).

        Renews the token once less than a third of its TTL is left; logs in again when
        renewal is refused, when the token cannot be renewed, or when a renewal no longer
        buys much time (max TTL near). Tokens that never expire are left alone. With
        ``token`` auth a new token can only come from ``VAULT_TOKEN_FILE``; without one,
        ``vault.token_expiring`` is logged as an error. Never raises a RotatorError: failures
        are logged and retried on the next call. Returns what it did: ``idle``,
        ``renewed``, ``relogged`` or ``failed``.
        """
        with self._lock:
            if self._info is None:  # start-up never logged in: try now
                try:
                    self.login()
                except RotatorError as exc:
                    log.error(
                        "vault.relogin_failed",
                        reason="not_logged_in",
                        error_type=type(exc).__name__,
                        error=str(exc),
                    )
                    return "failed"
                return "relogged"
            info = self._info
            if info.expires_at is None:
                return "idle"
            left = info.expires_at - self._clock()
            if left > self._issued_ttl * RENEW_SHARE:
                return "idle"
            if left <= 0:
                return "relogged" if self._relogin("expired") else "failed"
            if not info.renewable:
                return "relogged" if self._relogin("not_renewable") else "failed"
            started = self._clock()
            outcome = self._renew(started)
            if outcome == "max_ttl":
                return "relogged" if self._relogin("max_ttl") else "failed"
            if isinstance(outcome, RotatorError):
                status = getattr(outcome, "status", None)
                log.warning(
                    "vault.renewal_failed",
                    error_type=type(outcome).__name__,
                    error=str(outcome),
                    status=status,
                )
                if isinstance(outcome, StoreUnavailable):
                    return "failed"  # Vault is away; the token may still be fine
                return "relogged" if self._relogin("renewal_refused") else "failed"
            assert isinstance(outcome, TokenInfo)
            if outcome.ttl < self._issued_ttl * RELOGIN_SHARE:
                self._info = outcome
                return "relogged" if self._relogin("max_ttl") else "failed"
            self._info = outcome
            log.info("vault.token_renewed", ttl=round(outcome.ttl))
            return "renewed"

    def recover(self, used: str | None) -> bool:
        """After Vault refused token ``used``: True if a new token is in place to retry with.

        If another thread already replaced ``used``, that is enough. Otherwise the token is
        looked up: if Vault still accepts it, the refusal was a policy decision and nothing
        changes (False). If Vault refuses it, the session logs in again.
        """
        with self._lock:
            if self.client.token != used:
                return True
            if not self._token_dead():
                return False
            return self._relogin("token_rejected") and self.client.token != used

    # -- internals --------------------------------------------------------------------------

    @property
    def _login_path(self) -> str:
        return f"auth/{self._auth.mount_point}/login"

    def _relogin(self, reason: str) -> bool:
        """Log in again; True if the login succeeded (the client holds its token)."""
        before = self.client.token
        if self._auth.method == "token":
            fresh = None
            if self._auth.token_file is not None:
                try:
                    fresh = self._current_static_token()
                except RotatorError as exc:
                    log.error("vault.relogin_failed", reason=reason, error=str(exc))
                    return False
            if fresh is None or fresh == before:
                left = None
                if self._info is not None and self._info.expires_at is not None:
                    left = round(max(0.0, self._info.expires_at - self._clock()), 1)
                log.error(
                    "vault.token_expiring",
                    reason=reason,
                    ttl_left=left,
                    hint=(
                        "the token from VAULT_TOKEN cannot be renewed or replaced: restart "
                        "with a new token, or use VAULT_TOKEN_FILE or AppRole"
                        if self._auth.token_file is None
                        else "VAULT_TOKEN_FILE still holds the same token"
                    ),
                )
                return False
        log.info("vault.relogin", method=self._auth.method, reason=reason)
        try:
            self.login()
        except RotatorError as exc:
            log.error(
                "vault.relogin_failed",
                reason=reason,
                error_type=type(exc).__name__,
                error=str(exc),
            )
            return False
        return True

    def _current_static_token(self) -> str:
        """Token auth: the token from VAULT_TOKEN_FILE (read now), else from the settings."""
        path = self._auth.token_file
        if path is None:
            return self._settings.token
        return _read_credential(path, "VAULT_TOKEN_FILE", "the token")

    @property
    def _timeout(self) -> float:
        return self._settings.timeout.total_seconds()

    def _side_client(self, token: str) -> hvac.Client:
        s = self._settings
        return _client(
            s.addr, token, cacert=s.cacert, namespace=s.namespace, timeout=self._timeout
        )

    def _lookup(self, token: str, started: float) -> tuple[TokenInfo, float]:
        """Describe ``token`` (token auth) with a side client, so a refused one is not adopted.

        Returns the description and the TTL the token was issued with: a looked-up token may
        be half-way through its life, and its issued TTL sets the renewal pace."""
        side = self._side_client(token)
        try:
            failure: RotatorError | None = None
            try:
                answer = side.auth.token.lookup_self()
            except (hvac.exceptions.VaultError, requests.exceptions.RequestException) as exc:
                failure = self._login_failure(exc, "auth/token/lookup-self")
            if failure is not None:
                _raise(failure)
        finally:
            side.adapter.close()
        data = _get(answer, "data", dict, where="token lookup")
        ttl = _number(data.get("ttl"))
        issued = _number(data.get("creation_ttl")) or ttl
        info = TokenInfo(
            accessor=str(data.get("accessor") or ""),
            policies=_policies(data.get("policies")),
            ttl=ttl,
            renewable=data.get("renewable") is True,
            expires_at=started + ttl if ttl > 0 else None,
        )
        return info, max(issued, ttl)

    def _login_request(self) -> Any:
        """POST the method's credentials to ``auth/{mount}/login`` with a token-less client."""
        auth = self._auth
        if auth.method == "approle":
            secret_id = auth.secret_id or ""
            if auth.secret_id_file is not None:
                secret_id = _read_credential(
                    auth.secret_id_file, "VAULT_SECRET_ID_FILE", "the secret ID"
                )
            logs.register_secret(secret_id)

            def call(c: hvac.Client) -> Any:
                return c.auth.approle.login(
                    auth.role_id, secret_id, use_token=False, mount_point=auth.mount_point
                )
        else:
            jwt = _read_credential(auth.jwt_file, "VAULT_K8S_JWT_FILE", "the JWT")
            logs.register_secret(jwt)

            def call(c: hvac.Client) -> Any:
                return c.auth.kubernetes.login(
                    auth.k8s_role, jwt, use_token=False, mount_point=auth.mount_point
                )

        side = self._side_client("")
        try:
            failure: RotatorError | None = None
            try:
                return call(side)
            except (hvac.exceptions.VaultError, requests.exceptions.RequestException) as exc:
                failure = self._login_failure(exc, self._login_path)
            _raise(failure)
        finally:
            side.adapter.close()

    def _login_failure(self, exc: Exception, path: str) -> RotatorError:
        """A login (or token lookup) failure as one line naming the variables to check."""
        auth = self._auth
        if isinstance(exc, (*_UNAVAILABLE, requests.exceptions.RequestException)):
            return StoreUnavailable(
                f"Vault at VAULT_ADDR did not answer: {type(exc).__name__} "
                f"(on {path}; VAULT_ADDR={_safe_addr(self._settings.addr)})"
            )
        mount_var = "VAULT_APPROLE_MOUNT" if auth.method == "approle" else "VAULT_K8S_MOUNT"
        if isinstance(exc, hvac.exceptions.InvalidPath):
            # Vault answers 403, not 404, for a login on a mount that does not exist, and
            # every Vault has auth/token: a 404 here means VAULT_ADDR is something else.
            hint = "" if auth.method == "token" else f", and {mount_var} names its mount"
            return ConfigError(
                f"VAULT_ADDR: {_safe_addr(self._settings.addr)} answered 404 to {path}; "
                f"check that it is a Vault server{hint}"
            )
        refused = (
            hvac.exceptions.Forbidden,
            hvac.exceptions.Unauthorized,
            hvac.exceptions.InvalidRequest,
        )
        if isinstance(exc, refused):
            status = (
                403 if isinstance(exc, hvac.exceptions.Forbidden)
                else 401 if isinstance(exc, hvac.exceptions.Unauthorized)
                else 400
            )
            if auth.method == "token":
                return AccessDenied(
                    f"Vault refused the token ({auth.variables}) for look up {path}",
                    status=status,
                )
            method = "AppRole" if auth.method == "approle" else "Kubernetes"
            role = f" for role {auth.k8s_role!r}" if auth.method == "kubernetes" else ""
            return AccessDenied(
                f"Vault refused the {method} login at {path}{role} ({status}): check "
                f"{auth.variables} (and {mount_var}, if the method is mounted elsewhere)",
                status=status,
            )
        return CorruptState(f"Vault answered {type(exc).__name__} to {path}")

    def _renew(self, started: float) -> TokenInfo | RotatorError | Literal["max_ttl"]:
        """Renew the current token: its new description, the translated failure, or
        ``"max_ttl"`` when Vault says the token is past its max TTL (OpenBao answers that
        with a 500 "past the max TTL, cannot renew", which is not an outage)."""
        failure: RotatorError | None = None
        past_max = False
        try:
            answer = self.client.auth.token.renew_self()
        except (hvac.exceptions.VaultError, requests.exceptions.RequestException) as exc:
            past_max = isinstance(exc, hvac.exceptions.VaultError) and any(
                "max ttl" in e.lower() for e in _errors(exc)
            )
            failure = self._login_failure(exc, "auth/token/renew-self")
        if past_max:
            return "max_ttl"
        if failure is not None:
            return failure
        try:
            _, info = _auth_answer(answer, started, where="auth/token/renew-self")
        except CorruptState as exc:
            return exc
        return info

    def _token_dead(self) -> bool:
        """True if Vault refuses the current token itself (lookup-self 401/403)."""
        try:
            self.client.auth.token.lookup_self()
        except (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized):
            return True
        except (hvac.exceptions.VaultError, requests.exceptions.RequestException):
            return False  # Vault is away or odd: leave the first error standing
        return False


def _read_credential(path: str, variable: str, what: str) -> str:
    """A credential file's stripped text; ConfigError naming ``variable`` (never the text)."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read().strip()
    except (OSError, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(
            f"{variable}: cannot read file {path[:200]!r}: {reason or 'unreadable'}"
        ) from None
    if not text:
        raise ConfigError(f"{variable}: {what} in {path[:200]!r} is empty")
    if any(ch.isspace() or not ch.isprintable() for ch in text):
        raise ConfigError(
            f"{variable}: {what} in {path[:200]!r} contains whitespace or control characters"
        )
    return text


def _auth_answer(answer: Any, started: float, *, where: str) -> tuple[str, TokenInfo]:
    """The token and its description from a login or renewal answer (``auth`` block)."""
    auth = _get(answer, "auth", dict, where=where)
    token = _get(auth, "client_token", str, where=where)
    if not token:
        raise CorruptState(f"Vault answered an empty client_token to {where}")
    ttl = _number(auth.get("lease_duration"))
    return token, TokenInfo(
        accessor=str(auth.get("accessor") or ""),
        policies=_policies(auth.get("policies")),
        ttl=ttl,
        renewable=auth.get("renewable") is True,
        expires_at=started + ttl if ttl > 0 else None,
    )


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return 0.0
    return float(value)


def _policies(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(p for p in value if isinstance(p, str))


def _raise(failure: RotatorError) -> NoReturn:
    # Raised outside any ``except`` block: no __context__ pointing at hvac/requests objects.
    raise failure


def _errors(exc: hvac.exceptions.VaultError) -> list[str]:
    errors = getattr(exc, "errors", None)
    return [e for e in errors if isinstance(e, str)] if isinstance(errors, list) else []


def _no_route(exc: hvac.exceptions.VaultError) -> bool:
    return any("no handler for route" in e for e in _errors(exc))


def _destroyed_version(exc: hvac.exceptions.InvalidPath) -> Any:
    """The 404 body of a destroyed version (it still names the version), else None.

    hvac hands back soft-deleted versions itself but raises for destroyed ones.
    """
    body = exc.json
    if isinstance(body, dict) and isinstance(body.get("data"), dict):
        meta = body["data"].get("metadata")
        if isinstance(meta, dict) and meta.get("destroyed") is True:
            return {"data": {"data": None, "metadata": meta}}
    return None


def _get(container: Any, key: str, kind: type[T], *, where: str) -> T:
    """``container[key]`` checked to be a ``kind``; CorruptState otherwise."""
    if not isinstance(container, dict):
        raise CorruptState(f"Vault answered an unexpected shape for {where}")
    value = container.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise CorruptState(f"Vault answered no valid {key!r} for {where}")
    return value


def _clean_path(text: str, *, what: str, allow_empty: bool) -> str:
    """Validate a ``/``-separated path: no empty, ``.`` or ``..`` segments."""
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a str")
    if text == "":
        if allow_empty:
            return ""
        raise ValueError(f"{what} must not be empty")
    for segment in text.split("/"):
        if segment in ("", ".", ".."):
            raise ValueError(f"{what} {text!r}: empty, '.' or '..' segments are not allowed")
        if not segment.isprintable():
            raise ValueError(f"{what} {text!r}: control characters are not allowed")
    return text


def _safe_addr(addr: str) -> str:
    """``scheme://host:port`` of ``addr``, without any user:password@, path or query."""
    try:
        parts = urlsplit(addr)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparseable>"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}" if parts.scheme else "<no scheme>"
