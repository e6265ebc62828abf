"""SQLite store: WAL, one write connection, reads on their own connections.

Every write goes through `_write`, which holds one asyncio lock and runs the
whole unit in `BEGIN IMMEDIATE ... COMMIT`, so a change and its event commit
together and writers never race for SQLITE_BUSY. Readers use separate
connections and see only committed data.

The queries themselves are shared with PostgreSQL (sql.py); this module holds
the connections, the transaction, and SQLite's dialect.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from display.domain import CLOSED_STAGES, OPEN_STAGES, now_utc
from display.store.base import CASE_SELECT, migration_files, ts
from display.store.sql import SqlConn, SqlStore, split_sql

T = TypeVar("T")


def sqlite_schema(text: str) -> str:
    """A migration file in SQLite's dialect."""
    return text.replace("/*AUTOINCREMENT*/", "AUTOINCREMENT")


class _Conn:
    """`SqlConn` over one aiosqlite connection.

    Each query runs and is read to the end in one call on the connection's thread. As
    two calls (execute, then fetch), another query started in between on the same
    connection would share the first one's read transaction and see an old snapshot."""

    __slots__ = ("raw",)

    def __init__(self, raw: aiosqlite.Connection) -> None:
        self.raw = raw

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return list(await self.raw.execute_fetchall(sql, params))

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return next(iter(await self.raw.execute_fetchall(sql, params)), None)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return (await self.raw.execute(sql, params)).rowcount

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self.raw.executemany(sql, rows)

    async def insert(self, sql: str, params: Sequence[Any]) -> int:
        return int((await self.raw.execute(sql, params)).lastrowid or 0)


class SqliteStore(SqlStore):
    COUNT_IF = "coalesce(sum({}), 0)"
    INSERT_NOTE = (
        "INSERT INTO case_timeline (no, at, stage, note) "
        "SELECT ?1, ?2, ?3, ?4 WHERE NOT EXISTS (SELECT 1 FROM case_timeline "
        "WHERE no = ?1 AND at = ?2 AND note = ?4)"
    )

    def __init__(
        self, path: str, *, readers: int = 2, on_commit: Callable[[], None] | None = None
    ) -> None:
        self.path = path
        self._readers_n = readers
        self._writer: aiosqlite.Connection | None = None
        self._readers: list[_Conn] = []
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
            self._readers.append(_Conn(await self._connect(readonly=True)))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for conn in self._readers:
            await conn.raw.close()
        self._readers.clear()
        if self._writer is not None:
            await self._writer.close()
            self._writer = None

    # --- plumbing -------------------------------------------------------------

    def _reads(self) -> SqlConn:
        if not self._readers:
            raise RuntimeError("store is not open")
        return self._readers[next(self._rr) % len(self._readers)]

    async def _write(self, fn: Callable[[SqlConn], Awaitable[T]], *, notify: bool = True) -> T:
        if self._writer is None:
            raise RuntimeError("store is not open")
        conn = self._writer
        async with self._lock:
            await conn.execute("BEGIN IMMEDIATE")
            try:
                result = await fn(_Conn(conn))
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
            await conn.execute("COMMIT")
        if notify and self.on_commit is not None:
            self.on_commit()
        return result

    async def _existing_cases(self, conn: SqlConn, nos: Sequence[str]) -> list[Any]:
        rows: list[Any] = []
        for i in range(0, len(nos), 500):
            chunk = nos[i : i + 500]
            rows += await conn.fetchall(
                f"SELECT feed, source_id, {CASE_SELECT} FROM cases "
                f"WHERE no IN ({','.join('?' * len(chunk))})",
                chunk,
            )
        return rows

    # --- migrations ------------------------------------------------------------

    async def migrate(self) -> list[str]:
        async def run(conn: SqlConn) -> list[str]:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at TEXT)"
            )
            done = {r[0] for r in await conn.fetchall("SELECT name FROM migrations")}
            applied = []
            for name, text in migration_files():
                if name in done:
                    continue
                for statement in split_sql(sqlite_schema(text)):
                    await conn.execute(statement)
                await conn.execute("INSERT INTO migrations VALUES (?, ?)", (name, ts(now_utc())))
                applied.append(name)
            return applied

        return await self._write(run, notify=False)

    # --- events ----------------------------------------------------------------

    async def event_bounds(self) -> tuple[int, int]:
        """(oldest retained seq, newest seq); (0, 0) when the log is empty.

        The newest seq comes from sqlite_sequence so it survives pruning."""
        r = await self._fetchone("SELECT min(seq), max(seq) FROM events")
        s = await self._fetchone("SELECT seq FROM sqlite_sequence WHERE name = 'events'")
        newest = int(s[0]) if s else 0
        if r[0] is None:
            return newest + 1, newest
        return int(r[0]), max(int(r[1]), newest)

    # --- backup ----------------------------------------------------------------

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


__all__ = ["CLOSED_STAGES", "OPEN_STAGES", "SqliteStore"]
