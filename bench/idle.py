"""Benchmark 1, idle cost: memory and CPU of a daemon watching 10 accounts with nothing due.

``python -m bench.idle [--window S] [--warmup S]``

Two daemons (``python -m rotator run``, default settings otherwise) run side by side, each
with 10 bootstrapped accounts whose keys are fresh (nothing due):

- ``5s checks``: ``ROTATOR_CHECK_INTERVAL=5s`` (jitter 1s), so the window holds about 12
  checks of each account: the cost of checking;
- ``default (5m)``: the default 5-minute interval, so the window holds no check at all: the
  cost of waiting (busy polling would show here).

After a warm-up (every account's first check done, its bearer token minted), each process is
measured over the same window (60 s): RSS (sampled every second; and the peak, VmHWM),
CPU seconds (utime + stime, all threads, from /proc/<pid>/stat) per minute, wake-ups per
second (context switches, all threads), and the Vault and Encord requests it made (OpenBao's
audit log, by token; the sandbox's counts, by account group).

Baselines measured in the same window: ``python -c "import time; time.sleep(...)"`` and the
same after importing rotator's daemon modules. Goals: ≤ 60 MB RSS and ≤ 0.5 CPU-seconds per
minute for the 5s-check daemon; no busy polling.
"""

from __future__ import annotations

import argparse
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any

from bench.common import (
    IMPORTS,
    MB,
    DaemonProc,
    ProcStats,
    RssSampler,
    Stack,
    account_names,
    encord_total,
    fmt,
    goal,
    proc_stats,
    quiet_logs,
    sleeper,
    table,
    write_results,
)

GOAL_RSS_MB = 60.0
GOAL_CPU_S_PER_MIN = 0.5
ACCOUNTS = 10


@dataclass
class Watched:
    label: str
    pid: int
    group: str | None = None  # sandbox account group (daemons only)
    token: str | None = None  # the audit display name of its Vault token (daemons only)
    before: ProcStats | None = None
    after: ProcStats | None = None
    sampler: RssSampler | None = None
    lines_before: int = 0
    lines_after: int = 0


class Minted:
    """Counts ``bearer.minted`` lines: every account's first check is done when it is 10."""

    def __init__(self) -> None:
        self.count = 0
        self.done = threading.Event()

    def __call__(self, line: str) -> None:
        if '"bearer.minted"' in line:
            self.count += 1
            if self.count >= ACCOUNTS:
                self.done.set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.idle", description=__doc__)
    parser.add_argument("--window", type=float, default=60.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds after first checks")
    args = parser.parse_args(argv)
    quiet_logs()
    window = float(args.window)
    started = time.monotonic()
    with Stack(groups={"ia": ACCOUNTS, "ib": ACCOUNTS}, audit=True) as stack:
        configs = [
            ("daemon, 10 accounts, 5s checks", "ia", {"ROTATOR_CHECK_INTERVAL": "5s",
                                                       "ROTATOR_JITTER": "1s"}),
            ("daemon, 10 accounts, default (5m)", "ib", {}),
        ]
        daemons: list[tuple[Watched, DaemonProc, Minted]] = []
        sleepers: list[subprocess.Popen[bytes]] = []
        for label, group, extra in configs:
            names = account_names(group, ACCOUNTS)
            token = stack.token(f"idle-{group}")
            env = stack.env(f"idle-{group}", names, **extra)
            stack.bootstrap(env)
            env["VAULT_TOKEN"] = token
            minted = Minted()
            proc = DaemonProc(env, stack.home, on_line=minted)
            watched = Watched(label, proc.pid, group=group, token=f"token-idle-{group}")
            daemons.append((watched, proc, minted))
        try:
            for watched, proc, minted in daemons:
                proc.wait_started(30)
                if not minted.done.wait(60):
                    raise RuntimeError(f"{watched.label}: first checks not done:\n{proc.explain()}")
            sleep_s = args.warmup + window + 20
            sleepers = [sleeper(sleep_s), sleeper(sleep_s, imports=IMPORTS)]
            baselines = [
                Watched("baseline: python sleep", sleepers[0].pid),
                Watched("baseline: python + rotator imports", sleepers[1].pid),
            ]
            time.sleep(args.warmup)

            watched_all = [w for w, _, _ in daemons] + baselines
            mark = stack.vault_mark()
            stack.sandbox.reset()
            for w, proc, _ in daemons:
                w.lines_before = proc.lines
            for w in watched_all:
                w.before = proc_stats(w.pid)
                w.sampler = RssSampler(w.pid, interval=1.0).start()
            time.sleep(window)
            for w in watched_all:
                w.after = proc_stats(w.pid)
                assert w.sampler is not None
                w.sampler.stop()
            for w, proc, _ in daemons:
                w.lines_after = proc.lines
            vault = stack.vault_counts(mark)
            encord = stack.sandbox.counts()
        finally:
            codes = [proc.stop() for _, proc, _ in daemons]
            for child in sleepers:
                child.kill()
                child.wait()

    per_min = 60.0 / window
    entries: list[dict[str, Any]] = []
    for w in watched_all:
        assert w.before is not None and w.after is not None and w.sampler is not None
        entry: dict[str, Any] = {
            "process": w.label,
            "rss_mean_mb": round(w.sampler.mean_kb / MB, 1),
            "rss_max_mb": round(w.sampler.max_kb / MB, 1),
            "vm_hwm_mb": round(w.after.hwm_kb / MB, 1),
            "cpu_s_per_min": round((w.after.cpu_s - w.before.cpu_s) * per_min, 3),
            "wakeups_per_s": round((w.after.switches - w.before.switches) / window, 1),
            "threads": w.after.threads,
        }
        if w.group is not None and w.token is not None:
            entry["vault_req_per_min"] = round(sum(vault.get(w.token, {}).values()) * per_min)
            entry["encord_req_per_min"] = round(encord_total(encord, f"sa-{w.group}") * per_min)
            entry["log_lines_in_window"] = w.lines_after - w.lines_before
        entries.append(entry)
    daemon_a, daemon_b, sleep_base, import_base = entries
    verdicts = {
        "rss": daemon_a["vm_hwm_mb"] <= GOAL_RSS_MB and daemon_b["vm_hwm_mb"] <= GOAL_RSS_MB,
        "cpu": daemon_a["cpu_s_per_min"] <= GOAL_CPU_S_PER_MIN,
        # No busy polling: with no check due, the daemon wakes about as rarely as possible.
        "no_busy_polling": daemon_b["cpu_s_per_min"] <= 0.1 and daemon_b["wakeups_per_s"] <= 10,
    }
    rows = [
        [
            e["process"],
            fmt(e["rss_mean_mb"]),
            fmt(e["vm_hwm_mb"]),
            f"{e['rss_mean_mb'] / sleep_base['rss_mean_mb']:.1f}x",
            fmt(e["cpu_s_per_min"], 3),
            fmt(e["wakeups_per_s"]),
            str(e.get("vault_req_per_min", "-")),
            str(e.get("encord_req_per_min", "-")),
        ]
        for e in entries
    ]
    print(
        table(
            f"Idle cost over {window:.0f} s (after warm-up)",
            [
                "process",
                "RSS MB",
                "peak MB",
                "RSS vs sleep",
                "CPU s/min",
                "wakeups/s",
                "Vault req/min",
                "Encord req/min",
            ],
            rows,
        )
    )
    print(
        f"goal RSS <= {GOAL_RSS_MB:.0f} MB (peak): {goal(verdicts['rss'])}; "
        f"goal CPU <= {GOAL_CPU_S_PER_MIN} s/min (5s checks): {goal(verdicts['cpu'])}; "
        f"no busy polling (default interval: <= 0.1 CPU s/min, <= 10 wakeups/s): "
        f"{goal(verdicts['no_busy_polling'])}"
    )
    print(
        f"daemon RSS above the imports baseline: "
        f"{daemon_a['rss_mean_mb'] - import_base['rss_mean_mb']:.1f} MB (5s checks), "
        f"{daemon_b['rss_mean_mb'] - import_base['rss_mean_mb']:.1f} MB (default)"
    )
    path = write_results(
        "idle",
        {
            "elapsed_s": round(time.monotonic() - started, 1),
            "window_s": window,
            "accounts": ACCOUNTS,
            "processes": entries,
            "goals": {"rss_mb": GOAL_RSS_MB, "cpu_s_per_min": GOAL_CPU_S_PER_MIN},
            "verdicts": verdicts,
            "daemon_exit_codes": codes,
        },
    )
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
