"""Settings: frozen values built once from the environment by :func:`from_env`.

This is the only module that reads the environment, and it does so only when
:func:`from_env` is called (from ``main()``), never at import time.

Every problem found is collected and reported together in one
:class:`~rotator.core.errors.ConfigError`, one line per problem, each line naming the variable::

    ROTATOR_KEY_TTL: expected a duration like '90d' or '1h30m', got 'soon'

A variable set to an empty (or all-blank) value counts as unset. The Vault token, the
AppRole role and secret IDs never appear in an error, a ``repr`` or :func:`settings_summary`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal, TypeVar, cast
from urllib.parse import urlsplit

from rotator.core.errors import ConfigError
from rotator.core.vocab import CREDENTIALS, KEY_KINDS, Account, Credential, KeyKind

LogFormat = Literal["json", "console"]
Registrar = Literal["api", "manual"]
REGISTRARS: tuple[str, ...] = ("api", "manual")
LogLevel = Literal["debug", "info", "warning", "error"]
AuthMethod = Literal["token", "approle", "kubernetes"]

LOG_FORMATS: tuple[LogFormat, ...] = ("json", "console")
LOG_LEVELS: tuple[LogLevel, ...] = ("debug", "info", "warning", "error")
AUTH_METHODS: tuple[AuthMethod, ...] = ("token", "approle", "kubernetes")
K8S_JWT_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/token"  # noqa: S105 - a path
"""Where Kubernetes mounts a pod's service-account token (the default VAULT_K8S_JWT_FILE)."""

_T = TypeVar("_T")

# --------------------------------------------------------------------------------------
# Durations
# --------------------------------------------------------------------------------------

_UNITS: dict[str, timedelta] = {
    "d": timedelta(days=1),
    "h": timedelta(hours=1),
    "m": timedelta(minutes=1),
    "s": timedelta(seconds=1),
    "ms": timedelta(milliseconds=1),
}
_DURATION_RE = re.compile(r"(?:[0-9]+(?:ms|[dhms]))+")
_PART_RE = re.compile(r"([0-9]+)(ms|[dhms])")


def parse_duration(text: str) -> timedelta:
    """Parse ``500ms``, ``4s``, ``2m``, ``24h``, ``90d`` or a sum such as ``1h30m``.

    Units are ``ms``, ``s``, ``m``, ``h`` and ``d``; counts are non-negative integers;
    surrounding whitespace is ignored. Anything else raises :class:`ValueError`.
    """
    stripped = text.strip()
    if not _DURATION_RE.fullmatch(stripped):
        raise ValueError(f"expected a duration like '90d' or '1h30m', got {_show(text)}")
    total = timedelta(0)
    try:
        for count, unit in _PART_RE.findall(stripped):
            total += int(count) * _UNITS[unit]
    except OverflowError:
        raise ValueError(f"duration {_show(text)} is too large") from None
    return total


def format_duration(td: timedelta) -> str:
    """Compact text for a duration, the inverse of :func:`parse_duration` (``1h30m``).

    Sub-millisecond parts are rounded to the nearest millisecond; zero is ``0s``;
    negative durations get a leading ``-`` (which :func:`parse_duration` does not accept).
    """
    if td < timedelta(0):
        return "-" + format_duration(-td)
    ms = round(td / timedelta(milliseconds=1))
    if ms == 0:
        return "0s"
    parts: list[str] = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        count, ms = divmod(ms, size)
        if count:
            parts.append(f"{count}{unit}")
    if ms:
        parts.append(f"{ms}ms")
    return "".join(parts)


# --------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class VaultAuth:
    """How rotator logs in to Vault: ``ROTATOR_VAULT_AUTH`` and its method's variables.

    The default is ``token`` auth with the token in :attr:`VaultSettings.token`. The role
    and secret IDs are never shown (``repr=False``). Files are re-read at every login, so a
    sidecar that rotates them is followed.
    """

    method: AuthMethod = "token"
    """``ROTATOR_VAULT_AUTH``: ``token``, ``approle`` or ``kubernetes``. Default ``token``."""
    token_file: str | None = None
    """``VAULT_TOKEN_FILE`` (token auth): re-read when the token must be replaced."""
    role_id: str | None = field(default=None, repr=False)
    """``VAULT_ROLE_ID`` (approle). Not a password, but not shown either."""
    secret_id: str | None = field(default=None, repr=False)
    """``VAULT_SECRET_ID`` (approle), or the stripped contents of ``VAULT_SECRET_ID_FILE``."""
    secret_id_file: str | None = None
    """``VAULT_SECRET_ID_FILE`` (approle): re-read at every login."""
    k8s_role: str | None = None
    """``VAULT_K8S_ROLE`` (kubernetes): the Vault role bound to this service account."""
    jwt_file: str = K8S_JWT_FILE
    """``VAULT_K8S_JWT_FILE`` (kubernetes): the service-account token, read at every login
    (Kubernetes rotates projected tokens). Default: where Kubernetes mounts it."""
    mount: str | None = None
    """``VAULT_APPROLE_MOUNT`` / ``VAULT_K8S_MOUNT``: where the auth method is mounted;
    None means the method's usual path (``approle``, ``kubernetes``)."""

    def __post_init__(self) -> None:
        problems: list[str] = []
        if self.method not in AUTH_METHODS:
            problems.append(
                f"ROTATOR_VAULT_AUTH: expected one of {', '.join(AUTH_METHODS)}; "
                f"got {_show(str(self.method))}"
            )
        if self.method == "approle":
            if not self.role_id:
                problems.append("VAULT_ROLE_ID: required with ROTATOR_VAULT_AUTH=approle")
            if not self.secret_id and not self.secret_id_file:
                problems.append(
                    "VAULT_SECRET_ID: required with ROTATOR_VAULT_AUTH=approle "
                    "(or VAULT_SECRET_ID_FILE)"
                )
        if self.method == "kubernetes":
            if not self.k8s_role:
                problems.append("VAULT_K8S_ROLE: required with ROTATOR_VAULT_AUTH=kubernetes")
            if not self.jwt_file.strip():
                problems.append("VAULT_K8S_JWT_FILE: must name the service-account token file")
        if problems:
            raise ConfigError(problems)

    @property
    def mount_point(self) -> str:
        """The auth mount: ``mount`` or the method's usual path (``token`` for token auth)."""
        return self.mount or self.method

    @property
    def variables(self) -> str:
        """The variables that hold this method's credential, for messages and hints."""
        if self.method == "approle":
            secret = "VAULT_SECRET_ID_FILE" if self.secret_id_file else "VAULT_SECRET_ID"
            return f"VAULT_ROLE_ID and {secret}"
        if self.method == "kubernetes":
            return "VAULT_K8S_ROLE and VAULT_K8S_JWT_FILE"
        return "VAULT_TOKEN_FILE" if self.token_file else "VAULT_TOKEN"


@dataclass(frozen=True, slots=True)
class VaultSettings:
    """Where and how to reach Vault (``VAULT_*`` follow Vault's own conventions)."""

    addr: str
    """``VAULT_ADDR``: base URL, no trailing slash. Required: there is no safe default."""
    token: str = field(default="", repr=False)
    """``VAULT_TOKEN`` (or the stripped contents of ``VAULT_TOKEN_FILE``) for token auth;
    empty with the other methods, which obtain their token by logging in. Never shown."""
    cacert: str | None = None
    """``VAULT_CACERT``: CA bundle file to verify Vault's TLS certificate; None = system CAs."""
    namespace: str | None = None
    """``VAULT_NAMESPACE``: Vault Enterprise / OpenBao namespace; None = root namespace."""
    timeout: timedelta = timedelta(seconds=5)
    """``VAULT_CLIENT_TIMEOUT``, per request. 5s: a healthy Vault answers in milliseconds,
    and a stuck request must not hold an account's check past its interval."""
    mount: str = "secret"
    """``ROTATOR_VAULT_MOUNT``: the KV v2 mount. ``secret`` is where dev servers mount KV v2."""
    prefix: str = "encord"
    """``ROTATOR_VAULT_PREFIX``: path under the mount; credentials live at
    ``{prefix}/{account}/{ssh-key|api-key|bearer-token}``."""
    auth: VaultAuth = field(default=VaultAuth(), repr=False)
    """``ROTATOR_VAULT_AUTH`` and its variables. Default: token auth with :attr:`token`.
    Left out of the repr, which stays free of the word "token" (``settings_summary`` shows
    the method)."""

    @property
    def secret_values(self) -> tuple[str, ...]:
        """Every credential text these settings hold (for the log redactor)."""
        values = (self.token, self.auth.secret_id, self.auth.role_id)
        return tuple(v for v in values if v)


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything the daemon needs, validated. Built by :func:`from_env`.

    Every field but ``vault`` and ``accounts`` has the same default as its variable,
    so tests can build one directly.
    """

    vault: VaultSettings
    """Vault address, token, TLS and KV location."""
    accounts: tuple[Account, ...]
    """``ROTATOR_ACCOUNTS`` (``name=hash,...``): the service accounts to manage. Required."""
    encord_domain: str = "https://api.encord.com"
    """``ENCORD_DOMAIN``: Encord API base URL, no trailing slash. Default: Encord's main
    region (US region: ``https://api.us.encord.com``)."""
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
    log_format: LogFormat = "json"
    """``ROTATOR_LOG_FORMAT``: ``json`` (one object per line, for collectors) or
    ``console`` (for people)."""
    log_level: LogLevel = "info"
    """``ROTATOR_LOG_LEVEL``: ``debug``, ``info``, ``warning`` or ``error``."""
    dry_run: bool = False
    """``ROTATOR_DRY_RUN``: decide and log, change nothing at Encord or in Vault."""
    http_host: str = "0.0.0.0"  # noqa: S104 - a container's health endpoint must be reachable
    """``ROTATOR_HTTP_ADDR`` host: where health and metrics listen. All interfaces by
    default, so probes from outside the container reach it."""
    http_port: int = 8080
    """``ROTATOR_HTTP_ADDR`` port (0 = pick a free port). 8080: the usual unprivileged one."""
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

    def __post_init__(self) -> None:
        if self.lease_ttl == timedelta(0):
            object.__setattr__(
                self, "lease_ttl", default_lease_ttl(self.check_interval, self.jitter)
            )

    @property
    def key_kinds(self) -> tuple[KeyKind, ...]:
        """The rotated key kinds among the credentials: ``ssh-key`` before ``api-key``."""
        return tuple(kind for kind in KEY_KINDS if kind in self.credentials)

    @property
    def http_addr(self) -> str:
        """``host:port`` (``[v6]:port`` for IPv6) as ROTATOR_HTTP_ADDR would spell it."""
        host = f"[{self.http_host}]" if ":" in self.http_host else self.http_host
        return f"{host}:{self.http_port}"


def default_lease_ttl(check_interval: timedelta, jitter: timedelta) -> timedelta:
    """The lease lifetime used when ROTATOR_LEASE_TTL is unset: three missed checks."""
    return 3 * (check_interval + jitter)


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
        "vault_auth": _auth_summary(s.vault.auth),
        "encord_domain": s.encord_domain,
        "accounts": [{"name": a.name, "hash": a.hash} for a in s.accounts],
        "credentials": [c for c in CREDENTIALS if c in s.credentials],
        "key_ttl": format_duration(s.key_ttl),
        "rotate_before": format_duration(s.rotate_before),
        "grace": format_duration(s.grace),
        "key_cap": s.key_cap,
        "bearer_ttl": format_duration(s.bearer_ttl),
        "check_interval": format_duration(s.check_interval),
        "jitter": format_duration(s.jitter),
        "log_format": s.log_format,
        "log_level": s.log_level,
        "dry_run": s.dry_run,
        "http_addr": s.http_addr,
        "lease_ttl": format_duration(s.lease_ttl),
        "max_concurrency": s.max_concurrency,
        "registrar": s.registrar,
    }


def _auth_summary(auth: VaultAuth) -> dict[str, object]:
    """The non-secret part of the auth settings (no IDs, no token)."""
    if auth.method == "approle":
        return {
            "method": auth.method,
            "mount": auth.mount_point,
            "secret_id_from_file": auth.secret_id_file is not None,
        }
    if auth.method == "kubernetes":
        return {
            "method": auth.method,
            "mount": auth.mount_point,
            "role": auth.k8s_role,
            "jwt_file": auth.jwt_file,
        }
    return {"method": auth.method, "from_file": auth.token_file is not None}


# --------------------------------------------------------------------------------------
# Reading the environment
# --------------------------------------------------------------------------------------

_MAX_SHOWN = 60


def _show(value: str) -> str:
    """A user's value quoted for an error message, cut short if long."""
    if len(value) > _MAX_SHOWN:
        value = value[:_MAX_SHOWN] + "..."
    return repr(value)


_INT_RE = re.compile(r"[0-9]+")
_HOSTNAME_RE = re.compile(
    r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


class _Reader:
    """Reads variables, collecting every problem instead of stopping at the first."""

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

    def duration(self, name: str, default: str, *, allow_zero: bool = False) -> timedelta | None:
        def parse(text: str) -> timedelta:
            td = parse_duration(text)
            if td == timedelta(0) and not allow_zero:
                raise ValueError(f"must be longer than zero, got {_show(text)}")
            return td

        return self.parsed(name, parse_duration(default), parse)

    def integer(self, name: str, default: int, *, minimum: int) -> int | None:
        def parse(text: str) -> int:
            stripped = text.strip()
            if not _INT_RE.fullmatch(stripped) or int(stripped) < minimum:
                raise ValueError(f"expected a whole number >= {minimum}, got {_show(text)}")
            return int(stripped)

        return self.parsed(name, default, parse)

    def choice(self, name: str, default: str, options: tuple[str, ...]) -> str | None:
        def parse(text: str) -> str:
            value = text.strip().lower()
            if value not in options:
                raise ValueError(f"expected one of {', '.join(options)}; got {_show(text)}")
            return value

        return self.parsed(name, default, parse)


def _parse_url(text: str) -> str:
    value = text.strip()
    if "@" in value:
        # Never echo it: the part before '@' may be a password.
        raise ValueError("must not carry a user name or password ('user:pass@'); not shown")
    shape = f"expected an http(s) URL like 'https://host:8200', got {_show(text)}"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ValueError(shape) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(shape)
    if parts.query or parts.fragment:
        raise ValueError(f"must not have a query or fragment, got {_show(text)}")
    return value.rstrip("/")


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"expected true/false, 1/0 or yes/no, got {_show(text)}")


def _parse_http_addr(text: str) -> tuple[str, int]:
    value = text.strip()
    shape = f"expected host:port like '0.0.0.0:8080' or '[::1]:8080', got {_show(text)}"
    if value.startswith("["):
        host, sep, port_text = value[1:].partition("]:")
        if not sep:
            raise ValueError(shape)
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} in brackets is not an IPv6 address") from None
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep:
            raise ValueError(shape)
        if ":" in host:
            raise ValueError(f"put an IPv6 address in brackets ('[::1]:8080'), got {_show(text)}")
        if not host:
            host = "0.0.0.0"  # noqa: S104 - ':8080' means every interface, as in Go
        elif not _HOSTNAME_RE.fullmatch(host):
            raise ValueError(f"{host!r} is neither an IP address nor a host name")
    if not _INT_RE.fullmatch(port_text) or int(port_text) > 65535:
        raise ValueError(f"port must be a number from 0 to 65535, got {port_text!r}")
    return host, int(port_text)


def _parse_credentials(text: str) -> frozenset[Credential]:
    entries = [entry.strip() for entry in text.split(",")]
    if any(not entry for entry in entries):
        raise ValueError(f"empty entry in {_show(text)}")
    unknown = [entry for entry in entries if entry not in CREDENTIALS]
    if unknown:
        raise ValueError(
            f"unknown credential {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(CREDENTIALS)}"
        )
    return frozenset(cast(Credential, entry) for entry in entries)


def _parse_accounts(text: str) -> tuple[Account, ...]:
    accounts: list[Account] = []
    bad: list[str] = []
    for index, entry in enumerate(text.split(","), start=1):
        name, sep, sa_hash = (part.strip() for part in entry.partition("="))
        where = f"entry {index} ({_show(entry.strip())})"
        if not sep:
            bad.append(f"{where} is not name=serviceAccountHash")
        elif not name:
            bad.append(f"{where} has an empty name")
        elif "/" in name or any(ch.isspace() for ch in name):
            bad.append(f"{where}: the name must not contain '/' or whitespace")
        elif not sa_hash:
            bad.append(f"{where} has an empty hash")
        elif "/" in sa_hash or any(ch.isspace() for ch in sa_hash):
            bad.append(f"{where}: the hash must not contain '/' or whitespace")
        elif name in {a.name for a in accounts}:
            bad.append(f"{where} repeats the name {name!r}")
        else:
            accounts.append(Account(name=name, hash=sa_hash))
    if bad:
        raise ValueError("; ".join(bad))
    return tuple(accounts)


def _parse_kv_path(text: str) -> str:
    value = text.strip().strip("/")
    segments = value.split("/")
    if any(seg in ("", ".", "..") or any(ch.isspace() for ch in seg) for seg in segments):
        raise ValueError(
            f"expected a Vault path like 'secret' or 'team/encord' "
            f"(no empty, '.', '..' or blank segments), got {_show(text)}"
        )
    return value


def _readable_file(text: str) -> str:
    path = text.strip()
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as exc:
        reason = exc.strerror or "unreadable"
        raise ValueError(f"cannot read file {_show(path)}: {reason}") from None
    return path


def _scrub(message: str, secret: str) -> str:
    """``message`` with ``secret`` (or the start of it that _show may have kept) masked."""
    message = message.replace(secret, "[redacted]")
    head = secret[:_MAX_SHOWN]
    if len(head) >= 8:
        message = message.replace(head, "[redacted]")
    return message


def _remember(seen: list[str], text: str) -> None:
    """Note ``text`` and, should it hold whitespace, its long pieces, as token candidates."""
    seen.append(text.strip())
    seen.extend(piece for piece in text.split() if len(piece) >= 8)


def _secret_from(
    r: _Reader, seen: list[str], name: str, *, what: str, required: str
) -> tuple[str | None, str | None]:
    """A credential from ``name`` or ``name_FILE`` (exactly one), and the file it came from.

    Its value is never echoed; every candidate text is appended to ``seen`` so it can be
    scrubbed from errors. ``what`` names it in messages ("the token"); ``required`` is the
    message when neither variable is set. Returns ``(None, None)`` after recording a problem.
    """
    file_name = f"{name}_FILE"
    direct = r.raw(name)
    path = r.raw(file_name)
    if direct is not None:
        _remember(seen, direct)
    if direct is not None and path is not None:
        r.problem(name, f"set only one of {name} and {file_name}")
        return None, None
    if direct is None and path is None:
        r.problem(name, required)
        return None, None
    shown = name
    if path is not None:
        shown = file_name
        path = path.strip()
        try:
            direct = _read_text(path)
        except ValueError as exc:
            r.problem(file_name, str(exc))
            return None, None
    assert direct is not None  # noqa: S101 - narrowed above: exactly one source is set
    value = direct.strip()
    _remember(seen, value)
    if not value:
        r.problem(shown, f"{what} is empty")
        return None, None
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        r.problem(shown, f"{what} contains whitespace or control characters")
        return None, None
    return value, path


def _read_text(path: str) -> str:
    """The text of ``path``; ValueError naming the path (never the content) if unreadable."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ValueError(f"cannot read file {_show(path)}: {reason or 'unreadable'}") from None


def _vault_token(r: _Reader, seen: list[str]) -> tuple[str | None, str | None]:
    """The Vault token from VAULT_TOKEN or VAULT_TOKEN_FILE, and that file (token auth)."""
    required = "required (or VAULT_TOKEN_FILE naming a file holding it)"
    if r.raw("VAULT_ROLE_ID") is not None:
        required += "; VAULT_ROLE_ID is set: for AppRole set ROTATOR_VAULT_AUTH=approle"
    elif r.raw("VAULT_K8S_ROLE") is not None:
        required += "; VAULT_K8S_ROLE is set: for Kubernetes set ROTATOR_VAULT_AUTH=kubernetes"
    return _secret_from(r, seen, "VAULT_TOKEN", what="the token", required=required)


def _parse_plain_id(text: str) -> str:
    """A role name: stripped, no whitespace, control characters or '/'."""
    value = text.strip()
    if any(ch.isspace() or not ch.isprintable() or ch == "/" for ch in value):
        raise ValueError(f"expected a role name without spaces or '/', got {_show(text)}")
    return value


def _vault_auth(r: _Reader) -> tuple[str | None, VaultAuth | None]:
    """``(token, auth)`` from ROTATOR_VAULT_AUTH and its method's variables.

    Credential texts are remembered in ``r.secrets`` first, so no later message (of this
    function or any other) can echo one. ``auth`` is None when a problem was recorded.
    """
    for name in ("VAULT_TOKEN", "VAULT_ROLE_ID", "VAULT_SECRET_ID"):
        raw = r.raw(name)
        if raw is not None:
            _remember(r.secrets, raw)
    method = r.choice("ROTATOR_VAULT_AUTH", "token", AUTH_METHODS)
    if method is None:
        return None, None
    if method == "token":
        token, token_file = _vault_token(r, r.secrets)
        if token is None:
            return None, None
        return token, VaultAuth(method="token", token_file=token_file)

    problems_before = len(r.problems)
    for name in ("VAULT_TOKEN", "VAULT_TOKEN_FILE"):
        if r.raw(name) is not None:
            r.problem(
                name,
                f"not used with ROTATOR_VAULT_AUTH={method} (it logs in for its own token); "
                "unset it",
            )
    if method == "approle":
        role_id = r.raw("VAULT_ROLE_ID")
        if role_id is None:
            r.problem("VAULT_ROLE_ID", "required with ROTATOR_VAULT_AUTH=approle")
        elif any(ch.isspace() or not ch.isprintable() for ch in role_id.strip()):
            r.problem("VAULT_ROLE_ID", "the role ID contains whitespace or control characters")
        secret_id, secret_file = _secret_from(
            r, r.secrets, "VAULT_SECRET_ID", what="the secret ID",
            required="required with ROTATOR_VAULT_AUTH=approle (or VAULT_SECRET_ID_FILE)",
        )
        mount = r.parsed("VAULT_APPROLE_MOUNT", "approle", _parse_kv_path)
        if len(r.problems) > problems_before:
            return None, None
        assert role_id is not None and mount is not None  # noqa: S101 - no problem recorded
        return "", VaultAuth(
            method="approle",
            role_id=role_id.strip(),
            secret_id=secret_id,
            secret_id_file=secret_file,
            mount=mount,
        )

    role = r.parsed("VAULT_K8S_ROLE", None, _parse_plain_id)
    if r.raw("VAULT_K8S_ROLE") is None:
        r.problem("VAULT_K8S_ROLE", "required with ROTATOR_VAULT_AUTH=kubernetes")
    jwt_raw = r.raw("VAULT_K8S_JWT_FILE")
    jwt_file = jwt_raw.strip() if jwt_raw is not None else K8S_JWT_FILE
    if not jwt_file.isprintable():
        r.problem("VAULT_K8S_JWT_FILE", f"expected a file path, got {_show(jwt_file)}")
    mount = r.parsed("VAULT_K8S_MOUNT", "kubernetes", _parse_kv_path)
    if len(r.problems) > problems_before:
        return None, None
    assert role is not None and mount is not None  # noqa: S101 - no problem recorded
    return "", VaultAuth(method="kubernetes", k8s_role=role, jwt_file=jwt_file, mount=mount)


def from_env(environ: Mapping[str, str]) -> Settings:
    """Build :class:`Settings` from ``environ`` (normally ``os.environ``).

    Raises one :class:`ConfigError` listing every problem found; the Vault token and the
    AppRole IDs never appear in it.
    """
    r = _Reader(environ)

    token, auth = _vault_auth(r)  # first, so r.secrets guards every later message
    vault_addr = r.parsed("VAULT_ADDR", None, _parse_url)
    if r.raw("VAULT_ADDR") is None:
        r.problem("VAULT_ADDR", "required, e.g. 'https://vault.example.com:8200'")
    cacert = r.parsed("VAULT_CACERT", None, _readable_file)
    namespace_raw = r.raw("VAULT_NAMESPACE")
    namespace = namespace_raw.strip().strip("/") if namespace_raw is not None else None
    vault_timeout = r.duration("VAULT_CLIENT_TIMEOUT", "5s")
    mount = r.parsed("ROTATOR_VAULT_MOUNT", "secret", _parse_kv_path)
    prefix = r.parsed("ROTATOR_VAULT_PREFIX", "encord", _parse_kv_path)

    encord_domain = r.parsed("ENCORD_DOMAIN", "https://api.encord.com", _parse_url)
    accounts = r.parsed("ROTATOR_ACCOUNTS", None, _parse_accounts)
    if r.raw("ROTATOR_ACCOUNTS") is None:
        r.problem("ROTATOR_ACCOUNTS", "required: name=serviceAccountHash[,name=hash...]")
    credentials = r.parsed(
        "ROTATOR_CREDENTIALS", frozenset[Credential]({"ssh-key", "bearer-token"}),
        _parse_credentials,
    )

    key_ttl = r.duration("ROTATOR_KEY_TTL", "90d")
    rotate_before = r.duration("ROTATOR_ROTATE_BEFORE", "14d")
    grace = r.duration("ROTATOR_GRACE", "24h")
    key_cap = r.integer("ROTATOR_KEY_CAP", 5, minimum=1)
    bearer_ttl = r.duration("ROTATOR_BEARER_TTL", "1h")
    check_interval = r.duration("ROTATOR_CHECK_INTERVAL", "5m")
    jitter = r.duration("ROTATOR_JITTER", "30s", allow_zero=True)
    lease_ttl = r.duration("ROTATOR_LEASE_TTL", "0s")
    lease_set = r.raw("ROTATOR_LEASE_TTL") is not None
    max_concurrency = r.integer("ROTATOR_MAX_CONCURRENCY", 4, minimum=1)
    registrar = r.choice("ROTATOR_REGISTRAR", "api", REGISTRARS)

    log_format = r.choice("ROTATOR_LOG_FORMAT", "json", LOG_FORMATS)
    log_level = r.choice("ROTATOR_LOG_LEVEL", "info", LOG_LEVELS)
    dry_run = r.parsed("ROTATOR_DRY_RUN", False, _parse_bool)
    http = r.parsed("ROTATOR_HTTP_ADDR", ("0.0.0.0", 8080), _parse_http_addr)  # noqa: S104

    # Relations, checked only when their inputs parsed.
    if rotate_before is not None and key_ttl is not None and rotate_before >= key_ttl:
        r.problem(
            "ROTATOR_ROTATE_BEFORE",
            f"must be shorter than ROTATOR_KEY_TTL ({format_duration(rotate_before)} >= "
            f"{format_duration(key_ttl)}), or every key is due for rotation at birth",
        )
    if grace is not None and rotate_before is not None and grace > rotate_before:
        r.problem(
            "ROTATOR_GRACE",
            f"must not be longer than ROTATOR_ROTATE_BEFORE ({format_duration(grace)} > "
            f"{format_duration(rotate_before)}), or a replaced key would expire before "
            "it is revoked",
        )
    if key_cap is not None and credentials is not None:
        kinds = [kind for kind in KEY_KINDS if kind in credentials]
        if key_cap < 2 * len(kinds):
            r.problem(
                "ROTATOR_KEY_CAP",
                f"must be at least {2 * len(kinds)} with {len(kinds)} rotated key kind(s) "
                f"({', '.join(kinds)}): each needs room for its current and its next key; "
                f"got {key_cap}",
            )
    if (
        credentials is not None
        and "bearer-token" in credentials
        and bearer_ttl is not None
        and check_interval is not None
        and jitter is not None
        and bearer_ttl <= check_interval + jitter
    ):
        r.problem(
            "ROTATOR_BEARER_TTL",
            f"must be longer than ROTATOR_CHECK_INTERVAL + ROTATOR_JITTER "
            f"({format_duration(bearer_ttl)} <= {format_duration(check_interval + jitter)}), "
            "or a token could expire between two checks",
        )
    if registrar == "manual" and credentials is not None and "api-key" in credentials:
        r.problem(
            "ROTATOR_REGISTRAR",
            "'manual' cannot keep an api-key (Encord generates those through key "
            "management); use ssh-key with the manual registrar",
        )
    if (
        lease_set
        and lease_ttl is not None
        and check_interval is not None
        and lease_ttl <= check_interval
    ):
        r.problem(
            "ROTATOR_LEASE_TTL",
            f"must be longer than ROTATOR_CHECK_INTERVAL ({format_duration(lease_ttl)} "
            f"<= {format_duration(check_interval)}), or a live replica loses its lease "
            "between checks",
        )

    if r.problems:
        problems = r.problems
        # Belt and braces: a token pasted into the wrong variable is echoed nowhere, even
        # cut short by _show.
        for text in sorted(filter(None, r.secrets), key=len, reverse=True):
            problems = [_scrub(p, text) for p in problems]
        raise ConfigError(problems)

    # No problems means every value parsed; the asserts narrow the types for mypy.
    assert vault_addr is not None and token is not None and auth is not None  # noqa: S101
    assert vault_timeout is not None and mount is not None and prefix is not None  # noqa: S101
    assert encord_domain is not None and accounts is not None  # noqa: S101
    assert credentials is not None and key_cap is not None  # noqa: S101
    assert key_ttl is not None and rotate_before is not None and grace is not None  # noqa: S101
    assert bearer_ttl is not None and check_interval is not None  # noqa: S101
    assert jitter is not None and lease_ttl is not None  # noqa: S101
    assert max_concurrency is not None and dry_run is not None and http is not None  # noqa: S101
    assert log_format is not None and log_level is not None  # noqa: S101
    assert registrar is not None  # noqa: S101

    return Settings(
        vault=VaultSettings(
            addr=vault_addr,
            token=token,
            cacert=cacert,
            namespace=namespace or None,
            timeout=vault_timeout,
            mount=mount,
            prefix=prefix,
            auth=auth,
        ),
        accounts=accounts,
        encord_domain=encord_domain,
        credentials=credentials,
        key_ttl=key_ttl,
        rotate_before=rotate_before,
        grace=grace,
        key_cap=key_cap,
        bearer_ttl=bearer_ttl,
        check_interval=check_interval,
        jitter=jitter,
        log_format=cast(LogFormat, log_format),
        log_level=cast(LogLevel, log_level),
        dry_run=dry_run,
        http_host=http[0],
        http_port=http[1],
        lease_ttl=lease_ttl,  # timedelta(0) when unset: Settings derives it
        max_concurrency=max_concurrency,
        registrar=cast(Registrar, registrar),
    )
