"""The sender: :class:`Notifier` takes messages without blocking, deduplicates them, holds
them on a bounded queue and hands them, one at a time, to a worker thread that delivers them
(:mod:`.delivery`); it counts what happened (:class:`~.bounds.NotifyStats`).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import structlog

from rotator.adapters.notify.bounds import NotifyBounds, NotifyStats
from rotator.adapters.notify.delivery import Delivery
from rotator.adapters.notify.notice import Notice, Severity, check_token
from rotator.adapters.notify.target import NotifyTarget
from rotator.core.vocab import utc

log = structlog.get_logger("rotator.notify")


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class _Item:
    notice: Notice
    stamp: datetime  # the dedup entry this message made
    queued_at: float  # time.monotonic()


class Notifier:
    """Sends :class:`Notice` s to one target from a bounded queue, on one worker thread.

    ``clock`` (UTC) drives deduplication; ``transport`` replaces the network in unit tests
    (then no deadline is enforced below httpx). Call :meth:`close` at shutdown.
    """

    def __init__(
        self,
        target: NotifyTarget,
        *,
        service: str = "rotator",
        bounds: NotifyBounds | None = None,
        clock: Callable[[], datetime] = _utcnow,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        check_token("service", service)
        self.target = target
        self.service = service
        self.bounds = bounds if bounds is not None else NotifyBounds()
        self._clock = clock
        self._lock = threading.Condition()
        self._queue: deque[_Item] = deque()
        self._busy = False
        self._closing = False
        self._last_sent: dict[tuple[str, str, str | None], datetime] = {}
        self._counts = {name: 0 for name in NotifyStats.__dataclass_fields__}
        self._delivery = Delivery(
            target, service=service, bounds=self.bounds, transport=transport
        )
        self._worker = threading.Thread(target=self._run, name="rotator-notify", daemon=True)
        self._worker.start()

    def __repr__(self) -> str:
        return f"Notifier(target={self.target.shown!r})"

    # --- the caller's side: never blocks, never raises -------------------------------------

    def notify(
        self,
        event: str,
        *,
        account: str,
        kind: str | None = None,
        key_id: str | None = None,
        title: str | None = None,
        public_key: str | None = None,
        hint: str | None = None,
        expires_at: datetime | None = None,
        severity: Severity | None = None,
    ) -> bool:
        """Queue a message; True if queued, False if refused (logged) or a duplicate."""
        try:
            notice = Notice(
                event=event,
                account=account,
                kind=kind,
                key_id=key_id,
                title=title,
                public_key=public_key,
                hint=hint,
                expires_at=expires_at,
                severity=severity,
            )
        except ValueError as exc:
            # The message names the field and what is wrong with it, never the value.
            self._count("refused")
            log.warning("notify.refused", notify_event=event[:60], reason=str(exc))
            return False
        return self.submit(notice)

    def submit(self, notice: Notice) -> bool:
        """Queue ``notice``; False if the same one went out within the dedup interval."""
        now = utc(self._clock())
        dropped: _Item | None = None
        with self._lock:
            if self._closing:
                return False
            last = self._last_sent.get(notice.dedup_key)
            if last is not None and now - last < self.bounds.dedup:
                self._counts["deduplicated"] += 1
                return False
            self._last_sent[notice.dedup_key] = now
            if len(self._last_sent) > 4 * self.bounds.queue_size + 1000:
                self._prune(now)
            if len(self._queue) >= self.bounds.queue_size:
                dropped = self._queue.popleft()
                self._forget(dropped)
                self._counts["dropped"] += 1
            self._queue.append(_Item(notice, now, time.monotonic()))
            self._counts["queued"] += 1
            self._lock.notify_all()
        if dropped is not None:
            log.warning(
                "notify.dropped",
                notify_event=dropped.notice.event,
                account=dropped.notice.account,
                reason="queue_full",
                dropped_total=self.stats().dropped,
            )
        return True

    def stats(self) -> NotifyStats:
        """The counts so far."""
        with self._lock:
            return NotifyStats(**self._counts)

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the queue to empty and the worker to go idle."""
        end = time.monotonic() + timeout
        with self._lock:
            while self._queue or self._busy:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
        return True

    def close(self, timeout: float | None = None) -> None:
        """Stop taking messages; give those queued up to ``timeout`` seconds (default: one
        message's deadline) to go out, then stop the worker."""
        with self._lock:
            self._closing = True
            self._lock.notify_all()
        self._worker.join(self.bounds.deadline_seconds if timeout is None else timeout)
        if not self._worker.is_alive():
            self._delivery.close()

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- bookkeeping (under the lock) --------------------------------------------------------

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def _forget(self, item: _Item) -> None:
        """An undelivered message may go out again at once."""
        if self._last_sent.get(item.notice.dedup_key) == item.stamp:
            del self._last_sent[item.notice.dedup_key]

    def _prune(self, now: datetime) -> None:
        for key, at in list(self._last_sent.items()):
            if now - at >= self.bounds.dedup:
                del self._last_sent[key]

    # --- the worker ------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closing:
                    self._busy = False
                    self._lock.notify_all()
                    self._lock.wait()
                if not self._queue:  # closing, nothing left
                    self._busy = False
                    self._lock.notify_all()
                    return
                item = self._queue.popleft()
                self._busy = True
            try:
                delivered = self._delivery.send(item.notice, item.queued_at)
            except Exception as exc:  # never let the worker die; never log the text
                log.error(
                    "notify.failed",
                    notify_event=item.notice.event,
                    account=item.notice.account,
                    target=self.target.shown,
                    reason=f"error_{type(exc).__name__}",
                )
                delivered = False
            with self._lock:
                self._counts["sent" if delivered else "failed"] += 1
                if not delivered:
                    self._forget(item)
