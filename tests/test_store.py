"""Store behaviour, the same on SQLite and PostgreSQL (the `store` fixture runs both).

The PostgreSQL-only tests at the end cover what only several processes need:
serialized writers (no gap in the event log), NOTIFY across connections, and
migrations started by two processes at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import shutil
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from display.domain import Notice, PublicCase, TimelineEntry, now_utc
from display.store.base import CaseChange, Event, Store, migration_files
from display.store.postgres import PostgresStore, lock_key, pg_schema_sql
from display.store.sqlite import SqliteStore
from feeds.record import Rejected
from tests.conftest import require_in_ci
from tests.store_fixtures import (  # noqa: F401
    BACKENDS,
    PG_BASE_URL,
    open_backend,
    pg_schema,
    pg_url_fixture,
    store_fixture,
    with_search_path,
)

T0 = datetime(2026, 11, 20, 1, 30, tzinfo=UTC)


def case(no: str, **kw: Any) -> PublicCase:
    base: dict[str, Any] = {
        "no": no,
        "town": "longshi",
        "stage": "registered",
        "kind": "general",
        "received_at": T0,
        "updated_at": T0,
        "category": "道路交通",
        "channel": "12345热线",
        "department": "镇规划建设办",
        "summary": "反映银杏村3组道路破损",
        "village": "银杏村",
        "due_date": date(2026, 12, 31),
        "first_reply_due": date(2026, 12, 4),
    }
    base.update(kw)
    return PublicCase(**base)


def change(c: PublicCase, *notes: TimelineEntry) -> CaseChange:
    return CaseChange(source_id=c.no, case=c, notes=tuple(notes))


async def all_events(store: Store) -> list[Event]:
    return await store.events_after(0, 10_000)


def kinds(events: Sequence[Event]) -> list[tuple[str, str | None]]:
    return [(e.kind, e.town) for e in events]


# --- migrations --------------------------------------------------------------------


async def test_migrate_is_recorded_and_idempotent(store: Store) -> None:
    assert await store.migrate() == []
    assert await store.event_bounds() == (1, 0)


def test_postgres_dialect_rewrite() -> None:
    sql = pg_schema_sql(
        "CREATE TABLE x (\n  id INTEGER PRIMARY KEY /*AUTOINCREMENT*/,\n"
        "  name TEXT NOT NULL, -- a comment; with a semicolon\n  n INTEGER);\n"
        "CREATE INDEX x_name ON x (name);"
    )
    assert sql == [
        'CREATE TABLE x (\n  id BIGSERIAL PRIMARY KEY,\n  name TEXT COLLATE "C" NOT NULL, '
        "\n  n INTEGER)",
        "CREATE INDEX x_name ON x (name)",
    ]


def test_lock_keys_differ_by_schema_and_purpose() -> None:
    keys = {lock_key(s, p) for s in ("a", "b") for p in ("write", "feeds", "migrate")}
    assert len(keys) == 6
    for k1, k2 in keys:
        assert -(2**31) <= k2 < 2**31
        assert k1 == lock_key("a", "write")[0]


# --- cases -------------------------------------------------------------------------


async def test_apply_cases_counts_events_timeline_and_cursor(store: Store) -> None:
    a, b = case("LS-1"), case("LS-2", town="huangjia", channel="来访")
    counts = await store.apply_cases(
        "hotline", [change(a), change(b)], [Rejected("bad-1", "缺少受理时间")], "c1"
    )
    assert counts.as_dict() == {
        "new": 2,
        "changed": 0,
        "unchanged": 0,
        "withdrawn": 0,
        "quarantined": 1,
    }
    assert counts.reasons == [("bad-1", "缺少受理时间")]
    events = await all_events(store)
    assert kinds(events) == [
        ("case", "longshi"),
        ("case", "huangjia"),
        ("stats", "huangjia"),
        ("stats", "longshi"),
    ]
    assert [e.seq for e in events] == [1, 2, 3, 4]
    assert json.loads(events[0].data)["no"] == "LS-1"
    assert json.loads(events[3].data)["received"] == 1
    assert await store.load_cursor("hotline") == "c1"
    assert await store.get_case("LS-1") == a
    [entry] = await store.timeline("LS-1")
    assert (entry.stage, entry.at) == ("registered", T0)

    # The same again: nothing changes, no event, the cursor still moves.
    counts = await store.apply_cases("hotline", [change(a)], [], "c2")
    assert counts.unchanged == 1 and counts.new == 0
    assert len(await all_events(store)) == 4
    assert await store.load_cursor("hotline") == "c2"
    # A batch without a cursor keeps the saved one.
    await store.apply_cases("hotline", [], [], None)
    assert await store.load_cursor("hotline") == "c2"

    moved = dataclasses.replace(a, stage="in_progress", updated_at=T0 + timedelta(days=1))
    note = TimelineEntry(at=T0 + timedelta(hours=3), stage="in_progress", note="已派人查看")
    counts = await store.apply_cases("hotline", [change(moved, note)], [], "c3")
    assert counts.changed == 1
    assert [(t.stage, t.note) for t in await store.timeline("LS-1")] == [
        ("registered", None),
        ("in_progress", "已派人查看"),
        ("in_progress", None),
    ]
    # The same note sent again is not duplicated.
    await store.apply_cases("hotline", [change(moved, note)], [], "c4")
    assert len(await store.timeline("LS-1")) == 3

    [state] = await store.feed_states()
    assert (state.name, state.cursor, state.consecutive_failures, state.quarantined) == (
        "hotline",
        "c4",
        0,
        1,
    )
    assert state.last_success_at is not None and state.last_attempt_at is not None


async def test_a_large_batch_is_written_in_chunks_with_its_end_last(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over WRITE_CHUNK cases, apply_cases commits chunk by chunk; the quarantine,
    the cursor and the town figures come once, with the last chunk; and a write
    waiting meanwhile (a push) goes in between chunks instead of after the batch."""
    import display.store.sql

    monkeypatch.setattr(display.store.sql, "WRITE_CHUNK", 3)
    towns = ["longshi", "huangjia"]
    batch = [change(case(f"C-{i}", town=towns[i % 2])) for i in range(8)]
    push = change(case("PUSH-1", town="shuangfeng"))
    big = asyncio.create_task(
        store.apply_cases("ledger", batch, [Rejected("bad-1", "缺少受理时间")], "c1")
    )
    await asyncio.sleep(0)  # the batch takes the write lock first
    pushed = await store.apply_cases("push", [push], [], None)
    counts = await big
    assert pushed.new == 1
    assert counts.as_dict() == {
        "new": 8,
        "changed": 0,
        "unchanged": 0,
        "withdrawn": 0,
        "quarantined": 1,
    }
    assert counts.reasons == [("bad-1", "缺少受理时间")]
    events = await all_events(store)
    order = [json.loads(e.data).get("no") or f"stats:{e.town}" for e in events]
    # The push did not wait for the whole batch: it landed before the batch's last chunk.
    assert order.index("PUSH-1") < order.index("C-7")
    # Every case once, in order; each town's figures once, after all of its cases.
    assert [o for o in order if o.startswith("C-")] == [f"C-{i}" for i in range(8)]
    assert order.count("stats:longshi") == order.count("stats:huangjia") == 1
    assert order.index("stats:longshi") > order.index("C-7")
    assert order.index("stats:huangjia") > order.index("C-7")
    assert await store.load_cursor("ledger") == "c1"
    assert [q.source_id for q in await store.quarantine("ledger")] == ["bad-1"]
    stats = {e.town: json.loads(e.data) for e in events if e.kind == "stats"}
    assert stats["longshi"]["received"] == stats["huangjia"]["received"] == 4
    [state] = [s for s in await store.feed_states() if s.name == "ledger"]
    assert state.cursor == "c1" and state.quarantined == 1

    # The same batch again (say after a crash before its end): nothing changed, no
    # case event and no figures, but the cursor moves.
    _, before = await store.event_bounds()
    again = await store.apply_cases("ledger", batch, [], "c2")
    assert (again.unchanged, again.new) == (8, 0)
    assert (await store.event_bounds())[1] == before
    assert await store.load_cursor("ledger") == "c2"


async def test_after_a_crash_between_chunks_the_rerun_announces_the_figures(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks stored before a crash are unchanged when the source is read again; the
    rerun still announces the figures of every town of the batch, also of a town
    whose cases were all stored before the crash (huangjia here)."""
    import display.store.sql

    monkeypatch.setattr(display.store.sql, "WRITE_CHUNK", 3)
    towns = ["longshi", "huangjia", "longshi", "huangjia", "longshi", "huangjia"]
    batch = [change(case(f"C-{i}", town=t)) for i, t in enumerate([*towns, "longshi", "longshi"])]
    # The crash: only the first chunks reached the database, and no cursor.
    await store.apply_cases("ledger", batch[:3], [], None)
    await store.apply_cases("ledger", batch[3:6], [], None)
    _, before = await store.event_bounds()
    counts = await store.apply_cases("ledger", batch, [], "c1")
    assert (counts.unchanged, counts.new) == (6, 2)
    events = await store.events_after(before, 100)
    assert sorted(kinds(events)) == [
        ("case", "longshi"),
        ("case", "longshi"),
        ("stats", "huangjia"),
        ("stats", "longshi"),
    ]
    received = {e.town: json.loads(e.data)["received"] for e in events if e.kind == "stats"}
    assert received == {"longshi": 5, "huangjia": 3}


async def test_one_case_twice_in_a_batch_is_applied_in_order(store: Store) -> None:
    first = case("T-1")
    second = dataclasses.replace(first, stage="assigned", updated_at=T0 + timedelta(hours=1))
    note = TimelineEntry(at=T0 + timedelta(minutes=30), stage="registered", note="已受理")
    counts = await store.apply_cases(
        "f", [change(first, note), change(first, note), change(second, note)], [], None
    )
    assert (counts.new, counts.unchanged, counts.changed) == (1, 1, 1)
    assert [json.loads(e.data)["stage"] for e in await all_events(store) if e.kind == "case"] == [
        "registered",
        "assigned",
    ]
    assert [(t.stage, t.note) for t in await store.timeline("T-1")] == [
        ("registered", None),
        ("registered", "已受理"),
        ("assigned", None),
    ]


async def test_number_taken_by_another_feed_is_quarantined(store: Store) -> None:
    await store.apply_cases("hotline", [change(case("LS-9"))], [], None)
    counts = await store.apply_cases(
        "ledger", [CaseChange("row-7", case("LS-9", summary="另一件事"))], [], None
    )
    assert counts.quarantined == 1 and counts.new == 0
    kept = await store.get_case("LS-9")
    assert kept is not None and kept.summary == "反映银杏村3组道路破损"
    [q] = await store.quarantine("ledger")
    assert (q.feed, q.source_id, q.reason) == ("ledger", "row-7", "编号与其他数据源的案件重复")
    assert await store.quarantine("hotline") == []


async def test_withdrawn_cases(store: Store) -> None:
    counts = await store.apply_cases("f", [change(case("W-1", withdrawn=True))], [], None)
    assert counts.withdrawn == 1
    assert await all_events(store) == []
    await store.apply_cases("f", [change(case("W-2"))], [], None)
    counts = await store.apply_cases("f", [change(case("W-2", withdrawn=True))], [], None)
    assert counts.withdrawn == 1
    assert await store.get_case("W-2") is None
    assert await store.list_cases() == []
    assert json.loads((await all_events(store))[-2].data)["withdrawn"] is True


async def test_supervision_survives_the_feed(store: Store) -> None:
    await store.apply_cases("f", [change(case("S-1"))], [], None)
    before = len(await all_events(store))
    supervised = await store.set_supervised("S-1", True, "请加快办理")
    assert supervised is not None and supervised.supervised
    assert kinds((await all_events(store))[before:]) == [("case", "longshi"), ("stats", "longshi")]
    assert (await store.timeline("S-1"))[-1].note == "督办：请加快办理"
    # The feed does not know about supervision; it stays.
    later = case("S-1", stage="assigned", updated_at=T0 + timedelta(hours=1))
    await store.apply_cases("f", [change(later)], [], None)
    got = await store.get_case("S-1")
    assert got is not None and got.supervised and got.stage == "assigned"
    assert (await store.stats("longshi")).supervised == 1
    assert await store.set_supervised("nope", True, None) is None


async def test_list_cases_filters_and_order(store: Store) -> None:
    cs = [
        case("A", updated_at=T0 + timedelta(hours=1)),
        case(
            "B",
            stage="resolved",
            outcome="resolved",
            resolved_at=T0,
            on_time=True,
            updated_at=T0 + timedelta(hours=3),
        ),
        case("C", town="huangjia", updated_at=T0 + timedelta(hours=2), due_date=None),
        case("D", overdue=True, due_date=date(2026, 11, 1)),
        case("E", supervised=True, due_date=date(2026, 12, 1)),
    ]
    await store.apply_cases("f", [change(c) for c in cs], [], None)
    assert [c.no for c in await store.list_cases()] == ["B", "C", "A", "D", "E"]
    assert [c.no for c in await store.list_cases(town="longshi")] == ["B", "A", "D", "E"]
    assert [c.no for c in await store.list_cases(stage="resolved")] == ["B"]
    # Open cases: overdue first, then supervised, then by due date (none first, as SQLite).
    assert [c.no for c in await store.list_cases(open_only=True)] == ["D", "E", "C", "A"]
    assert [c.no for c in await store.list_cases(limit=2, offset=1)] == ["C", "A"]
    assert await store.list_cases(town="xiangshi") == []


async def test_stats_and_channels(store: Store) -> None:
    cs = [
        case("1", channel="来访"),
        case("2", channel="12345热线", stage="in_progress", overdue=True),
        case(
            "3",
            channel=None,
            stage="resolved",
            outcome="explained",
            on_time=True,
            resolved_at=T0,
            satisfaction="satisfied",
        ),
        case(
            "4",
            channel="来访",
            stage="replied",
            outcome="planned",
            on_time=False,
            resolved_at=T0,
            satisfaction="dissatisfied",
        ),
        case("5", town="huangjia", channel="网络"),
        case(
            "6",
            supervised=True,
            channel="12345热线",
            received_at=T0 + timedelta(days=2),
            updated_at=T0 + timedelta(days=2),
        ),
    ]
    await store.apply_cases("f", [change(c) for c in cs], [], None)
    s = await store.stats("longshi")
    assert (
        s.received,
        s.resolved,
        s.open,
        s.in_progress,
        s.explained,
        s.planned,
        s.overdue,
        s.supervised,
        s.on_time,
        s.rated,
        s.satisfied,
    ) == (5, 2, 3, 1, 1, 1, 1, 1, 1, 2, 1)
    # Count descending, then by name in byte order (the same on both backends).
    assert list(s.channels.items()) == [("12345热线", 2), ("来访", 2), ("其他", 1)]
    county = await store.stats()
    assert county.received == 6 and county.town is None
    assert (await store.stats("longshi", since=T0 + timedelta(days=1))).received == 1


async def test_stats_events_of_several_towns_match_each_towns_stats(store: Store) -> None:
    """A batch touching several towns counts them in one grouped scan; each town's
    `stats` event must equal what `stats(town)` says, zeros included."""
    cs = [
        case("1", channel="来访", stage="in_progress", overdue=True),
        case("2", channel=None, stage="resolved", on_time=True, resolved_at=T0),
        case("3", town="huangjia", channel="网络", supervised=True),
        case("4", town="huangjia", stage="replied", outcome="planned", resolved_at=T0),
        case("5", town="shuangfeng", satisfaction="satisfied", stage="verified"),
    ]
    await store.apply_cases("f", [change(c) for c in cs], [], None)
    # Then every huangjia case is withdrawn, in a batch that touches longshi too.
    later = [
        case("1", channel="来访", stage="resolved", on_time=False, resolved_at=T0),
        case("3", town="huangjia", withdrawn=True),
        case("4", town="huangjia", withdrawn=True),
    ]
    _, before = await store.event_bounds()
    first = {e.town for e in await store.events_after(0, 10_000) if e.kind == "stats"}
    assert first == {"longshi", "huangjia", "shuangfeng"}
    await store.apply_cases("f", [change(c) for c in later], [], None)
    events = await store.events_after(before, 10_000)
    stats = {e.town: json.loads(e.data) for e in events if e.kind == "stats"}
    assert set(stats) == {"longshi", "huangjia"}
    for town, data in stats.items():
        assert town is not None
        expected = json.loads(json.dumps((await store.stats(town)).to_json()))
        assert data == expected, town
    assert stats["huangjia"]["received"] == 0 and stats["longshi"]["resolved"] == 2


async def test_open_trend(store: Store) -> None:
    await store.apply_cases(
        "f",
        [
            change(case("1", received_at=datetime(2026, 11, 1, 2, tzinfo=UTC))),
            change(
                case(
                    "2",
                    received_at=datetime(2026, 11, 2, 2, tzinfo=UTC),
                    stage="resolved",
                    resolved_at=datetime(2026, 11, 3, 2, tzinfo=UTC),
                )
            ),
        ],
        [],
        None,
    )
    days = [date(2026, 10, 31) + timedelta(days=i) for i in range(5)]
    assert await store.open_trend(None, days) == [0, 1, 2, 1, 1]
    assert await store.open_trend("huangjia", days) == [0, 0, 0, 0, 0]


async def test_refresh_overdue(store: Store) -> None:
    await store.apply_cases(
        "f",
        [
            change(case("late", due_date=date(2026, 11, 25))),
            change(case("fine", due_date=date(2026, 12, 25))),
            change(
                case(
                    "was",
                    overdue=True,
                    due_date=date(2026, 11, 1),
                    stage="resolved",
                    resolved_at=T0,
                )
            ),
        ],
        [],
        None,
    )
    before = len(await all_events(store))
    assert await store.refresh_overdue(date(2026, 11, 26)) == 2
    late, fine, was = [await store.get_case(n) for n in ("late", "fine", "was")]
    assert late is not None and late.overdue
    assert fine is not None and not fine.overdue
    assert was is not None and not was.overdue
    assert sorted(kinds((await all_events(store))[before:])) == [
        ("case", "longshi"),
        ("case", "longshi"),
        ("stats", "longshi"),
    ]
    assert await store.refresh_overdue(date(2026, 11, 26)) == 0


# --- events ------------------------------------------------------------------------


async def test_events_after_bounds_and_pruning(store: Store) -> None:
    for i in range(6):
        await store.save_notice(Notice(id=0, town="longshi", title=f"通知{i}", body="正文"))
    assert await store.event_bounds() == (1, 6)
    assert [e.seq for e in await store.events_after(2, limit=3)] == [3, 4, 5]
    assert await store.prune_events(keep=2, before=now_utc() - timedelta(days=1)) == 4
    assert await store.event_bounds() == (5, 6)
    # Everything pruned: the newest seq survives, so ids keep growing.
    assert await store.prune_events(keep=100, before=now_utc() + timedelta(days=1)) == 2
    assert await store.event_bounds() == (7, 6)
    assert await store.events_after(0) == []
    await store.save_notice(Notice(id=0, town=None, title="全县", body="正文"))
    [e] = await store.events_after(6)
    assert (e.seq, e.kind, e.town) == (7, "notice", None)
    assert e.at is not None


# --- notices -----------------------------------------------------------------------


async def test_notices_save_update_withdraw_and_list(store: Store) -> None:
    now = now_utc()
    n = await store.save_notice(
        Notice(
            id=0,
            town="longshi",
            title="办结公示",
            body="已修复",
            case_no="LS-1",
            created_by="staff1",
        )
    )
    assert n.id > 0 and n.created_at is not None and n.created_by == "staff1"
    assert await store.get_notice(n.id) == n
    county = await store.save_notice(
        Notice(id=0, town=None, title="全县通知", body="…", urgent=True)
    )
    other = await store.save_notice(Notice(id=0, town="huangjia", title="黄家", body="…"))
    edited = await store.save_notice(dataclasses.replace(n, title="办结公示（更新）"))
    assert edited.id == n.id and edited.title == "办结公示（更新）"
    assert [x.id for x in await store.list_notices("longshi")] == [county.id, n.id]
    assert {x.id for x in await store.list_notices()} == {n.id, county.id, other.id}
    gone = await store.withdraw_notice(n.id, now)
    assert gone is not None and gone.withdrawn_at is not None
    assert [x.id for x in await store.list_notices("longshi", live_at=now_utc())] == [county.id]
    assert await store.withdraw_notice(9999, now) is None
    assert await store.get_notice(9999) is None
    last = (await all_events(store))[-1]
    assert last.kind == "notice" and json.loads(last.data)["live"] is False


async def test_scheduled_notices_are_announced_once(store: Store) -> None:
    now = now_utc()
    later = await store.save_notice(
        Notice(
            id=0,
            town="longshi",
            title="定时",
            body="…",
            publish_at=now + timedelta(hours=1),
            expires_at=now + timedelta(hours=2),
        )
    )
    assert json.loads((await all_events(store))[-1].data)["live"] is False
    assert await store.announce_due_notices(now) == 0
    assert await store.announce_due_notices(now + timedelta(minutes=61)) == 1
    ev = (await all_events(store))[-1]
    assert json.loads(ev.data) | {} == {**later.to_json(), "live": True}
    assert await store.announce_due_notices(now + timedelta(minutes=62)) == 0
    assert await store.announce_due_notices(now + timedelta(hours=3)) == 1
    assert json.loads((await all_events(store))[-1].data)["live"] is False
    assert await store.announce_due_notices(now + timedelta(hours=4)) == 0


# --- feeds, boards, staff ----------------------------------------------------------


async def test_feed_failures(store: Store) -> None:
    at = now_utc()
    await store.record_failure("hotline", "连接超时", at)
    await store.record_failure("hotline", "连接被拒绝" * 200, at)
    [s] = await store.feed_states()
    assert s.consecutive_failures == 2 and s.last_success_at is None
    assert s.last_error is not None and len(s.last_error) == 500
    assert s.counts == {}
    await store.apply_cases("hotline", [], [], "cur")
    [s] = await store.feed_states()
    assert (s.consecutive_failures, s.last_error, s.cursor) == (0, None, "cur")
    assert s.counts["new"] == 0


async def test_boards(store: Store) -> None:
    await store.upsert_board("b2", "longshi", {"kind": "led", "name": "大门"}, "h1")
    await store.upsert_board("b1", None, {"kind": "kiosk"}, None)
    await store.upsert_board("b2", "huangjia", {"kind": "led", "name": "大门"}, None)
    b1, b2 = await store.boards()
    assert (b1.id, b1.town, b1.token_hash, b1.last_seen_at) == ("b1", None, None, None)
    assert (b2.town, b2.profile, b2.token_hash) == (
        "huangjia",
        {"kind": "led", "name": "大门"},
        "h1",
    )
    seen = datetime(2026, 11, 20, 8, 0, 1, 123456, tzinfo=UTC)
    await store.touch_boards({"b1": seen})
    await store.touch_boards({})
    assert (await store.boards())[0].last_seen_at == seen


async def test_users_and_audit_log(store: Store) -> None:
    u = await store.add_user("zhang", "town", ["longshi", "huangjia"], "hash1")
    assert (u.name, u.role, u.towns, u.disabled) == (
        "zhang",
        "town",
        ("longshi", "huangjia"),
        False,
    )
    await store.add_user("admin", "admin", [], "hash2")
    again = await store.add_user("zhang", "county", [], "hash3")
    assert again.id == u.id and again.role == "county" and again.towns == ()
    await store.set_password("zhang", "hash4")
    got = await store.get_user("zhang")
    assert got is not None and got.password_hash == "hash4"
    assert await store.get_user("nobody") is None
    assert [x.name for x in await store.list_users()] == ["admin", "zhang"]
    await store.audit("admin", "user.add", "zhang", "role=town", "127.0.0.1")
    await store.audit("zhang", "notice.save", "1", None, None)
    log = await store.audit_log()
    assert [(r.actor, r.action) for r in log] == [("zhang", "notice.save"), ("admin", "user.add")]
    assert log[1].ip == "127.0.0.1" and log[1].at <= now_utc()
    assert len(await store.audit_log(limit=1)) == 1
    # Disabling and enabling: the column, and a new session epoch each time.
    await store.set_disabled("zhang", True)
    off = await store.get_user("zhang")
    assert off is not None and off.disabled and off.session_epoch == got.session_epoch + 1
    await store.set_disabled("zhang", False)
    on = await store.get_user("zhang")
    assert on is not None and not on.disabled and on.session_epoch == got.session_epoch + 2
    assert on.password_hash == "hash4"
    # Staff writes are not bus events.
    assert await all_events(store) == []


async def _at_version(
    stack: contextlib.AsyncExitStack,
    backend: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    last: str,
    rows: Sequence[tuple[str, Sequence[Any]]] = (),
) -> Store:
    """An open store of `backend` migrated up to migration `last` only, with `rows`
    ((statement, parameters)) written as that version would have; closed by `stack`."""
    import display.store.postgres
    import display.store.sqlite

    names = [name for name, _ in migration_files()]
    upto = migration_files()[: names.index(last) + 1]
    if backend == "sqlite":
        store = open_backend("sqlite", tmp_path / f"{last}.db")
    else:
        store = open_backend("postgres", await stack.enter_async_context(pg_schema()))
    await store.open()
    stack.push_async_callback(store.close)
    with monkeypatch.context() as m:
        m.setattr(display.store.sqlite, "migration_files", lambda: upto)
        m.setattr(display.store.postgres, "migration_files", lambda: upto)
        assert await store.migrate() == [name for name, _ in upto]
    for sql, params in rows:
        await store._write(  # type: ignore[attr-defined]
            lambda conn, sql=sql, params=params: conn.execute(sql, params), notify=False
        )
    return store


@pytest.mark.parametrize("backend", BACKENDS)
async def test_version_1_disabled_marks_move_into_columns(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Version 1 marked a disabled account inside its password hash; migration 0002
    moves the mark into `disabled` and a new session epoch, leaving the bare hash."""
    from display.auth import hash_password, verify_password

    bare = hash_password("a-long-password")
    legacy = {
        "plain": bare,
        "off": "!disabled:AbCd_-12!" + bare,  # "!disabled:" + token_urlsafe(6) + "!"
        "back": "~Zz9-_xYw~" + bare,  # "~" + token_urlsafe(6) + "~": re-enabled
    }
    insert = (
        "INSERT INTO users (name, role, towns, password_hash, created_at) "
        "VALUES (?, 'county', '', ?, '2026-01-01T00:00:00.000000Z')"
    )
    async with contextlib.AsyncExitStack() as stack:
        rows = [(insert, (name, stored)) for name, stored in legacy.items()]
        store = await _at_version(stack, backend, tmp_path, monkeypatch, "0001_initial", rows)
        later = [name for name, _ in migration_files()][1:]
        assert "0002_account_disabling" in later and await store.migrate() == later
        users = {u.name: u for u in await store.list_users()}
    assert {n: (u.disabled, u.session_epoch) for n, u in users.items()} == {
        "plain": (False, 0),
        "off": (True, 1),
        "back": (False, 1),
    }
    for u in users.values():
        assert u.password_hash == bare and verify_password(u.password_hash, "a-long-password")


@pytest.mark.parametrize("backend", BACKENDS)
async def test_version_3_quarantine_repeats_become_one_problem_each(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Version 3 kept a quarantine row per sighting; migration 0004 keeps one per
    problem: the newest reason, when it was first and last seen, and how often."""
    insert = "INSERT INTO quarantine (feed, source_id, reason, at) VALUES (?, ?, ?, ?)"
    sightings = [
        ("hotline", "A-1", "缺少受理时间", "2026-11-01T00:00:00.000000Z"),
        ("hotline", "A-1", "缺少受理时间", "2026-11-02T00:00:00.000000Z"),
        ("hotline", "A-1", "未知乡镇", "2026-11-03T00:00:00.000000Z"),
        ("hotline", None, "文件「a.csv」无法读取", "2026-11-01T00:00:00.000000Z"),
        ("hotline", None, "文件「a.csv」无法读取", "2026-11-04T00:00:00.000000Z"),
        ("hotline", None, "文件「b.csv」无法读取", "2026-11-04T00:00:00.000000Z"),
        ("ledger", "A-1", "缺少受理时间", "2026-11-05T00:00:00.000000Z"),
    ]
    async with contextlib.AsyncExitStack() as stack:
        rows = [(insert, row) for row in sightings]
        store = await _at_version(stack, backend, tmp_path, monkeypatch, "0003_stats_index", rows)
        assert await store.migrate() == ["0004_quarantine_problems"]
        got = {
            (q.feed, q.source_id, q.reason): (q.first_at.day if q.first_at else 0, q.at.day, q.seen)
            for q in await store.quarantine(limit=100)
        }
    assert got == {
        ("hotline", "A-1", "未知乡镇"): (1, 3, 3),
        ("hotline", None, "文件「a.csv」无法读取"): (1, 4, 2),
        ("hotline", None, "文件「b.csv」无法读取"): (4, 4, 1),
        ("ledger", "A-1", "缺少受理时间"): (5, 5, 1),
    }


async def test_the_quarantine_lists_current_problems_once(store: Store) -> None:
    """Refused again, a record is counted, not listed again; its newest reason shows;
    accepted later, it leaves the list; problems without a record id go by reason;
    a problem not seen for long is pruned."""
    bad = [Rejected("Q-1", "缺少受理时间"), Rejected(None, "文件「a.csv」无法读取")]
    for _ in range(3):
        await store.apply_cases("hotline", [], bad, None)
    await store.apply_cases("hotline", [], [Rejected("Q-1", "未知乡镇")], None)
    await store.apply_cases("ledger", [], [Rejected("Q-1", "缺少受理时间")], None)
    problems = {(q.source_id, q.reason, q.seen) for q in await store.quarantine("hotline")}
    assert problems == {("Q-1", "未知乡镇", 4), (None, "文件「a.csv」无法读取", 3)}
    [state] = [s for s in await store.feed_states() if s.name == "hotline"]
    assert state.quarantined == 2
    [first] = [q for q in await store.quarantine("hotline") if q.source_id == "Q-1"]
    assert first.first_at is not None and first.first_at <= first.at

    # Q-1 fixed at the source: accepted, it leaves this feed's list (not the other's).
    await store.apply_cases("hotline", [change(case("Q-1"))], [], None)
    assert {q.source_id for q in await store.quarantine("hotline")} == {None}
    assert [q.source_id for q in await store.quarantine("ledger")] == ["Q-1"]

    # A number another feed holds is refused in planning: listed, not cleared.
    await store.apply_cases("ledger", [change(case("Q-1"))], [], None)
    [taken] = await store.quarantine("ledger")
    assert (taken.source_id, taken.reason, taken.seen) == ("Q-1", "编号与其他数据源的案件重复", 2)

    assert await store.prune_quarantine(now_utc() - timedelta(days=1)) == 0
    assert await store.prune_quarantine(now_utc() + timedelta(seconds=1)) == 2
    assert await store.quarantine() == []


# --- backup (SQLite) --------------------------------------------------------------


async def test_sqlite_backup_round_trip(tmp_path: Path) -> None:
    src = SqliteStore(str(tmp_path / "live.db"))
    await src.open()
    await src.migrate()
    try:
        await src.apply_cases("f", [change(case("B-1"))], [], "cur-9")
        n = await src.save_notice(Notice(id=0, town="longshi", title="办结公示", body="已修复"))
        await src.add_user("zhang", "town", ["longshi"], "hash")
        await src.audit("zhang", "notice.save", str(n.id), None, None)
        await src.backup(str(tmp_path / "copy.db"))
        # Written after the backup: not in it.
        await src.audit("zhang", "late", None, None, None)
    finally:
        await src.close()
    (tmp_path / "live.db").unlink()  # the lost disk

    restored = SqliteStore(str(tmp_path / "copy.db"))
    await restored.open()
    try:
        assert await restored.migrate() == []
        assert await restored.get_notice(n.id) == n
        user = await restored.get_user("zhang")
        assert user is not None and user.towns == ("longshi",)
        assert [r.action for r in await restored.audit_log()] == ["notice.save"]
        assert await restored.load_cursor("f") == "cur-9"
        assert await restored.get_case("B-1") is not None
        assert (await restored.event_bounds())[1] == (await restored.events_after(0))[-1].seq
    finally:
        await restored.close()


# --- PostgreSQL: several connections, several processes ---------------------------


async def open_pg(url: str, **kw: Any) -> PostgresStore:
    s = PostgresStore(url, **kw)
    await s.open()
    await s.migrate()
    return s


@pytest.mark.postgres
async def test_concurrent_migrations_apply_once(pg_url: str) -> None:
    stores = [PostgresStore(pg_url, listen=False) for _ in range(3)]
    for s in stores:
        await s.open()
    try:
        results = await asyncio.gather(*(s.migrate() for s in stores))
        everything = [name for name, _ in migration_files()]
        assert len(everything) >= 2 and sorted(results) == [[], [], everything]
    finally:
        for s in stores:
            await s.close()


@pytest.mark.postgres
async def test_writers_are_serialized_so_the_log_has_no_gaps(pg_url: str) -> None:
    a = await open_pg(pg_url)
    b = await open_pg(pg_url)
    raw = await asyncpg.connect(pg_url)
    try:
        # Another process is mid-transaction and has taken seq 1.
        tx = raw.transaction()
        await tx.start()
        await raw.execute("SELECT pg_advisory_xact_lock($1, $2)", *lock_key(a.schema, "write"))
        await raw.execute(
            "INSERT INTO events (at, kind, town, data) "
            "VALUES ('2026-11-20T00:00:00.000000Z', 'notice', NULL, '{}')"
        )
        writer = asyncio.create_task(
            b.save_notice(Notice(id=0, town="longshi", title="t", body="b"))
        )
        bounds = asyncio.create_task(a.event_bounds())
        done, _ = await asyncio.wait({writer, bounds}, timeout=0.5)
        # Neither the other writer nor a reader asking for the head gets past it.
        assert done == set()
        assert await a.events_after(0) == []
        await tx.commit()
        await writer
        # Whichever of the two got the lock next, the head it reports is committed.
        assert await bounds in ((1, 1), (1, 2))
        assert [e.seq for e in await a.events_after(0)] == [1, 2]
    finally:
        await raw.close()
        await a.close()
        await b.close()


@pytest.mark.postgres
async def test_a_tailing_reader_misses_nothing_under_concurrent_writers(
    pg_url: str,
) -> None:
    writers = [await open_pg(pg_url, listen=False) for _ in range(2)]
    reader = await open_pg(pg_url, listen=False)
    stop = asyncio.Event()
    seen: list[int] = []

    async def tail() -> None:
        last = 0
        while True:
            finished = stop.is_set()
            for e in await reader.events_after(last):
                seen.append(e.seq)
                last = e.seq
            if finished:
                return
            await asyncio.sleep(0)

    async def write(s: PostgresStore, prefix: str) -> None:
        for i in range(40):
            await s.apply_cases(prefix, [change(case(f"{prefix}-{i}"))], [], None)

    tailer = asyncio.create_task(tail())
    try:
        await asyncio.gather(write(writers[0], "A"), write(writers[1], "B"))
        stop.set()
        await tailer
        every = [e.seq for e in await reader.events_after(0, 10_000)]
        assert len(every) == 160  # a case and a stats event per write
        assert seen == every
    finally:
        for s in [*writers, reader]:
            await s.close()


@pytest.mark.postgres
async def test_notify_wakes_other_processes_and_survives_a_lost_connection(
    pg_url: str,
) -> None:
    woke = asyncio.Event()
    a = await open_pg(pg_url)
    b = await open_pg(pg_url, on_commit=woke.set)
    raw = await asyncpg.connect(pg_url)
    try:
        await a.save_notice(Notice(id=0, town=None, title="t", body="b"))
        await asyncio.wait_for(woke.wait(), 10)
        assert b.notifications == 1
        # Writes that are not events do not notify.
        woke.clear()
        await a.audit("x", "y", None, None, None)
        await a.save_notice(Notice(id=0, town=None, title="t2", body="b"))
        await asyncio.wait_for(woke.wait(), 10)
        assert b.notifications == 2

        # The server drops B's LISTEN connection: B reconnects, wakes its tailer to catch
        # up on anything it missed, and hears the next commit again.
        pid = await b.listener_pid()
        assert pid is not None
        woke.clear()
        assert await raw.fetchval("SELECT pg_terminate_backend($1)", pid) is True
        await asyncio.wait_for(woke.wait(), 20)
        for _ in range(200):
            new = await b.listener_pid()
            if new is not None and new != pid:
                break
            await asyncio.sleep(0.05)
        assert new is not None and new != pid
        woke.clear()
        await a.save_notice(Notice(id=0, town=None, title="t3", body="b"))
        await asyncio.wait_for(woke.wait(), 10)
        assert b.notifications == 3
    finally:
        await raw.close()
        await a.close()
        await b.close()


@pytest.mark.postgres
async def test_stores_in_other_schemas_are_independent(pg_url: str) -> None:
    from tests.store_fixtures import pg_schema

    async with pg_schema() as other_url:
        a = await open_pg(pg_url)
        b = await open_pg(other_url)
        try:
            assert a.schema != b.schema and a.channel != b.channel
            await a.save_notice(Notice(id=0, town=None, title="t", body="b"))
            assert await b.events_after(0) == []
            assert await b.event_bounds() == (1, 0)
        finally:
            await a.close()
            await b.close()


@pytest.mark.postgres
async def test_pg_dump_and_restore_round_trip(pg_url: str, tmp_path: Path) -> None:
    """The backup recipe in docs/deploy.md: pg_dump --format=custom, pg_restore into a
    fresh database. Notices, accounts and the audit log originate here and must survive."""
    tools = [shutil.which("pg_dump"), shutil.which("pg_restore")]
    if None in tools:
        require_in_ci("pg_dump/pg_restore not installed (apt-get install postgresql-client)")
    src = await open_pg(pg_url)
    try:
        await src.apply_cases("hotline", [change(case("R-1"))], [], "cur-7")
        n = await src.save_notice(Notice(id=0, town="longshi", title="办结公示", body="已修复"))
        await src.add_user("zhang", "town", ["longshi"], "hash")
        await src.audit("zhang", "notice.save", str(n.id), None, "10.0.0.1")
        _, newest = await src.event_bounds()
        schema = src.schema
    finally:
        await src.close()

    dump = tmp_path / "yizheng.dump"
    await _run("pg_dump", "--format=custom", f"--schema={schema}", f"--file={dump}", PG_BASE_URL)
    target = f"yz_restore_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_BASE_URL)
    await admin.execute(f'CREATE DATABASE "{target}"')
    target_url = PG_BASE_URL.rsplit("/", 1)[0] + "/" + target
    try:
        await _run(
            "pg_restore", "--no-owner", "--exit-on-error", f"--dbname={target_url}", str(dump)
        )
        restored = PostgresStore(with_search_path(target_url, schema))
        await restored.open()
        try:
            assert await restored.migrate() == []
            assert await restored.get_notice(n.id) == n
            user = await restored.get_user("zhang")
            assert user is not None and user.password_hash == "hash"
            [entry] = await restored.audit_log()
            assert (entry.action, entry.target, entry.ip) == ("notice.save", str(n.id), "10.0.0.1")
            assert await restored.load_cursor("hotline") == "cur-7"
            assert await restored.event_bounds() == (1, newest)
            # Sequences were restored too: new ids continue after the old ones.
            later = await restored.save_notice(Notice(id=0, town=None, title="t", body="b"))
            assert later.id == n.id + 1
            assert (await restored.event_bounds())[1] == newest + 1
        finally:
            await restored.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')
        await admin.close()


async def _run(*argv: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _out, err = await proc.communicate()
    assert proc.returncode == 0, (argv[0], err.decode(errors="replace"))


@pytest.mark.postgres
async def test_a_missing_schema_is_a_clear_error(pg_url: str) -> None:
    s = PostgresStore(with_search_path(PG_BASE_URL, "no_such_schema_here"))
    with pytest.raises(RuntimeError, match="no schema on the search_path exists"):
        await s.open()
    await s.close()


async def test_concurrent_reads_see_every_committed_write(store: Store) -> None:
    """Readers racing a writer on the shared read connections never see a snapshot older
    than a commit that finished before the read began."""
    committed = 0
    stale = 0
    done = asyncio.Event()

    async def writer() -> None:
        nonlocal committed
        for i in range(40):
            await store.apply_cases("f", [change(case(f"R-{i}"))], [], None)
            committed = (await store.event_bounds())[1]
        done.set()

    async def reader() -> None:
        nonlocal stale
        while not done.is_set():
            before = committed
            events = await store.events_after(max(before - 1, 0))
            if before and (not events or events[-1].seq < before):
                stale += 1

    await asyncio.gather(writer(), *(reader() for _ in range(100)))
    assert stale == 0
