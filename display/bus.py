"""The event bus: one tailer per process reads the events table and fans out.

The events table is the bus (an outbox): a change and its event commit in
one transaction. The tailer reads each new event once, encodes it to SSE
bytes once, and hands the same bytes to every subscriber whose scope
matches. It wakes on an in-process signal (a local commit), on an external
wake-up (PostgreSQL NOTIFY) and on a short poll, so several processes on one
SQLite file also see each other's events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sse_starlette import ServerSentEvent

from display.store.base import Event, Store

log = logging.getLogger("yizheng.bus")

ALL = "*"


def encode_event(e: Event) -> bytes:
    """SSE framing of one event; done once per event, shared by every subscriber."""
    return ServerSentEvent(data=e.data, event=e.kind, id=str(e.seq)).encode()


def scopes_of(e: Event) -> tuple[str, ...]:
    """Subscriber scopes that receive an event. A county-wide event goes to every town."""
    if e.town is None:
        return (ALL, "town:*")
    return (ALL, f"town:{e.town}")


@dataclass(frozen=True)
class Published:
    event: Event
    data: bytes


class Subscriber:
    """A bounded outbox of encoded events for one connection.

    When the buffer overflows the subscriber is dropped rather than slowing
    everyone else: its connection ends and the client reconnects with
    Last-Event-ID, replaying from the event log."""

    __slots__ = ("_waiter", "buffer", "dropped", "max_items", "scope")

    def __init__(self, scope: str, max_items: int = 1000) -> None:
        self.scope = scope
        self.buffer: list[tuple[int, bytes]] = []
        self.max_items = max_items
        self.dropped = False
        self._waiter: asyncio.Future[None] | None = None

    def push(self, seq: int, data: bytes) -> None:
        if self.dropped:
            return
        if len(self.buffer) >= self.max_items:
            self.dropped = True
            self.buffer.clear()
        else:
            self.buffer.append((seq, data))
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def drop(self) -> None:
        self.dropped = True
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def wait(self, timeout: float) -> None:
        if self.buffer or self.dropped:
            return
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._waiter, timeout)
        finally:
            self._waiter = None

    def take(self) -> list[tuple[int, bytes]]:
        items, self.buffer = self.buffer, []
        return items


class Hub:
    """Local fan-out: scope -> subscribers. Delivering costs nothing per
    subscriber outside the event's scope."""

    def __init__(self) -> None:
        self._subs: dict[str, set[Subscriber]] = {}
        self.listeners: list[Callable[[Event], None]] = []
        self.published = 0
        self.dropped = 0

    def subscribe(self, scope: str, max_items: int = 1000) -> Subscriber:
        sub = Subscriber(scope, max_items)
        self._subs.setdefault(scope, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        subs = self._subs.get(sub.scope)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.scope]

    def count(self, scope: str | None = None) -> int:
        if scope is not None:
            return len(self._subs.get(scope, ()))
        return sum(len(s) for s in self._subs.values())

    def scopes(self) -> dict[str, int]:
        return {k: len(v) for k, v in self._subs.items()}

    def publish(self, event: Event, data: bytes) -> None:
        self.published += 1
        keys: Iterable[str]
        if event.town is None:
            keys = [k for k in self._subs if k == ALL or k.startswith("town:")]
        else:
            keys = (ALL, f"town:{event.town}")
        for key in keys:
            for sub in tuple(self._subs.get(key, ())):
                was = sub.dropped
                sub.push(event.seq, data)
                if sub.dropped and not was:
                    self.dropped += 1
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                log.exception("event listener failed")

    def close_all(self) -> None:
        for subs in self._subs.values():
            for sub in subs:
                sub.drop()


class Tailer:
    """Reads new events from the store once and publishes them to the hub."""

    def __init__(self, store: Store, hub: Hub, poll_interval: float = 0.5) -> None:
        self.store = store
        self.hub = hub
        self.poll_interval = poll_interval
        self.last_seq = 0
        self._wake = asyncio.Event()
        self.lag_seconds = 0.0

    def wake(self) -> None:
        self._wake.set()

    async def start_at_head(self) -> None:
        _, newest = await self.store.event_bounds()
        self.last_seq = newest

    async def drain(self) -> int:
        n = 0
        while True:
            events = await self.store.events_after(self.last_seq, 500)
            for e in events:
                self.hub.publish(e, encode_event(e))
                self.last_seq = e.seq
                n += 1
            if len(events) < 500:
                return n

    async def run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.drain()
            except Exception:
                log.exception("tailer failed to read events; retrying")
                await asyncio.sleep(self.poll_interval)
