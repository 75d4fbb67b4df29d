"""ROTATOR_ROTATION_WINDOW wired: the plan and the engine with a fake clock, the variable,
and what ``plan`` and ``status`` show."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from structlog.testing import capture_logs

from rotator.cli import status_of
from rotator.core.holds import Deferred
from rotator.core.policy import MintBearer, Revoke, Rotate, Wait, describe
from rotator.core.window import parse_window
from rotator.runtime.config import from_env
from rotator.runtime.wiring import policy_from
from tests.fakes import START, World, default_policy, make_world

# START is Tuesday 2030-01-01 09:00 UTC. Keys live 90 d and are due at 76 d.
assert datetime(2030, 1, 1, 9, tzinfo=UTC) == START and START.weekday() == 1
DUE = timedelta(days=77)  # 2030-03-19 09:00, a Tuesday
NEVER_ON_TUESDAY = "mon 00:00-24:00 UTC"  # next opens Monday 2030-03-25 00:00
TUESDAY_MORNING = "tue 08:00-10:00 UTC"


def _world(window: str, **policy: object) -> World:
    world = make_world(default_policy(window=parse_window(window), **policy))
    world.engine().check()
    return world


def test_outside_the_window_a_due_key_waits_and_the_bearer_is_still_minted() -> None:
    """Closed, with the key's expiry far beyond the opening: Deferred until the window opens
    (the next check is due then), nothing at Encord changes, the bearer token is minted."""
    world = _world(NEVER_ON_TUESDAY)
    world.clock.advance(DUE)
    opens = datetime(2030, 3, 25, tzinfo=UTC)
    actions = world.engine().plan()
    assert actions[0] == Deferred(kind="ssh-key", until=opens)
    assert not any(isinstance(a, Rotate) for a in actions)
    assert isinstance(actions[-1], Wait) and actions[-1].until is not None
    assert actions[-1].until <= opens
    assert describe(actions)[0] == {
        "action": "Deferred", "kind": "ssh-key", "until": opens.isoformat(),
        "reason": "outside_window",
    }
    keys_before = world.encord.key_ids("sa-alpha")
    with capture_logs() as events:
        result = world.engine().check()
    assert result.outcomes == ["deferred", "bearer_minted"]
    assert world.encord.key_ids("sa-alpha") == keys_before
    assert [e["event"] for e in events] == ["rotation.deferred", "vault.written", "bearer.minted"]
    world.clock.advance(opens - world.clock.now())  # the window opens
    assert "rotated" in world.engine().check().outcomes


def test_inside_the_window_a_due_key_rotates() -> None:
    """Open: the rotation starts as it would without a window, without an override."""
    world = _world(TUESDAY_MORNING)
    world.clock.advance(DUE)
    (rotate,) = [a for a in world.engine().plan() if isinstance(a, Rotate)]
    assert rotate.window_opens_at is None
    with capture_logs() as events:
        assert "rotated" in world.engine().check().outcomes
    assert "rotation.window_overridden" not in [e["event"] for e in events]


def test_a_key_that_would_expire_before_the_window_opens_rotates_with_an_override() -> None:
    """Closed, but waiting for Monday would leave less than the margin (ROTATE_BEFORE / 4 =
    2 h of a 8 h lead) of the key: it rotates now and logs rotation.window_overridden."""
    world = _world(NEVER_ON_TUESDAY, key_ttl=timedelta(days=3), rotate_before=timedelta(hours=8),
                   grace=timedelta(hours=1))
    world.clock.advance(timedelta(days=3) - timedelta(hours=7))  # Friday 02:00, due at 01:00
    opens = datetime(2030, 1, 7, tzinfo=UTC)
    (rotate,) = [a for a in world.engine().plan() if isinstance(a, Rotate)]
    assert rotate.window_opens_at == opens
    with capture_logs() as events:
        assert "rotated" in world.engine().check().outcomes
    (override,) = [e for e in events if e["event"] == "rotation.window_overridden"]
    assert override["window_opens_at"] == opens.isoformat()
    assert override["kind"] == "ssh-key" and override["reason"].startswith("expires_in_")
    assert override["log_level"] == "warning"


def test_the_margin_decides_between_waiting_and_overriding() -> None:
    """Policy.window_margin is a quarter of ROTATE_BEFORE, at least one check period: a key
    with 13 d left waits for a window 2 d 15 h ahead; one with 2 d left does not wait 6 d."""
    policy = default_policy()
    assert policy.window_margin() == timedelta(days=3, hours=12)
    assert default_policy(rotate_before=timedelta(minutes=1)).window_margin() == timedelta(
        minutes=5, seconds=30
    )
    window = parse_window("fri 00:00-24:00")  # START is a Tuesday: opens in 2 d 15 h
    world = _world("fri 00:00-24:00")
    world.clock.advance(DUE)  # expires in 13 d
    assert isinstance(world.engine().plan()[0], Deferred)
    world = _world("fri 00:00-24:00", rotate_before=timedelta(days=14))
    world.clock.advance(timedelta(days=88))  # Saturday, expires in 2 d, opens in 6 d 15 h
    (rotate,) = [a for a in world.engine().plan() if isinstance(a, Rotate)]
    assert rotate.window_opens_at == window.next_open(world.clock.now())


def test_a_person_a_repair_and_the_clean_up_are_not_held_back() -> None:
    """``rotator rotate`` (force), a consumer path holding another key, and revoking a
    retiring key after its grace all happen with the window closed."""
    world = _world(NEVER_ON_TUESDAY)
    with capture_logs():
        forced = world.engine().check(force=frozenset({"ssh-key"}))
    assert "rotated" in forced.outcomes  # a person asked: now
    world.clock.advance(timedelta(days=2))  # Thursday, grace over, window still closed
    actions = world.engine().plan()
    assert any(isinstance(a, Revoke) for a in actions)
    world.store.put("alpha/ssh-key", {"key_id": "f" * 64, "private_key": "not ours"})
    (rotate,) = [a for a in world.engine().plan() if isinstance(a, Rotate)]
    assert rotate.reason == "consumer_path_mismatch" and rotate.window_opens_at is None


def test_the_bearer_token_is_refreshed_whatever_the_window() -> None:
    """Outside the window and with nothing due, the token is still re-minted when it runs
    low."""
    world = _world(NEVER_ON_TUESDAY)
    world.clock.advance(timedelta(hours=1))
    assert any(isinstance(a, MintBearer) for a in world.engine().plan())


def test_status_and_plan_show_the_next_window() -> None:
    """``status --json`` names the window, whether it is open, and its next opening and
    closing in ISO time."""
    world = _world(TUESDAY_MORNING)
    assert status_of(world.engine())["window"] == {
        "window": "tue 08:00-10:00 UTC",
        "open": True,
        "opens_at": START.isoformat(),
        "closes_at": "2030-01-01T10:00:00+00:00",
    }
    world.clock.advance(timedelta(hours=2))
    assert status_of(world.engine())["window"] == {
        "window": "tue 08:00-10:00 UTC",
        "open": False,
        "opens_at": "2030-01-08T08:00:00+00:00",
        "closes_at": "2030-01-08T10:00:00+00:00",
    }


ENV = {"VAULT_ADDR": "http://127.0.0.1:8200", "VAULT_TOKEN": "t" * 26,
       "ROTATOR_ACCOUNTS": "alpha=sa-alpha"}


def test_the_variable_reaches_the_policy() -> None:
    """ROTATOR_ROTATION_WINDOW is parsed at start-up into Settings and the Policy."""
    settings = from_env({**ENV, "ROTATOR_ROTATION_WINDOW": "Mon-Fri 09:00-17:00 Europe/Berlin"})
    assert str(settings.rotation_window) == "mon-fri 09:00-17:00 Europe/Berlin"
    assert policy_from(settings).window == settings.rotation_window
    assert policy_from(from_env(ENV)).window is None


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("weekdays 09:00-17:00", "unknown day 'weekdays'"),
        ("mon-fri 9-17", "bad time '9'"),
        ("mon-fri 09:00-17:00 Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
        ("mon 10:00-10:00", "empty time range"),
    ],
)
def test_a_bad_window_is_one_line_naming_the_variable(value: str, problem: str) -> None:
    """A bad value stops start-up (exit 2) with one line naming ROTATOR_ROTATION_WINDOW."""
    from rotator.core.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        from_env({**ENV, "ROTATOR_ROTATION_WINDOW": value})
    (line,) = info.value.problems
    assert line.startswith("ROTATOR_ROTATION_WINDOW: ") and problem in line
