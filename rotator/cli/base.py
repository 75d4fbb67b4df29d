"""What every subcommand shares: the :class:`Command` shape a command module declares, the
argument parser that reports usage errors in one line, and the helpers that build an account's
engine over one Vault store."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import structlog

from rotator.core.engine import Engine
from rotator.core.errors import ConfigError
from rotator.runtime import logs
from rotator.runtime.config import Settings

log = structlog.get_logger("rotator.cli")


@dataclass(frozen=True, slots=True)
class Command:
    """One subcommand: its name and one-line help, what it adds to its parser, and what it
    runs. ``run(settings, args) -> exit code``; with ``needs_settings=False`` it is called
    with ``None`` settings (the development tools, which read no variables)."""

    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[Any, argparse.Namespace], int]
    needs_settings: bool = True
    logs_to_stdout: bool = False  # the daemon and the demo; the others keep stdout for results
    parser_options: Mapping[str, Any] | None = None


def no_arguments(parser: argparse.ArgumentParser) -> None:
    """For a command that takes none."""


def log_format(environ: Mapping[str, str]) -> tuple[str, str]:
    """The log format and level, leniently: a bad value is reported by from_env later.

    The format may be ``auto``: :func:`logs.configure` decides it for the stream it writes to.
    """
    fmt = environ.get("ROTATOR_LOG_FORMAT", "auto").strip().lower()
    level = environ.get("ROTATOR_LOG_LEVEL", "info").strip().lower()
    return (fmt if fmt in logs.FORMATS else "auto", level if level in logs.LEVELS else "info")


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line on stderr, exit 2: argparse's text on a
    terminal (or in console mode), else a log line like every other (json, ecs)."""

    def error(self, message: str) -> NoReturn:
        fmt, level = log_format(os.environ)
        if logs.resolve_format(fmt, sys.stderr) == "console":
            print(f"{self.prog}: error: {message}", file=sys.stderr)
        else:  # the same fields, and redaction, as every other line
            logs.configure(fmt=fmt, level=level, stream=sys.stderr)
            log.error("cli.usage_error", error=message)
        raise SystemExit(2)


def add_account_argument(parser: argparse.ArgumentParser) -> None:
    """The NAME positional most commands take."""
    parser.add_argument("name", help="account name from ROTATOR_ACCOUNTS")


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    """``--json``: a command's result as one JSON line (for scripts) instead of a sentence."""
    parser.add_argument("--json", action="store_true", help="one JSON line instead of a sentence")


def say(args: argparse.Namespace, document: Mapping[str, object], sentence: str) -> None:
    """A command's result on stdout: ``document`` as JSON with ``--json``, else ``sentence``."""
    print(json.dumps(document) if args.json else sentence)


def engines(settings: Settings, store: Any = None, leases: Any = None) -> dict[str, Engine]:
    """Every account's engine over one Vault store (opened and checked once, unless
    given); with ``leases`` (name -> :class:`rotator.adapters.lease.Lease`) writes are fenced."""
    from rotator.runtime.wiring import make_engines, make_factory, open_store, wait_for_vault

    if store is None:
        store = open_store(settings)
        wait_for_vault(store, deadline=5.0)
    return make_engines(settings, store, make_factory(settings), leases=leases)


def engine_for(settings: Settings, name: str) -> Engine:
    """One account's engine (the account must be in ROTATOR_ACCOUNTS)."""
    check_account(settings, name)
    return engines(settings)[name]


def check_account(settings: Settings, name: str) -> None:
    """ConfigError (exit 2) unless ``name`` is one of ROTATOR_ACCOUNTS."""
    if name not in {a.name for a in settings.accounts}:
        raise ConfigError(f"account '{name}' is not in ROTATOR_ACCOUNTS")
