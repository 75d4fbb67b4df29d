"""The purge: no private key of a key rotator has let go stays readable in Vault.

KV v2 keeps the older versions of every path (up to the mount's ``max_versions``), and rotator
writes private keys to two kinds of path: the consumer paths ``{NAME}/{kind}`` (one key a
version) and the state record ``{NAME}/state`` (the pending, current and retiring keys). A key
leaves the record when it is revoked at Encord, found gone there (deleted by a person, in
manual mode), or rolled back as a pending key; its private half is still in those older
versions until :func:`purge` destroys them (``{mount}/destroy/...``: the data of those
versions only; the paths, their metadata and their other versions stay).

What to destroy is derived from what is readable, never recorded: the *live* keys are the
private keys the newest record holds (pending, current, retiring), and every older version of
the record or of a consumer path that holds any other private key is destroyed. So the purge
needs no write-ahead step of its own: running it again finds only what is left, and a check
stopped anywhere in it leaves nothing the next one cannot find. The newest version of a path
is never destroyed: the newest record holds the live keys by definition, and the newest
version of a consumer path is what consumers read (should it hold a key let go, which only a
rolled-back promotion can leave, it stays until a rotation writes over it, and the purge is
then retried).

Each path is read from its newest version downwards, down to the oldest version Vault still
has (one that does not exist: never written, or pruned by ``max_versions``); no metadata is
needed. Versions deleted or destroyed already are passed over, not stopped at: purging a
rolled-back pending key destroys a version that lies above older ones holding the key that
was current then, which a later purge must still reach.

Reading every version is not free, so the engine purges only when a purge may find something
(:meth:`rotator.core.engine.Engine.check`): on an engine's first check (a restart, after a
crash anywhere), when the record was written by someone else since its last check (another
replica, ``rotator bootstrap``), when this check let a private key go or deleted an orphan,
and until a purge has found every older version clean.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import structlog

from rotator.core.state import STATE_NAME, AccountState, to_dict

if TYPE_CHECKING:
    from rotator.core.context import Run

log = structlog.get_logger("rotator.engine")

PRIVATE_KEY = "private_key"


def held_keys(data: Any) -> dict[str, str | None]:
    """Every private key text in a stored version (anywhere in it: a consumer path's
    ``private_key``, the record's pending, current and retiring keys), with the ``key_id``
    written next to it (None if there is none)."""
    found: dict[str, str | None] = {}
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, Mapping):
            text = item.get(PRIVATE_KEY)
            if isinstance(text, str) and text.strip():
                key_id = item.get("key_id")
                found[text.strip()] = key_id if isinstance(key_id, str) else None
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return found


def live_keys(state: AccountState) -> frozenset[str]:
    """The private keys the record holds: its pending, current and retiring keys."""
    return frozenset(held_keys(to_dict(state)))


def purge(run: Run) -> bool:
    """Destroy every older version of the account's record and consumer paths that holds a
    private key the record no longer holds. True when every older version is clean now;
    False when the newest version of a consumer path holds a key let go (never destroyed)."""
    ctx = run.context
    # The record as this check last read or wrote it is the newest: only the holder of the
    # account's lease writes it.
    live = live_keys(run.state)
    _purge_path(run, ctx.rel(STATE_NAME), run.state.version, live)
    clean = True
    for kind in sorted(set(ctx.policy.kinds) | set(run.state.kinds)):
        newest = ctx.read(kind)
        if newest is None:
            continue
        if newest.data is not None and set(held_keys(newest.data)) - live:
            clean = False  # consumers read it: it stays until a rotation writes over it
        _purge_path(run, ctx.rel(kind), newest.version, live)
    return clean


def _purge_path(run: Run, rel: str, newest: int, live: frozenset[str]) -> None:
    """Destroy the versions below ``newest`` of ``rel`` that hold a key not in ``live``."""
    store = run.context.store
    doomed: dict[str | None, list[int]] = {}  # key id -> the versions holding its key
    versions: list[int] = []
    for version in range(newest - 1, 0, -1):
        old = store.read_version(rel, version)
        if old is None:
            break  # never written, or pruned by max_versions: nothing older is readable
        if old.data is None:
            continue  # deleted or destroyed already
        stale = {text: key_id for text, key_id in held_keys(old.data).items() if text not in live}
        if stale:
            versions.append(version)
            for key_id in set(stale.values()):
                doomed.setdefault(key_id, []).append(version)
    if not versions:
        return
    store.destroy_versions(rel, sorted(versions))
    run.hook("after_purge")
    for key_id, held in sorted(doomed.items(), key=lambda item: str(item[0])):
        log.info("vault.purged", path=rel, versions=sorted(held), key_id=key_id)
