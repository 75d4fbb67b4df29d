"""What a person does to an account apart from the checks, over the fakes: bootstrap,
``rotator rotate`` requests, and the status ``rotator status`` prints."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import pytest
from structlog.testing import capture_logs

from rotator.cli import status_of
from rotator.core import admin, keys
from rotator.core.errors import AccessDenied, RotatorError
from rotator.core.state import LastRun
from rotator.core.vocab import KnownKey, RemoteKey
from tests.crash import SimulatedCrash
from tests.fakes import START, FakeRegistry, World, default_policy, make_world

HOUR = timedelta(hours=1)


def human_key(world: World, title: str = "made in the UI") -> keys.KeyPair:
    kp = keys.generate(comment=title)
    world.encord.add_key("sa-alpha", kp.public_line, title)
    return kp


def test_bootstrap_adopts_the_admins_key() -> None:
    """The admin's key becomes the newest ssh-key version and the record's current key, as
    Encord lists it, with a ``bootstrapped`` outcome; nothing retires."""
    world = make_world(bootstrap=False)
    assert world.bootstrap_key is not None
    with capture_logs() as events:
        record = admin.bootstrap(world.engine().context, world.bootstrap_key.private_openssh)
    (listed,) = world.encord.keys_of("sa-alpha")
    assert (record.key_id, record.key_hash, record.title) == (
        listed.key_id,
        listed.key_hash,
        listed.title,
    )
    assert record.issued_at == listed.created_at
    assert record.expires_at == listed.created_at + timedelta(days=90)
    ks = world.state().kind("ssh-key")
    assert ks.current == record and ks.retiring == () and ks.pending is None
    assert ks.last == LastRun("bootstrapped", START, "bootstrap", key_id=record.key_id)
    consumer = world.store.latest("alpha/ssh-key")
    assert consumer is not None and consumer["key_id"] == record.key_id
    assert consumer["private_key"] == world.bootstrap_key.private_openssh
    assert [e["event"] for e in events] == ["account.bootstrapped"]


def test_bootstrap_again_retires_the_previous_key_with_its_grace() -> None:
    """A second bootstrap promotes as a rotation does: the previous key retires, its grace
    counted from the new key's Vault write and rounded up to a whole second."""
    world = make_world()
    first = world.state().kind("ssh-key").current
    assert first is not None
    world.clock.advance(HOUR + timedelta(microseconds=250_000))
    new = human_key(world)
    record = admin.bootstrap(world.engine().context, new.private_openssh)
    ks = world.state().kind("ssh-key")
    assert ks.current is not None and ks.current.key_id == record.key_id == new.key_id
    assert [k.key_id for k in ks.retiring] == [first.key_id]
    written = world.store.history("alpha/ssh-key")[-1].created_time
    deadline = ks.retiring[0].retire_after
    assert deadline is not None and deadline.microsecond == 0
    assert timedelta(0) < deadline - (written + timedelta(hours=24)) < timedelta(seconds=1)


def test_bootstrap_leaves_a_rotation_in_flight_to_be_resumed() -> None:
    """A rotation stopped half way survives a bootstrap: the next check resumes it (its key
    may be what some consumer read) and the bootstrapped key retires in turn."""
    world = make_world()

    def stop(step: str) -> None:
        if step == "after_registered_recorded":
            raise SimulatedCrash(step)

    world.hook = stop
    with pytest.raises(SimulatedCrash):
        world.engine().check(force=frozenset({"ssh-key"}))
    world.hook = None
    pending = world.state().kind("ssh-key").pending
    assert pending is not None and pending.phase == "registered"
    adopted = admin.bootstrap(world.engine().context, human_key(world).private_openssh)
    assert world.state().kind("ssh-key").pending == pending
    result = world.engine().check()
    assert "rotated" in result.outcomes
    ks = world.state().kind("ssh-key")
    assert ks.current is not None and ks.current.key_id == pending.key_id
    assert adopted.key_id in {k.key_id for k in ks.retiring}


def test_bootstrap_refuses_a_key_encord_does_not_know() -> None:
    """A key that does not authenticate is refused (401) and nothing is written."""
    world = make_world(bootstrap=False)
    with pytest.raises(AccessDenied) as info:
        admin.bootstrap(world.engine().context, keys.generate().private_openssh)
    assert info.value.status == 401
    assert world.store.writes == 0


class Unlisted(FakeRegistry):
    """Lists none of the keys (as Encord does for a key of another account it signs for)."""

    def list_keys(self, known: Sequence[KnownKey] = ()) -> list[RemoteKey]:
        super().list_keys(known)
        return []


def test_bootstrap_refuses_a_key_that_is_not_the_accounts() -> None:
    """A key that authenticates but is not among the account's keys is refused by name."""
    world = make_world(bootstrap=False)
    assert world.bootstrap_key is not None
    ctx = world.engine().context
    unlisting = type(ctx)(
        account=ctx.account,
        store=ctx.store,
        registry_factory=lambda account, signer: Unlisted(world.encord, account, signer),
        policy=ctx.policy,
        clock=ctx.clock,
    )
    with pytest.raises(RotatorError, match="authenticates but is not a key of service account"):
        admin.bootstrap(unlisting, world.bootstrap_key.private_openssh)
    assert world.store.writes == 0


def test_a_requested_rotation_is_recorded_then_answered() -> None:
    """``rotator rotate`` beside a running daemon writes a request into the record; the next
    check rotates for it (reason ``requested``) and clears it."""
    world = make_world()
    version = world.state().version
    asked = admin.request_rotation(world.engine().context, "ssh-key")
    assert asked.requested == {"ssh-key"} and asked.version == version + 1
    assert world.state() == asked
    result = world.engine().check()
    assert "rotated" in result.outcomes
    state = world.state()
    assert state.requested == frozenset()
    last = state.kind("ssh-key").last
    assert last is not None and last.reason == "requested"


def test_status_of_an_account_not_bootstrapped_asks_nobody() -> None:
    """Without a key to sign with, status shows the record only and calls nobody."""
    world = make_world(default_policy(kinds=("ssh-key", "api-key")), bootstrap=False)
    st = admin.status(world.engine().context)
    assert (st.account, st.key_cap, st.asked_encord, st.keys_at_encord) == ("alpha", 5, False, None)
    assert list(st.kinds) == ["ssh-key", "api-key"]
    assert all(k.current is None and k.last is None for k in st.kinds.values())
    assert st.bearer_expires_at is None and world.encord.call_log == []


def test_status_shows_keys_ages_and_the_bearer_token() -> None:
    """Age and time left of each current key, retiring keys, Encord's key count and the
    bearer token's expiry."""
    world = make_world()
    engine = world.engine()
    engine.check(force=frozenset({"ssh-key"}))
    world.clock.advance(2 * HOUR)
    st = admin.status(world.engine().context)
    state = world.state()
    ks = state.kind("ssh-key")
    assert ks.current is not None and state.bearer is not None
    ssh = st.kinds["ssh-key"]
    assert ssh.current is not None and ssh.current.key_id == ks.current.key_id
    assert ssh.current.age == 2 * HOUR
    assert ssh.current.expires_in == timedelta(days=90) - 2 * HOUR
    assert ssh.retiring == tuple(k.key_id for k in ks.retiring) and len(ssh.retiring) == 1
    assert ssh.pending is None and ssh.last == ks.last
    assert (st.asked_encord, st.keys_at_encord, st.encord_error) == (True, 2, None)
    assert st.bearer_expires_at == state.bearer.expires_at


def test_status_clamps_an_expired_key_at_zero() -> None:
    """A key past its expiry shows zero time left, never a negative one."""
    world = make_world()
    world.clock.advance(timedelta(days=100))
    current = admin.status(world.engine().context).kinds["ssh-key"].current
    assert current is not None and current.expires_in == timedelta(0)


def test_status_says_when_encord_does_not_answer() -> None:
    """An Encord failure is shown as the error, with no key count; the record still shows."""
    world = make_world()
    world.encord.fail_next["list_keys"] = 1
    st = admin.status(world.engine().context)
    assert st.asked_encord and st.keys_at_encord is None
    assert st.encord_error == "fake Encord list_keys: HTTP 503 (injected)"
    assert st.kinds["ssh-key"].current is not None


def test_cli_status_json_field_for_field() -> None:
    """``rotator status --json``'s entry for an account, field for field: durations in whole
    seconds, full key ids, ISO times, each credential's state, and the hints."""
    world = make_world(default_policy(kinds=("ssh-key", "api-key")))
    world.engine().check()
    world.clock.advance(2 * HOUR)
    state = world.state()
    ssh, api = state.kind("ssh-key"), state.kind("api-key")
    assert ssh.current and api.current and ssh.last and api.last and state.bearer
    left = int((timedelta(days=90) - 2 * HOUR).total_seconds())
    assert status_of(world.engine()) == {
        "account": "alpha",
        "key_cap": 5,
        "keys_at_encord": 2,
        "ssh-key": {
            "state": "ok",
            "key_id": ssh.current.key_id,
            "age_s": 7200,
            "expires_in_s": left,
            "expires_at": "2030-04-01T09:00:00+00:00",
            "retiring": [],
            "pending": None,
            "requested": False,
            "last_rotation": {
                "outcome": "bootstrapped",
                "at": "2030-01-01T09:00:00+00:00",
                "reason": "bootstrap",
            },
        },
        "api-key": {
            "state": "ok",
            "key_id": api.current.key_id,
            "age_s": 7200,
            "expires_in_s": left,
            "expires_at": "2030-04-01T09:00:00+00:00",
            "retiring": [],
            "pending": None,
            "requested": False,
            "last_rotation": {
                "outcome": "rotated",
                "at": "2030-01-01T09:00:00+00:00",
                "reason": "no_current_key",
            },
        },
        "bearer-token": {
            "state": "expired",
            "expires_at": "2030-01-01T10:00:00+00:00",
            "expires_in_s": 0,
        },
        "window": None,
        "paused": None,
        "hints": ["alpha bearer-token: none valid; the daemon mints one at its next check"],
    }
    world.encord.fail_next["list_keys"] = 1
    entry = status_of(world.engine())
    assert entry["keys_at_encord"] is None
    assert entry["encord_error"] == "fake Encord list_keys: HTTP 503 (injected)"
    assert "ENCORD_DOMAIN" in entry["hints"][0]
    not_bootstrapped = make_world(bootstrap=False)
    assert status_of(not_bootstrapped.engine()) == {
        "account": "alpha",
        "key_cap": 5,
        "ssh-key": {"state": "none", "retiring": [], "pending": None, "requested": False},
        "bearer-token": {"state": "none"},
        "window": None,
        "paused": None,
        "hints": [
            "alpha: not bootstrapped; run: rotator bootstrap alpha --private-key-file F "
            "(F: the key file the Encord UI downloaded)"
        ],
    }
