"""The sandbox's state: accounts, their keys and minted tokens, and the rules they follow.

Every method takes the one re-entrant lock, so callers may also hold it across several calls
to make a compound step atomic (authenticate, then act). Nothing here speaks HTTP.

Only public material is kept: keys as :class:`~rotator.core.vocab.RemoteKey`, tokens as their
SHA-256. Private keys leave this module once, in the answer of ``generate`` and in bootstrap
key files; they never reach the journal or the state file.

The rules of Part 2 of the contract live here, not in the HTTP layer: who may manage an
account (:func:`may_manage`), which keys an account takes (:meth:`Store.check_new_key`), how
long a token lives. The test suite's in-memory Encord (``tests/fakes.py``) is built on this
store, with no journal or state file, so the sandbox and the fake cannot drift apart.

The records themselves are in :mod:`rotator.dev.sandbox.records` (re-exported here); the
journal, the state file and atomic writes in :mod:`rotator.dev.sandbox.persist`.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from rotator.core import keys
from rotator.core.errors import ConfigError, KeyFormatError
from rotator.core.vocab import Origin, RemoteKey
from rotator.dev.sandbox.persist import Journal, load_state, save_state, write_private
from rotator.dev.sandbox.records import (
    Account,
    Refused,
    Token,
    key_json,
    may_manage,
    rfc3339_micro,
)
from rotator.dev.sandbox.seed import DEFAULT_KEY_CAP, AccountSeed, Role, SeedConfig

__all__ = ["Account", "Refused", "Store", "key_json", "may_manage", "rfc3339_micro"]

_ONE_MICROSECOND = timedelta(microseconds=1)


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
        self._state_path = state_path
        self._journal = Journal(journal_path, clock)
        self._accounts: dict[str, Account] = {}  # by name
        self._by_hash: dict[str, Account] = {}
        self._owner: dict[str, tuple[Account, Ed25519PublicKey]] = {}  # by key id
        self._deleted: set[str] = set()  # key ids deleted while running, for journal reasons
        self._tokens: dict[str, Token] = {}  # by sha256 of the token
        self._last_created = datetime.min.replace(tzinfo=UTC)

    # -- life cycle -------------------------------------------------------------------

    def open(self, seed: SeedConfig) -> None:
        """Load the state file if any; create (and bootstrap) seed accounts it lacks."""
        with self.lock:
            self._journal.open()
            if self._state_path is not None and self._state_path.exists():
                self._load(self._state_path)
            for entry in seed.accounts:
                if entry.name not in self._accounts:
                    _bootstrap(self, entry)
            try:
                self._save()
            except OSError as exc:
                raise ConfigError(
                    f"state file {self._state_path}: cannot write ({exc.strerror})"
                ) from None

    def close(self) -> None:
        with self.lock:
            self._journal.close()

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
        the request (``ui``: a person in the Encord UI), for the journal."""
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

    def create_in_ui(self, account: Account, title: str) -> tuple[RemoteKey, str]:
        """What a person does in the Encord UI ("New API key", a title, "Add API key"): Encord
        makes the pair, keeps the public half and hands the private half over once, as the
        file the browser downloads (OpenSSH text). Refused when the account is full; the
        journal says ``by="ui"``."""
        pair = keys.generate()
        key = self.add_key(
            account, title=title, public_line=pair.public_line, origin="generated", by="ui"
        )
        return key, pair.private_openssh

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
            self._tokens[_digest(token)] = Token(account=account.name, expires_at=now + ttl)
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

    # -- journal and state file ---------------------------------------------------------

    def journal(
        self,
        event: str,
        *,
        account: Account | None,
        key_id: str | None,
        reason: str,
        **extra: str | None,
    ) -> None:
        """Append one JSON line to the journal (if any); never with private keys or tokens.
        ``extra``: a key's ``title``, and ``by``, the key id that signed the request."""
        with self.lock:
            self._journal.record(event, account=account, key_id=key_id, reason=reason, **extra)

    def _save(self) -> None:
        if self._state_path is None:
            return
        save_state(self._state_path, self._accounts.values(), self._tokens)

    def _load(self, path: Path) -> None:
        state = load_state(path)
        for account in state.accounts:
            self._register(account)
            for key in account.keys:
                self._owner[key.key_id] = (account, state.public_keys[key.key_id])
                self._last_created = max(self._last_created, key.created_at)
        self._tokens.update(state.tokens)


def _bootstrap(store: Store, entry: AccountSeed) -> None:
    """Create a seed account and its bootstrap key, writing the private half to its file."""
    if store.account_by_hash(entry.account_hash) is not None:
        raise ConfigError(
            f"seed account {entry.name!r}: hash {entry.account_hash!r} is already used "
            "by another account in the state file"
        )
    account = store.add_account(
        entry.name,
        entry.account_hash,
        key_cap=entry.key_cap,
        role=entry.role,
        organisation=entry.organisation,
    )
    pair = keys.generate()
    write_private(entry.bootstrap_key_file, pair.private_openssh)
    store.add_key(
        account,
        title="bootstrap",
        public_line=pair.public_line,
        origin="uploaded",
        reason="bootstrap",
    )


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
