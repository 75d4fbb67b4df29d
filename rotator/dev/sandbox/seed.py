"""The sandbox's seed: the service accounts that exist when it first starts.

A seed is JSON::

    {"service_accounts": [{"name": "alpha", "hash": "sa-alpha", "key_cap": 5,
                           "bootstrap_key_file": "alpha.key", "role": "member",
                           "organisation": "default"}]}

``key_cap`` (default 5), ``role`` (``member`` or ``admin``, default ``member``) and
``organisation`` (default ``default``) are optional. Every problem is collected and raised
as one :class:`~rotator.core.errors.ConfigError`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

from rotator.core.errors import ConfigError

Role = Literal["member", "admin"]

DEFAULT_KEY_CAP = 5
# A hash travels as one path segment: keep it to characters that need no escaping.
_HASH_RE = re.compile(r"^[A-Za-z0-9._~-]{1,128}$")
_FIELDS = frozenset({"name", "hash", "key_cap", "bootstrap_key_file", "role", "organisation"})


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass(frozen=True, slots=True)
class AccountSeed:
    """One service account of the seed."""

    name: str
    account_hash: str
    bootstrap_key_file: Path
    key_cap: int = DEFAULT_KEY_CAP
    role: Role = "member"
    organisation: str = "default"


@dataclass(frozen=True, slots=True)
class SeedConfig:
    """The whole seed: one or more service accounts with unique names, hashes and key files."""

    accounts: tuple[AccountSeed, ...]

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not self.accounts:
            problems.append("service_accounts: expected at least one service account")
        for label, values in (
            ("name", [a.name for a in self.accounts]),
            ("hash", [a.account_hash for a in self.accounts]),
            ("bootstrap_key_file", [str(a.bootstrap_key_file) for a in self.accounts]),
        ):
            dupes = sorted({v for v in values if values.count(v) > 1})
            if dupes:
                problems.append(f"service_accounts: duplicate {label} {', '.join(dupes)}")
        if problems:
            raise ConfigError(problems)

    @classmethod
    def from_dict(cls, data: object, *, base_dir: Path | None = None) -> SeedConfig:
        """Validate a parsed seed; relative key files are taken against ``base_dir`` (or cwd)."""
        if not isinstance(data, Mapping):
            raise ConfigError("seed: expected a JSON object with 'service_accounts'")
        extra = sorted(str(k) for k in data if k != "service_accounts")
        problems = [f"seed: unknown field {k!r}" for k in extra]
        entries = data.get("service_accounts")
        if not isinstance(entries, list):
            raise ConfigError([*problems, "service_accounts: expected a list"])
        accounts: list[AccountSeed] = []
        for i, entry in enumerate(entries):
            account = _account(f"service_accounts[{i}]", entry, base_dir, problems)
            if account is not None:
                accounts.append(account)
        if problems:
            raise ConfigError(problems)
        return cls(tuple(accounts))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SeedConfig:
        """Read a seed file; relative key files are taken against the seed file's folder."""
        seed_path = Path(path)
        try:
            text = seed_path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"seed {seed_path}: cannot read ({exc.strerror})") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"seed {seed_path}: not JSON (line {exc.lineno})") from None
        return cls.from_dict(data, base_dir=seed_path.parent)


def _account(
    where: str, entry: object, base_dir: Path | None, problems: list[str]
) -> AccountSeed | None:
    if not isinstance(entry, Mapping):
        problems.append(f"{where}: expected an object")
        return None
    before = len(problems)
    problems.extend(
        f"{where}: unknown field {k!r}" for k in sorted(map(str, entry)) if k not in _FIELDS
    )

    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append(f"{where}.name: expected a non-empty string, got {_show(name)}")
    account_hash = entry.get("hash")
    if not isinstance(account_hash, str) or not _HASH_RE.match(account_hash):
        problems.append(
            f"{where}.hash: expected 1-128 characters of [A-Za-z0-9._~-], got {_show(account_hash)}"
        )
    key_cap = entry.get("key_cap", DEFAULT_KEY_CAP)
    if isinstance(key_cap, bool) or not isinstance(key_cap, int) or key_cap < 1:
        problems.append(f"{where}.key_cap: expected an integer >= 1, got {_show(key_cap)}")
    key_file = entry.get("bootstrap_key_file")
    if not isinstance(key_file, str) or not key_file.strip():
        problems.append(f"{where}.bootstrap_key_file: expected a path, got {_show(key_file)}")
    role = entry.get("role", "member")
    if role not in ("member", "admin"):
        problems.append(f"{where}.role: expected 'member' or 'admin', got {_show(role)}")
    organisation = entry.get("organisation", "default")
    if not isinstance(organisation, str) or not organisation.strip():
        problems.append(
            f"{where}.organisation: expected a non-empty string, got {_show(organisation)}"
        )
    if len(problems) > before:
        return None

    path = Path(cast(str, key_file)).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return AccountSeed(
        name=cast(str, name),
        account_hash=cast(str, account_hash),
        bootstrap_key_file=path,
        key_cap=cast(int, key_cap),
        role=cast(Role, role),
        organisation=cast(str, organisation),
    )
