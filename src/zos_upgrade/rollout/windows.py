"""Maintenance windows on a weekly calendar, in Zincati's shape (its ``periodic`` strategy), UTC.

A window is ``days`` (``"Mon"`` .. ``"Sun"``), a ``start_time`` ``"HH:MM"`` and a length in minutes;
it recurs every week on each of its days. As in Zincati the week is counted in minutes from Monday
00:00, and a window that runs past midnight goes on into the next day (past Sunday midnight: into
Monday). Unlike Zincati, whose windows also contain their end minute, a window here is the half-open
span ``[start, start + length)``: a 60-minute window opening at 22:30 admits 22:30:00 to 23:29:59.

A transaction *starts* only inside a window; one that started inside may run past its end (cutting
it short would be the disruption the window exists to avoid).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["DAYS", "WEEK", "Calendar", "Window", "parse_time"]

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
DAY = 86400
WEEK = 7 * DAY
# the Unix epoch (1970-01-01) was a Thursday: seconds since the epoch + 3 days is seconds since a Monday
_EPOCH_WEEKDAY_SHIFT = 3 * DAY


def parse_time(value: str) -> int:
    """``"HH:MM"`` (24-hour, two digits each) -> minutes after midnight; ValueError otherwise."""
    hours, sep, minutes = value.partition(":")
    if (not sep or len(hours) != 2 or len(minutes) != 2 or not hours.isdigit() or not minutes.isdigit()
            or not hours.isascii() or not minutes.isascii() or int(hours) > 23 or int(minutes) > 59):
        raise ValueError(f"{value!r} is not a time of day as HH:MM (00:00 to 23:59)")
    return int(hours) * 60 + int(minutes)


@dataclass(frozen=True)
class Window:
    """One configured window: on each of ``days`` from ``start_minute`` for ``length_minutes``."""

    days: tuple[str, ...]
    start_minute: int    # minutes after midnight
    length_minutes: int  # 1 to a week

    def spans(self) -> Iterable[tuple[int, int]]:
        """Its weekly spans as [start, end) seconds since Monday 00:00; a span past the week's end is
        split in two (its tail wraps to Monday)."""
        for day in self.days:
            start = DAYS.index(day) * DAY + self.start_minute * 60
            end = start + self.length_minutes * 60
            if end <= WEEK:
                yield start, end
            else:
                yield start, WEEK
                yield 0, end - WEEK


class Calendar:
    """Every configured window, merged into sorted, disjoint weekly spans."""

    def __init__(self, windows: Iterable[Window]) -> None:
        self.windows = tuple(windows)
        spans = sorted(span for w in self.windows for span in w.spans())
        merged: list[list[int]] = []
        for start, end in spans:
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        self.spans: tuple[tuple[int, int], ...] = tuple((s, e) for s, e in merged)

    def contains(self, now: float) -> bool:
        t = _in_week(now)
        # the spans wrap nothing (split at the week's end), so a plain search finds the one holding t
        return any(start <= t < end for start, end in self.spans)

    def next_open(self, now: float) -> float | None:
        """``now`` when inside a window, else when the next one opens; None: no window at all."""
        if not self.spans:
            return None
        if self.contains(now):
            return now
        t = _in_week(now)
        week_start = now - t
        for start, _end in self.spans:
            if start > t:
                return week_start + start
        return week_start + WEEK + self.spans[0][0]  # the first window of next week

    def closes_at(self, now: float) -> float | None:
        """When the window holding ``now`` closes (None outside every window)."""
        t = _in_week(now)
        for start, end in self.spans:
            if start <= t < end:
                if end == WEEK and self.spans[0][0] == 0:  # runs on into Monday's span
                    return now - t + WEEK + self.spans[0][1]
                return now - t + end
        return None


def _in_week(now: float) -> float:
    """Seconds since the last Monday 00:00 UTC."""
    return (now + _EPOCH_WEEKDAY_SHIFT) % WEEK
