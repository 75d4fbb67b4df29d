"""``plan`` and ``status``: read-only reports, for a person or (``--json``) a machine."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rotator.cli.base import Command, engines
from rotator.core import admin
from rotator.core.engine import Engine
from rotator.runtime.config import Settings, format_duration


def _json_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="one JSON document")


def _window_line(w: dict[str, Any]) -> str:
    """``window: open until ...`` or ``window: closed, opens ...``, from its JSON."""
    if not w["open"]:
        return f"window: closed, opens {w['opens_at']} ({w['window']})"
    return f"window: open until {w['closes_at'] or 'further notice'} ({w['window']})"


def cmd_plan(settings: Settings, args: argparse.Namespace) -> int:
    from rotator.core.policy import describe

    out: list[dict[str, Any]] = []
    window = settings.rotation_window
    for name, engine in engines(settings).items():
        upcoming = None if window is None else window.upcoming(engine.clock())
        out.append({
            "account": name,
            "actions": describe(engine.plan()),
            "window": None if upcoming is None else upcoming.describe(),
        })
    if args.json:
        print(json.dumps({"event": "plan", "accounts": out}, indent=None))
    else:
        for entry in out:
            print(f"{entry['account']}:")
            if entry["window"]:
                print(f"  {_window_line(entry['window'])}")
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
    entry["window"] = None if st.window is None else st.window.describe()
    p = st.paused
    entry["paused"] = None if p is None else {
        "at": p.at.isoformat(), "by": p.by, "reason": p.reason
    }
    return entry


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    out = [status_of(engine) for engine in engines(settings).values()]
    if args.json:
        print(json.dumps({"event": "status", "accounts": out}))
        return 0
    for e in out:
        print(f"{e['account']}: keys at Encord {e.get('keys_at_encord', '?')}/{e['key_cap']}")
        if e["paused"]:
            p = e["paused"]
            why = f": {p['reason']}" if p["reason"] else ""
            print(f"  paused since {p['at']} by {p['by']}{why}")
        if e["window"]:
            print(f"  {_window_line(e['window'])}")
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


PLAN = Command(
    "plan", "what each account needs now and why; writes nothing", _json_argument, cmd_plan
)
STATUS = Command(
    "status", "per account: current key, age, expiry, keys vs cap", _json_argument, cmd_status
)
