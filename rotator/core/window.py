"""Rotation windows: when rotations (and, in manual mode, requests to people) may start.

``ROTATOR_ROTATION_WINDOW`` holds one window, or several separated by ``;``::

    mon-fri 09:00-17:00 Europe/Berlin
    mon,wed,fri 22:00-02:00; sat-sun 00:00-24:00 America/New_York

Grammar (case-insensitive day names, tokens separated by spaces)::

    windows := window ( ";" window )*
    window  := days " " times [ " " zone ]
    days    := item ( "," item )*          each day at most once
    item    := day | day "-" day           a range runs forward and may wrap the week: fri-mon
    day     := mon | tue | wed | thu | fri | sat | sun
    times   := HH:MM "-" HH:MM             00:00 to 23:59; the end may also be 24:00
    zone    := an IANA time zone name      default UTC

- The days name the local day on which the window *opens*: ``fri 22:00-02:00`` opens on
  Friday at 22:00 and closes on Saturday at 02:00 (an end at or before the start spans
  midnight). ``00:00-24:00`` is the whole day; a start equal to the end is refused (write
  ``00:00-24:00`` for a whole day).
- Several windows are simply united: the window is open when any of them is.
- ``str(window)`` gives the canonical text back: lower-case days in week order from Monday,
  runs of consecutive days written as ranges (``fri-mon`` kept wrapped), the zone always named.

Daylight-saving time. A window opening on local day ``D`` at ``start`` is open from the first
instant at which the zone's clock reads ``D start`` or later, until the first instant at which
it reads the end (on ``D``, or on the next day when the window spans midnight) or later. So:

- spring forward (the clock skips, say, 02:00-03:00): a start or end the clock never shows
  is reached when the clock jumps; ``02:30-04:00`` opens at 03:00 that day, and a window lying
  wholly inside the skipped hour (``02:15-02:45``) does not open that day at all (if a key must
  not wait for the next one, :meth:`RotationWindow.must_override` says so);
- fall back (the clock shows, say, 01:00-02:00 twice): a time shown twice is taken at its first
  showing; ``01:30-02:30`` opens at the first 01:30 and stays open through the repeated hour,
  until 02:30 (two hours); ``00:30-01:30`` closes at the first 01:30 and does not open again.

Every instant taken or returned is a tz-aware UTC ``datetime``; naive ones are refused.
Zones come from :mod:`zoneinfo` (the system database, or the ``tzdata`` package).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from functools import cache, lru_cache
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rotator.core.vocab import utc

__all__ = [
    "DAYS", "RotationWindow", "Span", "Upcoming", "Verdict", "WindowState", "parse_window",
]

DAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""Day names, Monday first (index = ``date.weekday()``)."""

_MINUTES_PER_DAY: Final = 24 * 60
_TIME_RE: Final = re.compile(r"([0-9]{2}):([0-9]{2})")
# An occurrence opened on local day D ends by D+2 (a span past midnight, plus a DST hour);
# one opening on D+1 may hold an instant read as day D (a fall back across midnight).
_LOOK_BACK_DAYS: Final = 2
_LOOK_AHEAD_DAYS: Final = 16  # two weeks and a bit: past a weekly window lost to a DST gap
_ALWAYS_OPEN_AFTER: Final = timedelta(days=8)  # an unbroken open stretch this long never ends


def _shown(text: str) -> str:
    """``text`` quoted for an error message, cut short if long."""
    return repr(text if len(text) <= 60 else text[:57] + "...")


@cache
def _zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``, or ValueError naming it."""
    unknown = f"unknown time zone {_shown(name)}: expected an IANA name like Europe/Berlin"
    if not name or name.startswith(("/", ".")) or ".." in name:
        raise ValueError(unknown)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(unknown) from None


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _first_reading(local: datetime, zone: ZoneInfo) -> datetime:
    """The first instant (UTC) at which ``zone``'s clock reads the naive ``local`` or later.

    A time shown twice (fall back) is its first showing; a time skipped (spring forward) is
    the instant the clock jumps past it.
    """
    early = local.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if early.astimezone(zone).replace(tzinfo=None) == local:
        return early  # exists; fold=0 is the first of two showings
    # Skipped: fold=0 and fold=1 put it either side of the jump. Find the jump, to the second.
    late = local.replace(tzinfo=zone, fold=1).astimezone(UTC)
    lo, hi = sorted((int(early.timestamp()), int(late.timestamp())))
    # invariant: the clock reads before `local` at lo, at or after it at hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, zone).replace(tzinfo=None) >= local:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


@dataclass(frozen=True, slots=True)
class Span:
    """One window: on ``days`` (0 = Monday), from ``start`` to ``end`` local time in ``zone``.

    ``start`` and ``end`` are minutes after midnight: ``0 <= start < 1440``,
    ``0 <= end <= 1440``, ``end != start``; an end before the start falls on the next day.
    """

    days: frozenset[int]
    start: int
    end: int
    zone: str = "UTC"

    def __post_init__(self) -> None:
        if not self.days or not self.days <= frozenset(range(7)):
            raise ValueError("a window needs at least one day, each 0 (mon) to 6 (sun)")
        if not (0 <= self.start < _MINUTES_PER_DAY and 0 <= self.end <= _MINUTES_PER_DAY):
            raise ValueError("a window's times run from 00:00 to 24:00")
        if self.start == self.end:
            raise ValueError(
                f"empty time range {_clock(self.start)}-{_clock(self.end)}: "
                "for the whole day write 00:00-24:00"
            )
        _zone(self.zone)

    def __str__(self) -> str:
        return f"{_days_text(self.days)} {_clock(self.start)}-{_clock(self.end)} {self.zone}"

    def occurrence(self, day: date) -> tuple[datetime, datetime] | None:
        """The UTC interval ``[opens, closes)`` of the window opening on local ``day``, or None
        when it does not open that day (not one of its days, or lost to a DST jump)."""
        return _occurrence(self, day)

    def occurrences(
        self, now: datetime, before: int, after: int
    ) -> list[tuple[datetime, datetime]]:
        """Occurrences opening on local days from ``before`` days before ``now``'s local day to
        ``after`` days after it, in order."""
        today = now.astimezone(_zone(self.zone)).date()
        out = []
        for offset in range(-before, after + 1):
            interval = self.occurrence(today + timedelta(days=offset))
            if interval is not None:
                out.append(interval)
        return out


@lru_cache(maxsize=4096)
def _occurrence(span: Span, day: date) -> tuple[datetime, datetime] | None:
    if day.weekday() not in span.days:
        return None
    zone = _zone(span.zone)
    midnight = datetime.combine(day, time())
    end = span.end if span.end > span.start else span.end + _MINUTES_PER_DAY
    opens = _first_reading(midnight + timedelta(minutes=span.start), zone)
    closes = _first_reading(midnight + timedelta(minutes=end), zone)
    return (opens, closes) if opens < closes else None


def _days_text(days: frozenset[int]) -> str:
    """Canonical day list: runs of consecutive days (around the week) as ranges."""
    if len(days) == 7:
        return "mon-sun"
    # A run starts at a day whose previous day (around the week) is not in the set.
    runs = []
    for first in sorted(d for d in days if (d - 1) % 7 not in days):
        last = first
        while (last + 1) % 7 in days:
            last = (last + 1) % 7
        runs.append(DAYS[first] if last == first else f"{DAYS[first]}-{DAYS[last]}")
    return ",".join(runs)


class WindowState(StrEnum):
    """What a window says about starting a rotation now."""

    OPEN = "open"
    """Inside the window: go ahead."""
    CLOSED = "closed"
    """Outside it, and the key can wait until it opens."""
    OVERRIDDEN = "overridden"
    """Outside it, but the key would expire (within the margin) before it opens: go ahead,
    and log ``rotation.window_overridden``."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """The window's answer for one key at one moment (for the engine, ``plan`` and ``status``)."""

    state: WindowState
    opens_at: datetime
    """When the window next opens (``now`` when open)."""

    @property
    def may_start(self) -> bool:
        """A rotation may start now."""
        return self.state is not WindowState.CLOSED


@dataclass(frozen=True, slots=True)
class Upcoming:
    """The window as ``rotator plan`` and ``rotator status`` show it at one moment."""

    window: str
    """Its canonical text (``str(window)``)."""
    open: bool
    opens_at: datetime
    """When it next opens (the moment asked about, when open)."""
    closes_at: datetime | None
    """When the open stretch holding, or next after, that moment ends (None: never)."""

    def describe(self) -> dict[str, object]:
        """JSON-safe, times in ISO 8601 UTC."""
        closes = None if self.closes_at is None else self.closes_at.isoformat()
        return {
            "window": self.window,
            "open": self.open,
            "opens_at": self.opens_at.isoformat(),
            "closes_at": closes,
        }


@dataclass(frozen=True, slots=True)
class RotationWindow:
    """One or more :class:`Span` s, united. Build it with :func:`parse_window`."""

    spans: tuple[Span, ...]

    def __post_init__(self) -> None:
        if not self.spans:
            raise ValueError("a rotation window needs at least one span")

    def __str__(self) -> str:
        return "; ".join(str(span) for span in self.spans)

    def _containing(self, at: datetime) -> list[tuple[datetime, datetime]]:
        return [
            (opens, closes)
            for span in self.spans
            for opens, closes in span.occurrences(at, _LOOK_BACK_DAYS, 1)
            if opens <= at < closes
        ]

    def is_open(self, now: datetime) -> bool:
        """Whether a rotation may start at ``now`` (tz-aware)."""
        return bool(self._containing(utc(now)))

    def next_open(self, now: datetime) -> datetime:
        """The next moment the window opens: ``now`` itself if it is open (UTC)."""
        now = utc(now)
        if self._containing(now):
            return now
        upcoming = [
            opens
            for span in self.spans
            for opens, _ in span.occurrences(now, _LOOK_BACK_DAYS, _LOOK_AHEAD_DAYS)
            if opens > now
        ]
        if not upcoming:  # every span has a day each week, and DST takes at most one a year
            raise AssertionError(f"window {self} does not open within {_LOOK_AHEAD_DAYS} days")
        return min(upcoming)

    def next_close(self, now: datetime) -> datetime | None:
        """When the window next closes: the end of the open stretch holding ``now``, or, when
        closed, of the one starting at :meth:`next_open`. None if it never closes (the whole
        week, every day)."""
        at = self.next_open(now)
        limit = at + _ALWAYS_OPEN_AFTER
        while True:
            holding = self._containing(at)
            if not holding:
                return at
            at = max(closes for _, closes in holding)
            if at >= limit:
                return None

    def upcoming(self, now: datetime) -> Upcoming:
        """Whether it is open at ``now``, when it next opens and when that stretch closes."""
        opens_at = self.next_open(now)
        return Upcoming(str(self), opens_at == utc(now), opens_at, self.next_close(now))

    def verdict(self, now: datetime, expires_at: datetime, margin: timedelta) -> Verdict:
        """Whether a rotation of a key expiring at ``expires_at`` may start at ``now``.

        Open window: :attr:`WindowState.OPEN`. Closed: :attr:`WindowState.OVERRIDDEN` when the
        key's expiry, less ``margin`` (the time a rotation needs to finish and the consumers to
        pick the new key up), comes before the window next opens; otherwise
        :attr:`WindowState.CLOSED`.
        """
        now, expires_at = utc(now), utc(expires_at)
        if margin < timedelta(0):
            raise ValueError(f"margin must not be negative, got {margin}")
        opens_at = self.next_open(now)
        if opens_at == now:
            return Verdict(WindowState.OPEN, opens_at)
        if expires_at - margin < opens_at:
            return Verdict(WindowState.OVERRIDDEN, opens_at)
        return Verdict(WindowState.CLOSED, opens_at)

    def must_override(self, now: datetime, expires_at: datetime, margin: timedelta) -> bool:
        """The window is closed at ``now``, but a key expiring at ``expires_at`` must rotate
        anyway: its expiry less ``margin`` comes before the window next opens."""
        return self.verdict(now, expires_at, margin).state is WindowState.OVERRIDDEN


def _parse_day(text: str) -> int:
    try:
        return DAYS.index(text)
    except ValueError:
        raise ValueError(f"unknown day {_shown(text)}: use {' '.join(DAYS)}") from None


def _parse_days(text: str) -> frozenset[int]:
    days: set[int] = set()
    for item in text.lower().split(","):
        if not item:
            raise ValueError(f"empty day in {_shown(text)}: separate days with single commas")
        first, dash, last = item.partition("-")
        start = _parse_day(first)
        if not dash:
            named = [start]
        else:
            end = _parse_day(last)
            if end == start:
                raise ValueError(f"day range {_shown(item)} names one day: write {DAYS[start]!r}")
            named = [(start + i) % 7 for i in range((end - start) % 7 + 1)]
        for day in named:
            if day in days:
                raise ValueError(f"day {DAYS[day]!r} named twice in {_shown(text)}")
            days.add(day)
    return frozenset(days)


def _parse_time(text: str, *, end: bool) -> int:
    match = _TIME_RE.fullmatch(text)
    hours, minutes = (int(match.group(1)), int(match.group(2))) if match else (99, 99)
    if hours * 60 + minutes == _MINUTES_PER_DAY and minutes == 0 and end:
        return _MINUTES_PER_DAY
    if hours > 23 or minutes > 59:
        bounds = "00:00 to 24:00" if end else "00:00 to 23:59"
        raise ValueError(f"bad time {_shown(text)}: expected HH:MM, {bounds}")
    return hours * 60 + minutes


def _parse_span(text: str) -> Span:
    words = text.split()
    if len(words) not in (2, 3):
        raise ValueError(
            f"expected '<days> <HH:MM-HH:MM> [time zone]' like 'mon-fri 09:00-17:00 "
            f"Europe/Berlin', got {_shown(text.strip())}"
        )
    days = _parse_days(words[0])
    first, dash, last = words[1].partition("-")
    if not dash:
        raise ValueError(f"bad time range {_shown(words[1])}: expected HH:MM-HH:MM")
    start, end = _parse_time(first, end=False), _parse_time(last, end=True)
    zone = words[2] if len(words) == 3 else "UTC"
    return Span(days=days, start=start, end=end, zone=zone)


def parse_window(text: str) -> RotationWindow:
    """Parse ``ROTATOR_ROTATION_WINDOW`` (grammar in the module docstring).

    Raises ValueError with one line naming what is wrong; the caller prefixes the variable.
    """
    if not text.strip():
        raise ValueError("empty rotation window: expected e.g. 'mon-fri 09:00-17:00 Europe/Berlin'")
    parts = text.split(";")
    if any(not part.strip() for part in parts):
        raise ValueError(f"empty window between ';' in {_shown(text.strip())}")
    return RotationWindow(tuple(_parse_span(part) for part in parts))
