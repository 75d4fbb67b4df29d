"""What a KV v2 mount (or one path's metadata) is configured to keep, as Vault reports it.

Security teams set ``max_versions``, ``cas_required`` and ``delete_version_after`` on the
mount (``{mount}/config``) or on a path (``{mount}/metadata/{path}``). rotator reads them
at start-up and in ``rotator doctor`` to refuse settings that would break its promises (see
:mod:`rotator.runtime.preflight`); this module only reads and parses them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from rotator.core.errors import CorruptState

_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {
    "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class KvSettings:
    """``max_versions`` (0: Vault's default, 10), ``cas_required``, ``delete_version_after``
    (zero: versions are never deleted by age), of a mount or of one path."""

    max_versions: int
    cas_required: bool
    delete_version_after: timedelta


def go_duration(text: str) -> timedelta:
    """Vault's Go-style durations: ``0s``, ``720h0m0s``, ``1.5s``, or a bare number of
    seconds; ValueError otherwise."""
    value = text.strip()
    if re.fullmatch(r"\d+", value):
        return timedelta(seconds=int(value))
    if not value or not re.fullmatch(f"(?:{_GO_DURATION.pattern})+", value):
        raise ValueError(f"not a duration: {value[:40]!r}")
    seconds = sum(float(n) * _UNITS[unit] for n, unit in _GO_DURATION.findall(value))
    return timedelta(seconds=seconds)


def parse_kv_settings(data: Any, *, where: str) -> KvSettings:
    """The three settings from a ``config`` or ``metadata`` answer's ``data``."""
    if not isinstance(data, dict):
        raise CorruptState(f"Vault answered an unexpected shape for {where}")
    try:
        max_versions = int(data.get("max_versions") or 0)
        after = data.get("delete_version_after") or "0s"
        delete_after = go_duration(str(after))
    except (TypeError, ValueError):
        raise CorruptState(f"Vault answered unreadable KV settings for {where}") from None
    return KvSettings(
        max_versions=max_versions,
        cas_required=data.get("cas_required") is True,
        delete_version_after=delete_after,
    )
