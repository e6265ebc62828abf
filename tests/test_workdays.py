from __future__ import annotations

from datetime import date
from pathlib import Path

from display.ingest import Ingestor
from display.settings import parse
from display.store.sqlite import SqliteStore
from display.workdays import WorkCalendar
from feeds.record import record_from_mapping
from tests.conftest import settings_dict


def test_adjusted_workdays_of_2026_count() -> None:
    cal = WorkCalendar()
    # Saturday 2026-02-14 and Saturday 2026-09-20/10-10 are adjusted workdays (调休).
    assert cal.is_workday(date(2026, 2, 14)) == (True, False)
    assert cal.is_workday(date(2026, 10, 10)) == (True, False)
    # National Day and the Spring Festival are not.
    assert cal.is_workday(date(2026, 10, 1)) == (False, False)
    assert cal.is_workday(date(2026, 2, 17)) == (False, False)
    # Five working days from Friday 2026-10-09: Sat 10-10 counts, so Thu 10-15.
    assert cal.add_workdays(date(2026, 10, 9), 5).due == date(2026, 10, 15)


def test_case_received_in_december_gets_an_estimated_due_date() -> None:
    cal = WorkCalendar()
    due = cal.add_workdays(date(2026, 12, 20), 30)
    assert due.estimated is True
    assert due.due.year == 2027
    # Within 2026 only: not estimated.
    assert cal.add_workdays(date(2026, 12, 1), 5).estimated is False


def test_configured_extra_days_override_the_fallback() -> None:
    plain = WorkCalendar().add_workdays(date(2026, 12, 30), 3).due
    cal = WorkCalendar(extra_holidays=(date(2027, 1, 1),), extra_workdays=())
    assert plain == date(2027, 1, 4)  # Thu 31, Fri 1, Mon 4 (estimated: weekdays)
    assert cal.add_workdays(date(2026, 12, 30), 3).due == date(2027, 1, 5)


def test_workdays_between_is_signed() -> None:
    cal = WorkCalendar()
    assert cal.workdays_between(date(2026, 11, 23), date(2026, 11, 27)) == 4
    assert cal.workdays_between(date(2026, 11, 27), date(2026, 11, 23)) == -4


async def test_ingest_sets_due_date_and_estimated_flag(tmp_path: Path) -> None:
    settings = parse(settings_dict(tmp_path))
    store = SqliteStore(str(tmp_path / "db.sqlite"))
    await store.open()
    await store.migrate()
    try:
        ing = Ingestor(settings, store, WorkCalendar())
        rec = record_from_mapping(
            {
                "source_id": "LS-1",
                "town": "longshi",
                "summary": "路灯不亮",
                "received_at": "2026-12-20T10:00:00",
                "kind": "general",
            }
        )
        case = ing.public_case(rec, today=date(2026, 12, 21))
        assert case.due_date is not None and case.due_date.year == 2027
        assert case.due_estimated is True
        assert case.first_reply_due == date(2027, 1, 3)  # 龙市镇: 14 calendar days
        assert case.overdue is False
    finally:
        await store.close()
