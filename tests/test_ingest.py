"""Ingest over both backends: CaseRecord -> redacted public case -> one transaction.

Each test runs on SQLite and on PostgreSQL (the `store` fixture). The privacy
test seeds a requester's personal data and scans every row of every table,
raw, for any trace of it.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, date, datetime

import asyncpg
import pytest

from display.ingest import Ingestor
from display.settings import Settings
from display.store.base import Store
from display.store.postgres import PostgresStore
from display.store.sqlite import SqliteStore
from display.workdays import WorkCalendar
from feeds.record import Batch, CaseRecord, Rejected, TimelineNote, record_from_mapping
from tests.conftest import case_record
from tests.store_fixtures import store_fixture  # noqa: F401

NAME, PHONE, ADDRESS = "王建国", "13912345678", "银杏村3组27号"
TABLES = (
    "cases",
    "case_timeline",
    "events",
    "notices",
    "boards",
    "feed_state",
    "quarantine",
    "users",
    "audit_log",
    "meta",
)


@pytest.fixture
def ingestor(store: Store, make_settings: Callable[..., Settings]) -> Ingestor:
    settings = make_settings()
    calendar = WorkCalendar(settings.deadlines.extra_holidays, settings.deadlines.extra_workdays)
    return Ingestor(settings, store, calendar)


def record(source_id: str, **fields: object) -> CaseRecord:
    return record_from_mapping(case_record(source_id, **fields))


async def raw_dump(store: Store) -> str:
    """Every row of every table, as text, straight from the database."""
    if isinstance(store, SqliteStore):
        conn = sqlite3.connect(store.path)
        try:
            return "\n".join(conn.iterdump())
        finally:
            conn.close()
    assert isinstance(store, PostgresStore)
    conn2 = await asyncpg.connect(store.url)
    try:
        rows = []
        for table in TABLES:
            rows += [r[0] for r in await conn2.fetch(f"SELECT t::text FROM {table} t")]  # noqa: S608
        return "\n".join(rows)
    finally:
        await conn2.close()


async def test_personal_data_never_reaches_the_database(ingestor: Ingestor, store: Store) -> None:
    rec = record(
        "P-1",
        summary=f"{NAME}（电话{PHONE}）反映{ADDRESS}门前道路破损",
        requester_name=NAME,
        requester_phone=PHONE,
        requester_address=ADDRESS,
        notes=[{"at": "2026-11-21T10:00:00+08:00", "text": f"已电话联系{NAME}，{PHONE}"}],
    )
    counts = await ingestor.ingest("push", Batch(records=[rec], cursor="c1"))
    assert counts.new == 1
    await ingestor.record_failure("push", f"upstream said: bad record for {PHONE}")
    case = await store.get_case("P-1")
    assert case is not None and case.summary is not None
    assert "道路破损" in case.summary and "王某" in case.summary
    dump = await raw_dump(store)
    assert "道路破损" in dump  # the dump is real
    for secret in (NAME, PHONE, ADDRESS, "3912345678", "27号"):
        assert secret not in dump, secret


async def test_sensitive_cases_show_only_the_category(ingestor: Ingestor, store: Store) -> None:
    await ingestor.ingest(
        "push",
        Batch(
            records=[
                record("S-1", category="低保申请", summary="申请低保，家中有病人"),
            ]
        ),
    )
    case = await store.get_case("S-1")
    assert case is not None
    assert case.sensitive and case.summary is None and case.village is None
    assert case.category == "低保申请"
    [event] = [e for e in await store.events_after(0) if e.kind == "case"]
    data = json.loads(event.data)
    assert data["summary"] is None and data["village"] is None
    assert "病人" not in await raw_dump(store)


async def test_deadlines_follow_the_holiday_calendar(ingestor: Ingestor, store: Store) -> None:
    await ingestor.ingest(
        "push",
        Batch(
            records=[
                # Before the National Day holiday: five working days end on the adjusted Saturday.
                record(
                    "D-1",
                    kind="consult",
                    received_at="2026-09-28T09:00:00+08:00",
                    status="resolved",
                    outcome="resolved",
                    resolved_at="2026-10-09T16:00:00+08:00",
                ),
                record("D-2", town="龙市镇", received_at="2026-11-20T09:30:00+08:00"),
                record(
                    "D-3", kind="consult", town="huangjia", received_at="2026-06-01T09:00:00+08:00"
                ),
            ]
        ),
    )
    d1, d2, d3 = [await store.get_case(n) for n in ("D-1", "D-2", "D-3")]
    assert d1 is not None and d1.due_date == date(2026, 10, 10)
    assert d1.on_time is True and d1.overdue is False
    assert d2 is not None and d2.town == "longshi" and d2.first_reply_due == date(2026, 12, 4)
    assert d3 is not None and d3.first_reply_due is None
    assert d3.overdue is True  # open and long past its five working days
    assert (await store.stats("huangjia")).overdue == 1


async def test_batch_quarantine_cursor_and_last_version_wins(
    ingestor: Ingestor,
    store: Store,
) -> None:
    batch = Batch(
        records=[
            record("B-1", status="registered"),
            record("B-2", town="nowhere"),
            record("B-1", status="assigned", updated_at="2026-11-21T09:00:00+08:00"),
        ],
        rejected=[Rejected("B-3", "缺少受理时间")],
        cursor="2026-11-21T09:00:00Z",
    )
    counts = await ingestor.ingest("hotline", batch)
    assert counts.as_dict() == {
        "new": 1,
        "changed": 0,
        "unchanged": 0,
        "withdrawn": 0,
        "quarantined": 2,
    }
    case = await store.get_case("B-1")
    assert case is not None and case.stage == "assigned"
    assert await ingestor.load_cursor("hotline") == "2026-11-21T09:00:00Z"
    quarantined = {(q.source_id, q.reason) for q in await store.quarantine("hotline")}
    assert ("B-3", "缺少受理时间") in quarantined
    assert any(sid == "B-2" and "乡镇" in reason for sid, reason in quarantined)

    # The same batch again changes nothing and emits nothing new.
    before = await store.event_bounds()
    counts = await ingestor.ingest("hotline", Batch(records=[batch.records[2]]))
    assert counts.unchanged == 1
    assert await store.event_bounds() == before


async def test_progress_notes_and_closing(ingestor: Ingestor, store: Store) -> None:
    note = TimelineNote(
        at=datetime(2026, 11, 22, 3, tzinfo=UTC), text="已安排施工队", stage="in_progress"
    )
    rec = record("N-1", status="in_progress", updated_at="2026-11-22T10:00:00+08:00")
    await ingestor.ingest("f", Batch(records=[dataclasses.replace(rec, notes=(note,))]))
    closed = record(
        "N-1", status="resolved", outcome="resolved", updated_at="2026-11-25T10:00:00+08:00"
    )
    counts = await ingestor.ingest("f", Batch(records=[closed]))
    assert counts.changed == 1
    case = await store.get_case("N-1")
    assert case is not None
    # Closed without a resolution time: the update time stands in for it.
    assert case.resolved_at == datetime(2026, 11, 25, 2, tzinfo=UTC)
    assert case.on_time is True
    assert [(t.stage, t.note) for t in await store.timeline("N-1")] == [
        ("in_progress", None),
        ("in_progress", "已安排施工队"),
        ("resolved", None),
    ]
    stats = await store.stats("longshi")
    assert (stats.resolved, stats.open, stats.on_time) == (1, 0, 1)


async def test_an_unchanged_record_is_not_redacted_again(ingestor: Ingestor, store: Store) -> None:
    batch = [record("FP-1", requester_name=NAME), record("FP-2", requester_phone=PHONE)]
    first = await ingestor.ingest("f", Batch(records=list(batch)))
    assert first.new == 2
    _, before = await store.event_bounds()
    calls: list[str] = []
    original = ingestor.change

    def counting(rec: CaseRecord, today: date | None = None) -> object:
        calls.append(rec.source_id)
        return original(rec, today)

    ingestor.change = counting  # type: ignore[assignment, method-assign]
    again = await ingestor.ingest("f", Batch(records=list(batch)))
    assert (again.unchanged, again.changed, calls) == (2, 0, [])
    assert (await store.event_bounds())[1] == before
    moved = dataclasses.replace(batch[0], status="assigned")
    changed = await ingestor.ingest("f", Batch(records=[moved, batch[1]]))
    assert (changed.changed, changed.unchanged, calls) == (1, 1, ["FP-1"])
    # What the process remembers: feed, case number and a keyed 16-byte digest.
    for key, digest in ingestor._seen.items():
        assert key[0] == "f" and key[1] in ("FP-1", "FP-2")
        assert isinstance(digest, bytes) and len(digest) == 16
        assert NAME.encode() not in digest and PHONE.encode() not in digest
    # After forgetting (a new feed leader), the store still says nothing changed.
    ingestor.forget()
    again = await ingestor.ingest("f", Batch(records=[moved, batch[1]]))
    assert again.unchanged == 2
    assert calls[-2:] == ["FP-1", "FP-2"]


async def test_a_reason_that_quotes_the_source_is_redacted_before_the_quarantine(
    ingestor: Ingestor, store: Store
) -> None:
    """Adapters name fields, not values; but a reason is text coming from the feed's side,
    and a source may put anything where a status word belongs (Open311 quotes unknown
    statuses). The quarantine gets it redacted."""
    quoted = f"办理状态（status）：无法识别的状态 '联系人{NAME}电话{PHONE}'"
    counts = await ingestor.ingest("hotline", Batch(rejected=[Rejected("Q-9", quoted)]))
    assert counts.quarantined == 1
    [problem] = await store.quarantine("hotline")
    assert problem.source_id == "Q-9" and "无法识别的状态" in problem.reason
    assert NAME not in problem.reason and PHONE not in problem.reason
    assert all(NAME not in r and PHONE not in r for _, r in counts.reasons)
