"""The purge: no private key of a key rotator has let go stays readable in Vault.

KV v2 keeps the older versions of every path (up to the mount's ``max_versions``), and rotator
writes private keys to two kinds of path: the consumer paths ``{NAME}/{kind}`` (one key a
version) and the state record ``{NAME}/state`` (the pending, current and retiring keys). A key
leaves the record when it is revoked at Encord, found gone there (deleted by a person, in
manual mode), or rolled back as a pending key; its private half is still in those older
versions until :func:`purge` destroys them (``{mount}/destroy/...``: the data of those
versions only; the paths, their metadata and their other versions stay).

What to destroy follows from what the versions hold, never from a plan written down: the
*live* keys are the private keys the newest record holds (pending, current, retiring), and
every older version of the record or of a consumer path that holds any other private key is
destroyed. So the purge needs no write-ahead step of its own: running it again finds only
what is left, and a check stopped anywhere in it leaves nothing the next one cannot find. The
newest version of a path is never destroyed: the newest record holds the live keys by
definition, and the newest version of a consumer path is what consumers read (should it hold
a key let go, which only a rolled-back promotion can leave, it stays until a rotation writes
over it, and the purge is then retried).

**What each version holds** is remembered by the engine's store (:class:`Seen`): every
version the engine writes (its number comes back from the write), reads or destroys is
noted with the private keys it holds (a digest of each, and its key id), as runs of
versions. The purge reads only the versions of a path it has not seen, from the newest
downwards to the oldest version Vault still has (one that does not exist: never written, or
pruned by ``max_versions``); on an engine's first purge (a restart, a replica taking over)
that is every version, as when nothing is remembered. It then destroys, in one call per
path, the versions it knows to hold a key let go. Versions read as deleted or destroyed hold
nothing (a version undeleted by hand after that is found by the next engine's first purge);
a path whose newest version is older than one seen before (its metadata deleted and the
path written anew) is forgotten and read again.

The engine purges only when a purge may find something (:meth:`rotator.core.engine.Engine.check`):
on an engine's first check (a restart, after a crash anywhere), when the record was written
by someone else since its last check (another replica, ``rotator bootstrap``), when this
check let a private key go or deleted an orphan, and until a purge has found every older
version clean.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import structlog

from rotator.core.ports import SecretStore, VersionedData
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


Held = frozenset[tuple[str, str | None]]
"""The private keys one version holds: (a SHA-256 digest of each, the key id next to it)."""

_NOTHING: Held = frozenset()


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def held_by(data: Any) -> Held:
    """What a stored version holds, as :class:`Seen` remembers it (no key text kept)."""
    return frozenset((_digest(text), key_id) for text, key_id in held_keys(data).items())


class Seen:
    """A SecretStore that remembers what every version it wrote, read or destroyed holds.

    Per path, sorted runs ``(first, last, held)`` of versions holding the same keys. It is
    the engine's store, so the purge knows the versions the engine wrote itself without
    reading them back. Not thread-safe: an engine runs one check at a time.
    """

    def __init__(self, store: SecretStore) -> None:
        self._store = store
        self._runs: dict[str, list[tuple[int, int, Held]]] = {}

    def read(self, rel: str) -> VersionedData | None:
        v = self._store.read(rel)
        runs = self._runs.get(rel)
        if v is None or (runs and v.version < runs[-1][1]):
            self._runs.pop(rel, None)  # written anew since: what was seen is not there
        if v is not None:
            self.note(rel, v.version, v.version, held_by(v.data))
        return v

    def read_version(self, rel: str, version: int) -> VersionedData | None:
        v = self._store.read_version(rel, version)
        if v is not None:
            self.note(rel, version, version, held_by(v.data))
        return v

    def write(self, rel: str, data: Mapping[str, Any], *, cas: int) -> int:
        version = self._store.write(rel, data, cas=cas)
        self.note(rel, version, version, held_by(data))
        return version

    def destroy_versions(self, rel: str, versions: Iterable[int]) -> None:
        chosen = sorted(set(versions))
        self._store.destroy_versions(rel, chosen)
        for version in chosen:
            self.note(rel, version, version, _NOTHING)

    def note(self, rel: str, first: int, last: int, held: Held) -> None:
        """Versions ``first`` to ``last`` of ``rel`` hold ``held`` (nothing: gone)."""
        runs: list[tuple[int, int, Held]] = []
        for a, b, h in self._runs.get(rel, []):
            if b < first or a > last:
                runs.append((a, b, h))
                continue
            if a < first:
                runs.append((a, first - 1, h))
            if b > last:
                runs.append((last + 1, b, h))
        runs.append((first, last, held))
        runs.sort(key=lambda run: run[0])
        merged: list[tuple[int, int, Held]] = []
        for a, b, h in runs:
            if merged and merged[-1][1] + 1 == a and merged[-1][2] == h:
                merged[-1] = (merged[-1][0], b, h)
            else:
                merged.append((a, b, h))
        self._runs[rel] = merged

    def unseen(self, rel: str, below: int) -> Iterator[int]:
        """The versions of ``rel`` under ``below`` not seen, newest first."""
        version = below - 1
        for first, last, _ in reversed(self._runs.get(rel, [])):
            if first > version:
                continue
            while version > last:
                yield version
                version -= 1
            version = first - 1
        while version >= 1:
            yield version
            version -= 1

    def holding(self, rel: str, below: int, live: frozenset[str]) -> dict[str | None, list[int]]:
        """The versions of ``rel`` under ``below`` seen to hold a key whose digest is not in
        ``live``, by the key id of each such key."""
        doomed: dict[str | None, list[int]] = {}
        for first, last, held in self._runs.get(rel, []):
            if first >= below:
                break
            for digest, key_id in held:
                if digest not in live:
                    doomed.setdefault(key_id, []).extend(range(first, min(last, below - 1) + 1))
        return doomed


def purge(run: Run, seen: Seen) -> bool:
    """Destroy every older version of the account's record and consumer paths that holds a
    private key the record no longer holds. True when every older version is clean now;
    False when the newest version of a consumer path holds a key let go (never destroyed)."""
    ctx = run.context
    # The record as this check last read or wrote it is the newest: only the holder of the
    # account's lease writes it.
    live = frozenset(_digest(text) for text in live_keys(run.state))
    _purge_path(run, seen, ctx.rel(STATE_NAME), run.state.version, live)
    clean = True
    for kind in sorted(set(ctx.policy.kinds) | set(run.state.kinds)):
        newest = ctx.read(kind)
        if newest is None:
            continue
        if newest.data is not None and {d for d, _ in held_by(newest.data)} - live:
            clean = False  # consumers read it: it stays until a rotation writes over it
        _purge_path(run, seen, ctx.rel(kind), newest.version, live)
    return clean


def _purge_path(run: Run, seen: Seen, rel: str, newest: int, live: frozenset[str]) -> None:
    """Destroy the versions below ``newest`` of ``rel`` that hold a key not in ``live``:
    read those not seen yet (down to the oldest Vault keeps), then one destroy call."""
    for version in seen.unseen(rel, newest):
        if seen.read_version(rel, version) is None:
            # Never written, or pruned by max_versions: nothing older is readable.
            seen.note(rel, 1, version, _NOTHING)
            break
    doomed = seen.holding(rel, newest, live)
    if not doomed:
        return
    seen.destroy_versions(rel, sorted({v for held in doomed.values() for v in held}))
    run.hook("after_purge")
    for key_id, held in sorted(doomed.items(), key=lambda item: str(item[0])):
        log.info("vault.purged", path=rel, versions=sorted(held), key_id=key_id)
