"""Checks made before the daemon takes on any account: settings of the Vault mount that would
break rotator's promises are refused at start-up (exit 2, one line naming the setting), not
discovered later as keys that vanished.

- ``max_versions`` 1 keeps only the newest version: consumers could not read the previous
  key during ``ROTATOR_GRACE``;
- ``delete_version_after`` shorter than ``ROTATOR_KEY_TTL`` deletes the newest version of a
  consumer path while its key is still current;
- ``cas_required`` is fine: every write rotator makes is check-and-set already.

The mount's settings (``{mount}/config``) and, where the token may read them, the paths' own
(their metadata, which overrides the mount's) are read. A token that may read neither gets a
warning (``vault.kv_settings_unreadable``) naming what to grant, and rotator carries on.
"""

from __future__ import annotations

from collections.abc import Iterator

import structlog

from rotator.adapters.vault import VaultStore
from rotator.adapters.vault.kv import KvSettings
from rotator.core.errors import ConfigError
from rotator.core.state import STATE_NAME
from rotator.core.vocab import BEARER, KEY_KINDS
from rotator.runtime.config import Settings, format_duration

log = structlog.get_logger("rotator.preflight")


def kv_problems(kv: KvSettings, settings: Settings, *, where: str) -> list[str]:
    """What in ``kv`` (the settings of ``where``) breaks a promise, one line each."""
    problems: list[str] = []
    if kv.max_versions == 1:
        problems.append(
            f"ROTATOR_VAULT_MOUNT: max_versions=1 on {where} keeps only the newest version, so "
            f"consumers could not read the previous key during ROTATOR_GRACE "
            f"({format_duration(settings.grace)}); set max_versions to 2 or more (0: Vault's "
            "default of 10)"
        )
    after = kv.delete_version_after
    if after.total_seconds() > 0 and after < settings.key_ttl:
        problems.append(
            f"ROTATOR_VAULT_MOUNT: delete_version_after={format_duration(after)} on {where} is "
            f"shorter than ROTATOR_KEY_TTL ({format_duration(settings.key_ttl)}): the newest "
            "version of a consumer path would be deleted while its key is still current; set it "
            "to 0 or at least ROTATOR_KEY_TTL"
        )
    return problems


def _paths(settings: Settings) -> Iterator[str]:
    kinds: list[str] = [kind for kind in KEY_KINDS if kind in settings.credentials]
    if BEARER in settings.credentials:
        kinds.append(BEARER)
    for account in settings.accounts:
        for name in (*kinds, STATE_NAME):
            yield f"{account.name}/{name}"


def mount_problems(store: VaultStore, settings: Settings) -> list[str]:
    """Read the mount's and the paths' KV settings; the lines :func:`kv_problems` finds."""
    mount = store.kv_settings()
    where = f"mount {store.mount!r}"
    if mount is None:
        log.warning(
            "vault.kv_settings_unreadable",
            mount=store.mount,
            hint=f"grant read on {store.mount}/config so rotator can check max_versions and "
            "delete_version_after at start-up",
        )
        problems: list[str] = []
    else:
        problems = kv_problems(mount, settings, where=where)
    for rel in _paths(settings):
        own = store.kv_settings(rel)
        if own is None:
            continue  # not written yet, or metadata not readable (least privilege)
        effective = KvSettings(
            max_versions=own.max_versions or (mount.max_versions if mount else 0),
            cas_required=own.cas_required or bool(mount and mount.cas_required),
            delete_version_after=own.delete_version_after
            or (mount.delete_version_after if mount else own.delete_version_after),
        )
        path = f"{store.mount}/{store.prefix}/{rel}".replace("//", "/")
        found = kv_problems(effective, settings, where=f"path {path!r}")
        problems += [p for p in found if p not in problems]
    return problems


def check_mount(store: VaultStore, settings: Settings) -> None:
    """Raise :class:`ConfigError` listing every problem :func:`mount_problems` finds."""
    problems = mount_problems(store, settings)
    if problems:
        raise ConfigError(problems)
