"""Per-account leases in Vault, so several replicas can run and only one rotates an account.

Vault (itself clustered with Raft) is the coordination point; there is no other service.
The lease is a KV v2 record at ``{prefix}/{account}/lease``: ``{"holder", "expires_at",
"acquired_at"}``. It is taken and renewed with check-and-set, so of two replicas racing for
it exactly one write wins. A crashed holder's lease is taken over once it has expired.

**Fencing.** A holder must not write once its lease has moved on (expired and taken, or
renewed by someone else): :class:`FencedStore` re-reads the lease before every write the
engine makes and raises :class:`LeaseLost` if its version is no longer the one this holder
wrote. Every engine write is itself check-and-set on its own record, so the remaining window
(between that read and the write) can at worst make a write fail, never overwrite another
replica's newer record.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from rotator.core.errors import RotatorError, StoreConflict
from rotator.core.ports import SecretStore, VersionedData
from rotator.core.vocab import parse_rfc3339

log = structlog.get_logger("rotator.lease")

LEASE_NAME = "lease"


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
    """One replica's lease on one account."""

    def __init__(
        self,
        store: SecretStore,
        account: str,
        *,
        holder: str,
        ttl: timedelta,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.account = account
        self.holder = holder
        self.ttl = ttl
        self.clock = clock
        self._version: int | None = None  # the lease version this holder last wrote
        self._expires: datetime | None = None  # and the expiry it wrote
        self._lock = threading.Lock()

    @property
    def rel(self) -> str:
        return f"{self.account}/{LEASE_NAME}"

    @property
    def held(self) -> bool:
        return self._version is not None

    def _read(self) -> tuple[LeaseRecord | None, int]:
        v: VersionedData | None = self.store.read(self.rel)
        if v is None:
            return None, 0
        return LeaseRecord.parse(v.data), v.version

    def acquire(self) -> bool:
        """Take or renew the lease; True if this replica holds it afterwards.

        A lease this replica holds with more than half its lifetime left is not renewed (nor
        read): the check that follows is fenced before each of its writes anyway, and an idle
        check then costs Vault nothing extra.
        """
        with self._lock:
            now = self.clock()
            fresh = self._expires is not None and now < self._expires - self.ttl / 2
            if self._version is not None and fresh:
                return True
            record, version = self._read()
            mine = record is not None and record.holder == self.holder
            if mine and self._version is not None and version != self._version:
                mine = False  # someone wrote over our lease: we lost it, even if it says us
            free = record is None or record.expires_at <= now
            if not (mine or free):
                if self._version is not None:
                    holder = record.holder if record is not None else None
                    log.warning("lease.lost", account=self.account, holder=holder)
                self._version = None
                return False
            acquired = record.acquired_at if mine and record is not None else now
            new = LeaseRecord(holder=self.holder, expires_at=now + self.ttl, acquired_at=acquired)
            try:
                self._version = self.store.write(self.rel, new.to_dict(), cas=version)
                self._expires = new.expires_at
            except StoreConflict:
                self._version = None
                return False
            if not mine:
                previous = record.holder if record is not None else None
                log.info("lease.acquired", account=self.account, previous_holder=previous)
            return True

    def ensure(self) -> None:
        """Raise LeaseLost unless the lease is still this holder's, unexpired, unmoved."""
        with self._lock:
            if self._version is None:
                raise LeaseLost(f"lease on account '{self.account}' is not held")
            record, version = self._read()
            if (
                record is None
                or version != self._version
                or record.holder != self.holder
                or record.expires_at <= self.clock()
            ):
                self._version = None
                raise LeaseLost(f"lease on account '{self.account}' moved on")

    def release(self) -> None:
        """Give the lease up at once (clean shutdown), so another replica need not wait."""
        with self._lock:
            if self._version is None:
                return
            now = self.clock()
            gone = LeaseRecord(holder=self.holder, expires_at=now, acquired_at=now)
            try:
                self.store.write(self.rel, gone.to_dict(), cas=self._version)
                log.info("lease.released", account=self.account)
            except (StoreConflict, RotatorError):
                pass  # it moved on already, or Vault is down: it expires by itself
            self._version = None


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
        if not self._lease.held and not self._lease.acquire():
            raise LeaseLost(f"lease on account '{self._lease.account}' is held by another replica")
        self._lease.ensure()
