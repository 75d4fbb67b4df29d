"""``rotator pause`` / ``resume`` over the fakes: the record, the plan, the engine, the
health and metrics a paused account shows."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from rotator.cli import build_parser, status_of
from rotator.core import admin
from rotator.core.engine import CheckResult
from rotator.core.errors import CorruptState, StoreConflict
from rotator.core.holds import Paused
from rotator.core.policy import MintBearer, Revoke, Rotate, Wait, describe
from rotator.core.state import STATE_NAME, PauseRecord, from_dict, to_dict
from rotator.runtime.health import AccountHealth, readiness
from rotator.runtime.metrics import Metrics
from tests.fakes import World, make_world

DAY = timedelta(days=1)
PAST_DUE = timedelta(days=80)  # 90d keys are due at 76d


def _paused_world(reason: str | None = "migrating consumers") -> World:
    world = make_world()
    world.engine().check()  # a bearer token, the record as a daemon leaves it
    admin.pause(world.engine().context, by="ana@laptop", reason=reason)
    return world


def test_a_record_from_before_pauses_loads_unpaused_and_a_pause_round_trips() -> None:
    """A record written before pauses existed (no ``paused`` key) loads as not paused; a
    pause survives to_dict/from_dict; a malformed one is one CorruptState line."""
    world = make_world()
    data = to_dict(world.state())
    assert "paused" not in data
    assert from_dict(data, 1, account="alpha").paused is None
    pause = PauseRecord(at=datetime(2030, 1, 2, tzinfo=UTC), by="ana@laptop", reason="why")
    paused = replace(world.state(), paused=pause)
    assert from_dict(to_dict(paused), paused.version, account="alpha") == paused
    data["paused"] = {"by": "ana"}
    with pytest.raises(CorruptState, match="'at' is missing"):
        from_dict(data, 1, account="alpha")


def test_a_paused_account_plans_only_its_bearer_token() -> None:
    """Due key, a retiring key past its grace, even a forced rotation: the plan of a paused
    account is Paused, the bearer refresh, Wait."""
    world = make_world()
    world.engine().check()
    world.engine().check(force=frozenset({"ssh-key"}))  # one retiring key
    world.clock.advance(PAST_DUE)
    unpaused = world.engine().plan()
    assert any(isinstance(a, Rotate) for a in unpaused)
    assert any(isinstance(a, Revoke) for a in unpaused)
    admin.pause(world.engine().context, by="ana@laptop", reason=None)
    actions = world.engine().plan(force=frozenset({"ssh-key"}))
    assert [type(a) for a in actions] == [Paused, MintBearer, Wait]
    assert describe(actions)[0] == {
        "action": "Paused",
        "at": world.clock.now().isoformat(),
        "by": "ana@laptop",
        "reason": None,
    }


def test_a_paused_engine_changes_no_key_but_refreshes_the_bearer_token() -> None:
    """Past due: the check logs ``check.paused``, Encord and the key path are untouched, a
    new bearer token works; after resume the next check rotates."""
    world = _paused_world()
    world.clock.advance(PAST_DUE)
    keys_before = world.encord.key_ids("sa-alpha")
    ssh_before = world.store.latest("alpha/ssh-key")
    token_versions = len(world.store.history("alpha/bearer-token"))
    with capture_logs() as events:
        result = world.engine().check()
    assert result.outcomes == ["paused", "bearer_minted"]
    (paused,) = [e for e in events if e["event"] == "check.paused"]
    assert (paused["paused_by"], paused["reason"]) == ("ana@laptop", "migrating consumers")
    assert world.encord.key_ids("sa-alpha") == keys_before
    assert world.store.latest("alpha/ssh-key") == ssh_before
    assert len(world.store.history("alpha/bearer-token")) == token_versions + 1
    token = world.store.latest("alpha/bearer-token")
    assert token is not None and world.encord.bearer_works(str(token["token"]))

    with capture_logs() as events:
        lifted = admin.resume(world.engine().context, by="bo@laptop")
    assert lifted is not None and lifted.by == "ana@laptop"
    assert [e["event"] for e in events] == ["account.resumed"]
    assert "rotated" in world.engine().check().outcomes
    assert world.store.latest("alpha/ssh-key") != ssh_before


def test_pause_is_idempotent_and_resume_of_an_unpaused_account_writes_nothing() -> None:
    """A second pause keeps the first (who, when, why) and logs nothing; resuming twice
    writes the record once."""
    world = make_world()
    ctx = world.engine().context
    with capture_logs() as events:
        first, made = admin.pause(ctx, by="ana@laptop", reason="one")
        world.clock.advance(DAY)
        again, made_again = admin.pause(ctx, by="bo@laptop", reason="two")
    assert made and not made_again and again == first
    assert [e["event"] for e in events] == ["account.paused"]
    assert admin.resume(ctx, by="bo@laptop") == first
    versions = len(world.store.history(f"alpha/{STATE_NAME}"))
    assert admin.resume(ctx, by="bo@laptop") is None
    assert len(world.store.history(f"alpha/{STATE_NAME}")) == versions


def test_pause_retries_when_a_check_wrote_the_record_in_between() -> None:
    """The pause is a check-and-set write: losing to a daemon's write, it re-reads and
    writes again, so neither the daemon's change nor the pause is lost."""
    world = make_world()
    ctx = world.engine().context
    store = world.store
    real_write = store.write
    raced: list[bool] = []

    def racing_write(rel: str, data: Any, *, cas: int) -> int:
        if rel.endswith("/state") and not raced:
            raced.append(True)
            world.engine().check()  # a daemon's check mints a token: the record moves on
        return real_write(rel, data, cas=cas)

    store.write = racing_write  # type: ignore[method-assign]
    pause, made = admin.pause(ctx, by="ana@laptop", reason=None)
    state = world.state()
    assert made and state.paused == pause and state.bearer is not None


def test_pause_gives_up_after_repeated_conflicts() -> None:
    """A record that keeps moving makes the command fail (exit 1), not loop forever."""
    world = make_world()

    def always_conflicts(rel: str, data: Any, *, cas: int) -> int:
        raise StoreConflict("fake: check-and-set mismatch")

    world.store.write = always_conflicts  # type: ignore[method-assign]
    with pytest.raises(StoreConflict):
        admin.pause(world.engine().context, by="ana@laptop", reason=None)


def test_status_shows_the_pause() -> None:
    """``status --json`` names who paused, when and why; unpaused it says null."""
    world = _paused_world()
    entry = status_of(world.engine())
    assert entry["paused"] == {
        "at": world.clock.now().isoformat(),
        "by": "ana@laptop",
        "reason": "migrating consumers",
    }


def test_readiness_and_metrics_of_a_paused_account() -> None:
    """Paused is ready (the RotatorNotReady alert stays quiet), /readyz says paused, and
    rotator_paused is 1 while key age and expiry are still exported for the expiry alert."""
    world = _paused_world()
    world.clock.advance(PAST_DUE)
    result: CheckResult = world.engine().check()
    health = AccountHealth()
    health.last_check = world.clock.now()
    health.succeeded(result)
    ok, details = readiness({"alpha": health})
    assert ok and details["accounts"]["alpha"]["paused"] is True
    metrics = Metrics(["alpha"], key_cap=5, kinds=("ssh-key",), clock=lambda: 0.0)
    metrics.after_check("alpha", result, world.clock.now())
    sample = metrics.registry.get_sample_value
    assert sample("rotator_paused", {"account": "alpha"}) == 1
    assert sample("rotator_ready", {"account": "alpha"}) == 1
    metrics.clock = lambda: world.clock.now().timestamp()
    expiry = sample("rotator_key_expiry_seconds", {"account": "alpha", "credential": "ssh-key"})
    assert expiry is not None and expiry < 14 * 86400  # due, and still visible
    admin.resume(world.engine().context, by="ana@laptop")
    metrics.after_check("alpha", world.engine().check(), world.clock.now())
    assert sample("rotator_paused", {"account": "alpha"}) == 0
    metrics.forget("alpha")  # a replica that lost the lease no longer speaks for it
    assert sample("rotator_paused", {"account": "alpha"}) is None


@pytest.mark.parametrize("reason", ["", "x" * 201, "two\nlines"])
def test_a_bad_reason_is_a_usage_error(reason: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``--reason`` must be one printable line of at most 200 characters: exit 2, one line."""
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["pause", "alpha", "--reason", reason])
    assert exit_info.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
