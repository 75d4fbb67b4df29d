"""Shared set-up for the benchmarks: servers, accounts, process sampling, tables, results.

Every benchmark starts its own OpenBao dev server and Encord sandbox on loopback
(:class:`Stack`), creates and bootstraps the accounts it needs, measures, prints a plain-text
table and writes ``bench/results/<name>.json``.

Counting round trips without touching the code under test:

- Encord: the sandbox runs in its own process (:mod:`bench.sandbox_proc`) and counts every
  request it answers, by kind (list, upload, verify, bearer, delete) and account group.
- Vault: OpenBao writes a file audit log (declared in a config file, since OpenBao refuses
  to enable audit devices over its API); :meth:`Stack.vault_counts` counts its responses.
- In-process runs go through the daemon's own check (:func:`daemon_for`) with a recording
  Vault store (:class:`CountingVaultStore`) and, when the order of the calls is wanted, a
  recording Encord transport (:class:`RecordingTransport`).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import httpx
import hvac
import hvac.exceptions

from rotator.adapters.encord.registry import registry_factory
from rotator.adapters.encord.signing import EncordAuth
from rotator.adapters.vault import VaultSession, VaultStore, Versioned, connect
from rotator.core import admin
from rotator.core.keys import KeyPair, load_private
from rotator.core.keys import generate as generate_key
from rotator.dev.openbao import OpenBaoDev
from rotator.runtime import logs
from rotator.runtime.config import Settings, from_env
from rotator.runtime.daemon import Daemon
from rotator.runtime.wiring import make_engines, open_store

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
PYTHON = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
MOUNT = "secret"
MB = 1024.0  # /proc reports kB
# What a daemon imports: a Python that did only this is the fixed-cost baseline.
IMPORTS = (
    "import rotator.cli, rotator.runtime.daemon, rotator.core.engine, rotator.adapters.vault, "
    "rotator.runtime.logs"
)


def quiet_logs() -> None:
    """rotator's own log lines (bootstrap, in-process checks) go to stderr, warnings only."""
    logs.configure(fmt="console", level="warning", stream=sys.stderr)


def daemon_like_logs() -> None:
    """Log as the daemon does (JSON, info), into /dev/null: in-process runs pay the same
    rendering and redaction cost as ``rotator run`` without printing it."""
    sink = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - open for the process
    logs.configure(fmt="json", level="info", stream=sink)
    # The benchmark's own crashes still go to stderr as tracebacks.
    sys.excepthook = sys.__excepthook__
    threading.excepthook = threading.__excepthook__


# --- the machine and the results ------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    commit = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        commit = done.stdout.strip()
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit,
        # Other work on the machine disturbs the figures: the load when they were written.
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def write_results(name: str, data: Mapping[str, Any]) -> Path:
    """``bench/results/<name>.json`` with the machine description added."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"bench": name, "machine": machine(), **data}
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return path


def table(title: str, headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    text_rows = [[str(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in text_rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        out = [cells[0].ljust(widths[0])]
        out.extend(c.rjust(widths[i + 1]) for i, c in enumerate(cells[1:]))
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * w for w in widths)
    body = [line(list(headers)), rule, *(line(r) for r in text_rows)]
    return "\n".join([title, "=" * len(title), *body, ""])


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def goal(ok: bool) -> str:
    return "met" if ok else "NOT met"


# --- processes --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProcStats:
    """One reading of ``/proc/<pid>``: memory in kB, CPU in seconds (all threads)."""

    rss_kb: int
    hwm_kb: int
    cpu_s: float
    threads: int
    switches: int  # voluntary + involuntary context switches, summed over threads


def proc_stats(pid: int) -> ProcStats:
    status: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        status[name] = value.strip()
    # /proc/<pid>/stat: fields after the ")" that ends the command name; utime and stime are
    # fields 14 and 15 of the whole line, and cover every thread of the process.
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(stat[11]) + int(stat[12])) / CLK_TCK
    switches = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            for line in (task / "status").read_text().splitlines():
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    switches += int(line.split(":")[1])
    return ProcStats(
        rss_kb=int(status["VmRSS"].split()[0]),
        hwm_kb=int(status["VmHWM"].split()[0]),
        cpu_s=cpu,
        threads=int(status["Threads"]),
        switches=switches,
    )


class RssSampler:
    """Samples a process's RSS every ``interval`` seconds in a thread (mean and max, kB)."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, KeyError):
                self.samples.append(proc_stats(self.pid).rss_kb)
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mean_kb(self) -> float:
        return statistics.fmean(self.samples) if self.samples else float("nan")

    @property
    def max_kb(self) -> int:
        return max(self.samples, default=0)


def child_env(extra: Mapping[str, str], home: Path) -> dict[str, str]:
    """A child's environment: PATH and LANG from ours, a private HOME, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TMPDIR")}
    env["HOME"] = str(home)
    env.update(extra)
    return env


class DaemonProc:
    """``python -m rotator run`` as a child; ``on_line`` sees each stdout line as it comes."""

    def __init__(
        self,
        env: Mapping[str, str],
        home: Path,
        on_line: Callable[[str], None] | None = None,
    ) -> None:
        self.on_line = on_line
        self.started_at: float | None = None  # monotonic time of daemon.started
        self.spawned_at = time.monotonic()
        self.tail: deque[str] = deque(maxlen=40)
        self.lines = 0
        self._started = threading.Event()
        # Lives as long as the child, closed in stop().
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        self.popen = subprocess.Popen(
            [PYTHON, "-m", "rotator", "run"],
            env=child_env(env, home),
            cwd=home,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            bufsize=1,
        )
        assert self.popen.stdout is not None
        self._pump = threading.Thread(target=self._read, args=(self.popen.stdout,), daemon=True)
        self._pump.start()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines += 1
            self.tail.append(line.rstrip("\n")[:300])
            if self.started_at is None and '"daemon.started"' in line:
                self.started_at = time.monotonic()
                self._started.set()
            if self.on_line is not None:
                self.on_line(line)

    def wait_started(self, timeout: float) -> None:
        if not self._started.wait(timeout):
            self.stop()
            raise RuntimeError(f"daemon did not start in {timeout:.0f} s:\n{self.explain()}")

    def explain(self) -> str:
        self._stderr.seek(0)
        err = self._stderr.read().decode("utf-8", "replace")[-2000:]
        return "\n".join(self.tail) + "\n" + err

    def stop(self, timeout: float = 20.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            rc = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            rc = self.popen.wait()
        self._pump.join(timeout=5)
        self._stderr.close()
        return rc


def sleeper(seconds: float, *, imports: str = "") -> subprocess.Popen[bytes]:
    """An idle Python child (the baseline): ``import time; time.sleep(s)``, perhaps after
    importing ``imports``."""
    code = f"{imports}\nimport time\ntime.sleep({seconds})"
    return subprocess.Popen([PYTHON, "-c", code], cwd=ROOT, stdin=subprocess.DEVNULL)


# --- OpenBao with an audit log ----------------------------------------------------------------


class AuditedOpenBao(OpenBaoDev):
    """``bao server -dev`` plus a config file declaring a file audit device.

    OpenBao refuses to enable audit devices over its API, so the dev server is started through
    a two-line wrapper that appends ``-config=<file>`` to its arguments.
    """

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.audit_path = folder / "audit.log"
        self._folder = folder
        hcl = folder / "audit.hcl"
        hcl.write_text(
            'audit "file" "bench" {\n'
            f'  options {{\n    file_path = "{self.audit_path}"\n  }}\n'
            "}\n",
            encoding="utf-8",
        )
        self._hcl = hcl

    def _spawn(self, binary: str) -> None:
        wrapper = self._folder / "bao-with-audit"
        wrapper.write_text(f'#!/bin/sh\nexec "{binary}" "$@" "-config={self._hcl}"\n')
        wrapper.chmod(0o700)
        super()._spawn(str(wrapper))


def vault_kind(path: str, operation: str) -> str:
    """``read state``, ``update ssh-key``... for a KV path; the path itself otherwise."""
    if path.startswith((f"{MOUNT}/data/", f"{MOUNT}/metadata/")):
        return f"{operation} {path.rsplit('/', 1)[-1]}"
    return f"{operation} {path}"


# --- the sandbox ------------------------------------------------------------------------------


class SandboxProc:
    """:mod:`bench.sandbox_proc` as a child: the Encord sandbox, counting what it answers."""

    def __init__(self, seed: Path, home: Path, *, clock_offset: float = 0.0) -> None:
        self.popen = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "bench.sandbox_proc",
                "--seed",
                str(seed),
                "--clock-offset",
                str(clock_offset),
            ],
            cwd=ROOT,
            env=child_env({"PYTHONPATH": str(ROOT)}, home),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._lock = threading.Lock()
        line = self._readline(timeout=600)
        self.url = str(json.loads(line)["url"])

    def _readline(self, timeout: float) -> str:
        assert self.popen.stdout is not None
        box: list[str] = []
        reader = threading.Thread(target=lambda: box.append(self.popen.stdout.readline()))  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout)
        if not box or not box[0]:
            self.popen.kill()
            raise RuntimeError("the sandbox process did not answer")
        return box[0]

    def command(self, text: str) -> dict[str, int]:
        assert self.popen.stdin is not None
        with self._lock:
            self.popen.stdin.write(text + "\n")
            self.popen.stdin.flush()
            return {str(k): int(v) for k, v in json.loads(self._readline(timeout=30)).items()}

    def counts(self) -> Counter[str]:
        return Counter(self.command("counts"))

    def reset(self) -> None:
        self.command("reset")

    def stop(self) -> None:
        if self.popen.poll() is None and self.popen.stdin is not None:
            with contextlib.suppress(OSError):
                self.popen.stdin.write("stop\n")
                self.popen.stdin.close()
        try:
            self.popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


def encord_total(counts: Mapping[str, int], group: str | None = None) -> int:
    """Requests of a counts dict (``"<kind> <group>"`` entries), perhaps of one group only
    (``verify`` and ``bearer`` name no account: they count for every group)."""
    total = 0
    for key, n in counts.items():
        kind, _, g = key.partition(" ")
        if kind in ("status", "other"):
            continue
        if group is None or g in (group, "-"):
            total += n
    return total


# --- the stack --------------------------------------------------------------------------------


def account_names(group: str, n: int) -> list[str]:
    """``group00001``... (the group is what the sandbox counts by)."""
    return [f"{group}{i:05d}" for i in range(1, n + 1)]


def hash_of(name: str) -> str:
    return f"sa-{name}"


class BorrowedTransport(httpx.BaseTransport):
    """One shared transport lent to many clients (``close`` is the owner's business)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self.inner.handle_request(request)

    def close(self) -> None:
        """Closed by the owner."""


@dataclass
class Stack:
    """OpenBao (optionally audited) + the sandbox (own process) + a work folder.

    ``groups`` maps an account-group prefix to how many accounts of it the sandbox holds.
    """

    groups: Mapping[str, int]
    audit: bool = False
    clock_offset: float = 0.0
    folder: Path = field(init=False)
    bao: OpenBaoDev = field(init=False)
    sandbox: SandboxProc = field(init=False)

    def __enter__(self) -> Stack:
        self.folder = Path(tempfile.mkdtemp(prefix="rotator-bench-"))
        (self.folder / "keys").mkdir()
        (self.folder / "home").mkdir()
        self.bao = AuditedOpenBao(self.folder) if self.audit else OpenBaoDev()
        self.bao.start()
        seed = {
            "service_accounts": [
                {
                    "name": name,
                    "hash": hash_of(name),
                    "key_cap": 5,
                    "bootstrap_key_file": str(self.key_file(name)),
                }
                for group, n in self.groups.items()
                for name in account_names(group, n)
            ]
        }
        seed_path = self.folder / "seed.json"
        seed_path.write_text(json.dumps(seed), encoding="utf-8")
        try:
            self.sandbox = SandboxProc(seed_path, self.home, clock_offset=self.clock_offset)
        except BaseException:
            self.bao.stop()
            raise
        self.created_at = time.time()  # when the bootstrap keys were made (real clock)
        return self

    def __exit__(self, *exc: object) -> None:
        self.sandbox.stop()
        self.bao.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    @property
    def home(self) -> Path:
        return self.folder / "home"

    def key_file(self, name: str) -> Path:
        return self.folder / "keys" / f"{name}.key"

    def env(self, prefix: str, names: Sequence[str], **extra: str) -> dict[str, str]:
        """A complete rotator environment for ``names`` under Vault prefix ``prefix``."""
        env = {
            "VAULT_ADDR": self.bao.addr,
            "VAULT_TOKEN": self.bao.root_token,
            "ROTATOR_VAULT_PREFIX": prefix,
            "ENCORD_DOMAIN": self.sandbox.url,
            "ROTATOR_ACCOUNTS": ",".join(f"{n}={hash_of(n)}" for n in names),
            "ROTATOR_HTTP_ADDR": "127.0.0.1:0",
        }
        env.update(extra)
        return env

    def settings(self, env: Mapping[str, str]) -> Settings:
        return from_env(env)

    def bootstrap(self, env: Mapping[str, str], workers: int = 8) -> None:
        """``rotator bootstrap`` for every account of ``env``, in-process and in parallel."""
        settings = from_env(env)
        store = open_store(settings)
        shared = httpx.HTTPTransport()
        factory = registry_factory(
            settings.encord_domain, transport_factory=lambda: BorrowedTransport(shared)
        )
        engines = make_engines(settings, store, factory)

        def one(name: str) -> None:
            admin.bootstrap(engines[name].context, self.key_file(name).read_text(encoding="utf-8"))

        try:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                list(pool.map(one, engines))
        finally:
            shared.close()

    # Vault round trips, from the audit log.

    def vault_mark(self) -> int:
        """Where the audit log ends now (pass to :meth:`vault_counts`)."""
        assert isinstance(self.bao, AuditedOpenBao)
        try:
            return self.bao.audit_path.stat().st_size
        except FileNotFoundError:
            return 0

    def vault_counts(self, since: int, settle: float = 0.3) -> dict[str, Counter[str]]:
        """Vault requests answered after mark ``since``: by the token's display name (see
        :meth:`token`; the root token is ``root``), then by :func:`vault_kind`."""
        assert isinstance(self.bao, AuditedOpenBao)
        time.sleep(settle)  # the audit device writes as it answers; let the last lines land
        counts: dict[str, Counter[str]] = {}
        with self.bao.audit_path.open("rb") as f:
            f.seek(since)
            for raw in f:
                if b'"type":"response"' not in raw[:120]:
                    continue
                entry = json.loads(raw)
                who = str(entry.get("auth", {}).get("display_name", "-"))
                request = entry.get("request", {})
                kind = vault_kind(str(request.get("path")), str(request.get("operation")))
                counts.setdefault(who, Counter())[kind] += 1
        return counts

    def token(self, name: str) -> str:
        """A root-policy token whose audit entries carry the display name ``token-<name>``."""
        client = connect(self.bao.addr, self.bao.root_token)
        try:
            answer = client.auth.token.create(policies=["root"], display_name=name, ttl="4h")
        finally:
            client.adapter.close()
        return str(answer["auth"]["client_token"])

    def sandbox_keys(self) -> dict[str, list[dict[str, Any]]]:
        """Every account's keys at the sandbox now, by account name."""
        with httpx.Client(trust_env=False, timeout=30) as http:
            answer = http.get(f"{self.sandbox.url}/_sandbox/state").json()
        return {str(a["name"]): list(a["keys"]) for a in answer["accounts"]}


# --- in-process counting ----------------------------------------------------------------------


@dataclass
class Op:
    """One round trip of a check, in order: Vault read/write of a path, or an Encord call."""

    peer: str  # "vault" or "encord"
    kind: str  # vault: read/read_version/write/destroy; encord: list, upload, verify, bearer,
    # delete, generate
    name: str = ""  # vault: the last path segment (state, ssh-key, bearer-token)
    data: dict[str, Any] | None = field(default=None, repr=False)
    query: bool = False  # encord list: a second page
    versions: tuple[int, ...] = ()  # vault read_version/destroy: which versions


class CountingVaultStore(VaultStore):
    """The daemon's Vault store (as :func:`rotator.runtime.wiring.open_store` builds it), recording
    every read and write, each one round trip, lease reads and writes included."""

    def __init__(self, settings: Settings, ops: list[Op]) -> None:
        session = VaultSession(settings.vault)
        super().__init__(
            session.client,
            mount=settings.vault.mount,
            prefix=settings.vault.prefix,
            session=session,
        )
        self.ops = ops

    def read(self, rel: str) -> Versioned | None:
        self.ops.append(Op("vault", "read", rel.rsplit("/", 1)[-1]))
        return super().read(rel)

    def read_version(self, rel: str, version: int) -> Versioned | None:
        self.ops.append(Op("vault", "read_version", rel.rsplit("/", 1)[-1], versions=(version,)))
        return super().read_version(rel, version)

    def write(self, rel: str, data: Mapping[str, Any], *, cas: int) -> int:
        self.ops.append(Op("vault", "write", rel.rsplit("/", 1)[-1], data=dict(data)))
        return super().write(rel, data, cas=cas)

    def destroy_versions(self, rel: str, versions: Iterable[int]) -> None:
        chosen = tuple(versions)
        self.ops.append(Op("vault", "destroy", rel.rsplit("/", 1)[-1], versions=chosen))
        super().destroy_versions(rel, chosen)


def encord_kind(method: str, path: str) -> str:
    if path.endswith("/organisation/organisation-tags"):
        return "verify"
    if path.endswith("/user/bearer-token"):
        return "bearer"
    if method == "GET":
        return "list"
    if method == "DELETE":
        return "delete"
    return "generate" if path.endswith("/generate") else "upload"


class RecordingTransport(httpx.BaseTransport):
    """An HTTP transport that appends an :class:`Op` per Encord request to ``ops``."""

    def __init__(self, inner: httpx.BaseTransport, ops: list[Op]) -> None:
        self.inner = inner
        self.ops = ops

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        kind = encord_kind(request.method, request.url.path)
        self.ops.append(Op("encord", kind, query=bool(request.url.query)))
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def daemon_for(settings: Settings, ops: list[Op], *, record_encord: bool = False) -> Daemon:
    """A daemon, not started, to run :meth:`Daemon.check_account` in-process: the daemon's
    own path (lease, fenced writes, engine), its Vault round trips recorded in ``ops``.
    ``record_encord`` records the Encord calls too, in order, through a wrapped transport
    (for the floor's sequence; the timed runs use the daemon's own factory)."""
    factory = None
    if record_encord:
        factory = registry_factory(
            settings.encord_domain,
            transport_factory=lambda: RecordingTransport(httpx.HTTPTransport(), ops),
            timeout=httpx.Timeout(10.0, connect=5.0),
        )
    return Daemon(settings, store=CountingVaultStore(settings, ops), factory=factory)


def check(daemon: Daemon, name: str) -> list[str]:
    """One daemon check of ``name``; its outcomes (an error if the check did not run)."""
    result = daemon.check_account(name)
    if result is None:
        h = daemon.health[name]
        raise RuntimeError(f"the check of {name} did not run ({h.last_error or 'lease'})")
    return result.outcomes


def release(daemon: Daemon) -> None:
    """Give up the daemon's leases, so that another (in-process) daemon may take over."""
    for lease in daemon.leases.values():
        lease.release()


def op_counts(ops: Iterable[Op]) -> dict[str, int]:
    """``{"vault": n, "encord": m}``."""
    c = Counter(op.peer for op in ops)
    return {"vault": c["vault"], "encord": c["encord"]}


def describe_ops(ops: Sequence[Op]) -> str:
    """``vault read state, encord list, ...`` (for the results file)."""
    return ", ".join(f"{o.peer} {o.kind}{' ' + o.name if o.name else ''}" for o in ops)


# --- the floor: the same round trips from a minimal client ------------------------------------


@dataclass
class FloorAccount:
    """What the minimal client knows of one account: its keys and its paths' versions."""

    name: str
    current: KeyPair
    current_hash: str
    retiring_hash: str | None = None
    new: KeyPair | None = None
    versions: dict[str, int] = field(default_factory=dict)


class Floor:
    """A minimal client issuing a recorded sequence of round trips back to back: hvac for
    Vault, one keep-alive httpx client for Encord, each request signed as Encord wants.

    It does what those round trips need and nothing else: no state record logic, no retries,
    no logging. Keys for the next rotation are generated beforehand (:meth:`prepare`), outside
    any timing.
    """

    def __init__(self, vault_addr: str, token: str, prefix: str, encord_url: str) -> None:
        self.vault = connect(vault_addr, token)
        self.prefix = prefix
        self.http = httpx.Client(base_url=encord_url, timeout=10.0, trust_env=False)

    def close(self) -> None:
        self.http.close()
        self.vault.adapter.close()

    def _path(self, account: FloorAccount, name: str) -> str:
        return f"{self.prefix}/{account.name}/{name}"

    def _keys_path(self, account: FloorAccount) -> str:
        return f"/v2/public/service-accounts/{hash_of(account.name)}/keys"

    def open_account(self, name: str, key_text: str) -> FloorAccount:
        """The account as bootstrapped: its key, that key's hash, its paths' versions."""
        current = load_private(key_text)
        listed = self.http.get(self._keys_path_of(name), auth=EncordAuth(current)).json()
        key_hash = next(k["keyHash"] for k in listed["results"] if k["keyId"] == current.key_id)
        account = FloorAccount(name=name, current=current, current_hash=key_hash)
        for path in ("state", "ssh-key", "bearer-token", "lease"):
            with contextlib.suppress(hvac.exceptions.InvalidPath):
                meta = self.vault.secrets.kv.v2.read_secret_metadata(
                    self._path(account, path), mount_point=MOUNT
                )
                account.versions[path] = int(meta["data"]["current_version"])
        return account

    def _keys_path_of(self, name: str) -> str:
        return f"/v2/public/service-accounts/{hash_of(name)}/keys"

    def prepare(self, account: FloorAccount) -> None:
        """Generate the key the next run will register (not timed)."""
        account.new = generate_key(comment=f"floor:{account.name}")

    def run(self, account: FloorAccount, ops: Sequence[Op]) -> None:
        """Issue ``ops`` for ``account``, back to back; then the new key is current."""
        new = account.new
        assert new is not None
        next_page: str | None = None
        uploaded_hash: str | None = None
        for op in ops:
            if op.peer == "vault":
                path = self._path(account, op.name)
                if op.kind == "read":
                    with contextlib.suppress(hvac.exceptions.InvalidPath):
                        self.vault.secrets.kv.v2.read_secret_version(
                            path, mount_point=MOUNT, raise_on_deleted_version=True
                        )
                elif op.kind == "read_version":
                    with contextlib.suppress(hvac.exceptions.InvalidPath):
                        self.vault.secrets.kv.v2.read_secret_version(
                            path,
                            version=op.versions[0],
                            mount_point=MOUNT,
                            raise_on_deleted_version=False,
                        )
                elif op.kind == "destroy":
                    self.vault.secrets.kv.v2.destroy_secret_versions(
                        path, list(op.versions), mount_point=MOUNT
                    )
                else:
                    answer = self.vault.secrets.kv.v2.create_or_update_secret(
                        path,
                        secret=op.data or {},
                        cas=account.versions.get(op.name, 0),
                        mount_point=MOUNT,
                    )
                    account.versions[op.name] = int(answer["data"]["version"])
                continue
            signer = EncordAuth(account.current)
            if op.kind == "list":
                params = {"pageToken": next_page} if op.query and next_page else None
                r = self.http.get(self._keys_path(account), params=params, auth=signer)
                next_page = r.json().get("nextPageToken")
            elif op.kind == "upload":
                title = f"floor:{account.name}:{new.key_id[:8]}"
                body = {"title": title, "publicKey": new.public_line}
                r = self.http.post(self._keys_path(account), json=body, auth=signer)
                if r.status_code == 200:
                    uploaded_hash = str(r.json()["keyHash"])
            elif op.kind == "verify":
                r = self.http.get(
                    "/v2/public/organisation/organisation-tags", auth=EncordAuth(new)
                )
            elif op.kind == "bearer":
                bearer_signer = EncordAuth(new) if uploaded_hash else signer
                r = self.http.get("/v2/public/user/bearer-token", auth=bearer_signer)
            elif op.kind == "delete":
                assert account.retiring_hash is not None
                r = self.http.delete(
                    f"{self._keys_path(account)}/{account.retiring_hash}", auth=signer
                )
                account.retiring_hash = None
            else:
                raise ValueError(f"the floor does not replay {op.kind}")
            if r.status_code not in (200, 204):
                code = r.json().get("code") if r.content else None
                raise RuntimeError(f"floor: {op.kind} answered HTTP {r.status_code} {code}")
        if uploaded_hash is not None:
            account.retiring_hash = account.current_hash
            account.current, account.current_hash = new, uploaded_hash
            account.new = None
