"""PURE: what holds a plan back, as actions :func:`rotator.core.policy.plan` emits.

- :class:`Paused`: ``rotator pause`` recorded a pause in the account's state record. The plan
  is then the bearer token's refresh only: no rotation (started or resumed), no revocation,
  no forgetting, no orphan deleted. The engine logs ``check.paused`` once per check.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rotator.core.state import PauseRecord


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
