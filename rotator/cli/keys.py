"""``bootstrap`` and ``rotate``: an account's keys, by hand."""

from __future__ import annotations

import argparse

import structlog

from rotator.cli.base import (
    Command,
    add_account_argument,
    add_json_argument,
    check_account,
    engine_for,
    engines,
    say,
)
from rotator.core import admin
from rotator.core.engine import CheckResult
from rotator.core.errors import AccessDenied, ConfigError, KeyFormatError
from rotator.core.vocab import Outcome
from rotator.runtime.config import Settings
from rotator.runtime.render import human_duration, short_id

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
    add_json_argument(p)


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
    document = {
        "event": "bootstrap.done",
        "account": name,
        "key_id": record.key_id,
        "key_hash": record.key_hash,
    }
    expires = record.expires_at.date().isoformat()
    sentence = (
        f"{name}: adopted key {short_id(record.key_id)} as the current {admin.BOOTSTRAP_KIND} "
        f"(expires {expires})"
    )
    say(args, document, sentence)
    return 0


def _rotate_arguments(p: argparse.ArgumentParser) -> None:
    add_account_argument(p)
    p.add_argument(
        "--credential",
        choices=("ssh-key", "api-key"),
        default="ssh-key",
        help="which key to rotate (default ssh-key)",
    )
    add_json_argument(p)


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
    leases = make_leases(settings, store, holder=f"cli-{replica_id()}")
    lease = leases[name]
    # Every account's engine is built, so every account gets its (never acquired) lease; only
    # this account's engine runs, fenced by the lease taken below.
    fenced = None if settings.dry_run else leases
    engine = engines(settings, store, leases=fenced)[name]
    with structlog.contextvars.bound_contextvars(account=name):
        if not settings.dry_run and not lease.acquire():
            # A running daemon holds the account: ask it, through the state record, to rotate
            # at its next check (within ROTATOR_CHECK_INTERVAL).
            admin.request_rotation(engines(settings, store)[name].context, credential)
            every = human_duration(settings.check_interval)
            say(
                args,
                {"event": "rotate.requested", "account": name, "kind": credential},
                f"{name}: a running daemon holds the account; it was asked to rotate the "
                f"{credential} at its next check (every {every})",
            )
            return 0
        try:
            result = engine.check(force=frozenset({credential}), dry_run=settings.dry_run)
        finally:
            lease.release()
    say(
        args,
        {"event": "rotate.done", "account": name, "outcomes": result.outcomes},
        _rotated(name, credential, result, settings),
    )
    failures = {outcome for outcome in Outcome if outcome.is_failure}
    ok = not any(o in failures for o in result.outcomes)
    return 0 if ok else 1


def _rotated(name: str, credential: str, result: CheckResult, settings: Settings) -> str:
    """What ``rotate`` did, in a sentence."""
    if "not_bootstrapped" in result.outcomes:
        return (
            f"{name}: not bootstrapped, nothing rotated; run: rotator bootstrap {name} "
            "--private-key-file F"
        )
    state = result.state.kind(credential) if result.state is not None else None
    said = []
    for kind, outcome in result.rotations:
        if kind != credential or outcome != Outcome.ROTATED or state is None:
            said.append(f"the {kind} was not rotated ({outcome})")
        elif state.current is not None:
            said.append(
                f"rotated the {kind}: key {short_id(state.current.key_id)} is current "
                f"(expires {state.current.expires_at.date().isoformat()}), the one before "
                f"retires after {human_duration(settings.grace)} of grace"
            )
    if not said:
        done = ", ".join(result.outcomes) or "nothing to do"
        said.append(f"the {credential} was not rotated ({done})")
    if settings.dry_run:
        said.append("dry run: nothing was changed")
    return f"{name}: " + "; ".join(said)


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
