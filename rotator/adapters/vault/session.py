"""The Vault session: the hvac client and its token, kept alive (login, renewal, login again).

How a token is obtained is the login method's business (:mod:`rotator.adapters.vault.auth`);
the session owns the upkeep: it logs in, renews the token before its TTL runs out
(:meth:`VaultSession.maintain`, run periodically by the daemon), and logs in again when
renewal is refused or the token reaches its max TTL. A :class:`VaultStore` made by
:meth:`VaultSession.store` logs in on first use and, when Vault refuses a token that has
died (expired or revoked), logs in again and retries that one call once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Literal

import hvac
import structlog

from rotator.adapters.vault.answers import TokenInfo, auth_answer
from rotator.adapters.vault.client import make_client, validate
from rotator.adapters.vault.errors import (
    LIBRARY_ERRORS,
    Failure,
    classify,
    login_failure,
    past_max_ttl,
    raise_outside,
    safe_addr,
)
from rotator.adapters.vault.settings import VaultSettings
from rotator.adapters.vault.store import VaultStore
from rotator.core import redaction as logs
from rotator.core.errors import CorruptState, RotatorError, StoreUnavailable

log = structlog.get_logger("rotator.vault")

RENEW_SHARE = 1 / 3
"""Renew once less than this share of the token's TTL is left."""
RELOGIN_SHARE = 1 / 2
"""A renewal that grants less than this share of the TTL the token was issued with means the
token is near its max TTL: log in again rather than renew ever shorter stubs."""
MAINTAIN_EVERY = 30.0
"""How often the daemon should call maintain() at most, in seconds."""


class VaultSession:
    """The hvac client and its token: login, renewal, and login again. Thread-safe.

    ``settings.auth`` (``ROTATOR_VAULT_AUTH``) decides how a token is obtained; see
    :mod:`rotator.adapters.vault.auth`. Logins go through a separate, token-less client, so
    the old token is never sent along and a refused login leaves the working token in
    place. Every token is registered with the log redactor. Nothing touches the network
    until :meth:`login`, :meth:`ensure` or a store call. ``clock`` is injectable for tests.
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
        validate(settings.addr, settings.token if self._auth.static else None, self._timeout)
        # No token until login() has checked one: a store call logs in first.
        self.client = self._side_client("")

    def __repr__(self) -> str:
        return (
            f"VaultSession(addr={safe_addr(self._settings.addr)!r}, "
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
        return self._auth.credential

    @property
    def token_info(self) -> TokenInfo | None:
        """The current token's description; None before the first login."""
        return self._info

    @property
    def given_token(self) -> str:
        """The token from the settings (token auth); '' with the other methods."""
        return self._settings.token

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
            token, info, issued_ttl = self._auth.login(self, self._clock())
            logs.register_secret(token)
            first = self._info is None
            self.client.token = token
            self._info = info
            self._issued_ttl = issued_ttl
            # One-shot commands keep stderr for their one result line.
            emit = log.debug if first and self._auth.quiet_first_login else log.info
            emit(
                "vault.logged_in",
                method=self._auth.method,
                ttl=round(info.ttl),
                renewable=info.renewable,
                policies=list(info.policies),
            )
            return info

    def call(self, path: str, fn: Callable[[Any], Any], *, token: str = "") -> Any:
        """``fn(client)`` on a side client holding ``token`` (the login methods' door), its
        failure translated into one line naming what to check."""
        side = self._side_client(token)
        try:
            failure: RotatorError | None = None
            try:
                return fn(side)
            except LIBRARY_ERRORS as exc:
                failure = self._login_failure(exc, path)
            raise_outside(failure)
        finally:
            side.adapter.close()

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
                return self._first_login()
            info = self._info
            if info.expires_at is None:
                return "idle"
            left = info.expires_at - self._clock()
            if left > self._issued_ttl * RENEW_SHARE:
                return "idle"
            if left <= 0:
                return self._relogin("expired")
            if not info.renewable:
                return self._relogin("not_renewable")
            return self._renew_or_relogin()

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
            return self._relogin("token_rejected") == "relogged" and self.client.token != used

    # -- internals --------------------------------------------------------------------------

    def _first_login(self) -> str:
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

    def _renew_or_relogin(self) -> str:
        outcome = self._renew(self._clock())
        if outcome == "max_ttl":
            return self._relogin("max_ttl")
        if isinstance(outcome, RotatorError):
            log.warning(
                "vault.renewal_failed",
                error_type=type(outcome).__name__,
                error=str(outcome),
                status=getattr(outcome, "status", None),
            )
            if isinstance(outcome, StoreUnavailable):
                return "failed"  # Vault is away; the token may still be fine
            return self._relogin("renewal_refused")
        self._info = outcome
        if outcome.ttl < self._issued_ttl * RELOGIN_SHARE:
            return self._relogin("max_ttl")
        log.info("vault.token_renewed", ttl=round(outcome.ttl))
        return "renewed"

    def _relogin(self, reason: str) -> str:
        """Log in again: ``relogged`` if the client now holds a new token, else ``failed``."""
        try:
            hint = self._auth.stuck(self.client.token)
        except RotatorError as exc:
            log.error("vault.relogin_failed", reason=reason, error=str(exc))
            return "failed"
        if hint is not None:
            left = None
            if self._info is not None and self._info.expires_at is not None:
                left = round(max(0.0, self._info.expires_at - self._clock()), 1)
            log.error("vault.token_expiring", reason=reason, ttl_left=left, hint=hint)
            return "failed"
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
            return "failed"
        return "relogged"

    @property
    def _timeout(self) -> float:
        return self._settings.timeout.total_seconds()

    def _side_client(self, token: str) -> hvac.Client:
        s = self._settings
        return make_client(
            s.addr, token, cacert=s.cacert, namespace=s.namespace, timeout=self._timeout
        )

    def _login_failure(self, exc: BaseException, path: str) -> RotatorError:
        return login_failure(
            exc,
            path=path,
            addr=self._settings.addr,
            refused=self._auth.refused,
            mount_hint=self._auth.mount_hint,
        )

    def _renew(self, started: float) -> TokenInfo | RotatorError | Literal["max_ttl"]:
        """Renew the current token: its new description, the translated failure, or
        ``"max_ttl"`` when Vault says the token is past its max TTL (OpenBao answers that
        with a 500 "past the max TTL, cannot renew", which is not an outage)."""
        failure: RotatorError | None = None
        try:
            answer = self.client.auth.token.renew_self()
        except LIBRARY_ERRORS as exc:
            if past_max_ttl(exc):
                return "max_ttl"
            failure = self._login_failure(exc, "auth/token/renew-self")
        if failure is not None:
            return failure
        try:
            _, info = auth_answer(answer, started, where="auth/token/renew-self")
        except CorruptState as exc:
            return exc
        return info

    def _token_dead(self) -> bool:
        """True if Vault refuses the current token itself (lookup-self 401/403)."""
        try:
            self.client.auth.token.lookup_self()
        except LIBRARY_ERRORS as exc:
            # Vault away or odd: leave the first error standing.
            return classify(exc) is Failure.DENIED
        return False
