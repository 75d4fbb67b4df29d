"""The message: :class:`Notice`, the only fields a notification may carry, and the events.

Owns :data:`EVENTS` and their severities, the shape each field must have, the allow-listed
JSON payload and the human text, and :func:`looks_secret`, which refuses anything shaped like
a secret before it can be sent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from rotator.core.redaction import scrub
from rotator.core.vocab import CREDENTIALS, rfc3339, utc

Severity = Literal["info", "warning", "critical"]

EVENTS: Final[Mapping[str, Severity]] = {
    "key.registration_required": "warning",
    "key.revocation_required": "warning",
    "rotation.failed": "critical",
    "rotation.blocked_by_cap": "critical",
    "key.expiring_soon": "warning",
}
"""The events a person is told about, each with its default severity."""

_SEVERITIES: Final = ("info", "warning", "critical")
_ICONS: Final[Mapping[str, str]] = {
    "info": ":information_source:",
    "warning": ":warning:",
    "critical": ":rotating_light:",
}

# What a secret looks like, beyond what redaction.scrub() masks (private-key blocks, Vault
# tokens, bearer credentials, and every secret rotator registered while handling it).
# Distinctive prefixes match anywhere: glued to other text ("0hvs.…", "xBearer …") a secret
# is still one, and refusing a harmless message costs less than sending a secret. Short,
# common ones (s., sk-, AKIA) must start a word, or "task-…" would be refused.
_SECRET_SHAPES: Final = re.compile(
    r"PRIVATE KEY"
    r"|b3BlbnNzaC1rZXktdjE"  # base64 of "openssh-key-v1": the body of an OpenSSH private key
    r"|hv[sbr]\.[A-Za-z0-9_-]{20,}"  # Vault / OpenBao tokens
    r"|(?<![A-Za-z0-9])[sbr]\.[A-Za-z0-9]{24}(?![A-Za-z0-9])"  # their legacy form
    r"|bearer\s+[^\s\"',;]{8,}"  # an HTTP bearer credential
    r"|xox[abposr]-[A-Za-z0-9-]{10,}"  # Slack tokens
    r"|hooks\.slack\.com/"  # a Slack webhook URL (its path is the credential)
    r"|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\."  # a JWT
    r"|(?:gh[pousr]_|glpat-)[A-Za-z0-9_-]{16,}"  # GitHub, GitLab tokens
    r"|(?<![A-Za-z0-9])(?:sk-|AKIA)[A-Za-z0-9_-]{16,}"  # API keys, AWS access keys
    r"|[a-z][a-z0-9+.-]*://[^\s/@]+:[^\s/@]+@",  # credentials in a URL
    re.IGNORECASE,
)
_PUBLIC_KEY_RE: Final = re.compile(r"ssh-ed25519 [A-Za-z0-9+/]{60,100}={0,2}(?: [!-~]{1,100})?")
_CONTROL_RE: Final = re.compile(r"[\x00-\x1f\x7f]")
_TOKEN_RE: Final = re.compile(r"[!-~]{1,128}")  # printable ASCII, no spaces


def looks_secret(value: str) -> bool:
    """Whether ``value`` holds something that looks like a secret (so must not be sent)."""
    return scrub(value) != value or _SECRET_SHAPES.search(value) is not None


def _check_text(name: str, value: str, limit: int) -> None:
    if not value or len(value) > limit or _CONTROL_RE.search(value):
        raise ValueError(f"notice field {name!r}: 1 to {limit} characters, no control characters")


def check_token(name: str, value: str) -> None:
    """Raise ValueError (naming the field, never the value) unless ``value`` is one token."""
    if not _TOKEN_RE.fullmatch(value):
        raise ValueError(f"notice field {name!r}: 1 to 128 printable characters, no spaces")


@dataclass(frozen=True, slots=True)
class Notice:
    """One message to a person: the only fields a notification may carry.

    ``event`` is one of :data:`EVENTS`; ``account`` rotator's name of the service account;
    ``kind`` the credential (``ssh-key``, ``api-key``, ``bearer-token``); ``key_id`` and
    ``title`` the key concerned; ``public_key`` the OpenSSH public line a person must add
    (``key.registration_required``); ``hint`` one line of advice; ``expires_at`` when the key
    expires (``key.expiring_soon``); ``severity`` defaults by event. Every string is checked
    for shape and refused (ValueError naming the field) if it looks like a secret.
    """

    event: str
    account: str
    kind: str | None = None
    key_id: str | None = None
    title: str | None = None
    public_key: str | None = None
    hint: str | None = None
    expires_at: datetime | None = None
    severity: Severity | None = None

    def __post_init__(self) -> None:
        if self.event not in EVENTS:
            raise ValueError(
                f"unknown notice event {self.event[:60]!r}: one of {', '.join(EVENTS)}"
            )
        if self.severity is None:
            object.__setattr__(self, "severity", EVENTS[self.event])
        elif self.severity not in _SEVERITIES:
            raise ValueError(f"notice severity must be one of {', '.join(_SEVERITIES)}")
        if self.kind is not None and self.kind not in CREDENTIALS:
            raise ValueError(f"notice field 'kind' must be one of {', '.join(CREDENTIALS)}")
        if self.expires_at is not None:
            object.__setattr__(self, "expires_at", utc(self.expires_at))
        check_token("account", self.account)
        if self.key_id is not None:
            check_token("key_id", self.key_id)
        if self.title is not None:
            _check_text("title", self.title, 200)
        if self.hint is not None:
            _check_text("hint", self.hint, 500)
        if self.public_key is not None and not _PUBLIC_KEY_RE.fullmatch(self.public_key):
            raise ValueError("notice field 'public_key' is not an ssh-ed25519 public line")
        for name in ("account", "key_id", "title", "public_key", "hint"):
            value = getattr(self, name)
            if value is not None and looks_secret(value):
                raise ValueError(f"notice field {name!r} looks like a secret; refused")

    @property
    def dedup_key(self) -> tuple[str, str, str | None]:
        """Messages with the same key are sent at most once per dedup interval."""
        return (self.event, self.account, self.key_id)

    def text(self, service: str) -> str:
        """The human line(s): Slack mrkdwn, with ``&``, ``<`` and ``>`` escaped."""
        what = self.kind or "credential"
        key = f" `{self.key_id}`" if self.key_id else ""
        titled = f" ({self.title})" if self.title else ""
        headline = {
            "key.registration_required": f"register the new {what}{titled} in Encord",
            "key.revocation_required": f"revoke the old {what}{key}{titled} in Encord",
            "rotation.failed": f"rotating the {what} failed",
            "rotation.blocked_by_cap": f"rotating the {what} is blocked: Encord's key cap is "
            "reached",
            "key.expiring_soon": f"the {what}{key} expires "
            + (rfc3339(self.expires_at) if self.expires_at else "soon"),
        }[self.event]
        lines = [f"{_ICONS[str(self.severity)]} {service}: account `{self.account}`: {headline}"]
        if self.public_key:
            lines.append(f"Public key: `{self.public_key}`")
        if self.hint:
            lines.append(self.hint)
        text = "\n".join(lines)
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    def payload(self, service: str) -> dict[str, str]:
        """The JSON object sent: ``text`` and the allow-listed fields that are set."""
        out = {"text": self.text(service), "event": self.event, "severity": str(self.severity)}
        out["service"] = service
        out["account"] = self.account
        for name in ("kind", "key_id", "title", "public_key", "hint"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.expires_at is not None:
            out["expires_at"] = rfc3339(self.expires_at)
        return out
