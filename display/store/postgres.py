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

The queries themselves are shared with SQLite (sql.py, `?` placeholders that `_q`
rewrites); this module holds the pool, the transaction and its lock, LISTEN, and
PostgreSQL's dialect.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import zlib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeAlias, TypeVar

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from display.domain import now_utc
from display.store.base import CASE_SELECT, migration_files, ts
from display.store.sql import SqlConn, SqlStore, split_sql

log = logging.getLogger("yizheng.store")

T = TypeVar("T")
_Native: TypeAlias = (
    "asyncpg.Pool[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record] "
    "| asyncpg.Connection[asyncpg.Record]"
)

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
    for statement in split_sql(text):
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


def _rowcount(status: str) -> int:
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


class _Conn:
    """`SqlConn` over the pool (reads) or one pooled connection (a write transaction)."""

    __slots__ = ("raw",)

    def __init__(self, raw: _Native) -> None:
        self.raw = raw

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return [tuple(r) for r in await self.raw.fetch(_q(sql), *params)]

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Any:
        r = await self.raw.fetchrow(_q(sql), *params)
        return None if r is None else tuple(r)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return _rowcount(await self.raw.execute(_q(sql), *params))

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self.raw.executemany(_q(sql), rows)

    async def insert(self, sql: str, params: Sequence[Any]) -> int:
        return int(await self.raw.fetchval(_q(sql + " RETURNING id"), *params))


class PostgresStore(SqlStore):
    COUNT_IF = "count(*) FILTER (WHERE {})"
    # SQLite sorts NULL first in ascending order.
    NULLS_FIRST = " NULLS FIRST"
    INSERT_NOTE = (
        "INSERT INTO case_timeline (no, at, stage, note) "
        "SELECT $1::text, $2::text, $3::text, $4::text WHERE NOT EXISTS "
        "(SELECT 1 FROM case_timeline WHERE no = $1 AND at = $2 AND note = $4)"
    )

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

    def _reads(self) -> SqlConn:
        return _Conn(self._need_pool())

    async def _write(self, fn: Callable[[SqlConn], Awaitable[T]], *, notify: bool = True) -> T:
        async with self._need_pool().acquire() as conn:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", *self._write_key)
                result = await fn(_Conn(conn))
                if notify:
                    await conn.execute("SELECT pg_notify($1, '')", self.channel)
        if notify:
            self._wake()
        return result

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

    async def _existing_cases(self, conn: SqlConn, nos: Sequence[str]) -> list[Any]:
        unique = sorted(set(nos))
        if not unique:
            return []
        return await conn.fetchall(
            f"SELECT feed, source_id, {CASE_SELECT} FROM cases WHERE no = ANY(?::text[])",
            (unique,),
        )

    # --- events ----------------------------------------------------------------

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

    # --- backup ----------------------------------------------------------------

    async def backup(self, path: str) -> None:
        """PostgreSQL is backed up with pg_dump (docs/deploy.md), not through the service."""
        raise NotImplementedError("PostgreSQL: use pg_dump --format=custom (docs/deploy.md)")


__all__ = ["PostgresStore", "channel_name", "lock_key", "pg_schema_sql"]


# --- the feed leader's lock (display/leader.py) -----------------------------------


class PostgresFeedLock:
    """A session-level advisory lock on a connection of its own (not the pool's: a
    pooled connection would hand the lock to whoever borrows it next)."""

    def __init__(self, url: str, purpose: str = "feeds", timeout: float = 5.0) -> None:
        self.url = url
        self.purpose = purpose
        self.timeout = timeout
        self._conn: asyncpg.Connection[asyncpg.Record] | None = None
        self._key = (0, 0)
        self._held = False

    async def try_acquire(self) -> bool:
        try:
            if self._conn is None or self._conn.is_closed():
                self._conn = await asyncpg.connect(self.url, timeout=self.timeout)
                schema = await self._conn.fetchval("SELECT current_schema()")
                self._key = lock_key(str(schema), self.purpose)
            got = await self._conn.fetchval(
                "SELECT pg_try_advisory_lock($1, $2)", *self._key, timeout=self.timeout
            )
        except Exception as e:  # any failure of the session means: not the leader
            log.warning("feed lock: database not reachable (%s)", type(e).__name__)
            await self._drop()
            return False
        self._held = bool(got)
        return self._held

    async def held(self) -> bool:
        """The lock lives as long as its session: ask the session whether it is alive."""
        if not self._held or self._conn is None or self._conn.is_closed():
            self._held = False
            return False
        try:
            await self._conn.fetchval("SELECT 1", timeout=self.timeout)
        except Exception:  # a session that cannot answer may have lost the lock
            await self._drop()
            return False
        return True

    async def release(self) -> None:
        if self._conn is not None and not self._conn.is_closed() and self._held:
            with contextlib.suppress(Exception):
                await self._conn.fetchval(
                    "SELECT pg_advisory_unlock($1, $2)", *self._key, timeout=self.timeout
                )
        await self._drop()

    async def _drop(self) -> None:
        self._held = False
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await asyncio.wait_for(conn.close(), self.timeout)
            except Exception:
                conn.terminate()
