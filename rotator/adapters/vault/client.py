"""The hvac client: built with every setting explicit, after checking the address.

hvac would otherwise fall back to ``VAULT_*`` variables and ``~/.vault-token``; rotator reads
its environment in one place only (:mod:`rotator.runtime.config`).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import hvac

from rotator.adapters.vault.clock import VAULT_CLOCK
from rotator.adapters.vault.errors import refuse_redirects, safe_addr
from rotator.adapters.vault.transport import bounded_session
from rotator.core.errors import ConfigError


def connect(
    addr: str,
    token: str,
    *,
    cacert: str | None = None,
    namespace: str | None = None,
    timeout: float = 5.0,
) -> hvac.Client:
    """An hvac client for ``addr`` with ``token``; opens no connection (``check()`` does).

    ``cacert`` is a CA bundle path for TLS verification (system roots when None); ``timeout``
    is seconds per HTTP request, short so a dead Vault is noticed quickly. The caller owns
    the client and closes it with ``client.adapter.close()``.
    """
    validate(addr, token, timeout)
    return make_client(addr, token, cacert=cacert, namespace=namespace, timeout=timeout)


def validate(addr: str, token: str | None, timeout: float) -> None:
    """ConfigError listing every problem with the address, the token (unless None: it is
    obtained later by logging in) and the timeout."""
    problems = []
    try:
        parts = urlsplit(addr)
        usable = parts.scheme in ("http", "https") and bool(parts.hostname)
        _ = parts.port  # raises ValueError on a port that is not a number in range
    except ValueError:
        usable = False
    if not usable:
        problems.append(
            f"VAULT_ADDR: expected a URL like https://vault:8200, got {safe_addr(addr)!r}"
        )
    if token is not None and (not token or token != token.strip()):
        problems.append("VAULT_TOKEN: empty, or has surrounding whitespace")
    if timeout <= 0:
        problems.append(f"Vault timeout: expected seconds > 0, got {timeout!r}")
    if problems:
        raise ConfigError(problems)


def make_client(
    addr: str, token: str, *, cacert: str | None, namespace: str | None, timeout: float
) -> hvac.Client:
    """An hvac client with nothing left to hvac's defaults. An empty token (not None) sends
    no X-Vault-Token header at all. Redirects are never followed: ``requests`` strips only
    ``Authorization`` when a redirect leaves the host, so a 307 to another host would receive
    ``X-Vault-Token`` (and a login's credentials in its body)."""
    session = bounded_session(timeout)  # a total deadline and a size cap: transport.py
    # What requests reads from the environment for this address (HTTPS_PROXY, NO_PROXY,
    # REQUESTS_CA_BUNDLE), read once here rather than at every request: scanning the whole
    # environment twice per request cost more CPU than the rest of requests' own work.
    # (~/.netrc, which requests would also read at every request, is not read: Vault is
    # given its token, never a password from there.)
    env = session.merge_environment_settings(addr, {}, None, None, None)
    session.trust_env = False
    session.proxies = env["proxies"]
    verify = cacert if cacert else env["verify"]
    session.verify = verify  # hvac lets the session's verify win over its own
    session.hooks["response"].append(refuse_redirects)
    session.hooks["response"].append(VAULT_CLOCK.hook)  # this host's clock against Vault's
    return hvac.Client(
        url=addr,
        token=token,
        verify=verify,
        timeout=timeout,
        namespace=namespace or None,
        allow_redirects=False,
        session=session,
    )
