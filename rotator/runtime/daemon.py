"""Wiring: settings -> adapters (Vault, Encord) -> one engine per account -> the scheduler.

``rotator run`` builds a :class:`Daemon` and calls :meth:`Daemon.run`, which blocks until
SIGTERM/SIGINT. Each account has one APScheduler interval job (``max_instances=1``,
coalescing, jitter) and, when something falls due before the next interval, a one-off job
at that moment; a per-account lock keeps the two from overlapping. Failures are logged and
ridden out with exponential back-off: once running, the daemon never exits on its own.

It also serves ``/healthz``, ``/readyz`` and ``/metrics`` on ``ROTATOR_HTTP_ADDR``
(:mod:`rotator.runtime.endpoints`).
"""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import structlog
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from rotator.adapters.encord.registry import registry_factory
from rotator.adapters.lease import FencedStore, Lease, LeaseLost, replica_id
from rotator.adapters.vault import VaultSession, VaultStore
from rotator.core.engine import CheckResult, Engine
from rotator.core.errors import (
    ConfigError,
    RotatorError,
    StoreConflict,
    StoreUnavailable,
    error_kind,
)
from rotator.core.policy import Policy
from rotator.core.ports import RegistryFactory, SecretStore
from rotator.runtime import logs
from rotator.runtime.config import Settings, settings_summary
from rotator.runtime.endpoints import OpsServer
from rotator.runtime.metrics import Metrics

log = structlog.get_logger("rotator.daemon")

STARTUP_DEADLINE = 12.0  # seconds to wait for Vault at start-up (the promise is < 15 s)
MAX_BACKOFF = timedelta(minutes=10)
# A check running longer than this, or an interval job this overdue, makes /healthz fail: far
# beyond what retries and timeouts allow a healthy check (a few minutes at most).
STUCK_AFTER = timedelta(minutes=30)


class ShutdownRequested(Exception):  # noqa: N818 - a signal, not an error
    """Raised inside a check's waits when the daemon is stopping; the record is consistent."""


def policy_from(settings: Settings) -> Policy:
    return Policy(
        key_ttl=settings.key_ttl,
        rotate_before=settings.rotate_before,
        grace=settings.grace,
        key_cap=settings.key_cap,
        kinds=settings.key_kinds,
        bearer="bearer-token" in settings.credentials,
        bearer_ttl=settings.bearer_ttl,
        check_interval=settings.check_interval,
        jitter=settings.jitter,
    )


def open_store(settings: Settings) -> VaultStore:
    """A store on a :class:`VaultSession` (ROTATOR_VAULT_AUTH); it logs in on first use,
    which :func:`wait_for_vault` makes happen at start-up."""
    v = settings.vault
    return VaultSession(v).store(mount=v.mount, prefix=v.prefix)


def wait_for_vault(store: VaultStore, deadline: float = STARTUP_DEADLINE) -> None:
    """Vault answers and accepts the token, or raise (within ``deadline`` seconds).

    An unreachable Vault is retried until the deadline (it may be starting next to us); a
    refused token or a wrong mount is final at once.
    """
    end = time.monotonic() + deadline
    delay = 0.25
    while True:
        try:
            store.check()
            return
        except StoreUnavailable:
            if time.monotonic() + delay >= end:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def make_factory(settings: Settings) -> RegistryFactory:
    """Encord registries for the engines: key management over the API, or by a person."""
    return registry_factory(
        settings.encord_domain,
        timeout=httpx.Timeout(10.0, connect=5.0),
        manual=settings.registrar == "manual",
        pooled=True,
    )


def make_engines(
    settings: Settings,
    store: SecretStore,
    factory: RegistryFactory,
    *,
    sleep: Callable[[float], None] = time.sleep,
    leases: Mapping[str, Lease] | None = None,
) -> dict[str, Engine]:
    """One engine per account; with ``leases``, each engine's writes are fenced by its
    account's lease."""
    policy = policy_from(settings)
    return {
        a.name: Engine(
            account=a,
            store=FencedStore(store, leases[a.name]) if leases else store,
            registry_factory=factory,
            policy=policy,
            sleep=sleep,
            # An idle check re-reads the consumer paths (to catch hand edits) every tenth
            # interval or 15 minutes, whichever is sooner, not every time.
            consumer_recheck=min(10 * settings.check_interval, timedelta(minutes=15)),
        )
        for a in settings.accounts
    }


@dataclass
class AccountHealth:
    """What the last checks of one account said (for back-off, status and readiness)."""

    failures: int = 0
    not_before: float = 0.0
    last_check: datetime | None = None
    last_ok: datetime | None = None
    last_error: str | None = None
    last_result: CheckResult | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    # For /readyz: did the last check succeed, and did Vault / Encord answer it (None: not
    # known, or not asked)?
    ready: bool = False
    vault_ok: bool | None = None
    encord_ok: bool | None = None
    error_kind: str | None = None
    running_since: float | None = None  # monotonic start of the check in hand


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
        self.leases = {
            a.name: Lease(self.store, a.name, holder=self.replica, ttl=settings.lease_ttl)
            for a in settings.accounts
        }
        self.engines = make_engines(
            settings,
            self.store,
            self.factory,
            sleep=self._sleep,
            leases=None if settings.dry_run else self.leases,
        )
        self.health = {name: AccountHealth() for name in self.engines}
        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=settings.max_concurrency)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=UTC,
        )
        self.stuck_after = STUCK_AFTER
        self.metrics = Metrics(
            [a.name for a in settings.accounts],
            key_cap=settings.key_cap,
            kinds=settings.key_kinds,
        )
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

    def _sleep(self, seconds: float) -> None:
        if self.stopping.wait(seconds):
            raise ShutdownRequested("daemon is stopping")

    # --- one check --------------------------------------------------------------------------

    def check_account(self, name: str) -> CheckResult | None:
        """Run one check of ``name`` now unless it is already running or backing off."""
        h = self.health[name]
        if self.stopping.is_set() or not h.lock.acquire(blocking=False):
            return None
        try:
            if time.monotonic() < h.not_before:
                return None
            h.running_since = time.monotonic()
            return self._check_locked(name, h)
        finally:
            h.running_since = None
            h.lock.release()

    def _check_locked(self, name: str, h: AccountHealth) -> CheckResult | None:
        engine = self.engines[name]
        run_id = uuid.uuid4().hex[:12]
        with structlog.contextvars.bound_contextvars(account=name, run_id=run_id):
            h.last_check = datetime.now(UTC)
            try:
                if not self.settings.dry_run and not self._lease(name, h):
                    return None
                result = engine.check(dry_run=self.settings.dry_run, stop=self.stopping.is_set)
            except ShutdownRequested:
                log.info("check.interrupted", reason="shutdown")
                return None
            except LeaseLost as exc:
                # Another replica took the account over (we were too slow to renew): stop
                # here; the record is consistent after every step, so it can carry on.
                log.warning("lease.lost", error=str(exc))
                self.metrics.set_lease_held(name, False)
                return None
            except StoreConflict as exc:
                # Someone else moved first: not a failure, re-plan on the next check.
                log.info("vault.write_conflict", error=str(exc))
                return None
            except RotatorError as exc:
                self._failed(name, h, exc)
                return None
            except Exception as exc:
                # A bug, not an outage: log it with its type (never its text, which may hold
                # data from a peer) and keep the daemon alive.
                log.exception("check.crashed", error_type=type(exc).__name__)
                self._failed(name, h, exc)
                return None
            h.failures = 0
            h.not_before = 0.0
            h.last_ok = h.last_check
            h.last_error = None
            h.last_result = result
            bootstrapped = "not_bootstrapped" not in result.outcomes
            h.ready = bootstrapped
            h.vault_ok = True
            h.encord_ok = True if bootstrapped else None  # not asked before a bootstrap
            h.error_kind = None
            self.metrics.after_check(name, result, datetime.now(UTC))
            log.debug("check.finished", outcomes=result.outcomes, keys_held=result.keys_held)
            self._schedule_due(name, result)
            return result

    def _lease(self, name: str, h: AccountHealth) -> bool:
        """Take or renew this account's lease; False when another replica holds it (then this
        one stands by: Vault answered, so it counts as ready)."""
        held = self.leases[name].acquire()
        self.metrics.set_lease_held(name, held)
        if not held:
            log.debug("lease.held_elsewhere")
            h.failures = 0
            h.not_before = 0.0
            h.ready = True
            h.vault_ok = True
            h.encord_ok = None
            h.error_kind = None
        return held

    def _failed(self, name: str, h: AccountHealth, exc: BaseException) -> None:
        h.failures += 1
        interval = self.settings.check_interval.total_seconds()
        backoff = min(interval * 2 ** (h.failures - 1), MAX_BACKOFF.total_seconds())
        retry_after = getattr(exc, "retry_after", None)
        if isinstance(retry_after, int | float):
            backoff = max(backoff, float(retry_after))
        if h.failures == 1:
            backoff = 0.0  # the next regular check is the first retry
        h.not_before = time.monotonic() + backoff
        h.last_error = type(exc).__name__
        kind = error_kind(exc)
        h.ready = False
        h.error_kind = kind
        # Vault is read first, so an Encord outage means Vault answered; otherwise not known.
        peer = exc.peer if isinstance(exc, RotatorError) else None
        h.vault_ok = False if peer == "vault" else True if peer == "encord" else None
        h.encord_ok = False if peer == "encord" else None
        self.metrics.check_failed(name, kind)
        message = str(exc) if isinstance(exc, RotatorError) else type(exc).__name__
        log.error(
            "check.failed",
            error_kind=kind,
            error_type=type(exc).__name__,
            error=message,
            failures=h.failures,
            backoff_s=round(backoff, 1),
        )

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

    # --- lifecycle --------------------------------------------------------------------------

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        """For /healthz: the scheduler runs, no check is stuck, no interval job is overdue."""
        problems: list[str] = []
        if self.stopping.is_set():
            problems.append("stopping")
        if not self.scheduler.running:
            problems.append("scheduler_not_running")
        bound = self.stuck_after.total_seconds()
        mono = time.monotonic()
        for name, h in self.health.items():
            since = h.running_since
            if since is not None and mono - since > bound:
                problems.append(f"check_stuck:{name}")
        if self.scheduler.running:
            late = datetime.now(UTC) - self.stuck_after - self.settings.check_interval
            for job in self.scheduler.get_jobs():
                due = job.next_run_time
                if job.id.startswith("check:") and due is not None and due < late:
                    problems.append(f"job_overdue:{job.id.removeprefix('check:')}")
        return not problems, {"problems": problems}

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """For /readyz: Vault and Encord answered every account's last check."""
        accounts: dict[str, Any] = {}
        for name, h in self.health.items():
            if h.ready:
                reason: str | None = None
            elif h.error_kind is not None:
                reason = "check_failed"
            elif h.last_ok is None:
                reason = "never_checked"  # or no check has run to its end yet
            else:
                reason = "not_bootstrapped"
            accounts[name] = {
                "ready": h.ready,
                "vault": h.vault_ok,
                "encord": h.encord_ok,
                "reason": reason,
                "error_kind": h.error_kind,
                "last_check": h.last_check.isoformat() if h.last_check else None,
                "last_ok": h.last_ok.isoformat() if h.last_ok else None,
            }
        ok = bool(accounts) and all(a["ready"] for a in accounts.values())
        return ok, {"accounts": accounts}

    def start(self) -> None:
        """Start the ops listener, then the scheduler: every account is checked at once
        (start-up reconciliation), then every CHECK_INTERVAL plus jitter.

        Raises :class:`ConfigError` naming ROTATOR_HTTP_ADDR when it cannot be listened on.
        """
        s = self.settings
        try:
            host, port = self.ops.start()
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise ConfigError(
                f"ROTATOR_HTTP_ADDR: cannot listen on {s.http_host}:{s.http_port} ({reason})"
            ) from None
        log.info("ops.listening", host=host, port=port, paths=["/healthz", "/readyz", "/metrics"])
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
        session = getattr(self.store, "session", None)
        if session is not None:  # keep the Vault token alive: renew it, or log in again
            self.scheduler.add_executor(ThreadPoolExecutor(max_workers=1), "vault")
            self.scheduler.add_job(
                session.maintain,
                IntervalTrigger(
                    seconds=min(session.maintain_interval(), s.check_interval.total_seconds()),
                    timezone=UTC,
                ),
                id="vault:maintain",
                executor="vault",
            )
        self.scheduler.start()
        log.info(
            "daemon.started",
            replica=self.replica,
            accounts=[a.name for a in s.accounts],
            settings=settings_summary(s),
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


def register_settings_secrets(settings: Settings) -> None:
    """Tell the log redactor the secret values this process was given."""
    for value in settings.vault.secret_values:
        logs.register_secret(value)
