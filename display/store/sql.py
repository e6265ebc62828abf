"""The SQL both backends share, written once.

`SqlStore` implements every query and write of the `Store` protocol against
`SqlConn`, a four-method async connection interface (plus `insert`, for the new
row's id). Statements use `?` placeholders; the PostgreSQL adapter rewrites them
to `$1, $2, …` once per statement (cached). A backend subclass supplies only
what truly differs: connections, the write transaction and its locking
(`_write`), the read connection (`_reads`), a few dialect fragments, and the
methods that are dialect-specific as a whole (open/close, migrate, event_bounds,
backup).

Only constant fragments (column lists, stage lists, fixed WHERE clauses and the
dialect's fragments) are interpolated into SQL; every value is a bound parameter.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, ClassVar, Protocol, TypeVar

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
    notice_from_row,
    parse_ts,
    plan_cases,
    ts,
)
from feeds.record import Rejected

T = TypeVar("T")

OPEN = "('registered','assigned','in_progress')"
CLOSED = "('resolved','replied','verified')"


class SqlConn(Protocol):
    """The little a shared query needs from a connection. Placeholders are `?`."""

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...
    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Any: ...
    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; the number of rows it changed."""
        ...

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...
    async def insert(self, sql: str, params: Sequence[Any]) -> int:
        """Run one INSERT into a table with an `id` key; the new row's id."""
        ...


def split_sql(text: str) -> list[str]:
    """A migration file as statements."""
    # Comments go first: they may contain semicolons. The schema has no "--" in strings.
    lines = [ln.split("--", 1)[0] for ln in text.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def problem_key(source_id: str | None, reason: str) -> str:
    """What identifies a quarantined problem: the record's id, else its reason."""
    return source_id if source_id is not None else "?" + reason


def user_from_row(r: Sequence[Any]) -> UserRow:
    towns = tuple(t for t in r[3].split(",") if t)
    return UserRow(r[0], r[1], r[2], towns, r[4], bool(r[5]), int(r[6]))


UPSERT_CASE = (
    f"INSERT INTO cases ({CASE_COLUMNS}) VALUES ({','.join('?' * len(CASE_COLUMNS.split(',')))}) "
    "ON CONFLICT (no) DO UPDATE SET "
    + ", ".join(f"{col.strip()} = excluded.{col.strip()}" for col in CASE_COLUMNS.split(",")[1:])
)
INSERT_EVENT = "INSERT INTO events (at, kind, town, data) VALUES (?, ?, ?, ?)"
SELECT_NOTICE = f"SELECT {NOTICE_SELECT} FROM notices WHERE id=?"
# One row per problem (migration 0004): seen again, it is counted, not repeated.
UPSERT_PROBLEM = (
    "INSERT INTO quarantine (feed, source_id, source_key, reason, at, first_at, seen) "
    "VALUES (?,?,?,?,?,?,1) ON CONFLICT (feed, source_key) DO UPDATE SET "
    "source_id = excluded.source_id, reason = excluded.reason, at = excluded.at, "
    "seen = quarantine.seen + 1"
)
SELECT_USER = "SELECT id, name, role, towns, password_hash, disabled, session_epoch FROM users"


@functools.lru_cache(maxsize=64)
def stats_sql(count_if: str, where: str) -> str:
    """The one-row totals of `stats`; `count_if` is the dialect's conditional count
    with `{}` for the condition (a constant template)."""
    conditions = (
        f"stage IN {CLOSED}",
        f"stage IN {OPEN}",
        "stage = 'in_progress'",
        "outcome = 'explained'",
        "outcome = 'planned'",
        f"overdue = 1 AND stage IN {OPEN}",
        f"supervised = 1 AND stage IN {OPEN}",
        f"on_time = 1 AND stage IN {CLOSED}",
        "satisfaction IS NOT NULL",
        "satisfaction IN ('satisfied', 'basically_satisfied')",
    )
    counts = ", ".join(count_if.format(c) for c in conditions)
    return f"SELECT count(*), {counts} FROM cases WHERE {where}"


#: Cases per write transaction of `apply_cases` (about 50 ms of writing on SQLite).
WRITE_CHUNK = 2_000


@dataclass(frozen=True)
class _BatchEnd:
    """What the last transaction of `apply_cases` writes besides its chunk."""

    rejected: Sequence[Rejected]
    cursor: str | None
    #: Counts of the chunks written before.
    before: IngestCounts
    #: Towns the chunks before changed.
    touched: set[str]
    #: Towns whose figures to announce if anything changed (None: one chunk, the
    #: towns it touched).
    figures: set[str] | None


class SqlStore(ABC):
    """Everything the two stores share. Subclasses: SqliteStore, PostgresStore."""

    #: Dialect fragments (constants).
    #: A conditional count, `{}` standing for the condition.
    COUNT_IF: ClassVar[str]
    #: Appended to `due_date` in the open-case order, so NULL sorts first everywhere.
    NULLS_FIRST: ClassVar[str] = ""
    #: Insert one (no, at, stage, note) timeline note unless the same note is there.
    INSERT_NOTE: ClassVar[str]

    on_commit: Callable[[], None] | None

    # --- what a backend supplies ------------------------------------------------

    @abstractmethod
    def _reads(self) -> SqlConn:
        """A connection for one read outside any write transaction."""

    @abstractmethod
    async def _write(self, fn: Callable[[SqlConn], Awaitable[T]], *, notify: bool = True) -> T:
        """Run `fn` as one serialized write transaction; wake tailers if `notify`."""

    @abstractmethod
    async def _existing_cases(self, conn: SqlConn, nos: Sequence[str]) -> list[Any]:
        """Rows of (feed, source_id, CASE_SELECT...) for the given case numbers."""

    # --- plumbing ---------------------------------------------------------------

    async def _fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return await self._reads().fetchall(sql, params)

    async def _fetchone(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return await self._reads().fetchone(sql, params)

    @staticmethod
    async def _emit(conn: SqlConn, kind: str, town: str | None, payload: Mapping[str, Any]) -> None:
        await conn.execute(INSERT_EVENT, (ts(now_utc()), kind, town, event_json(kind, payload)))

    async def _stats_on(self, conn: SqlConn, town: str | None, since: datetime | None) -> Stats:
        where = ["withdrawn = 0"]
        params: list[Any] = []
        if town:
            where.append("town = ?")
            params.append(town)
        if since is not None:
            where.append("received_at >= ?")
            params.append(ts(since))
        w = " AND ".join(where)
        r = await conn.fetchone(stats_sql(self.COUNT_IF, w), params)
        channels = await conn.fetchall(
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

    async def _stats_of_towns(self, conn: SqlConn, towns: Iterable[str]) -> dict[str, Stats]:
        """The current figures of each of `towns` (read from the covering index
        cases_stats, not from the case rows; see migration 0003)."""
        return {t: await self._stats_on(conn, t, None) for t in sorted(set(towns))}

    async def _emit_stats(self, conn: SqlConn, town: str) -> None:
        await self._emit(conn, "stats", town, (await self._stats_on(conn, town, None)).to_json())

    # --- cases ------------------------------------------------------------------

    async def apply_cases(
        self,
        feed: str,
        changes: Sequence[CaseChange],
        rejected: Sequence[Rejected],
        cursor: str | None,
    ) -> IngestCounts:
        """Store a batch; its quarantine, cursor and town figures commit together.

        The decisions are base.plan_cases, made against one read of the existing
        rows per chunk; each kind of row is then written with one `executemany`. A batch of
        more than WRITE_CHUNK cases is written in several transactions, so that a
        push or a staff action waits for one chunk, never for a whole 100,000-row
        import. The cursor, the quarantine and the `stats` events go with the last
        chunk: if the process dies in between, the source is read again from the
        old cursor and the chunks already stored are simply unchanged (upserts are
        idempotent, and only a visible change makes an event).
        """
        chunks = [changes[i : i + WRITE_CHUNK] for i in range(0, len(changes), WRITE_CHUNK)]
        done = IngestCounts()
        touched: set[str] = set()
        for chunk in chunks[:-1]:
            counts, towns = await self._write(
                functools.partial(self._apply_chunk, feed, chunk, None)
            )
            done.add(counts)
            touched |= towns
        # Several chunks: the last announces the figures of every town in the batch
        # when anything changed, so that they are announced after a crash in between.
        end = _BatchEnd(
            rejected,
            cursor,
            done,
            touched,
            {ch.case.town for ch in changes} | touched if len(chunks) > 1 else None,
        )
        counts, _ = await self._write(
            functools.partial(self._apply_chunk, feed, chunks[-1] if chunks else (), end)
        )
        done.add(counts)
        return done

    async def _apply_chunk(
        self, feed: str, changes: Sequence[CaseChange], end: _BatchEnd | None, conn: SqlConn
    ) -> tuple[IngestCounts, set[str]]:
        """One transaction of `apply_cases`: a chunk's cases, timeline and events; with
        `end` (the batch's last chunk), also its quarantine, cursor and figures."""
        at = ts(now_utc())
        existing: dict[str, tuple[str, str, PublicCase]] = {}
        for r in await self._existing_cases(conn, [ch.case.no for ch in changes]):
            existing[r[2]] = (r[0], r[1], case_from_row(r[2:]))
        rejected = end.rejected if end is not None else ()
        if len(changes) > 500:
            # Comparing a large chunk is CPU: off the event loop, so streams and pages
            # are served meanwhile.
            plan = await asyncio.to_thread(plan_cases, feed, changes, rejected, existing)
        else:
            plan = plan_cases(feed, changes, rejected, existing)
        if plan.upserts:
            await conn.executemany(UPSERT_CASE, plan.upserts)
        if plan.timeline:
            await conn.executemany(
                "INSERT INTO case_timeline (no, at, stage, department, outcome) VALUES (?,?,?,?,?)",
                plan.timeline,
            )
        if plan.notes:
            # Executed in order, so a note repeated within the batch is also skipped.
            await conn.executemany(self.INSERT_NOTE, plan.notes)
        await self._track_problems(conn, feed, changes, plan.quarantine, at)
        events = list(plan.events)
        if end is not None:
            towns = plan.touched
            if end.figures is not None:
                towns = end.figures if plan.touched or end.touched else set()
            for town, stats in (await self._stats_of_towns(conn, towns)).items():
                events.append(("stats", town, event_json("stats", stats.to_json())))
        if events:
            await conn.executemany(
                INSERT_EVENT, [(at, kind, town, data) for kind, town, data in events]
            )
        if end is not None:
            counts = dataclasses.replace(end.before, reasons=[])
            counts.add(plan.counts)
            await conn.execute(
                "INSERT INTO feed_state (name, cursor, last_attempt_at, last_success_at, "
                "last_error, consecutive_failures, counts) VALUES (?,?,?,?,NULL,0,?) "
                "ON CONFLICT (name) DO UPDATE SET cursor = COALESCE(excluded.cursor, "
                "feed_state.cursor), last_attempt_at = excluded.last_attempt_at, "
                "last_success_at = excluded.last_success_at, last_error = NULL, "
                "consecutive_failures = 0, counts = excluded.counts",
                (feed, end.cursor, at, at, json.dumps(counts.as_dict())),
            )
        return plan.counts, plan.touched

    async def _track_problems(
        self,
        conn: SqlConn,
        feed: str,
        changes: Sequence[CaseChange],
        refused: Sequence[tuple[str | None, str]],
        at: str | None,
    ) -> None:
        """Keep the feed's quarantine to its current problems: a record accepted now
        leaves it, a record refused now is listed once (last seen, how often)."""
        # The cost follows the batch, not the size of the quarantine: one probe when the
        # feed has no problems listed (the usual case), else one index lookup per record.
        if changes and await conn.fetchone(
            "SELECT 1 FROM quarantine WHERE feed = ? LIMIT 1", (feed,)
        ):
            accepted = {ch.source_id for ch in changes} - {sid for sid, _ in refused}
            await conn.executemany(
                "DELETE FROM quarantine WHERE feed = ? AND source_key = ?",
                [(feed, key) for key in sorted(accepted)],
            )
        if refused:
            await conn.executemany(
                UPSERT_PROBLEM,
                [(feed, sid, problem_key(sid, reason), reason, at, at) for sid, reason in refused],
            )

    async def refresh_overdue(self, today: date) -> int:
        """Flag open cases whose due date has passed; each change is an event."""

        async def run(conn: SqlConn) -> int:
            rows = await conn.fetchall(
                f"SELECT {CASE_SELECT} FROM cases WHERE withdrawn = 0 AND ("
                f"(stage IN {OPEN} AND due_date IS NOT NULL AND due_date < ? AND overdue = 0)"
                f" OR ((stage NOT IN {OPEN} OR due_date >= ?) AND overdue = 1)) ORDER BY no",
                (today.isoformat(), today.isoformat()),
            )
            touched: set[str] = set()
            for r in rows:
                c = case_from_row(r)
                c = dataclasses.replace(c, overdue=not c.overdue)
                await conn.execute(
                    "UPDATE cases SET overdue = ? WHERE no = ?", (int(c.overdue), c.no)
                )
                await self._emit(conn, "case", c.town, c.to_json())
                touched.add(c.town)
            for town in sorted(touched):
                await self._emit_stats(conn, town)
            return len(rows)

        return await self._write(run)

    async def set_supervised(
        self, no: str, supervised: bool, note: str | None
    ) -> PublicCase | None:
        async def run(conn: SqlConn) -> PublicCase | None:
            r = await conn.fetchone(f"SELECT {CASE_SELECT} FROM cases WHERE no = ?", (no,))
            if r is None:
                return None
            c = dataclasses.replace(case_from_row(r), supervised=supervised)
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
            await self._emit_stats(conn, c.town)
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
            where.append(f"stage IN {OPEN}")
        # The case number last: ties must not depend on the index the planner picks,
        # or pages (LIMIT/OFFSET) could repeat or skip a case.
        order = (
            f"overdue DESC, supervised DESC, due_date{self.NULLS_FIRST}, received_at, no"
            if open_only
            else "updated_at DESC, no"
        )
        rows = await self._fetchall(
            f"SELECT {CASE_SELECT} FROM cases WHERE {' AND '.join(where)} "
            f"ORDER BY {order} LIMIT ? OFFSET ?",
            (*params, limit, offset),
        )
        return [case_from_row(r) for r in rows]

    async def stats(self, town: str | None = None, since: datetime | None = None) -> Stats:
        return await self._stats_on(self._reads(), town, since)

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

    # --- events -----------------------------------------------------------------

    async def events_after(self, seq: int, limit: int = 1000) -> list[Event]:
        rows = await self._fetchall(
            "SELECT seq, kind, town, data, at FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
            (seq, limit),
        )
        return [Event(r[0], r[1], r[2], r[3], parse_ts(r[4])) for r in rows]

    async def prune_events(self, keep: int, before: datetime) -> int:
        async def run(conn: SqlConn) -> int:
            return await conn.execute(
                "DELETE FROM events WHERE seq <= (SELECT max(seq) FROM events) - ? OR at < ?",
                (keep, ts(before)),
            )

        return await self._write(run, notify=False)

    # --- notices ----------------------------------------------------------------

    async def save_notice(self, notice: Notice) -> Notice:
        async def run(conn: SqlConn) -> Notice:
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
                nid = await conn.insert(
                    "INSERT INTO notices (town, title, body, case_no, urgent, publish_at, "
                    "expires_at, withdrawn_at, created_at, created_by, announced) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (*values, ts(now), notice.created_by, int(live)),
                )
            r = await conn.fetchone(SELECT_NOTICE, (nid,))
            assert r is not None
            saved = notice_from_row(r)
            await self._emit(
                conn, "notice", saved.town, {**saved.to_json(), "live": saved.is_live(now)}
            )
            return saved

        return await self._write(run)

    async def withdraw_notice(self, notice_id: int, at: datetime) -> Notice | None:
        async def run(conn: SqlConn) -> Notice | None:
            changed = await conn.execute(
                "UPDATE notices SET withdrawn_at=? WHERE id=?", (ts(at), notice_id)
            )
            if changed == 0:
                return None
            r = await conn.fetchone(SELECT_NOTICE, (notice_id,))
            assert r is not None
            n = notice_from_row(r)
            await self._emit(conn, "notice", n.town, {**n.to_json(), "live": False})
            return n

        return await self._write(run)

    async def get_notice(self, notice_id: int) -> Notice | None:
        r = await self._fetchone(SELECT_NOTICE, (notice_id,))
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

        async def run(conn: SqlConn) -> int:
            t = ts(now)
            rows = await conn.fetchall(
                f"SELECT {NOTICE_SELECT}, announced FROM notices WHERE withdrawn_at IS NULL AND ("
                "(announced = 0 AND (publish_at IS NULL OR publish_at <= ?) AND "
                "(expires_at IS NULL OR expires_at > ?)) OR "
                "(announced = 1 AND expires_at IS NOT NULL AND expires_at <= ?)) ORDER BY id",
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

    # --- feeds ------------------------------------------------------------------

    async def load_cursor(self, feed: str) -> str | None:
        r = await self._fetchone("SELECT cursor FROM feed_state WHERE name = ?", (feed,))
        return r[0] if r else None

    async def record_failure(self, feed: str, error: str, at: datetime) -> None:
        async def run(conn: SqlConn) -> None:
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
        """Current problems, the most recently seen first."""
        rows = await self._fetchall(
            "SELECT id, feed, source_id, reason, at, first_at, seen FROM quarantine "
            + ("WHERE feed = ? " if feed else "")
            + "ORDER BY at DESC, id DESC LIMIT ?",
            (feed, limit) if feed else (limit,),
        )
        out = []
        for r in rows:
            at = parse_ts(r[4])
            assert at is not None
            out.append(QuarantineRow(r[0], r[1], r[2], r[3], at, parse_ts(r[5]) or at, r[6]))
        return out

    async def prune_quarantine(self, before: datetime) -> int:
        async def run(conn: SqlConn) -> int:
            return await conn.execute("DELETE FROM quarantine WHERE at < ?", (ts(before),))

        return await self._write(run, notify=False)

    # --- boards -----------------------------------------------------------------

    async def upsert_board(
        self, board_id: str, town: str | None, profile: Mapping[str, Any], token_hash: str | None
    ) -> None:
        async def run(conn: SqlConn) -> None:
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

        async def run(conn: SqlConn) -> None:
            # In key order, so concurrent PostgreSQL writers lock rows in one order.
            await conn.executemany(
                "UPDATE boards SET last_seen_at = ? WHERE id = ?",
                [(ts(at), bid) for bid, at in sorted(seen.items())],
            )

        await self._write(run, notify=False)

    # --- staff ------------------------------------------------------------------

    async def add_user(
        self, name: str, role: str, towns: Sequence[str], password_hash: str
    ) -> UserRow:
        async def run(conn: SqlConn) -> UserRow:
            await conn.execute(
                "INSERT INTO users (name, role, towns, password_hash, created_at) "
                "VALUES (?,?,?,?,?) ON CONFLICT (name) DO UPDATE SET role = excluded.role, "
                "towns = excluded.towns, password_hash = excluded.password_hash, disabled = 0",
                (name, role, ",".join(towns), password_hash, ts(now_utc())),
            )
            r = await conn.fetchone(f"{SELECT_USER} WHERE name = ?", (name,))
            assert r is not None
            return user_from_row(r)

        return await self._write(run, notify=False)

    async def get_user(self, name: str) -> UserRow | None:
        r = await self._fetchone(f"{SELECT_USER} WHERE name = ?", (name,))
        return user_from_row(r) if r else None

    async def list_users(self) -> list[UserRow]:
        rows = await self._fetchall(f"{SELECT_USER} ORDER BY name")
        return [user_from_row(r) for r in rows]

    async def set_password(self, name: str, password_hash: str) -> None:
        async def run(conn: SqlConn) -> None:
            await conn.execute(
                "UPDATE users SET password_hash = ? WHERE name = ?", (password_hash, name)
            )

        await self._write(run, notify=False)

    async def set_disabled(self, name: str, disabled: bool) -> None:
        async def run(conn: SqlConn) -> None:
            await conn.execute(
                "UPDATE users SET disabled = ?, session_epoch = session_epoch + 1 WHERE name = ?",
                (int(disabled), name),
            )

        await self._write(run, notify=False)

    async def audit(
        self, actor: str, action: str, target: str | None, detail: str | None, ip: str | None
    ) -> None:
        async def run(conn: SqlConn) -> None:
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
