"""Text for a person: durations (``89d 23h``), short key ids, times and aligned tables.

The one place the CLI (and the demo's own log lines) shape values for reading; ``--json``
output never goes through it (numbers in seconds, full key ids, ISO times there).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

SHORT_ID = 12
"""Hex characters of a key id shown to a person (of 64; as rotator's own messages show it)."""

_UNITS = (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))


def human_duration(td: timedelta) -> str:
    """The two largest units of ``td``, whole ones, truncated: ``89d 23h``, ``5h 12m``,
    ``42s``; under a second, milliseconds (``300ms``, ``0s`` for none). The second unit is the
    next smaller one and is left out when zero (``2h``, not ``2h 0m``); a negative duration
    gets a leading ``-``."""
    if td < timedelta(0):
        return "-" + human_duration(-td)
    if td < timedelta(seconds=1):
        ms = td // timedelta(milliseconds=1)
        return f"{ms}ms" if ms else "0s"
    seconds = int(td.total_seconds())
    for i, (unit, size) in enumerate(_UNITS):
        if seconds >= size:
            first, rest = divmod(seconds, size)
            text = f"{first}{unit}"
            if i + 1 < len(_UNITS):
                next_unit, next_size = _UNITS[i + 1]
                second = rest // next_size
                if second:
                    text += f" {second}{next_unit}"
            return text
    raise AssertionError("unreachable: the last unit is one second")


def seconds(td: timedelta) -> int:
    """Whole seconds, for ``--json`` (``age_s``, ``expires_in_s``...)."""
    return int(td.total_seconds())


def short_id(key_id: str) -> str:
    """The first :data:`SHORT_ID` characters of a key id, and ``…`` when there were more."""
    return key_id if len(key_id) <= SHORT_ID else key_id[:SHORT_ID] + "…"


def when(dt: datetime) -> str:
    """A time to the minute, in UTC: ``2027-03-02 09:00 UTC``."""
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def relative(dt: datetime, now: datetime) -> str:
    """``in 5h 12m`` or ``3m ago`` (``now`` when within a second)."""
    delta = dt - now
    if abs(delta) < timedelta(seconds=1):
        return "now"
    if delta > timedelta(0):
        return f"in {human_duration(delta)}"
    return f"{human_duration(-delta)} ago"


def align(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """``headers`` and ``rows`` as lines of left-aligned columns two spaces apart, with no
    trailing blanks."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in (headers, *rows)
    ]
