"""The purge over fakes: once rotator lets a key go, no readable Vault version keeps its
private half; the newest versions are never destroyed; a crash or a failing Vault only
delays it.

The fake Vault (:class:`tests.fakes.FakeStore`) answers as KV v2 does: a destroyed version
reads without its data, and only the newest ``max_versions`` of a path are readable at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

import pytest
from structlog.testing import capture_logs

from rotator.core.engine import Engine
from rotator.core.errors import AccessDenied
from rotator.core.state import STATE_NAME
from rotator.core.vocab import KEY_KINDS
from tests.crash import SimulatedCrash
from tests.fakes import FakeStore, World, default_policy, make_world
from tests.test_engine import (
    MIN,
    PersonAtTheUI,
    assert_no_secret_logged,
    assert_only_live_keys_readable,
    due,
    private_keys_in,
    running,
)

DAY = timedelta(days=1)


def destroyed(world: World, name: str) -> list[int]:
    """The versions of ``name`` that read without data now."""
    return [v.version for v in world.store.readable(world.rel(name)) if v.data is None]


def ever_held(world: World) -> set[str]:
    """Every private key any version of the record or a consumer path ever held."""
    found: set[str] = set()
    for name in (STATE_NAME, *KEY_KINDS):
        for v in world.store.history(world.rel(name)):
            found |= set(private_keys_in(name, v.data))
    return found


@pytest.mark.parametrize("max_versions", [10, 1000])
def test_after_many_rotations_only_live_keys_are_readable(max_versions: int) -> None:
    """Twelve rotations of both key kinds, each old key revoked after its grace: after every
    completed check every readable version (all of them, when Vault keeps 1000) holds only
    keys the record holds, and each purge is logged with path, versions and key id."""
    world = make_world(default_policy(kinds=("ssh-key", "api-key")))
    world.store.max_versions = max_versions
    both = frozenset({"ssh-key", "api-key"})
    with running(world) as r:
        for _ in range(12):
            assert r.check(force=both) is not None
            assert_only_live_keys_readable(world)
            world.clock.advance(DAY + MIN)
            assert r.check() is not None
            assert_only_live_keys_readable(world)
        purged = [e for e in r.events if e["event"] == "vault.purged"]
    revoked = {e["key_id"] for e in r.events if e["event"] == "key.revoked"}
    assert len(revoked) >= 20
    assert revoked <= {e["key_id"] for e in purged}
    assert {e["path"] for e in purged} == {"alpha/state", "alpha/ssh-key", "alpha/api-key"}
    assert all(e["versions"] and e["log_level"] == "info" for e in purged)
    for name in (STATE_NAME, "ssh-key", "api-key"):
        readable = world.store.readable(world.rel(name))
        assert readable[-1].data is not None, f"the newest {name} version was destroyed"
        assert destroyed(world, name), f"nothing of {name} was destroyed"
    # Only the live keys remain anywhere: current of each kind (nothing retiring at rest).
    r.auditor.finish(r)
    live = set(private_keys_in(STATE_NAME, world.store.latest(world.rel(STATE_NAME))))
    readable_keys = {
        text
        for name in (STATE_NAME, *KEY_KINDS)
        for v in world.store.readable(world.rel(name))
        for text in private_keys_in(name, v.data)
    }
    assert readable_keys == live and len(live) == 2
    assert len(ever_held(world)) >= 24


def test_previous_key_stays_readable_during_its_grace() -> None:
    """A rotation destroys nothing: the previous key is retiring, still live, and the
    consumer path's previous version keeps it until the key is revoked."""
    world = make_world()
    old = world.bootstrap_key
    assert old is not None
    with running(world) as r:
        world.clock.advance(due(world))
        r.check()
        previous = world.store.readable("alpha/ssh-key")[-2]
        assert previous.data is not None and previous.data["key_id"] == old.key_id
        assert destroyed(world, "ssh-key") == [] and destroyed(world, STATE_NAME) == []
        world.clock.advance(DAY + MIN)
        r.check()
        assert destroyed(world, "ssh-key") == [previous.version]
        assert_only_live_keys_readable(world)


def test_a_purge_reaches_below_versions_destroyed_before() -> None:
    """A failed rotation's key (recorded, then rolled back) is purged at once: the versions
    holding it are destroyed, and older ones holding the then-current key stay. When that
    key is revoked later, the purge goes on past the destroyed versions and reaches them."""
    world = make_world()
    world.store.max_versions = 1000
    world.encord.never_verify_next = 1
    with running(world) as r:
        r.check()
        world.clock.advance(due(world))
        failed = r.check()
        assert failed is not None and failed.outcomes[0] == "failed"
        gaps = destroyed(world, STATE_NAME)
        assert gaps and min(gaps) > 1, "the versions holding only the current key stay"
        assert_only_live_keys_readable(world)
        world.clock.advance(world.policy.failure_backoff())
        r.check()
        world.clock.advance(DAY + MIN)
        r.check()
    assert_only_live_keys_readable(world)
    assert 1 in destroyed(world, STATE_NAME), "the bootstrap version below the gap"


def test_keys_deleted_by_a_person_are_purged_once_gone() -> None:
    """Manual mode: the old key stays readable while a person is asked to delete it, and is
    purged once the listing shows it gone."""
    world = make_world()
    old = world.bootstrap_key
    assert old is not None
    engine = Engine(
        account=world.account,
        store=world.store,
        registry_factory=lambda h, signer: PersonAtTheUI(world.encord, h, signer),
        policy=world.policy,
        clock=world.clock,
        sleep=world.clock.sleep,
    )
    with capture_logs() as events:
        engine.check(force=frozenset({"ssh-key"}))
        pending = world.state().kind("ssh-key").pending
        assert pending is not None and pending.public_key
        world.encord.add_key("sa-alpha", pending.public_key, "added by hand")
        assert "rotated" in engine.check().outcomes
        world.clock.advance(world.policy.grace + MIN)
        assert "awaiting_revocation" in engine.check().outcomes
        assert destroyed(world, "ssh-key") == []
        world.encord.remove_key("sa-alpha", old.key_id)
        assert "forgotten" in engine.check().outcomes
    assert destroyed(world, "ssh-key") == [1]
    assert_only_live_keys_readable(world)
    assert old.key_id in {e["key_id"] for e in events if e["event"] == "vault.purged"}
    assert_no_secret_logged(world, events)


def test_the_newest_consumer_version_is_never_destroyed() -> None:
    """A promotion written to Vault whose key then vanished at Encord is rolled back: the
    newest consumer version holds a key let go, yet stays (consumers read it); once the next
    rotation has written over it, the next check destroys it."""
    world = make_world()
    world.hook = _crash_at("after_promote_vault")
    world.clock.advance(due(world))
    with pytest.raises(SimulatedCrash):
        world.engine().check()  # stopped after the consumer path got the new key
    world.hook = None
    written = world.store.latest("alpha/ssh-key")
    assert written is not None
    world.encord.remove_key("sa-alpha", written["key_id"])  # gone before the record says so
    engine = world.engine()
    assert "rolled_back" in engine.check().outcomes
    assert world.store.latest("alpha/ssh-key") == written, "the newest version stays"
    assert destroyed(world, "ssh-key") == []
    assert "rotated" in engine.check().outcomes  # consumer_path_mismatch
    engine.check()
    assert destroyed(world, "ssh-key") == [2]
    assert_only_live_keys_readable(world)


def test_an_unclean_newest_version_is_purged_once_written_over() -> None:
    """Kept while it is the newest, a version holding a key the record does not hold is
    destroyed by the first check after a newer version exists, though nothing else was let
    go in between."""
    world = make_world()
    bootstrap = world.store.latest("alpha/ssh-key")
    assert bootstrap is not None
    world.store.put("alpha/ssh-key", {**bootstrap, "private_key": "a hand-written key"})
    engine = world.engine()
    engine.check()
    assert destroyed(world, "ssh-key") == []
    world.store.put("alpha/ssh-key", bootstrap)
    engine.check()
    assert destroyed(world, "ssh-key") == [2]
    assert_only_live_keys_readable(world)


class DenyingDestroy(FakeStore):
    """A Vault whose policy grants no ``destroy/``."""

    def destroy_versions(self, rel: str, versions: Iterable[int]) -> None:
        raise AccessDenied(f"Vault refused to destroy versions of {rel} (HTTP 403)", status=403)


def test_a_refused_purge_is_logged_owed_and_never_blocks_a_rotation() -> None:
    """With no destroy grant, the revocation and the next rotation still happen; the purge
    logs vault.purge_failed (an error) at each check until Vault lets it, then catches up."""
    world = make_world()
    denying = DenyingDestroy(world.clock, world.calls)
    denying.paths = world.store.paths
    healthy, world.store = world.store, denying
    with capture_logs() as events:
        engine = world.engine()
        world.clock.advance(due(world))
        assert "rotated" in engine.check().outcomes
        world.clock.advance(DAY + MIN)
        assert "revoked" in engine.check().outcomes
        world.clock.advance(5 * MIN)
        engine.check()
        world.clock.advance(due(world))
        assert "rotated" in engine.check().outcomes
    failures = [e for e in events if e["event"] == "vault.purge_failed"]
    assert len(failures) == 3 and {e["log_level"] for e in failures} == {"error"}
    assert {e["error_kind"] for e in failures} == {"access_denied"}
    world.store = healthy  # the grant added; the daemon restarted
    world.engine().check()
    assert_only_live_keys_readable(world)


def test_crash_after_every_purge_call_then_restart_converges() -> None:
    """Stopped after each Vault call the purge makes (reads of older versions, the destroy)
    and restarted as a new engine, the next check finds what is left and finishes it."""
    baseline = _revoke_and_count()
    assert len(baseline) >= 5
    for n in baseline:
        world = make_world()
        world.clock.advance(due(world))
        world.engine().check()
        world.clock.advance(DAY + MIN)
        world.calls.crash_after = world.calls.count + n
        with pytest.raises(SimulatedCrash):
            world.engine().check()
        world.engine().check()
        assert_only_live_keys_readable(world)


def _calls_of(world: World, start: int, prefix: str) -> list[str]:
    return [name for name in world.calls.log[start:] if name.startswith(prefix)]


def test_an_engine_reads_no_version_it_has_seen() -> None:
    """A running engine remembers what each version it wrote holds: its revoking checks read
    no older version and destroy, in one call per path, exactly the versions holding the
    revoked key. A restarted engine, remembering nothing, reads them all first."""
    world = make_world()
    world.store.max_versions = 1000
    with running(world) as r:
        for _ in range(3):
            world.clock.advance(due(world))
            r.check()
            world.clock.advance(DAY + MIN)
            start = world.calls.count
            result = r.check()
            assert result is not None and "revoked" in result.outcomes
            assert _calls_of(world, start, "vault.read_version") == []
            assert _calls_of(world, start, "vault.destroy_versions") == [
                f"vault.destroy_versions {world.rel(STATE_NAME)}",
                f"vault.destroy_versions {world.rel('ssh-key')}",
            ]
            assert_only_live_keys_readable(world)
    world.clock.advance(due(world))
    world.engine().check()
    world.clock.advance(DAY + MIN)
    start = world.calls.count
    world.engine().check()
    assert len(_calls_of(world, start, "vault.read_version")) > 5, "a restart reads them all"
    assert_only_live_keys_readable(world)


def test_versions_written_by_someone_else_are_read_and_only_those() -> None:
    """Two versions of the record written behind the engine's back (another replica, an
    admin): the next purge reads the one it has not seen (the newer is the newest, read by
    the check) and still destroys what holds the revoked key."""
    world = make_world()
    world.store.max_versions = 1000
    with running(world) as r:
        r.check()
        world.clock.advance(due(world))
        r.check()
        world.clock.advance(DAY + MIN)
        rel = world.rel(STATE_NAME)
        for _ in range(2):
            latest = world.store.paths[rel][-1]
            assert latest.data is not None
            world.store.write(rel, latest.data, cas=latest.version)
        unseen = world.store.paths[rel][-2].version
        start = world.calls.count
        r.check()
        assert _calls_of(world, start, "vault.read_version") == [f"vault.read_version {rel}"]
        assert world.calls.log[start:].count(f"vault.read_version {rel}") == 1
        assert unseen in destroyed(world, STATE_NAME)
    assert_only_live_keys_readable(world)


def _revoke_and_count() -> list[int]:
    """The numbers (from the start of the check) of the purge's calls in a revoking check."""
    world = make_world()
    world.clock.advance(due(world))
    world.engine().check()
    world.clock.advance(DAY + MIN)
    start = world.calls.count
    world.engine().check()
    names = world.calls.log[start:]
    return [
        i + 1
        for i, name in enumerate(names)
        if name.startswith(("vault.read_version", "vault.destroy_versions"))
    ]


def _crash_at(step: str):  # type: ignore[no-untyped-def]
    def hook(name: str) -> None:
        if name == step:
            raise SimulatedCrash(name)

    return hook
