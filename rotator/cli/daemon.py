"""``run``: the daemon, until SIGTERM/SIGINT, after Vault answers and its mount passes."""

from __future__ import annotations

import argparse

import structlog

from rotator.cli.base import Command, no_arguments
from rotator.core.errors import AccessDenied, StoreUnavailable
from rotator.runtime.config import Settings, env_help

log = structlog.get_logger("rotator.cli")


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
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


ENV_HELP = env_help()
"""Every variable rotator reads and its default, by group (from the variable table):
``rotator run --help``."""

RUN = Command(
    "run",
    "run the daemon (until SIGTERM/SIGINT); 'rotator run --help' lists the variables",
    no_arguments,
    cmd_run,
    logs_to_stdout=True,
    parser_options={
        "description": "Run the daemon until SIGTERM/SIGINT. Every command reads the same "
        "variables.",
        "epilog": ENV_HELP,
        "formatter_class": argparse.RawDescriptionHelpFormatter,
    },
)
