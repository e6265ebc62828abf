"""Schedules pulls: one adapter every `interval` seconds, with backoff on failure.

The cursor travels with the data: `FeedSink.ingest` stores the records, the
quarantine and the batch's cursor in one transaction, so a crash in the middle
of a pull neither loses nor repeats anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import httpx

from feeds.adapters import Adapter, FeedError
from feeds.record import Batch

log = logging.getLogger(__name__)

DEFAULT_MAX_BACKOFF = 300.0


class FeedSink(Protocol):
    async def load_cursor(self, feed: str) -> str | None: ...

    async def ingest(self, feed: str, batch: Batch) -> Mapping[str, int]:
        """Store records, rejected records and the cursor in ONE transaction.

        Returns counts {"new", "changed", "unchanged", "quarantined"}.
        """
        ...

    async def record_failure(self, feed: str, error: str) -> None: ...


async def pull_once(adapter: Adapter, sink: FeedSink) -> Mapping[str, int]:
    """One pull from the saved cursor, stored by the sink. FeedError when unreadable."""
    cursor = await sink.load_cursor(adapter.name)
    batch = await adapter.pull(cursor)
    counts = await sink.ingest(adapter.name, batch)
    # An adapter that remembers what it delivered learns only now that it was stored.
    committed = getattr(adapter, "committed", None)
    if callable(committed):
        committed()
    return counts


@dataclass
class RunnerState:
    """What the runner knows about its feed, for `feed status` and health pages."""

    attempts: int = 0
    successes: int = 0
    consecutive_failures: int = 0
    last_success: datetime | None = None
    last_error: str | None = None
    last_counts: Mapping[str, int] | None = None


def backoff_delay(
    failures: int, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """Exponential backoff with "equal jitter": between half and all of base * 2**(n-1)."""
    if failures <= 0:
        return 0.0
    ceiling: float = min(cap, base * 2.0 ** min(failures - 1, 32))
    r: float = rng.random() if rng is not None else random.random()
    return ceiling / 2 + r * ceiling / 2


class FeedRunner:
    """Runs one adapter every `interval` seconds until stopped; never dies on a bad pull."""

    def __init__(
        self,
        adapter: Adapter,
        sink: FeedSink,
        *,
        interval: float,
        backoff_base: float | None = None,
        max_backoff: float = DEFAULT_MAX_BACKOFF,
        rng: random.Random | None = None,
    ) -> None:
        self.adapter = adapter
        self.sink = sink
        self.interval = interval
        # Retry sooner than the normal beat: an outage usually ends mid-interval.
        self.backoff_base = backoff_base if backoff_base is not None else min(interval, 5.0)
        self.max_backoff = max(max_backoff, self.backoff_base)
        self.state = RunnerState()
        self._rng = rng or random.Random()
        self._wake = asyncio.Event()

    @property
    def name(self) -> str:
        return self.adapter.name

    def sync_now(self) -> None:
        """Pull as soon as possible (after the pull in progress, if any)."""
        self._wake.set()

    async def run_once(self) -> Mapping[str, int] | None:
        """One attempt; records success or failure. Returns the counts, or None on failure."""
        state = self.state
        state.attempts += 1
        try:
            counts = await pull_once(self.adapter, self.sink)
        except FeedError as exc:
            message = str(exc)
            log.warning("feed %s: %s", self.name, message)
            await self._fail(message)
            return None
        except (httpx.HTTPError, OSError) as exc:
            message = f"{self.name}: {type(exc).__name__} while reading the source"
            log.warning("feed %s: %s", self.name, message)
            await self._fail(message)
            return None
        state.successes += 1
        state.consecutive_failures = 0
        state.last_success = datetime.now(UTC)
        state.last_error = None
        state.last_counts = dict(counts)
        return counts

    async def _fail(self, message: str) -> None:
        self.state.consecutive_failures += 1
        self.state.last_error = message
        try:
            await self.sink.record_failure(self.name, message)
        except Exception:
            # The sink is the database; if it is down too, keep trying later.
            log.exception("feed %s: could not record the failure", self.name)

    def next_delay(self) -> float:
        failures = self.state.consecutive_failures
        if failures == 0:
            # An adapter that stopped early on a large backlog says so; catch up at once.
            return 0.0 if getattr(self.adapter, "has_more", False) else self.interval
        return backoff_delay(failures, self.backoff_base, self.max_backoff, self._rng)

    async def run(self, stop: asyncio.Event) -> None:
        """Pull now, then every interval (backing off on failures) until `stop` is set."""
        while not stop.is_set():
            self._wake.clear()
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # A bug in an adapter or the sink must not end the feed for good.
                log.exception("feed %s: unexpected error", self.name)
                await self._fail(f"{self.name}: unexpected {type(exc).__name__}")
            await self._sleep(self.next_delay(), stop)

    async def _sleep(self, seconds: float, stop: asyncio.Event) -> None:
        stop_wait = asyncio.ensure_future(stop.wait())
        wake_wait = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait(
                {stop_wait, wake_wait}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for task in (stop_wait, wake_wait):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
