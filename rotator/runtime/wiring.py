"""Wiring: what builds what, from :class:`~rotator.runtime.config.Settings` to the Vault store,
the Encord registry factory, the policy, one engine per account, the per-account leases and
the metrics.

The composition root: the daemon (:mod:`rotator.runtime.daemon`), the one-shot commands of
:mod:`rotator.cli` and the demo build their parts here. Nothing here schedules, runs a check or
keeps state; :func:`wait_for_vault` is the one function that waits (for Vault at start-up).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import timedelta

import httpx

from rotator.adapters.encord.registry import registry_factory
from rotator.adapters.lease import FencedStore, Lease, fenced_registries
from rotator.adapters.notify import Notifier
from rotator.adapters.vault import VaultSession, VaultStore
from rotator.adapters.vault.clock import VAULT_CLOCK
from rotator.core.engine import Engine
from rotator.core.errors import StoreUnavailable
from rotator.core.policy import Policy
from rotator.core.ports import NO_NOTICES, Notices, RegistryFactory, SecretStore
from rotator.core.vocab import BEARER
from rotator.runtime import logs
from rotator.runtime.config import Settings
from rotator.runtime.metrics import Metrics

STARTUP_DEADLINE = 12.0  # seconds to wait for Vault at start-up (the promise is < 15 s)


def policy_from(settings: Settings) -> Policy:
    """The rotation policy the settings describe (the same for every account)."""
    return Policy(
        key_ttl=settings.key_ttl,
        rotate_before=settings.rotate_before,
        grace=settings.grace,
        key_cap=settings.key_cap,
        kinds=settings.key_kinds,
        bearer=BEARER in settings.credentials,
        bearer_ttl=settings.bearer_ttl,
        check_interval=settings.check_interval,
        jitter=settings.jitter,
        instance=settings.instance,
        window=settings.rotation_window,
    )


def open_store(settings: Settings) -> VaultStore:
    """A store on a :class:`VaultSession` (ROTATOR_VAULT_AUTH); it logs in on first use,
    which :func:`wait_for_vault` makes happen at start-up."""
    v = settings.vault
    return VaultSession(v).store(mount=v.mount, prefix=v.prefix)


def wait_for_vault(store: VaultStore, deadline: float = STARTUP_DEADLINE) -> None:
    """Vault answers and accepts the token, or raise (within ``deadline`` seconds).

    An unreachable Vault is retried until the deadline (it may be starting next to us); a
    refused token or a wrong mount is final at once.
    """
    end = time.monotonic() + deadline
    delay = 0.25
    while True:
        try:
            store.check()
            return
        except StoreUnavailable:
            if time.monotonic() + delay >= end:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def make_factory(settings: Settings) -> RegistryFactory:
    """Encord registries for the engines: key management over the API, or by a person;
    each account's at its own domain (region) when it names one, else at ENCORD_DOMAIN."""
    return registry_factory(
        settings.encord_domain,
        domains={a.hash: a.domain for a in settings.accounts if a.domain},
        timeout=httpx.Timeout(10.0, connect=5.0),
        manual=settings.registrar == "manual",
        pooled=True,
    )


def make_engines(
    settings: Settings,
    store: SecretStore,
    factory: RegistryFactory,
    *,
    sleep: Callable[[float], None] = time.sleep,
    leases: Mapping[str, Lease] | None = None,
    notices: Notices = NO_NOTICES,
) -> dict[str, Engine]:
    """One engine per account; with ``leases``, each engine's writes to Vault and changes at
    Encord are fenced by its account's lease; ``notices`` tells a person what needs one."""
    policy = policy_from(settings)
    return {
        a.name: Engine(
            account=a,
            store=FencedStore(store, leases[a.name]) if leases else store,
            registry_factory=fenced_registries(factory, leases[a.name]) if leases else factory,
            policy=policy,
            sleep=sleep,
            # An idle check re-reads the consumer paths (to catch hand edits) every tenth
            # interval or 15 minutes, whichever is sooner, not every time.
            consumer_recheck=min(10 * settings.check_interval, timedelta(minutes=15)),
            notices=notices,
        )
        for a in settings.accounts
    }


def make_notifier(settings: Settings) -> Notifier | None:
    """The sender of messages to ``ROTATOR_NOTIFY_URL`` (None when unset): bounded in time,
    retried a little, on a thread of its own. Close it at shutdown."""
    if settings.notify_url is None:
        return None
    return Notifier(settings.notify_url)


def make_leases(settings: Settings, store: SecretStore, *, holder: str) -> dict[str, Lease]:
    """One lease per account, held in Vault by ``holder``: with several replicas running, it
    decides which one works on an account. None is held while this host's clock is off
    Vault's (as its answers' ``Date`` header tells) by more than the leases absorb."""
    return {
        a.name: Lease(store, a.name, holder=holder, ttl=settings.lease_ttl, offset=VAULT_CLOCK)
        for a in settings.accounts
    }


def make_metrics(settings: Settings) -> Metrics:
    """The daemon's metrics, with a zeroed series for every account and rotated key kind."""
    return Metrics(
        [a.name for a in settings.accounts],
        key_cap=settings.key_cap,
        kinds=settings.key_kinds,
    )


def register_settings_secrets(settings: Settings) -> None:
    """Tell the log redactor the secret values this process was given."""
    for value in settings.vault.secret_values:
        logs.register_secret(value)
    if settings.notify_url is not None:  # a webhook's path is its credential
        logs.register_secret(settings.notify_url.url)
