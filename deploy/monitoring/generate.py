"""Write prometheusrule.yaml from rotator-rules.yaml (``make monitoring``).

rotator-rules.yaml is the one source of the alerts: the PrometheusRule manifest is that file's
``groups:`` indented under ``spec:``, text for text, so both hold the same rules and comments.

``--runbook-base-url URL`` first points every ``runbook_url`` of rotator-rules.yaml at
``URL#<anchor>`` (the anchor, a section of docs/runbooks.md, is kept), then writes the
manifest. Standard library only: it runs with any Python 3.11.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

RULES = "rotator-rules.yaml"
MANIFEST = "prometheusrule.yaml"

HEADER = """\
# Generated from rotator-rules.yaml by `make monitoring`: edit that file, then regenerate.
# The same rules for the Prometheus Operator: kubectl apply -f deploy/monitoring/prometheusrule.yaml
# (the Prometheus resource's ruleSelector must match these labels).
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: rotator
  labels:
    app.kubernetes.io/name: rotator
    app.kubernetes.io/part-of: rotator
spec:
"""

_RUNBOOK = re.compile(r'^(?P<key>\s*runbook_url:\s*)"?[^"#\s]*(?P<anchor>#[A-Za-z0-9_-]+)"?\s*$')


def set_runbook_base(rules: str, base: str) -> str:
    """``rules`` with every runbook_url's part before ``#`` replaced by ``base``."""
    if not re.fullmatch(r"https?://[^\s\"#]+", base):
        raise ValueError(f"runbook base URL must be http(s)://... without '#': {base!r}")
    out, found = [], 0
    for line in rules.splitlines(keepends=True):
        m = _RUNBOOK.match(line)
        if m:
            found += 1
            line = f'{m["key"]}"{base}{m["anchor"]}"\n'
        out.append(line)
    if not found:
        raise ValueError("no runbook_url line found")
    return "".join(out)


def manifest(rules: str) -> str:
    """The PrometheusRule holding the groups of ``rules`` (the text from ``groups:`` on)."""
    lines = rules.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.startswith("groups:")), None)
    if start is None:
        raise ValueError(f"{RULES} has no top-level 'groups:' line")
    body = "".join(f"  {line}" if line.strip() else "\n" for line in lines[start:])
    return HEADER + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(__file__).resolve().parent,
        help=f"the folder holding {RULES} (default: this script's)",
    )
    parser.add_argument("--runbook-base-url", help="e.g. https://.../docs/runbooks.md")
    args = parser.parse_args(argv)
    rules_path = args.dir / RULES
    rules = rules_path.read_text(encoding="utf-8")
    if args.runbook_base_url:
        try:
            rules = set_runbook_base(rules, args.runbook_base_url)
        except ValueError as exc:
            print(f"generate.py: {exc}", file=sys.stderr)
            return 2
        rules_path.write_text(rules, encoding="utf-8")
    (args.dir / MANIFEST).write_text(manifest(rules), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
