"""Hypothesis strategies for the state record, shared by the record's tests and its
transitions' tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import strategies as st

from rotator.core import keys
from rotator.core.state import (
    AccountState,
    BearerState,
    KeyRecord,
    KindState,
    LastRun,
    PauseRecord,
    Pending,
    Phase,
)
from rotator.core.vocab import KEY_KINDS

# A handful of real private keys, made once: generating one per example would be slow.
PRIVATE = [keys.generate(comment=f"k{i}").private_openssh for i in range(4)]

times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=0))
text = st.text(min_size=1, max_size=20)
ids = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
private = st.sampled_from(PRIVATE)
PHASES: tuple[Phase, ...] = ("intent", "registered")


@st.composite
def key_records(draw: st.DrawFn, *, retiring: bool = False) -> KeyRecord:
    issued = draw(times)
    return KeyRecord(
        key_id=draw(ids),
        key_hash=draw(text),
        public_key=draw(text),
        title=draw(text),
        origin=draw(st.sampled_from(["uploaded", "generated"])),
        issued_at=issued,
        expires_at=issued + timedelta(days=draw(st.integers(1, 400))),
        private_key=draw(private),
        retire_after=draw(times) if retiring else draw(st.none() | times),
    )


@st.composite
def pendings(draw: st.DrawFn) -> Pending:
    phase: Phase = draw(st.sampled_from(PHASES))
    full = phase == "registered"
    return Pending(
        phase=phase,
        title=draw(text),
        reason=draw(text),
        started_at=draw(times),
        key_id=draw(ids) if full else draw(st.none() | ids),
        public_key=draw(st.none() | text),
        key_hash=draw(st.none() | text),
        private_key=draw(private) if full else draw(st.none() | private),
    )


last_runs = st.builds(
    LastRun,
    outcome=text,
    at=times,
    reason=text,
    key_id=st.none() | ids,
    error=st.none() | text,
)

kind_states = st.builds(
    KindState,
    current=st.none() | key_records(),
    retiring=st.lists(key_records(retiring=True), max_size=3).map(tuple),
    pending=st.none() | pendings(),
    last=st.none() | last_runs,
    last_success=st.none() | times,
)

account_states = st.builds(
    AccountState,
    kinds=st.dictionaries(st.sampled_from(KEY_KINDS), kind_states, max_size=2),
    bearer=st.none() | st.builds(BearerState, issued_at=times, expires_at=times, minted_with=ids),
    version=st.integers(0, 1000),
    requested=st.frozensets(st.sampled_from(KEY_KINDS)),
    paused=st.none() | st.builds(PauseRecord, at=times, by=text, reason=st.none() | text),
    compromised=st.frozensets(ids, max_size=2),
)

# Instants as a clock gives them (microseconds and all), and grace periods.
instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
graces = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=30))
