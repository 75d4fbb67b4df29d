"""Ed25519 keys in Encord's shapes (rotator.core.keys), checked against the real encord SDK."""

from __future__ import annotations

import base64
import importlib
import os
import re
import struct
import warnings
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from rotator.core import keys
from rotator.core.errors import KeyFormatError
from tests.secret_scan import exception_chain_texts


def _sdk(module: str) -> Any:
    """Import an encord SDK module; its pydantic models warn on import, which is not ours."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return importlib.import_module(module)


def _assert_no_key_text(exc: BaseException, text: str) -> None:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    assert lines, "the test needs key text to look for"
    for blob in exception_chain_texts(exc):
        for line in lines:
            assert line not in blob, "an exception quotes a line of the key text"


def _ssh_string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _encrypted_openssh(private: ed25519.Ed25519PrivateKey) -> str:
    """An OpenSSH key encrypted as ``ssh-keygen -N <passphrase>`` writes it (aes256-ctr, bcrypt).

    cryptography needs the optional bcrypt module to derive the cipher key from a passphrase, so
    the AES key here is random instead: the container is byte-for-byte the real format, and no
    reader can tell the difference without the passphrase.
    """
    pub = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    seed = private.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    pub_blob = _ssh_string(b"ssh-ed25519") + _ssh_string(pub)
    check = os.urandom(4)
    section = (
        check
        + check
        + _ssh_string(b"ssh-ed25519")
        + _ssh_string(pub)
        + _ssh_string(seed + pub)
        + _ssh_string(b"test")
    )
    section += bytes(range(1, 1 + (-len(section)) % 16))
    encryptor = Cipher(algorithms.AES(os.urandom(32)), modes.CTR(os.urandom(16))).encryptor()
    encrypted = encryptor.update(section) + encryptor.finalize()
    blob = (
        b"openssh-key-v1\0"
        + _ssh_string(b"aes256-ctr")
        + _ssh_string(b"bcrypt")
        + _ssh_string(_ssh_string(os.urandom(16)) + struct.pack(">I", 16))
        + struct.pack(">I", 1)
        + _ssh_string(pub_blob)
        + _ssh_string(encrypted)
    )
    body = base64.b64encode(blob).decode("ascii")
    wrapped = "\n".join(body[i : i + 70] for i in range(0, len(body), 70))
    return f"-----BEGIN OPENSSH PRIVATE KEY-----\n{wrapped}\n-----END OPENSSH PRIVATE KEY-----\n"


def _openssh(private: Any) -> str:
    return str(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        ).decode("ascii")
    )


def test_generated_key_is_accepted_by_the_encord_sdk() -> None:
    """The SDK's own loader (create_with_ssh_private_key) takes the text and derives our key id."""
    pair = keys.generate("rotator-test")
    user_client_module = _sdk("encord.user_client")
    client = user_client_module.EncordUserClient.create_with_ssh_private_key(
        pair.private_openssh, domain="https://api.encord.invalid"
    )
    assert pair.private_openssh.startswith("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    assert client.user_config.config.public_key_hex == pair.key_id


def test_generated_public_line_and_key_id_describe_the_same_raw_key() -> None:
    """The public line is 'ssh-ed25519 AAAA... comment' and the key id is the raw key in hex."""
    pair = keys.generate("svc@example")
    assert re.fullmatch(r"ssh-ed25519 AAAA[A-Za-z0-9+/]+={0,2} svc@example", pair.public_line)
    assert re.fullmatch(r"[0-9a-f]{64}", pair.key_id)
    raw = pair.private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert pair.key_id == raw.hex()
    blob = base64.b64decode(pair.public_line.split()[1])
    assert blob == _ssh_string(b"ssh-ed25519") + _ssh_string(raw)
    assert keys.key_id_of_line(pair.public_line) == pair.key_id


def test_generated_keys_differ() -> None:
    """Each generation draws a fresh key."""
    assert keys.generate().key_id != keys.generate().key_id


def test_public_line_without_comment_has_two_fields() -> None:
    """An empty comment leaves just 'ssh-ed25519 AAAA...'."""
    assert len(keys.generate().public_line.split(" ")) == 2


def test_load_private_round_trips() -> None:
    """Loading generated text gives back the same key pair, text included."""
    pair = keys.generate("c")
    assert keys.load_private(pair.private_openssh, "c") == pair
    loaded = keys.load_private("\r\n  " + pair.private_openssh + "\n\n", "c")
    assert loaded.private_openssh == pair.private_openssh
    assert loaded.key_id == pair.key_id


def test_load_private_reads_text_the_sdk_reads() -> None:
    """Text that the SDK's SshConfig.from_ssh_private_key loads gives the same key id here."""
    private = ed25519.Ed25519PrivateKey.generate()
    text = _openssh(private)
    configs = _sdk("encord.configs")
    sdk_config = configs.SshConfig.from_ssh_private_key(text)
    assert keys.load_private(text).key_id == sdk_config.public_key_hex


@pytest.mark.parametrize("comment", ["a\nb", "a\rb"])
def test_comments_cannot_break_the_public_line(comment: str) -> None:
    """A newline in a comment is refused, both on generation and on load."""
    with pytest.raises(ValueError, match="newline"):
        keys.generate(comment)
    with pytest.raises(ValueError, match="newline"):
        keys.load_private(keys.generate().private_openssh, comment)


def _bad_keys() -> dict[str, tuple[str, str]]:
    """Name -> (text, what the message must say)."""
    good = keys.generate().private_openssh
    lines = good.splitlines()
    pkcs8 = (
        ed25519.Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode("ascii")
    )
    return {
        "rsa-openssh": (
            _openssh(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
            "RSA",
        ),
        "ecdsa-openssh": (_openssh(ec.generate_private_key(ec.SECP256R1())), "ECDSA"),
        "ed25519-pkcs8": (pkcs8, "not in OpenSSH format"),
        "passphrase-protected": (
            _encrypted_openssh(ed25519.Ed25519PrivateKey.generate()),
            "passphrase-protected",
        ),
        "truncated": ("\n".join(lines[:2] + lines[-1:]) + "\n", "could not be read"),
        "cut-short": (good[: len(good) // 2], "could not be read"),
        "flipped-body": (
            "\n".join([lines[0], lines[1][::-1], *lines[2:]]) + "\n",
            "could not be read",
        ),
        "non-ascii": (good.replace(lines[1], lines[1][:10] + "é" + lines[1][11:]), "could not"),
        "garbage": ("this is not a key at all\nsecond line of garbage\n", "not in OpenSSH"),
    }


@pytest.mark.parametrize("name", sorted(_bad_keys()))
def test_wrong_keys_raise_key_format_error_without_key_text(name: str) -> None:
    """Every unusable key raises KeyFormatError whose text and chain quote no line of the key."""
    text, expected = _bad_keys()[name]
    with pytest.raises(KeyFormatError) as info:
        keys.load_private(text)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)
    _assert_no_key_text(info.value, text)
    # Not even a suppressed context survives: the library's exception is dropped entirely.
    assert info.value.__cause__ is None
    assert info.value.__context__ is None


@pytest.mark.parametrize("text", ["", "  \n\t"])
def test_empty_text_raises_key_format_error(text: str) -> None:
    """Empty or blank text is not a key."""
    with pytest.raises(KeyFormatError, match="not in OpenSSH format"):
        keys.load_private(text)


def test_the_sdk_refuses_what_rotator_refuses_for_key_type() -> None:
    """The SDK too refuses an RSA key, so rotator's refusal matches what consumers would hit."""
    text = _openssh(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    configs = _sdk("encord.configs")
    with pytest.raises(ValueError, match="not an Ed25519"):
        configs.SshConfig.from_ssh_private_key(text)


def test_key_pair_repr_hides_the_private_key() -> None:
    """repr/str of a KeyPair show the key id and public line, never the private text."""
    pair = keys.generate("c")
    for shown in (repr(pair), str(pair)):
        assert pair.key_id in shown
        for line in pair.private_openssh.splitlines():
            assert line not in shown


@pytest.mark.parametrize(
    "line",
    [
        "",
        "ssh-ed25519",
        "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC",
        "ssh-ed25519 not-base64!!",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI",
        "ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAAAgQC7",
    ],
)
def test_bad_public_lines_raise_key_format_error(line: str) -> None:
    """A public line that is not an Ed25519 OpenSSH line raises KeyFormatError, no chain."""
    with pytest.raises(KeyFormatError) as info:
        keys.parse_public_line(line)
    assert info.value.__context__ is None


def test_rsa_public_line_is_refused() -> None:
    """A real RSA public line is refused."""
    line = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode("ascii")
    )
    with pytest.raises(KeyFormatError):
        keys.key_id_of_line(line)


def test_key_id_of_line_ignores_the_comment() -> None:
    """The key id depends on the key only, not on the comment or surrounding blanks."""
    pair = keys.generate("one")
    bare = " ".join(pair.public_line.split()[:2])
    assert keys.key_id_of_line(f"  {bare} another comment here \n") == pair.key_id
