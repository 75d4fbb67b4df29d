"""The check of one account, written against two Protocols: a key Registry and a SecretStore.

One :meth:`Engine.check`:

0. intake: a key a person handed over at ``{NAME}/incoming`` is adopted or refused, and the
   path cleared (:mod:`rotator.core.intake`);
1. snapshot: read the state record, list the account's keys at Encord (signed by the current
   key), read the key ids at the newest versions of the consumer paths;
2. :func:`rotator.core.policy.plan` decides, purely, what is due;
3. each action is carried out by its step: a rotation (:mod:`rotator.core.rotation`, which
   resumes one left half done too), clean-up (:mod:`rotator.core.cleanup`), the bearer token
   (:mod:`rotator.core.bearer`). Every step that calls out is preceded by a check-and-set
   write of the state record that says what is about to happen, and followed by one that
   says it happened: a crash anywhere leaves a record from which the next check finishes or
   rolls back (``ResumeRotation``), Vault's write-ahead idea applied to Encord;
4. when a private key may have been let go, the purge (:mod:`rotator.core.purge`) destroys
   the older Vault versions that still hold it.

``hook(step)`` is called after every outside call so tests can stop the engine there.
Bootstrap, ``rotator rotate`` requests and status are :mod:`rotator.core.admin`'s.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog

from rotator.core import bearer, cleanup, compromise, intake, purge, rotation
from rotator.core.context import AccountContext, Run
from rotator.core.errors import AccessDenied, RotatorError, TransientError
from rotator.core.holds import Deferred, Paused
from rotator.core.kinds import known_keys
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
    plan,
)
from rotator.core.ports import NO_NOTICES, Notices, RegistryFactory, SecretStore, VersionedData
from rotator.core.state import AccountState
from rotator.core.vocab import Account, rfc3339

log = structlog.get_logger("rotator.engine")


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


def expiring_soon(run: Run) -> None:
    """Warn of each current key with less than a quarter of ROTATOR_ROTATE_BEFORE left
    (3.5 days by default): rotations have not succeeded for most of the margin, and consumers
    fail when it runs out. ``key.expiring_soon`` at every check, and a person is told."""
    now = run.now()
    for kind, held in sorted(run.state.kinds.items()):
        current = held.current
        if current is None or current.expires_at - now >= run.policy.rotate_before / 4:
            continue
        log.warning(
            "key.expiring_soon",
            kind=kind,
            key_id=current.key_id,
            expires_at=rfc3339(current.expires_at),
        )
        run.context.tell(
            "key.expiring_soon",
            kind=kind,
            key_id=current.key_id,
            title=current.title,
            expires_at=current.expires_at,
            hint="see why rotations fail: rotator status, and the rotation.finished lines",
        )


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
        notices: Notices = NO_NOTICES,
    ) -> None:
        """``consumer_recheck``: how often an idle check re-reads the consumer paths to catch
        a hand-edited newest version (0: every check). A check with a rotation in flight
        always reads them, and a promotion always reads the version it replaces.
        ``notices``: who to tell when a person is needed (:class:`Notices`)."""
        # The store remembers what each version it wrote or read holds: the purge then reads
        # only versions it has not seen (rotator.core.purge).
        self._seen = purge.Seen(store)
        self.context = AccountContext(
            account=account,
            store=self._seen,
            registry_factory=registry_factory,
            policy=policy,
            clock=clock,
            notices=notices,
        )
        self.hook = hook or (lambda step: None)
        self.verify = rotation.Verifier(attempts=verify_attempts, delay=verify_delay, sleep=sleep)
        self.consumer_recheck = consumer_recheck
        self._consumers_read_at: datetime | None = None
        # The purge's memory (see rotator.core.purge): the record's version as this engine's
        # last check left it (None: no check yet), and whether older versions may still hold
        # a key let go.
        self._left_version: int | None = None
        self._purge_pending = False

    @property
    def account(self) -> Account:
        return self.context.account

    @property
    def store(self) -> SecretStore:
        return self.context.store

    @property
    def registry_factory(self) -> RegistryFactory:
        return self.context.registry_factory

    @property
    def policy(self) -> Policy:
        return self.context.policy

    def clock(self) -> datetime:
        return self.context.clock()

    def load_state(self) -> AccountState:
        return self.context.load_state()

    # --- snapshot ---------------------------------------------------------------------------

    @contextmanager
    def _open(self) -> Iterator[Run | None]:
        ctx = self.context
        state = ctx.load_state()
        signer = ctx.signer_key(state)
        if signer is None:
            yield None
            return
        with ctx.registry(signer) as registry:
            remote = {k.key_id: k for k in registry.list_keys(known_keys(state))}
            consumers: dict[str, VersionedData | None] = {}
            now = ctx.clock()
            pending = any(ks.pending is not None for ks in state.kinds.values())
            last = self._consumers_read_at
            if pending or last is None or now - last >= self.consumer_recheck or now < last:
                kinds = sorted(set(ctx.policy.kinds) | set(state.kinds))
                consumers = {kind: ctx.read(kind) for kind in kinds}
                self._consumers_read_at = now
            yield Run(
                context=ctx,
                registry=registry,
                hook=self.hook,
                state=state,
                remote=remote,
                consumers=consumers,
            )

    def _snapshot(self, run: Run) -> Snapshot:
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
        if not dry_run and not stop():
            self._take_incoming(result)
        with self._open() as run:
            if run is None:
                log.warning(
                    "account.not_bootstrapped",
                    hint="run 'rotator bootstrap NAME --private-key-file F' once",
                )
                result.outcomes.append("not_bootstrapped")
                return result
            if run.state.compromised and not dry_run:
                # Before planning: a leaked key in flight is never resumed into use.
                result.outcomes += compromise.settle(run)
            actions = self._decide(run, force)
            result.actions = actions
            if dry_run:
                log.info("plan.decided", dry_run=True, actions=describe(actions))
                return result
            if run.state.version != self._left_version or self._purge_pending:
                # First check, someone else wrote the record, or a purge is owed.
                self._purge_pending = True
                if not stop():
                    self._purge(run)
            stopped = False
            try:
                for action in actions:
                    if stop() and not isinstance(action, Wait):
                        log.info("check.stopped_early", remaining=len(actions))
                        stopped = True
                        break
                    outcome = self._execute(run, action)
                    if outcome:
                        result.outcomes.append(outcome)
                    if isinstance(action, Wait):
                        result.next_due = action.until
                if run.state.compromised and not stopped:
                    result.outcomes += compromise.settle(run)  # a leaked key just rotated out
            finally:
                self._purge_pending = self._purge_pending or run.purge_due
            if run.purge_due and not stopped:
                self._purge(run)  # this check let a key go
            expiring_soon(run)
            self._left_version = run.state.version
            result.keys_held = len(run.remote)
            result.rotations += run.rotations
            result.state = run.state
        return result

    def _decide(self, run: Run, force: frozenset[str]) -> list[Action]:
        """This check's plan: rotations asked for (``rotator rotate``) and leaked keys'
        (``rotator revoke``) forced, and a leaked key's rotation planned past a pause."""
        leaked = compromise.to_rotate(run.state)
        force = force | run.state.requested | leaked
        actions = plan(self._snapshot(run), self.policy, self.clock(), force=force)
        if leaked and run.state.paused is not None:
            actions = (
                compromise.while_paused(self._snapshot(run), self.policy, self.clock(), leaked)
                + actions
            )
        return actions

    def _take_incoming(self, result: CheckResult) -> None:
        """A key a person handed over at ``{NAME}/incoming`` (:mod:`rotator.core.intake`),
        before the snapshot, so the check goes on from the record as it leaves it. A failure
        is logged and the check goes on: the path is left for the next one."""
        try:
            outcome = intake.take_incoming(self.context)
        except RotatorError as exc:  # Vault or Encord did not answer, or refused
            log.warning("key.intake_failed", error_kind=exc.kind, error=str(exc))
            return
        if outcome is not None:
            result.outcomes.append(outcome)
        if outcome == "adopted":
            result.rotations.append((intake.KIND, "rotated"))

    def _purge(self, run: Run) -> None:
        """Purge (:mod:`rotator.core.purge`) only when it may find something: before the
        actions of this engine's first check (a restart, after a crash anywhere) or of a check
        that finds the record written by someone else since its last one (another replica,
        ``rotator bootstrap``); after the actions of a check that let a key go or deleted an
        orphan; and at every check until a purge found every older version clean. A check
        stopped or failed before its purge leaves it pending for the next one.

        A purge that fails (Vault unavailable, or a policy without ``destroy/``) is logged
        and owed, and the check goes on: it never holds up a rotation or a revocation."""
        self._purge_pending = True  # until this purge has run to its end
        run.purge_due = False
        try:
            self._purge_pending = not purge.purge(run, self._seen)
        except (TransientError, AccessDenied) as exc:
            level = "warning" if isinstance(exc, TransientError) else "error"
            getattr(log, level)("vault.purge_failed", error_kind=exc.kind, error=str(exc))

    def _execute(self, run: Run, action: Action) -> str | None:
        match action:
            case ResumeRotation(kind=kind):
                log.info("rotation.resumed", kind=kind)
                return rotation.resume(run, kind, self.verify, started=None)
            case Rotate(kind=kind, reason=reason, window_opens_at=opens_at):
                if opens_at is not None:
                    current = run.state.kind(kind).current
                    log.warning(
                        "rotation.window_overridden",
                        kind=kind,
                        reason=reason,
                        window_opens_at=opens_at.isoformat(),
                        expires_at=current.expires_at.isoformat() if current else None,
                    )
                return rotation.start(run, kind, reason, self.verify)
            case Deferred(kind=kind, until=until):
                log.debug("rotation.deferred", kind=kind, until=until.isoformat())
                return "deferred"
            case Revoke():
                return cleanup.revoke(run, action)
            case Forget():
                return cleanup.forget(run, action)
            case DeleteOrphan():
                return cleanup.delete_orphan(run, action)
            case Blocked():
                return rotation.blocked(run, action)
            case MintBearer():
                return bearer.mint(run, action)
            case Paused(at=at, by=by, reason=reason):
                log.info("check.paused", paused_at=at.isoformat(), paused_by=by, reason=reason)
                return "paused"
            case Wait():
                return None
