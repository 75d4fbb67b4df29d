"""Compromise response: a key reported leaked (``rotator revoke NAME --key-id ID``).

:func:`report` checks that the key is one of the account's own (current, retiring, or the key
of a rotation in flight; never a stranger's) and records its id in the state record's
``compromised`` set, a check-and-set write. Whoever holds the account's lease acts on it in
its check (:meth:`rotator.core.engine.Engine.check`), the command itself when it gets the
lease, else the daemon at its next check, so a leak reported while a daemon runs is handled
by the same code:

- a **current** key's kind is rotated at once (:func:`to_rotate`: forced, whatever the
  schedule or the rotation window; in a paused account, reported with ``--force``, that
  rotation only: :func:`while_paused`), so consumers reading the newest version get a
  working key; once promoted, the leaked key is retiring and handled as below, in the same
  check;
- a **retiring** key is revoked without waiting for its grace: deleted at Encord (api), or,
  with a person to do it (manual), ``key.revocation_required`` at once, and forgotten once
  its 401 confirms the deletion;
- the key of a **rotation in flight** is deleted at Encord if it got there (or a person is
  asked to), and the rotation rolled back: it is never promoted.

Then its id leaves the set and ``key.compromised_revoked`` is logged; the key having left the
record, the check's purge (:mod:`rotator.core.purge`) destroys every older Vault version that
holds its private key. A current key whose rotation fails (blocked by the cap, a new key that
never authenticates) stays current, and stays reported: consumers keep a working key, and the
next check tries again.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Literal

import structlog

from rotator.core import transitions
from rotator.core.cleanup import delete_key
from rotator.core.context import AccountContext, Run
from rotator.core.errors import ConfigError
from rotator.core.policy import (
    Action,
    Blocked,
    Policy,
    ResumeRotation,
    Rotate,
    Snapshot,
    plan,
)
from rotator.core.state import AccountState, LastRun
from rotator.core.vocab import Outcome

log = structlog.get_logger("rotator.engine")

Role = Literal["current", "retiring", "pending"]


def find(state: AccountState, key_id: str) -> tuple[str, Role] | None:
    """The kind and role of ``key_id`` in the record; None when the record holds no such key."""
    for kind, ks in sorted(state.kinds.items()):
        if ks.current is not None and ks.current.key_id == key_id:
            return kind, "current"
        if any(k.key_id == key_id for k in ks.retiring):
            return kind, "retiring"
        if ks.pending is not None and ks.pending.key_id == key_id:
            return kind, "pending"
    return None


def report(ctx: AccountContext, key_id: str, *, force: bool = False) -> tuple[str, Role]:
    """Record ``key_id`` as leaked (check-and-set). ConfigError (exit 2) when it is not a key
    of this account's record (rotator never deletes a key it does not own), or when the
    account is paused and ``force`` is not given."""
    state = ctx.load_state()
    if state.paused is not None and not force:
        raise ConfigError(
            f"account '{ctx.account.name}' is paused: rotator changes none of its keys; "
            "add --force to rotate and revoke anyway"
        )
    found = find(state, key_id)
    if found is None:
        raise ConfigError(
            f"--key-id: '{key_id[:80]}' is not a key rotator holds for account "
            f"'{ctx.account.name}' (current, retiring or being rotated in); rotator never "
            "deletes a key it does not own: delete a stranger's key in the Encord UI"
        )
    ctx.save_state(state, transitions.compromised(state, key_id))
    kind, role = found
    log.warning("key.compromise_reported", kind=kind, key_id=key_id, role=role)
    return found


def while_paused(
    snapshot: Snapshot, policy: Policy, now: datetime, kinds: frozenset[str]
) -> list[Action]:
    """A paused account whose current key was reported leaked (with ``--force``): the
    rotation of those kinds only, planned as if unpaused; the pause holds every other
    change (other kinds, retiring keys' grace, orphans)."""
    free = replace(snapshot, state=replace(snapshot.state, paused=None))
    return [
        a for a in plan(free, policy, now, force=kinds)
        if isinstance(a, Rotate | ResumeRotation | Blocked) and a.kind in kinds
    ]


def to_rotate(state: AccountState) -> frozenset[str]:
    """The kinds whose current key is reported leaked: rotated now, whatever the schedule."""
    kinds = set()
    for key_id in state.compromised:
        found = find(state, key_id)
        if found is not None and found[1] == "current":
            kinds.add(found[0])
    return frozenset(kinds)


def settle(run: Run) -> list[str]:
    """Revoke every reported key that is no longer current; the outcomes, for the check."""
    outcomes = []
    for key_id in sorted(run.state.compromised):
        found = find(run.state, key_id)
        if found is None:
            outcome = _settled(run, None, key_id, "gone")
        elif found[1] == "retiring":
            outcome = _retiring(run, found[0], key_id)
        elif found[1] == "pending":
            outcome = _pending(run, found[0], key_id)
        else:
            continue  # current: its rotation is forced (to_rotate); settled once promoted
        outcomes.append(outcome)
    return outcomes


def _retiring(run: Run, kind: str, key_id: str) -> str:
    key = next(k for k in run.state.kind(kind).retiring if k.key_id == key_id)
    present = key_id in run.remote
    if present and not delete_key(run, key, kind=kind):
        return "awaiting_revocation"  # a person must delete it; forgotten after its 401
    how = "deleted" if present else "gone"
    run.save(transitions.drop_retiring(run.state, kind, key_id))
    return _settled(run, kind, key_id, how)


def _pending(run: Run, kind: str, key_id: str) -> str:
    remote = run.remote.get(key_id)
    how = "gone"
    if remote is not None:
        how = "deleted" if delete_key(run, remote, kind=kind) else "person_asked"
    last = LastRun(
        outcome=Outcome.ROLLED_BACK.value, at=run.now(), reason="compromised", key_id=key_id
    )
    run.save(transitions.finish(run.state, kind, last))
    run.rotations.append((kind, last.outcome))
    log.warning(
        "rotation.finished", kind=kind, outcome=last.outcome, reason="compromised", key_id=key_id
    )
    return _settled(run, kind, key_id, how)


def _settled(run: Run, kind: str | None, key_id: str, how: str) -> str:
    run.save(transitions.compromise_settled(run.state, key_id))
    log.warning("key.compromised_revoked", kind=kind, key_id=key_id, how=how)
    return "compromised_revoked"
