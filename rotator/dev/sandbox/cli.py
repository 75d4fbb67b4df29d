"""``rotator sandbox``: serve the Encord sandbox in the foreground until SIGTERM or SIGINT.

Prints one JSON line ``{"event": "sandbox.started", "url": ...}`` to stdout once it answers,
and ``{"event": "sandbox.stopped"}`` when it ends (exit 0). A bad seed or argument is one line
on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from types import FrameType
from typing import NoReturn

from rotator.core.errors import ConfigError
from rotator.dev.sandbox.faults import Faults
from rotator.dev.sandbox.seed import SeedConfig
from rotator.dev.sandbox.server import Sandbox

PROG = "rotator sandbox"


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, not usage plus a message."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def _parser() -> _Parser:
    p = _Parser(prog=PROG, description="A local stand-in for Encord's key API.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback)")
    p.add_argument("--port", type=int, default=0, help="port (default 0: any free port)")
    p.add_argument("--seed", required=True, help="seed JSON file: the service accounts")
    p.add_argument("--journal", help="append one JSON line per key added/deleted, failed auth")
    p.add_argument("--state", help="state file: keys survive a restart")
    p.add_argument("--error-rate", type=float, default=0.0, help="share of calls answered 500")
    p.add_argument("--throttle-rate", type=float, default=0.0, help="share of calls answered 429")
    p.add_argument("--retry-after", type=int, default=1, help="Retry-After seconds on 429")
    p.add_argument("--latency-ms", type=int, default=0, help="delay before every answer")
    p.add_argument(
        "--drop-upload-rate",
        type=float,
        default=0.0,
        help="share of key uploads/generations committed, then answered with a dropped connection",
    )
    p.add_argument("--page-size", type=int, default=3, help="keys per listed page")
    p.add_argument("--token-ttl", type=float, default=86400.0, help="bearer token lifetime, s")
    return p


def _build(argv: list[str]) -> Sandbox:
    args = _parser().parse_args(argv)
    faults = Faults(
        error_rate=args.error_rate,
        throttle_rate=args.throttle_rate,
        retry_after=args.retry_after,
        latency_ms=args.latency_ms,
        drop_upload_rate=args.drop_upload_rate,
    )
    return Sandbox(
        SeedConfig.load(args.seed),
        host=args.host,
        port=args.port,
        journal_path=args.journal,
        state_path=args.state,
        faults=faults,
        page_size=args.page_size,
        token_ttl=args.token_ttl,
    )


def main(argv: list[str]) -> int:
    """Run the sandbox until SIGTERM/SIGINT: 0 then; 2 on a bad seed or argument."""
    try:
        sandbox = _build(argv).start()
    except ConfigError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0

    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        print(json.dumps({"event": "sandbox.started", "url": sandbox.url}), flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sandbox.stop()
    print(json.dumps({"event": "sandbox.stopped"}), flush=True)
    return 0
