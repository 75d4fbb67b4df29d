"""Configuration: :func:`from_env` builds the frozen :class:`Settings` from the environment.

This package is the only code that reads the environment, and it does so only when
:func:`from_env` is called (from ``main()``), never at import time. What it reads is the
variable table (:mod:`rotator.runtime.config.table`); values are parsed by
:mod:`~rotator.runtime.config.parsers`; :class:`Settings` is in
:mod:`~rotator.runtime.config.settings` and :class:`VaultSettings` with the Vault adapter.

Every problem found is collected and reported together in one
:class:`~rotator.core.errors.ConfigError`, one line per problem, each line naming the variable::

    ROTATOR_KEY_TTL: expected a duration like '90d' or '1h30m', got 'soon'

A variable set to an empty (or all-blank) value counts as unset. The Vault token, the
AppRole role and secret IDs never appear in an error, a ``repr`` or :func:`settings_summary`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from rotator.adapters.vault.auth import (
    AUTH_METHODS,
    K8S_JWT_FILE,
    LOGINS,
    AuthMethod,
    VaultAuth,
)
from rotator.adapters.vault.env import MAX_SHOWN
from rotator.adapters.vault.settings import VaultSettings
from rotator.core.errors import ConfigError
from rotator.core.vocab import CREDENTIALS
from rotator.runtime.config.parsers import format_duration, parse_duration, read_text
from rotator.runtime.config.settings import (
    LOG_FORMATS,
    LOG_LEVELS,
    REGISTRARS,
    LogFormat,
    LogLevel,
    Registrar,
    Settings,
    default_lease_ttl,
)
from rotator.runtime.config.table import VARIABLES, VAULT_AUTH, broken_relations, env_help

__all__ = [
    "AUTH_METHODS",
    "K8S_JWT_FILE",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "REGISTRARS",
    "AuthMethod",
    "LogFormat",
    "LogLevel",
    "Registrar",
    "Settings",
    "VaultAuth",
    "VaultSettings",
    "default_lease_ttl",
    "env_help",
    "format_duration",
    "from_env",
    "parse_duration",
    "settings_summary",
]

_T = TypeVar("_T")


def settings_summary(s: Settings) -> dict[str, object]:
    """The effective settings as a JSON-safe dict, without the Vault token (for a log line)."""
    return {
        "vault": {
            "addr": s.vault.addr,
            "cacert": s.vault.cacert,
            "namespace": s.vault.namespace,
            "timeout": format_duration(s.vault.timeout),
            "mount": s.vault.mount,
            "prefix": s.vault.prefix,
        },
        "vault_auth": s.vault.auth.summary(),
        "encord_domain": s.encord_domain,
        "accounts": [
            {"name": a.name, "hash": a.hash, "domain": s.domain_of(a)} for a in s.accounts
        ],
        "instance": s.instance,
        "credentials": [c for c in CREDENTIALS if c in s.credentials],
        "key_ttl": format_duration(s.key_ttl),
        "rotate_before": format_duration(s.rotate_before),
        "grace": format_duration(s.grace),
        "key_cap": s.key_cap,
        "bearer_ttl": format_duration(s.bearer_ttl),
        "check_interval": format_duration(s.check_interval),
        "jitter": format_duration(s.jitter),
        "rotation_window": None if s.rotation_window is None else str(s.rotation_window),
        "log_format": s.log_format,
        "log_level": s.log_level,
        "dry_run": s.dry_run,
        "http_addr": s.http_addr,
        "lease_ttl": format_duration(s.lease_ttl),
        "max_concurrency": s.max_concurrency,
        "registrar": s.registrar,
        "allow_insecure_http": s.allow_insecure_http,
        "notify": s.notify_url.shown if s.notify_url else None,
    }


# --------------------------------------------------------------------------------------
# Reading the environment
# --------------------------------------------------------------------------------------


class _Reader:
    """Reads variables, collecting every problem instead of stopping at the first.

    Implements :class:`rotator.adapters.vault.env.EnvReader` for the login methods.
    """

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[str] = []
        self.secrets: list[str] = []
        """Vault credential texts (token, role and secret IDs) seen so far: a value holding
        one is never echoed."""

    def raw(self, name: str) -> str | None:
        value = self.environ.get(name)
        if value is None or not value.strip():
            return None
        return value

    def problem(self, name: str, message: str) -> None:
        self.problems.append(f"{name}: {message}")

    def parsed(self, name: str, default: _T, parse: Callable[[str], _T]) -> _T | None:
        """``parse`` the variable (or return ``default``); on ValueError record it, None."""
        value = self.raw(name)
        if value is None:
            return default
        try:
            return parse(value)
        except ValueError as exc:
            if any(secret and secret in value for secret in self.secrets):
                self.problem(name, "invalid value (not shown: it holds a Vault credential)")
            else:
                self.problem(name, str(exc))
            return None

    def remember(self, text: str) -> None:
        """Note ``text`` and, should it hold whitespace, its long pieces, as credentials."""
        self.secrets.append(text.strip())
        self.secrets.extend(piece for piece in text.split() if len(piece) >= 8)

    def secret(self, name: str, *, what: str, required: str) -> tuple[str | None, str | None]:
        """A credential from ``name`` or ``name_FILE`` (exactly one), and the file it came from.

        Its value is never echoed, and every candidate text is remembered so it can be
        scrubbed from errors. ``what`` names it in messages ("the token"); ``required`` is the
        message when neither variable is set. ``(None, None)`` after recording a problem.
        """
        file_name = f"{name}_FILE"
        direct = self.raw(name)
        path = self.raw(file_name)
        if direct is not None:
            self.remember(direct)
        if direct is not None and path is not None:
            self.problem(name, f"set only one of {name} and {file_name}")
            return None, None
        if direct is None and path is None:
            self.problem(name, required)
            return None, None
        shown = name
        if path is not None:
            shown = file_name
            path = path.strip()
            try:
                direct = read_text(path)
            except ValueError as exc:
                self.problem(file_name, str(exc))
                return None, None
        assert direct is not None  # noqa: S101 - narrowed above: exactly one source is set
        value = direct.strip()
        self.remember(value)
        if not value:
            self.problem(shown, f"{what} is empty")
            return None, None
        if any(ch.isspace() or not ch.isprintable() for ch in value):
            self.problem(shown, f"{what} contains whitespace or control characters")
            return None, None
        return value, path

    def scrubbed(self) -> list[str]:
        """The problems, with every remembered credential masked (belt and braces: a token
        pasted into the wrong variable is echoed nowhere, even cut short)."""
        problems = self.problems
        for text in sorted(filter(None, self.secrets), key=len, reverse=True):
            problems = [_scrub(p, text) for p in problems]
        return problems


def _scrub(message: str, secret: str) -> str:
    """``message`` with ``secret`` (or the start of it that show() may have kept) masked."""
    message = message.replace(secret, "[redacted]")
    head = secret[:MAX_SHOWN]
    if len(head) >= 8:
        message = message.replace(head, "[redacted]")
    return message


def _vault_auth(r: _Reader) -> tuple[str, VaultAuth] | None:
    """``(token, auth)`` from ROTATOR_VAULT_AUTH and its method's variables, or None after
    recording a problem. Credential texts are remembered first, so no later message (of
    this function or any other) can echo one."""
    for var in VARIABLES:
        raw = r.raw(var.name) if var.secret else None
        if raw is not None:
            r.remember(raw)
    assert VAULT_AUTH.parse is not None  # noqa: S101 - the table gives it one
    method = r.parsed(VAULT_AUTH.name, "token", VAULT_AUTH.parse)
    if method is None:
        return None
    return LOGINS[method].from_env(r)


def from_env(environ: Mapping[str, str]) -> Settings:
    """Build :class:`Settings` from ``environ`` (normally ``os.environ``).

    Raises one :class:`ConfigError` listing every problem found; the Vault token and the
    AppRole IDs never appear in it.
    """
    r = _Reader(environ)
    auth = _vault_auth(r)  # first, so r.secrets guards every later message
    values: dict[str, Any] = {}
    for var in VARIABLES:
        if var.field is None or var.parse is None:
            continue  # read by its login method
        before = len(r.problems)
        value = r.parsed(var.name, var.default, var.parse)
        if var.required is not None and r.raw(var.name) is None:
            r.problem(var.name, var.required)
        if len(r.problems) == before:
            values[var.field] = value
    for name, problem in broken_relations(values):
        r.problem(name, problem)
    if r.problems:
        raise ConfigError(r.scrubbed())
    assert auth is not None  # noqa: S101 - no problem was recorded
    return _settings(values, *auth)


def _settings(values: dict[str, Any], token: str, auth: VaultAuth) -> Settings:
    """Settings from parsed values keyed by field (``vault.<field>``, ``http``)."""
    vault = {
        k.removeprefix("vault."): values.pop(k) for k in list(values) if k.startswith("vault.")
    }
    host, port = values.pop("http")
    # lease_ttl is timedelta(0) when unset: Settings derives it.
    return Settings(
        vault=VaultSettings(token=token, auth=auth, **vault),
        http_host=host,
        http_port=port,
        **values,
    )
