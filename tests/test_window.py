"""Rotation windows (rotator.core.window): the grammar, the open/next-open/next-close
arithmetic as hypothesis properties, daylight-saving transitions and odd zones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rotator.core.window import DAYS, RotationWindow, Span, WindowState, parse_window


def at(text: str) -> datetime:
    """A UTC instant from ``YYYY-MM-DD HH:MM``."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


# --- grammar ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("mon-fri 09:00-17:00 Europe/Berlin", "mon-fri 09:00-17:00 Europe/Berlin"),
        ("mon-fri 09:00-17:00", "mon-fri 09:00-17:00 UTC"),
        ("MON,Wed,fri 09:00-17:00 UTC", "mon,wed,fri 09:00-17:00 UTC"),
        ("fri-mon 22:00-02:00", "fri-mon 22:00-02:00 UTC"),
        ("sat 00:00-24:00 Asia/Tokyo", "sat 00:00-24:00 Asia/Tokyo"),
        ("tue-mon 10:00-11:00", "mon-sun 10:00-11:00 UTC"),
        ("mon,tue,wed 10:00-11:00", "mon-wed 10:00-11:00 UTC"),
        ("sun,mon,wed 01:00-02:00", "wed,sun-mon 01:00-02:00 UTC"),
        ("mon-tue,thu 23:59-00:01", "mon-tue,thu 23:59-00:01 UTC"),
        (
            "  mon-fri   09:00-17:00  Europe/Berlin ;sat 10:00-12:00 America/New_York ",
            "mon-fri 09:00-17:00 Europe/Berlin; sat 10:00-12:00 America/New_York",
        ),
    ],
)
def test_good_windows_parse_to_their_canonical_text(text: str, canonical: str) -> None:
    """Each accepted form reads back as one canonical text, which itself parses to the same."""
    window = parse_window(text)
    assert str(window) == canonical
    assert parse_window(canonical) == window


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty rotation window"),
        ("   ", "empty rotation window"),
        ("mon", "expected '<days> <HH:MM-HH:MM> [time zone]'"),
        ("mon 09:00-10:00 UTC extra", "got 'mon 09:00-10:00 UTC extra'"),
        ("monday 09:00-10:00", "unknown day 'monday'"),
        ("mon-fr 09:00-10:00", "unknown day 'fr'"),
        ("mon-mon 09:00-10:00", "day range 'mon-mon' names one day"),
        ("mon-wed,tue 09:00-10:00", "day 'tue' named twice"),
        ("mon,,tue 09:00-10:00", "empty day in 'mon,,tue'"),
        ("mon, 09:00-10:00", "empty day in 'mon,'"),
        ("mon 9:00-10:00", "bad time '9:00'"),
        ("mon 09:00-25:00", "bad time '25:00'"),
        ("mon 09:60-10:00", "bad time '09:60'"),
        ("mon 24:00-01:00", "bad time '24:00': expected HH:MM, 00:00 to 23:59"),
        ("mon 09:00-24:01", "bad time '24:01'"),
        ("mon 0900-1000", "bad time '0900'"),
        ("mon 09:00", "bad time range '09:00'"),
        ("mon 09:00-09:00", "empty time range 09:00-09:00"),
        ("mon 00:00-00:00", "for the whole day write 00:00-24:00"),
        ("mon 09:00-10:00 Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
        ("mon 09:00-10:00 Europe", "unknown time zone 'Europe'"),
        ("mon 09:00-10:00 ../../etc/passwd", "unknown time zone '../../etc/passwd'"),
        ("mon 09:00-10:00 /etc/localtime", "unknown time zone '/etc/localtime'"),
        ("mon 09:00-10:00 +01:00", "unknown time zone '+01:00'"),
        ("mon 09:00-10:00;", "empty window between ';'"),
        ("mon 09:00-10:00;;tue 09:00-10:00", "empty window between ';'"),
        ("x" * 500, "..."),
    ],
)
def test_bad_windows_are_refused_in_one_line_naming_the_fault(text: str, says: str) -> None:
    """Every bad input raises ValueError: one line, naming the offending part, kept short."""
    with pytest.raises(ValueError) as caught:
        parse_window(text)
    message = str(caught.value)
    assert says in message
    assert "\n" not in message
    assert len(message) < 200


def test_naive_datetimes_are_refused() -> None:
    """Every instant taken must be tz-aware; a naive one is an error, not a guess."""
    window = parse_window("mon-fri 09:00-17:00 Europe/Berlin")
    naive = datetime(2026, 3, 2, 10, 0)
    for call in (window.is_open, window.next_open, window.next_close):
        with pytest.raises(ValueError, match="naive"):
            call(naive)
    with pytest.raises(ValueError, match="naive"):
        window.must_override(at("2026-03-02 10:00"), naive, timedelta(0))


def test_aware_non_utc_instants_are_read_as_the_same_moment() -> None:
    """An aware instant in another zone means the same moment; answers come back in UTC."""
    window = parse_window("mon 09:00-10:00 Europe/Berlin")
    berlin = ZoneInfo("Europe/Berlin")
    assert window.is_open(datetime(2026, 3, 2, 9, 30, tzinfo=berlin))
    assert not window.is_open(datetime(2026, 3, 2, 9, 30, tzinfo=UTC))
    opens = window.next_open(datetime(2026, 3, 2, 7, 0, tzinfo=berlin))
    assert opens == at("2026-03-02 08:00") and opens.tzinfo is UTC


# --- properties ------------------------------------------------------------------------------

# Zones with and without DST, a half-hour DST (Lord Howe), a +05:45 offset (Kathmandu), the
# southern hemisphere, and Santiago, whose clocks change at local midnight.
ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Sydney",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "Asia/Tokyo",
    "America/Santiago",
]
# Every zone above changes offset only at quarter hours (UTC) and by multiples of 15 minutes,
# so with start and end times on quarter hours every opening and closing instant falls on a
# UTC quarter hour: a 15-minute grid then visits every open stretch (each lasts >= 15 min).
QUARTER = timedelta(minutes=15)


@st.composite
def span_values(draw: st.DrawFn) -> Span:
    """A span with quarter-hour times in one of ZONES."""
    start = draw(st.integers(0, 95)) * 15
    end = draw(st.integers(0, 96).filter(lambda q: q * 15 != start)) * 15
    days = draw(st.frozensets(st.integers(0, 6), min_size=1))
    return Span(days=days, start=start, end=end, zone=draw(st.sampled_from(ZONES)))


windows = st.lists(span_values(), min_size=1, max_size=3).map(
    lambda spans: RotationWindow(tuple(spans))
)

# Days around DST changes (2026) in the zones above, so the properties meet them often.
TRANSITIONS = [
    at("2026-03-08 07:00"),  # New York, spring forward
    at("2026-03-29 01:00"),  # Berlin, spring forward
    at("2026-04-04 15:00"),  # Sydney / Lord Howe, fall back
    at("2026-04-05 03:00"),  # Santiago, fall back (midnight local)
    at("2026-09-06 04:00"),  # Santiago, spring forward (midnight local)
    at("2026-10-03 16:00"),  # Sydney / Lord Howe, spring forward
    at("2026-10-25 01:00"),  # Berlin, fall back
    at("2026-11-01 06:00"),  # New York, fall back
]
instants = st.one_of(
    st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31), timezones=st.just(UTC)
    ),
    st.builds(
        lambda base, seconds: base + timedelta(seconds=seconds),
        st.sampled_from(TRANSITIONS),
        st.integers(-3 * 86400, 3 * 86400),
    ),
)


def quarter_hours(start: datetime, stop: datetime) -> list[datetime]:
    """UTC quarter hours in ``[start, stop)``."""
    first = start.replace(minute=start.minute - start.minute % 15, second=0, microsecond=0)
    if first < start:
        first += QUARTER
    out = []
    while first < stop:
        out.append(first)
        first += QUARTER
    return out


@given(windows)
def test_canonical_text_round_trips(window: RotationWindow) -> None:
    """``str(window)`` parses back to an equal window and is a fixed point."""
    again = parse_window(str(window))
    assert again == window
    assert str(again) == str(window)


@settings(max_examples=150)
@given(windows, instants)
def test_next_open_is_open_and_nothing_before_it_is(window: RotationWindow, now: datetime) -> None:
    """next_open(now) is open and not before now; it is now exactly when now is open; and
    when now is closed, no moment between now and next_open is open (on the exhaustive
    quarter-hour grid)."""
    opens = window.next_open(now)
    assert opens >= now and opens.tzinfo is UTC
    assert window.is_open(opens)
    assert (opens == now) == window.is_open(now)
    if opens > now:
        for moment in quarter_hours(now, opens):
            assert not window.is_open(moment), moment
        assert not window.is_open(opens - timedelta(seconds=1))


@settings(max_examples=150)
@given(windows, instants)
def test_next_close_ends_the_open_stretch(window: RotationWindow, now: datetime) -> None:
    """next_close(now) comes after next_open(now); everything from next_open up to it is open
    (quarter-hour grid, and the second before), and it is itself closed."""
    opens = window.next_open(now)
    closes = window.next_close(now)
    if closes is None:  # only a window open every minute of the week never closes
        assert all(window.is_open(m) for m in quarter_hours(now, now + timedelta(days=8)))
        return
    assert closes > opens and closes.tzinfo is UTC
    assert not window.is_open(closes)
    assert window.is_open(closes - timedelta(seconds=1))
    for moment in quarter_hours(opens, closes):
        assert window.is_open(moment), moment
    assert window.next_open(closes) > closes


def wall_clock_open(span: Span, local: datetime) -> bool:
    """The obvious reading of a span, valid wherever the clock runs evenly: open when the
    local weekday and time fall in it (a span past midnight belongs to its opening day)."""
    minute = local.hour * 60 + local.minute
    today, yesterday = local.weekday(), (local.weekday() - 1) % 7
    if span.end > span.start:
        return today in span.days and span.start <= minute < span.end
    return (today in span.days and minute >= span.start) or (
        yesterday in span.days and minute < span.end
    )


@given(span_values(), instants)
def test_away_from_dst_changes_the_window_is_the_wall_clock(span: Span, now: datetime) -> None:
    """Where the zone's offset is the same for two days either side, a window is open exactly
    when the local weekday and clock time say so (an oracle independent of the code)."""
    zone = ZoneInfo(span.zone)
    offsets = {(now + timedelta(hours=h)).astimezone(zone).utcoffset() for h in range(-48, 49)}
    if len(offsets) == 1:
        assert RotationWindow((span,)).is_open(now) == wall_clock_open(span, now.astimezone(zone))


@given(windows, instants, st.integers(0, 30 * 86400), st.integers(0, 3 * 86400))
def test_override_exactly_when_expiry_would_pass_before_the_window_opens(
    window: RotationWindow, now: datetime, expires_in: int, margin_s: int
) -> None:
    """must_override holds iff the window is closed now and expiry less the margin comes
    before it next opens; the verdict carries the same answer and the opening time."""
    expires_at, margin = now + timedelta(seconds=expires_in), timedelta(seconds=margin_s)
    verdict = window.verdict(now, expires_at, margin)
    opens = window.next_open(now)
    expected = not window.is_open(now) and expires_at - margin < opens
    assert window.must_override(now, expires_at, margin) == expected
    assert verdict.opens_at == opens
    assert verdict.may_start == (window.is_open(now) or expected)


# --- examples: plain days, midnight, the week's wrap -----------------------------------------


def test_office_hours_in_berlin() -> None:
    """mon-fri 09:00-17:00 Europe/Berlin: open Monday 10:00 local, shut at the weekend, and
    the weekend's next opening is Monday 09:00 local."""
    window = parse_window("mon-fri 09:00-17:00 Europe/Berlin")
    assert window.is_open(at("2026-03-02 09:00"))  # Monday 10:00 CET
    assert not window.is_open(at("2026-03-02 16:00"))  # Monday 17:00 CET: the end is excluded
    assert window.is_open(at("2026-03-02 15:59"))
    assert not window.is_open(at("2026-03-07 12:00"))  # Saturday
    assert window.next_open(at("2026-03-07 12:00")) == at("2026-03-09 08:00")
    assert window.next_close(at("2026-03-07 12:00")) == at("2026-03-09 16:00")
    assert window.next_close(at("2026-03-09 10:00")) == at("2026-03-09 16:00")


def test_a_span_past_midnight_belongs_to_its_opening_day_and_wraps_the_week() -> None:
    """fri-mon 22:00-02:00: Monday's night runs into Tuesday 01:59; Tuesday's evening stays
    shut; Thursday's night does not open."""
    window = parse_window("fri-mon 22:00-02:00")
    assert window.is_open(at("2026-03-03 01:59"))  # Tuesday early: Monday's night
    assert not window.is_open(at("2026-03-03 02:00"))
    assert not window.is_open(at("2026-03-03 23:00"))  # Tuesday night: not a window day
    assert not window.is_open(at("2026-03-06 01:00"))  # Friday early: Thursday's night
    assert window.is_open(at("2026-03-06 22:00"))
    assert window.next_open(at("2026-03-03 02:00")) == at("2026-03-06 22:00")


def test_next_close_follows_an_unbroken_stretch_across_days_and_spans() -> None:
    """Back-to-back days and overlapping spans make one open stretch; next_close is its end.
    A window open all week never closes."""
    assert parse_window("mon-tue 00:00-24:00").next_close(at("2026-03-02 10:00")) == at(
        "2026-03-04 00:00"
    )
    overlapping = parse_window("mon 09:00-12:00; mon 11:00-13:00 UTC")
    assert overlapping.next_close(at("2026-03-02 09:30")) == at("2026-03-02 13:00")
    always = parse_window("mon-sun 00:00-24:00 Europe/Berlin")
    assert always.next_close(at("2026-03-29 01:00")) is None
    nearly_always = parse_window("mon-sun 12:00-11:45")
    assert nearly_always.next_close(at("2026-03-02 12:00")) == at("2026-03-03 11:45")


def test_spans_in_different_zones_unite() -> None:
    """Each span keeps its own zone; the window is open when any is."""
    window = parse_window("mon 09:00-10:00 Asia/Tokyo; mon 09:00-10:00 America/New_York")
    assert window.is_open(at("2026-03-02 00:30"))  # 09:30 in Tokyo
    assert window.is_open(at("2026-03-02 14:30"))  # 09:30 in New York (EST)
    assert not window.is_open(at("2026-03-02 08:00"))
    assert window.next_open(at("2026-03-02 01:00")) == at("2026-03-02 14:00")


def test_a_quarter_hour_offset_zone() -> None:
    """Asia/Kathmandu is UTC+05:45: 09:00 there is 03:15 UTC."""
    window = parse_window("wed 09:00-09:30 Asia/Kathmandu")
    assert window.next_open(at("2026-03-02 00:00")) == at("2026-03-04 03:15")
    assert window.next_close(at("2026-03-02 00:00")) == at("2026-03-04 03:45")


# --- daylight-saving time --------------------------------------------------------------------


def test_office_hours_keep_local_time_across_a_dst_change() -> None:
    """09:00 Berlin is 08:00 UTC before 29 March 2026 and 07:00 UTC after it."""
    window = parse_window("mon-fri 09:00-17:00 Europe/Berlin")
    assert window.next_open(at("2026-03-27 00:00")) == at("2026-03-27 08:00")
    assert window.next_open(at("2026-03-28 00:00")) == at("2026-03-30 07:00")
    assert window.next_close(at("2026-03-28 00:00")) == at("2026-03-30 15:00")


def test_spring_forward_a_skipped_start_opens_when_the_clock_jumps() -> None:
    """Berlin, 29 March 2026, 02:00 CET -> 03:00 CEST: sun 02:30-04:00 opens at the jump
    (03:00 CEST = 01:00 UTC) and closes at 04:00 CEST; the next Sunday it opens at 02:30."""
    window = parse_window("sun 02:30-04:00 Europe/Berlin")
    assert window.next_open(at("2026-03-28 00:00")) == at("2026-03-29 01:00")
    assert window.next_close(at("2026-03-28 00:00")) == at("2026-03-29 02:00")
    assert not window.is_open(at("2026-03-29 00:59"))
    assert window.next_open(at("2026-03-30 00:00")) == at("2026-04-05 00:30")


def test_spring_forward_a_window_inside_the_skipped_hour_does_not_open_that_day() -> None:
    """sun 02:15-02:45 Berlin: none of its times exist on 29 March 2026, so it next opens a
    week later; must_override lets a key that cannot wait that long rotate."""
    window = parse_window("sun 02:15-02:45 Europe/Berlin")
    now = at("2026-03-28 12:00")
    assert window.next_open(now) == at("2026-04-05 00:15")
    assert not any(window.is_open(m) for m in quarter_hours(now, at("2026-03-30 00:00")))
    assert window.must_override(now, at("2026-04-03 00:00"), timedelta(days=1))
    assert not window.must_override(now, at("2026-04-10 00:00"), timedelta(days=1))


def test_spring_forward_a_span_past_midnight_is_an_hour_shorter() -> None:
    """sat 22:00-06:00 Berlin across the change: 21:00 UTC to 04:00 UTC, seven hours."""
    window = parse_window("sat 22:00-06:00 Europe/Berlin")
    assert window.next_open(at("2026-03-28 12:00")) == at("2026-03-28 21:00")
    assert window.next_close(at("2026-03-28 12:00")) == at("2026-03-29 04:00")


def test_fall_back_a_repeated_start_opens_at_its_first_showing_and_stays_open() -> None:
    """New York, 1 November 2026, 02:00 EDT -> 01:00 EST: sun 01:30-02:30 opens at the first
    01:30 (05:30 UTC) and stays open through the repeated hour until 02:30 EST (07:30 UTC)."""
    window = parse_window("sun 01:30-02:30 America/New_York")
    now = at("2026-10-31 12:00")
    assert window.next_open(now) == at("2026-11-01 05:30")
    assert window.next_close(now) == at("2026-11-01 07:30")
    assert window.is_open(at("2026-11-01 06:10"))  # 01:10 EST, the second showing


def test_fall_back_a_repeated_end_closes_at_its_first_showing_and_does_not_reopen() -> None:
    """sun 00:30-01:30 New York closes at the first 01:30 (05:30 UTC); the clock shows
    01:00-01:30 again an hour later, and the window stays shut."""
    window = parse_window("sun 00:30-01:30 America/New_York")
    now = at("2026-10-31 12:00")
    assert window.next_open(now) == at("2026-11-01 04:30")
    assert window.next_close(now) == at("2026-11-01 05:30")
    assert not window.is_open(at("2026-11-01 06:10"))  # 01:10 EST
    assert window.next_open(at("2026-11-01 05:30")) == at("2026-11-08 05:30")


def test_fall_back_in_berlin_a_window_over_the_repeated_hour_lasts_two_hours() -> None:
    """Berlin, 25 October 2026, 03:00 CEST -> 02:00 CET: sun 02:30-03:30 runs from 02:30
    CEST (00:30 UTC) to 03:30 CET (02:30 UTC)."""
    window = parse_window("sun 02:30-03:30 Europe/Berlin")
    assert window.next_open(at("2026-10-24 00:00")) == at("2026-10-25 00:30")
    assert window.next_close(at("2026-10-24 00:00")) == at("2026-10-25 02:30")


def test_a_clock_change_at_midnight() -> None:
    """Santiago springs forward at 24:00 on 5 September 2026 (to 01:00 on the 6th): a window
    starting at 00:00 that Sunday opens at the jump, 04:00 UTC."""
    window = parse_window("sun 00:00-02:00 America/Santiago")
    assert window.next_open(at("2026-09-05 12:00")) == at("2026-09-06 04:00")
    assert window.next_close(at("2026-09-05 12:00")) == at("2026-09-06 05:00")


# --- verdicts --------------------------------------------------------------------------------


def test_verdicts() -> None:
    """Open: go. Closed with time to spare: wait, saying when. Closed with expiry near:
    overridden. The margin boundary is strict (expiry - margin == opening waits)."""
    window = parse_window("mon 09:00-10:00")
    monday, tuesday = at("2026-03-02 09:30"), at("2026-03-03 12:00")
    far = at("2026-04-01 00:00")
    assert window.verdict(monday, far, timedelta(0)).state is WindowState.OPEN
    closed = window.verdict(tuesday, far, timedelta(days=1))
    assert closed.state is WindowState.CLOSED and not closed.may_start
    assert closed.opens_at == at("2026-03-09 09:00")
    near = window.verdict(tuesday, at("2026-03-09 12:00"), timedelta(days=1))
    assert near.state is WindowState.OVERRIDDEN and near.may_start
    edge = window.verdict(tuesday, at("2026-03-10 09:00"), timedelta(days=1))
    assert edge.state is WindowState.CLOSED
    expired = window.verdict(tuesday, at("2026-03-01 00:00"), timedelta(0))
    assert expired.state is WindowState.OVERRIDDEN
    with pytest.raises(ValueError, match="margin"):
        window.verdict(tuesday, far, timedelta(seconds=-1))


def test_days_are_indexed_from_monday() -> None:
    """DAYS lines up with date.weekday() (the canonical text relies on it)."""
    assert [DAYS[at(f"2026-03-0{d} 00:00").weekday()] for d in range(2, 9)] == list(DAYS)
