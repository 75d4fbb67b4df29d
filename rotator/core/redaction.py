"""Secret redaction: the registry of secret values and the structlog processor that masks
them, with private-key blocks, Vault tokens and bearer credentials, in every log line.

Pure (no I/O): adapters register each token, secret ID and private key they handle with
:func:`register_secret`; :mod:`rotator.runtime.logs` puts :func:`redact` last before rendering.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Final

from structlog.typing import EventDict, WrappedLogger

REDACTED: Final = "[redacted]"

_SECRET_KEY_RE: Final = re.compile(
    r"private_key|privatekey|token|secret|password|secret_id|authorization", re.IGNORECASE
)
_SECRET_TEXT_RE: Final = re.compile(
    # A PEM/OpenSSH private key block; a block cut short (no END line) is masked to the end.
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?:.*?-----END [A-Z0-9 ]*PRIVATE KEY-----|.*\Z)"
    # Vault / OpenBao tokens: service, batch, recovery, and their legacy forms.
    r"|\b(?:hvs|hvb|hvr|s|b|r)\.[A-Za-z0-9_-]{20,}\b"
    # An HTTP bearer credential (8+ characters, so "the bearer of bad news" stays).
    r"|\b(?i:bearer)\s+[^\s\"',;]{8,}",
    re.DOTALL,
)

# Registered secrets are scanned for only in strings at least this long; shorter values
# are not registered (they would mask ordinary words, and real secrets are far longer).
MIN_SECRET_LENGTH: Final = 16
# Bearer tokens are minted every hour forever: remember only the most recent secrets.
MAX_SECRETS: Final = 4096

_secrets_lock = threading.Lock()
_secrets: dict[str, None] = {}  # insertion-ordered set
_secrets_snapshot: tuple[str, ...] = ()  # what redact() scans; replaced, never mutated

# Keys whose values are not user data; they are handled by their own processors.
_PASSTHROUGH_KEYS: Final = frozenset({"_record", "_from_structlog"})


def register_secret(value: str) -> None:
    """Mask ``value`` verbatim in every later log line (private keys, tokens...).

    Values shorter than :data:`MIN_SECRET_LENGTH` are ignored. The daemon registers each
    private key, bearer token and the Vault token it handles.
    """
    global _secrets_snapshot
    if not isinstance(value, str) or len(value) < MIN_SECRET_LENGTH:
        return
    candidates = {value, value.strip()}
    with _secrets_lock:
        for candidate in candidates:
            if len(candidate) >= MIN_SECRET_LENGTH:
                _secrets.pop(candidate, None)
                _secrets[candidate] = None
        while len(_secrets) > MAX_SECRETS:
            del _secrets[next(iter(_secrets))]
        # Longest first, so a secret that contains another is masked whole.
        _secrets_snapshot = tuple(sorted(_secrets, key=len, reverse=True))


def register_private_key(text: str) -> None:
    """Mask an OpenSSH/PEM private key: its whole text and each line of its body, so that
    neither the key nor a piece of it cut out of its armour reaches a log line."""
    register_secret(text)
    for line in text.splitlines():
        if not line.startswith("-----"):
            register_secret(line)


def forget_secrets() -> None:
    """Forget every registered secret (for tests)."""
    global _secrets_snapshot
    with _secrets_lock:
        _secrets.clear()
        _secrets_snapshot = ()


def scrub(text: str) -> str:
    """``text`` with private-key blocks, Vault tokens, bearer credentials and registered
    secrets replaced by ``[redacted]``."""
    if len(text) >= MIN_SECRET_LENGTH:
        for secret in _secrets_snapshot:
            if secret in text:
                text = text.replace(secret, REDACTED)
    return _SECRET_TEXT_RE.sub(REDACTED, text)


def _redact_value(value: object) -> object:
    if isinstance(value, str):
        return scrub(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {key: _mask_or_redact(str(key), item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(item) for item in value]
    # Anything else is rendered with repr() (or its __structlog__) by both renderers:
    # scrub that text.
    as_structlog = getattr(value, "__structlog__", None)
    return scrub(str(as_structlog()) if callable(as_structlog) else repr(value))


def _mask_or_redact(key: str, value: object) -> object:
    if value is None or isinstance(value, bool):
        return value  # "no token" / "has a token" reveals nothing
    if _SECRET_KEY_RE.search(key):
        return REDACTED
    return _redact_value(value)


def redact(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask secret-named fields and secret-looking text, recursively.

    Values of keys matching ``private_key|privatekey|token|secret|password|secret_id|
    authorization`` (case-insensitive, anywhere in the key) become ``[redacted]`` (``None``
    and booleans are kept). Every string, however deep, is passed through :func:`scrub`.
    Run it after exceptions are rendered to text or dicts, so their text is scrubbed too.
    """
    for key, value in list(event_dict.items()):
        if key in _PASSTHROUGH_KEYS:
            continue
        if key == "exc_info" and not isinstance(value, str):
            continue  # still to be rendered by an exception processor
        event_dict[key] = _mask_or_redact(key, value)
    return event_dict
