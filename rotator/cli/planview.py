"""``rotator plan`` for a person: one line per action, then what to run about it.

Works on :func:`rotator.core.policy.describe`'s JSON-safe dicts, the same ones ``--json``
prints, so a field an action gains shows here as ``name=value`` without a change.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from rotator.runtime.render import relative, short_id, when

PLAN_HINTS: Mapping[str, str] = {
    "not_bootstrapped": (
        "{name}: not bootstrapped; run: rotator bootstrap {name} --private-key-file F "
        "(F: the key file the Encord UI downloaded)"
    ),
    "blocked_by_cap": (
        "{name}: the key cap stops a rotation; it starts once a retiring key's grace ends, "
        "or delete a key nobody uses at Encord"
    ),
    "paused": (
        "{name}: paused (rotator status says by whom and why); no key changes until: "
        "rotator resume {name}"
    ),
    "encord_unavailable": (
        "{name}: Encord did not answer; check ENCORD_DOMAIN and the network to it, then run "
        "rotator plan again"
    ),
}
"""Per reason (of a ``Blocked`` action, or of the account's error), what to tell a person."""

_SHOWN = ("action", "kind", "key_id", "title", "until", "reason", "detail")


def _verb(action: str) -> str:
    """``DeleteOrphan`` -> ``delete orphan``."""
    return re.sub(r"(?<!^)(?=[A-Z])", " ", action).lower()


def action_line(a: Mapping[str, Any], now: datetime) -> str:
    """``rotate  ssh-key: expires_in_2d``; ``wait  until 2027-03-02 09:00 UTC (in 75d 23h):
    next_due``."""
    subject = []
    if a.get("kind"):
        subject.append(str(a["kind"]))
    if a.get("key_id"):
        subject.append(f"key {short_id(str(a['key_id']))}")
    if a.get("title"):
        subject.append(f"'{a['title']}'")
    if "until" in a:
        until = a["until"]
        if until is None:
            subject.append("until something changes")
        else:
            at = datetime.fromisoformat(str(until))
            subject.append(f"until {when(at)} ({relative(at, now)})")
    subject += [f"{k}={v}" for k, v in a.items() if k not in _SHOWN and v not in (None, "")]
    reason = str(a.get("reason", ""))
    body = ", ".join(subject)
    text = f"{body}: {reason}" if body and reason else body or reason
    if a.get("detail"):
        text += f" ({a['detail']})"
    return f"  {_verb(str(a['action'])):<16}{text}".rstrip()


def window_line(w: Mapping[str, Any], now: datetime) -> str:
    """``window  open until ...`` or ``window  closed, opens ...``, from its JSON."""
    if w["open"]:
        closes = w.get("closes_at")
        until = "further notice" if closes is None else when(datetime.fromisoformat(closes))
        return f"{'window':<16}open until {until} ({w['window']})"
    opens = datetime.fromisoformat(str(w["opens_at"]))
    return f"{'window':<16}closed, opens {when(opens)} ({relative(opens, now)}; {w['window']})"


def hints(entry: Mapping[str, Any]) -> list[str]:
    """What to run about one account's plan (``entry``: its ``--json`` document)."""
    reasons = [str(a.get("reason")) for a in entry.get("actions", ()) if a["action"] == "Blocked"]
    if "error" in entry:
        reasons.append(str(entry.get("reason", "")))
    if any(a["action"] == "Paused" for a in entry.get("actions", ())):
        reasons.insert(0, "paused")
    name = entry["account"]
    return [PLAN_HINTS[r].format(name=name) for r in dict.fromkeys(reasons) if r in PLAN_HINTS]


def text(entries: Sequence[Mapping[str, Any]], now: datetime) -> str:
    """Each account, its actions indented under it, then the hints."""
    lines: list[str] = []
    for entry in entries:
        lines.append(f"{entry['account']}:")
        if entry.get("window"):
            lines.append(f"  {window_line(entry['window'], now)}")
        if "error" in entry:
            lines.append(f"  could not plan: {entry['error']}")
        lines += [action_line(a, now) for a in entry.get("actions", ())]
    notes = [line for entry in entries for line in entry.get("hints", ())]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines)
