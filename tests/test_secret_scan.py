"""The secret scan itself: it finds every kind of secret the suite must never show.

These tests plant secrets in strings and ask :func:`find_secrets` directly (nothing planted is
printed), so they prove the session-wide scan would catch a leak rather than pass because it
looks at nothing.
"""

from __future__ import annotations

import secrets

import pytest

from rotator.core import keys
from tests import secret_scan
from tests.secret_scan import exception_text, find_secrets, remember, scan_later


def _kinds(text: str) -> list[str]:
    return sorted(set(find_secrets(text)))


def test_a_private_key_is_found_whole_armourless_or_as_one_body_line() -> None:
    """An OpenSSH private key is found with its armour, without it, and by a single line."""
    pair = keys.generate()  # remembered by the plugin, as every key the suite makes
    text = pair.private_openssh
    body = text.splitlines()[1:-1]
    assert "private_key_block" in _kinds(f"log: {text}")
    assert _kinds("\n".join(body))  # armour stripped: the openssh-key-v1 body start
    assert "a line of a private key" in _kinds(f"... {body[-1]} ...")
    assert "private_key_block" in _kinds("-----BEGIN PRIVATE KEY-----")  # PKCS#8 too


@pytest.mark.parametrize(
    ("token", "kind"),
    [
        ("dev-" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6", "openbao_dev_root_token"),
        ("hvs.CAESIJlU2sFakeVaultTokenForTests0123", "vault_token"),
        ("hvb.AAAAAQJzFakeBatchTokenForTests0123456", "vault_token"),
        ("s.Ab12Cd34Ef56Gh78Ij90Kl12", "vault_token"),
    ],
)
def test_vault_tokens_are_found_by_their_shape(token: str, kind: str) -> None:
    """Vault and OpenBao tokens are found by their shape, even never seen before."""
    assert _kinds(f'{{"error": "refused", "token_used": "{token}"}}') == [kind]


def test_a_bearer_token_is_found_in_a_header_or_as_a_value_the_suite_handled() -> None:
    """A bearer credential is found after "Bearer", and as a bare value once remembered."""
    token = secrets.token_urlsafe(32)
    assert _kinds(f"Authorization: Bearer {token}") == ["bearer_credential"]
    assert find_secrets(f"token={token}") == []  # unknown and shapeless: not yet
    remember(token)  # e.g. read back from Vault's bearer-token path
    assert _kinds(f"token={token}") == ["a secret value handled by the suite"]


def test_findings_never_hold_the_secret() -> None:
    """What the scan reports names a kind of secret, never any part of it."""
    token = "hvs." + secrets.token_urlsafe(30)
    pair = keys.generate()
    for found in find_secrets(f"{token} {pair.private_openssh}"):
        assert token[:8] not in found and "b3Blbn" not in found


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: Bearer [redacted]",
        "the bearer of bad news",
        "key_id=" + "ab" * 32,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl x",
        "private key is not in OpenSSH format (expected a 'BEGIN OPENSSH PRIVATE KEY' block)",
        "VAULT_TOKEN: required (or VAULT_TOKEN_FILE naming a file holding it)",
    ],
)
def test_ordinary_text_is_clean(text: str) -> None:
    """Redacted credentials, key ids, public keys and messages about secrets are not secrets."""
    assert find_secrets(text) == []


def test_a_caught_exception_is_scanned_with_its_whole_chain() -> None:
    """A token in the cause of a caught exception is found in its text."""
    token = "hvs." + secrets.token_urlsafe(30)
    try:
        try:
            raise ValueError(f"backend said: bad token {token}")
        except ValueError as inner:
            raise RuntimeError("Vault refused the token") from inner
    except RuntimeError as exc:
        caught = exc
    assert find_secrets(str(caught)) == []  # its own message is clean...
    assert _kinds(exception_text(caught)) == ["vault_token"]  # ...its cause is not


def test_scan_later_records_a_finding_naming_the_test_and_where() -> None:
    """A text handed to scan_later with a secret in it becomes a session finding."""
    token = "hvs." + secrets.token_urlsafe(30)
    before = len(secret_scan._findings)
    scan_later(f"daemon line with {token}", "planted output")
    with secret_scan._lock:
        added = secret_scan._findings[before:]
        del secret_scan._findings[before:]  # planted on purpose: not a real leak
    assert len(added) == 1
    assert "test_scan_later_records_a_finding_naming_the_test_and_where" in added[0]
    assert "planted output" in added[0] and "vault_token" in added[0]
    assert token[:8] not in added[0]
