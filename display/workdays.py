"""Working-day arithmetic on the Chinese holiday calendar.

`chinesecalendar` knows the State Council's holidays and adjusted workdays
(调休) for the years it was built with. For a year it does not know yet we
fall back to Monday-Friday plus the configured extra holidays and workdays,
and say so (`estimated`) instead of failing: a case received in December must
still get a due date in January.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import chinese_calendar


@dataclass(frozen=True)
class DueDate:
    due: date
    estimated: bool  # True when any day counted lies in a year the calendar has no data for


class WorkCalendar:
    def __init__(
        self, extra_holidays: tuple[date, ...] = (), extra_workdays: tuple[date, ...] = ()
    ) -> None:
        self._holidays = frozenset(extra_holidays)
        self._workdays = frozenset(extra_workdays)
        self._known_years: dict[int, bool] = {}
        # chinese_calendar scans its tables on every call; a ledger import asks about
        # the same few hundred days hundreds of thousands of times.
        self._days: dict[date, tuple[bool, bool]] = {}
        self._added: dict[tuple[date, int], DueDate] = {}

    def knows(self, year: int) -> bool:
        if year not in self._known_years:
            try:
                chinese_calendar.is_workday(date(year, 6, 1))
                self._known_years[year] = True
            except NotImplementedError:
                self._known_years[year] = False
        return self._known_years[year]

    def is_workday(self, day: date) -> tuple[bool, bool]:
        """(is it a working day, was that estimated)."""
        cached = self._days.get(day)
        if cached is None:
            cached = self._days[day] = self._is_workday(day)
        return cached

    def _is_workday(self, day: date) -> tuple[bool, bool]:
        if day in self._workdays:
            return True, False
        if day in self._holidays:
            return False, False
        if self.knows(day.year):
            return bool(chinese_calendar.is_workday(day)), False
        return day.weekday() < 5, True

    def add_workdays(self, start: date, n: int) -> DueDate:
        """The n-th working day after `start` (the day of receipt does not count)."""
        key = (start, n)
        cached = self._added.get(key)
        if cached is None:
            cached = self._added[key] = self._add_workdays(start, n)
        return cached

    def _add_workdays(self, start: date, n: int) -> DueDate:
        day = start
        left = n
        estimated = False
        while left > 0:
            day += timedelta(days=1)
            ok, est = self.is_workday(day)
            estimated = estimated or est
            if ok:
                left -= 1
        return DueDate(day, estimated)

    def workdays_between(self, start: date, end: date) -> int:
        """Working days in (start, end]; negative when end is before start."""
        if end == start:
            return 0
        sign = 1
        if end < start:
            start, end, sign = end, start, -1
        count = 0
        day = start
        while day < end:
            day += timedelta(days=1)
            if self.is_workday(day)[0]:
                count += 1
        return sign * count
