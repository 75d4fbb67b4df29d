"""``plan`` and ``status``: read-only reports, for a person (text with hints) or, with
``--json``, a machine (one document: durations in seconds, full key ids, ISO times)."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from rotator.cli import planview, statusview
from rotator.cli.base import Command, engines
from rotator.core import admin
from rotator.core.engine import Engine
from rotator.core.errors import RegistryUnavailable
from rotator.runtime.config import Settings


def _json_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--json", action="store_true", help="one JSON document (seconds, full key ids)"
    )


def plan_of(name: str, engine: Engine) -> dict[str, Any]:
    """One account's plan as ``--json`` prints it, with the rotation window as it stands
    (``None`` when ROTATOR_ROTATION_WINDOW is not set); an Encord that does not answer is the
    account's ``error`` (the other accounts are still planned)."""
    from rotator.core.policy import describe

    entry: dict[str, Any]
    try:
        entry = {"account": name, "actions": describe(engine.plan())}
    except RegistryUnavailable as exc:
        entry = {"account": name, "error": str(exc), "reason": "encord_unavailable"}
    window = engine.context.policy.window
    entry["window"] = None if window is None else window.upcoming(engine.clock()).describe()
    entry["hints"] = planview.hints(entry)
    return entry


def cmd_plan(settings: Settings, args: argparse.Namespace) -> int:
    out = [plan_of(name, engine) for name, engine in engines(settings).items()]
    if args.json:
        print(json.dumps({"event": "plan", "accounts": out}))
    else:
        print(planview.text(out, datetime.now(UTC)))
    return 1 if any("error" in entry for entry in out) else 0


def view_of(engine: Engine) -> statusview.View:
    """One account's status (:func:`rotator.core.admin.status`) with its policy and time."""
    ctx = engine.context
    return statusview.View(admin.status(ctx), ctx.policy, ctx.clock())


def status_of(engine: Engine) -> dict[str, Any]:
    """One account's status as ``rotator status --json`` prints it, free of secrets."""
    return statusview.as_json(view_of(engine))


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    views = [view_of(engine) for engine in engines(settings).values()]
    if args.json:
        print(json.dumps({"event": "status", "accounts": [statusview.as_json(v) for v in views]}))
    else:
        print(statusview.text(views))
    return 0


PLAN = Command(
    "plan", "what each account needs now and why; writes nothing", _json_argument, cmd_plan
)
STATUS = Command(
    "status",
    "per account and credential: state, key, age, expiry, keys vs cap, last rotation, hints",
    _json_argument,
    cmd_status,
)
