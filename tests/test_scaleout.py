"""Several processes on one database: events cross processes, one feed leader.

The process tests start real service processes (`python -m display.cli serve`)
on loopback ports, with a TOML file written from the same settings the other
tests use, and talk to them over HTTP and SSE like a load balancer's clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from display.app import create_app
from display.context import Context
from display.feedrun import start_feeds
from display.leader import (
    LEADER_KEY,
    FileFeedLock,
    PostgresFeedLock,
    feed_lock,
    run_as_leader,
    stop_feeds,
)
from display.settings import Settings
from display.store.postgres import PostgresStore
from feeds.simulator import Simulator
from tests.conftest import (
    case_record,
    free_port,
    open311_feed,
    push_records,
    read_sse,
    serve_app,
    settings_dict,
)
from tests.store_fixtures import pg_url_fixture  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent

# --- the lock, in one process ------------------------------------------------------


async def test_file_lock_has_one_holder(tmp_path: Path) -> None:
    a, b = (FileFeedLock(str(tmp_path / "db.feeds.lock")) for _ in range(2))
    try:
        assert await a.try_acquire()
        assert await a.try_acquire()  # re-entrant for its holder
        assert not await b.try_acquire()
        assert await a.held() and not await b.held()
        await a.release()
        assert not await a.held()
        assert await b.try_acquire()
        assert (tmp_path / "db.feeds.lock").read_text().strip() == str(os.getpid())
    finally:
        await a.release()
        await b.release()


def test_lock_kind_follows_the_database_url(tmp_path: Path) -> None:
    lock = feed_lock(f"sqlite:///{tmp_path / 'x.db'}")
    assert isinstance(lock, FileFeedLock) and lock.path == str(tmp_path / "x.db.feeds.lock")
    assert isinstance(feed_lock("postgresql://u@h/db"), PostgresFeedLock)
    assert not isinstance(feed_lock("sqlite:///:memory:"), FileFeedLock | PostgresFeedLock)


@pytest.mark.postgres
async def test_postgres_lock_has_one_holder_and_dies_with_its_session(
    pg_url: str,
) -> None:
    a, b = PostgresFeedLock(pg_url), PostgresFeedLock(pg_url)
    admin = await asyncpg.connect(pg_url)
    try:
        assert await a.try_acquire()
        assert not await b.try_acquire()
        assert await a.held()
        # The leader's session ends (its process was killed, its network went away).
        pid = await admin.fetchval(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND pid <> pg_backend_pid() AND database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND classid = $1::bigint::oid",
            0x79697A68,
        )
        assert pid is not None
        await admin.execute("SELECT pg_terminate_backend($1)", pid)
        for _ in range(100):
            if await b.try_acquire():
                break
            await asyncio.sleep(0.05)
        assert await b.held()
        assert not await a.held()
        assert not await a.try_acquire()
    finally:
        await a.release()
        await b.release()
        await admin.close()


@dataclass
class Calls:
    log: list[str] = field(default_factory=list)

    def start(self, who: str) -> Callable[[], None]:
        return lambda: self.log.append(f"start {who}")

    def stop(self, who: str) -> Callable[[], Any]:
        async def stop() -> None:
            self.log.append(f"stop {who}")

        return stop


async def wait_for(cond: Callable[[], bool]) -> None:
    """Poll a condition that a background task makes true (within 10 s)."""
    async with asyncio.timeout(10):
        for _ in range(100_000):
            if cond():
                return
            await asyncio.sleep(0.02)


async def _handover(settings: Settings) -> None:
    one, two = Context.build(settings), Context.build(settings)
    calls = Calls()
    t1 = asyncio.create_task(
        run_as_leader(one, calls.start("one"), calls.stop("one"), interval=0.05)
    )
    await wait_for(lambda: calls.log == ["start one"])
    t2 = asyncio.create_task(
        run_as_leader(two, calls.start("two"), calls.stop("two"), interval=0.05)
    )
    try:
        await asyncio.sleep(0.3)
        assert calls.log == ["start one"]
        assert one.extra[LEADER_KEY] is True and two.extra[LEADER_KEY] is False
        one.stop.set()
        await t1
        await wait_for(lambda: calls.log[-1:] == ["start two"])
        assert calls.log == ["start one", "stop one", "start two"]
        assert one.extra[LEADER_KEY] is False and two.extra[LEADER_KEY] is True
    finally:
        two.stop.set()
        await t2
    assert calls.log[-1] == "stop two"


async def test_run_as_leader_hands_over_on_sqlite(
    make_settings: Callable[..., Settings],
) -> None:
    await _handover(make_settings())


@pytest.mark.postgres
async def test_run_as_leader_hands_over_on_postgres(
    make_settings: Callable[..., Settings],
    pg_url: str,
) -> None:
    await _handover(make_settings(database={"url": pg_url}))


async def test_losing_the_lock_stops_the_feeds(make_settings: Callable[..., Settings]) -> None:
    class Flaky:
        def __init__(self) -> None:
            self.alive = True

        async def try_acquire(self) -> bool:
            return self.alive

        async def held(self) -> bool:
            return self.alive

        async def release(self) -> None:
            self.alive = False

    ctx = Context.build(make_settings())
    lock, calls = Flaky(), Calls()
    task = asyncio.create_task(
        run_as_leader(ctx, calls.start("a"), calls.stop("a"), lock=lock, interval=0.02)
    )
    try:
        await wait_for(lambda: calls.log == ["start a"])
        lock.alive = False
        await wait_for(lambda: calls.log == ["start a", "stop a"])
        assert ctx.extra[LEADER_KEY] is False
        lock.alive = True
        await wait_for(lambda: calls.log == ["start a", "stop a", "start a"])
    finally:
        ctx.stop.set()
        await task
    assert calls.log[-1] == "stop a"


async def test_the_leader_runs_the_feeds_and_stops_them_cleanly(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    sim = Simulator([("longshi", "龙市镇")], seed=5, step_seconds=3600, initial_cases=3)
    async with serve_app(sim.app) as (sim_url, _):
        feed = open311_feed(sim_url, 0.2)
        app = create_app(make_settings(feeds=[feed]))
        ctx = app.state.ctx
        async with serve_app(app):
            await wait_for(lambda: ctx.extra.get(LEADER_KEY) is True and sim.hits >= 2)
            assert set(ctx.runners) == {"hotline"}
            # Leadership lost: the runners stop and the case system hears nothing more.
            await stop_feeds(ctx)
            assert ctx.runners == {}
            assert all(t.done() for t in ctx.tasks if t.get_name() == "feed:hotline")
            hits = sim.hits
            await asyncio.sleep(0.6)
            assert sim.hits == hits
            # Leadership regained.
            start_feeds(ctx)
            await wait_for(lambda: sim.hits > hits)
        # Shutdown with the feeds running: the lock is released, nothing fails.
        assert ctx.extra[LEADER_KEY] is False
        assert all(t.done() for t in ctx.tasks)
        lock = FileFeedLock(ctx.settings.database_url[len("sqlite:///") :] + ".feeds.lock")
        assert await lock.try_acquire()
        await lock.release()
    assert [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")] == []


# --- real processes ----------------------------------------------------------------


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def to_toml(data: Mapping[str, Any]) -> str:
    """Enough TOML for a settings dict: scalars, tables, arrays of tables."""
    lines: list[str] = []
    tables: list[str] = []
    for k, v in data.items():
        if isinstance(v, dict):
            tables.append(f"\n[{k}]")
            tables += [f"{kk} = {_toml_value(vv)}" for kk, vv in v.items()]
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for item in v:
                tables.append(f"\n[[{k}]]")
                tables += [f"{kk} = {_toml_value(vv)}" for kk, vv in item.items()]
        else:
            lines.append(f"{k} = {_toml_value(v)}")
    return "\n".join(lines + tables) + "\n"


@dataclass
class Proc:
    name: str
    url: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


@contextlib.contextmanager
def _processes(tmp_path: Path, names: Sequence[str], **overrides: Any) -> Iterator[list[Proc]]:
    config = tmp_path / "yizheng.toml"
    config.write_text(to_toml(settings_dict(tmp_path, **overrides)), encoding="utf-8")
    procs: list[Proc] = []
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env = {k: v for k, v in env.items() if not k.startswith("YIZHENG_") or k == "YIZHENG_CI"}
    try:
        for name in names:
            port = free_port()
            log_path = tmp_path / f"{name}.log"
            with log_path.open("wb") as out:
                popen = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "display.cli",
                        "--config",
                        str(config),
                        "serve",
                        "--port",
                        str(port),
                    ],
                    cwd=ROOT,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            procs.append(Proc(name, f"http://127.0.0.1:{port}", popen, log_path))
        yield procs
    finally:
        for p in procs:
            if p.popen.poll() is None:
                p.popen.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.popen.wait(15)
            except subprocess.TimeoutExpired:
                p.popen.kill()
                p.popen.wait(5)


async def _ready(client: httpx.AsyncClient, procs: Sequence[Proc]) -> None:
    for p in procs:
        for _ in range(300):
            if p.popen.poll() is not None:
                raise AssertionError(f"{p.name} exited:\n{p.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"{p.url}/healthz")).status_code == 200:
                    break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"{p.name} did not start:\n{p.log()}")


async def _subscribed(client: httpx.AsyncClient, p: Proc, n: int = 1) -> None:
    for _ in range(200):
        if (await client.get(f"{p.url}/healthz")).json()["subscribers"] >= n:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{p.name}: no SSE subscriber registered")


def _case_nos(events: Sequence[Mapping[str, str]]) -> list[str]:
    return [json.loads(e["data"])["no"] for e in events if e.get("event") == "case"]


async def _push_reaches_other_process(procs: Sequence[Proc]) -> None:
    a, b = procs
    async with httpx.AsyncClient(timeout=15) as client:
        await _ready(client, procs)
        reader = asyncio.create_task(
            read_sse(
                client, f"{b.url}/events?town=longshi", until=lambda evs: "X-1" in _case_nos(evs)
            )
        )
        await _subscribed(client, b)
        resp = await push_records(client, a.url, [case_record("X-1")])
        assert resp.status_code == 202, resp.text
        events = await reader
        [case_event] = [e for e in events if e.get("event") == "case"]
        assert json.loads(case_event["data"])["town"] == "longshi"
        assert int(case_event["id"]) >= 1


@pytest.mark.slow
@pytest.mark.postgres
async def test_push_to_one_process_reaches_a_subscriber_of_another(
    tmp_path: Path,
    pg_url: str,
) -> None:
    with _processes(
        tmp_path,
        ["a", "b"],
        database={"url": pg_url},
        sse={"heartbeat": 1.0, "poll_interval": 30.0},
    ) as procs:
        # A 30 s poll: only NOTIFY can wake B's tailer within the read timeout.
        await _push_reaches_other_process(procs)


@pytest.mark.slow
async def test_two_processes_on_one_sqlite_file(tmp_path: Path) -> None:
    with _processes(tmp_path, ["a", "b"]) as procs:
        await _push_reaches_other_process(procs)


@pytest.mark.slow
@pytest.mark.postgres
async def test_subscriber_moving_between_processes_misses_nothing(
    tmp_path: Path,
    pg_url: str,
) -> None:
    with _processes(tmp_path, ["a", "b"], database={"url": pg_url}) as procs:
        a, b = procs
        async with httpx.AsyncClient(timeout=15) as client:
            await _ready(client, procs)
            url = "/events?town=longshi"
            reader = asyncio.create_task(
                read_sse(client, a.url + url, until=lambda evs: "M-1" in _case_nos(evs))
            )
            await _subscribed(client, a)
            assert (await push_records(client, a.url, [case_record("M-1")])).status_code == 202
            first = await reader
            last_id = [e for e in first if "id" in e][-1]["id"]

            # Disconnected: changes arrive through both processes.
            for i, p in enumerate([a, b, a, b], start=2):
                rec = case_record(f"M-{i}", summary=f"第{i}件：路灯不亮")
                assert (await push_records(client, p.url, [rec])).status_code == 202

            later = await read_sse(
                client,
                b.url + url,
                headers={"Last-Event-ID": last_id},
                until=lambda evs: "M-5" in _case_nos(evs),
            )
            assert _case_nos(later) == ["M-2", "M-3", "M-4", "M-5"]
            ids = [int(e["id"]) for e in later if "id" in e and e.get("event") != "reset"]
            assert ids == sorted(ids) and len(set(ids)) == len(ids)
            assert ids[0] == int(last_id) + 1  # nothing skipped, nothing repeated
            assert not any(e.get("event") == "reset" for e in later)


@pytest.mark.slow
@pytest.mark.postgres
async def test_killing_the_feed_leader_hands_the_feeds_to_another(
    tmp_path: Path,
    pg_url: str,
) -> None:
    sim = Simulator(
        [("longshi", "龙市镇"), ("huangjia", "黄家镇")], seed=3, step_seconds=3600, initial_cases=6
    )
    async with serve_app(sim.app) as (sim_url, _):
        feeds = [
            {"name": "push", "kind": "webhook", "secret": "test-push-secret-0123456789"},
            open311_feed(sim_url, 0.3),
        ]
        with _processes(tmp_path, ["a", "b"], database={"url": pg_url}, feeds=feeds) as procs:
            store = PostgresStore(pg_url, listen=False)
            await store.open()
            try:
                async with httpx.AsyncClient(timeout=15) as client:
                    await _ready(client, procs)
                    await _all_cases_arrive(store, sim)
                    leaders = await _leaders(procs)
                    assert len(leaders) == 1
                    [leader] = leaders
                    [follower] = [p for p in procs if p is not leader]

                    leader.popen.send_signal(signal.SIGKILL)
                    leader.popen.wait(10)
                    killed_at = (await _hotline(store)).last_attempt_at
                    assert killed_at is not None

                    # The case system moves on while the leader is dead.
                    moved = sorted(sim.cases)[:2]
                    for no in moved:
                        sim.set_stage(no, "in_progress")
                    sim.file_case()
                    await _all_cases_arrive(store, sim)
                    assert await _leaders([follower]) == [follower]
                    state = await _hotline(store)
                    assert state.last_attempt_at is not None
                    assert state.last_attempt_at > killed_at
                    for no in moved:
                        got = await store.get_case(no)
                        assert got is not None and got.stage == "in_progress"

                    # Nothing doubled: each case reached each of its stages once.
                    changes = Counter(
                        (d["no"], d["stage"], d["updated_at"])
                        for e in await store.events_after(0, 10_000)
                        if e.kind == "case"
                        for d in [json.loads(e.data)]
                    )
                    assert changes and max(changes.values()) == 1
                    assert {no for no, _, _ in changes} == set(sim.cases)
            finally:
                await store.close()


async def _hotline(store: PostgresStore) -> Any:
    return next(s for s in await store.feed_states() if s.name == "hotline")


async def _all_cases_arrive(store: PostgresStore, sim: Simulator) -> None:
    want = {no: c.stage for no, c in sim.cases.items()}
    for _ in range(300):
        have = {c.no: c.stage for c in await store.list_cases(limit=1000)}
        if have == want:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"cases did not arrive: want {want}, have {have}")


async def _leaders(procs: Sequence[Proc]) -> list[Proc]:
    for _ in range(200):
        leading = [p for p in procs if "feed leadership taken" in p.log()]
        if leading:
            return leading
        await asyncio.sleep(0.05)
    return []
