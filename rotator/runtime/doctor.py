"""``rotator doctor``: what is wrong, found before a person has to guess. Read-only.

:func:`diagnose` runs every check and answers one :class:`Finding` per line, ``ok``, ``warn``
(works, but something is near or unusual) or ``fail`` (rotator cannot keep its promises):

- ``vault.reachable``: Vault answers at VAULT_ADDR;
- ``vault.token``: the token is valid (``auth/token/lookup-self``) and how long it has left;
- ``vault.mount``: ROTATOR_VAULT_MOUNT is a KV version 2 mount;
- ``vault.mount_settings``: its ``max_versions``, ``delete_version_after`` and
  ``cas_required`` keep rotator's promises (the start-up checks of
  :mod:`rotator.runtime.preflight`);
- ``vault.capabilities``: the token holds what the code needs on the paths rotator uses, as
  ``sys/capabilities-self`` tells (the grants of deploy/vault/rotator-policy.hcl), and not
  much more;
- per account (:mod:`rotator.runtime.doctor_account`): ``account.key`` (a key in Vault),
  ``encord.auth`` (it authenticates at Encord), ``encord.key_management`` (in ``api`` mode
  Encord lists the account's keys) and ``encord.clock`` (this host's clock against Encord's
  ``Date`` header).

A check that cannot run because an earlier one failed (no Vault, no token, no mount) is left
out: the failure says why. Nothing here writes to Vault or changes anything at Encord: the
Vault calls are reads (``sys/capabilities-self`` is a POST that only asks), the Encord calls
a signed whoami and the key list. Details never hold a token or a key.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from rotator.adapters.lease import LEASE_NAME
from rotator.adapters.vault import TokenInfo, VaultStore
from rotator.adapters.vault.introspect import capabilities, token_self
from rotator.core.errors import AccessDenied, ConfigError, RotatorError, StoreUnavailable
from rotator.core.intake import INCOMING
from rotator.core.state import STATE_NAME
from rotator.core.vocab import BEARER
from rotator.runtime.config import Settings, format_duration
from rotator.runtime.preflight import mount_problems
from rotator.runtime.render import human_duration

Status = Literal["ok", "warn", "fail"]

SHORT_TTL = timedelta(hours=1)
"""A fixed token (VAULT_TOKEN) with less than this left is worth a warning."""
UNRENEWABLE_TTL = timedelta(days=1)
"""A fixed token that cannot be renewed and has less than this left: a warning too."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One check's result: what was checked, how it went, and what to do about it."""

    check: str
    status: Status
    detail: str
    account: str | None = None
    hint: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"check": self.check, "status": self.status}
        if self.account is not None:
            out["account"] = self.account
        out["detail"] = self.detail
        if self.hint is not None:
            out["hint"] = self.hint
        return out


def diagnose(settings: Settings, store: VaultStore | None = None) -> list[Finding]:
    """Every check, in order (see the module's docstring); writes nothing."""
    from rotator.runtime.doctor_account import account_findings
    from rotator.runtime.wiring import open_store

    own = store is None
    store = open_store(settings) if store is None else store
    try:
        findings = list(vault_findings(store, settings))
        if any(f.status == "fail" and f.check in _VAULT_BASICS for f in findings):
            return findings
        for account in settings.accounts:
            findings += account_findings(settings, store, account)
        return findings
    finally:
        if own and store.session is not None:
            store.session.close()


_VAULT_BASICS = frozenset({"vault.reachable", "vault.token", "vault.mount"})


def vault_findings(store: VaultStore, settings: Settings) -> Iterator[Finding]:
    """Vault: reachable, the token, the mount, its settings, the token's capabilities."""
    try:
        info = token_self(store)
    except StoreUnavailable as exc:
        yield Finding("vault.reachable", "fail", str(exc), hint="check VAULT_ADDR")
        return
    except AccessDenied as exc:
        yield Finding("vault.reachable", "ok", "Vault answers at VAULT_ADDR")
        yield Finding("vault.token", "fail", str(exc), hint=_token_hint(settings))
        return
    except RotatorError as exc:
        yield Finding("vault.reachable", "fail", str(exc), hint="check VAULT_ADDR")
        return
    yield Finding("vault.reachable", "ok", "Vault answers at VAULT_ADDR")
    yield token_finding(info, settings)
    try:
        store.check()
    except RotatorError as exc:
        detail = "; ".join(exc.problems) if isinstance(exc, ConfigError) else str(exc)
        yield Finding("vault.mount", "fail", detail, hint="check ROTATOR_VAULT_MOUNT")
        return
    yield Finding("vault.mount", "ok", f"mount {store.mount!r} is KV version 2")
    yield from _mount_settings(store, settings)
    yield from capability_findings(store, settings)


def _token_hint(settings: Settings) -> str:
    return f"check {settings.vault.auth.credential}"


def token_finding(info: TokenInfo, settings: Settings) -> Finding:
    """Valid, and how long it has left: a fixed token that runs out soon is a warning (a
    login method logs in again by itself)."""
    policies = ", ".join(info.policies) or "none"
    if info.ttl <= 0:
        return Finding("vault.token", "ok", f"valid, never expires (policies: {policies})")
    left = timedelta(seconds=round(info.ttl))
    renew = "renewable" if info.renewable else "not renewable"
    detail = f"valid, expires in {human_duration(left)}, {renew} (policies: {policies})"
    auth = settings.vault.auth
    if not auth.static:
        return Finding("vault.token", "ok", f"{detail}; {auth.method} logs in again")
    if left < SHORT_TTL or (not info.renewable and left < UNRENEWABLE_TTL):
        return Finding(
            "vault.token",
            "warn",
            f"{detail}: rotator stops working when it runs out",
            hint="use a periodic token (bao token create -policy=rotator -period=24h), "
            "VAULT_TOKEN_FILE kept fresh by an agent, or a login method (ROTATOR_VAULT_AUTH)",
        )
    return Finding("vault.token", "ok", detail)


def _mount_settings(store: VaultStore, settings: Settings) -> Iterator[Finding]:
    check = "vault.mount_settings"
    try:
        kv = store.kv_settings()
        problems = mount_problems(store, settings) if kv is not None else []
    except RotatorError as exc:
        yield Finding(check, "fail", str(exc))
        return
    if kv is None:
        yield Finding(
            check,
            "warn",
            f"cannot read {store.mount}/config: max_versions and delete_version_after unchecked",
            hint=f"grant read on {store.mount}/config (the shipped policy does)",
        )
        return
    for problem in problems:
        yield Finding(check, "fail", problem.removeprefix("ROTATOR_VAULT_MOUNT: "))
    if not problems:
        after = kv.delete_version_after
        yield Finding(
            check,
            "ok",
            f"max_versions={kv.max_versions or '0 (10)'}, delete_version_after="
            f"{format_duration(after) if after else 'never'}, cas_required="
            f"{str(kv.cas_required).lower()} (every write is check-and-set anyway)",
        )


# --- capabilities ------------------------------------------------------------------------

_KV_WRITE = frozenset({"create", "read", "update"})


def needed_capabilities(store: VaultStore, settings: Settings) -> dict[str, tuple[str, ...]]:
    """What the code needs, path by path (deploy/vault/rotator-policy.hcl grants it)."""
    names = [*settings.key_kinds, *([BEARER] if BEARER in settings.credentials else [])]
    names += [STATE_NAME, LEASE_NAME]
    need: dict[str, tuple[str, ...]] = {
        f"{store.mount}/config": ("read",),
        "auth/token/renew-self": ("update",),
    }
    for account in settings.accounts:
        for name in names:
            rel = "/".join(p for p in (store.prefix, account.name, name) if p)
            need[f"{store.mount}/data/{rel}"] = tuple(sorted(_KV_WRITE))
            need[f"{store.mount}/destroy/{rel}"] = ("update",)
        # A key a person hands over (core/intake.py): read, then every version destroyed.
        rel = "/".join(p for p in (store.prefix, account.name, INCOMING) if p)
        need[f"{store.mount}/data/{rel}"] = ("read",)
        need[f"{store.mount}/destroy/{rel}"] = ("update",)
    return need


def capability_findings(store: VaultStore, settings: Settings) -> Iterator[Finding]:
    """Missing grants on data/ or destroy/ fail; on config or renew-self they warn (rotator
    works without, checking less or not renewing); any grant on a consumer path's
    metadata, or a root token, warns as more than rotator needs."""
    check = "vault.capabilities"
    need = needed_capabilities(store, settings)
    metadata = {
        f"{store.mount}/metadata/{'/'.join(p for p in (store.prefix, a.name, kind) if p)}"
        for a in settings.accounts
        for kind in settings.key_kinds
    }
    try:
        held = capabilities(store, [*need, *metadata])
    except RotatorError as exc:
        yield Finding(check, "fail", str(exc))
        return
    if held is None:
        yield Finding(
            check,
            "warn",
            "the token may not ask sys/capabilities-self: its grants are unchecked",
            hint="grant update on sys/capabilities-self (the shipped policy does)",
        )
        return
    found = list(_capability_problems(need, held, metadata))
    yield from found
    if not found:
        yield Finding(check, "ok", "every capability rotator needs, on every path it uses")


def _capability_problems(
    need: dict[str, tuple[str, ...]], held: dict[str, frozenset[str]], metadata: set[str]
) -> Iterator[Finding]:
    check = "vault.capabilities"
    if any("root" in caps for caps in held.values()):
        yield Finding(
            check,
            "warn",
            "a root token: far more than rotator needs",
            hint="use a token with deploy/vault/rotator-policy.hcl only",
        )
        return
    for path, wanted in need.items():
        missing = [c for c in wanted if c not in held.get(path, frozenset())]
        if not missing:
            continue
        soft = path.endswith("/config") or path.startswith("auth/")
        yield Finding(
            check,
            "warn" if soft else "fail",
            f"missing {', '.join(missing)} on {path}",
            hint="grant what deploy/vault/rotator-policy.hcl grants",
        )
    for path in sorted(metadata):
        extra = held.get(path, frozenset()) - {"deny"}
        if extra:
            yield Finding(
                check,
                "warn",
                f"{', '.join(sorted(extra))} on {path}: more than rotator needs (metadata "
                "access can delete every version of a consumer path)",
                hint="grant what deploy/vault/rotator-policy.hcl grants, no metadata/",
            )
