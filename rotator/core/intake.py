"""Key intake: a key a person created in the Encord UI, handed over to rotator.

In the Encord UI an admin clicks "New API key", types a title and clicks "Add API key":
Encord makes the key pair and the browser downloads a file holding the private key (OpenSSH
text). Handing that file over is the second way to answer ``key.registration_required``
(the first is adding rotator's public key), and, with either registrar, the way to put a key
an admin made in an emergency in service. It comes in two ways, one path through:

- ``rotator adopt NAME --private-key-file F`` calls :func:`receive` with the file's text;
- a person writes it to Vault at ``{prefix}/{NAME}/incoming``, field ``private_key`` (and,
  optionally, ``title``), and the daemon takes it at the start of its next check
  (:func:`take_incoming`).

The key must be an unencrypted Ed25519 OpenSSH key, authenticate at Encord (a signed
whoami), be a key of the account (with the api registrar, Encord lists it; the manual one
cannot list, so authenticating is all it can prove), and be neither the current key nor a
retiring one; and the account must not be paused (``rotator pause``: no key changes). It is
then promoted like a rotation's new key: the newest version of the ssh-key consumer path,
then the state record, where the previous key starts its grace and the rotation in flight,
if any, ends (:func:`rotator.core.transitions.adopted`). A key that fails any check is
refused with :class:`IntakeRejected` (its reason, never its text), and nothing else
changes.

Either way the incoming path is then cleared: every version of it that holds data is
destroyed (``{mount}/destroy/...``), not soft-deleted, so no readable version keeps a
private key. A failure to reach Vault or Encord leaves it for the next check.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import structlog

from rotator.core import keys, transitions
from rotator.core.context import AccountContext
from rotator.core.errors import AccessDenied, KeyFormatError, PermanentError
from rotator.core.keys import KeyPair
from rotator.core.kinds import known_keys, listed_record
from rotator.core.ports import Registry
from rotator.core.redaction import register_private_key
from rotator.core.state import AccountState, KeyRecord
from rotator.core.vocab import KnownKey, RemoteKey

log = structlog.get_logger("rotator.engine")

KIND = "ssh-key"
"""The kind an adopted key becomes (as for ``rotator bootstrap``): what consumers read."""
INCOMING = "incoming"
FIELD = "private_key"
TITLE_FIELD = "title"
"""Optional, next to ``private_key``: the title typed in the UI, as ``rotator adopt --title``."""

REASONS = (
    "no_private_key",
    "unreadable",
    "not_ed25519",
    "current_key",
    "retiring_key",
    "does_not_authenticate",
    "not_this_account",
    "paused",
)
"""Why a key is refused (the ``reason`` of ``key.intake_rejected``)."""


class IntakeRejected(PermanentError):
    """A handed-over key is refused: ``reason`` (one of :data:`REASONS`) and a one-line
    message, never the key's text. Nothing was changed."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    @property
    def exit_code(self) -> int:
        """What ``rotator adopt`` exits with: 1 when Encord refused the key or the account is
        paused, 2 when the file is wrong (bad input)."""
        return 1 if self.reason in ("does_not_authenticate", "not_this_account", "paused") else 2


@dataclass(frozen=True, slots=True)
class Adopted:
    """A key taken into service: the new current record (its private half hidden by its
    repr), the key it replaced (now retiring) and the pending key of a rotation it ended."""

    record: KeyRecord
    replaced: KeyRecord | None
    dropped_key_id: str | None  # a pending key of rotator's own, never registered: dropped
    retired_key_id: str | None  # a pending key Encord held after all: retiring, no grace
    vault_version: int


def handover_hint(account: str) -> str:
    """How a person hands a key made in the UI over (``key.registration_required``)."""
    return (
        f"rotator adopt {account} --private-key-file FILE, or write the file's text to Vault "
        f"at <ROTATOR_VAULT_PREFIX>/{account}/{INCOMING}, field {FIELD}"
    )


def receive(
    ctx: AccountContext, text: str, *, source: str, title: str | None = None
) -> Adopted | IntakeRejected:
    """:func:`adopt`, logged: ``key.adopted`` (the canonical line of this rotation: the
    record says ``rotated``, reason ``intake``), or ``key.intake_rejected`` answered instead
    of raised. Other errors (Vault or Encord not
    answering, a lost check-and-set) are raised: nothing was adopted, try again."""
    try:
        adopted = adopt(ctx, text, title=title)
    except IntakeRejected as exc:
        log.warning("key.intake_rejected", kind=KIND, source=source, reason=exc.reason,
                    error=str(exc))
        return exc
    record = adopted.record
    old = adopted.replaced
    log.info(
        "key.adopted",
        kind=KIND,
        source=source,
        key_id=record.key_id,
        key_hash=record.key_hash,
        title=record.title,
        old_key_id=old.key_id if old else None,
        old_key_retires_at=old.retire_after.isoformat() if old and old.retire_after else None,
        dropped_key_id=adopted.dropped_key_id,
        retired_key_id=adopted.retired_key_id,
        vault_version=adopted.vault_version,
    )
    return adopted


def adopt(ctx: AccountContext, text: str, *, title: str | None = None) -> Adopted:
    """Check a handed-over key and promote it (see the module's docstring); IntakeRejected
    when it is refused. ``title``: what the person typed in the UI, for a registrar that
    cannot list (by default the title of the rotation awaiting registration)."""
    register_private_key(text)  # whatever it is, no later log line may show it
    kp = _parse(text)
    state = ctx.load_state()
    ks = state.kind(KIND)
    if ks.current is not None and ks.current.key_id == kp.key_id:
        raise IntakeRejected("current_key", f"key {kp.key_id[:12]}... is the current key already")
    if any(k.key_id == kp.key_id for k in ks.retiring):
        raise IntakeRejected(
            "retiring_key", f"key {kp.key_id[:12]}... is a retiring key, to be revoked"
        )
    if state.paused is not None:
        raise IntakeRejected(
            "paused",
            f"account '{ctx.account.name}' is paused: no key changes until "
            f"'rotator resume {ctx.account.name}'",
        )
    pending = ks.pending
    now = ctx.clock()
    named = title or (pending.title if pending is not None else f"adopted {now:%Y-%m-%d}")
    probe = [_candidate(kp, named, now)]
    probe += [k for k in known_keys(state) if pending is not None and k.key_id == pending.key_id]
    with ctx.registry(kp) as registry:
        listed = _listed(registry, kp, probe, ctx.account.hash)
    remote = listed[kp.key_id]
    held = listed.get(pending.key_id) if pending is not None and pending.key_id else None
    record = listed_record(remote, kp.private_openssh, ctx.policy.key_ttl)
    version = ctx.publish(KIND, record, over=ctx.read(KIND))
    new = transitions.adopted(state, KIND, record, at=now, grace=ctx.policy.grace,
                              pending_held=held)
    ctx.save_state(state, new)
    return _result(state, new, record, pending_key_id=pending.key_id if pending else None,
                   held=held is not None, version=version)


def take_incoming(ctx: AccountContext) -> str | None:
    """At the start of a check: adopt or refuse the key waiting at ``{NAME}/incoming``, then
    destroy every version of that path that holds data. None when nothing waits; else
    ``adopted`` or ``intake_rejected``. Errors (Vault or Encord) are raised and leave the
    path as it is, for the next check."""
    newest = ctx.read(INCOMING)
    if newest is None or newest.data is None:
        return None
    text = newest.data.get(FIELD)
    title = newest.data.get(TITLE_FIELD)
    answer: Adopted | IntakeRejected
    if isinstance(text, str) and text.strip():
        named = title.strip()[:200] if isinstance(title, str) and title.strip() else None
        answer = receive(ctx, text, source="incoming", title=named)
    else:
        answer = IntakeRejected("no_private_key", f"no '{FIELD}' field holding a key")
        log.warning("key.intake_rejected", kind=KIND, source="incoming",
                    reason=answer.reason, error=str(answer))
    _clear(ctx, newest.version)
    return "adopted" if isinstance(answer, Adopted) else "intake_rejected"


def _parse(text: str) -> KeyPair:
    try:
        return keys.load_private(text)
    except KeyFormatError as exc:
        reason = "not_ed25519" if "Ed25519" in str(exc) else "unreadable"
        raise IntakeRejected(reason, str(exc)) from None


def _candidate(kp: KeyPair, title: str, at: datetime) -> KnownKey:
    """The handed-over key as a registrar that cannot list probes it (made by Encord)."""
    return KnownKey(
        key_id=kp.key_id,
        key_hash=None,
        title=title,
        public_key=kp.public_line,
        origin="generated",
        created_at=at,
        private_openssh=kp.private_openssh,
    )


def _listed(
    registry: Registry, kp: KeyPair, probe: list[KnownKey], account_hash: str
) -> dict[str, RemoteKey]:
    """The account's keys as a registry signed by the handed-over key lists them; refused
    unless that key authenticates and is among them."""
    try:
        registry.verify(kp)
    except AccessDenied as exc:
        if exc.status != 403:  # 403: authenticated, only not allowed the probe call
            raise IntakeRejected(
                "does_not_authenticate",
                f"key {kp.key_id[:12]}... does not authenticate at Encord (not added, "
                "deleted, or another region's key)",
            ) from None
    try:
        listed = {k.key_id: k for k in registry.list_keys(probe)}
    except AccessDenied as exc:
        if exc.status != 403:
            raise
        listed = {}
    if kp.key_id not in listed:
        raise IntakeRejected(
            "not_this_account",
            f"key {kp.key_id[:12]}... authenticates but is not a key of service account "
            f"'{account_hash}'",
        )
    return listed


def _result(
    before: AccountState,
    after: AccountState,
    record: KeyRecord,
    *,
    pending_key_id: str | None,
    held: bool,
    version: int,
) -> Adopted:
    previous = before.kind(KIND).current
    replaced = None
    if previous is not None:
        replaced = next(
            (k for k in after.kind(KIND).retiring if k.key_id == previous.key_id), None
        )
    ends = pending_key_id if pending_key_id != record.key_id else None
    return Adopted(
        record=record,
        replaced=replaced,
        dropped_key_id=None if held else ends,
        retired_key_id=ends if held else None,
        vault_version=version,
    )


def _clear(ctx: AccountContext, newest: int) -> None:
    """Destroy ``newest`` and every older version of the incoming path still holding data
    (down to the oldest Vault keeps), so no readable version keeps a private key."""
    rel = ctx.rel(INCOMING)
    versions = [newest]
    for version in range(newest - 1, 0, -1):
        old = ctx.store.read_version(rel, version)
        if old is None:
            break  # never written, or pruned by max_versions
        if old.data is not None:
            versions.append(version)
    ctx.store.destroy_versions(rel, sorted(versions))
    log.info("vault.incoming_cleared", path=rel, versions=sorted(versions))

