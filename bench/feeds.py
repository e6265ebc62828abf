"""Ledger import benchmark: parse speed, full import, and a 1% re-import.

    .venv/bin/python bench/feeds.py [ROWS]

Prints, each against a baseline measured in the same run:
- parse: `read_ledger` vs a bare `csv.reader` pass over the same decoded file;
- import (issue 4 target, at most 5x): `read_ledger` + `Ingestor.ingest` into a
  fresh SQLite database (validation, redaction, deadlines, events) vs a bare
  `executemany` of the same rows into SQLite, split into reading the file and
  ingesting it;
- the write floor: the rows that import stored (cases, their events and their
  timeline, as the design requires for every new case) copied with `executemany`
  into a fresh database with the real schema, table by table: what an import
  costs even if parsing, redaction and planning took no time at all;
- re-import with 1% of rows changed (target: at most a tenth of the full import,
  and exactly that many events);
- how long a one-case push waits while a full import is stored, against the same
  push on an idle service.
The import part needs `display` (ingest and store); without it only the parse
figures are printed.
"""

from __future__ import annotations

import asyncio
import csv
import io
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

# Run as a script, this file's folder comes first on sys.path and its name
# would shadow the `feeds` package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from feeds.ledger import LedgerAdapter, read_ledger  # noqa: E402

T = TypeVar("T")

HEADER = [
    "受理编号", "诉求人", "联系电话", "住址", "诉求内容", "所属镇(街道)", "村(社区)",
    "诉求类型", "办理状态", "受理时间", "办结时间", "责任单位", "回访满意度", "是否督办",
]  # fmt: skip
TOWNS = [("longshi", "龙市镇"), ("huangjia", "黄家镇"), ("shuangfeng", "双凤镇"),
         ("xiangshi", "响石镇"), ("shinian", "石碾镇")]  # fmt: skip
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "建国秀英志强丽华明军红梅伟芳敏静磊洋勇艳杰娟涛"
VILLAGES = ["石燕村", "双河村", "白果村", "新民社区", "古宇村", "青杠村"]
PROBLEMS = [
    "反映村道路灯损坏，夜间出行不便，请尽快维修",
    "反映{name}家门前排水沟堵塞，雨天积水严重，联系电话{phone}",
    "咨询城乡居民医保缴费标准和缴费时间",
    "反映组上垃圾清运不及时，气味较大，影响周边群众生活",
    "反映住址{addr}附近的自来水管破裂，已停水两天",
    "反映农村危房改造补助资金何时发放",
]
CATEGORIES = ["基础设施", "环境卫生", "政策咨询", "社会保障", "农业农村"]
STATUSES = ["已登记", "已交办", "办理中", "已办结", "已解释", "纳入规划", "已回复", "已回访"]
DEPARTMENTS = ["镇建设办", "镇农业服务中心", "镇社会事务办", "镇综合执法队", "村委会"]


def make_rows(n: int, seed: int = 4) -> list[list[str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        name = rng.choice(SURNAMES) + "".join(rng.sample(GIVEN, 2))
        phone = f"1{rng.choice('3589')}{rng.randrange(10**9):09d}"
        village = rng.choice(VILLAGES)
        addr = f"{village}{rng.randrange(1, 12)}组{rng.randrange(1, 80)}号"
        status = rng.choice(STATUSES)
        month, day = rng.randrange(1, 13), rng.randrange(1, 28)
        resolved = f"2025/{month}/{day + 1}" if status in ("已办结", "已解释", "纳入规划") else ""
        rows.append(
            [
                f"LC2025-{i:06d}",
                name,
                phone,
                addr,
                rng.choice(PROBLEMS).format(name=name, phone=phone, addr=addr),
                rng.choice(TOWNS)[1],
                village,
                rng.choice(CATEGORIES),
                status,
                f"2025年{month}月{day}日",
                resolved,
                rng.choice(DEPARTMENTS),
                rng.choice(["", "满意", "基本满意"]) if status in ("已回复", "已回访") else "",
                rng.choice(["否", "否", "否", "是"]),
            ]
        )
    return rows


def write_csv(path: Path, rows: list[list[str]]) -> None:
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["隆昌市群众诉求台账（2025年）"])
    writer.writerow(HEADER)
    writer.writerows(rows)
    path.write_bytes(out.getvalue().encode("gb18030"))


def best_of(fn: Callable[[], T], runs: int = 3) -> tuple[float, T]:
    best, result = float("inf"), None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    assert result is not None
    return best, result


def bare_parse(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_bytes().decode("gb18030"), newline="")))


# Column names and placeholders only: built from constants, no data in the SQL.
_CREATE = f"CREATE TABLE t ({', '.join(f'c{i} TEXT' for i in range(len(HEADER)))})"
_INSERT = f"INSERT INTO t VALUES ({', '.join('?' * len(HEADER))})"  # noqa: S608


def bare_executemany(db: Path, rows: list[list[str]]) -> int:
    con = sqlite3.connect(db)
    try:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute(_CREATE)
        with con:
            con.executemany(_INSERT, rows)
        return len(rows)
    finally:
        con.close()


def write_floor(source: Path, db: Path, tables: tuple[str, ...]) -> tuple[float, int]:
    """Copy `tables` of `source` into a fresh database with the real schema, one
    `executemany` per table in one transaction; the seconds the copy took (reading
    `source` not included) and the rows copied."""
    from display.store.base import migration_files
    from display.store.sql import split_sql
    from display.store.sqlite import sqlite_schema

    src = sqlite3.connect(source)
    try:
        data = {t: src.execute(f"SELECT * FROM {t}").fetchall() for t in tables}  # noqa: S608
    finally:
        src.close()
    con = sqlite3.connect(db, isolation_level=None)
    try:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        for _, text in migration_files():
            for statement in split_sql(sqlite_schema(text)):
                con.execute(statement)
        start = time.perf_counter()
        con.execute("BEGIN IMMEDIATE")
        for t in tables:
            if data[t]:
                marks = ",".join("?" * len(data[t][0]))
                con.executemany(f"INSERT INTO {t} VALUES ({marks})", data[t])  # noqa: S608
        con.execute("COMMIT")
        took = time.perf_counter() - start
    finally:
        con.close()
    return took, sum(len(rows) for rows in data.values())


def town_map() -> dict[str, str]:
    towns = {slug: slug for slug, _ in TOWNS}
    towns.update({name: slug for slug, name in TOWNS})
    return towns


def parse_figures(path: Path, n: int) -> None:
    base, rows = best_of(lambda: bare_parse(path))
    ours, batch = best_of(lambda: read_ledger(path, {}, town_map()))
    assert len(rows) == n + 2 and len(batch.records) == n, (len(batch.records), batch.rejected[:3])
    print(f"parse   bare csv.reader     {base:7.3f} s  {n / base:10,.0f} rows/s")
    print(f"parse   read_ledger         {ours:7.3f} s  {n / ours:10,.0f} rows/s  "
          f"ratio {ours / base:5.1f}x")  # fmt: skip


async def import_figures(tmp: Path, path: Path, rows: list[list[str]]) -> None:
    from display.context import Context
    from display.settings import parse

    n = len(rows)
    base, _ = best_of(lambda: bare_executemany(tmp / f"bare-{time.perf_counter_ns()}.db", rows))
    print(f"import  bare executemany    {base:7.3f} s  {n / base:10,.0f} rows/s")

    settings = parse(
        {
            "database": {"url": f"sqlite:///{tmp / 'bench.db'}"},
            "secret_key": "bench-secret-key-not-for-production",
            "towns": [{"slug": slug, "name": name} for slug, name in TOWNS],
            "feeds": [{"name": "ledger", "kind": "ledger", "path": str(path)}],
        }
    )
    ctx = Context.build(settings)
    await ctx.store.open()
    try:
        await ctx.store.migrate()

        # As the service imports a watched ledger: the feed's adapter reads the file,
        # ingest stores the batch with its cursor, the adapter learns it was stored.
        adapter = LedgerAdapter("ledger", {"path": str(path)}, town_map())

        async def run() -> tuple[float, Any]:
            start = time.perf_counter()
            batch = await adapter.pull(await ctx.store.load_cursor("ledger"))
            read = time.perf_counter() - start
            counts = await ctx.ingestor.ingest("ledger", batch)
            adapter.committed()
            return read, counts

        start = time.perf_counter()
        read, counts = await run()
        full = time.perf_counter() - start
        _, first_seq = await ctx.store.event_bounds()
        print(f"import  adapter+ingest      {full:7.3f} s  {n / full:10,.0f} rows/s  "
              f"ratio {full / base:5.1f}x (target <= 5x)  {counts.as_dict()}")  # fmt: skip
        print(f"          of which reading  {read:7.3f} s, ingest (redact, plan, write) "
              f"{full - read:7.3f} s")  # fmt: skip
        # The rows a new case needs, table by table: its case row (with its indexes), its
        # event (the bus), its first timeline entry.
        for tables, what in (
            (("cases",), "cases only"),
            (("cases", "events"), "+ events"),
            (("cases", "events", "case_timeline"), "+ timeline"),
        ):
            dbs = [tmp / f"floor-{len(tables)}-{i}.db" for i in range(2)]
            floor, copied = min(write_floor(tmp / "bench.db", db, tables) for db in dbs)
            print(
                f"floor   {what:<19} {floor:7.3f} s  {copied:>9,} rows  ratio {floor / base:5.1f}x"
            )
        print("        (the write floor: storing what the design requires, with no parsing,"
              " redaction or planning at all)")  # fmt: skip

        changed = rows[:]
        k = n // 100
        for i in random.Random(7).sample(range(n), k):
            row = changed[i][:]
            row[8] = "已回访" if row[8] != "已回访" else "已回复"
            changed[i] = row
        write_csv(path, changed)
        start = time.perf_counter()
        _, counts = await run()
        again = time.perf_counter() - start
        new_events = await ctx.store.events_after(first_seq, limit=10 * k + 100)
        case_events = sum(e.kind == "case" for e in new_events)
        print(f"reimport 1% changed         {again:7.3f} s  ratio to full import "
              f"{again / full:5.2f} (target <= 0.10)  changed {counts.changed} / {k}, "
              f"unchanged {counts.unchanged}, case events {case_events} (target {k}), "
              f"stats events {len(new_events) - case_events} (one per town touched)")  # fmt: skip
    finally:
        await ctx.store.close()


async def push_wait(tmp: Path, path: Path) -> None:
    """How long a one-case push waits while a full import is stored, against the same
    push with nothing else going on (the promise: on screens within a second)."""
    import statistics

    from display.context import Context
    from display.domain import now_utc
    from display.settings import parse
    from feeds.record import Batch, CaseRecord

    settings = parse(
        {
            "database": {"url": f"sqlite:///{tmp / 'push-wait.db'}"},
            "secret_key": "bench-secret-key-not-for-production",
            "towns": [{"slug": slug, "name": name} for slug, name in TOWNS],
        }
    )
    ctx = Context.build(settings)
    await ctx.store.open()
    try:
        await ctx.store.migrate()
        waits: list[float] = []
        importing = True

        async def pusher() -> None:
            i = 0
            while importing:
                i += 1
                rec = CaseRecord(
                    source_id=f"PUSH-{i}", summary="路灯损坏", received_at=now_utc(), town="longshi"
                )
                start = time.perf_counter()
                await ctx.ingestor.ingest("push", Batch(records=[rec]))
                waits.append(time.perf_counter() - start)
                await asyncio.sleep(0.05)

        task = asyncio.create_task(pusher())
        await asyncio.sleep(1.0)
        idle, waits[:] = waits[:], []
        adapter = LedgerAdapter("ledger", {"path": str(path)}, town_map())
        await ctx.ingestor.ingest("ledger", await adapter.pull(None))
        importing = False
        await task
        print(f"push    idle                 p50 {statistics.median(idle) * 1000:6.1f} ms  "
              f"max {max(idle) * 1000:6.1f} ms")  # fmt: skip
        print(f"push    during full import   p50 {statistics.median(waits) * 1000:6.1f} ms  "
              f"max {max(waits) * 1000:6.1f} ms  ({len(waits)} pushes; target < 1 s)")  # fmt: skip
    finally:
        await ctx.store.close()


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        path = tmp / "ledger.csv"
        rows = make_rows(n)
        write_csv(path, rows)
        print(f"{n:,} rows, {path.stat().st_size / 1e6:.1f} MB GB18030 CSV")
        parse_figures(path, n)
        try:
            import display.context  # noqa: F401
        except ImportError:
            print("import  skipped: display.ingest is not available")
            return 0
        asyncio.run(import_figures(tmp, path, rows))
        write_csv(path, rows)
        asyncio.run(push_wait(tmp, path))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
