"""The daemon: the scheduler and its lifecycle, from start-up to a clean stop on a signal.

``rotator run`` builds a :class:`Daemon` and calls :meth:`Daemon.run_until`, which blocks until
SIGTERM/SIGINT (:func:`stop_on_signals`). Each account has one APScheduler interval job
(``max_instances=1``, coalescing, jitter) and, when something falls due before the next
interval, a one-off job at that moment; a per-account lock keeps the two from overlapping.
Failures are logged and ridden out with exponential back-off: once running, the daemon never
exits on its own.

What it runs is built in :mod:`rotator.runtime.wiring`; one check is
:class:`~rotator.runtime.checks.CheckRunner`'s; what the checks said is
:mod:`rotator.runtime.health`'s. It serves ``/healthz``, ``/readyz`` and ``/metrics`` on
``ROTATOR_HTTP_ADDR`` (:mod:`rotator.runtime.endpoints`). The only module that imports
APScheduler.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobEvent,
    JobExecutionEvent,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from rotator.adapters.lease import CHECK_SHARE, replica_id
from rotator.adapters.vault import VaultStore
from rotator.core.engine import CheckResult
from rotator.core.errors import ConfigError
from rotator.core.ports import NO_NOTICES, RegistryFactory
from rotator.runtime.checks import CheckRunner, stoppable_sleep
from rotator.runtime.config import Settings, settings_summary
from rotator.runtime.endpoints import OpsServer
from rotator.runtime.health import STUCK_AFTER, AccountHealth, readiness, stuck_checks
from rotator.runtime.wiring import (
    make_engines,
    make_factory,
    make_leases,
    make_metrics,
    make_notifier,
    open_store,
)

__all__ = ["Daemon", "stop_on_signals", "watch_jobs"]

log = structlog.get_logger("rotator.daemon")

NOTIFY_DRAIN = 3.0
"""Seconds a stopping daemon gives queued messages to a person (within the 10 s promise)."""


def _scheduler(max_workers: int) -> BackgroundScheduler:
    """Checks run on a pool of ``max_workers`` threads; a late run is coalesced, never
    dropped, and never overlaps one still running."""
    return BackgroundScheduler(
        executors={"default": ThreadPoolExecutor(max_workers=max_workers)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        timezone=UTC,
    )


# APScheduler's own log lines for what the listener below reports as stable events: the
# scheduler's "skipped: maximum number of running instances reached", the executor's "Run time
# of job ... was missed" and "Job ... raised an exception" (their message templates).
_MAPPED_TEMPLATES = (
    'Execution of job "%s" skipped',
    'Run time of job "%s" was missed',
    'Job "%s" raised an exception',
)
_SCHEDULER_LOGGERS = ("apscheduler.scheduler", "apscheduler.executors.default")


class _Mapped(logging.Filter):
    """Drops APScheduler's free-text lines that :func:`watch_jobs` logs as events instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_MAPPED_TEMPLATES)


_MAPPED = _Mapped()


def _on_job_event(event: JobEvent) -> None:
    """One stable event per scheduler incident, named by account (job ids are
    ``check:NAME``, ``due:NAME`` or ``vault:maintain``)."""
    kind, _, account = event.job_id.partition(":")
    where = {"account": account} if kind in ("check", "due") else {"job": event.job_id}
    if event.code == EVENT_JOB_MAX_INSTANCES:
        # The account's previous check is still running: this run is left out, not queued.
        log.info("scheduler.job_skipped", reason="still_running", **where)
    elif event.code == EVENT_JOB_MISSED:
        log.warning("scheduler.job_missed", **where)
    elif isinstance(event, JobExecutionEvent) and event.exception is not None:
        # Checks catch everything themselves; this is a bug in the job's own code. Its type
        # only: an exception's text may hold data from a peer.
        log.error("scheduler.job_crashed", error_type=type(event.exception).__name__, **where)


def watch_jobs(scheduler: BackgroundScheduler) -> None:
    """Report skipped, missed and crashed jobs as ``scheduler.job_skipped``,
    ``scheduler.job_missed`` and ``scheduler.job_crashed`` (with the account), instead of
    APScheduler's own free-text lines, whose message would otherwise become the event name."""
    mask = EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED | EVENT_JOB_ERROR
    scheduler.add_listener(_on_job_event, mask)
    for name in _SCHEDULER_LOGGERS:
        logger = logging.getLogger(name)
        if _MAPPED not in logger.filters:
            logger.addFilter(_MAPPED)


class Daemon:
    """The long-running process: schedules a check per account, until told to stop."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: VaultStore | None = None,
        factory: RegistryFactory | None = None,
    ) -> None:
        self.settings = settings
        self.stopping = threading.Event()
        self.store = store if store is not None else open_store(settings)
        self.factory = factory if factory is not None else make_factory(settings)
        # Several replicas may run: a per-account lease in Vault decides which one works on an
        # account. A dry run writes nothing, leases included.
        self.replica = replica_id()
        self.leases = make_leases(settings, self.store, holder=self.replica)
        # Messages to a person go out on the notifier's own thread: never in a check's way.
        self.notifier = make_notifier(settings)
        self.engines = make_engines(
            settings,
            self.store,
            self.factory,
            sleep=stoppable_sleep(self.stopping),
            leases=None if settings.dry_run else self.leases,
            notices=self.notifier or NO_NOTICES,
        )
        self.health = {name: AccountHealth() for name in self.engines}
        self.metrics = make_metrics(settings)
        self.checks = CheckRunner(
            engines=self.engines,
            leases=self.leases,
            health=self.health,
            metrics=self.metrics,
            stopping=self.stopping,
            dry_run=settings.dry_run,
            interval=settings.check_interval,
            on_result=self._schedule_due,
            deadline=settings.lease_ttl * CHECK_SHARE,
        )
        self.scheduler = _scheduler(settings.max_concurrency)
        watch_jobs(self.scheduler)
        self.stuck_after = STUCK_AFTER
        self.ops = OpsServer(
            settings.http_host,
            settings.http_port,
            metrics=self.metrics,
            healthy=self.liveness,
            ready=self.readiness,
        )

    @property
    def ops_port(self) -> int | None:
        """The port /healthz, /readyz and /metrics are served on (None until started)."""
        address = self.ops.address
        return address[1] if address is not None else None

    # --- checks -----------------------------------------------------------------------------

    def check_account(self, name: str) -> CheckResult | None:
        """Run one check of ``name`` now unless it is already running or backing off."""
        return self.checks.run(name)

    def _schedule_due(self, name: str, result: CheckResult) -> None:
        """When something falls due before the next interval run, check at that moment."""
        due = result.next_due
        if due is None or self.stopping.is_set():
            return
        job = self.scheduler.get_job(f"check:{name}")
        next_run = job.next_run_time if job is not None else None
        if next_run is not None and due >= next_run:
            return
        run_at = max(due, datetime.now(UTC)) + timedelta(milliseconds=50)
        self.scheduler.add_job(
            self.check_account,
            "date",
            args=[name],
            id=f"due:{name}",
            run_date=run_at,
            replace_existing=True,
        )

    # --- probes -----------------------------------------------------------------------------

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        """For /healthz: the scheduler runs, no check is stuck, no interval job is overdue."""
        problems: list[str] = []
        if self.stopping.is_set():
            problems.append("stopping")
        if not self.scheduler.running:
            problems.append("scheduler_not_running")
        problems += stuck_checks(self.health, bound=self.stuck_after, now=time.monotonic())
        if self.scheduler.running:
            late = datetime.now(UTC) - self.stuck_after - self.settings.check_interval
            for job in self.scheduler.get_jobs():
                due = job.next_run_time
                if job.id.startswith("check:") and due is not None and due < late:
                    problems.append(f"job_overdue:{job.id.removeprefix('check:')}")
        return not problems, {"problems": problems}

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """For /readyz: Vault and Encord answered every account's last check."""
        return readiness(self.health)

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Start the ops listener, then the scheduler: every account is checked at once
        (start-up reconciliation), then every CHECK_INTERVAL plus jitter.

        Raises :class:`ConfigError` naming ROTATOR_HTTP_ADDR when it cannot be listened on.
        """
        self._listen()
        self._add_check_jobs()
        self._add_vault_upkeep()
        self.scheduler.start()
        log.info(
            "daemon.started",
            replica=self.replica,
            accounts=[a.name for a in self.settings.accounts],
            settings=settings_summary(self.settings),
        )

    def _listen(self) -> None:
        s = self.settings
        try:
            host, port = self.ops.start()
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise ConfigError(
                f"ROTATOR_HTTP_ADDR: cannot listen on {s.http_host}:{s.http_port} ({reason})"
            ) from None
        log.info("ops.listening", host=host, port=port, paths=["/healthz", "/readyz", "/metrics"])

    def _add_check_jobs(self) -> None:
        s = self.settings
        for name in self.engines:
            self.scheduler.add_job(
                self.check_account,
                IntervalTrigger(
                    seconds=s.check_interval.total_seconds(),
                    jitter=s.jitter.total_seconds() or None,
                    timezone=UTC,
                ),
                args=[name],
                id=f"check:{name}",
                next_run_time=datetime.now(UTC),
            )

    def _add_vault_upkeep(self) -> None:
        """Keep the Vault token alive (renew it, or log in again), on an executor of its own."""
        session = getattr(self.store, "session", None)
        if session is None:
            return
        self.scheduler.add_executor(ThreadPoolExecutor(max_workers=1), "vault")
        self.scheduler.add_job(
            session.maintain,
            IntervalTrigger(
                seconds=min(
                    session.maintain_interval(), self.settings.check_interval.total_seconds()
                ),
                timezone=UTC,
            ),
            id="vault:maintain",
            executor="vault",
        )

    def stop(self, reason: str = "signal") -> None:
        """Stop scheduling; let running checks finish their current step; return."""
        if self.stopping.is_set():
            return
        self.stopping.set()
        log.info("daemon.stopping", reason=reason)
        self.scheduler.shutdown(wait=True)
        for lease in self.leases.values():
            lease.release()  # another replica takes over at once, not after expiry
        close = getattr(self.factory, "close", None)
        if callable(close):
            close()  # pooled Encord connections
        if self.notifier is not None:
            self.notifier.close(timeout=NOTIFY_DRAIN)  # messages queued get a moment to go out
        self.ops.stop()
        log.info("daemon.stopped")

    def run_until(self, stop: threading.Event) -> None:
        """Run until ``stop`` is set (by a signal handler), then shut down cleanly."""
        self.start()
        while not stop.wait(0.5):
            pass
        self.stop()


def stop_on_signals(event_name: str) -> threading.Event:
    """An event set by SIGTERM or SIGINT (logged as ``event_name``), for a clean stop."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info(event_name, signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop
