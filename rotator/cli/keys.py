"""``bootstrap`` and ``rotate``: an account's keys, by hand."""

from __future__ import annotations

import argparse
import json

import structlog

from rotator.cli.base import Command, add_account_argument, check_account, engine_for, engines
from rotator.core import admin
from rotator.core.errors import AccessDenied, ConfigError, KeyFormatError
from rotator.core.vocab import Outcome
from rotator.runtime.config import Settings

log = structlog.get_logger("rotator.cli")


def read_key_file(key_file: str, option: str = "--private-key-file") -> str:
    """The text of a private-key file; ConfigError / KeyFormatError (exit 2) naming ``option``."""
    try:
        with open(key_file, encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        raise ConfigError(f"{option}: cannot read '{key_file}': {exc.strerror}") from None
    except UnicodeDecodeError:
        raise KeyFormatError(f"{option}: not a text file") from None


def _bootstrap_arguments(p: argparse.ArgumentParser) -> None:
    add_account_argument(p)
    p.add_argument(
        "--private-key-file",
        required=True,
        metavar="F",
        help="OpenSSH Ed25519 private key file (the file the Encord UI downloaded)",
    )


def cmd_bootstrap(settings: Settings, args: argparse.Namespace) -> int:
    name = args.name
    text = read_key_file(args.private_key_file)
    engine = engine_for(settings, name)
    with structlog.contextvars.bound_contextvars(account=name):
        try:
            record = admin.bootstrap(engine.context, text)
        except AccessDenied as exc:
            if exc.status == 401:
                log.error(
                    "bootstrap.refused",
                    error="the key does not authenticate at ENCORD_DOMAIN "
                    "(unknown, deleted, or another region's key)",
                )
                return 1
            raise
    print(
        json.dumps(
            {
                "event": "bootstrap.done",
                "account": name,
                "key_id": record.key_id,
                "key_hash": record.key_hash,
            }
        )
    )
    return 0


def _rotate_arguments(p: argparse.ArgumentParser) -> None:
    add_account_argument(p)
    p.add_argument(
        "--credential",
        choices=("ssh-key", "api-key"),
        default="ssh-key",
        help="which key to rotate (default ssh-key)",
    )


def cmd_rotate(settings: Settings, args: argparse.Namespace) -> int:
    name, credential = args.name, args.credential
    if credential not in settings.key_kinds:
        raise ConfigError(f"--credential: '{credential}' is not in ROTATOR_CREDENTIALS")
    from rotator.adapters.lease import replica_id
    from rotator.runtime.wiring import make_leases, open_store, wait_for_vault

    check_account(settings, name)
    store = open_store(settings)
    wait_for_vault(store, deadline=5.0)
    paused = engines(settings, store)[name].load_state().paused
    if paused is not None:
        log.error(
            "rotate.refused",
            account=name,
            reason="paused",
            paused_by=paused.by,
            hint=f"the account is paused: 'rotator resume {name}' first",
        )
        return 1
    lease = make_leases(settings, store, holder=f"cli-{replica_id()}")[name]
    fenced = None if settings.dry_run else {name: lease}
    engine = engines(settings, store, leases=fenced)[name]
    with structlog.contextvars.bound_contextvars(account=name):
        if not settings.dry_run and not lease.acquire():
            # A running daemon holds the account: ask it, through the state record, to rotate
            # at its next check (within ROTATOR_CHECK_INTERVAL).
            admin.request_rotation(engines(settings, store)[name].context, credential)
            print(json.dumps({"event": "rotate.requested", "account": name, "kind": credential}))
            return 0
        try:
            result = engine.check(force=frozenset({credential}), dry_run=settings.dry_run)
        finally:
            lease.release()
    print(json.dumps({"event": "rotate.done", "account": name, "outcomes": result.outcomes}))
    failures = {outcome for outcome in Outcome if outcome.is_failure}
    ok = not any(o in failures for o in result.outcomes)
    return 0 if ok else 1


BOOTSTRAP = Command(
    "bootstrap",
    "adopt a key an admin made in the Encord UI as the current ssh-key",
    _bootstrap_arguments,
    cmd_bootstrap,
)
ROTATE = Command(
    "rotate",
    "rotate an account's key now (cap and grace still apply)",
    _rotate_arguments,
    cmd_rotate,
)
