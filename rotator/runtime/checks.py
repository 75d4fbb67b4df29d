"""One check of one account, as the daemon runs it.

:class:`CheckRunner` owns the steps around an engine's ``check()``: the per-account lock and
back-off gate, the lease, and what each way a check can end means for health
(:mod:`rotator.runtime.health`), metrics and the logs: ``check.finished``, ``check.failed``,
``check.crashed``, ``lease.lost``, ``vault.write_conflict``, ``check.interrupted``, and two
failures told by their cause instead: ``clock.skew_detected`` (Encord's 401 while its clock is
more than a minute off ours: the clock, not the key) and ``encord.key_management_unavailable``
(Encord answered 404/405 to the key list: logged once per account, with the hint
``ROTATOR_REGISTRAR=manual``; later failures of the same kind are ``check.failed`` at debug
level until a check succeeds, the account still failing /readyz and backing off). It knows
no scheduler: the daemon calls :meth:`CheckRunner.run` from its jobs and hears of each result
through ``on_result`` (to schedule what falls due before the next interval).
"""

from __future__ import annotations

import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import PurePath
from typing import Protocol

import structlog

from rotator.adapters.lease import LeaseLost
from rotator.core.engine import CheckResult
from rotator.core.errors import (
    ClockSkew,
    KeyManagementUnavailable,
    RotatorError,
    StoreConflict,
)
from rotator.runtime.health import AccountHealth
from rotator.runtime.metrics import Metrics

# The events of a check are the daemon's: they keep its logger name.
log = structlog.get_logger("rotator.daemon")


def _frames(exc: BaseException, limit: int = 12) -> list[str]:
    """Where ``exc`` was raised, innermost last, as ``file:line in function``: a traceback
    without the exception's text or any frame's locals."""
    return [
        f"{'/'.join(PurePath(frame.filename).parts[-2:])}:{frame.lineno} in {frame.name}"
        for frame in traceback.extract_tb(exc.__traceback__)[-limit:]
    ]


class ShutdownRequested(Exception):  # noqa: N818 - a signal, not an error
    """Raised inside a check's waits when the daemon is stopping; the record is consistent."""


def stoppable_sleep(stopping: threading.Event) -> Callable[[float], None]:
    """An engine's ``sleep`` that ends early, raising :class:`ShutdownRequested`, once
    ``stopping`` is set."""

    def sleep(seconds: float) -> None:
        if stopping.wait(seconds):
            raise ShutdownRequested("daemon is stopping")

    return sleep


class Checker(Protocol):
    """What the runner asks of an account's engine: one check."""

    def check(self, *, dry_run: bool = ..., stop: Callable[[], bool] = ...) -> CheckResult: ...


class Holder(Protocol):
    """What the runner asks of an account's lease: take or renew it."""

    def acquire(self) -> bool: ...


class CheckRunner:
    """Runs one account's check at a time, and records how it ended."""

    def __init__(
        self,
        *,
        engines: Mapping[str, Checker],
        leases: Mapping[str, Holder],
        health: Mapping[str, AccountHealth],
        metrics: Metrics,
        stopping: threading.Event,
        dry_run: bool,
        interval: timedelta,
        on_result: Callable[[str, CheckResult], None],
        deadline: timedelta | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``deadline``: a check that holds its lease ends between its steps once this long
        has passed since it renewed the lease (``check.deadline_passed``), so it never outlives
        the lease (:data:`rotator.adapters.lease.CHECK_SHARE`); None: no deadline."""
        self.engines = engines
        self.leases = leases
        self.health = health
        self.metrics = metrics
        self.stopping = stopping
        self.dry_run = dry_run  # a dry run writes nothing, leases included
        self.interval = interval
        self.on_result = on_result
        self.deadline = deadline
        self.monotonic = monotonic
        self._hinted: set[str] = set()  # accounts told that Encord offers no key management

    def run(self, name: str) -> CheckResult | None:
        """Run one check of ``name`` now unless it is already running or backing off."""
        h = self.health[name]
        if self.stopping.is_set() or not h.lock.acquire(blocking=False):
            return None
        try:
            if time.monotonic() < h.not_before:
                return None
            h.running_since = time.monotonic()
            return self._run_locked(name, h)
        finally:
            h.running_since = None
            h.lock.release()

    def _run_locked(self, name: str, h: AccountHealth) -> CheckResult | None:
        engine = self.engines[name]
        run_id = uuid.uuid4().hex[:12]
        with structlog.contextvars.bound_contextvars(account=name, run_id=run_id):
            h.last_check = datetime.now(UTC)
            try:
                renewed = self.monotonic()
                if not self.dry_run and not self._lease(name, h):
                    return None
                stop = self.stopping.is_set if self.dry_run else self._stop(renewed)
                result = engine.check(dry_run=self.dry_run, stop=stop)
            except ShutdownRequested:
                log.info("check.interrupted", reason="shutdown")
                return None
            except LeaseLost as exc:
                # Another replica took the account over (we were too slow to renew): stop
                # here; the record is consistent after every step, so it can carry on.
                log.warning("lease.lost", error=str(exc))
                self.metrics.set_lease_held(name, False)
                self.metrics.forget(name)
                return None
            except StoreConflict as exc:
                # Someone else moved first: not a failure, re-plan on the next check.
                log.info("vault.write_conflict", error=str(exc))
                return None
            except RotatorError as exc:
                self._failed(name, h, exc)
                return None
            except Exception as exc:
                # A bug, not an outage: log its type and where it happened (never its text,
                # which may hold data from a peer) and keep the daemon alive.
                log.error("check.crashed", error_type=type(exc).__name__, frames=_frames(exc))
                self._failed(name, h, exc)
                return None
            h.succeeded(result)
            self._hinted.discard(name)
            self.metrics.after_check(name, result, datetime.now(UTC))
            log.debug("check.finished", outcomes=result.outcomes, keys_held=result.keys_held)
            self.on_result(name, result)
            return result

    def _stop(self, renewed: float) -> Callable[[], bool]:
        """The engine's ``stop``: the daemon is stopping, or the check's deadline (counted
        from ``renewed``, just before the lease was renewed) has passed."""
        end = None if self.deadline is None else renewed + self.deadline.total_seconds()
        said = False

        def stop() -> bool:
            nonlocal said
            if self.stopping.is_set():
                return True
            if end is None or self.monotonic() < end:
                return False
            if not said:
                said = True
                log.info("check.deadline_passed", deadline_s=round(end - renewed, 3))
            return True

        return stop

    def _lease(self, name: str, h: AccountHealth) -> bool:
        """Take or renew this account's lease; False when another replica holds it (then this
        one stands by: Vault answered, so it counts as ready)."""
        held = self.leases[name].acquire()
        if not held:
            log.debug("lease.held_elsewhere")
            h.standing_by()
            self.metrics.stand_by(name, datetime.now(UTC))
        else:
            self.metrics.set_lease_held(name, True)
        return held

    def _failed(self, name: str, h: AccountHealth, exc: BaseException) -> None:
        kind, backoff = h.failed(exc, interval=self.interval, now=time.monotonic())
        self.metrics.check_failed(name, kind)
        message = str(exc) if isinstance(exc, RotatorError) else type(exc).__name__
        if isinstance(exc, ClockSkew):
            log.error(
                "clock.skew_detected",
                offset_s=round(exc.offset),
                peer="encord",
                error=message,
                hint="Encord refuses signatures more than 300 s off its clock: sync this "
                "host's clock (NTP); the key itself may be fine",
                failures=h.failures,
                backoff_s=round(backoff, 1),
            )
            return
        emit = log.error
        if isinstance(exc, KeyManagementUnavailable):
            if name not in self._hinted:
                self._hinted.add(name)
                log.error(
                    "encord.key_management_unavailable",
                    status=exc.status,
                    error=message,
                    hint="ROTATOR_REGISTRAR=manual",
                    detail="this Encord does not offer key management to rotator: set "
                    "ROTATOR_REGISTRAR=manual (a person adds and deletes keys in the Encord "
                    "UI), or check the service-account hash in ROTATOR_ACCOUNTS",
                )
            emit = log.debug  # said once; the account still fails /readyz and backs off
        emit(
            "check.failed",
            error_kind=kind,
            error_type=type(exc).__name__,
            error=message,
            failures=h.failures,
            backoff_s=round(backoff, 1),
        )
