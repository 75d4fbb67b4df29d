"""The variables rotator reads, described once: name, group, parser, default, help.

:func:`~rotator.runtime.config.from_env` reads them in :data:`VARIABLES` order, ``rotator
--help`` lists them (:func:`env_help`), and a test holds docs/configuration.md's table to
them. A default is written once, on the :class:`Settings` or :class:`VaultSettings` field a
variable fills; the table only says how to show it when a value cannot (``system CAs``).
The login methods' variables come from their classes (:data:`LOGINS`). The relations between
variables are the :data:`RELATIONS` below, checked together once every value has parsed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from rotator.adapters.notify import parse_notify_url
from rotator.adapters.vault.auth import AUTH_METHODS, LOGINS
from rotator.adapters.vault.settings import VaultSettings
from rotator.core.vocab import CREDENTIALS, KEY_KINDS
from rotator.core.window import parse_window
from rotator.runtime.config.parsers import (
    duration,
    format_duration,
    is_insecure_remote,
    one_of,
    parse_accounts,
    parse_bool,
    parse_credentials,
    parse_http_addr,
    parse_instance,
    parse_kv_path,
    parse_namespace,
    parse_url,
    readable_file,
    whole_number,
)
from rotator.runtime.config.settings import LOG_FORMATS, LOG_LEVELS, REGISTRARS, Settings

Group = Literal["vault", "encord", "rotation", "schedule", "ops"]
GROUPS: tuple[Group, ...] = ("vault", "encord", "rotation", "schedule", "ops")


@dataclass(frozen=True, slots=True)
class Variable:
    """One environment variable."""

    name: str
    group: Group
    help: str
    """One line for ``rotator --help``."""
    field: str | None = None
    """The field it fills: a :class:`Settings` field, ``vault.<field>`` for
    :class:`VaultSettings`, ``http`` for the host and port. None: read by its login method."""
    parse: Callable[[str], Any] | None = None
    required: str | None = None
    """The problem reported when it is unset; None: it has a default."""
    shown: str | None = None
    """The default as text, where the field's default does not say it (``system CAs``)."""
    secret: bool = False
    """It holds a credential: a value holding its text is never echoed."""

    @property
    def default(self) -> Any:
        """The value used when the variable is unset (the field's default)."""
        if self.field is None:
            return None
        if self.field == "http":
            return (_field_default(Settings, "http_host"), _field_default(Settings, "http_port"))
        if self.field.startswith("vault."):
            return _field_default(VaultSettings, self.field.removeprefix("vault."))
        return _field_default(Settings, self.field)

    @property
    def default_text(self) -> str:
        """The default as ``rotator run --help`` and docs/configuration.md show it."""
        if self.shown is not None:
            return self.shown
        if self.required is not None:
            return "— (required)"
        return f"`{_text(self.default)}`"


def _field_default(cls: type, name: str) -> Any:
    (found,) = (f for f in dataclasses.fields(cls) if f.name == name)
    return found.default


def _text(value: Any) -> str:
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, frozenset):
        return ",".join(c for c in CREDENTIALS if c in value)
    if isinstance(value, tuple):
        return f"{value[0]}:{value[1]}"
    return str(value)


def _login_variables() -> tuple[Variable, ...]:
    return tuple(
        Variable(env.name, "vault", env.meaning, shown=env.default, secret=env.secret)
        for login in LOGINS.values()
        for env in login.VARIABLES
    )


VAULT_AUTH = Variable(
    "ROTATOR_VAULT_AUTH", "vault", "how to get a Vault token: token, approle or kubernetes",
    parse=one_of(AUTH_METHODS), shown="`token`",
)

VARIABLES: tuple[Variable, ...] = (
    VAULT_AUTH,
    *_login_variables(),
    Variable("VAULT_ADDR", "vault", "Vault address, e.g. https://vault:8200",
             "vault.addr", parse_url, required="required, e.g. 'https://vault.example.com:8200'"),
    Variable("VAULT_CACERT", "vault", "CA bundle to verify Vault's TLS certificate",
             "vault.cacert", readable_file, shown="system CAs"),
    Variable("VAULT_NAMESPACE", "vault", "Vault Enterprise / OpenBao namespace",
             "vault.namespace", parse_namespace, shown="root"),
    Variable("VAULT_CLIENT_TIMEOUT", "vault",
             "longest wait to connect to Vault or for its next bytes; a whole request gets "
             "twice this",
             "vault.timeout", duration()),
    Variable("ROTATOR_VAULT_MOUNT", "vault", "the KV v2 mount", "vault.mount", parse_kv_path),
    Variable("ROTATOR_VAULT_PREFIX", "vault", "path prefix under the mount",
             "vault.prefix", parse_kv_path),
    Variable("ENCORD_DOMAIN", "encord",
             "Encord API base (US: https://api.us.encord.com) for accounts naming none",
             "encord_domain", parse_url),
    Variable("ROTATOR_ACCOUNTS", "encord",
             "name=serviceAccountHash[@domain][,...]; domain defaults to ENCORD_DOMAIN",
             "accounts", parse_accounts,
             required="required: name=serviceAccountHash[@domain][,name=hash...]"),
    Variable("ROTATOR_INSTANCE", "encord",
             "this deployment's name in its key titles (rotator:<instance>:<account>:...)",
             "instance", parse_instance,
             shown="a hash of Vault's host:port, namespace, mount and prefix"),
    Variable("ROTATOR_CREDENTIALS", "encord",
             "which credentials to keep fresh: ssh-key, api-key, bearer-token",
             "credentials", parse_credentials),
    Variable("ROTATOR_KEY_TTL", "rotation", "a key's lifetime", "key_ttl", duration()),
    Variable("ROTATOR_ROTATE_BEFORE", "rotation", "rotate when less than this is left",
             "rotate_before", duration()),
    Variable("ROTATOR_GRACE", "rotation", "previous key stays valid this long after a new one",
             "grace", duration()),
    Variable("ROTATOR_KEY_CAP", "rotation", "keys the account may hold at Encord",
             "key_cap", whole_number(1)),
    Variable("ROTATOR_BEARER_TTL", "rotation", "bearer tokens are re-minted before this",
             "bearer_ttl", duration()),
    Variable("ROTATOR_CHECK_INTERVAL", "schedule", "how often each account is checked",
             "check_interval", duration()),
    Variable("ROTATOR_JITTER", "schedule", "random extra delay per check (may be 0s)",
             "jitter", duration(allow_zero=True)),
    Variable("ROTATOR_ROTATION_WINDOW", "schedule",
             "when rotations may start, e.g. 'mon-fri 09:00-17:00 Europe/Berlin' "
             "(';' between several)",
             "rotation_window", parse_window, shown="any time"),
    Variable("ROTATOR_LEASE_TTL", "schedule", "per-account lease expiry, for replicas",
             "lease_ttl", duration(), shown="3 × (interval + jitter)"),
    Variable("ROTATOR_MAX_CONCURRENCY", "schedule", "accounts worked on at once",
             "max_concurrency", whole_number(1)),
    Variable("ROTATOR_REGISTRAR", "encord",
             "api or manual: who adds and deletes keys at Encord", "registrar",
             one_of(REGISTRARS)),
    Variable("ROTATOR_LOG_FORMAT", "ops",
             "auto (console on a terminal, else json), json, console or ecs (Elastic)",
             "log_format", one_of(LOG_FORMATS)),
    Variable("ROTATOR_LOG_LEVEL", "ops", "debug, info, warning or error", "log_level",
             one_of(LOG_LEVELS)),
    Variable("ROTATOR_DRY_RUN", "ops", "decide and log, change nothing", "dry_run", parse_bool),
    Variable("ROTATOR_HTTP_ADDR", "ops", "health and metrics listener, host:port",
             "http", parse_http_addr),
    Variable("ROTATOR_NOTIFY_URL", "ops",
             "post a JSON message (Slack-compatible) here when a person is needed",
             "notify_url", parse_notify_url, shown="none (no messages)", secret=True),
    Variable("ROTATOR_ALLOW_INSECURE_HTTP", "ops",
             "accept plain http:// to a non-loopback Vault or Encord (test networks only)",
             "allow_insecure_http", parse_bool),
)
"""Every variable, in the order from_env reads them (the Vault credentials first, so no
later message can echo one)."""


# --------------------------------------------------------------------------------------
# Relations between variables
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Relation:
    """A rule tying variables together, checked once its ``needs`` have parsed."""

    variable: str
    """The variable a broken rule is reported against."""
    needs: tuple[str, ...]
    """The fields it reads (values that failed to parse skip the rule)."""
    broken: Callable[[Mapping[str, Any]], str | None]
    """The problem, given the values; None when the rule holds."""


def _rotate_before(v: Mapping[str, Any]) -> str | None:
    if v["rotate_before"] < v["key_ttl"]:
        return None
    return (
        f"must be shorter than ROTATOR_KEY_TTL ({format_duration(v['rotate_before'])} >= "
        f"{format_duration(v['key_ttl'])}), or every key is due for rotation at birth"
    )


def _grace(v: Mapping[str, Any]) -> str | None:
    if v["grace"] <= v["rotate_before"]:
        return None
    return (
        f"must not be longer than ROTATOR_ROTATE_BEFORE ({format_duration(v['grace'])} > "
        f"{format_duration(v['rotate_before'])}), or a replaced key would expire before "
        "it is revoked"
    )


def _key_cap(v: Mapping[str, Any]) -> str | None:
    kinds = [kind for kind in KEY_KINDS if kind in v["credentials"]]
    if v["key_cap"] >= 2 * len(kinds):
        return None
    return (
        f"must be at least {2 * len(kinds)} with {len(kinds)} rotated key kind(s) "
        f"({', '.join(kinds)}): each needs room for its current and its next key; "
        f"got {v['key_cap']}"
    )


def _bearer_ttl(v: Mapping[str, Any]) -> str | None:
    period = v["check_interval"] + v["jitter"]
    if "bearer-token" not in v["credentials"] or v["bearer_ttl"] > period:
        return None
    return (
        f"must be longer than ROTATOR_CHECK_INTERVAL + ROTATOR_JITTER "
        f"({format_duration(v['bearer_ttl'])} <= {format_duration(period)}), "
        "or a token could expire between two checks"
    )


def _registrar(v: Mapping[str, Any]) -> str | None:
    if v["registrar"] != "manual" or "api-key" not in v["credentials"]:
        return None
    return (
        "'manual' cannot keep an api-key (Encord generates those through key "
        "management); use ssh-key with the manual registrar"
    )


def _lease_ttl(v: Mapping[str, Any]) -> str | None:
    # Unset is 0s (Settings derives it); set, it is never zero.
    if not v["lease_ttl"] or v["lease_ttl"] > v["check_interval"]:
        return None
    return (
        f"must be longer than ROTATOR_CHECK_INTERVAL ({format_duration(v['lease_ttl'])} "
        f"<= {format_duration(v['check_interval'])}), or a live replica loses its lease "
        "between checks"
    )


def _plain_http(field: str, crossing: str) -> Callable[[Mapping[str, Any]], str | None]:
    """Plain http:// is refused towards a host other than loopback, unless allowed."""

    def check(v: Mapping[str, Any]) -> str | None:
        if v["allow_insecure_http"] or not is_insecure_remote(v[field]):
            return None
        return (
            f"plain http:// to a host that is not loopback would send {crossing} in clear: "
            "use https://, or set ROTATOR_ALLOW_INSECURE_HTTP=true on a closed test network"
        )

    return check


def _plain_http_accounts(v: Mapping[str, Any]) -> str | None:
    """The same rule for every account's own domain (``name=hash@domain``)."""
    if v["allow_insecure_http"]:
        return None
    plain = [a.name for a in v["accounts"] if a.domain and is_insecure_remote(a.domain)]
    if not plain:
        return None
    return (
        f"the domain of account(s) {', '.join(map(repr, plain))} is plain http:// to a host "
        "that is not loopback, which would send bearer tokens and generated private keys, and "
        "replayable signed requests, in clear: use https://, or set "
        "ROTATOR_ALLOW_INSECURE_HTTP=true on a closed test network"
    )


RELATIONS: tuple[Relation, ...] = (
    Relation("ROTATOR_ROTATE_BEFORE", ("rotate_before", "key_ttl"), _rotate_before),
    Relation("ROTATOR_GRACE", ("grace", "rotate_before"), _grace),
    Relation("ROTATOR_KEY_CAP", ("key_cap", "credentials"), _key_cap),
    Relation(
        "ROTATOR_BEARER_TTL", ("credentials", "bearer_ttl", "check_interval", "jitter"),
        _bearer_ttl,
    ),
    Relation("ROTATOR_REGISTRAR", ("registrar", "credentials"), _registrar),
    Relation("ROTATOR_LEASE_TTL", ("lease_ttl", "check_interval"), _lease_ttl),
    Relation(
        "VAULT_ADDR", ("vault.addr", "allow_insecure_http"),
        _plain_http("vault.addr", "the Vault token and every private key"),
    ),
    Relation(
        "ENCORD_DOMAIN", ("encord_domain", "allow_insecure_http"),
        _plain_http(
            "encord_domain",
            "bearer tokens and generated private keys, and replayable signed requests,",
        ),
    ),
    Relation("ROTATOR_ACCOUNTS", ("accounts", "allow_insecure_http"), _plain_http_accounts),
)


def broken_relations(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(variable, problem)`` for every relation that fails among the parsed ``values``."""
    found = []
    for relation in RELATIONS:
        if all(name in values for name in relation.needs):
            problem = relation.broken(values)
            if problem is not None:
                found.append((relation.variable, problem))
    return found


# --------------------------------------------------------------------------------------
# Help
# --------------------------------------------------------------------------------------


def env_help() -> str:
    """The environment part of ``rotator --help``: every variable and its default, by group."""
    lines = ["configuration (environment variables):"]
    for group in GROUPS:
        lines.append(f" {group}:")
        for var in VARIABLES:
            if var.group == group:
                text = var.default_text.replace("`", "")
                # "— (required with approle)" shows as "(required with approle)"
                note = text[2:] if text.startswith("— (") else f"(default {text})"
                lines.append(f"  {var.name:<29} {var.help} {note}")
    lines.append("durations: 500ms, 4s, 2m, 24h, 90d and sums like 1h30m, up to 36500d.")
    lines.append("exit codes: 0 ok, 1 Vault or Encord refused or failed, 2 bad configuration "
                 "or input.")
    return "\n".join(lines) + "\n"
