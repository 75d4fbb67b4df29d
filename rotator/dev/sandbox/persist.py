"""The sandbox's files: the journal (one JSON line per change or refused call), the state
file (accounts, keys and token digests, loaded at start and rewritten after each change),
and atomic writes (state file and bootstrap private keys, mode 0600).

Only public material is written: keys as :func:`~rotator.dev.sandbox.records.key_json`,
tokens as their SHA-256. The one exception is a bootstrap private key, written once to the
file its seed names (:func:`write_private`). What the store holds, and its rules, live in
:mod:`rotator.dev.sandbox.store`.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from rotator.core import keys
from rotator.core.errors import ConfigError, KeyFormatError
from rotator.dev.sandbox.records import Account, Token, key_from_json, rfc3339_micro

STATE_VERSION = 1


class Journal:
    """Appends JSON lines to ``path`` once :meth:`open`; with no path, records nothing."""

    def __init__(self, path: Path | None, clock: Callable[[], float]) -> None:
        self.path = path
        self._clock = clock
        self._out: IO[str] | None = None

    def open(self) -> None:
        """Open for appending; ConfigError naming the path if it cannot be."""
        if self.path is None:
            return
        try:
            self._out = self.path.open("a", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"journal {self.path}: cannot open ({exc.strerror})") from None

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    def record(
        self,
        event: str,
        *,
        account: Account | None,
        key_id: str | None,
        reason: str,
        **extra: str | None,
    ) -> None:
        """Append one JSON line (flushed); never called with private keys or tokens. ``extra``:
        a key's ``title``, and ``by``, the key id that signed the request."""
        if self._out is None:
            return
        line = {
            "ts": rfc3339_micro(datetime.fromtimestamp(self._clock(), UTC)),
            "event": event,
            "account": account.name if account else None,
            "account_hash": account.account_hash if account else None,
            "key_id": key_id,
            "key_count": len(account.keys) if account else None,
            "reason": reason,
            **extra,
        }
        self._out.write(json.dumps(line, sort_keys=True) + "\n")
        self._out.flush()


@dataclass(slots=True)
class LoadedState:
    """What a state file held: accounts (keys oldest first), the public key of every key id,
    and live or expired tokens by SHA-256."""

    accounts: list[Account] = field(default_factory=list)
    public_keys: dict[str, Ed25519PublicKey] = field(default_factory=dict)
    tokens: dict[str, Token] = field(default_factory=dict)


def save_state(path: Path, accounts: Iterable[Account], tokens: Mapping[str, Token]) -> None:
    """Rewrite the state file atomically (OSError if it cannot be written)."""
    data = {
        "version": STATE_VERSION,
        "accounts": [a.to_json() for a in accounts],
        "tokens": [
            {"sha256": h, "account": t.account, "expires_at": t.expires_at}
            for h, t in tokens.items()
        ],
    }
    atomic_write(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def load_state(path: Path) -> LoadedState:
    """Read a state file :func:`save_state` wrote; ConfigError naming only the path if not one."""
    try:
        return _parse_state(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, KeyFormatError):
        raise ConfigError(f"state file {path}: not a readable sandbox state") from None


def _parse_state(data: Any) -> LoadedState:
    if data.get("version") != STATE_VERSION:
        raise ValueError("unknown version")
    state = LoadedState()
    for entry in data["accounts"]:
        role = entry["role"]
        if role not in ("member", "admin"):
            raise ValueError("bad role")
        account = Account(
            name=str(entry["name"]),
            account_hash=str(entry["hash"]),
            key_cap=int(entry["key_cap"]),
            role=role,
            organisation=str(entry["organisation"]),
        )
        state.accounts.append(account)
        for raw in entry["keys"]:
            key = key_from_json(raw)
            account.keys.append(key)
            state.public_keys[key.key_id] = keys.parse_public_line(key.public_key)
        account.keys.sort(key=lambda k: k.created_at)
    for raw in data.get("tokens", []):
        state.tokens[str(raw["sha256"])] = Token(
            account=str(raw["account"]), expires_at=float(raw["expires_at"])
        )
    return state


@contextlib.contextmanager
def _temp_beside(path: Path, mode: int) -> Iterator[tuple[int, str]]:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        yield fd, tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write(path: Path, text: str, mode: int = 0o600) -> None:
    """Write ``text`` to ``path`` via a temporary file beside it, fsync, rename."""
    with _temp_beside(path, mode) as (fd, _), os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())


def write_private(path: Path, text: str) -> None:
    """Write a private key with mode 0600 (created with that mode, never wider)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, text, 0o600)
    except OSError as exc:
        raise ConfigError(f"bootstrap key file {path}: cannot write ({exc.strerror})") from None
