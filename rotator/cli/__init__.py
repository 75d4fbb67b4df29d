"""Subcommands, each a thin call into the core. ``main(argv) -> exit code``.

Each command is a :class:`rotator.cli.base.Command` declared by its own module (its
arguments and what it runs) and listed once in :data:`COMMANDS`, in the order ``--help``
shows them. Exit codes: 0 success (and a clean stop on SIGTERM/SIGINT), 1 a peer refused or
failed (Vault or Encord), 2 bad configuration or bad input.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import structlog

from rotator import __version__
from rotator.cli import controls, daemon, dev, doctor, intake, keys, reports, revoke
from rotator.cli.base import Command, Parser, log_format
from rotator.cli.daemon import ENV_HELP
from rotator.cli.reports import status_of
from rotator.core.errors import (
    AccessDenied,
    ConfigError,
    KeyFormatError,
    RotatorError,
    StoreUnavailable,
    TransientError,
)
from rotator.runtime import logs
from rotator.runtime.config import from_env

__all__ = ["COMMANDS", "ENV_HELP", "build_parser", "main", "status_of"]

log = structlog.get_logger("rotator.cli")

COMMANDS: tuple[Command, ...] = (
    daemon.RUN,
    keys.BOOTSTRAP,
    keys.ROTATE,
    intake.ADOPT,
    revoke.REVOKE,
    controls.PAUSE,
    controls.RESUME,
    reports.PLAN,
    reports.STATUS,
    doctor.DOCTOR,
    dev.DEMO,
    dev.SANDBOX,
)
"""Every subcommand, in ``--help`` order."""

BY_NAME = {command.name: command for command in COMMANDS}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="rotator",
        description=(
            "Keeps Encord service-account keys and bearer tokens fresh in HashiCorp Vault "
            "(KV v2): issues new keys before the old ones expire, proves they work, stores "
            "them, and revokes the old ones after a grace period."
        ),
        epilog=(
            "The variables every command reads: rotator run --help.\n"
            "Exit codes: 0 ok, 1 Vault or Encord refused or failed, 2 bad configuration or "
            "input."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"rotator {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for command in COMMANDS:
        p = sub.add_parser(command.name, help=command.help, **dict(command.parser_options or {}))
        command.arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list:  # a person exploring: the commands, not an error line
        build_parser().print_help(sys.stderr)
        return 2
    if args_list[:1] == ["sandbox"]:
        from rotator.dev.sandbox.cli import main as sandbox_main  # the daemon never imports it

        return sandbox_main(args_list[1:])
    args = build_parser().parse_args(args_list)
    command = BY_NAME[args.command]
    fmt, level = log_format(os.environ)
    stream = sys.stdout if command.logs_to_stdout else sys.stderr
    logs.configure(fmt=fmt, level=level, stream=stream)
    if not command.needs_settings:
        return command.run(None, args)
    try:
        settings = from_env(os.environ)
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("config.invalid", problem=problem)
        return 2
    from rotator.runtime.wiring import register_settings_secrets

    register_settings_secrets(settings)  # the Vault credentials, the notify URL
    return _run(command, settings, args)


def _run(command: Command, settings: object, args: argparse.Namespace) -> int:
    """``command.run``, with rotator's errors turned into one log line and an exit code."""
    try:
        return command.run(settings, args)
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
