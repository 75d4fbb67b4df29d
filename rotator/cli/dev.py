"""``demo`` and ``sandbox``: the development tools, imported only when run (the daemon never
imports them)."""

from __future__ import annotations

import argparse

from rotator.cli.base import Command, no_arguments


def _demo_arguments(p: argparse.ArgumentParser) -> None:
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


def cmd_demo(settings: None, args: argparse.Namespace) -> int:
    from rotator.dev.demo import run_demo

    return run_demo(duration=args.duration, workdir=args.workdir)


def cmd_sandbox(settings: None, args: argparse.Namespace) -> int:
    """Never reached through argparse: :func:`rotator.cli.main` hands ``sandbox``'s argv on
    to the sandbox's own parser before parsing."""
    raise AssertionError("'rotator sandbox' is dispatched before parsing")


DEMO = Command(
    "demo",
    "embedded OpenBao + Encord sandbox + daemon with seconds-scale timings",
    _demo_arguments,
    cmd_demo,
    needs_settings=False,
    logs_to_stdout=True,
)
SANDBOX = Command(
    "sandbox",
    "run the local Encord sandbox (see 'rotator sandbox --help')",
    no_arguments,
    cmd_sandbox,
    needs_settings=False,
    parser_options={"add_help": False},
)
