"""What Vault says about the token itself, for ``rotator doctor``: its description
(``auth/token/lookup-self``) and its capabilities on given paths (``sys/capabilities-self``).

Both are reads: ``sys/capabilities-self`` is a POST carrying the paths to ask about, and
changes nothing. The shipped policy grants it (deploy/vault/rotator-policy.hcl); a token
that may not ask gets ``None`` from :func:`capabilities`, and the doctor says so.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from rotator.adapters.vault.answers import TokenInfo, lookup_answer
from rotator.adapters.vault.store import VaultStore
from rotator.core.errors import AccessDenied, CorruptState


def token_self(store: VaultStore) -> TokenInfo:
    """The store's token as Vault describes it (AccessDenied if Vault refuses it)."""
    started = time.monotonic()
    answer = store.introspect(
        "look up", "auth/token/lookup-self", lambda c: c.auth.token.lookup_self()
    )
    info, _ = lookup_answer(answer, started)
    return info


def capabilities(store: VaultStore, paths: Iterable[str]) -> dict[str, frozenset[str]] | None:
    """Each path's capabilities for the store's token (``deny`` when it has none); None when
    the token may not ask (403 on ``sys/capabilities-self``)."""
    wanted = sorted(set(paths))
    try:
        answer = store.introspect(
            "ask capabilities of",
            "sys/capabilities-self",
            lambda c: c.adapter.post("/v1/sys/capabilities-self", json={"paths": wanted}),
        )
    except AccessDenied:
        return None
    return _parse(answer, wanted)


def _parse(answer: Any, wanted: list[str]) -> dict[str, frozenset[str]]:
    body = answer.get("data", answer) if isinstance(answer, Mapping) else None
    if not isinstance(body, Mapping):
        raise CorruptState("Vault answered an unexpected shape for sys/capabilities-self")
    found: dict[str, frozenset[str]] = {}
    for path in wanted:
        caps = body.get(path)
        if caps is None and len(wanted) == 1:
            caps = body.get("capabilities")  # the answer's shape for a single path
        if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
            raise CorruptState(f"Vault answered no capabilities for {path!r}")
        found[path] = frozenset(caps)
    return found
