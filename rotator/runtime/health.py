"""Health: what the last checks of each account said, and what follows from it.

Per account, :class:`AccountHealth` keeps the failures in a row and the back-off they earn,
the last check and the last success, the check in hand (and since when it runs), and which
peers answered the last check. A failure is classified through the error's ``kind`` and
``peer`` (:mod:`rotator.core.errors`), never by its class name. From the table of them,
:func:`readiness` answers ``/readyz`` and :func:`stuck_checks` is the health side of
``/healthz``. No I/O and no scheduler here: the daemon's checks report in.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from rotator.core.engine import CheckResult
from rotator.core.errors import ErrorKind, RotatorError, error_kind
from rotator.core.vocab import Outcome

MAX_BACKOFF = timedelta(minutes=10)
# A check running longer than this, or an interval job this overdue, makes /healthz fail: far
# beyond what retries and timeouts allow a healthy check (a few minutes at most).
STUCK_AFTER = timedelta(minutes=30)


def backoff_after(failures: int, interval: timedelta, retry_after: object = None) -> float:
    """Seconds to hold off the next check after ``failures`` failed ones in a row.

    The first failure waits only for the next regular check; then the wait doubles from one
    interval up to :data:`MAX_BACKOFF`, and never undercuts a peer's ``Retry-After``.
    """
    if failures == 1:
        return 0.0  # the next regular check is the first retry
    # The exponent is capped: 2.0 ** 1024 overflows, about a week into an outage at 10 minutes
    # a check, and the cap is reached long before 2 ** 30 intervals anyway.
    doubled = interval.total_seconds() * 2.0 ** min(failures - 1, 30)
    backoff = min(doubled, MAX_BACKOFF.total_seconds())
    if isinstance(retry_after, int | float):
        backoff = max(backoff, float(retry_after))
    return backoff


def peers_answered(exc: BaseException) -> tuple[bool | None, bool | None]:
    """``(vault_ok, encord_ok)`` after a check failed with ``exc`` (None: not known).

    Vault is read first, so an Encord outage means Vault answered; otherwise not known.
    """
    peer = exc.peer if isinstance(exc, RotatorError) else None
    vault_ok = False if peer == "vault" else True if peer == "encord" else None
    encord_ok = False if peer == "encord" else None
    return vault_ok, encord_ok


@dataclass
class AccountHealth:
    """What the last checks of one account said (for back-off, status and readiness)."""

    failures: int = 0
    not_before: float = 0.0  # monotonic time before which no check starts (back-off)
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
    error_kind: ErrorKind | None = None
    running_since: float | None = None  # monotonic start of the check in hand
    # ``rotator pause`` in the record as the last check read it (None: not known, e.g. while
    # standing by). Paused is ready: Vault and Encord answer, a person chose to hold still.
    paused: bool | None = None

    def succeeded(self, result: CheckResult) -> None:
        """The check begun at :attr:`last_check` ended without an error."""
        self._clear_failures()
        self.last_ok = self.last_check
        self.last_error = None
        self.last_result = result
        bootstrapped = Outcome.NOT_BOOTSTRAPPED not in result.outcomes
        self.ready = bootstrapped
        self.vault_ok = True
        self.encord_ok = True if bootstrapped else None  # not asked before a bootstrap
        state = result.state
        self.paused = None if state is None else state.paused is not None

    def standing_by(self) -> None:
        """Another replica holds the account's lease: Vault answered, so this one is ready."""
        self._clear_failures()
        self.ready = True
        self.vault_ok = True
        self.encord_ok = None
        self.paused = None  # the holder's to say

    def failed(
        self, exc: BaseException, *, interval: timedelta, now: float
    ) -> tuple[ErrorKind, float]:
        """The check failed with ``exc`` at monotonic time ``now``: count it, back off, and
        return the error's kind and the back-off in seconds."""
        self.failures += 1
        backoff = backoff_after(self.failures, interval, getattr(exc, "retry_after", None))
        self.not_before = now + backoff
        self.last_error = type(exc).__name__
        kind = error_kind(exc)
        self.ready = False
        self.error_kind = kind
        self.vault_ok, self.encord_ok = peers_answered(exc)
        return kind, backoff

    def _clear_failures(self) -> None:
        self.failures = 0
        self.not_before = 0.0
        self.error_kind = None

    def readiness(self) -> dict[str, Any]:
        """This account's entry in the ``/readyz`` body."""
        if self.ready:
            reason: str | None = None
        elif self.error_kind is not None:
            reason = "check_failed"
        elif self.last_ok is None:
            reason = "never_checked"  # or no check has run to its end yet
        else:
            reason = "not_bootstrapped"
        return {
            "ready": self.ready,
            "vault": self.vault_ok,
            "encord": self.encord_ok,
            "reason": reason,
            "error_kind": self.error_kind,
            "last_check": self.last_check.isoformat() if self.last_check else None,
            "last_ok": self.last_ok.isoformat() if self.last_ok else None,
            "paused": self.paused,
        }


def readiness(health: Mapping[str, AccountHealth]) -> tuple[bool, dict[str, Any]]:
    """For /readyz: Vault and Encord answered every account's last check."""
    accounts = {name: h.readiness() for name, h in health.items()}
    ok = bool(accounts) and all(a["ready"] for a in accounts.values())
    return ok, {"accounts": accounts}


def stuck_checks(
    health: Mapping[str, AccountHealth], *, bound: timedelta, now: float
) -> list[str]:
    """``check_stuck:<account>`` for each check running longer than ``bound`` at monotonic
    time ``now``."""
    limit = bound.total_seconds()
    problems: list[str] = []
    for name, h in health.items():
        since = h.running_since
        if since is not None and now - since > limit:
            problems.append(f"check_stuck:{name}")
    return problems
