"""Benchmark 3, scale: N accounts all due at once, one OpenBao, one sandbox.

``python -m bench.scale [--sizes 100,1000[,5000]] [--concurrency C]``

For each size N a fresh stack (OpenBao with an audit log, the sandbox in its own process)
gets N accounts, bootstrapped, whose keys are all due when ``python -m rotator run`` starts
(default settings but for the timings below; ``ROTATOR_MAX_CONCURRENCY`` default 4). The
benchmark measures the time from ``daemon.started`` until every account has rotated
(``rotation.finished`` outcome ``rotated``) and minted its bearer token, the daemon's peak
RSS (VmHWM) and CPU, and the Vault (audit log) and Encord (sandbox) requests it made.

How all keys are due at once: the sandbox's clock runs 240 s behind, so the bootstrap keys
look 240 s old, and ``KEY_TTL - ROTATE_BEFORE`` is set so that they fell due a few seconds
before the daemon starts, while the new keys fall due only minutes later. Grace is 30 min
and the check interval 10 min, so nothing else happens during the run.

Baseline, in the same run: the floor (:class:`bench.common.Floor`) replays the round trips
of one such check, recorded from rotator in-process, for N other accounts with the same
concurrency: the same Vault and Encord work with no daemon around it.

Goals: 1,000 accounts in ≤ 30 s on 2 cores; memory growing no faster than linearly; bounded
concurrency (at most C accounts in flight, so Vault and Encord are never flooded).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from typing import Any

from bench.common import (
    IMPORTS,
    MB,
    DaemonProc,
    Floor,
    FloorAccount,
    Op,
    RssSampler,
    Stack,
    account_names,
    check,
    daemon_for,
    daemon_like_logs,
    describe_ops,
    encord_total,
    fmt,
    goal,
    op_counts,
    proc_stats,
    sleeper,
    table,
    write_results,
)
from rotator.core.keys import load_private

CLOCK_OFFSET = 240.0  # seconds the sandbox's clock runs behind (< the 300 s signature window)
GOAL_SECONDS_1000 = 30.0
BOOTSTRAP_WORKERS = 8


class Progress:
    """Follows the daemon's log: which accounts rotated and minted, and when all had."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.rotated: set[str] = set()
        self.minted: set[str] = set()
        self.rotations = 0
        self.failures = 0
        self.done_at: float | None = None
        self.done = threading.Event()

    def __call__(self, line: str) -> None:
        if '"rotation.finished"' in line:
            event = json.loads(line)
            if event.get("outcome") == "rotated":
                self.rotations += 1
                self.rotated.add(str(event.get("account")))
        elif '"bearer.minted"' in line:
            self.minted.add(str(json.loads(line).get("account")))
        elif '"check.failed"' in line or '"check.crashed"' in line:
            self.failures += 1
        else:
            return
        if self.done_at is None and len(self.rotated) >= self.n and len(self.minted) >= self.n:
            self.done_at = time.monotonic()
            self.done.set()


def timings(stack: Stack, concurrency: int) -> dict[str, str]:
    """Settings under which the bootstrap keys fell due 10 s ago and new keys are not due for
    minutes (see the module docstring)."""
    age = int(CLOCK_OFFSET + (time.time() - stack.created_at))
    due_after = age - 10
    return {
        "ROTATOR_KEY_TTL": "1h",
        "ROTATOR_ROTATE_BEFORE": f"{3600 - due_after}s",
        "ROTATOR_GRACE": "30m",
        "ROTATOR_BEARER_TTL": "1h",
        "ROTATOR_CHECK_INTERVAL": "10m",
        "ROTATOR_JITTER": "0s",
        "ROTATOR_MAX_CONCURRENCY": str(concurrency),
    }


def run_floor(
    stack: Stack, names: list[str], ops: list[Op], concurrency: int
) -> tuple[float, dict[str, int | None]]:
    """The recorded check's round trips for every account in ``names``, ``concurrency`` at
    a time. Returns the wall time and the Encord and Vault requests counted at the servers."""
    keys = stack.sandbox_keys()
    probe = Floor(stack.bao.addr, stack.bao.root_token, "scale-floor", stack.sandbox.url)
    versions = probe.open_account(
        names[0], stack.key_file(names[0]).read_text(encoding="utf-8")
    ).versions
    probe.close()
    accounts: list[FloorAccount] = []
    for name in names:
        current = load_private(stack.key_file(name).read_text(encoding="utf-8"))
        key_hash = next(k["keyHash"] for k in keys[name] if k["keyId"] == current.key_id)
        account = FloorAccount(name, current, key_hash, versions=dict(versions))
        probe.prepare(account)
        accounts.append(account)

    local = threading.local()
    clients: list[Floor] = []
    lock = threading.Lock()

    def one(account: FloorAccount) -> None:
        floor = getattr(local, "floor", None)
        if floor is None:
            floor = Floor(stack.bao.addr, stack.bao.root_token, "scale-floor", stack.sandbox.url)
            local.floor = floor
            with lock:
                clients.append(floor)
        floor.run(account, ops)

    mark = stack.vault_mark() if stack.audit else 0
    stack.sandbox.reset()
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, accounts))
    elapsed = time.monotonic() - start
    counts: dict[str, int | None] = {
        "vault": (
            sum(sum(c.values()) for c in stack.vault_counts(mark).values())
            if stack.audit
            else None
        ),
        "encord": encord_total(stack.sandbox.counts()),
    }
    for floor in clients:
        floor.close()
    return elapsed, counts


def run_size(n: int, concurrency: int, audit: bool = True) -> dict[str, Any]:
    setup_started = time.monotonic()
    groups = {"s": n, "f": n, "q": 1}
    with Stack(groups=groups, audit=audit, clock_offset=CLOCK_OFFSET) as stack:
        names = account_names("s", n)
        floor_names = account_names("f", n)
        stack.bootstrap(stack.env("scale", names), workers=BOOTSTRAP_WORKERS)
        stack.bootstrap(stack.env("scale-floor", floor_names), workers=BOOTSTRAP_WORKERS)
        stack.bootstrap(stack.env("scale-rec", ["q00001"]))

        # The round trips of one due daemon check, recorded in-process (for the floor).
        recorded: list[Op] = []
        rec_settings = stack.settings(
            stack.env("scale-rec", ["q00001"], **timings(stack, concurrency))
        )
        outcomes = check(daemon_for(rec_settings, recorded, record_encord=True), "q00001")
        if "rotated" not in outcomes or "bearer_minted" not in outcomes:
            raise RuntimeError(f"the recording check did {outcomes}")
        setup_s = time.monotonic() - setup_started

        # The daemon.
        env = stack.env("scale", names, **timings(stack, concurrency))
        env["VAULT_TOKEN"] = stack.token("scale")
        progress = Progress(n)
        mark = stack.vault_mark() if audit else 0
        stack.sandbox.reset()
        servers = {"openbao": stack.bao.pid, "sandbox": stack.sandbox.popen.pid}
        servers_before = {k: proc_stats(pid).cpu_s for k, pid in servers.items() if pid}
        proc = DaemonProc(env, stack.home, on_line=progress)
        sampler = RssSampler(proc.pid, interval=0.25).start()
        try:
            proc.wait_started(60)
            assert proc.started_at is not None
            started_stats = proc_stats(proc.pid)
            if not progress.done.wait(max(120.0, n * 0.2)):
                raise RuntimeError(
                    f"N={n}: {len(progress.rotated)} rotated, {len(progress.minted)} minted "
                    f"when the time ran out:\n{proc.explain()}"
                )
            assert progress.done_at is not None
            end_stats = proc_stats(proc.pid)
            # Counted before the daemon stops (its shutdown releases every lease: one more
            # write per account, not part of the rotations).
            vault_total: int | None = None
            if audit:
                vault_total = sum(stack.vault_counts(mark).get("token-scale", {}).values())
            servers_cpu = {
                k: round(proc_stats(pid).cpu_s - servers_before[k], 1)
                for k, pid in servers.items()
                if pid
            }
        finally:
            sampler.stop()
            rc = proc.stop()
        elapsed = progress.done_at - proc.started_at
        encord = stack.sandbox.counts()
        encord_daemon = encord_total(encord, "sa-s")
        keys = stack.sandbox_keys()
        two_keys = sum(1 for name in names if len(keys[name]) == 2)

        floor_s, floor_counts = run_floor(stack, floor_names, recorded, concurrency)

    per_account = op_counts(recorded)
    return {
        "accounts": n,
        "concurrency": concurrency,
        "setup_s": round(setup_s, 1),
        "startup_s": round(proc.started_at - proc.spawned_at, 2),
        "time_s": round(elapsed, 2),
        "accounts_per_s": round(n / elapsed, 1),
        "ms_per_account": round(elapsed * 1000 / n, 2),
        "floor_s": round(floor_s, 2),
        "ratio_to_floor": round(elapsed / floor_s, 2),
        "vault_requests": vault_total,
        "encord_requests": encord_daemon,
        "vault_per_account": None if vault_total is None else round(vault_total / n, 2),
        "vault_audit_log": audit,
        "encord_per_account": round(encord_daemon / n, 2),
        "floor_requests": floor_counts,
        "recorded_check": {"round_trips": per_account, "sequence": describe_ops(recorded)},
        "rss_at_start_mb": round(started_stats.rss_kb / MB, 1),
        "peak_rss_mb": round(end_stats.hwm_kb / MB, 1),
        "rss_sampled_max_mb": round(sampler.max_kb / MB, 1),
        "daemon_cpu_s": round(end_stats.cpu_s - started_stats.cpu_s, 1),
        "daemon_cpu_ms_per_account": round(
            (end_stats.cpu_s - started_stats.cpu_s) * 1000 / n, 2
        ),
        "threads_at_end": end_stats.threads,
        "servers_cpu_s": servers_cpu,
        "rotations": progress.rotations,
        "distinct_rotated": len(progress.rotated),
        "accounts_with_two_keys": two_keys,
        "check_failures": progress.failures,
        "daemon_exit_code": rc,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--sizes", default="100,1000", help="comma-separated account counts")
    parser.add_argument("--concurrency", type=int, default=4, help="ROTATOR_MAX_CONCURRENCY")
    parser.add_argument(
        "--no-audit", action="store_true", help="no OpenBao audit log (Vault requests not counted)"
    )
    args = parser.parse_args(argv)
    daemon_like_logs()
    sizes = [int(s) for s in str(args.sizes).split(",") if s.strip()]
    started = time.monotonic()
    # The fixed cost: a Python that imported the daemon's modules and does nothing.
    baseline = sleeper(60, imports=IMPORTS)
    time.sleep(4)
    fixed_kb = proc_stats(baseline.pid).rss_kb
    baseline.kill()
    baseline.wait()
    results = []
    for n in sizes:
        print(f"... {n} accounts", flush=True)
        results.append(run_size(n, args.concurrency, audit=not args.no_audit))
    base = results[0]
    for r in results:
        r["imports_baseline_mb"] = round(fixed_kb / MB, 1)
        r["kb_per_account_above_baseline"] = round(
            (r["peak_rss_mb"] * MB - fixed_kb) / r["accounts"], 1
        )
    rows = []
    for r in results:
        rows.append(
            [
                str(r["accounts"]),
                fmt(r["time_s"], 2),
                fmt(r["accounts_per_s"]),
                fmt(r["floor_s"], 2),
                f"{r['ratio_to_floor']:.2f}x",
                fmt(r["vault_per_account"]),
                f"{r['encord_per_account']:.1f}",
                fmt(r["daemon_cpu_ms_per_account"]),
                fmt(r["rss_at_start_mb"]),
                fmt(r["peak_rss_mb"]),
                f"{r['ms_per_account'] / base['ms_per_account']:.2f}x",
                fmt(r["kb_per_account_above_baseline"]),
            ]
        )
    print(
        table(
            f"Scale: all due at once, ROTATOR_MAX_CONCURRENCY={args.concurrency}",
            [
                "accounts",
                "time s",
                "acct/s",
                "floor s",
                "vs floor",
                "Vault req/acct",
                "Encord req/acct",
                "CPU ms/acct",
                "RSS start MB",
                "peak RSS MB",
                f"time/acct vs {base['accounts']}",
                "kB/acct above imports",
            ],
            rows,
        )
    )
    verdicts: dict[str, bool] = {}
    for r in results:
        if r["accounts"] == 1000:
            verdicts["1000_in_30s"] = r["time_s"] <= GOAL_SECONDS_1000
    if len(results) > 1:
        # Linear or better: memory per account above the bare-imports baseline does not grow
        # with N (it falls while fixed costs are being amortised).
        per_kb = [r["kb_per_account_above_baseline"] for r in results]
        verdicts["memory_linear"] = all(b <= a * 1.1 for a, b in pairwise(per_kb))
    verdicts["all_rotated"] = all(
        r["distinct_rotated"] == r["accounts"] == r["accounts_with_two_keys"]
        and r["check_failures"] == 0
        for r in results
    )
    print(
        "; ".join(f"{k}: {goal(v)}" for k, v in verdicts.items())
        + "; servers' CPU during the run: "
        + ", ".join(f"N={r['accounts']} {r['servers_cpu_s']}" for r in results)
    )
    path = write_results(
        "scale",
        {
            "elapsed_s": round(time.monotonic() - started, 1),
            "clock_offset_s": CLOCK_OFFSET,
            "goal_seconds_1000": GOAL_SECONDS_1000,
            "sizes": results,
            "verdicts": verdicts,
        },
    )
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
