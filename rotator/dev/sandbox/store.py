"""The sandbox's state: accounts, their keys, minted tokens, the journal and the state file.

Every method takes the one re-entrant lock, so callers may also hold it across several calls
to make a compound step atomic (authenticate, then act). Nothing here speaks HTTP.

Only public material is kept: keys as :class:`~rotator.core.vocab.RemoteKey`, tokens as their
SHA-256. Private keys leave this module once, in the answer of ``generate`` and in bootstrap
key files; they never reach the journal or the state file.

The rules of Part 2 of the contract live here, not in the HTTP layer: who may manage an
account (:func:`may_manage`), which keys an account takes (:meth:`Store.check_new_key`), how
long a token lives. The test suite's in-memory Encord (``tests/fakes.py``) is built on this
store, with no journal or state file, so the sandbox and the fake cannot drift apart.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, cast

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from rotator.core import keys
from rotator.core.errors import ConfigError, KeyFormatError
from rotator.core.vocab import Origin, RemoteKey, parse_rfc3339
from rotator.dev.sandbox.seed import DEFAULT_KEY_CAP, AccountSeed, Role, SeedConfig

STATE_VERSION = 1
_ONE_MICROSECOND = timedelta(microseconds=1)


def rfc3339_micro(dt: datetime) -> str:
    """``2026-11-29T12:00:00.123456Z``: UTC with microseconds, so keys made in one second order."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def key_json(key: RemoteKey) -> dict[str, str]:
    """A key as Part 2 of the contract shows it (camelCase)."""
    return {
        "keyHash": key.key_hash,
        "keyId": key.key_id,
        "title": key.title,
        "publicKey": key.public_key,
        "origin": key.origin,
        "createdAt": rfc3339_micro(key.created_at),
    }


def _key_from_json(data: Any) -> RemoteKey:
    origin = data["origin"]
    if origin not in ("uploaded", "generated"):
        raise ValueError("bad origin")
    public_key = str(data["publicKey"])
    key_id = str(data["keyId"])
    if keys.key_id_of_line(public_key) != key_id:
        raise ValueError("keyId does not match publicKey")
    return RemoteKey(
        key_hash=str(data["keyHash"]),
        key_id=key_id,
        title=str(data["title"]),
        public_key=public_key,
        origin=cast(Origin, origin),
        created_at=parse_rfc3339(str(data["createdAt"])),
    )


class Refused(Exception):
    """The sandbox refuses a call: ``status`` and ``code`` go to the client with ``message``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(slots=True)
class Account:
    """A service account and its keys, oldest first (mutable; guarded by the store's lock)."""

    name: str
    account_hash: str
    key_cap: int
    role: Role
    organisation: str
    keys: list[RemoteKey] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "hash": self.account_hash,
            "role": self.role,
            "organisation": self.organisation,
            "key_cap": self.key_cap,
            "keys": [key_json(k) for k in self.keys],
        }


def may_manage(principal: Account, account: Account) -> bool:
    """Part 2: an account's keys are managed by the account itself or an admin of its
    organisation; anyone else gets 403."""
    if principal is account:
        return True
    return principal.role == "admin" and principal.organisation == account.organisation


@dataclass(frozen=True, slots=True)
class _Token:
    account: str
    expires_at: float


class Store:
    """Accounts and keys behind one lock; journals and persists every change."""

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        journal_path: Path | None,
        state_path: Path | None,
    ) -> None:
        self.lock = threading.RLock()
        self._clock = clock
        self._journal_path = journal_path
        self._state_path = state_path
        self._journal: IO[str] | None = None
        self._accounts: dict[str, Account] = {}  # by name
        self._by_hash: dict[str, Account] = {}
        self._owner: dict[str, tuple[Account, Ed25519PublicKey]] = {}  # by key id
        self._deleted: set[str] = set()  # key ids deleted while running, for journal reasons
        self._tokens: dict[str, _Token] = {}  # by sha256 of the token
        self._last_created = datetime.min.replace(tzinfo=UTC)

    # -- life cycle -------------------------------------------------------------------

    def open(self, seed: SeedConfig) -> None:
        """Load the state file if any; create (and bootstrap) seed accounts it lacks."""
        with self.lock:
            if self._journal_path is not None:
                try:
                    self._journal = self._journal_path.open("a", encoding="utf-8")
                except OSError as exc:
                    raise ConfigError(
                        f"journal {self._journal_path}: cannot open ({exc.strerror})"
                    ) from None
            if self._state_path is not None and self._state_path.exists():
                self._load(self._state_path)
            for entry in seed.accounts:
                if entry.name not in self._accounts:
                    self._bootstrap(entry)
            try:
                self._save()
            except OSError as exc:
                raise ConfigError(
                    f"state file {self._state_path}: cannot write ({exc.strerror})"
                ) from None

    def close(self) -> None:
        with self.lock:
            if self._journal is not None:
                self._journal.close()
                self._journal = None

    def _bootstrap(self, entry: AccountSeed) -> None:
        if entry.account_hash in self._by_hash:
            raise ConfigError(
                f"seed account {entry.name!r}: hash {entry.account_hash!r} is already used "
                "by another account in the state file"
            )
        account = self.add_account(
            entry.name,
            entry.account_hash,
            key_cap=entry.key_cap,
            role=entry.role,
            organisation=entry.organisation,
        )
        pair = keys.generate()
        _write_private(entry.bootstrap_key_file, pair.private_openssh)
        self.add_key(
            account,
            title="bootstrap",
            public_line=pair.public_line,
            origin="uploaded",
            reason="bootstrap",
        )

    def add_account(
        self,
        name: str,
        account_hash: str,
        *,
        key_cap: int = DEFAULT_KEY_CAP,
        role: Role = "member",
        organisation: str = "default",
    ) -> Account:
        """A new service account without keys; ValueError if its name or hash is taken."""
        with self.lock:
            if name in self._accounts or account_hash in self._by_hash:
                raise ValueError("a service account with this name or hash exists")
            account = Account(
                name=name,
                account_hash=account_hash,
                key_cap=key_cap,
                role=role,
                organisation=organisation,
            )
            self._register(account)
            return account

    def _register(self, account: Account) -> None:
        self._accounts[account.name] = account
        self._by_hash[account.account_hash] = account

    # -- lookups ----------------------------------------------------------------------

    def account(self, name: str) -> Account | None:
        with self.lock:
            return self._accounts.get(name)

    def account_by_hash(self, account_hash: str) -> Account | None:
        with self.lock:
            return self._by_hash.get(account_hash)

    def owner_of(self, key_id: str) -> Account | None:
        with self.lock:
            found = self._owner.get(key_id)
            return found[0] if found else None

    def public_key(self, key_id: str) -> Ed25519PublicKey | None:
        with self.lock:
            found = self._owner.get(key_id)
            return found[1] if found else None

    def was_deleted(self, key_id: str) -> bool:
        with self.lock:
            return key_id in self._deleted

    def snapshot(self) -> list[dict[str, Any]]:
        """Every account with its keys (public parts only)."""
        with self.lock:
            return [a.to_json() for a in self._accounts.values()]

    def keys_of(self, name: str) -> list[RemoteKey]:
        with self.lock:
            account = self._accounts.get(name)
            if account is None:
                raise KeyError(name)
            return list(account.keys)

    # -- changes ----------------------------------------------------------------------

    def check_new_key(
        self, account: Account, public_line: str | None, *, enforce_cap: bool = True
    ) -> None:
        """Raise Refused as :meth:`add_key` would: a bad line, a duplicate, a full account.
        ``public_line=None`` (a key Encord generates) checks the cap only; ``enforce_cap=False``
        lets the account pass its cap (for a test fake that counts breaches instead)."""
        with self.lock:
            if public_line is not None:
                self._new_public_key(public_line)
            if enforce_cap:
                self._check_cap(account)

    def _new_public_key(self, public_line: str) -> Ed25519PublicKey:
        try:
            public = keys.parse_public_line(public_line)
        except KeyFormatError:
            raise Refused(
                400, "INVALID_PUBLIC_KEY", "publicKey is not an Ed25519 OpenSSH public line"
            ) from None
        if keys.key_id_of(public) in self._owner:
            raise Refused(409, "DUPLICATE_KEY", "this public key is already registered")
        return public

    @staticmethod
    def _check_cap(account: Account) -> None:
        if len(account.keys) >= account.key_cap:
            raise Refused(
                400,
                "KEY_LIMIT_REACHED",
                f"the service account already holds its cap of {account.key_cap} keys",
            )

    def add_key(
        self,
        account: Account,
        *,
        title: str,
        public_line: str,
        origin: Origin,
        reason: str | None = None,
        enforce_cap: bool = True,
        by: str | None = None,
    ) -> RemoteKey:
        """Register a public key; Refused for a bad line, a duplicate or a full account
        (``enforce_cap=False``: see :meth:`check_new_key`). ``by``: the key id that signed
        the request, for the journal."""
        with self.lock:
            public = self._new_public_key(public_line)
            if enforce_cap:
                self._check_cap(account)
            key_id = keys.key_id_of(public)
            key = RemoteKey(
                key_hash=uuid.uuid4().hex,
                key_id=key_id,
                title=title,
                public_key=public_line,
                origin=origin,
                created_at=self._next_created(),
            )
            account.keys.append(key)
            self._owner[key_id] = (account, public)
            self._deleted.discard(key_id)
            self._save()
            self.journal(
                "key.added",
                account=account,
                key_id=key_id,
                reason=reason or origin,
                title=title,
                by=by,
            )
            return key

    def delete_key(
        self, account: Account, key_hash: str, *, by: str | None = None
    ) -> RemoteKey | None:
        """Remove a key of ``account`` by hash; None if it has no such key. ``by``: the key id
        that signed the request, for the journal."""
        with self.lock:
            for i, key in enumerate(account.keys):
                if key.key_hash == key_hash:
                    del account.keys[i]
                    del self._owner[key.key_id]
                    self._deleted.add(key.key_id)
                    self._save()
                    self.journal(
                        "key.deleted",
                        account=account,
                        key_id=key.key_id,
                        reason="deleted",
                        title=key.title,
                        by=by,
                    )
                    return key
            return None

    def mint_token(self, account: Account, ttl: float) -> str:
        """A fresh bearer token for ``account``, valid ``ttl`` seconds of the sandbox clock."""
        token = secrets.token_urlsafe(32)
        with self.lock:
            now = self._clock()
            self._tokens = {h: t for h, t in self._tokens.items() if t.expires_at > now}
            self._tokens[_digest(token)] = _Token(account=account.name, expires_at=now + ttl)
            self._save()
        return token

    def token_owner(self, token: str) -> tuple[Account | None, str]:
        """``(account, "")`` for a live token; else the owner if known and why it is refused."""
        with self.lock:
            found = self._tokens.get(_digest(token))
            account = self._accounts.get(found.account) if found else None
            if found is None or account is None:
                return None, "unknown bearer token"
            if found.expires_at <= self._clock():
                return account, "expired bearer token"
            return account, ""

    def _next_created(self) -> datetime:
        now = datetime.fromtimestamp(self._clock(), UTC)
        if now <= self._last_created:
            now = self._last_created + _ONE_MICROSECOND
        self._last_created = now
        return now

    # -- journal ----------------------------------------------------------------------

    def journal(
        self,
        event: str,
        *,
        account: Account | None,
        key_id: str | None,
        reason: str,
        **extra: str | None,
    ) -> None:
        """Append one JSON line (flushed); never called with private keys or tokens. ``extra``:
        a key's ``title``, and ``by``, the key id that signed a deletion."""
        with self.lock:
            if self._journal is None:
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
            self._journal.write(json.dumps(line, sort_keys=True) + "\n")
            self._journal.flush()

    # -- persistence ------------------------------------------------------------------

    def _save(self) -> None:
        if self._state_path is None:
            return
        data = {
            "version": STATE_VERSION,
            "accounts": [a.to_json() for a in self._accounts.values()],
            "tokens": [
                {"sha256": h, "account": t.account, "expires_at": t.expires_at}
                for h, t in self._tokens.items()
            ],
        }
        _atomic_write(self._state_path, json.dumps(data, indent=1, sort_keys=True) + "\n")

    def _load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("version") != STATE_VERSION:
                raise ValueError("unknown version")
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
                self._register(account)
                for raw in entry["keys"]:
                    key = _key_from_json(raw)
                    account.keys.append(key)
                    self._owner[key.key_id] = (account, keys.parse_public_line(key.public_key))
                    self._last_created = max(self._last_created, key.created_at)
                account.keys.sort(key=lambda k: k.created_at)
            for raw in data.get("tokens", []):
                self._tokens[str(raw["sha256"])] = _Token(
                    account=str(raw["account"]), expires_at=float(raw["expires_at"])
                )
        except (OSError, ValueError, KeyError, TypeError, AttributeError, KeyFormatError):
            raise ConfigError(f"state file {path}: not a readable sandbox state") from None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


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


def _atomic_write(path: Path, text: str, mode: int = 0o600) -> None:
    """Write ``text`` to ``path`` via a temporary file beside it, fsync, rename."""
    with _temp_beside(path, mode) as (fd, _), os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())


def _write_private(path: Path, text: str) -> None:
    """Write a private key with mode 0600 (created with that mode, never wider)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, text, 0o600)
    except OSError as exc:
        raise ConfigError(f"bootstrap key file {path}: cannot write ({exc.strerror})") from None
