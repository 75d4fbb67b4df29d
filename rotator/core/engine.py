"""The rotation protocol, written against two Protocols: a key Registry and a SecretStore.

One :meth:`Engine.check` of an account:

1. snapshot: read the state record, list the account's keys at Encord (signed by the current
   key), read the key ids at the newest versions of the consumer paths;
2. :func:`rotator.core.policy.plan` decides, purely, what is due;
3. each action is carried out; every step that calls out is preceded by a check-and-set write
   of the state record that says what is about to happen, and followed by one that says it
   happened. A crash anywhere leaves a record from which the next check finishes or rolls
   back (``ResumeRotation``), Vault's write-ahead idea applied to Encord.

Steps of one rotation (ssh-key; for an api-key Encord generates the key in step 2):
intent (state) -> register (Encord) -> registered (state) -> verify (Encord, signed by the new
key) -> promote (consumer path, then state: old key retiring with its grace deadline).
``hook(step)`` is called after every outside call so tests can stop the engine there.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import structlog

from rotator.core import keys
from rotator.core.errors import (
    AccessDenied,
    CorruptState,
    KeyFormatError,
    NotFound,
    OperatorActionRequired,
    RegistryRejected,
    RotatorError,
)
from rotator.core.keys import KeyPair
from rotator.core.policy import (
    Action,
    Blocked,
    DeleteOrphan,
    Forget,
    MintBearer,
    Policy,
    ResumeRotation,
    Revoke,
    Rotate,
    Snapshot,
    Wait,
    describe,
    orphans,
    owned_title_prefix,
    plan,
)
from rotator.core.ports import Registry, RegistryFactory, SecretStore, VersionedData
from rotator.core.state import (
    STATE_NAME,
    AccountState,
    BearerState,
    KeyRecord,
    LastRun,
    Pending,
    from_dict,
    to_dict,
)
from rotator.core.vocab import Account, BearerToken, GeneratedKey, KeyKind, RemoteKey, rfc3339

log = structlog.get_logger("rotator.engine")

BEARER_PATH = "bearer-token"


class SimulatedCrash(BaseException):
    """Raised by test hooks to stop the engine between two outside calls."""


@dataclass(slots=True)
class CheckResult:
    """What one check did (for logs, metrics and tests)."""

    account: str
    actions: list[Action] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)
    next_due: datetime | None = None
    keys_held: int = 0
    rotations: list[tuple[str, str]] = field(default_factory=list)  # (kind, outcome)
    state: AccountState | None = None  # the record as the check left it


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _ceil_second(t: datetime) -> datetime:
    """A deadline as the record keeps it (RFC 3339, whole seconds): rounded up, never down,
    so truncation can never end a grace period early."""
    whole = t.replace(microsecond=0)
    return whole if whole == t else whole + timedelta(seconds=1)


@dataclass
class _Run:
    """Mutable view of one check: the record as last written and Encord's keys as we know them."""

    state: AccountState
    remote: dict[str, RemoteKey]
    consumers: dict[str, VersionedData | None]
    registry: Registry
    rotations: list[tuple[str, str]] = field(default_factory=list)


class Engine:
    """Runs checks for one account. Not thread-safe: the daemon runs one check at a time each."""

    def __init__(
        self,
        *,
        account: Account,
        store: SecretStore,
        registry_factory: RegistryFactory,
        policy: Policy,
        clock: Callable[[], datetime] = _utcnow,
        sleep: Callable[[float], None] = time.sleep,
        hook: Callable[[str], None] | None = None,
        verify_attempts: int = 5,
        verify_delay: float = 0.5,
        consumer_recheck: timedelta = timedelta(0),
    ) -> None:
        """``consumer_recheck``: how often an idle check re-reads the consumer paths to catch
        a hand-edited newest version (0: every check). A check with a rotation in flight
        always reads them, and a promotion always reads the version it replaces."""
        self.account = account
        self.store = store
        self.registry_factory = registry_factory
        self.policy = policy
        self.clock = clock
        self.sleep = sleep
        self.hook = hook or (lambda step: None)
        self.verify_attempts = verify_attempts
        self.verify_delay = verify_delay
        self.consumer_recheck = consumer_recheck
        self._consumers_read_at: datetime | None = None

    # --- paths ------------------------------------------------------------------------------

    def _rel(self, name: str) -> str:
        return f"{self.account.name}/{name}"

    # --- state ------------------------------------------------------------------------------

    def load_state(self) -> AccountState:
        v = self.store.read(self._rel(STATE_NAME))
        if v is None:
            return AccountState()
        return from_dict(v.data, v.version, account=self.account.name)

    def _save(self, run: _Run, new: AccountState) -> AccountState:
        version = self.store.write(self._rel(STATE_NAME), to_dict(new), cas=run.state.version)
        run.state = replace(new, version=version)
        return run.state

    def _signer(self, state: AccountState) -> KeyPair | None:
        record = state.signer()
        if record is None:
            return None
        try:
            return keys.load_private(record.private_key)
        except KeyFormatError as exc:
            raise CorruptState(
                f"state record for account '{self.account.name}': signer key unreadable ({exc})"
            ) from None

    # --- snapshot ---------------------------------------------------------------------------

    @contextmanager
    def _open(self) -> Iterator[_Run | None]:
        state = self.load_state()
        signer = self._signer(state)
        if signer is None:
            yield None
            return
        registry = self.registry_factory(self.account.hash, signer)
        try:
            remote = {k.key_id: k for k in self._list(state, registry)}
            consumers: dict[str, VersionedData | None] = {}
            now = self.clock()
            pending = any(ks.pending is not None for ks in state.kinds.values())
            last = self._consumers_read_at
            if pending or last is None or now - last >= self.consumer_recheck or now < last:
                consumers = {
                    kind: self.store.read(self._rel(kind)) for kind in self._kinds_in_view(state)
                }
                self._consumers_read_at = now
            yield _Run(state=state, remote=remote, consumers=consumers, registry=registry)
        finally:
            registry.close()

    def _list(self, state: AccountState, registry: Registry) -> list[RemoteKey]:
        """Encord's key list; with the manual registrar (no listing), the keys rotator knows
        of that still authenticate, found by a signed whoami with each."""
        try:
            return registry.list_keys()
        except OperatorActionRequired:
            pass
        probed: list[RemoteKey] = []
        for kind, ks in sorted(state.kinds.items()):
            known: list[tuple[str, str, str, str, str | None, datetime]] = []
            for rec in (ks.current, *ks.retiring):
                if rec is not None:
                    known.append(
                        (
                            rec.key_id,
                            rec.private_key,
                            rec.public_key,
                            rec.title,
                            rec.key_hash,
                            rec.issued_at,
                        )
                    )
            p = ks.pending
            if p is not None and p.key_id and p.private_key and p.public_key:
                known.append(
                    (p.key_id, p.private_key, p.public_key, p.title, p.key_hash, p.started_at)
                )
            for key_id, private, public, title, key_hash, created in known:
                try:
                    registry.verify(keys.load_private(private))
                except AccessDenied as exc:
                    if exc.status != 403:
                        continue  # 401: not (or no longer) registered
                probed.append(
                    RemoteKey(
                        key_hash=key_hash or f"manual:{key_id[:16]}",
                        key_id=key_id,
                        title=title,
                        public_key=public,
                        origin="uploaded" if kind == "ssh-key" else "generated",
                        created_at=created,
                    )
                )
        return probed

    def _kinds_in_view(self, state: AccountState) -> list[str]:
        return sorted(set(self.policy.kinds) | set(state.kinds))

    def _snapshot(self, run: _Run) -> Snapshot:
        ids: dict[str, str | None] = {}
        for kind, v in run.consumers.items():
            ids[kind] = None if v is None or v.data is None else str(v.data.get("key_id") or "")
        return Snapshot(
            account=self.account.name,
            state=run.state,
            remote=tuple(run.remote.values()),
            consumer_key_ids=ids,
        )

    def plan(self, *, force: frozenset[str] = frozenset()) -> list[Action]:
        """What a check would do now; writes nothing."""
        with self._open() as run:
            if run is None:
                return [Blocked(kind=k, reason="not_bootstrapped") for k in self.policy.kinds]
            return plan(self._snapshot(run), self.policy, self.clock(), force=force)

    # --- the check --------------------------------------------------------------------------

    def check(
        self,
        *,
        dry_run: bool = False,
        force: frozenset[str] = frozenset(),
        stop: Callable[[], bool] = lambda: False,
    ) -> CheckResult:
        """One full check: reconcile, revoke, rotate what is due, refresh the bearer token.

        ``stop`` is asked between actions: a stopping daemon ends the check after the step in
        hand, whose record is then complete.
        """
        result = CheckResult(account=self.account.name)
        with self._open() as run:
            if run is None:
                log.warning(
                    "account.not_bootstrapped",
                    hint="run 'rotator bootstrap NAME --private-key-file F' once",
                )
                result.outcomes.append("not_bootstrapped")
                return result
            force = force | run.state.requested
            actions = plan(self._snapshot(run), self.policy, self.clock(), force=force)
            result.actions = actions
            if dry_run:
                log.info("plan.decided", dry_run=True, actions=describe(actions))
                return result
            for action in actions:
                if stop() and not isinstance(action, Wait):
                    log.info("check.stopped_early", remaining=len(actions))
                    break
                outcome = self._execute(run, action)
                if outcome:
                    result.outcomes.append(outcome)
                if isinstance(action, Wait):
                    result.next_due = action.until
            result.keys_held = len(run.remote)
            result.rotations = list(run.rotations)
            result.state = run.state
        return result

    def _execute(self, run: _Run, action: Action) -> str | None:
        if isinstance(action, ResumeRotation):
            log.info("rotation.resumed", kind=action.kind)
            return self._continue(run, action.kind, started=None)
        if isinstance(action, Rotate):
            return self._rotate(run, action.kind, action.reason)
        if isinstance(action, Revoke):
            return self._revoke(run, action)
        if isinstance(action, Forget):
            return self._forget(run, action)
        if isinstance(action, DeleteOrphan):
            return self._delete_orphan(run, action)
        if isinstance(action, Blocked):
            return self._blocked(run, action)
        if isinstance(action, MintBearer):
            return self._mint_bearer(run, action)
        return None

    # --- rotation ---------------------------------------------------------------------------

    def _title(self) -> str:
        now = self.clock()
        return f"{owned_title_prefix(self.account.name)}{now:%Y%m%dT%H%M%S}Z-{secrets.token_hex(3)}"

    def _rotate(self, run: _Run, kind: KeyKind, reason: str) -> str:
        started = time.monotonic()
        title = self._title()
        now = self.clock()
        if kind == "ssh-key":
            kp = keys.generate(comment=title)
            pending = Pending(
                phase="intent",
                title=title,
                reason=reason,
                started_at=now,
                key_id=kp.key_id,
                public_key=kp.public_line,
                private_key=kp.private_openssh,
            )
        else:
            pending = Pending(phase="intent", title=title, reason=reason, started_at=now)
        ks = run.state.kind(kind)
        self._save(run, run.state.with_kind(kind, replace(ks, pending=pending)))
        self.hook("after_intent")
        old = ks.current.key_id if ks.current else None
        log.info(
            "rotation.started", kind=kind, reason=reason, key_id=pending.key_id, old_key_id=old
        )
        return self._continue(run, kind, started=started)

    def _finish(
        self,
        run: _Run,
        kind: KeyKind,
        outcome: str,
        reason: str,
        *,
        started: float | None,
        key_id: str | None = None,
        error: str | None = None,
        clear_pending: bool = True,
        old_key_id: str | None = None,
    ) -> str:
        ks = run.state.kind(kind)
        last = LastRun(outcome=outcome, at=self.clock(), reason=reason, key_id=key_id, error=error)
        new = replace(ks, last=last, pending=None if clear_pending else ks.pending)
        if outcome == "rotated":
            new = replace(new, last_success=last.at)
        # A rotation asked for by `rotator rotate` is answered by this outcome.
        after = replace(run.state, requested=run.state.requested - {kind})
        self._save(run, after.with_kind(kind, new))
        run.rotations.append((kind, outcome))
        level = "info" if outcome == "rotated" else "warning"
        getattr(log, level)(
            "rotation.finished",
            kind=kind,
            outcome=outcome,
            reason=reason,
            key_id=key_id,
            old_key_id=old_key_id,
            error=error,
            duration_ms=None if started is None else round((time.monotonic() - started) * 1000),
        )
        return outcome

    def _continue(self, run: _Run, kind: KeyKind, *, started: float | None) -> str:
        """Drive a pending rotation from its recorded phase to the end (or roll it back)."""
        ks = run.state.kind(kind)
        pending = ks.pending
        assert pending is not None
        reason = pending.reason
        if pending.phase == "intent":
            registered = self._register(run, kind, pending, started)
            if isinstance(registered, str):
                return registered
            pending = registered
        assert pending.key_id is not None and pending.private_key is not None
        if pending.key_id not in run.remote:
            return self._finish(
                run,
                kind,
                "rolled_back",
                "pending_key_gone_at_encord",
                started=started,
                key_id=pending.key_id,
            )
        consumer = run.consumers.get(kind)
        if consumer is not None and consumer.data and consumer.data.get("key_id") == pending.key_id:
            # Crashed after writing Vault: only the record is behind.
            return self._promote_state(run, kind, pending, consumer.created_time, started)
        try:
            kp = keys.load_private(pending.private_key, comment=pending.title)
        except KeyFormatError as exc:
            # Only a hand-edited record gets here: say which record, and touch nothing.
            raise CorruptState(
                f"state record for account '{self.account.name}': pending {kind} "
                f"unreadable ({exc})"
            ) from None
        if not self._verify(run, kp):
            key_hash = pending.key_hash
            assert key_hash is not None
            with suppress(NotFound):
                run.registry.delete_key(key_hash)
            run.remote.pop(pending.key_id, None)
            self.hook("after_delete_unverified")
            return self._finish(
                run,
                kind,
                "failed",
                reason,
                started=started,
                key_id=pending.key_id,
                error="new key never authenticated",
            )
        log.info("key.verified", kind=kind, key_id=pending.key_id)
        self.hook("after_verify")
        return self._promote(run, kind, pending, started)

    def _register(
        self, run: _Run, kind: KeyKind, pending: Pending, started: float | None
    ) -> Pending | str:
        """Step 2. Returns the registered pending record, or the outcome when it stops here
        (rolled back, blocked, or waiting for a person to register the key)."""
        found: RemoteKey | None = None
        if pending.key_id is not None:
            found = run.remote.get(pending.key_id)
        else:
            by_title = [k for k in run.remote.values() if k.title == pending.title]
            if by_title:
                # Encord generated it but its answer (with the private key) was lost. The
                # roll-back is recorded before the deletes: a stop in between leaves keys with
                # our title that no record explains, which the next check deletes as orphans.
                # (Recorded after, a stop in between would leave the intent, and resuming it
                # would generate a second key under the same title.)
                outcome = self._finish(
                    run, kind, "rolled_back", "generate_answer_lost", started=started
                )
                for k in by_title:
                    with suppress(NotFound):
                        run.registry.delete_key(k.key_hash)
                    run.remote.pop(k.key_id, None)
                    log.warning(
                        "key.orphan_deleted", kind=kind, key_id=k.key_id, reason="answer_lost"
                    )
                self.hook("after_delete_lost")
                return outcome
        generated: GeneratedKey | None = None
        if found is None:
            if len(run.remote) + 1 > self.policy.key_cap:
                log.warning("rotation.blocked_by_cap", kind=kind, keys_held=len(run.remote))
                return self._finish(
                    run,
                    kind,
                    "blocked_by_cap",
                    pending.reason,
                    started=started,
                    error=f"{len(run.remote)}/{self.policy.key_cap} keys held",
                )
            try:
                if kind == "ssh-key":
                    assert pending.public_key is not None
                    found = run.registry.upload_key(pending.title, pending.public_key)
                else:
                    generated = run.registry.generate_key(pending.title)
                    found = generated.key
            except OperatorActionRequired:
                # Manual registrar: the intent stays recorded; every check repeats the request
                # and polls (a signed whoami with the new key) until a person has added it.
                log.warning(
                    "key.registration_required",
                    kind=kind,
                    key_id=pending.key_id,
                    public_key=pending.public_key,
                    title=pending.title,
                    account_hash=self.account.hash,
                    hint="add this public key to the service account in the Encord UI",
                )
                return "awaiting_registration"
            except RegistryRejected as exc:
                outcome = "blocked_by_cap" if exc.code == "KEY_LIMIT_REACHED" else "failed"
                if outcome == "blocked_by_cap":
                    log.warning("rotation.blocked_by_cap", kind=kind, keys_held=len(run.remote))
                return self._finish(
                    run,
                    kind,
                    outcome,
                    pending.reason,
                    started=started,
                    key_id=pending.key_id,
                    error=str(exc),
                )
            self.hook("after_register")
            run.remote[found.key_id] = found
        private = pending.private_key if generated is None else generated.private_openssh
        registered = replace(
            pending,
            phase="registered",
            key_id=found.key_id,
            key_hash=found.key_hash,
            public_key=found.public_key,
            private_key=private,
        )
        ks = run.state.kind(kind)
        self._save(run, run.state.with_kind(kind, replace(ks, pending=registered)))
        self.hook("after_registered_recorded")
        log.info("key.registered", kind=kind, key_id=found.key_id, key_hash=found.key_hash)
        return registered

    def _verify(self, run: _Run, kp: KeyPair) -> bool:
        """Step 3: the new key authenticates (retrying 401s for propagation delay)."""
        for attempt in range(self.verify_attempts):
            try:
                run.registry.verify(kp)
                return True
            except AccessDenied as exc:
                if exc.status == 403:
                    return True  # authenticated, only lacks permission for the probe call
                log.info("key.verify_retry", key_id=kp.key_id, attempt=attempt + 1)
                if attempt + 1 < self.verify_attempts:
                    self.sleep(self.verify_delay * (2**attempt))
        return False

    def _consumer_payload(self, record: KeyRecord) -> dict[str, str]:
        return {
            "private_key": record.private_key,
            "public_key": record.public_key,
            "key_id": record.key_id,
            "key_hash": record.key_hash,
            "issued_at": rfc3339(record.issued_at),
            "expires_at": rfc3339(record.expires_at),
        }

    def _new_record(self, kind: KeyKind, pending: Pending, issued: datetime) -> KeyRecord:
        assert pending.key_id and pending.key_hash and pending.public_key and pending.private_key
        return KeyRecord(
            key_id=pending.key_id,
            key_hash=pending.key_hash,
            public_key=pending.public_key,
            title=pending.title,
            origin="uploaded" if kind == "ssh-key" else "generated",
            issued_at=issued,
            expires_at=issued + self.policy.key_ttl,
            private_key=pending.private_key,
        )

    def _promote(self, run: _Run, kind: KeyKind, pending: Pending, started: float | None) -> str:
        """Step 4: the new key becomes the newest consumer version, then the record follows."""
        now = self.clock()
        record = self._new_record(kind, pending, now)
        if kind in run.consumers:
            consumer = run.consumers[kind]
        else:  # not read by this check's snapshot (an idle recheck skipped it)
            consumer = self.store.read(self._rel(kind))
        cas = consumer.version if consumer is not None else 0
        version = self.store.write(self._rel(kind), self._consumer_payload(record), cas=cas)
        self.hook("after_promote_vault")
        log.info(
            "vault.written", kind=kind, path=self._rel(kind), version=version, key_id=record.key_id
        )
        return self._promote_state(run, kind, pending, now, started, record=record)

    def _promote_state(
        self,
        run: _Run,
        kind: KeyKind,
        pending: Pending,
        written_at: datetime,
        started: float | None,
        *,
        record: KeyRecord | None = None,
    ) -> str:
        if record is None:
            record = self._new_record(kind, pending, written_at)
        ks = run.state.kind(kind)
        retiring = list(ks.retiring)
        old_id = None
        if ks.current is not None and ks.current.key_id != record.key_id:
            old_id = ks.current.key_id
            deadline = _ceil_second(written_at + self.policy.grace)
            retiring.append(replace(ks.current, retire_after=deadline))
        new_ks = replace(ks, current=record, retiring=tuple(retiring), pending=None)
        run.state = run.state.with_kind(kind, new_ks)
        outcome = self._finish(
            run,
            kind,
            "rotated",
            pending.reason,
            started=started,
            key_id=record.key_id,
            old_key_id=old_id,
        )
        self.hook("after_promote_state")
        return outcome

    # --- revocation and clean-up ------------------------------------------------------------

    def _revoke(self, run: _Run, action: Revoke) -> str:
        try:
            with suppress(NotFound):
                run.registry.delete_key(action.key.key_hash)
        except OperatorActionRequired:
            # Manual registrar: kept as retiring until the old key's 401 confirms a person
            # deleted it (plan() then forgets it).
            log.warning(
                "key.revocation_required",
                kind=action.kind,
                key_id=action.key.key_id,
                public_key=action.key.public_key,
                title=action.key.title,
                account_hash=self.account.hash,
                hint="delete this key from the service account in the Encord UI",
            )
            return "awaiting_revocation"
        run.remote.pop(action.key.key_id, None)
        self.hook("after_revoke_call")
        ks = run.state.kind(action.kind)
        kept = tuple(k for k in ks.retiring if k.key_id != action.key.key_id)
        self._save(run, run.state.with_kind(action.kind, replace(ks, retiring=kept)))
        log.info("key.revoked", kind=action.kind, key_id=action.key.key_id, reason=action.reason)
        return "revoked"

    def _forget(self, run: _Run, action: Forget) -> str:
        ks = run.state.kind(action.kind)
        kept = tuple(k for k in ks.retiring if k.key_id != action.key_id)
        self._save(run, run.state.with_kind(action.kind, replace(ks, retiring=kept)))
        log.info("key.forgotten", kind=action.kind, key_id=action.key_id, reason=action.reason)
        return "forgotten"

    def _delete_orphan(self, run: _Run, action: DeleteOrphan) -> str | None:
        # Re-read the record first: a key registered after our snapshot was recorded before it
        # was registered, so a fresh record explains every key that is not a true orphan.
        fresh = self.load_state()
        snap = Snapshot(account=self.account.name, state=fresh, remote=(action.key,))
        if not orphans(snap):
            return None
        with suppress(NotFound):
            run.registry.delete_key(action.key.key_hash)
        run.remote.pop(action.key.key_id, None)
        self.hook("after_orphan_delete")
        log.warning("key.orphan_deleted", key_id=action.key.key_id, title=action.key.title)
        return "orphan_deleted"

    def _blocked(self, run: _Run, action: Blocked) -> str:
        log.warning(f"rotation.{action.reason}", kind=action.kind, detail=action.detail)
        if action.reason == "blocked_by_cap":
            run.rotations.append((action.kind, action.reason))
        ks = run.state.kind(action.kind)
        if action.kind in run.state.requested:
            run.state = replace(run.state, requested=run.state.requested - {action.kind})
            ks = replace(ks, last=None)  # force the write below, which records the answer
        if ks.last is None or ks.last.outcome != action.reason:
            last = LastRun(
                outcome=action.reason,
                at=self.clock(),
                reason=action.reason,
                error=action.detail or None,
            )
            self._save(run, run.state.with_kind(action.kind, replace(ks, last=last)))
        return action.reason

    # --- bearer token -----------------------------------------------------------------------

    def _mint_bearer(self, run: _Run, action: MintBearer) -> str:
        signer = run.state.signer()
        assert signer is not None
        kp = keys.load_private(signer.private_key)
        registry = self.registry_factory(self.account.hash, kp)
        try:
            token = registry.bearer_token()
        finally:
            registry.close()
        self.hook("after_bearer_mint")
        now = self.clock()
        expires = now + self.policy.bearer_ttl
        current = self.store.read(self._rel(BEARER_PATH))
        cas = current.version if current is not None else 0
        version = self.store.write(
            self._rel(BEARER_PATH),
            {"token": token.token, "issued_at": rfc3339(now), "expires_at": rfc3339(expires)},
            cas=cas,
        )
        self.hook("after_bearer_vault")
        log.info("vault.written", kind=BEARER_PATH, path=self._rel(BEARER_PATH), version=version)
        bearer = BearerState(issued_at=now, expires_at=expires, minted_with=signer.key_id)
        self._save(run, replace(run.state, bearer=bearer))
        log.info("bearer.minted", reason=action.reason, expires_at=rfc3339(expires))
        return "bearer_minted"

    # --- bootstrap --------------------------------------------------------------------------

    def request_rotation(self, kind: str) -> AccountState:
        """Ask whichever replica holds the account's lease to rotate ``kind`` at its next
        check (``rotator rotate`` while a daemon runs). A check-and-set write of the record."""
        state = self.load_state()
        new = replace(state, requested=state.requested | {kind})
        version = self.store.write(self._rel(STATE_NAME), to_dict(new), cas=state.version)
        return replace(new, version=version)

    def bootstrap(self, private_key_text: str) -> KeyRecord:
        """Adopt a key an admin made: prove it authenticates, store it as the current ssh-key."""
        kp = keys.load_private(private_key_text)
        registry = self.registry_factory(self.account.hash, kp)
        try:
            try:
                listed = {k.key_id: k for k in registry.list_keys()}
            except OperatorActionRequired:
                # Manual registrar: no listing; a signed whoami proves the key is registered.
                registry.verify(kp)
                listed = {
                    kp.key_id: RemoteKey(
                        key_hash=f"manual:{kp.key_id[:16]}",
                        key_id=kp.key_id,
                        title="bootstrap",
                        public_key=kp.public_line,
                        origin="uploaded",
                        created_at=self.clock(),
                    )
                }
        finally:
            registry.close()
        remote = listed.get(kp.key_id)
        if remote is None:
            raise RotatorError(
                f"key {kp.key_id[:12]}... authenticates but is not a key of service account "
                f"'{self.account.hash}'"
            )
        state = self.load_state()
        issued = remote.created_at
        record = KeyRecord(
            key_id=kp.key_id,
            key_hash=remote.key_hash,
            public_key=remote.public_key,
            title=remote.title,
            origin=remote.origin,
            issued_at=issued,
            expires_at=issued + self.policy.key_ttl,
            private_key=kp.private_openssh,
        )
        consumer = self.store.read(self._rel("ssh-key"))
        run = _Run(state=state, remote=listed, consumers={}, registry=_NoRegistry())
        now = self.clock()
        self.store.write(
            self._rel("ssh-key"),
            self._consumer_payload(record),
            cas=consumer.version if consumer is not None else 0,
        )
        ks = state.kind("ssh-key")
        retiring = list(ks.retiring)
        if ks.current is not None and ks.current.key_id != record.key_id:
            deadline = _ceil_second(now + self.policy.grace)
            retiring.append(replace(ks.current, retire_after=deadline))
        last = LastRun(outcome="bootstrapped", at=now, reason="bootstrap", key_id=record.key_id)
        self._save(
            run,
            state.with_kind(
                "ssh-key", replace(ks, current=record, retiring=tuple(retiring), last=last)
            ),
        )
        log.info("account.bootstrapped", key_id=record.key_id, key_hash=record.key_hash)
        return record


class _NoRegistry:
    def list_keys(self) -> list[RemoteKey]:
        raise NotImplementedError

    def upload_key(self, title: str, public_line: str) -> RemoteKey:
        raise NotImplementedError

    def generate_key(self, title: str) -> GeneratedKey:
        raise NotImplementedError

    def delete_key(self, key_hash: str) -> None:
        raise NotImplementedError

    def verify(self, key: KeyPair) -> None:
        raise NotImplementedError

    def bearer_token(self) -> BearerToken:
        raise NotImplementedError

    def close(self) -> None:
        return None
