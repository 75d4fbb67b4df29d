"""This host's clock measured against Vault's, from the ``Date`` header of Vault's answers.

Leases (:mod:`rotator.adapters.lease`) compare expiry times written by different hosts; a
replica whose clock runs ahead would take a live lease early. Vault is the one clock every
replica talks to, so each replica measures itself against it.

One answer brackets the offset (Vault's time minus ours): the header names the whole second
``D`` in which Vault answered, and that moment lies between our sending the request (``t0``)
and our getting the answer (``t1``), so the offset lies in ``[D - t1, D + 1 - t0]``. Answers
at different fractions of a second narrow it: :class:`ClockOffset` intersects the brackets
of recent answers, newest first, and drops older ones that disagree with newer ones (the
clock was stepped). :meth:`ClockOffset.beyond` answers only what is certain: an offset
outside the tolerance on every reading of the brackets.

:data:`VAULT_CLOCK` is the process's estimator; the Vault client feeds it through a
``requests`` response hook (:func:`rotator.adapters.vault.client.make_client`).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any

import requests

WINDOW = 64
"""Answers kept (the newest): plenty to narrow the bracket to about one round trip."""
MAX_AGE = 600.0
"""Seconds an answer is kept: clocks drift (NTP slews up to 0.5 ms/s), so old brackets go."""


class ClockOffset:
    """The offset of Vault's clock from this host's, as a bracket narrowed over answers.

    Thread-safe. ``clock`` is this host's wall clock and ``monotonic`` ages the answers, both
    injectable for tests.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._monotonic = monotonic
        self._samples: deque[tuple[float, float, float]] = deque(maxlen=WINDOW)  # (at, lo, hi)
        self._lock = threading.Lock()

    def observe(self, date: str | None, *, sent: float, received: float) -> None:
        """Record one answer: its ``Date`` header, and our wall-clock times around it."""
        if not date:
            return
        try:
            vault = parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return  # a header we cannot read tells us nothing
        if received < sent:
            return  # our clock was stepped back mid-request: no bracket
        with self._lock:
            self._samples.append((self._monotonic(), vault - received, vault + 1 - sent))

    def hook(self, response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
        """A ``requests`` response hook: the answer was received now, sent ``elapsed`` ago."""
        received = self._clock()
        self.observe(
            response.headers.get("Date"),
            sent=received - response.elapsed.total_seconds(),
            received=received,
        )
        return response

    def bounds(self) -> tuple[float, float] | None:
        """The offset's bracket (seconds, Vault minus this host) from the newest answers that
        agree with each other; None before any answer."""
        with self._lock:
            oldest = self._monotonic() - MAX_AGE
            while self._samples and self._samples[0][0] < oldest:
                self._samples.popleft()
            samples = list(self._samples)
        if not samples:
            return None
        _, lo, hi = samples[-1]
        for _, s_lo, s_hi in reversed(samples[:-1]):
            if max(lo, s_lo) > min(hi, s_hi):
                break  # older answers disagree: the clock moved; trust the newer
            lo, hi = max(lo, s_lo), min(hi, s_hi)
        return lo, hi

    def beyond(self, tolerance: float) -> float | None:
        """The offset, if it is surely more than ``tolerance`` seconds either way (the nearer
        edge of the bracket); None if it may be within it, or nothing is known yet."""
        found = self.bounds()
        if found is None:
            return None
        lo, hi = found
        if lo > tolerance:
            return lo
        if hi < -tolerance:
            return hi
        return None


VAULT_CLOCK = ClockOffset()
"""The process's measure of its clock against Vault's (one Vault per process)."""
