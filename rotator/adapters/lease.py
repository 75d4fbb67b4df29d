"""Per-account leases in Vault, so several replicas can run and only one rotates an account.

Vault (itself clustered with Raft) is the coordination point; there is no other service.
The lease is a KV v2 record at ``{prefix}/{account}/lease``: ``{"holder", "expires_at",
"acquired_at"}``. It is taken and renewed with check-and-set, so of two replicas racing for
it exactly one write wins. A crashed holder's lease is taken over once it has expired.

**Fencing.** A holder must not act once its lease has moved on (expired and taken, or
renewed by someone else). :class:`FencedStore` re-reads the lease before every write the
engine makes, and :class:`FencedRegistry` before every key Encord adds or deletes, and both
raise :class:`LeaseLost` if its version is no longer the one this holder wrote or too little
of it is left. Every engine write is itself check-and-set on its own record, so the window
between that read and a Vault write can at worst make the write fail. Encord has no
check-and-set: there the lease's time bounds the call instead, every socket operation of it
ending before the lease does (:func:`rotator.adapters.encord.transport.deadline`).

**Time.** Expiry times are written by one host and compared by another. Each side keeps a
margin of :data:`SKEW_SHARE` of the lease: a holder treats its lease as over that much
early, a taker waits that much past the expiry. A host whose clock is off Vault's by more
than the margin (measured from Vault's ``Date`` header, :mod:`rotator.adapters.vault.clock`)
holds no lease at all and says so (``clock.skew_detected``). A check ends, between its
steps, once :data:`CHECK_SHARE` of the lease has passed: renewed at its start, the lease
then outlives it by far.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import structlog

from rotator.adapters.bounded_http import deadline
from rotator.core.errors import RotatorError, StoreConflict
from rotator.core.keys import KeyPair
from rotator.core.ports import AwaitingPerson, Registry, RegistryFactory, SecretStore, VersionedData
from rotator.core.vocab import BearerToken, GeneratedKey, KnownKey, RemoteKey, parse_rfc3339

log = structlog.get_logger("rotator.lease")

LEASE_NAME = "lease"

SKEW_SHARE = 0.1
"""The clock error a lease absorbs, as a share of its TTL (the default TTL of 16.5 min: 99 s;
NTP keeps hosts within milliseconds). A holder's lease ends this much early by its own
clock, a taker waits this much past the expiry by its own, so two hosts each off Vault's
clock by less than this never both hold a lease. A host measured further off holds none."""

CHECK_SHARE = 1 / 3
"""A check ends between its steps once this share of the lease TTL has passed since it
renewed the lease: the rest (less the skew margin) is room for the step in hand, whose every
Encord call is bounded (45 s) and whose every write is fenced."""


class ClockOffset(Protocol):
    """How far this host's clock surely is from Vault's (:mod:`rotator.adapters.vault.clock`)."""

    def beyond(self, tolerance: float) -> float | None:
        """The offset in seconds (Vault minus this host) if it surely exceeds ``tolerance``
        either way; None if it may not."""
        ...


class LeaseLost(StoreConflict):
    """This replica's lease on an account moved on: stop writing for that account."""


def _precise(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def replica_id() -> str:
    """``<hostname>-<pid>-<random>``: unique per process, readable in logs and in Vault."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    holder: str
    expires_at: datetime
    acquired_at: datetime

    def to_dict(self) -> dict[str, str]:
        # Microseconds kept: leases in tests (and short intervals) live for under a second,
        # and a deadline truncated to whole seconds could already be past when written.
        return {
            "holder": self.holder,
            "expires_at": _precise(self.expires_at),
            "acquired_at": _precise(self.acquired_at),
        }

    @classmethod
    def parse(cls, data: Mapping[str, Any] | None) -> LeaseRecord | None:
        """None for a released, deleted or unreadable record (it then counts as free)."""
        if not data:
            return None
        try:
            return cls(
                holder=str(data["holder"]),
                expires_at=parse_rfc3339(str(data["expires_at"])),
                acquired_at=parse_rfc3339(str(data["acquired_at"])),
            )
        except (KeyError, ValueError):
            return None


class Lease:
    """One replica's lease on one account.

    ``offset`` (optional) measures this host's clock against Vault's; while it is surely
    further off than the skew margin the lease is neither taken nor kept.
    """

    def __init__(
        self,
        store: SecretStore,
        account: str,
        *,
        holder: str,
        ttl: timedelta,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        offset: ClockOffset | None = None,
    ) -> None:
        self.store = store
        self.account = account
        self.holder = holder
        self.ttl = ttl
        self.clock = clock
        self.offset = offset
        self._version: int | None = None  # the lease version this holder last wrote
        self._acquired: datetime | None = None  # and the acquired_at it wrote
        self._skewed = False  # clock.skew_detected logged, clock.skew_cleared not yet
        self._lock = threading.Lock()

    @property
    def rel(self) -> str:
        return f"{self.account}/{LEASE_NAME}"

    @property
    def held(self) -> bool:
        return self._version is not None

    @property
    def margin(self) -> timedelta:
        """The clock error both sides of a lease absorb (:data:`SKEW_SHARE` of the TTL)."""
        return self.ttl * SKEW_SHARE

    def _read(self) -> tuple[LeaseRecord | None, int]:
        v: VersionedData | None = self.store.read(self.rel)
        if v is None:
            return None, 0
        return LeaseRecord.parse(v.data), v.version

    def _clock_too_far(self) -> bool:
        """True while this host's clock is surely further from Vault's than the margin; logs
        ``clock.skew_detected`` when that starts and ``clock.skew_cleared`` when it ends."""
        tolerance = self.margin.total_seconds()
        off = self.offset.beyond(tolerance) if self.offset is not None else None
        if off is not None and not self._skewed:
            log.warning(
                "clock.skew_detected",
                account=self.account,
                offset_s=round(off, 3),
                tolerance_s=round(tolerance, 3),
                hint="this replica holds no lease until its clock agrees with Vault's (NTP)",
            )
        elif off is None and self._skewed:
            log.info("clock.skew_cleared", account=self.account)
        self._skewed = off is not None
        return self._skewed

    def acquire(self) -> bool:
        """Take or renew the lease; True if this replica holds it afterwards.

        Renewed at the start of every check, so a check starts with the whole lease ahead of
        it. A renewal is one check-and-set write over the version this holder last wrote (no
        read): it succeeds exactly when nobody has written the lease since.
        """
        with self._lock:
            if self._clock_too_far():
                self._version = None  # not released: our expiry times are not to be trusted
                return False
            now = self.clock()
            if self._version is not None and self._acquired is not None:
                renewed = LeaseRecord(self.holder, now + self.ttl, self._acquired)
                try:
                    self._version = self.store.write(self.rel, renewed.to_dict(), cas=self._version)
                    return True
                except StoreConflict:
                    self._version = None  # written over: lost, whatever it says now
                    record, _ = self._read()
                    holder = record.holder if record is not None else None
                    log.warning("lease.lost", account=self.account, holder=holder)
            record, version = self._read()
            if record is not None and record.expires_at + self.margin > now:
                return False  # a live lease, ours only if we still had its version
            new = LeaseRecord(holder=self.holder, expires_at=now + self.ttl, acquired_at=now)
            try:
                self._version = self.store.write(self.rel, new.to_dict(), cas=version)
                self._acquired = now
            except StoreConflict:
                self._version = None
                return False
            previous = record.holder if record is not None else None
            log.info("lease.acquired", account=self.account, previous_holder=previous)
            return True

    def ensure(self) -> timedelta:
        """Raise LeaseLost unless the lease is still this holder's, unmoved, and has more than
        the skew margin left; answer how long it may still act (expiry less the margin)."""
        with self._lock:
            if self._version is None:
                raise LeaseLost(f"lease on account '{self.account}' is not held")
            if self._clock_too_far():
                self._version = None
                raise LeaseLost(f"lease on account '{self.account}': clock off Vault's")
            record, version = self._read()
            if record is None or version != self._version or record.holder != self.holder:
                self._version = None
                raise LeaseLost(f"lease on account '{self.account}' moved on")
            left = record.expires_at - self.margin - self.clock()
            if left <= timedelta(0):
                # Unmoved, only nearly over: the next check may still renew it (check-and-set
                # on this version succeeds only if nobody has taken it meanwhile).
                raise LeaseLost(f"lease on account '{self.account}' is running out")
            return left

    def release(self) -> None:
        """Give the lease up at once (clean shutdown), so another replica need not wait."""
        with self._lock:
            if self._version is None:
                return
            # No expiry: a released lease is free at once, whatever the taker's clock says
            # (an expiry of "now" would make it wait out the skew margin).
            gone = {"holder": self.holder, "released_at": _precise(self.clock())}
            try:
                self.store.write(self.rel, gone, cas=self._version)
                log.info("lease.released", account=self.account)
            except (StoreConflict, RotatorError):
                pass  # it moved on already, or Vault is down: it expires by itself
            self._version = None


def _take_if_free(lease: Lease) -> None:
    """A call outside a check (bootstrap through the daemon's engine) takes the lease first
    if it is free; one held by another live replica refuses it."""
    if not lease.held and not lease.acquire():
        raise LeaseLost(f"lease on account '{lease.account}' is held by another replica")


class FencedStore:
    """A SecretStore whose every write first proves the lease is still held."""

    def __init__(self, store: SecretStore, lease: Lease) -> None:
        self._store = store
        self._lease = lease

    def read(self, rel: str) -> VersionedData | None:
        return self._store.read(rel)

    def read_version(self, rel: str, version: int) -> VersionedData | None:
        return self._store.read_version(rel, version)

    def write(self, rel: str, data: Mapping[str, Any], *, cas: int) -> int:
        self._fence()
        return self._store.write(rel, data, cas=cas)

    def destroy_versions(self, rel: str, versions: Iterable[int]) -> None:
        self._fence()
        self._store.destroy_versions(rel, versions)

    def _fence(self) -> None:
        # A write outside a check (bootstrap through the daemon's engine) takes the lease
        # first if it is free; one held by another live replica refuses it.
        _take_if_free(self._lease)
        self._lease.ensure()


class FencedRegistry:
    """A Registry whose every change at Encord (upload, generate, delete) first proves the
    lease is still held, and whose socket operations end before the lease does: a replica
    paused past its lease (GC, SIGSTOP, a slow Encord) cannot add or delete a key once
    another may have taken the account over. Listing, verifying and minting change nothing
    another replica relies on, and pass straight through."""

    def __init__(
        self,
        inner: Registry,
        lease: Lease,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._inner = inner
        self._lease = lease
        self._monotonic = monotonic

    @contextmanager
    def _fenced(self, call: str) -> Iterator[None]:
        _take_if_free(self._lease)
        end = self._monotonic() + self._lease.ensure().total_seconds()
        try:
            with deadline(end):
                yield
        except RotatorError:
            if self._monotonic() >= end:
                # Cut off by the lease's end: whether it reached Encord is for the next
                # holder to find out, by listing, as after any lost answer.
                raise LeaseLost(
                    f"lease on account '{self._lease.account}' ran out during {call}"
                ) from None
            raise

    def list_keys(self, known: Sequence[KnownKey]) -> list[RemoteKey]:
        return self._inner.list_keys(known)

    def upload_key(self, title: str, public_line: str) -> RemoteKey | AwaitingPerson:
        with self._fenced("upload_key"):
            return self._inner.upload_key(title, public_line)

    def generate_key(self, title: str) -> GeneratedKey | AwaitingPerson:
        with self._fenced("generate_key"):
            return self._inner.generate_key(title)

    def delete_key(self, key_hash: str) -> AwaitingPerson | None:
        with self._fenced("delete_key"):
            return self._inner.delete_key(key_hash)

    def verify(self, key: KeyPair) -> None:
        self._inner.verify(key)

    def bearer_token(self) -> BearerToken:
        return self._inner.bearer_token()

    def close(self) -> None:
        self._inner.close()


def fenced_registries(factory: RegistryFactory, lease: Lease) -> RegistryFactory:
    """``factory``'s registries, each wrapped in a :class:`FencedRegistry` on ``lease``."""

    def make(account_hash: str, signer: KeyPair) -> Registry:
        return FencedRegistry(factory(account_hash, signer), lease)

    return make
