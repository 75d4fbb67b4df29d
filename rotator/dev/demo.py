"""``rotator demo``: an embedded OpenBao dev server, the Encord sandbox and the daemon.

Seconds-scale timings (key TTL 12s, rotate 6s before expiry, 3s grace, checks every second)
so several issue -> verify -> store -> revoke cycles show in the logs within 30 s. A consumer
thread plays a pipeline: it reads the newest key from Vault every 2 s and calls the sandbox
with it. Ctrl-C (or ``--duration``) stops all three cleanly, and the temporary folder the
demo made (it holds the dev Vault's root token and the sandbox's key) is removed; a folder given
with ``--workdir`` is kept. The demo's own lines show key ids short, as ``rotator status`` does.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import structlog

from rotator.adapters.encord.client import EncordClient, RetryPolicy
from rotator.adapters.encord.signing import EncordAuth
from rotator.core import admin, keys
from rotator.core.errors import RotatorError
from rotator.dev.openbao import OpenBaoDev
from rotator.dev.sandbox import Sandbox
from rotator.runtime import logs
from rotator.runtime.config import Settings, from_env
from rotator.runtime.daemon import Daemon, stop_on_signals
from rotator.runtime.render import short_id
from rotator.runtime.wiring import open_store, wait_for_vault

log = structlog.get_logger("rotator.demo")

ACCOUNT, ACCOUNT_HASH = "demo", "sa-demo"
JOURNAL = "sandbox-journal.jsonl"

DEMO_ENV = {
    "ROTATOR_ACCOUNTS": f"{ACCOUNT}={ACCOUNT_HASH}",
    "ROTATOR_CREDENTIALS": "ssh-key,bearer-token",
    "ROTATOR_KEY_TTL": "12s",
    "ROTATOR_ROTATE_BEFORE": "6s",
    "ROTATOR_GRACE": "3s",
    "ROTATOR_BEARER_TTL": "8s",
    "ROTATOR_CHECK_INTERVAL": "1s",
    "ROTATOR_JITTER": "0s",
    "ROTATOR_HTTP_ADDR": "127.0.0.1:0",
}


def _consumer(vault_store: object, domain: str, stop: threading.Event) -> None:
    """A pipeline: read the newest key from Vault, call Encord with it."""
    from rotator.adapters.vault import VaultStore

    assert isinstance(vault_store, VaultStore)
    while not stop.wait(2.0):
        try:
            v = vault_store.read(f"{ACCOUNT}/ssh-key")
            if v is None or v.data is None:
                continue
            kp = keys.load_private(str(v.data["private_key"]))
            with EncordClient(domain, EncordAuth(kp), retry=RetryPolicy(attempts=1)) as client:
                client.whoami()
            log.info(
                "consumer.authenticated", key_id=short_id(kp.key_id), vault_version=v.version
            )
        except RotatorError as exc:
            log.error("consumer.rejected", error=str(exc))


def _summary(journal: Path) -> dict[str, int]:
    counts: Counter[str] = Counter()
    max_keys = 0
    if journal.exists():
        for line in journal.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            counts[entry.get("event", "?")] += 1
            max_keys = max(max_keys, int(entry.get("key_count") or 0))
    return {
        "keys_added": counts["key.added"],
        "keys_deleted": counts["key.deleted"],
        "auth_failures": counts["auth.failed"],
        "max_keys_held": max_keys,
    }


def _seed(bootstrap_file: Path) -> dict[str, Any]:
    """The sandbox's one account, its bootstrap key written to ``bootstrap_file``."""
    return {
        "service_accounts": [
            {
                "name": ACCOUNT,
                "hash": ACCOUNT_HASH,
                "key_cap": 5,
                "bootstrap_key_file": str(bootstrap_file),
            }
        ]
    }


def _keep_root_token(bao: OpenBaoDev, work: Path) -> Path:
    """Mask OpenBao's root token in logs; write it (0600) to a file a person can use."""
    logs.register_secret(bao.root_token)
    token_file = work / "vault-token"
    token_file.write_text(bao.root_token, encoding="utf-8")
    token_file.chmod(0o600)
    return token_file


def _settings(bao: OpenBaoDev, sandbox: Sandbox) -> Settings:
    """The demo's timings (:data:`DEMO_ENV`) pointed at this OpenBao and this sandbox."""
    env = dict(DEMO_ENV)
    env.update(
        VAULT_ADDR=bao.addr,
        VAULT_TOKEN=bao.root_token,
        ENCORD_DOMAIN=sandbox.url,
        ROTATOR_LOG_FORMAT=os.environ.get("ROTATOR_LOG_FORMAT", "auto"),
    )
    return from_env(env)


def _announce(bao: OpenBaoDev, sandbox: Sandbox, token_file: Path, work: Path) -> None:
    """``demo.ready``: where everything is, and how to look at the key in Vault."""
    log.info(
        "demo.ready",
        vault_addr=bao.addr,
        vault_login_file=str(token_file),
        sandbox_url=sandbox.url,
        workdir=str(work),
        hint=f"VAULT_ADDR={bao.addr} VAULT_TOKEN=$(cat {token_file}) "
        f"bao kv get secret/encord/{ACCOUNT}/ssh-key",
    )


def _bootstrap(daemon: Daemon, bootstrap_file: Path) -> None:
    """Adopt the sandbox's bootstrap key as the account's current key (``demo.bootstrapped``)."""
    with structlog.contextvars.bound_contextvars(account=ACCOUNT):
        text = bootstrap_file.read_text(encoding="utf-8")
        record = admin.bootstrap(daemon.engines[ACCOUNT].context, text)
    log.info("demo.bootstrapped", key_id=short_id(record.key_id))


def run_demo(*, duration: float = 0.0, workdir: str | None = None) -> int:
    """Run the demo until Ctrl-C/SIGTERM, or for ``duration`` seconds when > 0. A folder it
    makes itself (no ``workdir``) is removed at the end."""
    work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="rotator-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        return _run(work, duration)
    finally:
        summary = _summary(work / JOURNAL)
        if workdir is None:
            shutil.rmtree(work, ignore_errors=True)
        log.info("demo.finished", **summary, workdir_removed=workdir is None)


def _run(work: Path, duration: float) -> int:
    """The demo in ``work``, until stopped."""
    stop = stop_on_signals("demo.signal")

    bao = OpenBaoDev(log_path=str(work / "openbao.log"))
    bootstrap_file = work / "bootstrap.key"
    journal = work / JOURNAL
    sandbox = Sandbox(_seed(bootstrap_file), journal_path=journal)
    daemon: Daemon | None = None
    consumer: threading.Thread | None = None
    try:
        bao.start()
        token_file = _keep_root_token(bao, work)
        sandbox.start()
        settings = _settings(bao, sandbox)
        _announce(bao, sandbox, token_file, work)
        store = open_store(settings)
        wait_for_vault(store)
        daemon = Daemon(settings, store=store)
        _bootstrap(daemon, bootstrap_file)
        consumer = threading.Thread(
            target=_consumer, args=(store, sandbox.url, stop), name="consumer", daemon=True
        )
        consumer.start()
        daemon.start()
        stop.wait(duration if duration > 0 else None)
        return 0
    except RotatorError as exc:
        log.error("demo.failed", error_type=type(exc).__name__, error=str(exc))
        return 1
    finally:
        stop.set()
        if daemon is not None:
            daemon.stop(reason="demo_ending")
        if consumer is not None:
            consumer.join(timeout=5)
        sandbox.stop()
        bao.stop()
