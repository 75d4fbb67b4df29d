"""``revoke``: a key has leaked. ``rotator revoke NAME --key-id ID [--force]``.

The key is reported in the account's state record (:func:`rotator.core.compromise.report`,
which refuses a key the record does not hold: exit 2), then handled by whoever holds the
account's lease: this command, when it gets the lease (one check, as ``rotator rotate``
runs one), else the running daemon at its next check (within ``ROTATOR_CHECK_INTERVAL``).
Either way the same check rotates a leaked current key at once, revokes the leaked key
without grace, and purges its private key from every older Vault version.
"""

from __future__ import annotations

import argparse

import structlog

from rotator.cli.base import (
    Command,
    add_account_argument,
    add_json_argument,
    check_account,
    engines,
    say,
)
from rotator.core import compromise
from rotator.core.engine import CheckResult
from rotator.core.errors import ConfigError, StoreConflict
from rotator.runtime.config import Settings
from rotator.runtime.render import human_duration, short_id

log = structlog.get_logger("rotator.cli")

REPORT_ATTEMPTS = 3  # a daemon writing the record at the same moment: read it again


def _arguments(p: argparse.ArgumentParser) -> None:
    add_account_argument(p)
    p.add_argument(
        "--key-id",
        required=True,
        metavar="ID",
        help="the leaked key's id (64 hex characters, as status, the logs and Vault show it)",
    )
    p.add_argument(
        "--force", action="store_true", help="act even if the account is paused"
    )
    add_json_argument(p)


def cmd_revoke(settings: Settings, args: argparse.Namespace) -> int:
    name, key_id = args.name, args.key_id.strip().lower()
    if settings.dry_run:
        raise ConfigError(
            "ROTATOR_DRY_RUN: revoke changes keys at Encord and in Vault; unset it to revoke"
        )
    from rotator.adapters.lease import replica_id
    from rotator.runtime.wiring import make_leases, open_store, wait_for_vault

    check_account(settings, name)
    store = open_store(settings)
    wait_for_vault(store, deadline=5.0)
    leases = make_leases(settings, store, holder=f"cli-{replica_id()}")
    lease = leases[name]
    with structlog.contextvars.bound_contextvars(account=name):
        context = engines(settings, store)[name].context
        for attempt in range(REPORT_ATTEMPTS):
            try:
                kind, role = compromise.report(context, key_id, force=args.force)
                break
            except StoreConflict:
                if attempt + 1 == REPORT_ATTEMPTS:
                    raise
        if not lease.acquire():
            every = human_duration(settings.check_interval)
            say(
                args,
                {"event": "revoke.requested", "account": name, "key_id": key_id, "kind": kind},
                f"{name}: a running daemon holds the account; it was asked to revoke key "
                f"{short_id(key_id)} ({kind}, {role}) at its next check (every {every}); "
                f"follow it with: rotator status",
            )
            return 0
        try:
            result = engines(settings, store, leases=leases)[name].check()
        finally:
            lease.release()
    return _report(args, name, key_id, kind, role, result)


def _report(
    args: argparse.Namespace, name: str, key_id: str, kind: str, role: str, result: CheckResult
) -> int:
    """What the check did with the leaked key, in a sentence (or JSON); the exit code."""
    state = result.state
    left = state is not None and key_id in state.compromised
    current = state.kind(kind).current if state is not None else None
    document: dict[str, object] = {
        "event": "revoke.done" if not left else "revoke.pending",
        "account": name,
        "key_id": key_id,
        "kind": kind,
        "was": role,
        "current_key_id": current.key_id if current else None,
        "outcomes": result.outcomes,
    }
    now = f"; consumers now read key {short_id(current.key_id)}" if current else ""
    if not left:
        say(args, document, f"{name}: leaked key {short_id(key_id)} ({kind}, was {role}) is "
             f"revoked and its private key destroyed in older Vault versions{now}")
        return 0
    if {"awaiting_registration", "awaiting_revocation"} & set(result.outcomes):
        say(args, document, f"{name}: leaked key {short_id(key_id)} ({kind}): a person must "
             "act in the Encord UI (key.registration_required / key.revocation_required in "
             "the logs); each check goes on until it is revoked")
        return 0
    say(args, document, f"{name}: leaked key {short_id(key_id)} ({kind}) is still current: "
         f"its rotation did not complete ({', '.join(result.outcomes) or 'nothing done'}); "
         "it stays reported and every check tries again: see rotator status")
    return 1



REVOKE = Command(
    "revoke",
    "a key leaked: rotate it out at once, revoke it without grace, purge it from Vault",
    _arguments,
    cmd_revoke,
)
