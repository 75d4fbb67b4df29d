"""Where messages go: :class:`NotifyTarget` and the rules of ``ROTATOR_NOTIFY_URL``.

The URL is a secret (a Slack webhook's path is its credential): only its scheme and host are
ever shown. :func:`parse_notify_url` takes https, or plain http to a loopback host only.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import httpx


@dataclass(frozen=True, slots=True)
class NotifyTarget:
    """Where messages go. The URL is a secret: ``str`` and ``repr`` show scheme and host."""

    url: str = field(repr=False)

    @property
    def shown(self) -> str:
        """``scheme://host[:port]``, safe to log."""
        parsed = httpx.URL(self.url)
        port = f":{parsed.port}" if parsed.port else ""
        host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
        return f"{parsed.scheme}://{host}{port}"

    def __str__(self) -> str:
        return self.shown


def _is_loopback(host: str) -> bool:
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_notify_url(text: str) -> NotifyTarget:
    """Check ``ROTATOR_NOTIFY_URL``: https, or http to a loopback host only.

    Raises ValueError in one line that never repeats the URL's path or query.
    """
    text = text.strip()
    try:
        url = httpx.URL(text)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise ValueError("not a URL: expected https://host/path") from None
    if url.scheme not in ("https", "http") or not url.host:
        raise ValueError(
            f"expected an https:// URL with a host, got scheme {url.scheme or 'none'!r}"
        )
    if url.scheme == "http" and not _is_loopback(url.host):
        raise ValueError(
            f"plain http is allowed only to a loopback host, not {url.host[:100]!r}: use https"
        )
    return NotifyTarget(text)
