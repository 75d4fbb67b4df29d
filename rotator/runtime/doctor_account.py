"""``rotator doctor``, per account: the key in Vault, and what Encord makes of it.

- ``account.key``: the state record names a current key and the consumer path's newest
  version holds it;
- ``encord.auth``: a whoami signed by that key authenticates (200, or 403: authenticated,
  only not allowed the probe call);
- ``encord.key_management``: in ``api`` mode Encord lists the account's keys. A 404 or 405
  means this Encord does not offer key management (:class:`KeyManagementUnavailable`): the
  hint is ``ROTATOR_REGISTRAR=manual``. In ``manual`` mode nothing is asked;
- ``encord.clock``: this host's clock against the ``Date`` header of Encord's answers.
  Encord refuses signatures more than 300 s off its clock, which looks like a dead key: more
  than a minute off warns, more than 300 s fails.

The calls are a signed whoami and the key list: reads, nothing is created or minted.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import httpx

from rotator.adapters.encord.client import EncordClient, RetryPolicy
from rotator.adapters.encord.signing import EncordAuth
from rotator.adapters.vault import VaultStore
from rotator.core.context import AccountContext
from rotator.core.errors import (
    SKEW_TOLERANCE,
    AccessDenied,
    ClockSkew,
    KeyManagementUnavailable,
    RegistryUnavailable,
    RotatorError,
)
from rotator.core.keys import KeyPair
from rotator.core.vocab import KEY_KINDS, Account
from rotator.runtime.config import Settings
from rotator.runtime.doctor import Finding
from rotator.runtime.render import human_duration, short_id
from rotator.runtime.wiring import make_factory, policy_from

SIGNATURE_WINDOW = 300.0
"""Seconds off Encord's clock beyond which Encord refuses a signature."""
_RETRY = RetryPolicy(attempts=2, max_retry_after=2.0)  # a person is waiting


def account_findings(settings: Settings, store: VaultStore, account: Account) -> list[Finding]:
    """The checks of one account, in order; Encord is asked only once a key was found."""
    ctx = AccountContext(
        account=account,
        store=store,
        registry_factory=make_factory(settings),
        policy=policy_from(settings),
        clock=lambda: datetime.now(UTC),
    )
    found, signer = _key(ctx)
    out = [found]
    if signer is not None:
        out += _encord(settings, account, signer)
    return out


def _key(ctx: AccountContext) -> tuple[Finding, KeyPair | None]:
    name = ctx.account.name
    try:
        state = ctx.load_state()
        signer = ctx.signer_key(state)
        kind = next((k for k in KEY_KINDS if state.kind(k).current is not None), None)
        newest = ctx.read(kind) if kind is not None else None
    except RotatorError as exc:
        return Finding("account.key", "fail", str(exc), account=name), None
    record = state.signer()
    if signer is None or record is None or kind is None:
        return Finding(
            "account.key",
            "fail",
            "no key in Vault: the account was never bootstrapped",
            account=name,
            hint=f"rotator bootstrap {name} --private-key-file F",
        ), None
    left = record.expires_at - ctx.clock()
    when = f"expires in {human_duration(left)}" if left.total_seconds() > 0 else "expired"
    detail = f"{kind} {short_id(record.key_id)} in Vault, {when}"
    newest_id = newest.data.get("key_id") if newest is not None and newest.data else None
    path = ctx.rel(kind)
    if newest_id is None:
        return Finding(
            "account.key", "fail", f"{detail}; but consumers find no key at {path}",
            account=name, hint="the next check publishes it again; is the daemon running?",
        ), signer
    if newest_id != record.key_id:
        return Finding(
            "account.key", "warn", f"{detail}; but {path} holds another key ({newest_id!s:.16})",
            account=name, hint="the next check publishes the current key again",
        ), signer
    if left.total_seconds() <= 0:
        return Finding(
            "account.key", "warn", detail, account=name,
            hint="the daemon rotates a key before it expires: is it running?",
        ), signer
    return Finding("account.key", "ok", detail, account=name), signer


def _encord(settings: Settings, account: Account, signer: KeyPair) -> Iterator[Finding]:
    client = EncordClient(
        account.domain or settings.encord_domain,  # the account's region, if it names one
        EncordAuth(signer),
        timeout=httpx.Timeout(10.0, connect=5.0),
        retry=_RETRY,
    )
    with client:
        auth = _auth(client, account)
        yield auth
        if auth.status == "ok":
            yield _key_management(client, settings, account)
        yield _clock(client, account)


def _domain_hint(account: Account) -> str:
    """Where the account's Encord domain is set: its ROTATOR_ACCOUNTS entry, or ENCORD_DOMAIN."""
    if account.domain:
        return f"check the domain of '{account.name}' in ROTATOR_ACCOUNTS ({account.domain})"
    return "check ENCORD_DOMAIN"


def _auth(client: EncordClient, account: Account) -> Finding:
    name, check = account.name, "encord.auth"
    try:
        client.whoami()
    except ClockSkew as exc:
        return Finding(check, "fail", str(exc), account=name, hint=_CLOCK_HINT)
    except AccessDenied as exc:
        return Finding(
            check, "fail", f"{exc}: Encord does not know this key (deleted, never registered, "
            "or of another region)", account=name, hint=_domain_hint(account),
        )
    except RegistryUnavailable as exc:
        return Finding(check, "fail", str(exc), account=name, hint=_domain_hint(account))
    except RotatorError as exc:
        return Finding(check, "fail", str(exc), account=name)
    return Finding(check, "ok", "the key authenticates (signed whoami)", account=name)


def _key_management(client: EncordClient, settings: Settings, account: Account) -> Finding:
    name, check = account.name, "encord.key_management"
    if settings.registrar == "manual":
        return Finding(
            check, "ok", "ROTATOR_REGISTRAR=manual: a person adds and deletes keys in the "
            "Encord UI (not asked)", account=name,
        )
    try:
        keys = client.list_keys(account.hash)
    except KeyManagementUnavailable as exc:
        return Finding(
            check, "fail", f"Encord answered {exc.status} to the key list: this Encord does not "
            "offer key management (or the service-account hash is wrong)", account=name,
            hint="set ROTATOR_REGISTRAR=manual (a person adds and deletes keys in the Encord "
            "UI), or check the hash in ROTATOR_ACCOUNTS",
        )
    except AccessDenied as exc:
        return Finding(
            check, "fail", f"{exc}: this key may not manage service account {account.hash!r}",
            account=name, hint="the key must be the service account's own, or an admin's",
        )
    except RotatorError as exc:
        return Finding(check, "fail", str(exc), account=name)
    held = f"{len(keys)} of {settings.key_cap} keys"
    if len(keys) >= settings.key_cap:
        return Finding(
            check, "warn", f"{held}: no room for the next rotation", account=name,
            hint="delete keys rotator does not own, or raise ROTATOR_KEY_CAP with Encord",
        )
    return Finding(check, "ok", f"the key list answers ({held})", account=name)


_CLOCK_HINT = "sync this host's clock (NTP); the key itself may be fine"


def _clock(client: EncordClient, account: Account) -> Finding:
    name, check = account.name, "encord.clock"
    offset = client.clock_offset
    if offset is None:
        return Finding(
            check, "warn", "no answer from Encord carried a Date header: clock not compared",
            account=name,
        )
    off = abs(offset)
    way = "ahead of" if offset < 0 else "behind"  # this host relative to Encord
    text = f"this host's clock is {off:.0f} s {way} Encord's"
    if off <= SKEW_TOLERANCE:
        return Finding(check, "ok", f"within {SKEW_TOLERANCE:.0f} s of Encord's", account=name)
    if off <= SIGNATURE_WINDOW:
        return Finding(
            check, "warn", f"{text}; Encord refuses signatures beyond {SIGNATURE_WINDOW:.0f} s",
            account=name, hint=_CLOCK_HINT,
        )
    return Finding(
        check, "fail", f"{text}: Encord refuses its signatures (beyond "
        f"{SIGNATURE_WINDOW:.0f} s)", account=name, hint=_CLOCK_HINT,
    )
