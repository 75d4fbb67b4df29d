"""Helpers for end-to-end tests: environments, subprocess daemons, SDK checks, invariants."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from encord import EncordUserClient
from encord.http.constants import RequestsSettings

from rotator.core.policy import owned_title_prefix
from rotator.dev.openbao import OpenBaoDev
from rotator.dev.sandbox import Sandbox
from tests.secret_scan import assert_no_secrets, scan_later

FAST_SDK = RequestsSettings(
    max_retries=0, connection_retries=0, connect_timeout=5, read_timeout=5, write_timeout=5
)

FAST_TIMINGS = {
    "ROTATOR_KEY_TTL": "3s",
    "ROTATOR_ROTATE_BEFORE": "1500ms",
    "ROTATOR_GRACE": "1s",
    "ROTATOR_BEARER_TTL": "2s",
    "ROTATOR_CHECK_INTERVAL": "300ms",
    "ROTATOR_JITTER": "0s",
    "ROTATOR_HTTP_ADDR": "127.0.0.1:0",
}


# Production-like timings: nothing falls due during a test.
CALM_TIMINGS = {
    "ROTATOR_KEY_TTL": "90d",
    "ROTATOR_ROTATE_BEFORE": "14d",
    "ROTATOR_GRACE": "1h",
    "ROTATOR_BEARER_TTL": "1h",
}


def base_env(bao: OpenBaoDev, prefix: str, sandbox_url: str, **extra: str) -> dict[str, str]:
    """A complete, valid rotator environment against a test OpenBao and sandbox."""
    env = {
        "VAULT_ADDR": bao.addr,
        "VAULT_TOKEN": bao.root_token,
        "ROTATOR_VAULT_PREFIX": prefix,
        "ENCORD_DOMAIN": sandbox_url,
        "ROTATOR_ACCOUNTS": "alpha=sa-alpha",
        **FAST_TIMINGS,
    }
    env.update(extra)
    return env


def sdk_authenticates(url: str, private_key: str) -> bool:
    """The real encord SDK, given this key, gets an answer from a signed v2 call."""
    client = EncordUserClient.create_with_ssh_private_key(
        private_key, domain=url, requests_settings=FAST_SDK
    )
    client.list_organisation_tags()
    return True


def subprocess_env(env: Mapping[str, str]) -> dict[str, str]:
    """The test's environment for a child: only PATH/HOME-like basics plus ``env``."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    keep.update(env)
    return keep


class Proc:
    """A rotator subprocess whose stdout/stderr lines are collected as they come."""

    def __init__(self, args: list[str], env: Mapping[str, str]) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "rotator", *args],
            env=subprocess_env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.args = list(args)
        self.lines: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._scanned = False
        assert self.popen.stdout is not None and self.popen.stderr is not None
        self._threads = [
            threading.Thread(target=self._pump, args=("stdout", self.popen.stdout), daemon=True),
            threading.Thread(target=self._pump, args=("stderr", self.popen.stderr), daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _pump(self, name: str, stream: IO[str]) -> None:
        for line in stream:
            with self._lock:
                self.lines.append((name, line.rstrip("\n")))

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(line) for _, line in self.lines if line.startswith("{")]

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if any(predicate(e) for e in self.events()):
                return True
            if self.popen.poll() is not None:
                time.sleep(0.2)  # let the pumps drain
                return any(predicate(e) for e in self.events())
            time.sleep(0.05)
        return False

    def finish(self, timeout: float = 15.0) -> int:
        rc = self.popen.wait(timeout=timeout)
        for t in self._threads:
            t.join(timeout=5)
        for stream in (self.popen.stdout, self.popen.stderr):
            if stream is not None and not stream.closed:
                stream.close()
        if not self._scanned:  # every line it wrote joins the session-wide secret scan
            self._scanned = True
            scan_later(self.text(), f"output of rotator {' '.join(self.args)}")
        return rc

    def text(self) -> str:
        with self._lock:
            return "\n".join(line for _, line in self.lines)

    def assert_all_json(self) -> None:
        """Every line on stdout and stderr is one JSON object with an ``event``; no secret."""
        with self._lock:
            lines = list(self.lines)
        for stream, line in lines:
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                raise AssertionError(f"non-JSON line on {stream}: {line[:120]!r}") from None
            assert isinstance(obj, dict) and "event" in obj, f"no event on {stream}: {line[:120]}"
        assert_no_secrets(self.text(), "daemon output")

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.finish()


def rotator_cli(
    args: list[str], env: Mapping[str, str], timeout: float = 30
) -> tuple[int, str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "rotator", *args],
        env=subprocess_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    scan_later(done.stdout + done.stderr, f"output of rotator {' '.join(args)}")
    return done.returncode, done.stdout, done.stderr


def journal_max_keys(path: Path) -> int:
    if not path.exists():
        return 0
    return max(
        (int(json.loads(line).get("key_count") or 0) for line in path.read_text().splitlines()),
        default=0,
    )


def owned_orphans(
    sandbox: Sandbox, account: str, state_key_ids: set[str], *, instance: str | None = None
) -> list[str]:
    """Keys at the sandbox titled by rotator for ``account`` (by ``instance``; by any when
    None, in either title format) that the state record does not explain."""

    def titled(title: str) -> bool:
        if instance is not None:
            return title.startswith(owned_title_prefix(instance, account))
        parts = title.split(":")
        return parts[0] == "rotator" and account in parts[1:3] and len(parts) >= 3

    return [
        k.key_id
        for k in sandbox.keys(account)
        if titled(k.title) and k.key_id not in state_key_ids
    ]
