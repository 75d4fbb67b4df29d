"""Vault's address misbehaving: a redirect never carries the Vault token or a login's
credentials anywhere (issue: transport). ``requests`` follows redirects by default and strips
only ``Authorization`` when one leaves the host, so before this a 307 from VAULT_ADDR to
another host received ``X-Vault-Token``, and an AppRole login's secret ID in its body."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from rotator.adapters.vault import VaultStore, connect
from rotator.core.errors import ConfigError
from tests.e2e import rotator_cli
from tests.hostile import HostileServer

TOKEN = "hvs.CAESIFakeTokenThatMustNotTravel0123456789"
SECRET_ID = "5f2e6c1a-aaaa-bbbb-cccc-secretidmustnot"


def test_a_redirect_from_vault_is_refused_and_the_token_goes_nowhere_else() -> None:
    """Every store call answered by a 307 to 127.0.0.2 fails with one line naming
    VAULT_ADDR; the other host receives nothing at all."""
    with (
        HostileServer("redirect", host="127.0.0.2") as elsewhere,
        HostileServer("redirect", location=elsewhere.url + "/v1/secret/data/x") as vault,
    ):
        store = VaultStore(connect(vault.url, TOKEN), mount="secret", prefix="t/encord")
        calls: list[Callable[[], object]] = [
            store.check,
            lambda: store.read("a/state"),
            lambda: store.write("a/s", {}, cas=0),
        ]
        for call in calls:
            with pytest.raises(ConfigError) as caught:
                call()
            assert str(caught.value).startswith("VAULT_ADDR:") and "redirect" in str(caught.value)
            assert TOKEN not in str(caught.value)
    assert elsewhere.seen == []
    assert vault.seen and all(s.headers.get("x-vault-token") == TOKEN for s in vault.seen)


def test_an_approle_login_redirected_elsewhere_sends_no_secret_id_there() -> None:
    """`rotator status` with AppRole against a redirecting address exits 2 naming VAULT_ADDR,
    and the host it was sent to never sees the role or secret ID."""
    with (
        HostileServer("redirect", host="127.0.0.2") as elsewhere,
        HostileServer("redirect", location=elsewhere.url + "/v1/auth/approle/login") as vault,
    ):
        env = {
            "VAULT_ADDR": vault.url,
            "ROTATOR_VAULT_AUTH": "approle",
            "VAULT_ROLE_ID": "role-id-1234",
            "VAULT_SECRET_ID": SECRET_ID,
            "ROTATOR_ACCOUNTS": "alpha=sa-alpha",
            "ENCORD_DOMAIN": "http://127.0.0.1:9",
        }
        code, out, err = rotator_cli(["status", "--json"], env)
    assert code == 2, err
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any("VAULT_ADDR" in str(line.get("problem", "")) for line in lines), err
    assert elsewhere.seen == []
    assert SECRET_ID not in out + err
    assert any(SECRET_ID.encode() in s.body for s in vault.seen)  # it went to VAULT_ADDR only
