"""``doctor``: what is wrong, one line per check (ok, warn, fail); ``--json`` for machines.

Exit 0 when no check failed (warnings allowed), 1 when one did. Read-only: the checks are
:mod:`rotator.runtime.doctor`'s.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

from rotator.cli.base import Command
from rotator.runtime.config import Settings


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="one JSON document")


def cmd_doctor(settings: Settings, args: argparse.Namespace) -> int:
    from rotator.runtime.doctor import diagnose

    findings = diagnose(settings)
    counts = Counter(f.status for f in findings)
    failed = counts["fail"] > 0
    if args.json:
        doc = {
            "event": "doctor",
            "ok": not failed,
            "counts": {s: counts[s] for s in ("ok", "warn", "fail")},
            "checks": [f.to_json() for f in findings],
        }
        print(json.dumps(doc))
        return 1 if failed else 0
    for f in findings:
        where = f"{f.check}[{f.account}]" if f.account else f.check
        print(f"{f.status:<5}{where:<32} {f.detail}")
        if f.hint and f.status != "ok":
            print(f"{'':<5}{'':<32} -> {f.hint}")
    print(f"{counts['ok']} ok, {counts['warn']} warn, {counts['fail']} fail")
    return 1 if failed else 0


DOCTOR = Command(
    "doctor",
    "check Vault, the token, the mount, each account's key and Encord; writes nothing",
    _arguments,
    cmd_doctor,
)
