"""Ed25519 keys in the shapes Encord takes: OpenSSH private text, OpenSSH public line, key id.

Only ``cryptography`` is used. Errors never contain key text: the ``cryptography`` and
``encord`` exceptions for a wrong key can quote it, so they are replaced, not chained.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from rotator.core.errors import KeyFormatError
from rotator.core.redaction import register_private_key

_OPENSSH_HEADER = "-----BEGIN OPENSSH PRIVATE KEY-----"


@dataclass(frozen=True, slots=True)
class KeyPair:
    """An Ed25519 key pair; the private half never shows in ``repr``."""

    private_openssh: str = field(repr=False)
    public_line: str
    key_id: str

    @property
    def private_key(self) -> Ed25519PrivateKey:
        return _parse_private(self.private_openssh)


def key_id_of(public_key: Ed25519PublicKey) -> str:
    """The key id Encord uses on the wire: lowercase hex of the raw 32-byte public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw.hex()


def _public_line(public_key: Ed25519PublicKey, comment: str) -> str:
    line = public_key.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode("ascii")
    return f"{line} {comment}" if comment else line


def _check_comment(comment: str) -> None:
    if "\n" in comment or "\r" in comment:
        raise ValueError("a public-key comment cannot contain a newline")


def generate(comment: str = "") -> KeyPair:
    """A fresh Ed25519 key pair; ``comment`` ends the public line (no newlines allowed)."""
    _check_comment(comment)
    private = Ed25519PrivateKey.generate()
    text = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode("ascii")
    public = private.public_key()
    register_private_key(text)  # every private key rotator holds is masked in every log line
    return KeyPair(
        private_openssh=text, public_line=_public_line(public, comment), key_id=key_id_of(public)
    )


def _kind(key: object) -> str:
    for cls, name in (
        (rsa.RSAPrivateKey, "RSA"),
        (ec.EllipticCurvePrivateKey, "ECDSA"),
        (dsa.DSAPrivateKey, "DSA"),
    ):
        if isinstance(key, cls):
            return name
    return "not Ed25519"


def _parse_private(text: str) -> Ed25519PrivateKey:
    stripped = text.strip()
    if not stripped.startswith(_OPENSSH_HEADER):
        # The armour is named without its dashes: the log redactor masks a "-----BEGIN ...
        # PRIVATE KEY-----" line and everything after it, which would cut this message short.
        raise KeyFormatError(
            "private key is not in OpenSSH format (expected a 'BEGIN OPENSSH PRIVATE KEY' block)"
        )
    key: object = None
    problem: str | None = None
    try:
        key = serialization.load_ssh_private_key(stripped.encode("ascii"), password=None)
    except TypeError:
        problem = "private key is passphrase-protected; Encord takes unencrypted keys only"
    except Exception:
        # cryptography's message (or a UnicodeError's ``object``) may hold the key text.
        problem = "private key could not be read (corrupt or truncated OpenSSH key)"
    if problem is not None:
        # Raised outside the ``except`` block so that not even ``__context__`` keeps the
        # library's exception, whose text or attributes may quote the key.
        raise KeyFormatError(problem)
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFormatError(f"private key is {_kind(key)}, Encord takes Ed25519 keys only")
    return key


def load_private(text: str, comment: str = "") -> KeyPair:
    """Parse OpenSSH private text; raise :class:`KeyFormatError` (no key text) if it is not
    an unencrypted Ed25519 key."""
    _check_comment(comment)
    key = _parse_private(text)
    public = key.public_key()
    register_private_key(text)
    return KeyPair(
        private_openssh=text.strip() + "\n",
        public_line=_public_line(public, comment),
        key_id=key_id_of(public),
    )


def parse_public_line(line: str) -> Ed25519PublicKey:
    """Parse ``ssh-ed25519 AAAA... [comment]``; raise :class:`KeyFormatError` otherwise."""
    parts = line.strip().split()
    if len(parts) < 2 or parts[0] != "ssh-ed25519":
        raise KeyFormatError("public key is not an 'ssh-ed25519 AAAA...' OpenSSH line")
    key: object = None
    try:
        key = serialization.load_ssh_public_key(f"{parts[0]} {parts[1]}".encode("ascii"))
    except Exception:
        key = None
    if key is None:
        raise KeyFormatError("public key could not be decoded")
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFormatError("public key is not Ed25519")
    return key


def key_id_of_line(line: str) -> str:
    """Key id (64 hex) of an OpenSSH public line."""
    return key_id_of(parse_public_line(line))
