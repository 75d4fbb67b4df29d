"""Metrics: what the daemon tells Prometheus.

:class:`Metrics` owns its own :class:`prometheus_client.CollectorRegistry` (never the global
one, so tests and several daemons in one process do not clash). The daemon feeds it after
every check (:meth:`Metrics.after_check`, :meth:`Metrics.check_failed`); key age and time to
expiry are computed when Prometheus scrapes, from the issue and expiry times the last check
saw, so they move between checks.

Every label value an alert may watch comes from the vocabulary and is set up at 0, so that
``increase()`` sees the first one: the outcomes a rotation attempt can end in
(:data:`~rotator.core.vocab.ROTATION_RESULTS`), the error kinds of ``check.failed``
(:data:`~rotator.core.errors.ERROR_KINDS`) and the rotated key kinds
(:data:`~rotator.core.vocab.KEY_KINDS`). Served over HTTP by :mod:`rotator.runtime.endpoints`.
"""

from __future__ import annotations

import contextlib
import platform
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, NamedTuple

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from rotator import __version__
from rotator.core.engine import CheckResult
from rotator.core.errors import ERROR_KINDS
from rotator.core.state import AccountState
from rotator.core.vocab import BEARER, KEY_KINDS, ROTATION_RESULTS, KeyKind, Outcome


class _Family(NamedTuple):
    """One metric family: its name, its help line and its label names."""

    name: str
    doc: str
    labels: tuple[str, ...] = ()

    def counter(self, registry: CollectorRegistry) -> Counter:
        return Counter(self.name, self.doc, self.labels, registry=registry)

    def gauge(self, registry: CollectorRegistry) -> Gauge:
        return Gauge(self.name, self.doc, self.labels, registry=registry)


# The families, one line of help each; label sets an alert may watch start at 0 (_start).
_ROTATIONS: Final = _Family(
    "rotator_rotations",
    "Rotation attempts by account, credential and outcome.",
    ("account", "credential", "outcome"),
)
_ERRORS: Final = _Family(
    "rotator_errors",
    "Failed checks by account and error kind.",
    ("account", "kind"),
)
_KEYS_AT_ENCORD: Final = _Family(
    "rotator_keys_at_encord",
    "Keys the account holds at Encord (any owner), as of the last full check.",
    ("account",),
)
_KEY_CAP: Final = _Family("rotator_key_cap", "Keys the account may hold at Encord.", ("account",))
_LAST_SUCCESS: Final = _Family(
    "rotator_last_success_timestamp_seconds",
    "When this credential was last rotated (bearer-token: minted) successfully.",
    ("account", "credential"),
)
_LEASE_HELD: Final = _Family(
    "rotator_lease_held",
    "1 while this replica holds the account's lease, else 0.",
    ("account",),
)
_CHECK_LAST: Final = _Family(
    "rotator_check_last_timestamp_seconds",
    "When the account's last check ended, successful or not.",
    ("account",),
)
_READY: Final = _Family(
    "rotator_ready",
    "1 when Vault and Encord answered the account's last check, else 0.",
    ("account",),
)
_PAUSED: Final = _Family(
    "rotator_paused",
    "1 while the account is paused (rotator pause): no key of it changes; else 0.",
    ("account",),
)
_UP: Final = _Family("rotator_up", "1 while the daemon runs.")
_BUILD_INFO: Final = _Family(
    "rotator_build_info",
    "Always 1; the labels name the running rotator's version and Python.",
    ("version", "python"),
)


@dataclass(frozen=True, slots=True)
class _Times:
    """Issue and expiry time of one credential, as UNIX seconds."""

    issued_at: float
    expires_at: float


class _ScrapeTimeCollector:
    """Key age and seconds to expiry, computed from the last known times at each scrape."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        return self._families(self._metrics.clock())

    def _families(self, now: float | None = None) -> list[Metric]:
        age = GaugeMetricFamily(
            "rotator_key_age_seconds",
            "Seconds since the current key of this credential was issued.",
            labels=["account", "credential"],
        )
        expiry = GaugeMetricFamily(
            "rotator_key_expiry_seconds",
            "Seconds until the current key of this credential expires (negative: expired).",
            labels=["account", "credential"],
        )
        bearer = GaugeMetricFamily(
            "rotator_bearer_token_expiry_seconds",
            "Seconds until the bearer token in Vault expires (negative: expired).",
            labels=["account"],
        )
        if now is not None:
            keys, tokens = self._metrics._times_snapshot()
            for (account, credential), t in sorted(keys.items()):
                age.add_metric([account, credential], now - t.issued_at)
                expiry.add_metric([account, credential], t.expires_at - now)
            for account, t in sorted(tokens.items()):
                bearer.add_metric([account], t.expires_at - now)
        return [age, expiry, bearer]


class Metrics:
    """The daemon's Prometheus metrics, in a registry of their own (:attr:`registry`).

    ``accounts`` and ``kinds`` (the rotated key kinds; by default every kind there is) are
    known up front so that counters start at 0 for every label set an alert may watch.
    """

    def __init__(
        self,
        accounts: Sequence[str],
        *,
        key_cap: int,
        kinds: Iterable[KeyKind] = KEY_KINDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.clock = clock
        self.registry = CollectorRegistry(auto_describe=True)
        self._lock = threading.Lock()
        self._keys: dict[tuple[str, str], _Times] = {}
        self._tokens: dict[str, _Times] = {}
        r = self.registry
        self.rotations = _ROTATIONS.counter(r)
        self.errors = _ERRORS.counter(r)
        self.keys_at_encord = _KEYS_AT_ENCORD.gauge(r)
        self.key_cap = _KEY_CAP.gauge(r)
        self.last_success = _LAST_SUCCESS.gauge(r)
        self.lease_held = _LEASE_HELD.gauge(r)
        self.check_last = _CHECK_LAST.gauge(r)
        self.ready = _READY.gauge(r)
        self.paused = _PAUSED.gauge(r)
        self.up = _UP.gauge(r)
        self.build_info = _BUILD_INFO.gauge(r)
        r.register(_ScrapeTimeCollector(self))
        # The process_*, python_info and python_gc_* families the global registry would have.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self._start(accounts, key_cap, tuple(kinds))

    def _start(self, accounts: Sequence[str], key_cap: int, kinds: tuple[KeyKind, ...]) -> None:
        """Set the constant gauges, and every label set an alert may watch at 0."""
        self.up.set(1)
        self.build_info.labels(__version__, platform.python_version()).set(1)
        for account in accounts:
            self.key_cap.labels(account).set(key_cap)
            self.ready.labels(account).set(0)
            for kind in kinds:
                for outcome in ROTATION_RESULTS:
                    self.rotations.labels(account, kind, outcome)
            for error_kind in ERROR_KINDS:
                self.errors.labels(account, error_kind)

    # --- updates from the daemon --------------------------------------------------------------

    def after_check(self, account: str, result: CheckResult, now: datetime) -> None:
        """Record a check that ended without an error."""
        for kind, outcome in result.rotations:
            self.rotations.labels(account, kind, outcome).inc()
        state = result.state
        if state is not None:
            self.keys_at_encord.labels(account).set(result.keys_held)
            self.paused.labels(account).set(0 if state.paused is None else 1)
            self._record_state(account, state)
        self.check_last.labels(account).set(now.timestamp())
        self.ready.labels(account).set(0 if Outcome.NOT_BOOTSTRAPPED in result.outcomes else 1)

    def check_failed(self, account: str, kind: str, now: datetime | None = None) -> None:
        """Record a failed check; ``kind`` is one of :data:`ERROR_KINDS`."""
        self.errors.labels(account, kind).inc()
        self.check_last.labels(account).set(now.timestamp() if now else self.clock())
        self.ready.labels(account).set(0)

    def set_lease_held(self, account: str, held: bool) -> None:
        """Record whether this replica holds ``account``'s lease."""
        self.lease_held.labels(account).set(1 if held else 0)

    def stand_by(self, account: str, now: datetime) -> None:
        """Another replica holds ``account``'s lease: Vault answered, so this one is ready,
        and it no longer speaks for the account's keys (see :meth:`forget`)."""
        self.set_lease_held(account, False)
        self.ready.labels(account).set(1)
        self.check_last.labels(account).set(now.timestamp())
        self.forget(account)

    def forget(self, account: str) -> None:
        """Drop what this replica last knew of ``account``'s keys and token (it lost or never
        held the lease): stale key age and expiry must not raise a false expiry alert."""
        with self._lock:
            for key in [k for k in self._keys if k[0] == account]:
                del self._keys[key]
            self._tokens.pop(account, None)
        for gauge, labels in (
            (self.keys_at_encord, [(account,)]),
            (self.paused, [(account,)]),
            (self.last_success, [(account, c) for c in (*KEY_KINDS, BEARER)]),
        ):
            for values in labels:
                with contextlib.suppress(KeyError):  # never set: nothing to drop
                    gauge.remove(*values)

    def _record_state(self, account: str, state: AccountState) -> None:
        keys: dict[tuple[str, str], _Times] = {}
        for kind in KEY_KINDS:
            ks = state.kind(kind)
            if ks.current is not None:
                keys[(account, kind)] = _Times(
                    ks.current.issued_at.timestamp(), ks.current.expires_at.timestamp()
                )
            if ks.last_success is not None:
                self.last_success.labels(account, kind).set(ks.last_success.timestamp())
        bearer = state.bearer
        if bearer is not None:
            self.last_success.labels(account, BEARER).set(bearer.issued_at.timestamp())
        with self._lock:
            for key in [k for k in self._keys if k[0] == account]:
                del self._keys[key]
            self._keys.update(keys)
            if state.bearer is not None:
                self._tokens[account] = _Times(
                    state.bearer.issued_at.timestamp(), state.bearer.expires_at.timestamp()
                )
            else:
                self._tokens.pop(account, None)

    def _times_snapshot(self) -> tuple[dict[tuple[str, str], _Times], dict[str, _Times]]:
        with self._lock:
            return dict(self._keys), dict(self._tokens)

    # --- rendering ----------------------------------------------------------------------------

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The registry as ``(body, content type)``: Prometheus text, or OpenMetrics when
        ``accept`` (an HTTP Accept header) asks for it."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type
