"""The bearer token: minted by the key consumers currently hold, written to Vault at
``{NAME}/bearer-token``, then noted in the state record (when it runs out, which key minted
it; never the token itself)."""

from __future__ import annotations

import structlog

from rotator.core import transitions
from rotator.core.context import Run
from rotator.core.policy import MintBearer
from rotator.core.state import BearerState
from rotator.core.vocab import BEARER, rfc3339

log = structlog.get_logger("rotator.engine")


def mint(run: Run, action: MintBearer) -> str:
    """Mint a token signed by the current signer (after a rotation: the new key)."""
    ctx = run.context
    signer = run.state.signer()
    kp = ctx.signer_key(run.state)
    assert signer is not None and kp is not None
    with ctx.registry(kp) as registry:
        token = registry.bearer_token()
    run.hook("after_bearer_mint")
    now = run.now()
    expires = now + run.policy.bearer_ttl
    current = ctx.read(BEARER)
    version = ctx.store.write(
        ctx.rel(BEARER),
        {"token": token.token, "issued_at": rfc3339(now), "expires_at": rfc3339(expires)},
        cas=current.version if current is not None else 0,
    )
    run.hook("after_bearer_vault")
    log.info("vault.written", kind=BEARER, path=ctx.rel(BEARER), vault_version=version)
    bearer = BearerState(issued_at=now, expires_at=expires, minted_with=signer.key_id)
    run.save(transitions.bearer_minted(run.state, bearer))
    log.info("bearer.minted", reason=action.reason, expires_at=rfc3339(expires))
    return "bearer_minted"
