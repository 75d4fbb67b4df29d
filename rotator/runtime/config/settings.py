"""Settings: the daemon's configuration as one frozen, flat value.

Every field documents its variable, its unit and why its default is what it is; the defaults
written here are the ones :func:`~rotator.runtime.config.from_env` uses and ``rotator --help``
and docs/configuration.md show (see :mod:`rotator.runtime.config.table`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal
from urllib.parse import urlsplit

from rotator.adapters.notify import NotifyTarget
from rotator.adapters.vault.settings import VaultSettings
from rotator.core.vocab import KEY_KINDS, Account, Credential, KeyKind
from rotator.core.window import RotationWindow

LogFormat = Literal["auto", "json", "console", "ecs"]
Registrar = Literal["api", "manual"]
LogLevel = Literal["debug", "info", "warning", "error"]

LOG_FORMATS: tuple[LogFormat, ...] = ("auto", "json", "console", "ecs")
LOG_LEVELS: tuple[LogLevel, ...] = ("debug", "info", "warning", "error")
REGISTRARS: tuple[Registrar, ...] = ("api", "manual")


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything the daemon needs, validated. Built by :func:`from_env`.

    Every field but ``vault`` and ``accounts`` has the same default as its variable,
    so tests can build one directly.
    """

    vault: VaultSettings
    """Vault address, token, TLS and KV location."""
    accounts: tuple[Account, ...]
    """``ROTATOR_ACCOUNTS`` (``name=hash[@domain],...``): the service accounts to manage,
    each in its own region when it names a domain. Required."""
    encord_domain: str = "https://api.encord.com"
    """``ENCORD_DOMAIN``: Encord API base URL, no trailing slash, for the accounts that name
    no domain of their own. Default: Encord's main region (US region:
    ``https://api.us.encord.com``)."""
    credentials: frozenset[Credential] = frozenset({"ssh-key", "bearer-token"})
    """``ROTATOR_CREDENTIALS``: which credentials to keep fresh in Vault. Default: an
    uploaded SSH key plus a bearer token minted with it; ``api-key`` (a key Encord
    generates) is opt-in because it puts a private key on the wire."""
    key_ttl: timedelta = timedelta(days=90)
    """``ROTATOR_KEY_TTL``: a key's lifetime; ``expires_at = issued_at + key_ttl``.
    90 days is the common compliance ceiling for long-lived credentials."""
    rotate_before: timedelta = timedelta(days=14)
    """``ROTATOR_ROTATE_BEFORE``: rotate once less than this is left. 14 days leaves two
    weeks to notice and fix a rotation that keeps failing before the key expires."""
    grace: timedelta = timedelta(hours=24)
    """``ROTATOR_GRACE``: how long the previous key stays valid after its successor is
    promoted. 24h lets consumers that read Vault daily pick up the new key."""
    key_cap: int = 5
    """``ROTATOR_KEY_CAP``: keys the account may hold at Encord. 5 is Encord's default."""
    bearer_ttl: timedelta = timedelta(hours=1)
    """``ROTATOR_BEARER_TTL``: bearer tokens are re-minted before this runs out. Encord
    publishes no lifetime; one hour is a conservative assumption."""
    check_interval: timedelta = timedelta(minutes=5)
    """``ROTATOR_CHECK_INTERVAL``: how often each account is checked. 5 minutes keeps
    bearer tokens (1h) far from expiry at a handful of cheap calls per hour."""
    jitter: timedelta = timedelta(seconds=30)
    """``ROTATOR_JITTER``: random extra delay (0..jitter) per check, so replicas and
    accounts do not hit Vault and Encord in lock-step. May be zero."""
    log_format: LogFormat = "auto"
    """``ROTATOR_LOG_FORMAT``: ``json`` (one object per line, for collectors), ``console``
    (for people), ``ecs`` (JSON in the Elastic Common Schema, for Elastic) or ``auto``:
    console when the log stream is a terminal, JSON otherwise. Auto
    by default, so a person trying rotator reads lines and every collector (a pipe, a file, a
    container's log driver) still gets JSON."""
    log_level: LogLevel = "info"
    """``ROTATOR_LOG_LEVEL``: ``debug``, ``info``, ``warning`` or ``error``."""
    dry_run: bool = False
    """``ROTATOR_DRY_RUN``: decide and log, change nothing at Encord or in Vault."""
    http_host: str = "0.0.0.0"  # noqa: S104 - a container's health endpoint must be reachable
    """``ROTATOR_HTTP_ADDR`` host: where health and metrics listen. All interfaces by
    default, so probes from outside the container reach it."""
    http_port: int = 8080
    """``ROTATOR_HTTP_ADDR`` port (0 = pick a free port). 8080: the usual unprivileged one."""
    rotation_window: RotationWindow | None = None
    """``ROTATOR_ROTATION_WINDOW``: when rotations (and, with the manual registrar, requests to
    people) may start, e.g. ``mon-fri 09:00-17:00 Europe/Berlin``. None (the default): any
    time, as before windows existed; a key about to expire before the window opens rotates
    anyway (``rotation.window_overridden``)."""
    lease_ttl: timedelta = timedelta(0)
    """``ROTATOR_LEASE_TTL``: how long a replica's per-account lease lasts. 0 (the
    default) means ``3 × (check_interval + jitter)``: a replica that missed three checks
    in a row is presumed dead."""
    max_concurrency: int = 4
    """``ROTATOR_MAX_CONCURRENCY``: accounts worked on at once. 4 keeps Vault and Encord
    from being flooded while one slow account does not hold up the others."""
    registrar: Registrar = "api"
    """``ROTATOR_REGISTRAR``: ``api`` (rotator adds and deletes keys through Encord's key
    management) or ``manual`` (a person does, when Encord does not expose key management to
    the workspace; rotator asks in its logs and polls until it sees it done)."""
    instance: str = ""
    """``ROTATOR_INSTANCE``: this deployment's identity, in the title of every key it
    registers (``rotator:<instance>:<account>:...``), so that deployments sharing one service
    account (staging and production, two teams) each delete only their own leftovers. Empty
    (the default) derives it from where the deployment keeps its state, which every replica
    shares and a restart keeps: :func:`default_instance` of the Vault address's host and
    port, the namespace, the mount and the prefix."""
    allow_insecure_http: bool = False
    """``ROTATOR_ALLOW_INSECURE_HTTP``: accept plain ``http://`` for VAULT_ADDR,
    ENCORD_DOMAIN and an account's own domain on a host other than loopback. Off: the Vault
    token, bearer tokens and generated private keys would cross the network in clear, and
    signed Encord requests (no nonce) could be replayed; only a closed test network (compose)
    should turn it on."""

    notify_url: NotifyTarget | None = None
    """``ROTATOR_NOTIFY_URL``: where to post a small JSON message (Slack-compatible ``text``
    plus fields) when a person is needed. None (the default): no messages, the logs say it
    all. A secret (a webhook's path is its credential): only its scheme and host are shown."""

    def __post_init__(self) -> None:
        if not self.instance:
            object.__setattr__(self, "instance", default_instance(self.vault))
        if self.lease_ttl == timedelta(0):
            object.__setattr__(
                self, "lease_ttl", default_lease_ttl(self.check_interval, self.jitter)
            )

    @property
    def key_kinds(self) -> tuple[KeyKind, ...]:
        """The rotated key kinds among the credentials: ``ssh-key`` before ``api-key``."""
        return tuple(kind for kind in KEY_KINDS if kind in self.credentials)

    def domain_of(self, account: Account) -> str:
        """The Encord API base ``account`` lives at: its own domain, else ENCORD_DOMAIN."""
        return account.domain or self.encord_domain

    @property
    def http_addr(self) -> str:
        """``host:port`` (``[v6]:port`` for IPv6) as ROTATOR_HTTP_ADDR would spell it."""
        host = f"[{self.http_host}]" if ":" in self.http_host else self.http_host
        return f"{host}:{self.http_port}"


def default_lease_ttl(check_interval: timedelta, jitter: timedelta) -> timedelta:
    """The lease lifetime used when ROTATOR_LEASE_TTL is unset: three missed checks."""
    return 3 * (check_interval + jitter)


def default_instance(vault: VaultSettings) -> str:
    """The instance used when ROTATOR_INSTANCE is unset: ``v`` and 10 hex digits of a SHA-256
    of ``host:port/namespace/mount/prefix``. Replicas of one deployment share all four; two
    deployments never do (they would share state records and leases too)."""
    parts = urlsplit(vault.addr)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    where = "/".join(
        (f"{(parts.hostname or '').lower()}:{port}", (vault.namespace or "").strip("/"),
         vault.mount.strip("/"), vault.prefix.strip("/"))
    )
    return "v" + hashlib.sha256(where.encode()).hexdigest()[:10]
