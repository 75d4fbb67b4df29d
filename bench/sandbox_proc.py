"""The Encord sandbox in its own process, counting the requests it answers.

``python -m bench.sandbox_proc --seed SEED.json [--clock-offset S] [--page-size N]``

The benchmarks run the sandbox in a process of its own so that it never competes for the
benchmark's (or the client's) interpreter lock. It prints one JSON line ``{"url": ...}`` once
it answers, then reads commands on stdin, one per line:

- ``counts``: print one JSON line, ``{"<kind> <group>": n, ...}`` for every request answered
  since the last ``reset`` (kind: list, upload, generate, delete, verify, bearer; group: the
  service-account hash without its trailing digits, or ``-`` for calls that name none) and
  ``"status <code>": n``;
- ``reset``: zero the counts;
- ``stop`` or end of input: stop and exit 0.

``--clock-offset S`` runs the sandbox's clock S seconds behind the real one, so the keys it
creates look S seconds old (S must stay below the 300 s signature window).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import threading
import time
from collections import Counter

from rotator.dev.sandbox import Sandbox, SeedConfig

_TRAILING_DIGITS = re.compile(r"\d+$")


def classify(requestline: str) -> str | None:
    """``"<kind> <group>"`` for a request line like ``GET /v2/public/... HTTP/1.1``."""
    parts = requestline.split(" ")
    if len(parts) < 2:
        return None
    method, target = parts[0], parts[1]
    path = target.partition("?")[0]
    if not path.startswith("/v2/public/"):
        return None
    segments = path[len("/v2/public/") :].split("/")
    if segments[:2] == ["organisation", "organisation-tags"]:
        return "verify -"
    if segments[:2] == ["user", "bearer-token"]:
        return "bearer -"
    if len(segments) >= 3 and segments[0] == "service-accounts" and segments[2] == "keys":
        group = _TRAILING_DIGITS.sub("", segments[1]) or "-"
        if method == "GET":
            return f"list {group}"
        if method == "DELETE":
            return f"delete {group}"
        if method == "POST":
            return f"{'generate' if segments[-1] == 'generate' else 'upload'} {group}"
    return f"other {method}"


class CountingHandler(logging.Handler):
    """Counts the access-log records ``http.server`` emits, one per answered request."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.counts: Counter[str] = Counter()
        self.counts_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args
        # BaseHTTPRequestHandler.log_request: (client, '"%s" %s %s', requestline, code, size)
        if not isinstance(args, tuple) or len(args) != 4:
            return
        kind = classify(str(args[1]))
        if kind is None:
            return
        with self.counts_lock:
            self.counts[kind] += 1
            self.counts[f"status {args[2]}"] += 1

    def take(self, reset: bool) -> dict[str, int]:
        with self.counts_lock:
            out = dict(self.counts)
            if reset:
                self.counts.clear()
        return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sandbox_proc")
    parser.add_argument("--seed", required=True)
    parser.add_argument("--clock-offset", type=float, default=0.0)
    parser.add_argument("--page-size", type=int, default=3)
    args = parser.parse_args(argv)

    counter = CountingHandler()
    sandbox_log = logging.getLogger("rotator.sandbox")
    sandbox_log.setLevel(logging.DEBUG)
    sandbox_log.propagate = False
    sandbox_log.addHandler(counter)

    offset = float(args.clock_offset)
    box = Sandbox(
        SeedConfig.load(args.seed),
        clock=lambda: time.time() - offset,
        page_size=args.page_size,
    )
    box.start()
    try:
        print(json.dumps({"url": box.url}), flush=True)
        for line in sys.stdin:
            command = line.strip()
            if command == "counts":
                print(json.dumps(counter.take(reset=False)), flush=True)
            elif command == "reset":
                counter.take(reset=True)
                print(json.dumps({}), flush=True)
            elif command == "stop":
                break
    finally:
        box.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
