"""``pause`` and ``resume``: hold an account's keys still, and let them go again.

The pause is written into the account's state record in Vault (check-and-set), so every
replica honours it at its next check and a restart keeps it. A paused account changes no
key; its bearer token is still refreshed (:mod:`rotator.core.holds`).
"""

from __future__ import annotations

import argparse
import getpass
import socket

import structlog

from rotator.cli.base import Command, add_account_argument, add_json_argument, engine_for, say
from rotator.core import admin
from rotator.runtime.config import Settings
from rotator.runtime.render import when

log = structlog.get_logger("rotator.cli")

MAX_REASON = 200


def operator() -> str:
    """Who is typing: ``user@host`` as this process sees it (``?`` for what it cannot tell)."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name, no passwd entry (a container's bare uid)
        user = "?"
    return f"{user}@{socket.gethostname() or '?'}"


def _reason(text: str) -> str:
    """``--reason``: one printable line of at most :data:`MAX_REASON` characters."""
    text = text.strip()
    if not text:
        raise argparse.ArgumentTypeError("empty reason: say why, or leave --reason out")
    if len(text) > MAX_REASON:
        raise argparse.ArgumentTypeError(f"longer than {MAX_REASON} characters")
    if not text.isprintable():
        raise argparse.ArgumentTypeError("one line of printable text, please")
    return text


def _pause_arguments(p: argparse.ArgumentParser) -> None:
    add_account_argument(p)
    p.add_argument("--reason", type=_reason, metavar="TEXT", help="why (shown by status)")
    add_json_argument(p)


def _resume_arguments(p: argparse.ArgumentParser) -> None:
    add_account_argument(p)
    add_json_argument(p)


def cmd_pause(settings: Settings, args: argparse.Namespace) -> int:
    engine = engine_for(settings, args.name)
    with structlog.contextvars.bound_contextvars(account=args.name):
        if settings.dry_run:
            log.info("dry_run.skipped", command="pause")
            return 0
        pause, made = admin.pause(engine.context, by=operator(), reason=args.reason)
    document = {
        "event": "pause.done",
        "account": args.name,
        "already_paused": not made,
        "paused": {"at": pause.at.isoformat(), "by": pause.by, "reason": pause.reason},
    }
    since = "was already paused" if not made else "is paused"
    why = f" ({pause.reason})" if pause.reason else ""
    say(
        args,
        document,
        f"{args.name} {since} since {when(pause.at)} by {pause.by}{why}: rotator changes none "
        f"of its keys (the bearer token is still refreshed) until: rotator resume {args.name}",
    )
    return 0


def cmd_resume(settings: Settings, args: argparse.Namespace) -> int:
    engine = engine_for(settings, args.name)
    with structlog.contextvars.bound_contextvars(account=args.name):
        if settings.dry_run:
            log.info("dry_run.skipped", command="resume")
            return 0
        lifted = admin.resume(engine.context, by=operator())
    document = {"event": "resume.done", "account": args.name, "was_paused": bool(lifted)}
    if lifted:
        sentence = f"{args.name} is resumed: the next check rotates whatever is due"
    else:
        sentence = f"{args.name} was not paused: nothing changed"
    say(args, document, sentence)
    return 0


PAUSE = Command(
    "pause",
    "stop changing an account's keys, on every replica, until 'resume' (bearer still fresh)",
    _pause_arguments,
    cmd_pause,
)
RESUME = Command(
    "resume", "let rotator change a paused account's keys again", _resume_arguments, cmd_resume
)
