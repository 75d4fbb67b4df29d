"""Parsers for configuration values: each takes the variable's text and returns its value or
raises :class:`ValueError` with a one-line message that never echoes a credential.

Durations (:func:`parse_duration`, :func:`format_duration`) and the value types the variable
table (:mod:`rotator.runtime.config.table`) names: URLs, accounts, credentials, host:port...
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from datetime import timedelta
from typing import cast
from urllib.parse import urlsplit

from rotator.adapters.vault.env import parse_kv_path, show
from rotator.core.vocab import CREDENTIALS, MAX_DURATION, Account, Credential

__all__ = [
    "format_duration",
    "parse_accounts",
    "parse_bool",
    "parse_credentials",
    "parse_duration",
    "parse_http_addr",
    "parse_instance",
    "parse_kv_path",
    "parse_namespace",
    "parse_url",
    "readable_file",
    "show",
]

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
        raise ValueError(f"expected a duration like '90d' or '1h30m', got {show(text)}")
    total = timedelta(0)
    try:
        for count, unit in _PART_RE.findall(stripped):
            total += int(count) * _UNITS[unit]
    except OverflowError:
        raise ValueError(f"duration {show(text)} is too large") from None
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


def duration(*, allow_zero: bool = False) -> Callable[[str], timedelta]:
    """A duration parser; zero is refused unless ``allow_zero``, and so is anything over
    100 years (``MAX_DURATION``: times plus durations must stay within what a datetime holds)."""

    def parse(text: str) -> timedelta:
        td = parse_duration(text)
        if td == timedelta(0) and not allow_zero:
            raise ValueError(f"must be longer than zero, got {show(text)}")
        if td > MAX_DURATION:
            raise ValueError(
                f"must be at most {format_duration(MAX_DURATION)} (100 years), got {show(text)}"
            )
        return td

    return parse


# --------------------------------------------------------------------------------------
# Numbers, choices, flags
# --------------------------------------------------------------------------------------

_INT_RE = re.compile(r"[0-9]+")
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


def whole_number(minimum: int) -> Callable[[str], int]:
    """A parser for a whole number of at least ``minimum``."""

    def parse(text: str) -> int:
        stripped = text.strip()
        if not _INT_RE.fullmatch(stripped) or int(stripped) < minimum:
            raise ValueError(f"expected a whole number >= {minimum}, got {show(text)}")
        return int(stripped)

    return parse


def one_of(options: tuple[str, ...]) -> Callable[[str], str]:
    """A parser for one of ``options`` (case-insensitive)."""

    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in options:
            raise ValueError(f"expected one of {', '.join(options)}; got {show(text)}")
        return value

    return parse


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"expected true/false, 1/0 or yes/no, got {show(text)}")


# --------------------------------------------------------------------------------------
# Addresses, paths, files
# --------------------------------------------------------------------------------------

_HOSTNAME_RE = re.compile(
    r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)


def parse_url(text: str) -> str:
    value = text.strip()
    if "@" in value:
        # Never echo it: the part before '@' may be a password.
        raise ValueError("must not carry a user name or password ('user:pass@'); not shown")
    shape = f"expected an http(s) URL like 'https://host:8200', got {show(text)}"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ValueError(shape) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(shape)
    if parts.query or parts.fragment:
        raise ValueError(f"must not have a query or fragment, got {show(text)}")
    return value.rstrip("/")


def is_insecure_remote(url: str) -> bool:
    """``url`` is plain http:// to a host other than loopback (``localhost``, 127.0.0.0/8,
    ``::1``)."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        return False
    host = (parts.hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # a name: it may resolve anywhere


def parse_namespace(text: str) -> str | None:
    """A Vault namespace without outer ``/``; None (the root namespace) if nothing is left."""
    return text.strip().strip("/") or None


def parse_http_addr(text: str) -> tuple[str, int]:
    value = text.strip()
    shape = f"expected host:port like '0.0.0.0:8080' or '[::1]:8080', got {show(text)}"
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
            raise ValueError(f"put an IPv6 address in brackets ('[::1]:8080'), got {show(text)}")
        if not host:
            host = "0.0.0.0"  # noqa: S104 - ':8080' means every interface, as in Go
        elif not _HOSTNAME_RE.fullmatch(host):
            raise ValueError(f"{host!r} is neither an IP address nor a host name")
    if not _INT_RE.fullmatch(port_text) or int(port_text) > 65535:
        raise ValueError(f"port must be a number from 0 to 65535, got {port_text!r}")
    return host, int(port_text)


def readable_file(text: str) -> str:
    path = text.strip()
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as exc:
        reason = exc.strerror or "unreadable"
        raise ValueError(f"cannot read file {show(path)}: {reason}") from None
    return path


def read_text(path: str) -> str:
    """The text of ``path``; ValueError naming the path (never the content) if unreadable."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ValueError(f"cannot read file {show(path)}: {reason or 'unreadable'}") from None


# --------------------------------------------------------------------------------------
# What to rotate, for whom
# --------------------------------------------------------------------------------------


def parse_credentials(text: str) -> frozenset[Credential]:
    entries = [entry.strip() for entry in text.split(",")]
    if any(not entry for entry in entries):
        raise ValueError(f"empty entry in {show(text)}")
    unknown = [entry for entry in entries if entry not in CREDENTIALS]
    if unknown:
        raise ValueError(
            f"unknown credential {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(CREDENTIALS)}"
        )
    return frozenset(cast(Credential, entry) for entry in entries)


_INSTANCE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")


def parse_instance(text: str) -> str:
    """A deployment's identity for key titles: 1 to 32 letters, digits, '.', '_' or '-'."""
    value = text.strip()
    if not _INSTANCE_RE.fullmatch(value):
        raise ValueError(
            "expected 1 to 32 letters, digits, '.', '_' or '-' (it goes into key titles, "
            f"where ':' separates the parts), got {show(text)}"
        )
    return value


def _account_domain(text: str) -> str:
    """The domain after an account's ``@``: an http(s) URL, as ENCORD_DOMAIN takes it."""
    if not text:
        raise ValueError("is empty (write name=hash@https://api.us.encord.com, or drop the '@')")
    try:
        return parse_url(text)
    except ValueError as exc:
        raise ValueError(f"is not an Encord domain: {exc}") from None


def parse_accounts(text: str) -> tuple[Account, ...]:
    """``name=serviceAccountHash[@domain]`` entries, separated by commas. ``domain`` is the
    account's Encord API base (its region), a URL as ENCORD_DOMAIN takes; without one the
    account uses ENCORD_DOMAIN. Plain http:// is checked later, with
    ROTATOR_ALLOW_INSECURE_HTTP (:mod:`rotator.runtime.config.table`)."""
    accounts: list[Account] = []
    bad: list[str] = []
    for index, entry in enumerate(text.split(","), start=1):
        name, sep, rest = (part.strip() for part in entry.partition("="))
        sa_hash, at, domain_text = (part.strip() for part in rest.partition("@"))
        # An entry with a second '@' may carry a user:password in its URL: never echo it.
        shown = show(entry.strip()) if "@" not in domain_text else "not shown"
        where = f"entry {index} ({shown})"
        domain: str | None = None
        problem = ""
        if at:
            try:
                domain = _account_domain(domain_text)
            except ValueError as exc:
                problem = str(exc)
        if not sep:
            bad.append(f"{where} is not name=serviceAccountHash[@domain]")
        elif not name:
            bad.append(f"{where} has an empty name")
        elif "/" in name or any(ch.isspace() for ch in name):
            bad.append(f"{where}: the name must not contain '/' or whitespace")
        elif name in (".", ".."):
            bad.append(f"{where}: the name must not be '.' or '..' (it is a Vault path segment)")
        elif ":" in name:
            # Key titles are rotator:<instance>:<account>:<time>: a ':' in a name would let
            # 'a' claim the keys of 'a:x' as its own.
            bad.append(f"{where}: the name must not contain ':' (it separates key titles' parts)")
        elif not sa_hash:
            bad.append(f"{where} has an empty hash")
        elif "/" in sa_hash or any(ch.isspace() for ch in sa_hash):
            bad.append(f"{where}: the hash must not contain '/' or whitespace")
        elif problem:
            bad.append(f"{where}: the domain after '@' {problem}")
        elif name in {a.name for a in accounts}:
            bad.append(f"{where} repeats the name {name!r}")
        elif sa_hash in {a.hash for a in accounts}:
            twin = next(a.name for a in accounts if a.hash == sa_hash)
            bad.append(
                f"{where} repeats the service-account hash of {twin!r}: two names for one "
                "account would each take the other's keys for a stranger's"
            )
        else:
            accounts.append(Account(name=name, hash=sa_hash, domain=domain))
    if bad:
        raise ValueError("; ".join(bad))
    return tuple(accounts)
