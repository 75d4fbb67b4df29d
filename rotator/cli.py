"""Subcommands, each a thin call into the core. ``main(argv) -> exit code``.

Exit codes: 0 success (and a clean stop on SIGTERM/SIGINT), 1 a peer refused or failed
(Vault or Encord), 2 bad configuration or bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

import structlog

from rotator import __version__
from rotator.core import admin
from rotator.core.engine import Engine
from rotator.core.errors import (
    AccessDenied,
    ConfigError,
    KeyFormatError,
    RotatorError,
    StoreUnavailable,
    TransientError,
)
from rotator.core.vocab import Outcome
from rotator.runtime import logs
from rotator.runtime.config import Settings, env_help, format_duration, from_env

log = structlog.get_logger("rotator.cli")

ENV_HELP = env_help()
"""Every variable rotator reads and its default, by group (from the variable table)."""


def _log_format(environ: Mapping[str, str]) -> tuple[str, str]:
    """The log format and level, leniently: a bad value is reported by from_env later.

    The format may be ``auto``: :func:`logs.configure` decides it for the stream it writes to.
    """
    fmt = environ.get("ROTATOR_LOG_FORMAT", "auto").strip().lower()
    level = environ.get("ROTATOR_LOG_LEVEL", "info").strip().lower()
    return (fmt if fmt in logs.FORMATS else "auto", level if level in logs.LEVELS else "info")


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line on stderr, exit 2: argparse's text on a
    terminal (or in console mode), else a log line like every other (json, ecs)."""

    def error(self, message: str) -> NoReturn:
        fmt, level = _log_format(os.environ)
        if logs.resolve_format(fmt, sys.stderr) == "console":
            print(f"{self.prog}: error: {message}", file=sys.stderr)
        else:  # the same fields, and redaction, as every other line
            logs.configure(fmt=fmt, level=level, stream=sys.stderr)
            log.error("cli.usage_error", error=message)
        raise SystemExit(2)


_Commands = argparse._SubParsersAction  # the object add_subparsers() returns


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="rotator",
        description=(
            "Keeps Encord service-account keys and bearer tokens fresh in HashiCorp Vault "
            "(KV v2): issues new keys before the old ones expire, proves they work, stores "
            "them, and revokes the old ones after a grace period."
        ),
        epilog=ENV_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"rotator {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    sub.add_parser("run", help="run the daemon (until SIGTERM/SIGINT)")
    _add_key_commands(sub)
    _add_report_commands(sub)
    _add_dev_commands(sub)
    return parser


def _add_key_commands(sub: _Commands[_Parser]) -> None:
    """``bootstrap`` and ``rotate``: an account's keys, by hand."""
    p = sub.add_parser(
        "bootstrap", help="adopt a key an admin made in the Encord UI as the current ssh-key"
    )
    p.add_argument("name", help="account name from ROTATOR_ACCOUNTS")
    p.add_argument(
        "--private-key-file",
        required=True,
        metavar="F",
        help="OpenSSH Ed25519 private key file (the file the Encord UI downloaded)",
    )

    p = sub.add_parser("rotate", help="rotate an account's key now (cap and grace still apply)")
    p.add_argument("name", help="account name from ROTATOR_ACCOUNTS")
    p.add_argument(
        "--credential",
        choices=("ssh-key", "api-key"),
        default="ssh-key",
        help="which key to rotate (default ssh-key)",
    )


def _add_report_commands(sub: _Commands[_Parser]) -> None:
    """``plan`` and ``status``: read-only reports, for a person or (``--json``) a machine."""
    p = sub.add_parser("plan", help="what each account needs now and why; writes nothing")
    p.add_argument("--json", action="store_true", help="one JSON document")

    p = sub.add_parser("status", help="per account: current key, age, expiry, keys vs cap")
    p.add_argument("--json", action="store_true", help="one JSON document")


def _add_dev_commands(sub: _Commands[_Parser]) -> None:
    """``demo`` and ``sandbox``: the development tools (imported only when run)."""
    p = sub.add_parser(
        "demo",
        help="embedded OpenBao + Encord sandbox + daemon with seconds-scale timings",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=0.0,
        metavar="S",
        help="stop by itself after S seconds (default: run until Ctrl-C)",
    )
    p.add_argument(
        "--workdir",
        default=None,
        metavar="DIR",
        help="where the demo keeps its files (default: a new temporary folder)",
    )

    sub.add_parser(
        "sandbox",
        help="run the local Encord sandbox (see 'rotator sandbox --help')",
        add_help=False,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["sandbox"]:
        from rotator.dev.sandbox.cli import main as sandbox_main  # the daemon never imports it

        return sandbox_main(args_list[1:])
    args = build_parser().parse_args(args_list)
    fmt, level = _log_format(os.environ)
    # The daemon and the demo log to stdout; the one-shot commands keep stdout for results.
    stream = sys.stdout if args.command in ("run", "demo") else sys.stderr
    logs.configure(fmt=fmt, level=level, stream=stream)
    if args.command == "demo":
        from rotator.dev.demo import run_demo

        return run_demo(duration=args.duration, workdir=args.workdir)
    try:
        settings = from_env(os.environ)
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("config.invalid", problem=problem)
        return 2
    for secret in settings.vault.secret_values:
        logs.register_secret(secret)
    try:
        if args.command == "run":
            return cmd_run(settings)
        if args.command == "bootstrap":
            return cmd_bootstrap(settings, args.name, args.private_key_file)
        if args.command == "rotate":
            return cmd_rotate(settings, args.name, args.credential)
        if args.command == "plan":
            return cmd_plan(settings, as_json=args.json)
        if args.command == "status":
            return cmd_status(settings, as_json=args.json)
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("config.invalid", problem=problem)
        return 2
    except KeyFormatError as exc:
        log.error("input.invalid", error=str(exc))
        return 2
    except StoreUnavailable as exc:
        log.error("vault.unreachable", error=str(exc), hint="check VAULT_ADDR")
        return 1
    except AccessDenied as exc:
        log.error("access.denied", error=str(exc), status=exc.status)
        return 1
    except (TransientError, RotatorError) as exc:
        log.error("command.failed", error_type=type(exc).__name__, error=str(exc))
        return 1
    raise AssertionError(f"unhandled command {args.command}")


# --- commands ----------------------------------------------------------------------------


def _engines(settings: Settings, store: Any = None, leases: Any = None) -> dict[str, Engine]:
    """Every account's engine over one Vault store (opened and checked once, unless
    given); with ``leases`` (name -> :class:`rotator.adapters.lease.Lease`) writes are fenced."""
    from rotator.runtime.wiring import make_engines, make_factory, open_store, wait_for_vault

    if store is None:
        store = open_store(settings)
        wait_for_vault(store, deadline=5.0)
    return make_engines(settings, store, make_factory(settings), leases=leases)


def _engine_for(settings: Settings, name: str) -> Engine:
    """One account's engine (the account must be in ROTATOR_ACCOUNTS)."""
    _check_account(settings, name)
    return _engines(settings)[name]


def _check_account(settings: Settings, name: str) -> None:
    if name not in {a.name for a in settings.accounts}:
        raise ConfigError(f"account '{name}' is not in ROTATOR_ACCOUNTS")


def cmd_run(settings: Settings) -> int:
    from rotator.runtime.daemon import Daemon, stop_on_signals
    from rotator.runtime.preflight import check_mount
    from rotator.runtime.wiring import wait_for_vault

    daemon = Daemon(settings)
    try:
        wait_for_vault(daemon.store)
    except StoreUnavailable as exc:
        log.error("daemon.vault_unreachable", error=str(exc), hint="check VAULT_ADDR")
        return 1
    except AccessDenied as exc:
        log.error(
            "daemon.vault_denied", error=str(exc), hint=f"check {settings.vault.auth.variables}"
        )
        return 1
    check_mount(daemon.store, settings)  # ConfigError (exit 2) for settings that break promises
    daemon.run_until(stop_on_signals("daemon.signal"))
    return 0


def cmd_bootstrap(settings: Settings, name: str, key_file: str) -> int:
    try:
        with open(key_file, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError(f"--private-key-file: cannot read '{key_file}': {exc.strerror}") from None
    except UnicodeDecodeError:
        raise KeyFormatError("--private-key-file: not a text file") from None
    engine = _engine_for(settings, name)
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


def cmd_rotate(settings: Settings, name: str, credential: str) -> int:
    if credential not in settings.key_kinds:
        raise ConfigError(f"--credential: '{credential}' is not in ROTATOR_CREDENTIALS")
    from rotator.adapters.lease import replica_id
    from rotator.runtime.wiring import make_leases, open_store, wait_for_vault

    _check_account(settings, name)
    store = open_store(settings)
    wait_for_vault(store, deadline=5.0)
    lease = make_leases(settings, store, holder=f"cli-{replica_id()}")[name]
    fenced = None if settings.dry_run else {name: lease}
    engine = _engines(settings, store, leases=fenced)[name]
    with structlog.contextvars.bound_contextvars(account=name):
        if not settings.dry_run and not lease.acquire():
            # A running daemon holds the account: ask it, through the state record, to rotate
            # at its next check (within ROTATOR_CHECK_INTERVAL).
            admin.request_rotation(_engines(settings, store)[name].context, credential)
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


def cmd_plan(settings: Settings, *, as_json: bool) -> int:
    from rotator.core.policy import describe

    out: list[dict[str, Any]] = []
    for name, engine in _engines(settings).items():
        out.append({"account": name, "actions": describe(engine.plan())})
    if as_json:
        print(json.dumps({"event": "plan", "accounts": out}, indent=None))
    else:
        for entry in out:
            print(f"{entry['account']}:")
            for a in entry["actions"]:
                rest = ", ".join(f"{k}={v}" for k, v in a.items() if k != "action")
                print(f"  {a['action']:<15} {rest}")
    return 0


def status_of(engine: Engine) -> dict[str, Any]:
    """One account's status (:func:`rotator.core.admin.status`), JSON-safe and free of
    secrets."""
    st = admin.status(engine.context)
    entry: dict[str, Any] = {"account": st.account, "key_cap": st.key_cap}
    if st.asked_encord:
        entry["keys_at_encord"] = st.keys_at_encord
        if st.encord_error is not None:
            entry["encord_error"] = st.encord_error
    for kind, ks in st.kinds.items():
        k: dict[str, Any] = {}
        if ks.current is not None:
            k.update(
                key_id=ks.current.key_id,
                age=format_duration(ks.current.age),
                expires_in=format_duration(ks.current.expires_in),
                expires_at=ks.current.expires_at.isoformat(),
            )
        k["retiring"] = list(ks.retiring)
        k["pending"] = ks.pending
        if ks.last is not None:
            k["last_rotation"] = {
                "outcome": ks.last.outcome,
                "at": ks.last.at.isoformat(),
                "reason": ks.last.reason,
            }
        entry[kind] = k
    if st.bearer_expires_at is not None:
        entry["bearer-token"] = {"expires_at": st.bearer_expires_at.isoformat()}
    return entry


def cmd_status(settings: Settings, *, as_json: bool) -> int:
    out = [status_of(engine) for engine in _engines(settings).values()]
    if as_json:
        print(json.dumps({"event": "status", "accounts": out}))
        return 0
    for e in out:
        print(f"{e['account']}: keys at Encord {e.get('keys_at_encord', '?')}/{e['key_cap']}")
        for kind in settings.key_kinds:
            k = e.get(kind, {})
            if "key_id" in k:
                line = f"  {kind}: {k['key_id'][:16]}  age {k['age']}  expires in {k['expires_in']}"
            else:
                line = f"  {kind}: none"
            last = k.get("last_rotation")
            if last:
                line += f"  last: {last['outcome']} ({last['reason']}) at {last['at']}"
            print(line)
    return 0
