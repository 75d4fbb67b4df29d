"""The Vault (KV version 2) adapter: the one package of rotator that imports ``hvac``.

Everything rotator keeps in Vault lives under ``{mount}/{prefix}/...`` and every write is a
check-and-set, so two writers can never silently overwrite each other. The package:

    settings.py  VaultSettings: where and how to reach Vault (a value; config builds it)
    auth.py      the login methods (token, approle, kubernetes), one small class each,
                 with the variables they read; LOGINS maps ROTATOR_VAULT_AUTH to them
    env.py       the variable rows and validators the login methods share with config
    session.py   VaultSession: the client and its token (login, renewal, login again)
    store.py     VaultStore: KV v2 check-and-set reads and writes; Versioned
    introspect.py what the token may do and how long it lives (``rotator doctor``)
    errors.py    the one table translating hvac/requests errors into rotator's
    answers.py   reading Vault's answers; TokenInfo
    client.py    connect(): an hvac client with every setting explicit
    transport.py every request bounded: a total deadline and a 1 MiB answer cap

hvac's errors are translated at the boundary (:mod:`rotator.adapters.vault.errors`) into
rotator's own tree::

    cannot connect, timeout, 429, 5xx, sealed   -> StoreUnavailable  (names VAULT_ADDR)
    the request's total deadline passed         -> StoreUnavailable  (names VAULT_ADDR)
    an answer larger than the cap (1 MiB)       -> ProtocolError     (names VAULT_ADDR)
    401 / 403                                   -> AccessDenied      (names VAULT_TOKEN, or
                                                   the login's variables: VAULT_ROLE_ID...)
    400 "check-and-set parameter did not match" -> StoreConflict
    no such mount, or a mount that is not KV v2 -> ConfigError       (names ROTATOR_VAULT_MOUNT)
    an answer of an unexpected shape            -> CorruptState

The rotator errors are raised *outside* the ``except`` block, so they carry no
``__cause__`` or ``__context__``: hvac's exceptions keep the response body, and the
``requests`` exceptions keep the request, headers (``X-Vault-Token``) included. Messages are
one line and never hold a token, secret data or a response body.
"""

from rotator.adapters.vault.answers import TokenInfo
from rotator.adapters.vault.auth import (
    AUTH_METHODS,
    K8S_JWT_FILE,
    LOGINS,
    AppRoleLogin,
    AuthMethod,
    KubernetesLogin,
    TokenLogin,
    VaultAuth,
)
from rotator.adapters.vault.client import connect
from rotator.adapters.vault.session import (
    MAINTAIN_EVERY,
    RELOGIN_SHARE,
    RENEW_SHARE,
    VaultSession,
)
from rotator.adapters.vault.settings import VaultSettings
from rotator.adapters.vault.store import VaultStore, Versioned

__all__ = [
    "AUTH_METHODS",
    "K8S_JWT_FILE",
    "LOGINS",
    "MAINTAIN_EVERY",
    "RELOGIN_SHARE",
    "RENEW_SHARE",
    "AppRoleLogin",
    "AuthMethod",
    "KubernetesLogin",
    "TokenInfo",
    "TokenLogin",
    "VaultAuth",
    "VaultSession",
    "VaultSettings",
    "VaultStore",
    "Versioned",
    "connect",
]
