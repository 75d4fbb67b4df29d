"""Where and how to reach Vault: :class:`VaultSettings`, a frozen value.

:mod:`rotator.runtime.config` builds it from the environment; tests build it directly. It
lives with the adapter that uses it, so the adapter never imports the runtime.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from rotator.adapters.vault.auth import TokenLogin, VaultAuth


@dataclass(frozen=True, slots=True)
class VaultSettings:
    """Where and how to reach Vault (``VAULT_*`` follow Vault's own conventions)."""

    addr: str
    """``VAULT_ADDR``: base URL, no trailing slash. Required: there is no safe default."""
    token: str = field(default="", repr=False)
    """``VAULT_TOKEN`` (or the stripped contents of ``VAULT_TOKEN_FILE``) for token auth;
    empty with the other methods, which obtain their token by logging in. Never shown."""
    cacert: str | None = None
    """``VAULT_CACERT``: CA bundle file to verify Vault's TLS certificate; None = system CAs."""
    namespace: str | None = None
    """``VAULT_NAMESPACE``: Vault Enterprise / OpenBao namespace; None = root namespace."""
    timeout: timedelta = timedelta(seconds=5)
    """``VAULT_CLIENT_TIMEOUT``: the longest wait to connect or for the next bytes; a whole
    request, answer included, gets twice this (:mod:`rotator.adapters.vault.transport`).
    5s: a healthy Vault answers in milliseconds, and a stuck request must not hold an
    account's check past its interval."""
    mount: str = "secret"
    """``ROTATOR_VAULT_MOUNT``: the KV v2 mount. ``secret`` is where dev servers mount KV v2."""
    prefix: str = "encord"
    """``ROTATOR_VAULT_PREFIX``: path under the mount; credentials live at
    ``{prefix}/{account}/{ssh-key|api-key|bearer-token}``."""
    auth: VaultAuth = field(default=TokenLogin(), repr=False)
    """``ROTATOR_VAULT_AUTH`` and its variables. Default: token auth with :attr:`token`.
    Left out of the repr, which stays free of the word "token" (``settings_summary`` shows
    the method)."""

    @property
    def secret_values(self) -> tuple[str, ...]:
        """Every credential text these settings hold (for the log redactor)."""
        return tuple(v for v in (self.token, *self.auth.secret_values) if v)
