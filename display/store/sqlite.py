"""SQLite store: WAL, one write connection, reads on their own connections.

Every write goes through `_write`, which holds one asyncio lock and runs the
whole unit in `BEGIN IMMEDIATE ... COMMIT`, so a change and its event commit
together and writers never race for SQLITE_BUSY. Readers use separate
connections and see only committed data.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from display.domain import (
    CLOSED_STAGES,
    OPEN_STAGES,
    Notice,
    PublicCase,
    Stats,
    TimelineEntry,
    now_utc,
)
from display.store.base import (
    CASE_COLUMNS,
    CASE_SELECT,
    NOTICE_SELECT,
    AuditRow,
    BoardRow,
    CaseChange,
    Event,
    FeedState,
    IngestCounts,
    QuarantineRow,
    UserRow,
    case_from_row,
    event_json,
    migration_files,
    notice_from_row,
    parse_ts,
    plan_cases,
    ts,
)
from feeds.record import Rejected

T = TypeVar("T")
_OPEN = "('registered','assigned','in_progress')"
_CLOSED = "('resolved','replied','verified')"


_UPSERT_CASE = (
    f"INSERT INTO cases ({CASE_COLUMNS}) VALUES ({','.join('?' * len(CASE_COLUMNS.split(',')))}) "
    "ON CONFLICT (no) DO UPDATE SET "
    + ", ".join(f"{col.strip()} = excluded.{col.strip()}" for col in CASE_COLUMNS.split(",")[1:])
)


def _sql(text: str) -> str:
    return text.replace("/*AUTOINCREMENT*/", "AUTOINCREMENT")


class SqliteStore:
    def __init__(
        self, path: str, *, readers: int = 2, on_commit: Callable[[], None] | None = None
    ) -> None:
        self.path = path
        self._readers_n = readers
        self._writer: aiosqlite.Connection | None = None
        self._readers: list[aiosqlite.Connection] = []
        self._rr = itertools.count()
        self._lock = asyncio.Lock()
        self.on_commit = on_commit
        self._closed = False

    # --- lifecycle -----------------------------------------------------------

    async def _connect(self, readonly: bool) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        await conn.execute("PRAGMA busy_timeout = 5000")
        await conn.execute("PRAGMA foreign_keys = ON")
        if readonly:
            await conn.execute("PRAGMA query_only = ON")
        return conn

    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._writer = await self._connect(readonly=False)
        await self._writer.execute("PRAGMA journal_mode = WAL")
        await self._writer.execute("PRAGMA synchronous = NORMAL")
        for _ in range(self._readers_n):
            self._readers.append(await self._connect(readonly=True))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for conn in self._readers:
            await conn.close()
        self._readers.clear()
        if self._writer is not None:
            await self._writer.close()
            self._writer = None

    # --- plumbing -------------------------------------------------------------

    def _reader(self) -> aiosqlite.Connection:
        if not self._readers:
            raise RuntimeError("store is not open")
        return self._readers[next(self._rr) % len(self._readers)]

    # Each query runs and is read to the end in one call on the reader's thread. As two
    # calls (execute, then fetch), another query started in between on the same
    # connection would share the first one's read transaction and see an old snapshot.

    async def _fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return list(await self._reader().execute_fetchall(sql, params))

    async def _fetchone(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = await self._reader().execute_fetchall(sql, params)
        return next(iter(rows), None)

    async def _write(
        self, fn: Callable[[aiosqlite.Connection], Awaitable[T]], *, notify: bool = True
    ) -> T:
        if self._writer is None:
            raise RuntimeError("store is not open")
        conn = self._writer
        async with self._lock:
            await conn.execute("BEGIN IMMEDIATE")
            try:
                result = await fn(conn)
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
            await conn.execute("COMMIT")
        if notify and self.on_commit is not None:
            self.on_commit()
        return result

    @staticmethod
    async def _one(conn: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> Any:
        return next(iter(await conn.execute_fetchall(sql, params)), None)

    @staticmethod
    async def _emit(
        conn: aiosqlite.Connection, kind: str, town: str | None, payload: Mapping[str, Any]
    ) -> None:
        await conn.execute(
            "INSERT INTO events (at, kind, town, data) VALUES (?, ?, ?, ?)",
            (ts(now_utc()), kind, town, event_json(kind, payload)),
        )

    # --- migrations ------------------------------------------------------------

    async def migrate(self) -> list[str]:
        async def run(conn: aiosqlite.Connection) -> list[str]:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at TEXT)"
            )
            async with conn.execute("SELECT name FROM migrations") as cur:
                done = {r[0] for r in await cur.fetchall()}
            applied = []
            for name, text in migration_files():
                if name in done:
                    continue
                for statement in _split_sql(_sql(text)):
                    await conn.execute(statement)
                await conn.execute("INSERT INTO migrations VALUES (?, ?)", (name, ts(now_utc())))
                applied.append(name)
            return applied

        return await self._write(run, notify=False)

    # --- cases -----------------------------------------------------------------

    async def _stats_tx(self, conn: aiosqlite.Connection, town: str | None) -> Stats:
        return await _stats(
            lambda sql, p: self._one(conn, sql, p), lambda sql, p: _all(conn, sql, p), town, None
        )

    async def apply_cases(
        self,
        feed: str,
        changes: Sequence[CaseChange],
        rejected: Sequence[Rejected],
        cursor: str | None,
    ) -> IngestCounts:
        async def run(conn: aiosqlite.Connection) -> IngestCounts:
            at = ts(now_utc())
            existing: dict[str, tuple[str, str, PublicCase]] = {}
            nos = [ch.case.no for ch in changes]
            for i in range(0, len(nos), 500):
                chunk = nos[i : i + 500]
                rows = await _all(
                    conn,
                    f"SELECT feed, source_id, {CASE_SELECT} FROM cases "
                    f"WHERE no IN ({','.join('?' * len(chunk))})",
                    chunk,
                )
                for r in rows:
                    existing[r[2]] = (r[0], r[1], case_from_row(r[2:]))
            plan = plan_cases(feed, changes, rejected, existing)
            if plan.upserts:
                await conn.executemany(_UPSERT_CASE, plan.upserts)
            if plan.timeline:
                await conn.executemany(
                    "INSERT INTO case_timeline (no, at, stage, department, outcome) "
                    "VALUES (?,?,?,?,?)",
                    plan.timeline,
                )
            if plan.notes:
                await conn.executemany(
                    "INSERT INTO case_timeline (no, at, stage, note) "
                    "SELECT ?1, ?2, ?3, ?4 WHERE NOT EXISTS (SELECT 1 FROM case_timeline "
                    "WHERE no = ?1 AND at = ?2 AND note = ?4)",
                    plan.notes,
                )
            if plan.quarantine:
                await conn.executemany(
                    "INSERT INTO quarantine (feed, source_id, reason, at) VALUES (?,?,?,?)",
                    [(feed, sid, reason, at) for sid, reason in plan.quarantine],
                )
            events = list(plan.events)
            for town in sorted(plan.touched):
                stats = await self._stats_tx(conn, town)
                events.append(("stats", town, event_json("stats", stats.to_json())))
            if events:
                await conn.executemany(
                    "INSERT INTO events (at, kind, town, data) VALUES (?, ?, ?, ?)",
                    [(at, kind, town, data) for kind, town, data in events],
                )
            counts = plan.counts
            await conn.execute(
                "INSERT INTO feed_state (name, cursor, last_attempt_at, last_success_at, "
                "last_error, consecutive_failures, counts) VALUES (?,?,?,?,NULL,0,?) "
                "ON CONFLICT (name) DO UPDATE SET cursor = COALESCE(excluded.cursor, "
                "feed_state.cursor), last_attempt_at = excluded.last_attempt_at, "
                "last_success_at = excluded.last_success_at, last_error = NULL, "
                "consecutive_failures = 0, counts = excluded.counts",
                (feed, cursor, at, at, json.dumps(counts.as_dict())),
            )
            return counts

        return await self._write(run)

    async def refresh_overdue(self, today: date) -> int:
        """Flag open cases whose due date has passed; each change is an event."""

        async def run(conn: aiosqlite.Connection) -> int:
            rows = await _all(
                conn,
                f"SELECT {CASE_SELECT} FROM cases WHERE withdrawn = 0 AND ("
                f"(stage IN {_OPEN} AND due_date IS NOT NULL AND due_date < ? AND overdue = 0)"
                f" OR ((stage NOT IN {_OPEN} OR due_date >= ?) AND overdue = 1))",
                (today.isoformat(), today.isoformat()),
            )
            touched: set[str] = set()
            for r in rows:
                c = case_from_row(r)
                c = _replace(c, overdue=not c.overdue)
                await conn.execute(
                    "UPDATE cases SET overdue = ? WHERE no = ?", (int(c.overdue), c.no)
                )
                await self._emit(conn, "case", c.town, c.to_json())
                touched.add(c.town)
            for town in sorted(touched):
                await self._emit(conn, "stats", town, (await self._stats_tx(conn, town)).to_json())
            return len(rows)

        return await self._write(run)

    async def set_supervised(
        self, no: str, supervised: bool, note: str | None
    ) -> PublicCase | None:
        async def run(conn: aiosqlite.Connection) -> PublicCase | None:
            r = await self._one(conn, f"SELECT {CASE_SELECT} FROM cases WHERE no = ?", (no,))
            if r is None:
                return None
            c = _replace(case_from_row(r), supervised=supervised)
            await conn.execute(
                "UPDATE cases SET supervised = ?, supervised_note = ? WHERE no = ?",
                (int(supervised), note, no),
            )
            await conn.execute(
                "INSERT INTO case_timeline (no, at, stage, note) VALUES (?,?,?,?)",
                (
                    no,
                    ts(now_utc()),
                    c.stage,
                    ("督办：" + note)
                    if supervised and note
                    else ("督办" if supervised else "取消督办"),
                ),
            )
            await self._emit(conn, "case", c.town, c.to_json())
            await self._emit(conn, "stats", c.town, (await self._stats_tx(conn, c.town)).to_json())
            return c

        return await self._write(run)

    async def get_case(self, no: str) -> PublicCase | None:
        r = await self._fetchone(
            f"SELECT {CASE_SELECT} FROM cases WHERE no = ? AND withdrawn = 0", (no,)
        )
        return case_from_row(r) if r else None

    async def timeline(self, no: str) -> list[TimelineEntry]:
        rows = await self._fetchall(
            "SELECT at, stage, note, department, outcome FROM case_timeline WHERE no = ? "
            "ORDER BY at, id",
            (no,),
        )
        out = []
        for r in rows:
            at = parse_ts(r[0])
            assert at is not None
            out.append(TimelineEntry(at=at, stage=r[1], note=r[2], department=r[3], outcome=r[4]))
        return out

    async def list_cases(
        self,
        *,
        town: str | None = None,
        stage: str | None = None,
        open_only: bool = False,
        limit: int = 100,
        offset: int = 0,
    ) -> list[PublicCase]:
        where = ["withdrawn = 0"]
        params: list[Any] = []
        if town:
            where.append("town = ?")
            params.append(town)
        if stage:
            where.append("stage = ?")
            params.append(stage)
        if open_only:
            where.append(f"stage IN {_OPEN}")
        order = (
            "overdue DESC, supervised DESC, due_date, received_at"
            if open_only
            else "updated_at DESC"
        )
        rows = await self._fetchall(
            f"SELECT {CASE_SELECT} FROM cases WHERE {' AND '.join(where)} "
            f"ORDER BY {order} LIMIT ? OFFSET ?",
            (*params, limit, offset),
        )
        return [case_from_row(r) for r in rows]

    async def stats(self, town: str | None = None, since: datetime | None = None) -> Stats:
        conn = self._reader()
        return await _stats(
            lambda sql, p: _one(conn, sql, p), lambda sql, p: _all(conn, sql, p), town, since
        )

    async def open_trend(self, town: str | None, days: Sequence[date]) -> list[int]:
        out = []
        for d in days:
            # End of day d in Asia/Shanghai, as UTC text.
            end = ts(datetime(d.year, d.month, d.day) + timedelta(days=1) - timedelta(hours=8))
            params: list[Any] = [end, end]
            where = ""
            if town:
                where = " AND town = ?"
                params.append(town)
            r = await self._fetchone(
                "SELECT count(*) FROM cases WHERE withdrawn = 0 AND received_at < ? AND "
                f"(resolved_at IS NULL OR resolved_at >= ?){where}",
                params,
            )
            out.append(int(r[0]))
        return out

    # --- events ----------------------------------------------------------------

    async def events_after(self, seq: int, limit: int = 1000) -> list[Event]:
        rows = await self._fetchall(
            "SELECT seq, kind, town, data, at FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
            (seq, limit),
        )
        return [Event(r[0], r[1], r[2], r[3], parse_ts(r[4])) for r in rows]

    async def event_bounds(self) -> tuple[int, int]:
        """(oldest retained seq, newest seq); (0, 0) when the log is empty.

        The newest seq comes from sqlite_sequence so it survives pruning."""
        r = await self._fetchone("SELECT min(seq), max(seq) FROM events")
        s = await self._fetchone("SELECT seq FROM sqlite_sequence WHERE name = 'events'")
        newest = int(s[0]) if s else 0
        if r[0] is None:
            return newest + 1, newest
        return int(r[0]), max(int(r[1]), newest)

    async def prune_events(self, keep: int, before: datetime) -> int:
        async def run(conn: aiosqlite.Connection) -> int:
            cur = await conn.execute(
                "DELETE FROM events WHERE seq <= (SELECT max(seq) FROM events) - ? OR at < ?",
                (keep, ts(before)),
            )
            return cur.rowcount

        return await self._write(run, notify=False)

    # --- notices ---------------------------------------------------------------

    async def save_notice(self, notice: Notice) -> Notice:
        async def run(conn: aiosqlite.Connection) -> Notice:
            now = now_utc()
            values = (
                notice.town,
                notice.title,
                notice.body,
                notice.case_no,
                int(notice.urgent),
                ts(notice.publish_at),
                ts(notice.expires_at),
                ts(notice.withdrawn_at),
            )
            live = notice.is_live(now)
            if notice.id:
                await conn.execute(
                    "UPDATE notices SET town=?, title=?, body=?, case_no=?, urgent=?, "
                    "publish_at=?, expires_at=?, withdrawn_at=?, announced=? WHERE id=?",
                    (*values, int(live), notice.id),
                )
                nid = notice.id
            else:
                cur = await conn.execute(
                    "INSERT INTO notices (town, title, body, case_no, urgent, publish_at, "
                    "expires_at, withdrawn_at, created_at, created_by, announced) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (*values, ts(now), notice.created_by, int(live)),
                )
                nid = int(cur.lastrowid or 0)
            r = await self._one(conn, f"SELECT {NOTICE_SELECT} FROM notices WHERE id=?", (nid,))
            saved = notice_from_row(r)
            await self._emit(
                conn, "notice", saved.town, {**saved.to_json(), "live": saved.is_live(now)}
            )
            return saved

        return await self._write(run)

    async def withdraw_notice(self, notice_id: int, at: datetime) -> Notice | None:
        async def run(conn: aiosqlite.Connection) -> Notice | None:
            r = await self._one(
                conn, f"SELECT {NOTICE_SELECT} FROM notices WHERE id=?", (notice_id,)
            )
            if r is None:
                return None
            await conn.execute("UPDATE notices SET withdrawn_at=? WHERE id=?", (ts(at), notice_id))
            r = await self._one(
                conn, f"SELECT {NOTICE_SELECT} FROM notices WHERE id=?", (notice_id,)
            )
            n = notice_from_row(r)
            await self._emit(conn, "notice", n.town, {**n.to_json(), "live": False})
            return n

        return await self._write(run)

    async def get_notice(self, notice_id: int) -> Notice | None:
        r = await self._fetchone(f"SELECT {NOTICE_SELECT} FROM notices WHERE id=?", (notice_id,))
        return notice_from_row(r) if r else None

    async def list_notices(
        self, town: str | None = None, *, live_at: datetime | None = None, limit: int = 50
    ) -> list[Notice]:
        where = ["1=1"]
        params: list[Any] = []
        if town:
            where.append("(town = ? OR town IS NULL)")
            params.append(town)
        if live_at is not None:
            t = ts(live_at)
            where.append(
                "withdrawn_at IS NULL AND (publish_at IS NULL OR publish_at <= ?) "
                "AND (expires_at IS NULL OR expires_at > ?)"
            )
            params += [t, t]
        rows = await self._fetchall(
            f"SELECT {NOTICE_SELECT} FROM notices WHERE {' AND '.join(where)} "
            "ORDER BY urgent DESC, COALESCE(publish_at, created_at) DESC, id DESC LIMIT ?",
            (*params, limit),
        )
        return [notice_from_row(r) for r in rows]

    async def announce_due_notices(self, now: datetime) -> int:
        """Scheduled notices that went live, or expired, since the last call become events."""

        async def run(conn: aiosqlite.Connection) -> int:
            t = ts(now)
            rows = await _all(
                conn,
                f"SELECT {NOTICE_SELECT}, announced FROM notices WHERE withdrawn_at IS NULL AND ("
                "(announced = 0 AND (publish_at IS NULL OR publish_at <= ?) AND "
                "(expires_at IS NULL OR expires_at > ?)) OR "
                "(announced = 1 AND expires_at IS NOT NULL AND expires_at <= ?))",
                (t, t, t),
            )
            for r in rows:
                n = notice_from_row(r)
                live = n.is_live(now)
                await conn.execute(
                    "UPDATE notices SET announced=? WHERE id=?", (2 if not live else 1, n.id)
                )
                await self._emit(conn, "notice", n.town, {**n.to_json(), "live": live})
            return len(rows)

        return await self._write(run)

    # --- feeds -----------------------------------------------------------------

    async def load_cursor(self, feed: str) -> str | None:
        r = await self._fetchone("SELECT cursor FROM feed_state WHERE name = ?", (feed,))
        return r[0] if r else None

    async def record_failure(self, feed: str, error: str, at: datetime) -> None:
        async def run(conn: aiosqlite.Connection) -> None:
            await conn.execute(
                "INSERT INTO feed_state (name, last_attempt_at, last_error, "
                "consecutive_failures) VALUES (?,?,?,1) ON CONFLICT (name) DO UPDATE SET "
                "last_attempt_at = excluded.last_attempt_at, last_error = excluded.last_error, "
                "consecutive_failures = feed_state.consecutive_failures + 1",
                (feed, ts(at), error[:500]),
            )

        await self._write(run, notify=False)

    async def feed_states(self) -> list[FeedState]:
        rows = await self._fetchall(
            "SELECT f.name, f.cursor, f.last_attempt_at, f.last_success_at, f.last_error, "
            "f.consecutive_failures, f.counts, (SELECT count(*) FROM quarantine q "
            "WHERE q.feed = f.name) FROM feed_state f ORDER BY f.name"
        )
        return [
            FeedState(
                r[0],
                r[1],
                parse_ts(r[2]),
                parse_ts(r[3]),
                r[4],
                r[5],
                json.loads(r[6]) if r[6] else {},
                r[7],
            )
            for r in rows
        ]

    async def quarantine(self, feed: str | None = None, limit: int = 100) -> list[QuarantineRow]:
        rows = await self._fetchall(
            "SELECT id, feed, source_id, reason, at FROM quarantine "
            + ("WHERE feed = ? " if feed else "")
            + "ORDER BY id DESC LIMIT ?",
            (feed, limit) if feed else (limit,),
        )
        out = []
        for r in rows:
            at = parse_ts(r[4])
            assert at is not None
            out.append(QuarantineRow(r[0], r[1], r[2], r[3], at))
        return out

    # --- boards ----------------------------------------------------------------

    async def upsert_board(
        self, board_id: str, town: str | None, profile: Mapping[str, Any], token_hash: str | None
    ) -> None:
        async def run(conn: aiosqlite.Connection) -> None:
            await conn.execute(
                "INSERT INTO boards (id, town, profile, token_hash, created_at) "
                "VALUES (?,?,?,?,?) ON CONFLICT (id) DO UPDATE SET town = excluded.town, "
                "profile = excluded.profile, "
                "token_hash = COALESCE(excluded.token_hash, boards.token_hash)",
                (
                    board_id,
                    town,
                    json.dumps(profile, ensure_ascii=False),
                    token_hash,
                    ts(now_utc()),
                ),
            )

        await self._write(run, notify=False)

    async def boards(self) -> list[BoardRow]:
        rows = await self._fetchall(
            "SELECT id, town, profile, token_hash, last_seen_at FROM boards ORDER BY id"
        )
        return [BoardRow(r[0], r[1], json.loads(r[2]), r[3], parse_ts(r[4])) for r in rows]

    async def touch_boards(self, seen: Mapping[str, datetime]) -> None:
        if not seen:
            return

        async def run(conn: aiosqlite.Connection) -> None:
            await conn.executemany(
                "UPDATE boards SET last_seen_at = ? WHERE id = ?",
                [(ts(at), bid) for bid, at in seen.items()],
            )

        await self._write(run, notify=False)

    # --- staff -----------------------------------------------------------------

    async def add_user(
        self, name: str, role: str, towns: Sequence[str], password_hash: str
    ) -> UserRow:
        async def run(conn: aiosqlite.Connection) -> UserRow:
            await conn.execute(
                "INSERT INTO users (name, role, towns, password_hash, created_at) "
                "VALUES (?,?,?,?,?) ON CONFLICT (name) DO UPDATE SET role = excluded.role, "
                "towns = excluded.towns, password_hash = excluded.password_hash, disabled = 0",
                (name, role, ",".join(towns), password_hash, ts(now_utc())),
            )
            r = await self._one(
                conn,
                "SELECT id, name, role, towns, password_hash, disabled FROM users WHERE name = ?",
                (name,),
            )
            return _user(r)

        return await self._write(run, notify=False)

    async def get_user(self, name: str) -> UserRow | None:
        r = await self._fetchone(
            "SELECT id, name, role, towns, password_hash, disabled FROM users WHERE name = ?",
            (name,),
        )
        return _user(r) if r else None

    async def list_users(self) -> list[UserRow]:
        rows = await self._fetchall(
            "SELECT id, name, role, towns, password_hash, disabled FROM users ORDER BY name"
        )
        return [_user(r) for r in rows]

    async def set_password(self, name: str, password_hash: str) -> None:
        async def run(conn: aiosqlite.Connection) -> None:
            await conn.execute(
                "UPDATE users SET password_hash = ? WHERE name = ?", (password_hash, name)
            )

        await self._write(run, notify=False)

    async def audit(
        self, actor: str, action: str, target: str | None, detail: str | None, ip: str | None
    ) -> None:
        async def run(conn: aiosqlite.Connection) -> None:
            await conn.execute(
                "INSERT INTO audit_log (at, actor, action, target, detail, ip) "
                "VALUES (?,?,?,?,?,?)",
                (ts(now_utc()), actor, action, target, detail, ip),
            )

        await self._write(run, notify=False)

    async def audit_log(self, limit: int = 200) -> list[AuditRow]:
        rows = await self._fetchall(
            "SELECT id, at, actor, action, target, detail, ip FROM audit_log "
            "ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        out = []
        for r in rows:
            at = parse_ts(r[1])
            assert at is not None
            out.append(AuditRow(r[0], at, r[2], r[3], r[4], r[5], r[6]))
        return out

    async def backup(self, path: str) -> None:
        """An online, consistent copy of the database (SQLite's backup API)."""
        if self._writer is None:
            raise RuntimeError("store is not open")

        def copy() -> None:
            src = sqlite3.connect(self.path)
            dst = sqlite3.connect(path)
            try:
                src.backup(dst)
            finally:
                dst.close()
                src.close()

        # Holding the write lock keeps the copy from restarting on every commit.
        async with self._lock:
            await asyncio.to_thread(copy)


# --- helpers shared by the queries above ------------------------------------------


async def _all(conn: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    return list(await conn.execute_fetchall(sql, params))


async def _one(conn: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> Any:
    return next(iter(await conn.execute_fetchall(sql, params)), None)


async def _stats(
    one: Callable[[str, Sequence[Any]], Awaitable[Any]],
    all_: Callable[[str, Sequence[Any]], Awaitable[list[Any]]],
    town: str | None,
    since: datetime | None,
) -> Stats:
    where = ["withdrawn = 0"]
    params: list[Any] = []
    if town:
        where.append("town = ?")
        params.append(town)
    if since is not None:
        where.append("received_at >= ?")
        params.append(ts(since))
    w = " AND ".join(where)
    r = await one(
        "SELECT count(*), "
        f"coalesce(sum(stage IN {_CLOSED}), 0), "
        f"coalesce(sum(stage IN {_OPEN}), 0), "
        "coalesce(sum(stage = 'in_progress'), 0), "
        "coalesce(sum(outcome = 'explained'), 0), "
        "coalesce(sum(outcome = 'planned'), 0), "
        f"coalesce(sum(overdue = 1 AND stage IN {_OPEN}), 0), "
        f"coalesce(sum(supervised = 1 AND stage IN {_OPEN}), 0), "
        f"coalesce(sum(on_time = 1 AND stage IN {_CLOSED}), 0), "
        "coalesce(sum(satisfaction IS NOT NULL), 0), "
        "coalesce(sum(satisfaction IN ('satisfied', 'basically_satisfied')), 0) "
        f"FROM cases WHERE {w}",
        params,
    )
    channels = await all_(
        f"SELECT coalesce(channel, '其他'), count(*) FROM cases WHERE {w} "
        "GROUP BY 1 ORDER BY 2 DESC, 1",
        params,
    )
    return Stats(
        town=town,
        received=r[0],
        resolved=r[1],
        open=r[2],
        in_progress=r[3],
        explained=r[4],
        planned=r[5],
        overdue=r[6],
        supervised=r[7],
        on_time=r[8],
        rated=r[9],
        satisfied=r[10],
        channels={c: n for c, n in channels},
    )


def _user(r: Sequence[Any]) -> UserRow:
    return UserRow(r[0], r[1], r[2], tuple(t for t in r[3].split(",") if t), r[4], bool(r[5]))


def _replace(c: PublicCase, **kw: Any) -> PublicCase:
    import dataclasses

    return dataclasses.replace(c, **kw)


def _split_sql(text: str) -> list[str]:
    # Comments go first: they may contain semicolons. The schema has no "--" in strings.
    lines = [ln.split("--", 1)[0] for ln in text.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


__all__ = ["CLOSED_STAGES", "OPEN_STAGES", "SqliteStore"]
