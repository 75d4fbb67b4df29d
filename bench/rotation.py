"""Benchmark 2, one rotation: wall time and round trips of one rotation, against the floor.

``python -m bench.rotation [--reps N]``

A rotation here is one daemon check (``Daemon.check_account``, with its lease and fenced
writes, in-process) of an account whose key is due (``KEY_TTL=2s``, ``ROTATE_BEFORE=1s``)
and whose previous key's grace (1 ms) is over: it revokes the previous key, then intent,
register, verify, promote. Two configurations: the ssh-key alone, and with the bearer token
(the default), which a rotation re-mints.

The floor is a minimal client (:class:`bench.common.Floor`: hvac + one keep-alive httpx
client) issuing the very same round trips, in the same order, back to back, on an account of
its own. The sequence is recorded from rotator itself (store wrapper + transport wrapper) in
an untimed run, and the benchmark checks that both sides made the same number of Vault and
Encord round trips (Vault counted by a store wrapper, Encord at the sandbox).

Goal: rotator ≤ 1.5 × the floor.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench.common import (
    Floor,
    Op,
    Stack,
    account_names,
    check,
    daemon_for,
    daemon_like_logs,
    describe_ops,
    encord_total,
    fmt,
    goal,
    median,
    op_counts,
    release,
    table,
    write_results,
)

GOAL_RATIO = 1.5
GRACE_WAIT = 1.1  # the 1 ms grace is rounded up to the record's whole second
# Every key is due one second after it was issued; nothing else is due.
DUE = {
    "ROTATOR_KEY_TTL": "2s",
    "ROTATOR_ROTATE_BEFORE": "1s",
    "ROTATOR_GRACE": "1ms",
    "ROTATOR_CHECK_INTERVAL": "1s",
    "ROTATOR_JITTER": "0s",
}


def bench_variant(
    stack: Stack, label: str, credentials: str, rot: str, flo: str, reps: int
) -> dict[str, Any]:
    env_r = stack.env("bench-rot", [rot], ROTATOR_CREDENTIALS=credentials, **DUE)
    env_f = stack.env("bench-floor", [flo], ROTATOR_CREDENTIALS=credentials, **DUE)
    stack.bootstrap(env_r)
    stack.bootstrap(env_f)
    settings = stack.settings(env_r)

    # Untimed: the first rotation (nothing to revoke yet) and one steady-state rotation,
    # both recorded in order, Encord calls included.
    recording: list[Op] = []
    recorder = daemon_for(settings, recording, record_encord=True)
    time.sleep(GRACE_WAIT)  # the bootstrap key falls due a second after it was made
    outcomes = check(recorder, rot)
    first = list(recording)
    time.sleep(GRACE_WAIT)
    recording.clear()
    outcomes += check(recorder, rot)
    steady = list(recording)
    release(recorder)
    if outcomes.count("rotated") != 2 or "revoked" not in outcomes:
        raise RuntimeError(f"{label}: the recorded checks did {outcomes}")

    floor = Floor(stack.bao.addr, stack.bao.root_token, "bench-floor", stack.sandbox.url)
    account = floor.open_account(flo, stack.key_file(flo).read_text(encoding="utf-8"))
    for ops in (first, steady):
        floor.prepare(account)
        floor.run(account, ops)

    # Timed: the daemon's check as the daemon builds it (no transport wrapper), then the floor.
    vault_ops: list[Op] = []
    daemon = daemon_for(settings, vault_ops)
    r_ms: list[float] = []
    f_ms: list[float] = []
    r_counts: list[dict[str, int]] = []
    f_counts: list[dict[str, int]] = []
    expected = sorted(op.kind for op in steady if op.peer == "encord")
    for _ in range(reps):
        time.sleep(GRACE_WAIT)
        vault_ops.clear()
        stack.sandbox.reset()
        start = time.perf_counter()
        outcomes = check(daemon, rot)
        r_ms.append((time.perf_counter() - start) * 1000)
        if "rotated" not in outcomes or "revoked" not in outcomes:
            raise RuntimeError(f"{label}: unexpected outcomes {outcomes}")
        r_counts.append(
            {"vault": len(vault_ops), "encord": encord_total(stack.sandbox.counts())}
        )

        floor.prepare(account)
        stack.sandbox.reset()
        start = time.perf_counter()
        floor.run(account, steady)
        f_ms.append((time.perf_counter() - start) * 1000)
        f_counts.append(
            {"vault": op_counts(steady)["vault"], "encord": encord_total(stack.sandbox.counts())}
        )
    floor.close()

    same = all(r == f for r, f in zip(r_counts, f_counts, strict=True)) and all(
        c["encord"] == len(expected) for c in r_counts
    )
    r_med, f_med = median(r_ms), median(f_ms)
    return {
        "variant": label,
        "credentials": credentials,
        "reps": reps,
        "rotator_ms": r_ms,
        "floor_ms": f_ms,
        "rotator_median_ms": round(r_med, 2),
        "floor_median_ms": round(f_med, 2),
        "ratio": round(r_med / f_med, 2),
        "goal_ratio": GOAL_RATIO,
        "goal_met": r_med / f_med <= GOAL_RATIO,
        "round_trips_rotator": r_counts[0],
        "round_trips_floor": f_counts[0],
        "same_round_trips": same,
        "sequence": describe_ops(steady),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rotation", description=__doc__)
    parser.add_argument("--reps", type=int, default=20, help="timed rotations per variant")
    args = parser.parse_args(argv)
    daemon_like_logs()
    variants = [("ssh-key", "ssh-key"), ("ssh-key + bearer token", "ssh-key,bearer-token")]
    rots = account_names("rr", len(variants))
    flos = account_names("rf", len(variants))
    started = time.monotonic()
    with Stack(groups={"rr": len(variants), "rf": len(variants)}) as stack:
        results = [
            bench_variant(stack, label, creds, rot, flo, args.reps)
            for (label, creds), rot, flo in zip(variants, rots, flos, strict=True)
        ]
    rows = [
        [
            r["variant"],
            fmt(r["rotator_median_ms"]),
            fmt(r["floor_median_ms"]),
            f"{r['ratio']:.2f}x",
            f"{r['round_trips_rotator']['vault']} / {r['round_trips_floor']['vault']}",
            f"{r['round_trips_rotator']['encord']} / {r['round_trips_floor']['encord']}",
            "yes" if r["same_round_trips"] else "NO",
            goal(r["goal_met"]),
        ]
        for r in results
    ]
    print(
        table(
            f"One rotation (median of {args.reps}; revoke previous key + rotate)",
            [
                "variant",
                "rotator ms",
                "floor ms",
                "ratio",
                "Vault RT rot/floor",
                "Encord RT rot/floor",
                "same RTs",
                f"goal <= {GOAL_RATIO}x",
            ],
            rows,
        )
    )
    for r in results:
        print(f"{r['variant']}: {r['sequence']}")
    path = write_results(
        "rotation", {"elapsed_s": round(time.monotonic() - started, 1), "variants": results}
    )
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
