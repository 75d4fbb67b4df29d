"""hvac and requests failures translated into rotator's errors: one table, one place.

:func:`classify` reads a library exception into a :class:`Failure` (the table below);
:func:`store_failure` and :func:`login_failure` turn that into the rotator error a store call
or a login raises, and :func:`did_not_answer` builds the one "Vault did not answer" message.

    a redirect (never followed)              -> REDIRECTED  -> ConfigError (VAULT_ADDR)
    an answer over the size cap              -> TOO_LARGE   -> ProtocolError (VAULT_ADDR)
    requests: cannot connect, timeout, any   -> UNAVAILABLE -> StoreUnavailable (VAULT_ADDR)
      (the total deadline passed, too)
    VaultDown, 5xx, 429, not initialised     -> UNAVAILABLE
    403 Forbidden / 401 Unauthorized         -> DENIED      -> AccessDenied (the credential)
    400 "check-and-set parameter ..."        -> CONFLICT    -> StoreConflict
    400 otherwise                            -> BAD_REQUEST -> CorruptState (store) /
                                                              AccessDenied (login)
    404 "no handler for route"               -> NO_ROUTE    -> ConfigError (ROTATOR_VAULT_MOUNT)
    404 otherwise                            -> NOT_FOUND   -> the caller decides
    anything else                            -> OTHER       -> CorruptState

Messages are one line and never hold a token, secret data or a response body. Callers raise
the result with :func:`raise_outside` *after* leaving their ``except`` block, so the rotator
error carries no ``__context__`` pointing at hvac's exception (which keeps the response) or
requests' (which keeps the request and its ``X-Vault-Token`` header).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, NoReturn
from urllib.parse import urlsplit

import hvac.exceptions
import requests

from rotator.core.errors import (
    AccessDenied,
    ConfigError,
    CorruptState,
    ProtocolError,
    RotatorError,
    StoreConflict,
    StoreUnavailable,
)


class Redirected(requests.exceptions.RequestException):
    """Vault's address answered a redirect, which rotator never follows: ``requests`` would
    strip only ``Authorization`` on the way to another host, not ``X-Vault-Token``."""


def refuse_redirects(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    """A ``requests`` response hook: a 3xx answer raises :class:`Redirected`."""
    if response.is_redirect or 300 <= response.status_code < 400:
        raise Redirected(f"HTTP {response.status_code}")


class DeadlinePassed(requests.exceptions.Timeout):
    """A request's total deadline passed before its answer was complete
    (:mod:`rotator.adapters.vault.transport`); the message says how long it had."""


class AnswerTooLarge(requests.exceptions.RequestException):
    """An answer's body passed the size cap; reading stopped there, the connection dropped."""


LIBRARY_ERRORS: tuple[type[Exception], ...] = (
    hvac.exceptions.VaultError,
    requests.exceptions.RequestException,
)
"""Everything an hvac call may raise that :func:`classify` knows how to read."""


class Failure(enum.Enum):
    """What a library exception means for rotator."""

    UNAVAILABLE = "unavailable"
    REDIRECTED = "redirected"
    TOO_LARGE = "too_large"
    DENIED = "denied"
    CONFLICT = "conflict"
    BAD_REQUEST = "bad_request"
    NO_ROUTE = "no_route"
    NOT_FOUND = "not_found"
    OTHER = "other"


_TABLE: tuple[tuple[tuple[type[BaseException], ...], Failure], ...] = (
    ((Redirected,), Failure.REDIRECTED),
    ((AnswerTooLarge,), Failure.TOO_LARGE),
    (
        (
            hvac.exceptions.VaultDown,
            hvac.exceptions.InternalServerError,
            hvac.exceptions.BadGateway,
            hvac.exceptions.VaultNotInitialized,
            hvac.exceptions.RateLimitExceeded,
            hvac.exceptions.UnexpectedError,
            requests.exceptions.RequestException,
        ),
        Failure.UNAVAILABLE,
    ),
    ((hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized), Failure.DENIED),
    ((hvac.exceptions.InvalidRequest,), Failure.BAD_REQUEST),
    ((hvac.exceptions.InvalidPath,), Failure.NOT_FOUND),
)


def classify(exc: BaseException) -> Failure:
    """The :class:`Failure` an hvac or requests exception stands for (see the table)."""
    for kinds, failure in _TABLE:
        if isinstance(exc, kinds):
            if failure is Failure.BAD_REQUEST and any("check-and-set" in e for e in messages(exc)):
                return Failure.CONFLICT
            if failure is Failure.NOT_FOUND and any(
                "no handler for route" in e for e in messages(exc)
            ):
                return Failure.NO_ROUTE
            return failure
    return Failure.OTHER


def status_of(exc: BaseException) -> int:
    """The HTTP status a refusal stands for: 403, 401, or 400 (a refused login)."""
    if isinstance(exc, hvac.exceptions.Forbidden):
        return 403
    if isinstance(exc, hvac.exceptions.Unauthorized):
        return 401
    return 400


def messages(exc: BaseException) -> list[str]:
    """The ``errors`` strings Vault sent with ``exc`` (none for a requests exception)."""
    errors = getattr(exc, "errors", None)
    return [e for e in errors if isinstance(e, str)] if isinstance(errors, list) else []


def past_max_ttl(exc: BaseException) -> bool:
    """Vault refused a renewal because the token is past its max TTL (OpenBao: a 500)."""
    return isinstance(exc, hvac.exceptions.VaultError) and any(
        "max ttl" in e.lower() for e in messages(exc)
    )


def did_not_answer(exc: BaseException, on: str, addr: str) -> StoreUnavailable:
    """The one "Vault did not answer" error: names VAULT_ADDR (without credentials)."""
    why = str(exc) if isinstance(exc, DeadlinePassed) else type(exc).__name__
    return StoreUnavailable(
        f"Vault at VAULT_ADDR did not answer: {why} (on {on}; VAULT_ADDR={safe_addr(addr)})"
    )


def too_large(exc: BaseException, on: str, addr: str) -> ProtocolError:
    """The one "Vault answered too much" error: names VAULT_ADDR (without credentials)."""
    return ProtocolError(
        f"Vault at VAULT_ADDR answered {exc} to {on}, far more than Vault answers; reading "
        f"stopped there: check that VAULT_ADDR is Vault (VAULT_ADDR={safe_addr(addr)})"
    )


def redirected(exc: BaseException, on: str, addr: str) -> ConfigError:
    """The one "Vault redirected" error: names VAULT_ADDR (without credentials)."""
    return ConfigError(
        f"VAULT_ADDR: {safe_addr(addr)} answered a redirect ({exc}) to {on}; rotator never "
        "follows one with its token: set VAULT_ADDR to the address Vault answers on"
    )


def store_failure(
    exc: BaseException, *, op: str, mount: str, path: str, addr: str, who: str
) -> RotatorError:
    """A failed KV call (``op`` on ``{mount}/{path}``) as rotator's error; ``who`` names the
    token's variables. A 404 is the caller's to read first (it may mean "absent")."""
    failure = classify(exc)
    where = f"{mount}/{path}"
    if failure is Failure.REDIRECTED:
        return redirected(exc, f"{op} {where}", addr)
    if failure is Failure.TOO_LARGE:
        return too_large(exc, f"{op} {where}", addr)
    if failure is Failure.UNAVAILABLE:
        return did_not_answer(exc, f"{op} {where}", addr)
    if failure is Failure.DENIED:
        return AccessDenied(
            f"Vault refused the token ({who}) for {op} {where}", status=status_of(exc)
        )
    if failure is Failure.CONFLICT:
        return StoreConflict(f"Vault check-and-set failed for {op} {where}: version moved on")
    if failure is Failure.BAD_REQUEST:
        return CorruptState(f"Vault rejected {op} {where} as a bad request (400)")
    if failure is Failure.NO_ROUTE:
        return ConfigError(
            f"ROTATOR_VAULT_MOUNT: {mount!r} is not a KV version 2 mount "
            f"(Vault has no route for {op} {where})"
        )
    if failure is Failure.NOT_FOUND:
        return CorruptState(f"Vault answered 404 to {op} {where}")
    return CorruptState(f"Vault answered {type(exc).__name__} to {op} {where}")


def login_failure(
    exc: BaseException,
    *,
    path: str,
    addr: str,
    refused: Callable[[str, int], AccessDenied],
    mount_hint: str,
) -> RotatorError:
    """A failed login (or token lookup or renewal) at ``path`` as one line naming what to
    check: ``refused(path, status)`` is the login method's own refusal, ``mount_hint`` its
    hint when ``path`` does not exist."""
    failure = classify(exc)
    if failure is Failure.REDIRECTED:
        return redirected(exc, path, addr)
    if failure is Failure.TOO_LARGE:
        return too_large(exc, path, addr)
    if failure is Failure.UNAVAILABLE:
        return did_not_answer(exc, path, addr)
    if failure in (Failure.NOT_FOUND, Failure.NO_ROUTE):
        # Vault answers 403, not 404, for a login on a mount that does not exist, and
        # every Vault has auth/token: a 404 here means VAULT_ADDR is something else.
        return ConfigError(
            f"VAULT_ADDR: {safe_addr(addr)} answered 404 to {path}; "
            f"check that it is a Vault server{mount_hint}"
        )
    if failure in (Failure.DENIED, Failure.CONFLICT, Failure.BAD_REQUEST):
        return refused(path, status_of(exc))
    return CorruptState(f"Vault answered {type(exc).__name__} to {path}")


def destroyed_version(exc: BaseException) -> Any:
    """The 404 body of a destroyed version (it still names the version), else None.

    hvac hands back soft-deleted versions itself but raises for destroyed ones.
    """
    body = getattr(exc, "json", None)
    if isinstance(body, dict) and isinstance(body.get("data"), dict):
        meta = body["data"].get("metadata")
        if isinstance(meta, dict) and meta.get("destroyed") is True:
            return {"data": {"data": None, "metadata": meta}}
    return None


def raise_outside(failure: RotatorError) -> NoReturn:
    """Raise ``failure``; called outside any ``except`` block, so it has no __context__."""
    raise failure


def safe_addr(addr: str) -> str:
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
