"""Clean-up steps of a check: revoke retiring keys whose grace is over, forget those already
gone, delete orphans; and the one way every step deletes a key at Encord."""

from __future__ import annotations

from contextlib import suppress

import structlog

from rotator.core import transitions
from rotator.core.context import Run
from rotator.core.errors import NotFound
from rotator.core.policy import DeleteOrphan, Forget, Revoke, Snapshot, orphans
from rotator.core.ports import AwaitingPerson
from rotator.core.state import KeyRecord
from rotator.core.vocab import RemoteKey

log = structlog.get_logger("rotator.engine")


def delete_key(run: Run, key: KeyRecord | RemoteKey, *, kind: str | None) -> bool:
    """Delete a key at Encord (one already gone counts as deleted) and drop it from the
    check's view. False when the registrar needs a person to do it: ``key.revocation_required``
    then says which key, and the key stays where it is."""
    answer: AwaitingPerson | None = None
    with suppress(NotFound):
        answer = run.registry.delete_key(key.key_hash)
    if isinstance(answer, AwaitingPerson):
        log.warning(
            "key.revocation_required",
            kind=kind,
            key_id=key.key_id,
            public_key=key.public_key,
            title=key.title,
            account_hash=run.account.hash,
            hint=answer.hint,
        )
        run.context.tell(
            "key.revocation_required",
            kind=kind,
            key_id=key.key_id,
            title=key.title,
            public_key=key.public_key,
            hint=answer.hint,
        )
        return False
    run.remote.pop(key.key_id, None)
    return True


def revoke(run: Run, action: Revoke) -> str:
    """A retiring key's grace is over: delete it at Encord, then drop it from the record. With
    a person to do the deleting, it stays retiring until its 401 shows it gone (``Forget``)."""
    key = action.key
    if not delete_key(run, key, kind=action.kind):
        return "awaiting_revocation"
    run.hook("after_revoke_call")
    run.save(transitions.drop_retiring(run.state, action.kind, key.key_id))
    log.info("key.revoked", kind=action.kind, key_id=key.key_id, reason=action.reason)
    return "revoked"


def forget(run: Run, action: Forget) -> str:
    """A retiring key is gone at Encord already: drop it from the record."""
    run.save(transitions.drop_retiring(run.state, action.kind, action.key_id))
    log.info("key.forgotten", kind=action.kind, key_id=action.key_id, reason=action.reason)
    return "forgotten"


def delete_orphan(run: Run, action: DeleteOrphan) -> str | None:
    """An owned key no record explains (a crashed run's leftover): delete it."""
    # Re-read the record first: a key registered after our snapshot was recorded before it
    # was registered, so a fresh record explains every key that is not a true orphan. The
    # consumer paths too: a key at a newest version is held by consumers, never an orphan.
    fresh = run.context.load_state()
    newest = {}
    for kind in sorted(set(run.policy.kinds) | set(fresh.kinds)):
        v = run.context.read(kind)
        newest[kind] = None if v is None or v.data is None else str(v.data.get("key_id") or "")
    snap = Snapshot(run.account.name, fresh, (action.key,), consumer_key_ids=newest)
    if not orphans(snap, run.policy, run.now()):
        return None
    key = action.key
    if not delete_key(run, key, kind=None):
        return "awaiting_revocation"
    run.hook("after_orphan_delete")
    run.purge_due = True  # a record of an earlier run may have held its private key
    log.warning("key.orphan_deleted", key_id=key.key_id, title=key.title)
    return "orphan_deleted"
