"""PURE: what holds a plan back, as actions :func:`rotator.core.policy.plan` emits.

- :class:`Paused`: ``rotator pause`` recorded a pause in the account's state record. The plan
  is then the bearer token's refresh only: no rotation (started or resumed), no revocation,
  no forgetting, no orphan deleted. The engine logs ``check.paused`` once per check.
- :class:`Deferred`: a key is due by its age, but the rotation window
  (``ROTATOR_ROTATION_WINDOW``) is closed and the key can wait for it to open: the rotation,
  and with the manual registrar the request to a person, starts then. A key that would expire
  (less :meth:`rotator.core.policy.Policy.window_margin`) before the window opens is not
  deferred: it rotates with ``window_opens_at`` set, and the engine logs
  ``rotation.window_overridden``.

  Only the start of a rotation due by age waits for the window. Never held back: a rotation
  in flight (resumed, as it was started in or for the window), a repair (no current key, the
  current key gone at Encord, a consumer path holding another key), ``rotator rotate`` (a
  person asked, now), the bearer token, and the clean-up after the grace period (revoking a
  retiring key, forgetting a gone one, deleting an orphan): none of these issues a key, and
  the grace already gave consumers their time, so delaying a revoke would only keep an
  unneeded key alive and its slot under the cap taken.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from rotator.core.state import PauseRecord
from rotator.core.window import RotationWindow, WindowState


@dataclass(frozen=True, slots=True)
class Paused:
    """The account is paused: no key changes (the bearer token is still refreshed)."""

    at: datetime
    by: str
    reason: str | None = None

    @classmethod
    def of(cls, pause: PauseRecord) -> Paused:
        return cls(at=pause.at, by=pause.by, reason=pause.reason)

    def describe(self) -> dict[str, object]:
        """JSON-safe fields for ``rotator plan``."""
        return {"at": self.at.isoformat(), "by": self.by, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Deferred:
    """A key is due, but the rotation window is closed until ``until`` and it can wait."""

    kind: str
    until: datetime
    reason: str = "outside_window"

    def describe(self) -> dict[str, object]:
        """JSON-safe fields for ``rotator plan``."""
        return {"kind": self.kind, "until": self.until.isoformat(), "reason": self.reason}


def window_hold(
    window: RotationWindow | None, kind: str, now: datetime, expires_at: datetime,
    margin: timedelta,
) -> Deferred | datetime | None:
    """Whether a rotation of ``kind`` due by age may start at ``now``: None, it may (no
    window, or it is open); a :class:`Deferred`, it waits for the window; a time, the window
    is closed until then but the key (expiring at ``expires_at``, less ``margin``) cannot
    wait for it: rotate anyway."""
    if window is None:
        return None
    verdict = window.verdict(now, expires_at, margin)
    if verdict.state is WindowState.OPEN:
        return None
    if verdict.state is WindowState.OVERRIDDEN:
        return verdict.opens_at
    return Deferred(kind=kind, until=verdict.opens_at)
