"""PostgreSQL store: the same schema and behaviour as SQLite, for several processes.

Times stay fixed-width UTC text and every text column is collated "C", so one
migration file, one set of row helpers and SQLite's byte order serve both
backends.

Every write transaction starts with `pg_advisory_xact_lock` on one key per
schema, so writes are serialized the way SQLite's single writer serializes
them. That is what keeps the event log gap-free: PostgreSQL assigns a
sequence number at insert, not at commit, so two concurrent writers could
commit seq 12 before seq 11, and a tailer that read 12 would never go back
for 11. With the lock, a transaction takes its first seq only after the
previous writer committed. `event_bounds` takes the same lock in shared mode,
so the newest seq it reports is never one still in flight.

A transaction that wrote events also runs `pg_notify` before it commits; the
notification is delivered at commit to a dedicated LISTEN connection in every
process, which calls `on_commit` so every process's tailer wakes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import re
import zlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any, TypeAlias, TypeVar

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from display.domain import Notice, PublicCase, Stats, TimelineEntry, now_utc
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

log = logging.getLogger("yizheng.store")

T = TypeVar("T")
Conn: TypeAlias = "PoolConnectionProxy[asyncpg.Record] | asyncpg.Connection[asyncpg.Record]"

_OPEN = "('registered','assigned','in_progress')"
_CLOSED = "('resolved','replied','verified')"

#: First half of every advisory lock key ("yizh"); the second half names the schema
#: and the purpose, so stores in different schemas of one database never contend.
LOCK_NAMESPACE = 0x79697A68


def lock_key(schema: str, purpose: str) -> tuple[int, int]:
    """The (namespace, key) pair of an advisory lock for one purpose in one schema."""
    h = zlib.crc32(f"{schema}:{purpose}".encode())
    return LOCK_NAMESPACE, h - (1 << 32) if h >= 1 << 31 else h


def channel_name(schema: str) -> str:
    """The NOTIFY channel for one schema's event log (an identifier: at most 63 bytes)."""
    name = f"yizheng_events_{schema}"
    return name if len(name.encode()) <= 63 else f"yizheng_events_{zlib.crc32(name.encode()):x}"


_TEXT = re.compile(r"\bTEXT\b")
_SERIAL = re.compile(r"\bINTEGER\s+PRIMARY\s+KEY\s*/\*AUTOINCREMENT\*/", re.IGNORECASE)


def pg_schema_sql(text: str) -> list[str]:
    """A migration written for SQLite, as PostgreSQL statements.

    `INTEGER PRIMARY KEY /*AUTOINCREMENT*/` becomes `BIGSERIAL PRIMARY KEY` and every
    TEXT column is collated "C" (byte order, as in SQLite)."""
    out = []
    for statement in _split_sql(text):
        statement = _SERIAL.sub("BIGSERIAL PRIMARY KEY", statement)
        statement = _TEXT.sub('TEXT COLLATE "C"', statement)
        out.append(statement)
    return out


@functools.lru_cache(maxsize=512)
def _q(sql: str) -> str:
    """`?` placeholders (as in sqlite.py) to PostgreSQL's `$1, $2, …`."""
    parts = sql.split("?")
    if len(parts) == 1:
        return sql
    return parts[0] + "".join(f"${i}{p}" for i, p in enumerate(parts[1:], start=1))


_UPSERT_CASE = (
    f"INSERT INTO cases ({CASE_COLUMNS}) VALUES "
    f"({', '.join(f'${i}' for i in range(1, len(CASE_COLUMNS.split(',')) + 1))}) "
    "ON CONFLICT (no) DO UPDATE SET "
    + ", ".join(f"{col.strip()} = excluded.{col.strip()}" for col in CASE_COLUMNS.split(",")[1:])
)


def _split_sql(text: str) -> list[str]:
    # Comments go first: they may contain semicolons. The schema has no "--" in strings.
    lines = [ln.split("--", 1)[0] for ln in text.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def _user(r: Sequence[Any]) -> UserRow:
    return UserRow(r[0], r[1], r[2], tuple(t for t in r[3].split(",") if t), r[4], bool(r[5]))


def _rowcount(status: str) -> int:
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


class PostgresStore:
    def __init__(
        self,
        url: str,
        *,
        on_commit: Callable[[], None] | None = None,
        min_size: int = 1,
        max_size: int = 10,
        listen: bool = True,
    ) -> None:
        self.url = url
        self.on_commit = on_commit
        self._min_size = min_size
        self._max_size = max_size
        self._listen = listen
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        self._listener: asyncpg.Connection[asyncpg.Record] | None = None
        self._listen_task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self.schema = ""
        self.channel = ""
        self._write_key = (0, 0)
        self._closed = False
        #: Notifications received on the LISTEN connection (for /metrics and tests).
        self.notifications = 0

    # --- lifecycle -----------------------------------------------------------

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(
            self.url, min_size=self._min_size, max_size=self._max_size
        )
        schema = await self._pool.fetchval("SELECT current_schema()")
        if schema is None:
            await self._pool.close()
            self._pool = None
            raise RuntimeError("PostgreSQL: no schema on the search_path exists")
        self.schema = str(schema)
        self.channel = channel_name(self.schema)
        self._write_key = lock_key(self.schema, "write")
        if self._listen:
            self._listen_task = asyncio.create_task(self._listen_forever(), name="postgres-listen")
            # Start-up waits for the first LISTEN, so no commit after open() goes unheard.
            waiter = asyncio.create_task(self._listening.wait())
            await asyncio.wait(
                {waiter, self._listen_task}, timeout=10, return_when=asyncio.FIRST_COMPLETED
            )
            waiter.cancel()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._listen_task is not None:
            self._listen_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listen_task
            self._listen_task = None
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), 10)
            except TimeoutError:
                pool.terminate()

    async def _listen_forever(self) -> None:
        """Hold a LISTEN connection; reconnect when it is lost, then wake the tailer so
        it reads whatever was committed while nobody was listening."""
        delay = 0.5
        while not self._closed:
            try:
                await self._listen_once()
                delay = 0.5
            except asyncio.CancelledError:
                raise
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
                log.warning(
                    "PostgreSQL LISTEN connection failed (%s); reconnecting", type(e).__name__
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _listen_once(self) -> None:
        conn = await asyncpg.connect(self.url)
        try:
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _c: lost.set())
            await conn.add_listener(self.channel, self._notified)
            self._listener = conn
            if self._listening.is_set():
                self._wake()  # reconnected: catch up on what was committed meanwhile
            self._listening.set()
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), 30)
                if not lost.is_set():
                    # A half-open TCP connection never reports itself; ask.
                    await conn.execute("SELECT 1")
            log.warning("PostgreSQL LISTEN connection lost; reconnecting")
        finally:
            self._listener = None
            if not conn.is_closed():
                conn.terminate()

    def _notified(self, _conn: object, _pid: int, _channel: str, _payload: object) -> None:
        self.notifications += 1
        self._wake()

    def _wake(self) -> None:
        if self.on_commit is not None:
            self.on_commit()

    async def listener_pid(self) -> int | None:
        """The server process id of the LISTEN connection (for tests and diagnostics)."""
        conn = self._listener
        return None if conn is None else conn.get_server_pid()

    # --- plumbing -------------------------------------------------------------

    def _need_pool(self) -> asyncpg.Pool[asyncpg.Record]:
        if self._pool is None:
            raise RuntimeError("store is not open")
        return self._pool

    async def _fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        rows = await self._need_pool().fetch(_q(sql), *params)
        return [tuple(r) for r in rows]

    async def _fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        r = await self._need_pool().fetchrow(_q(sql), *params)
        return None if r is None else tuple(r)

    async def _write(self, fn: Callable[[Conn], Awaitable[T]], *, notify: bool = True) -> T:
        async with self._need_pool().acquire() as conn:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", *self._write_key)
                result = await fn(conn)
                if notify:
                    await conn.execute("SELECT pg_notify($1, '')", self.channel)
        if notify:
            self._wake()
        return result

    @staticmethod
    async def _one(conn: Conn, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        r = await conn.fetchrow(_q(sql), *params)
        return None if r is None else tuple(r)

    @staticmethod
    async def _all(conn: Conn, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in await conn.fetch(_q(sql), *params)]

    @staticmethod
    async def _exec(conn: Conn, sql: str, params: Sequence[Any] = ()) -> str:
        return await conn.execute(_q(sql), *params)

    @classmethod
    async def _emit(
        cls, conn: Conn, kind: str, town: str | None, payload: Mapping[str, Any]
    ) -> None:
        await cls._exec(
            conn,
            "INSERT INTO events (at, kind, town, data) VALUES (?, ?, ?, ?)",
            (ts(now_utc()), kind, town, event_json(kind, payload)),
        )

    # --- migrations ------------------------------------------------------------

    async def migrate(self) -> list[str]:
        """Apply pending migrations, each with its record in one transaction. A session
        advisory lock makes a second process starting at the same moment wait, then find
        nothing left to do."""
        key = lock_key(self.schema, "migrate")
        applied: list[str] = []
        async with self._need_pool().acquire() as conn:
            await conn.execute("SELECT pg_advisory_lock($1, $2)", *key)
            try:
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS migrations "
                    '(name TEXT COLLATE "C" PRIMARY KEY, applied_at TEXT)'
                )
                done = {r[0] for r in await conn.fetch("SELECT name FROM migrations")}
                for name, text in migration_files():
                    if name in done:
                        continue
                    async with conn.transaction():
                        for statement in pg_schema_sql(text):
                            await conn.execute(statement)
                        await conn.execute(
                            "INSERT INTO migrations VALUES ($1, $2)", name, ts(now_utc())
                        )
                    applied.append(name)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1, $2)", *key)
        return applied

    # --- cases -----------------------------------------------------------------

    async def _stats_tx(self, conn: Conn, town: str | None) -> Stats:
        return await _stats(
            lambda sql, p: self._one(conn, sql, p),
            lambda sql, p: self._all(conn, sql, p),
            town,
            None,
        )

    async def apply_cases(
        self,
        feed: str,
        changes: Sequence[CaseChange],
        rejected: Sequence[Rejected],
        cursor: str | None,
    ) -> IngestCounts:
        """The decisions are base.plan_cases, the same as SQLite's, made against one read
        of the existing rows; each kind of row is then written with one pipelined
        `executemany`, so the write lock is held briefly even for a large batch."""

        async def run(conn: Conn) -> IngestCounts:
            at = ts(now_utc())
            existing: dict[str, tuple[str, str, PublicCase]] = {}
            nos = sorted({ch.case.no for ch in changes})
            if nos:
                for r in await conn.fetch(
                    f"SELECT feed, source_id, {CASE_SELECT} FROM cases WHERE no = ANY($1::text[])",
                    nos,
                ):
                    row = tuple(r)
                    existing[row[2]] = (row[0], row[1], case_from_row(row[2:]))
            plan = plan_cases(feed, changes, rejected, existing)
            if plan.upserts:
                await conn.executemany(_UPSERT_CASE, plan.upserts)
            if plan.timeline:
                await conn.executemany(
                    "INSERT INTO case_timeline (no, at, stage, department, outcome) "
                    "VALUES ($1, $2, $3, $4, $5)",
                    plan.timeline,
                )
            if plan.notes:
                # Executed in order, so a note repeated within the batch is also skipped.
                await conn.executemany(
                    "INSERT INTO case_timeline (no, at, stage, note) "
                    "SELECT $1::text, $2::text, $3::text, $4::text WHERE NOT EXISTS "
                    "(SELECT 1 FROM case_timeline WHERE no = $1 AND at = $2 AND note = $4)",
                    plan.notes,
                )
            if plan.events:
                await conn.executemany(
                    "INSERT INTO events (at, kind, town, data) VALUES ($1, $2, $3, $4)",
                    [(at, kind, town, data) for kind, town, data in plan.events],
                )
            if plan.quarantine:
                await conn.executemany(
                    "INSERT INTO quarantine (feed, source_id, reason, at) VALUES ($1, $2, $3, $4)",
                    [(feed, sid, reason, at) for sid, reason in plan.quarantine],
                )
            for town in sorted(plan.touched):
                stats = await self._stats_tx(conn, town)
                await self._emit(conn, "stats", town, stats.to_json())
            await self._exec(
                conn,
                "INSERT INTO feed_state (name, cursor, last_attempt_at, last_success_at, "
                "last_error, consecutive_failures, counts) VALUES (?,?,?,?,NULL,0,?) "
                "ON CONFLICT (name) DO UPDATE SET cursor = COALESCE(excluded.cursor, "
                "feed_state.cursor), last_attempt_at = excluded.last_attempt_at, "
                "last_success_at = excluded.last_success_at, last_error = NULL, "
                "consecutive_failures = 0, counts = excluded.counts",
                (feed, cursor, at, at, json.dumps(plan.counts.as_dict())),
            )
            return plan.counts

        return await self._write(run)

    async def refresh_overdue(self, today: date) -> int:
        """Flag open cases whose due date has passed; each change is an event."""

        async def run(conn: Conn) -> int:
            rows = await self._all(
                conn,
                f"SELECT {CASE_SELECT} FROM cases WHERE withdrawn = 0 AND ("
                f"(stage IN {_OPEN} AND due_date IS NOT NULL AND due_date < ? AND overdue = 0)"
                f" OR ((stage NOT IN {_OPEN} OR due_date >= ?) AND overdue = 1)) ORDER BY no",
                (today.isoformat(), today.isoformat()),
            )
            touched: set[str] = set()
            for r in rows:
                c = case_from_row(r)
                c = dataclasses.replace(c, overdue=not c.overdue)
                await self._exec(
                    conn, "UPDATE cases SET overdue = ? WHERE no = ?", (int(c.overdue), c.no)
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
        async def run(conn: Conn) -> PublicCase | None:
            r = await self._one(conn, f"SELECT {CASE_SELECT} FROM cases WHERE no = ?", (no,))
            if r is None:
                return None
            c = dataclasses.replace(case_from_row(r), supervised=supervised)
            await self._exec(
                conn,
                "UPDATE cases SET supervised = ?, supervised_note = ? WHERE no = ?",
                (int(supervised), note, no),
            )
            await self._exec(
                conn,
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
        # NULLS FIRST is SQLite's order for NULL in ascending sorts.
        order = (
            "overdue DESC, supervised DESC, due_date NULLS FIRST, received_at"
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
        return await _stats(self._fetchone, self._fetchall, town, since)

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
            assert r is not None
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

        Taken under the write lock in shared mode, so no writer is mid-transaction: the
        newest seq is committed (or was rolled back, which only leaves a harmless gap).
        The sequence's last value survives pruning."""
        async with self._need_pool().acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock_shared($1, $2)", *self._write_key)
            r = await conn.fetchrow(
                "SELECT min(seq), max(seq), "
                "coalesce(pg_sequence_last_value(pg_get_serial_sequence('events', 'seq')), 0)"
                " FROM events"
            )
        assert r is not None
        newest = int(r[2])
        if r[0] is None:
            return newest + 1, newest
        return int(r[0]), max(int(r[1]), newest)

    async def prune_events(self, keep: int, before: datetime) -> int:
        async def run(conn: Conn) -> int:
            status = await self._exec(
                conn,
                "DELETE FROM events WHERE seq <= (SELECT max(seq) FROM events) - ? OR at < ?",
                (keep, ts(before)),
            )
            return _rowcount(status)

        return await self._write(run, notify=False)

    # --- notices ---------------------------------------------------------------

    async def save_notice(self, notice: Notice) -> Notice:
        async def run(conn: Conn) -> Notice:
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
                await self._exec(
                    conn,
                    "UPDATE notices SET town=?, title=?, body=?, case_no=?, urgent=?, "
                    "publish_at=?, expires_at=?, withdrawn_at=?, announced=? WHERE id=?",
                    (*values, int(live), notice.id),
                )
                nid = notice.id
            else:
                nid = await conn.fetchval(
                    _q(
                        "INSERT INTO notices (town, title, body, case_no, urgent, publish_at, "
                        "expires_at, withdrawn_at, created_at, created_by, announced) "
                        "VALUES (?,?,?,?,?,?,?,?,?,?,?) RETURNING id"
                    ),
                    *values,
                    ts(now),
                    notice.created_by,
                    int(live),
                )
            r = await self._one(conn, f"SELECT {NOTICE_SELECT} FROM notices WHERE id=?", (nid,))
            assert r is not None
            saved = notice_from_row(r)
            await self._emit(
                conn, "notice", saved.town, {**saved.to_json(), "live": saved.is_live(now)}
            )
            return saved

        return await self._write(run)

    async def withdraw_notice(self, notice_id: int, at: datetime) -> Notice | None:
        async def run(conn: Conn) -> Notice | None:
            status = await self._exec(
                conn, "UPDATE notices SET withdrawn_at=? WHERE id=?", (ts(at), notice_id)
            )
            if _rowcount(status) == 0:
                return None
            r = await self._one(
                conn, f"SELECT {NOTICE_SELECT} FROM notices WHERE id=?", (notice_id,)
            )
            assert r is not None
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

        async def run(conn: Conn) -> int:
            t = ts(now)
            rows = await self._all(
                conn,
                f"SELECT {NOTICE_SELECT}, announced FROM notices WHERE withdrawn_at IS NULL AND ("
                "(announced = 0 AND (publish_at IS NULL OR publish_at <= ?) AND "
                "(expires_at IS NULL OR expires_at > ?)) OR "
                "(announced = 1 AND expires_at IS NOT NULL AND expires_at <= ?)) ORDER BY id",
                (t, t, t),
            )
            for r in rows:
                n = notice_from_row(r)
                live = n.is_live(now)
                await self._exec(
                    conn, "UPDATE notices SET announced=? WHERE id=?", (2 if not live else 1, n.id)
                )
                await self._emit(conn, "notice", n.town, {**n.to_json(), "live": live})
            return len(rows)

        return await self._write(run)

    # --- feeds -----------------------------------------------------------------

    async def load_cursor(self, feed: str) -> str | None:
        r = await self._fetchone("SELECT cursor FROM feed_state WHERE name = ?", (feed,))
        return r[0] if r else None

    async def record_failure(self, feed: str, error: str, at: datetime) -> None:
        async def run(conn: Conn) -> None:
            await self._exec(
                conn,
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
        async def run(conn: Conn) -> None:
            await self._exec(
                conn,
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

        async def run(conn: Conn) -> None:
            await conn.executemany(
                "UPDATE boards SET last_seen_at = $1 WHERE id = $2",
                [(ts(at), bid) for bid, at in sorted(seen.items())],
            )

        await self._write(run, notify=False)

    # --- staff -----------------------------------------------------------------

    async def add_user(
        self, name: str, role: str, towns: Sequence[str], password_hash: str
    ) -> UserRow:
        async def run(conn: Conn) -> UserRow:
            await self._exec(
                conn,
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
            assert r is not None
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
        async def run(conn: Conn) -> None:
            await self._exec(
                conn, "UPDATE users SET password_hash = ? WHERE name = ?", (password_hash, name)
            )

        await self._write(run, notify=False)

    async def audit(
        self, actor: str, action: str, target: str | None, detail: str | None, ip: str | None
    ) -> None:
        async def run(conn: Conn) -> None:
            await self._exec(
                conn,
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
        """PostgreSQL is backed up with pg_dump (docs/deploy.md), not through the service."""
        raise NotImplementedError("PostgreSQL: use pg_dump --format=custom (docs/deploy.md)")


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
        f"count(*) FILTER (WHERE stage IN {_CLOSED}), "
        f"count(*) FILTER (WHERE stage IN {_OPEN}), "
        "count(*) FILTER (WHERE stage = 'in_progress'), "
        "count(*) FILTER (WHERE outcome = 'explained'), "
        "count(*) FILTER (WHERE outcome = 'planned'), "
        f"count(*) FILTER (WHERE overdue = 1 AND stage IN {_OPEN}), "
        f"count(*) FILTER (WHERE supervised = 1 AND stage IN {_OPEN}), "
        f"count(*) FILTER (WHERE on_time = 1 AND stage IN {_CLOSED}), "
        "count(*) FILTER (WHERE satisfaction IS NOT NULL), "
        "count(*) FILTER (WHERE satisfaction IN ('satisfied', 'basically_satisfied')) "
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


__all__ = ["PostgresStore", "channel_name", "lock_key", "pg_schema_sql"]
