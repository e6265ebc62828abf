"""The feed runner: pulls into a sink, backs off on failures, recovers, wakes early."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from feeds.adapters import build_adapter
from feeds.record import Batch, CaseRecord, Rejected
from feeds.runner import FeedRunner, backoff_delay, pull_once
from feeds.simulator import RunningServer, Simulator, serve_simulator
from tests.conftest import TOWN_LOOKUP

TOWNS = TOWN_LOOKUP


class MemorySink:
    """A FeedSink in memory: upsert by (feed, source id), cursor saved with the batch."""

    def __init__(self, fail_ingests: int = 0) -> None:
        self.cursors: dict[str, str | None] = {}
        self.cases: dict[tuple[str, str], CaseRecord] = {}
        self.quarantine: list[tuple[str, Rejected]] = []
        self.failures: list[tuple[str, str]] = []
        self.ingests = 0
        self.fail_ingests = fail_ingests
        self.ingested = asyncio.Event()

    async def load_cursor(self, feed: str) -> str | None:
        return self.cursors.get(feed)

    async def ingest(self, feed: str, batch: Batch) -> Mapping[str, int]:
        if self.fail_ingests:
            self.fail_ingests -= 1
            raise RuntimeError("database is locked")
        counts = {"new": 0, "changed": 0, "unchanged": 0, "quarantined": len(batch.rejected)}
        # Build the whole new state first, then swap: the sink's "one transaction".
        cases = dict(self.cases)
        for record in batch.records:
            key = (feed, record.source_id)
            value = record.without_hints()
            old = cases.get(key)
            counts["new" if old is None else "changed" if old != value else "unchanged"] += 1
            cases[key] = value
        self.cases = cases
        self.quarantine += [(feed, r) for r in batch.rejected]
        self.cursors[feed] = batch.cursor
        self.ingests += 1
        self.ingested.set()
        return counts

    async def record_failure(self, feed: str, error: str) -> None:
        self.failures.append((feed, error))


@pytest.fixture
async def sim_server() -> AsyncIterator[tuple[Simulator, RunningServer]]:
    sim = Simulator(seed=21, initial_cases=25)
    async with serve_simulator(sim) as server:
        yield sim, server


async def wait_for_ingests(sink: MemorySink, count: int) -> None:
    async def reached() -> None:
        while sink.ingests < count:
            sink.ingested.clear()
            await sink.ingested.wait()

    await asyncio.wait_for(reached(), 20)


async def test_pull_once_counts_new_changed_unchanged(
    sim_server: tuple[Simulator, RunningServer],
) -> None:
    sim, server = sim_server
    adapter = build_adapter("hotline", "simulator", {"url": server.open311_url}, TOWNS)
    sink = MemorySink()
    try:
        first = await pull_once(adapter, sink)
        assert first == {"new": 25, "changed": 0, "unchanged": 0, "quarantined": 0}
        assert sink.cursors["hotline"] is not None

        case_id = sorted(sim.cases)[0]
        sim.set_stage(case_id, "replied", "resolved", satisfaction="satisfied")
        second = await pull_once(adapter, sink)
        assert second["changed"] == 1
        assert second["new"] == 0
        # Only the overlap is re-read, and it is unchanged.
        assert second["unchanged"] < 25
        assert sink.cases[("hotline", case_id)].status == "replied"
    finally:
        await adapter.aclose()


async def test_backs_off_on_failures_then_recovers(
    sim_server: tuple[Simulator, RunningServer],
) -> None:
    sim, server = sim_server
    sim.fail_next(3, status=503)
    adapter = build_adapter(
        "hotline", "simulator", {"url": server.open311_url, "page_size": 0}, TOWNS
    )
    sink = MemorySink()
    runner = FeedRunner(adapter, sink, interval=3600, backoff_base=0.001, max_backoff=0.01)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        await wait_for_ingests(sink, 1)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        await adapter.aclose()
    # Three failed attempts, each recorded with a message staff can read, then success.
    assert sim.hits == 4
    assert len(sink.failures) == 3
    assert all(feed == "hotline" and "HTTP 503" in err for feed, err in sink.failures)
    assert runner.state.attempts == 4
    assert runner.state.successes == 1
    assert runner.state.consecutive_failures == 0
    assert runner.state.last_error is None
    assert runner.state.last_counts == {"new": 25, "changed": 0, "unchanged": 0, "quarantined": 0}
    assert runner.next_delay() == 3600


async def test_survives_an_unexpected_error_in_the_sink(
    sim_server: tuple[Simulator, RunningServer],
) -> None:
    _, server = sim_server
    adapter = build_adapter("hotline", "simulator", {"url": server.open311_url}, TOWNS)
    sink = MemorySink(fail_ingests=2)
    runner = FeedRunner(adapter, sink, interval=3600, backoff_base=0.001, max_backoff=0.01)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        await wait_for_ingests(sink, 1)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        await adapter.aclose()
    assert [err for _, err in sink.failures] == ["hotline: unexpected RuntimeError"] * 2
    assert len(sink.cases) == 25


async def test_sync_now_wakes_the_runner(sim_server: tuple[Simulator, RunningServer]) -> None:
    sim, server = sim_server
    adapter = build_adapter("hotline", "simulator", {"url": server.open311_url}, TOWNS)
    sink = MemorySink()
    runner = FeedRunner(adapter, sink, interval=3600)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        await wait_for_ingests(sink, 1)
        sim.advance()
        # With an hour's interval, only sync_now can bring the second pull.
        runner.sync_now()
        await wait_for_ingests(sink, 2)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        await adapter.aclose()
    assert runner.state.successes == 2


async def test_stop_ends_a_sleeping_runner(sim_server: tuple[Simulator, RunningServer]) -> None:
    _, server = sim_server
    adapter = build_adapter("hotline", "simulator", {"url": server.open311_url}, TOWNS)
    sink = MemorySink()
    runner = FeedRunner(adapter, sink, interval=3600)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    await wait_for_ingests(sink, 1)
    stop.set()
    await asyncio.wait_for(task, 5)
    await adapter.aclose()
    assert task.done() and task.exception() is None
    assert sink.ingests == 1


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(n, 1.0, 300.0, rng) for n in range(1, 16)]
    for n, delay in enumerate(delays, start=1):
        ceiling = min(300.0, 2.0 ** (n - 1))
        assert ceiling / 2 <= delay <= ceiling
    assert delays[-1] <= 300.0
    assert delays[5] > delays[0]
    assert backoff_delay(0, 1.0, 300.0) == 0.0
    # Jitter: two runners failing together do not retry in lockstep.
    assert backoff_delay(4, 1.0, 300.0, random.Random(1)) != backoff_delay(
        4, 1.0, 300.0, random.Random(2)
    )


async def test_memory_sink_detects_changes() -> None:
    # The sink above is the yardstick for the runner tests; make sure it can tell.
    sink = MemorySink()
    rec = CaseRecord(source_id="A", summary="s", received_at=datetime(2026, 1, 1, tzinfo=UTC))
    first = await sink.ingest("f", Batch(records=[rec], cursor="c1"))
    same = await sink.ingest("f", Batch(records=[rec], cursor="c2"))
    moved = await sink.ingest("f", Batch(records=[replace(rec, status="assigned")]))
    assert (first["new"], same["unchanged"], moved["changed"]) == (1, 1, 1)
    assert sink.cursors["f"] is None


async def test_a_backlog_is_caught_up_without_waiting_for_the_interval(
    sim_server: tuple[Simulator, RunningServer],
) -> None:
    sim, server = sim_server
    since = (datetime.now(UTC) - timedelta(days=30)).isoformat()
    adapter = build_adapter(
        "hotline",
        "simulator",
        {"url": server.open311_url, "since": since, "window_days": 2, "max_records": 1},
        TOWNS,
    )
    sink = MemorySink()
    runner = FeedRunner(adapter, sink, interval=3600)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        # With an hour's interval, only the adapter's has_more brings the next pulls.
        async def caught_up() -> None:
            while len(sink.cases) < len(sim.cases):
                sink.ingested.clear()
                await sink.ingested.wait()

        await asyncio.wait_for(caught_up(), 20)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        await adapter.aclose()
    assert {sid for _, sid in sink.cases} == set(sim.cases)
    assert sink.ingests > 1
