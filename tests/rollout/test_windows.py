"""Maintenance windows: inside or not, when the next opens, across midnight and the week's end."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zos_upgrade.rollout.windows import DAYS, WEEK, Calendar, Window, parse_time


def at(day: int, hh: int, mm: int, ss: int = 0) -> float:
    """2026-11-30 is a Monday: ``day`` 0 is Monday of that week."""
    return datetime(2026, 11, 30, hh, mm, ss, tzinfo=UTC).timestamp() + day * 86400


WEEKEND = Calendar([Window(("Sat", "Sun"), parse_time("22:30"), 60)])


def test_inside_and_outside_a_window() -> None:
    assert not WEEKEND.contains(at(5, 22, 29, 59))
    assert WEEKEND.contains(at(5, 22, 30))
    assert WEEKEND.contains(at(5, 23, 29, 59))
    assert not WEEKEND.contains(at(5, 23, 30))  # half-open: the end is outside
    assert not WEEKEND.contains(at(2, 22, 45))  # a Wednesday


def test_next_open_this_week_next_week_and_now() -> None:
    assert WEEKEND.next_open(at(0, 9, 0)) == at(5, 22, 30)
    assert WEEKEND.next_open(at(5, 23, 45)) == at(6, 22, 30)
    assert WEEKEND.next_open(at(6, 23, 45)) == at(12, 22, 30)  # Saturday of the next week
    inside = at(6, 22, 40)
    assert WEEKEND.next_open(inside) == inside


def test_a_window_crossing_midnight_and_the_weeks_end() -> None:
    cal = Calendar([Window(("Sun",), parse_time("23:00"), 120)])
    assert cal.contains(at(6, 23, 30))
    assert cal.contains(at(7, 0, 59))        # Monday of the next week, past Sunday midnight
    assert not cal.contains(at(7, 1, 0))
    assert cal.contains(at(0, 0, 30))        # and this week's Monday too: it recurs
    assert cal.closes_at(at(6, 23, 30)) == at(7, 1, 0)
    assert cal.next_open(at(7, 1, 0)) == at(13, 23, 0)


def test_no_window_never_opens() -> None:
    assert Calendar([]).next_open(at(0, 0, 0)) is None


@pytest.mark.parametrize("bad", ["24:00", "9:30", "12:60", "12-30", "", "１２:３０", "12:30:00"])
def test_parse_time_refuses(bad: str) -> None:
    with pytest.raises(ValueError, match="HH:MM"):
        parse_time(bad)


windows = st.builds(Window, st.lists(st.sampled_from(DAYS), min_size=1, max_size=7, unique=True).map(tuple),
                    st.integers(0, 1439), st.integers(1, 3 * 1440))


@given(st.lists(windows, min_size=1, max_size=4), st.floats(1.7e9, 1.9e9))
def test_next_open_is_inside_and_nothing_before_it_is(ws: list[Window], now: float) -> None:
    cal = Calendar(ws)
    opens = cal.next_open(now)
    assert opens is not None and now <= opens < now + WEEK
    assert cal.contains(opens)
    if opens > now:  # the instant before it, and now, are outside
        assert not cal.contains(opens - 1e-3) and not cal.contains(now)
