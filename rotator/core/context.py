"""One account as the core reaches it (:class:`AccountContext`), and one check in progress
(:class:`Run`): what the check, its steps, bootstrap and status are built from.

The account's Vault layout is here once: the state record at ``{NAME}/state`` (read, and
written with check-and-set on the version read) and the consumer paths ``{NAME}/{kind}``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import structlog

from rotator.core import keys
from rotator.core.errors import CorruptState, KeyFormatError
from rotator.core.keys import KeyPair
from rotator.core.policy import Policy
from rotator.core.ports import (
    NO_NOTICES,
    Notices,
    Registry,
    RegistryFactory,
    SecretStore,
    VersionedData,
)
from rotator.core.purge import live_keys
from rotator.core.state import STATE_NAME, AccountState, KeyRecord, from_dict, to_dict
from rotator.core.vocab import Account, RemoteKey, rfc3339

log = structlog.get_logger("rotator.engine")


@dataclass(frozen=True, slots=True)
class AccountContext:
    """An account, its Vault paths, its Encord registries, its policy and the clock."""

    account: Account
    store: SecretStore
    registry_factory: RegistryFactory
    policy: Policy
    clock: Callable[[], datetime]
    notices: Notices = NO_NOTICES
    """Who to tell when a person is needed (``ROTATOR_NOTIFY_URL``); by default no one."""

    def tell(self, event: str, **fields: Any) -> None:
        """Tell a person about ``event`` of this account (:class:`Notices`). The log line of
        the event is written by the caller; a notifier that fails anyway is logged by type
        only, and the check goes on: a notice never stops a rotation."""
        try:
            self.notices.notify(event, account=self.account.name, **fields)
        except Exception as exc:  # noqa: BLE001 - whatever it is, the rotation comes first
            log.error("notify.crashed", notify_event=event, error_type=type(exc).__name__)

    def rel(self, name: str) -> str:
        """A path of this account, relative to the store's prefix."""
        return f"{self.account.name}/{name}"

    def read(self, name: str) -> VersionedData | None:
        return self.store.read(self.rel(name))

    def load_state(self) -> AccountState:
        v = self.read(STATE_NAME)
        if v is None:
            return AccountState()
        return from_dict(v.data, v.version, account=self.account.name)

    def save_state(self, read: AccountState, new: AccountState) -> AccountState:
        """Write ``new`` over the record ``read`` was read as (check-and-set on its version);
        answer ``new`` with the version it got."""
        version = self.store.write(self.rel(STATE_NAME), to_dict(new), cas=read.version)
        return replace(new, version=version)

    def publish(self, kind: str, record: KeyRecord, *, over: VersionedData | None) -> int:
        """Make ``record`` the newest version of the consumer path of ``kind``, written over
        the version ``over`` (check-and-set; None: the path is new). Answers the version."""
        payload = {
            "private_key": record.private_key,
            "public_key": record.public_key,
            "key_id": record.key_id,
            "key_hash": record.key_hash,
            "issued_at": rfc3339(record.issued_at),
            "expires_at": rfc3339(record.expires_at),
        }
        return self.store.write(self.rel(kind), payload, cas=over.version if over else 0)

    def signer_key(self, state: AccountState) -> KeyPair | None:
        """The key that signs management calls (:meth:`AccountState.signer`), parsed."""
        record = state.signer()
        if record is None:
            return None
        try:
            return keys.load_private(record.private_key)
        except KeyFormatError as exc:
            raise CorruptState(
                f"state record for account '{self.account.name}': signer key unreadable ({exc})"
            ) from None

    @contextmanager
    def registry(self, signer: KeyPair) -> Iterator[Registry]:
        """The account's Encord key management signed by ``signer``, closed on leaving."""
        registry = self.registry_factory(self.account.hash, signer)
        try:
            yield registry
        finally:
            registry.close()


@dataclass
class Run:
    """One check in progress: the record as last written, Encord's keys as now known, the
    consumer paths as the snapshot read them, and the rotation outcomes so far."""

    context: AccountContext
    registry: Registry
    hook: Callable[[str], None]
    """Called after every outside call a step makes, with the step's name (tests stop the
    engine there: ``after_intent``, ``after_register``...)."""
    state: AccountState
    remote: dict[str, RemoteKey]
    consumers: dict[str, VersionedData | None]
    rotations: list[tuple[str, str]] = field(default_factory=list)  # (kind, outcome)
    purge_due: bool = False
    """Set when the check let a private key go (or deleted an orphan): older versions may
    hold it, so the check ends with :func:`rotator.core.purge.purge`."""

    @property
    def account(self) -> Account:
        return self.context.account

    @property
    def policy(self) -> Policy:
        return self.context.policy

    def now(self) -> datetime:
        return self.context.clock()

    def save(self, new: AccountState) -> AccountState:
        """Write ``new`` over the record as last written (check-and-set)."""
        let_go = live_keys(self.state) - live_keys(new)
        self.state = self.context.save_state(self.state, new)
        self.purge_due = self.purge_due or bool(let_go)
        return self.state
