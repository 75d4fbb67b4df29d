"""The steps of one rotation, the same for every credential kind (what differs is in
:mod:`rotator.core.kinds`)::

    intent (state) -> register (Encord) -> registered (state) -> verify (Encord, signed by the
    new key) -> promote (consumer path, then state: old key retiring with its grace deadline)

Every step that calls out is preceded by a check-and-set write of the record that says what
is about to happen and followed by one that says it happened, so a check stopped anywhere
leaves a record from which :func:`resume` finishes the rotation or rolls it back.
``run.hook(step)`` is called after every outside call.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import structlog

from rotator.core import keys, transitions
from rotator.core.cleanup import delete_key
from rotator.core.context import Run
from rotator.core.errors import (
    AccessDenied,
    ClockSkew,
    CorruptState,
    KeyFormatError,
    RegistryRejected,
)
from rotator.core.intake import handover_hint
from rotator.core.keys import KeyPair
from rotator.core.kinds import Held, spec
from rotator.core.policy import Blocked, owned_title_prefix
from rotator.core.ports import AwaitingPerson
from rotator.core.state import AccountState, KeyRecord, LastRun, Pending

log = structlog.get_logger("rotator.engine")


@dataclass(frozen=True, slots=True)
class Verifier:
    """Step 3: a signed whoami with the new key, retried with back-off while Encord answers
    401 (a new key can take a moment to propagate)."""

    attempts: int
    delay: float
    sleep: Callable[[float], None]

    def __call__(self, run: Run, kp: KeyPair) -> bool:
        for attempt in range(self.attempts):
            try:
                run.registry.verify(kp)
                return True
            except ClockSkew:
                raise  # not the key's fault: the check fails, the next one resumes
            except AccessDenied as exc:
                if exc.status == 403:
                    return True  # authenticated, only lacks permission for the probe call
                log.info("key.verify_retry", key_id=kp.key_id, attempt=attempt + 1)
                if attempt + 1 < self.attempts:
                    self.sleep(self.delay * (2**attempt))
        return False


def start(run: Run, kind: str, reason: str, verify: Verifier) -> str:
    """Record the intent of a new rotation of ``kind``, then carry it through."""
    started = time.monotonic()
    now = run.now()
    prefix = owned_title_prefix(run.policy.instance, run.account.name)
    title = f"{prefix}{now:%Y%m%dT%H%M%S}Z-{secrets.token_hex(3)}"
    intent = spec(kind).intent(title, reason, now)
    current = run.state.kind(kind).current
    run.save(transitions.begin(run.state, kind, intent))
    run.hook("after_intent")
    log.info(
        "rotation.started",
        kind=kind,
        reason=reason,
        key_id=intent.key_id,
        old_key_id=current.key_id if current else None,
    )
    return resume(run, kind, verify, started=started)


def resume(run: Run, kind: str, verify: Verifier, *, started: float | None) -> str:
    """Drive the rotation in flight from its recorded phase to the end (or roll it back)."""
    pending = run.state.kind(kind).pending
    assert pending is not None
    if pending.phase == "intent":
        registered = _register(run, kind, pending, started)
        if isinstance(registered, str):
            return registered
        pending = registered
    assert pending.key_id is not None and pending.private_key is not None
    if pending.key_id not in run.remote:
        return _finish(
            run,
            kind,
            "rolled_back",
            "pending_key_gone_at_encord",
            started=started,
            key_id=pending.key_id,
        )
    consumer = run.consumers.get(kind)
    if consumer is not None and consumer.data and consumer.data.get("key_id") == pending.key_id:
        # Stopped after writing Vault: only the record is behind.
        return _promoted(run, kind, pending, consumer.created_time, started)
    try:
        kp = keys.load_private(pending.private_key, comment=pending.title)
    except KeyFormatError as exc:
        # Only a hand-edited record gets here: say which record, and touch nothing.
        raise CorruptState(
            f"state record for account '{run.account.name}': pending {kind} unreadable ({exc})"
        ) from None
    if not verify(run, kp):
        delete_key(run, run.remote[pending.key_id], kind=kind)
        run.hook("after_delete_unverified")
        return _finish(
            run,
            kind,
            "failed",
            pending.reason,
            started=started,
            key_id=pending.key_id,
            error="new key never authenticated",
        )
    log.info("key.verified", kind=kind, key_id=pending.key_id)
    run.hook("after_verify")
    return _promote(run, kind, pending, started)


def blocked(run: Run, action: Blocked) -> str:
    """A rotation may not start (no room at Encord, or no key to sign with): say so, and
    record it once (and answer a ``rotator rotate`` waiting for it)."""
    log.warning(f"rotation.{action.reason}", kind=action.kind, detail=action.detail)
    if action.reason == "blocked_by_cap":
        run.rotations.append((action.kind, action.reason))
        run.context.tell("rotation.blocked_by_cap", kind=action.kind, hint=one_line(action.detail))
    new = transitions.blocked(
        run.state, action.kind, action.reason, detail=action.detail, at=run.now()
    )
    if new != run.state:
        run.save(new)
    return action.reason


def _register(run: Run, kind: str, pending: Pending, started: float | None) -> Pending | str:
    """Step 2. Returns the registered pending record, or the outcome when it stops here
    (rolled back, blocked, or waiting for a person to register the key)."""
    how = spec(kind)
    lost = how.lost(pending, run.remote)
    if lost:
        # Encord generated it but its answer (with the private key) was lost. The roll-back
        # is recorded before the deletes: a stop in between leaves keys with our title that
        # no record explains, which the next check deletes as orphans. (Recorded after, a
        # stop in between would leave the intent, and resuming it would generate a second
        # key under the same title.)
        outcome = _finish(run, kind, "rolled_back", "generate_answer_lost", started=started)
        for k in lost:
            if delete_key(run, k, kind=kind):
                log.warning("key.orphan_deleted", kind=kind, key_id=k.key_id, reason="answer_lost")
        run.hook("after_delete_lost")
        return outcome
    held = how.adoptable(pending, run.remote)
    if held is None:
        cap = run.policy.key_cap
        if len(run.remote) + 1 > cap:
            log.warning("rotation.blocked_by_cap", kind=kind, keys_held=len(run.remote))
            return _finish(
                run,
                kind,
                "blocked_by_cap",
                pending.reason,
                started=started,
                error=f"{len(run.remote)}/{cap} keys held",
            )
        try:
            answer = how.register(run.registry, pending)
        except RegistryRejected as exc:
            outcome = "blocked_by_cap" if exc.code == "KEY_LIMIT_REACHED" else "failed"
            if outcome == "blocked_by_cap":
                log.warning("rotation.blocked_by_cap", kind=kind, keys_held=len(run.remote))
            return _finish(
                run,
                kind,
                outcome,
                pending.reason,
                started=started,
                key_id=pending.key_id,
                error=str(exc),
            )
        if isinstance(answer, AwaitingPerson):
            return _ask_to_register(run, kind, pending, answer)
        held = answer
        run.hook("after_register")
        run.remote[held.key.key_id] = held.key
    return _record_registered(run, kind, held)


def _ask_to_register(run: Run, kind: str, pending: Pending, answer: AwaitingPerson) -> str:
    """A person must add the key. The intent stays recorded; every check asks again, and the
    listing (a signed whoami with the new key) shows when a person has added it. Or the
    person creates a key in the UI under the same title and hands it over (key intake)."""
    handover = handover_hint(run.account.name)
    log.warning(
        "key.registration_required",
        kind=kind,
        key_id=pending.key_id,
        public_key=pending.public_key,
        title=pending.title,
        account_hash=run.account.hash,
        hint=answer.hint,
        or_hand_over=handover,
    )
    run.context.tell(
        "key.registration_required",
        kind=kind,
        key_id=pending.key_id,
        title=pending.title,
        public_key=pending.public_key,
        hint=f"{answer.hint}; or create a key in the UI under this title and hand it over: "
        f"{handover}",
    )
    return "awaiting_registration"


def _record_registered(run: Run, kind: str, held: Held) -> Pending:
    run.save(transitions.registered(run.state, kind, held.key, held.private_openssh))
    run.hook("after_registered_recorded")
    log.info("key.registered", kind=kind, key_id=held.key.key_id, key_hash=held.key.key_hash)
    registered = run.state.kind(kind).pending
    assert registered is not None
    return registered


def _new_record(run: Run, kind: str, pending: Pending, issued: datetime) -> KeyRecord:
    assert pending.key_id and pending.key_hash and pending.public_key and pending.private_key
    return KeyRecord(
        key_id=pending.key_id,
        key_hash=pending.key_hash,
        public_key=pending.public_key,
        title=pending.title,
        origin=spec(kind).origin,
        issued_at=issued,
        expires_at=issued + run.policy.key_ttl,
        private_key=pending.private_key,
    )


def _promote(run: Run, kind: str, pending: Pending, started: float | None) -> str:
    """Step 4: the new key becomes the newest consumer version, then the record follows."""
    now = run.now()
    record = _new_record(run, kind, pending, now)
    # The version it replaces, as the snapshot read it (an idle recheck may have skipped it).
    consumer = run.consumers[kind] if kind in run.consumers else run.context.read(kind)
    version = run.context.publish(kind, record, over=consumer)
    run.hook("after_promote_vault")
    log.info(
        "vault.written",
        kind=kind,
        path=run.context.rel(kind),
        vault_version=version,
        key_id=record.key_id,
    )
    return _promoted(run, kind, pending, now, started, record=record)


def _promoted(
    run: Run,
    kind: str,
    pending: Pending,
    written_at: datetime,
    started: float | None,
    *,
    record: KeyRecord | None = None,
) -> str:
    """The record catches up with a promotion (consumers got the key at ``written_at``)."""
    if record is None:
        record = _new_record(run, kind, pending, written_at)
    current = run.state.kind(kind).current
    old_id = current.key_id if current is not None and current.key_id != record.key_id else None
    promoted = transitions.promote(run.state, kind, record, at=written_at, grace=run.policy.grace)
    outcome = _finish(
        run,
        kind,
        "rotated",
        pending.reason,
        started=started,
        key_id=record.key_id,
        old_key_id=old_id,
        base=promoted,
    )
    run.hook("after_promote_state")
    return outcome


def one_line(text: str | None, limit: int = 300) -> str | None:
    """``text`` as one short line for a person's message (None stays None)."""
    return " ".join(text.split())[:limit] or None if text else None


def _finish(
    run: Run,
    kind: str,
    outcome: str,
    reason: str,
    *,
    started: float | None,
    key_id: str | None = None,
    error: str | None = None,
    old_key_id: str | None = None,
    base: AccountState | None = None,
) -> str:
    """Record how the attempt ended (one write, over ``base``: the record as last written,
    or a change of it not written yet) and log its canonical line."""
    last = LastRun(outcome=outcome, at=run.now(), reason=reason, key_id=key_id, error=error)
    run.save(transitions.finish(run.state if base is None else base, kind, last))
    run.rotations.append((kind, outcome))
    if outcome in ("failed", "blocked_by_cap"):
        event = "rotation.failed" if outcome == "failed" else "rotation.blocked_by_cap"
        run.context.tell(event, kind=kind, key_id=key_id, hint=one_line(error))
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
