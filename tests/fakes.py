"""In-memory fakes of the engine's outside world: Vault KV v2, Encord, a clock.

Every outside call the engine makes goes through one shared :class:`Calls` counter, so a test
can stop the engine after the N-th call (:class:`~tests.crash.SimulatedCrash`) or make a
call fail transiently, whichever fake it lands on. The fakes keep everything they ever held
(every Vault version, every key created or deleted, with the global call number and the fake
time) so the tests can check the protocol's invariants over the whole history.

The fake Encord keeps its accounts, keys and tokens in the sandbox's own store
(:mod:`rotator.dev.sandbox.store`), so it refuses what the sandbox refuses;
``tests/test_encord_contract.py`` runs the same checks against both.
"""

from __future__ import annotations

import copy
import dataclasses
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from rotator.core import admin, keys
from rotator.core.engine import Engine
from rotator.core.errors import (
    AccessDenied,
    AmbiguousWrite,
    KeyManagementUnavailable,
    NotFound,
    RegistryRejected,
    RegistryUnavailable,
    StoreConflict,
    StoreUnavailable,
)
from rotator.core.keys import KeyPair
from rotator.core.policy import Policy
from rotator.core.ports import AwaitingPerson
from rotator.core.state import STATE_NAME, AccountState, from_dict
from rotator.core.vocab import Account, BearerToken, GeneratedKey, KnownKey, Origin, RemoteKey
from rotator.dev.sandbox.seed import Role
from rotator.dev.sandbox.store import Account as SandboxAccount
from rotator.dev.sandbox.store import Refused, Store, may_manage
from tests.crash import SimulatedCrash

START = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
ACCOUNT = Account("alpha", "sa-alpha")


class FakeClock:
    """Simulated UTC time: ``now()`` (also callable), ``advance(td)``, and a ``sleep`` that
    advances instead of waiting."""

    def __init__(self, start: datetime = START) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def __call__(self) -> datetime:
        return self._now

    def advance(self, td: timedelta) -> None:
        assert td >= timedelta(0), "time only moves forward"
        self._now += td

    def sleep(self, seconds: float) -> None:
        self.advance(timedelta(seconds=seconds))


class Calls:
    """Numbers every outside call; may fail one transiently before it, or crash after it.

    ``crash_after``: stop the engine right after the call with this number completes.
    ``crash_rate``/``transient_rate`` with ``rng``: the same, at random (for long runs).
    ``commit_then_fail_rate``: a write takes effect but its caller sees a transient error.
    """

    def __init__(self) -> None:
        self.count = 0
        self.log: list[str] = []
        self.crash_after: int | None = None
        self.rng = random.Random(0)
        self.crash_rate = 0.0
        self.transient_rate = 0.0
        self.commit_then_fail_rate = 0.0
        self.crashes = 0
        self.transients = 0

    def before(self, name: str, error: Callable[[str], Exception]) -> None:
        """Called before a call takes effect: maybe fail it (nothing happened)."""
        if self.transient_rate and self.rng.random() < self.transient_rate:
            self.transients += 1
            raise error(f"fake {name}: unavailable (injected)")

    def after(self, name: str) -> int:
        """Called once a call took effect: number it, maybe stop the engine there."""
        self.count += 1
        self.log.append(name)
        planned = self.crash_after == self.count
        if planned:
            self.crash_after = None  # once: the restarted engine runs on
        if planned or (self.crash_rate and self.rng.random() < self.crash_rate):
            self.crashes += 1
            raise SimulatedCrash(f"after call {self.count} ({name})")
        return self.count

    def lost_answer(self) -> bool:
        """Whether a write that just took effect should look failed to its caller."""
        return bool(self.commit_then_fail_rate) and self.rng.random() < self.commit_then_fail_rate


# --- Vault KV v2 ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """One version of one KV v2 path, as ``SecretStore.read`` returns it.

    A destroyed version reads with ``data`` None, as in KV v2; the fake still keeps what it
    held (``history``) so the tests can check invariants over everything ever written."""

    data: dict[str, Any] | None
    version: int
    created_time: datetime
    seq: int = 0  # global call number of the write (for ordering against Encord's calls)
    destroyed_seq: int | None = None  # global call number of its destruction, if destroyed

    @property
    def destroyed(self) -> bool:
        return self.destroyed_seq is not None

    def as_read(self) -> StoredVersion:
        """What a reader gets: a copy, without data once destroyed."""
        data = None if self.destroyed else copy.deepcopy(self.data)
        return dataclasses.replace(self, data=data)


class FakeStore:
    """In-memory KV v2 with check-and-set, keeping every version of every path for the tests
    (``history``). Readers see what KV v2 would show: only the newest ``max_versions`` of a
    path (Vault's default is 10; older ones read as absent), and a destroyed version without
    its data (``readable``)."""

    def __init__(
        self, clock: FakeClock, calls: Calls | None = None, *, max_versions: int = 10
    ) -> None:
        self.clock = clock
        self.calls = calls or Calls()
        self.max_versions = max_versions
        self.paths: dict[str, list[StoredVersion]] = {}
        self.writes = 0
        self.reads = 0
        self.destroyed = 0

    def read(self, rel: str) -> StoredVersion | None:
        self.calls.before(f"vault.read {rel}", StoreUnavailable)
        self.reads += 1
        versions = self.paths.get(rel)
        self.calls.after(f"vault.read {rel}")
        if not versions:
            return None
        return versions[-1].as_read()

    def read_version(self, rel: str, version: int) -> StoredVersion | None:
        """Version ``version`` (None if never written); destroyed ones read with data None."""
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValueError(f"version must be an integer >= 1, got {version!r}")
        self.calls.before(f"vault.read_version {rel}", StoreUnavailable)
        self.reads += 1
        versions = self.paths.get(rel, [])
        self.calls.after(f"vault.read_version {rel}")
        if version > len(versions) or version <= len(versions) - self.max_versions:
            return None  # never written, or pruned
        return versions[version - 1].as_read()

    def write(self, rel: str, data: Mapping[str, Any], *, cas: int) -> int:
        self.calls.before(f"vault.write {rel}", StoreUnavailable)
        versions = self.paths.setdefault(rel, [])
        have = versions[-1].version if versions else 0
        if cas != have:
            raise StoreConflict(f"fake vault: check-and-set {cas} but path is at version {have}")
        self.writes += 1
        version = have + 1
        seq = self.calls.count + 1
        versions.append(StoredVersion(copy.deepcopy(dict(data)), version, self.clock(), seq))
        lost = self.calls.lost_answer()
        self.calls.after(f"vault.write {rel}")
        if lost:
            raise StoreUnavailable("fake vault: answer lost after the write (injected)")
        return version

    def destroy_versions(self, rel: str, versions: Iterable[int]) -> None:
        """Destroy these versions' data for good; versions never written or destroyed
        already are passed over, as KV v2 does."""
        chosen = sorted(set(versions))
        self.calls.before(f"vault.destroy_versions {rel}", StoreUnavailable)
        held = self.paths.get(rel, [])
        seq = self.calls.count + 1
        for number in chosen:
            if 1 <= number <= len(held) and not held[number - 1].destroyed:
                held[number - 1] = dataclasses.replace(held[number - 1], destroyed_seq=seq)
        self.destroyed += len(chosen)
        lost = self.calls.lost_answer()
        self.calls.after(f"vault.destroy_versions {rel}")
        if lost:
            raise StoreUnavailable("fake vault: answer lost after the destroy (injected)")

    # -- for tests, not part of SecretStore (no call counted) --------------------------------

    def history(self, rel: str) -> list[StoredVersion]:
        """Every version ever written, with its data even once destroyed."""
        return list(self.paths.get(rel, []))

    def readable(self, rel: str) -> list[StoredVersion]:
        """Every version a reader may still ask for, as it sees it now (the newest
        ``max_versions``; destroyed ones without their data)."""
        return [v.as_read() for v in self.paths.get(rel, [])[-self.max_versions :]]

    def latest(self, rel: str) -> dict[str, Any] | None:
        versions = self.paths.get(rel)
        return None if not versions else versions[-1].as_read().data

    def put(self, rel: str, data: Mapping[str, Any]) -> None:
        """Write as someone else would (a human, another tool): no call counted."""
        versions = self.paths.setdefault(rel, [])
        version = (versions[-1].version if versions else 0) + 1
        versions.append(StoredVersion(dict(data), version, self.clock(), self.calls.count))


# --- Encord -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyEvent:
    """A key created or deleted at the fake Encord: when (time and global call number)."""

    account: str
    key_id: str
    title: str
    at: datetime
    seq: int
    by: str = "rotator"  # or "human": a change made outside the rotator


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """A bearer token the fake Encord minted: for which account, with which key, until when."""

    account: str
    minted_with: str
    expires_at: datetime


@dataclass
class _Account:
    """One account as the sandbox store holds it when asked: keys by id, oldest first, and cap."""

    keys: dict[str, RemoteKey] = field(default_factory=dict)  # key id -> key, in order
    cap: int = 5


# Part 1 calls name no service account: the signer is authenticated, nothing is authorised.
_PART1_CALLS = frozenset({"bearer_token"})


def _rejected(refused: Refused) -> RegistryRejected:
    return RegistryRejected(
        f"fake Encord: HTTP {refused.status} ({refused.code})",
        code=refused.code,
        status=refused.status,
    )


class FakeEncord:
    """Encord's key management for one or more service accounts, in memory.

    The accounts, their keys and roles, the cap, duplicate refusal, deletion and bearer tokens
    are the sandbox's own :class:`~rotator.dev.sandbox.store.Store` (``sandbox``, with no
    journal or state file, on the fake clock), so the rules are the ones the end-to-end tests
    meet over HTTP: a signer whose key is unknown or deleted gets 401, an unknown account 404,
    a signer neither of the account nor an admin of its organisation 403; a bearer token lives
    its ``bearer_lifetime`` whatever becomes of its key. ``tests/test_encord_contract.py``
    holds the fake and the sandbox to the same answers.

    What the fake adds: no signatures or HTTP (in-process speed), the shared :class:`Calls`
    counter, the full history (``created``, ``deleted``, ``tokens``, ``high_water``,
    ``call_log``) and these fault knobs (all off by default):

    - ``never_verify``: key ids that never authenticate (``verify`` answers 401 for ever);
      ``never_verify_new``: the same for every key created from now on;
      ``never_verify_next``: the same for the next N keys created;
    - ``propagation_failures``: a new key's first N verifies answer 401;
    - ``lose_upload_answers`` / ``lose_generate_answers``: the next N such calls take effect,
      then raise :class:`AmbiguousWrite` (answer lost, not yet resolved by listing);
    - ``fail_next``: call name -> how many of the next such calls fail with
      :class:`RegistryUnavailable` before doing anything;
    - ``enforce_cap``: refuse a key over the cap (``KEY_LIMIT_REACHED``) as Encord does;
      switched off, the fake lets the account grow so ``high_water`` shows any breach.
    """

    def __init__(
        self,
        clock: FakeClock,
        calls: Calls | None = None,
        *,
        bearer_lifetime: timedelta = timedelta(hours=1),
    ) -> None:
        self.clock = clock
        self.calls = calls or Calls()
        self.bearer_lifetime = bearer_lifetime
        self.sandbox = Store(
            clock=lambda: clock().timestamp(), journal_path=None, state_path=None
        )
        self._accounts: dict[str, SandboxAccount] = {}  # by hash (also the store's name)
        self.enforce_cap = True
        self.never_verify: set[str] = set()
        self.never_verify_new = False
        self.never_verify_next = 0
        self.propagation_failures = 0
        self.lose_upload_answers = 0
        self.lose_generate_answers = 0
        self.fail_next: dict[str, int] = {}
        self.created: list[KeyEvent] = []
        self.deleted: list[KeyEvent] = []
        self.high_water: dict[str, int] = {}
        self.cap_rejections = 0
        self.tokens: dict[str, TokenGrant] = {}  # every token ever minted, expired ones too
        self.call_log: list[tuple[str, str, str]] = []  # (call, account, signer key id)
        self._pending_propagation: dict[str, int] = {}

    # -- set-up and inspection (no call counted) ---------------------------------------------

    def add_account(
        self, account: str, *, cap: int = 5, role: Role = "member", organisation: str = "default"
    ) -> None:
        """A service account with hash (and name) ``account``; nothing if it exists."""
        if account not in self._accounts:
            self._accounts[account] = self.sandbox.add_account(
                account, account, key_cap=cap, role=role, organisation=organisation
            )

    @property
    def accounts(self) -> dict[str, _Account]:
        """Every account by hash, with its keys and cap as they are now (a copy)."""
        with self.sandbox.lock:
            return {
                name: _Account({k.key_id: k for k in acct.keys}, acct.key_cap)
                for name, acct in self._accounts.items()
            }

    def add_key(
        self, account: str, public_line: str, title: str, *, origin: Origin = "uploaded"
    ) -> RemoteKey:
        """Register a key as a human admin would (outside the rotator, no cap check)."""
        key_id = keys.key_id_of_line(public_line)
        return self._commit(account, key_id, public_line, title, origin, by="human")

    def remove_key(self, account: str, key_id: str) -> None:
        """Delete a key as a human admin would; KeyError if the account has no such key."""
        acct = self._accounts[account]
        found = [k for k in self.sandbox.keys_of(account) if k.key_id == key_id]
        if not found:
            raise KeyError(key_id)
        self.sandbox.delete_key(acct, found[0].key_hash)
        self.deleted.append(
            KeyEvent(account, key_id, found[0].title, self.clock(), self.calls.count, by="human")
        )

    def keys_of(self, account: str) -> list[RemoteKey]:
        return self.sandbox.keys_of(account)

    def key_ids(self, account: str) -> set[str]:
        return {k.key_id for k in self.sandbox.keys_of(account)}

    def authenticates(self, account: str, private_text: str) -> bool:
        """Whether a consumer holding this private key can use it at Encord now."""
        try:
            kp = keys.load_private(private_text)
        except Exception:
            return False
        return kp.key_id in self.key_ids(account) and kp.key_id not in self.never_verify

    def bearer_works(self, token: str) -> bool:
        """Whether Encord accepts this bearer token now (the store's rule: until it expires)."""
        owner, refusal = self.sandbox.token_owner(token)
        return owner is not None and not refusal

    def token_valid(self, account: str, token: str) -> bool:
        """The engine's invariant for its bearer token, stricter than Encord: the token works
        (:meth:`bearer_works`), is ``account``'s, and the key that minted it still exists.
        Encord publishes no rule tying a token to its key, so the engine keeps one minted with
        a live key rather than lean on a revoked key's token working on."""
        grant = self.tokens.get(token)
        return (
            grant is not None
            and grant.account == account
            and self.bearer_works(token)
            and grant.minted_with in self.key_ids(account)
        )

    def registry(self, account_hash: str, signer: KeyPair) -> FakeRegistry:
        """A :data:`rotator.core.engine.RegistryFactory`: a registry signed by ``signer``."""
        return FakeRegistry(self, account_hash, signer)

    # -- internals: FakeRegistry's calls, on the store's rules --------------------------------

    def _admit(self, call: str, account: str, signer_key_id: str) -> None:
        """Authenticate the signer, then authorise it on ``account`` as the sandbox does:
        401 unknown or deleted key, 404 unknown account, 403 not allowed to manage it."""
        principal = self.sandbox.owner_of(signer_key_id)
        if principal is None:
            raise AccessDenied(f"fake Encord {call}: HTTP 401", status=401)
        if call in _PART1_CALLS:
            return
        target = self.sandbox.account_by_hash(account)
        if target is None:
            if call == "list_keys":  # as the real client tells it (it cannot tell more)
                raise KeyManagementUnavailable(f"fake Encord {call}: HTTP 404", status=404)
            raise NotFound(f"fake Encord {call}: HTTP 404")
        if not may_manage(principal, target):
            raise AccessDenied(f"fake Encord {call}: HTTP 403", status=403)

    def _known(self, key_id: str) -> bool:
        """Whether a request signed by this key authenticates (any account's key, not deleted)."""
        return self.sandbox.owner_of(key_id) is not None

    def _commit(
        self,
        account: str,
        key_id: str,
        public_line: str,
        title: str,
        origin: Origin,
        *,
        by: str = "rotator",
    ) -> RemoteKey:
        """Register a key whose room was checked (no cap check here; a duplicate is refused)."""
        acct = self._accounts[account]
        try:
            key = self.sandbox.add_key(
                acct, title=title, public_line=public_line, origin=origin, enforce_cap=False
            )
        except Refused as refused:
            raise _rejected(refused) from None
        assert key.key_id == key_id
        self.high_water[account] = max(self.high_water.get(account, 0), len(acct.keys))
        seq = self.calls.count + 1
        self.created.append(KeyEvent(account, key_id, title, self.clock(), seq, by=by))
        if by == "human":
            return key
        if self.never_verify_new or self.never_verify_next > 0:
            self.never_verify_next = max(0, self.never_verify_next - 1)
            self.never_verify.add(key_id)
        if self.propagation_failures:
            self._pending_propagation[key_id] = self.propagation_failures
        return key

    def _check_room(self, account: str, public_line: str | None) -> None:
        """The store's refusal of a new key (invalid, duplicate, or over the cap if enforced)."""
        try:
            self.sandbox.check_new_key(
                self._accounts[account], public_line, enforce_cap=self.enforce_cap
            )
        except Refused as refused:
            if refused.code == "KEY_LIMIT_REACHED":
                self.cap_rejections += 1
            raise _rejected(refused) from None

    def _delete(self, account: str, key_hash: str) -> RemoteKey:
        """Delete ``account``'s key by hash; NotFound (404) if it has none such."""
        deleted = self.sandbox.delete_key(self._accounts[account], key_hash)
        if deleted is None:
            raise NotFound("fake Encord delete_key: HTTP 404")
        return deleted

    def _mint(self, signer_key_id: str) -> str:
        """A bearer token for the signer's account, living ``bearer_lifetime``."""
        principal = self.sandbox.owner_of(signer_key_id)
        assert principal is not None, "minting for a signer that was not admitted"
        token = self.sandbox.mint_token(principal, self.bearer_lifetime.total_seconds())
        self.tokens[token] = TokenGrant(
            principal.account_hash, signer_key_id, self.clock() + self.bearer_lifetime
        )
        return token


class FakeRegistry:
    """One account's key management, every call authenticated by its signer key."""

    def __init__(self, encord: FakeEncord, account: str, signer: KeyPair) -> None:
        self.encord = encord
        self.account = account
        self.signer = signer
        self.closed = False

    def __repr__(self) -> str:
        return f"FakeRegistry(account={self.account!r}, signer={self.signer.key_id[:12]})"

    def _enter(self, call: str) -> None:
        enc = self.encord
        assert not self.closed, "registry used after close()"
        enc.call_log.append((call, self.account, self.signer.key_id))
        left = enc.fail_next.get(call, 0)
        if left:
            enc.fail_next[call] = left - 1
            raise RegistryUnavailable(f"fake Encord {call}: HTTP 503 (injected)")
        enc.calls.before(f"encord.{call}", RegistryUnavailable)
        enc._admit(call, self.account, self.signer.key_id)

    def list_keys(self, known: Sequence[KnownKey] = ()) -> list[RemoteKey]:
        """Every key of the account (the fake lists, like the API: ``known`` is not needed)."""
        self._enter("list_keys")
        listed = self.encord.keys_of(self.account)
        self.encord.calls.after("encord.list_keys")
        return listed

    def upload_key(self, title: str, public_line: str) -> RemoteKey | AwaitingPerson:
        self._enter("upload_key")
        enc = self.encord
        enc._check_room(self.account, public_line)
        key_id = keys.key_id_of_line(public_line)
        key = enc._commit(self.account, key_id, public_line, title, "uploaded")
        lost = enc.lose_upload_answers > 0 or enc.calls.lost_answer()
        enc.lose_upload_answers = max(0, enc.lose_upload_answers - 1)
        enc.calls.after("encord.upload_key")
        if lost:
            raise AmbiguousWrite("fake Encord upload_key: answer lost and the list unavailable")
        return key

    def generate_key(self, title: str) -> GeneratedKey | AwaitingPerson:
        self._enter("generate_key")
        enc = self.encord
        enc._check_room(self.account, None)
        pair = keys.generate(comment=title)
        key = enc._commit(self.account, pair.key_id, pair.public_line, title, "generated")
        lost = enc.lose_generate_answers > 0 or enc.calls.lost_answer()
        enc.lose_generate_answers = max(0, enc.lose_generate_answers - 1)
        enc.calls.after("encord.generate_key")
        if lost:
            raise AmbiguousWrite("fake Encord generate_key: answer lost")
        return GeneratedKey(key=key, private_openssh=pair.private_openssh)

    def delete_key(self, key_hash: str) -> AwaitingPerson | None:
        self._enter("delete_key")
        enc = self.encord
        key = enc._delete(self.account, key_hash)
        enc.deleted.append(
            KeyEvent(self.account, key.key_id, key.title, enc.clock(), enc.calls.count + 1)
        )
        enc.calls.after("encord.delete_key")
        return None

    def verify(self, key: KeyPair) -> None:
        """A whoami signed by ``key`` (not by the registry's signer)."""
        enc = self.encord
        enc.call_log.append(("verify", self.account, key.key_id))
        enc.calls.before("encord.verify", RegistryUnavailable)
        enc.calls.after("encord.verify")
        if not enc._known(key.key_id) or key.key_id in enc.never_verify:
            raise AccessDenied("fake Encord verify: HTTP 401", status=401)
        left = enc._pending_propagation.get(key.key_id, 0)
        if left:
            enc._pending_propagation[key.key_id] = left - 1
            raise AccessDenied("fake Encord verify: HTTP 401 (not propagated yet)", status=401)

    def bearer_token(self) -> BearerToken:
        self._enter("bearer_token")
        enc = self.encord
        token = enc._mint(self.signer.key_id)
        enc.calls.after("encord.bearer_token")
        return BearerToken(token=token)

    def close(self) -> None:
        self.closed = True


# --- a whole world: clock, Vault, Encord, one account, an engine builder ----------------------


def default_policy(**overrides: Any) -> Policy:
    """The policy of the issue: 90 d keys rotated 14 d early, 24 h grace, cap 5."""
    values: dict[str, Any] = {
        "key_ttl": timedelta(days=90),
        "rotate_before": timedelta(days=14),
        "grace": timedelta(hours=24),
        "key_cap": 5,
        "kinds": ("ssh-key",),
        "bearer": True,
        "bearer_ttl": timedelta(hours=1),
        "check_interval": timedelta(minutes=5),
        "jitter": timedelta(seconds=30),
    }
    values.update(overrides)
    return Policy(**values)


@dataclass
class World:
    """Everything an engine talks to, shared by every Engine a test builds (restarts)."""

    clock: FakeClock
    calls: Calls
    store: FakeStore
    encord: FakeEncord
    policy: Policy
    account: Account = ACCOUNT
    bootstrap_key: KeyPair | None = None
    hook: Callable[[str], None] | None = None
    verify_attempts: int = 5

    def engine(self, *, policy: Policy | None = None) -> Engine:
        """A NEW engine over the same fakes (what a restarted daemon would build)."""
        return Engine(
            account=self.account,
            store=self.store,
            registry_factory=self.encord.registry,
            policy=policy or self.policy,
            clock=self.clock,
            sleep=self.clock.sleep,
            hook=self.hook,
            verify_attempts=self.verify_attempts,
            verify_delay=0.5,
        )

    def rel(self, name: str) -> str:
        return f"{self.account.name}/{name}"

    def state(self) -> AccountState:
        """The state record as it is in the fake Vault now (read without counting a call)."""
        latest = self.store.paths.get(self.rel(STATE_NAME))
        if not latest:
            return AccountState()
        return from_dict(latest[-1].data, latest[-1].version, account=self.account.name)

    def add_foreign_key(self, title: str = "break-glass (alice)") -> RemoteKey:
        """A human's key on the account: counts against the cap, never the rotator's."""
        return self.encord.add_key(self.account.hash, keys.generate().public_line, title)


def make_world(policy: Policy | None = None, *, cap: int = 5, bootstrap: bool = True) -> World:
    """Fakes for account ``alpha`` (hash ``sa-alpha``) with an admin-made key registered and,
    unless ``bootstrap=False``, adopted through :func:`rotator.core.admin.bootstrap`."""
    clock = FakeClock()
    calls = Calls()
    store = FakeStore(clock, calls)
    encord = FakeEncord(clock, calls)
    policy = policy or default_policy(key_cap=cap)
    encord.add_account(ACCOUNT.hash, cap=cap)
    admin_key = keys.generate(comment="admin")
    encord.add_key(ACCOUNT.hash, admin_key.public_line, "bootstrap key (made by admin)")
    world = World(
        clock=clock, calls=calls, store=store, encord=encord, policy=policy, bootstrap_key=admin_key
    )
    if bootstrap:
        admin.bootstrap(world.engine().context, admin_key.private_openssh)
    return world
