"""This host's clock against Vault's: brackets from ``Date`` headers, narrowed over answers,
reset by a clock step, aged out; and the hook the real Vault client carries."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

from rotator.adapters.vault import VaultStore
from rotator.adapters.vault.clock import MAX_AGE, VAULT_CLOCK, ClockOffset


class Host:
    """A host whose clock reads ``offset`` seconds ahead of Vault's, and one Vault."""

    def __init__(self, offset: float) -> None:
        self.offset = offset
        self.vault = 1_800_000_000.0  # Vault's true time
        self.mono = 0.0
        self.measure = ClockOffset(clock=lambda: self.vault + self.offset, monotonic=self.now)

    def now(self) -> float:
        return self.mono

    def answer(self, at_fraction: float, rtt: float = 0.02) -> None:
        """One request answered by Vault at ``at_fraction`` of a second, ``rtt`` round trip."""
        self.vault = float(int(self.vault) + 1) + at_fraction
        self.mono += 1.0
        date = format_datetime(datetime.fromtimestamp(self.vault, UTC), usegmt=True)
        host = self.vault + self.offset
        self.measure.observe(date, sent=host - rtt / 2, received=host + rtt / 2)


def test_one_answer_brackets_the_offset_within_a_second() -> None:
    """Date names the whole second: one answer brackets the offset by about one second."""
    host = Host(offset=0.0)
    assert host.measure.bounds() is None and host.measure.beyond(0.1) is None
    host.answer(0.3)
    lo, hi = host.measure.bounds()  # type: ignore[misc]
    assert lo <= 0.0 <= hi and 0.9 < hi - lo < 1.1


def test_answers_at_different_fractions_narrow_it_to_a_round_trip() -> None:
    """A clock 5 s ahead: a few answers pin the offset near -5 s, and it is surely beyond a
    1 s tolerance (the nearer edge is answered); a correct clock is within 0.1 s."""
    ahead, right = Host(offset=5.0), Host(offset=0.0)
    for fraction in (0.05, 0.5, 0.95, 0.25, 0.75):
        ahead.answer(fraction)
        right.answer(fraction)
    lo, hi = ahead.measure.bounds()  # type: ignore[misc]
    assert lo <= -5.0 <= hi and hi - lo < 0.15
    assert ahead.measure.beyond(1.0) == hi
    assert right.measure.beyond(0.1) is None


def test_a_clock_step_is_followed_and_old_answers_age_out() -> None:
    """After the host's clock is stepped, answers that disagree with the newest are dropped;
    answers older than MAX_AGE are forgotten."""
    host = Host(offset=0.0)
    for fraction in (0.1, 0.6, 0.9):
        host.answer(fraction)
    host.offset = 3.0  # stepped
    host.answer(0.4)
    lo, hi = host.measure.bounds()  # type: ignore[misc]
    assert lo <= -3.0 <= hi
    assert host.measure.beyond(1.0) is not None
    host.mono += MAX_AGE + 1
    assert host.measure.bounds() is None


def test_unreadable_or_missing_dates_are_ignored() -> None:
    """No header, a header that is no date, or a reply before its request: nothing learnt."""
    measure = ClockOffset()
    measure.observe(None, sent=1.0, received=2.0)
    measure.observe("soon", sent=1.0, received=2.0)
    measure.observe("Tue, 01 Dec 2026 10:00:00 GMT", sent=2.0, received=1.0)
    assert measure.bounds() is None


def test_the_vault_client_measures_every_answer(vault_store: VaultStore) -> None:
    """rotator's hvac client feeds the process's measure: after answers from the real
    OpenBao on this host, the bracket holds 0 and no skew is found."""
    vault_store.write("alpha/state", {"x": 1}, cas=0)
    for _ in range(5):
        vault_store.read("alpha/state")
    found = VAULT_CLOCK.bounds()
    assert found is not None
    lo, hi = found
    assert lo <= 0.0 <= hi
    assert VAULT_CLOCK.beyond(1.0) is None
