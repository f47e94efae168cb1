"""Pending points (pure): what is spendable, and when the rest becomes so."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from domain.expiry import expiring
from domain.pending import PointsRelease, pending_until, release_schedule, spendable_points

T0 = datetime(2026, 12, 1, tzinfo=UTC)

pending_entries = st.lists(
    st.tuples(st.integers(1, 60).map(lambda d: T0 + timedelta(days=d)), st.integers(0, 5_000)), max_size=8
)


def test_points_within_the_window_are_not_spendable() -> None:
    assert spendable_points(800, [(T0, 300)]) == 500
    assert spendable_points(800, []) == 800


def test_pending_larger_than_the_balance_leaves_nothing_spendable() -> None:
    # Earnings that repaid a debt still wait out their window: never spendable early.
    assert spendable_points(30, [(T0, 60)]) == 0
    assert release_schedule(30, [(T0, 60)]) == (PointsRelease(T0, 30),)


def test_releases_are_soonest_first_and_merge_equal_times() -> None:
    later, sooner = T0 + timedelta(days=9), T0 + timedelta(days=2)
    schedule = release_schedule(1_000, [(later, 200), (sooner, 100), (later, 50)])
    assert schedule == (PointsRelease(sooner, 100), PointsRelease(later, 250))


@given(balance=st.integers(0, 20_000), pending=pending_entries)
def test_spendable_plus_releases_is_the_balance(balance: int, pending: list[tuple[datetime, int]]) -> None:
    spendable = spendable_points(balance, pending)
    schedule = release_schedule(balance, pending)
    assert 0 <= spendable <= balance
    assert spendable + sum(r.points for r in schedule) == balance
    assert all(r.points > 0 for r in schedule)
    assert [r.available_at for r in schedule] == sorted({r.available_at for r in schedule})
    # Once every window has passed, everything is spendable.
    assert spendable_points(balance, []) == balance


def test_points_wait_whole_hours_so_a_busy_member_holds_one_amount_per_hour() -> None:
    assert pending_until(datetime(2026, 12, 1, 13, 5, 7, tzinfo=UTC), 14) == datetime(2026, 12, 15, 14, tzinfo=UTC)
    assert pending_until(datetime(2026, 12, 1, 13, 0, tzinfo=UTC), 14) == datetime(2026, 12, 15, 13, tzinfo=UTC)


def test_the_expiry_warning_counts_points_that_will_be_spendable_when_they_expire() -> None:
    last_sale = T0
    matured_by_then = [(T0 + timedelta(days=45), 329)]  # pending now, spendable long before the expiry on day 60
    still_pending = [(T0 + timedelta(days=90), 329)]
    on_day_35 = T0 + timedelta(days=35)
    warn = {"after_days": 60, "warn_days": 30}
    assert expiring(829, last_sale, on_day_35, pending=matured_by_then, **warn) == (829, T0 + timedelta(days=60))
    assert expiring(829, last_sale, on_day_35, pending=still_pending, **warn) == (500, T0 + timedelta(days=60))
    assert expiring(829, last_sale, T0 + timedelta(days=10), pending=matured_by_then, **warn) == (0, None)
