"""How much the notifier may spend and hold (:class:`NotifyBounds`), and what it counted
(:class:`NotifyStats`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True, slots=True)
class NotifyBounds:
    """How a message is sent, and how much the notifier may hold.

    ``deadline_seconds``: one message, from the first connect to the last byte of the last
    attempt, back-off waits included. 5 s: a webhook answers in well under a second, and a
    person's message is worth little if it cannot get through in five.
    ``attempts`` (3) and ``backoff_seconds`` (0.5, doubled each time): for connection
    failures, 429 and 5xx; a retry that cannot start before the deadline is not made.
    ``max_answer_bytes``: the answer is read up to this, then dropped. 64 KiB: Slack answers
    ``ok``.
    ``queue_size``: messages waiting; the oldest is dropped past it. 100: a few per account.
    ``dedup``: the same (event, account, key_id) at most once per this. 1 h: manual mode
    repeats its request every check (minutes), a person needs it once an hour at most.
    """

    deadline_seconds: float = 5.0
    attempts: int = 3
    backoff_seconds: float = 0.5
    max_answer_bytes: int = 64 << 10
    queue_size: int = 100
    dedup: timedelta = timedelta(hours=1)

    def __post_init__(self) -> None:
        if self.deadline_seconds <= 0 or self.backoff_seconds < 0:
            raise ValueError("NotifyBounds: need deadline_seconds > 0 and backoff_seconds >= 0")
        if self.attempts < 1 or self.queue_size < 1 or self.max_answer_bytes < 1:
            raise ValueError("NotifyBounds: attempts, queue_size, max_answer_bytes must be >= 1")
        if self.dedup < timedelta(0):
            raise ValueError("NotifyBounds: dedup must not be negative")


@dataclass(frozen=True, slots=True)
class NotifyStats:
    """Counts since the notifier started (for metrics)."""

    queued: int = 0
    sent: int = 0
    failed: int = 0
    dropped: int = 0
    deduplicated: int = 0
    refused: int = 0
