"""Health and the check runner, without a scheduler, Vault or Encord: back-off, readiness,
the classification of a failure by its kind and peer, and the log events, health and metrics
each way a check can end leaves behind."""

from __future__ import annotations

import threading
from collections.abc import Callable, MutableMapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from rotator.adapters.lease import LeaseLost
from rotator.core.engine import CheckResult
from rotator.core.errors import (
    AccessDenied,
    ErrorKind,
    RegistryUnavailable,
    StoreConflict,
    StoreUnavailable,
)
from rotator.runtime.checks import CheckRunner, ShutdownRequested, stoppable_sleep
from rotator.runtime.health import (
    MAX_BACKOFF,
    AccountHealth,
    backoff_after,
    peers_answered,
    readiness,
    stuck_checks,
)
from rotator.runtime.metrics import Metrics

MINUTE = timedelta(minutes=1)


# --- health ----------------------------------------------------------------------------------


def test_backoff_waits_for_the_next_check_then_doubles_up_to_the_cap() -> None:
    """First failure: no extra wait; then 2, 4, 8... intervals, never beyond MAX_BACKOFF."""
    assert backoff_after(1, MINUTE) == 0.0
    assert backoff_after(2, MINUTE) == 120.0
    assert backoff_after(3, MINUTE) == 240.0
    assert backoff_after(10, MINUTE) == MAX_BACKOFF.total_seconds()
    # A week-long outage at one check every ten minutes: no overflow, still the cap.
    assert backoff_after(2000, MINUTE) == MAX_BACKOFF.total_seconds()


def test_backoff_honours_retry_after_except_on_the_first_failure() -> None:
    """A peer's Retry-After lengthens the wait from the second failure on; junk is ignored."""
    assert backoff_after(1, MINUTE, 900) == 0.0
    assert backoff_after(2, MINUTE, 900.0) == 900.0
    assert backoff_after(2, MINUTE, 5) == 120.0
    assert backoff_after(2, MINUTE, "soon") == 120.0


@pytest.mark.parametrize(
    ("exc", "vault_ok", "encord_ok"),
    [
        (StoreUnavailable("x"), False, None),
        (RegistryUnavailable("x"), True, False),
        (AccessDenied("x"), None, None),
        (ValueError("x"), None, None),
    ],
)
def test_peers_answered_follows_the_errors_peer(
    exc: BaseException, vault_ok: bool | None, encord_ok: bool | None
) -> None:
    """A Vault outage: Vault did not answer; an Encord outage: Encord did not, Vault did."""
    assert peers_answered(exc) == (vault_ok, encord_ok)


def test_readiness_reasons_follow_the_last_check() -> None:
    """never_checked, then check_failed (with its kind), then ready; not_bootstrapped after a
    check that found no key."""
    h = AccountHealth()
    assert h.readiness()["reason"] == "never_checked"
    kind, backoff = h.failed(RegistryUnavailable("down"), interval=MINUTE, now=100.0)
    assert (kind, backoff, h.not_before) == (ErrorKind.TRANSIENT, 0.0, 100.0)
    entry = h.readiness()
    assert entry["reason"] == "check_failed" and entry["error_kind"] == "transient"
    assert (entry["vault"], entry["encord"]) == (True, False)
    h.last_check = datetime.now(UTC)  # as the runner stamps each check's start
    h.succeeded(CheckResult(account="alpha", outcomes=["rotated"]))
    assert h.readiness()["reason"] is None and h.ready and h.failures == 0
    h.succeeded(CheckResult(account="alpha", outcomes=["not_bootstrapped"]))
    entry = h.readiness()
    assert entry["reason"] == "not_bootstrapped" and entry["encord"] is None


def test_readiness_needs_every_account_ready_and_at_least_one() -> None:
    """No accounts is not ready; one account not ready makes the whole process not ready."""
    assert readiness({}) == (False, {"accounts": {}})
    ok, standing = AccountHealth(), AccountHealth()
    ok.succeeded(CheckResult(account="a"))
    standing.standing_by()
    assert readiness({"a": ok, "b": standing})[0] is True
    assert readiness({"a": ok, "b": AccountHealth()})[0] is False


def test_stuck_checks_names_checks_running_past_the_bound() -> None:
    """Only a check running longer than the bound is reported."""
    slow, quick, idle = AccountHealth(), AccountHealth(), AccountHealth()
    slow.running_since, quick.running_since = 0.0, 95.0
    found = stuck_checks({"s": slow, "q": quick, "i": idle}, bound=MINUTE, now=100.0)
    assert found == ["check_stuck:s"]


# --- the check runner ------------------------------------------------------------------------


class FakeEngine:
    def __init__(self, outcome: Callable[[], CheckResult]) -> None:
        self.outcome = outcome
        self.calls: list[bool] = []

    def check(
        self, *, dry_run: bool = False, stop: Callable[[], bool] = lambda: False
    ) -> CheckResult:
        self.calls.append(dry_run)
        return self.outcome()


class FakeLease:
    def __init__(self, held: bool = True) -> None:
        self.held = held
        self.asked = 0

    def acquire(self) -> bool:
        self.asked += 1
        return self.held


def raising(exc: BaseException) -> Callable[[], CheckResult]:
    def outcome() -> CheckResult:
        raise exc

    return outcome


class Rig:
    """A runner for one account ``alpha`` over a fake engine and lease."""

    def __init__(
        self, outcome: Callable[[], CheckResult], *, held: bool = True, dry_run: bool = False
    ) -> None:
        self.engine = FakeEngine(outcome)
        self.lease = FakeLease(held)
        self.health = {"alpha": AccountHealth()}
        self.metrics = Metrics(["alpha"], key_cap=5, kinds=("ssh-key",))
        self.stopping = threading.Event()
        self.results: list[tuple[str, CheckResult]] = []
        self.runner = CheckRunner(
            engines={"alpha": self.engine},
            leases={"alpha": self.lease},
            health=self.health,
            metrics=self.metrics,
            stopping=self.stopping,
            dry_run=dry_run,
            interval=MINUTE,
            on_result=lambda name, result: self.results.append((name, result)),
        )

    def run(self) -> tuple[CheckResult | None, list[MutableMapping[str, Any]]]:
        with capture_logs() as events:
            result = self.runner.run("alpha")
        return result, events

    def sample(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, {"account": "alpha", **labels})


def test_a_good_check_is_recorded_and_reported() -> None:
    """Health ready, metrics fed, check.finished logged, on_result told, the lease taken."""
    result = CheckResult(account="alpha", outcomes=["rotated"], keys_held=2)
    rig = Rig(lambda: result)
    got, events = rig.run()
    assert got is result and rig.results == [("alpha", result)]
    assert [e["event"] for e in events] == ["check.finished"]
    assert events[0]["outcomes"] == ["rotated"] and events[0]["keys_held"] == 2
    h = rig.health["alpha"]
    assert h.ready and h.last_ok == h.last_check and h.running_since is None
    assert rig.lease.asked == 1 and rig.sample("rotator_lease_held") == 1
    assert rig.sample("rotator_ready") == 1


def test_a_failed_check_logs_its_kind_and_backs_off() -> None:
    """check.failed carries error_kind, error_type, error, failures and backoff_s; the second
    failure in a row holds the third check off."""
    rig = Rig(raising(RegistryUnavailable("Encord did not answer")))
    assert rig.run()[0] is None
    _, events = rig.run()
    (failed,) = events
    assert failed == {
        "event": "check.failed",
        "log_level": "error",
        "error_kind": "transient",
        "error_type": "RegistryUnavailable",
        "error": "Encord did not answer",
        "failures": 2,
        "backoff_s": 120.0,
    }
    assert rig.sample("rotator_errors_total", kind="transient") == 2
    assert rig.run() == (None, [])  # backing off: the engine is not asked
    assert len(rig.engine.calls) == 2
    assert rig.results == []


def test_a_crash_logs_its_type_never_its_text() -> None:
    """An exception outside the tree: check.crashed and check.failed name its type only."""
    rig = Rig(raising(ValueError("peer data that must not be logged")))
    _, events = rig.run()
    assert [e["event"] for e in events] == ["check.crashed", "check.failed"]
    assert events[0]["error_type"] == "ValueError"
    assert events[1]["error"] == "ValueError" and events[1]["error_kind"] == "internal"
    assert "must not be logged" not in repr(events)
    assert rig.sample("rotator_errors_total", kind="internal") == 1


def test_a_crash_rendered_as_the_daemon_writes_it_holds_no_text() -> None:
    """Through the real JSON pipeline (not only captured events): check.crashed carries the
    frames where the bug is, and neither the exception's text nor a traceback with it."""
    import io
    import json

    from rotator.runtime import logs

    stream = io.StringIO()
    logs.configure(fmt="json", level="info", stream=stream)
    try:
        Rig(raising(ValueError("peer data that must not be logged"))).runner.run("alpha")
    finally:
        logs.reset()
    text = stream.getvalue()
    assert "must not be logged" not in text
    crashed = [json.loads(line) for line in text.splitlines() if '"check.crashed"' in line]
    assert len(crashed) == 1 and crashed[0]["error_type"] == "ValueError"
    assert crashed[0]["frames"] and all(" in " in f for f in crashed[0]["frames"])
    assert "exception" not in crashed[0]


@pytest.mark.parametrize(
    ("exc", "event"),
    [
        (LeaseLost("lease moved on"), "lease.lost"),
        (StoreConflict("version moved on"), "vault.write_conflict"),
        (ShutdownRequested("daemon is stopping"), "check.interrupted"),
    ],
)
def test_endings_that_are_not_failures(exc: BaseException, event: str) -> None:
    """A lost lease, a lost write race and a shutdown are logged, but count no failure."""
    rig = Rig(raising(exc))
    result, events = rig.run()
    assert result is None and [e["event"] for e in events] == [event]
    assert rig.health["alpha"].failures == 0
    assert rig.sample("rotator_errors_total", kind="internal") == 0
    if event == "lease.lost":
        assert rig.sample("rotator_lease_held") == 0


def test_a_lease_held_elsewhere_stands_by_ready() -> None:
    """Another replica holds the account: no check, and this replica counts as ready."""
    rig = Rig(lambda: CheckResult(account="alpha"), held=False)
    result, events = rig.run()
    assert result is None and rig.engine.calls == []
    assert [e["event"] for e in events] == ["lease.held_elsewhere"]
    assert rig.health["alpha"].ready and rig.sample("rotator_lease_held") == 0
    # ...and says so to Prometheus: RotatorNotReady must not fire for a healthy standby.
    assert rig.sample("rotator_ready") == 1


def test_a_dry_run_takes_no_lease_and_a_stopping_runner_no_check() -> None:
    """A dry run checks without the lease; once stopping, nothing runs."""
    rig = Rig(lambda: CheckResult(account="alpha"), dry_run=True)
    assert rig.run()[0] is not None
    assert rig.lease.asked == 0 and rig.engine.calls == [True]
    rig.stopping.set()
    assert rig.run() == (None, [])
    assert rig.engine.calls == [True]


def test_stoppable_sleep_ends_early_once_stopping() -> None:
    """The engines' sleep raises ShutdownRequested at once when the daemon is stopping."""
    stopping = threading.Event()
    sleep = stoppable_sleep(stopping)
    sleep(0.0)
    stopping.set()
    with pytest.raises(ShutdownRequested):
        sleep(60.0)


class Stepping:
    """An engine whose check asks ``stop`` before each of its steps, each ``step`` seconds of
    the runner's clock long, and records the answers."""

    def __init__(self, now: list[float], step: float, steps: int) -> None:
        self.now, self.step, self.steps = now, step, steps
        self.asked: list[bool] = []

    def check(
        self, *, dry_run: bool = False, stop: Callable[[], bool] = lambda: False
    ) -> CheckResult:
        for _ in range(self.steps):
            self.asked.append(stop())
            if self.asked[-1]:
                break
            self.now[0] += self.step
        return CheckResult(account="alpha")


def test_a_check_ends_between_steps_at_its_deadline() -> None:
    """Counted from the lease's renewal at its start: steps run until the deadline has
    passed, the next is not started (check.deadline_passed, once); the next check has a
    deadline of its own."""
    now = [500.0]
    engine = Stepping(now, step=4.0, steps=5)
    runner = CheckRunner(
        engines={"alpha": engine},
        leases={"alpha": FakeLease()},
        health={"alpha": AccountHealth()},
        metrics=Metrics(["alpha"], key_cap=5, kinds=("ssh-key",)),
        stopping=threading.Event(),
        dry_run=False,
        interval=MINUTE,
        on_result=lambda name, result: None,
        deadline=timedelta(seconds=10),
        monotonic=lambda: now[0],
    )
    with capture_logs() as events:
        assert runner.run("alpha") is not None
    assert engine.asked == [False, False, False, True], "at 0, 4, 8 s: go on; at 12 s: stop"
    assert [e["event"] for e in events] == ["check.deadline_passed", "check.finished"]
    assert events[0]["deadline_s"] == 10.0
    engine.asked.clear()
    runner.run("alpha")
    assert engine.asked[:3] == [False, False, False]
