"""The event bus: one tailer per process reads the events table and fans out.

The events table is the bus (an outbox): a change and its event commit in
one transaction. The tailer reads each new event once, encodes it to SSE
bytes once, and hands the same bytes to every subscriber whose scope
matches. It wakes on an in-process signal (a local commit), on an external
wake-up (PostgreSQL NOTIFY) and on a short poll, so several processes on one
SQLite file also see each other's events.

Fan-out is synchronous and batch-wise: everything the tailer read in one go
(whole transactions, since a transaction's events commit together and carry
consecutive sequence numbers) goes to a subscriber as one write. A subscriber
whose connection the server lets us write to directly (see `display.sse`)
costs one `transport.write` per batch and nothing else; the bytes, including
the HTTP chunk framing, are built once per scope. Heartbeats come from one
timer wheel for the whole process, not a timer per connection.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import enum
import itertools
import logging
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from sse_starlette import ServerSentEvent

from display.store.base import Event, Store

log = logging.getLogger("yizheng.bus")

#: Every public event, all towns.
ALL = "*"
#: Every event, for the staff stream.
STAFF = "staff"
TOWN_PREFIX = "town:"
BOARD_PREFIX = "board:"

#: SSE comment sent on idle connections; also how a dead peer is noticed.
HEARTBEAT = b": hb\r\n\r\n"
#: Heartbeats are spread over this many slots of one heartbeat interval.
WHEEL_SLOTS = 16
#: Recently published events kept in memory for replays (a reconnect storm
#: replays from here without touching the database).
RECENT_EVENTS = 4096


def town_scope(town: str) -> str:
    return TOWN_PREFIX + town


def board_scope(board_id: str) -> str:
    return BOARD_PREFIX + board_id


def encode_event(e: Event) -> bytes:
    """SSE framing of one event; done once per event, shared by every subscriber."""
    return ServerSentEvent(data=e.data, event=e.kind, id=str(e.seq)).encode()


def chunk(body: bytes) -> bytes:
    """HTTP/1.1 chunked transfer framing of one write."""
    return b"%x\r\n%b\r\n" % (len(body), body)


LAST_CHUNK = b"0\r\n\r\n"
HEARTBEAT_CHUNK = chunk(HEARTBEAT)


def event_scopes(town: str | None, present: Mapping[str, object]) -> list[str]:
    """Scopes that receive an event of `town`, among the scopes that have subscribers.

    A county-wide event (town None) goes to every town's stream; the cost is one
    step per scope, never per subscriber."""
    if town is None:
        return [k for k in present if k in (ALL, STAFF) or k.startswith(TOWN_PREFIX)]
    return [k for k in (ALL, STAFF, TOWN_PREFIX + town) if k in present]


class Writable(Protocol):
    """The part of an asyncio transport a direct subscriber uses."""

    def write(self, data: bytes) -> None: ...
    def is_closing(self) -> bool: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...
    def get_write_buffer_size(self) -> int: ...


class State(enum.IntEnum):
    #: Events are kept in a bounded list until the connection's task sends them:
    #: while it replays from the log, or for servers we cannot write to directly.
    QUEUED = 0
    #: The hub writes pre-framed bytes straight to the connection's transport.
    DIRECT = 1
    #: Ended (dropped, disconnected or shut down); receives nothing more.
    CLOSED = 2


Batch = Sequence[tuple[int, bytes]]


class Subscriber:
    """One connection's place in the hub.

    Idle subscribers hold no timer, no task of their own and no buffer: a few
    slots on this object and one entry in their scope's dict."""

    __slots__ = (
        "closing",
        "dropped",
        "on_tick",
        "pending",
        "pending_n",
        "scope",
        "sent",
        "slot",
        "state",
        "transport",
        "waiter",
    )

    def __init__(self, scope: str, slot: int, on_tick: Callable[[], None] | None) -> None:
        self.scope = scope
        self.slot = slot
        self.on_tick = on_tick
        self.state = State.QUEUED
        #: Batches waiting for the connection's task (QUEUED only).
        self.pending: list[Batch] = []
        self.pending_n = 0
        #: Sequence number of the last event the client has been sent.
        self.sent = 0
        self.transport: Writable | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.dropped = False
        #: Set when the server shuts down: tell the client to come back, then end.
        self.closing = False

    def wake(self) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    @property
    def ended(self) -> bool:
        return self.state is State.CLOSED

    async def wait(self, seconds: float) -> None:
        """QUEUED mode: until something is pending, the subscriber ends, or `seconds`."""
        if self.pending or self.state is State.CLOSED:
            return
        self.waiter = asyncio.get_running_loop().create_future()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.waiter, seconds)
        finally:
            self.waiter = None

    def take(self) -> bytes:
        """QUEUED mode: the pending events newer than `sent`, joined; advances `sent`."""
        batches, self.pending, self.pending_n = self.pending, [], 0
        sent = self.sent
        out = []
        for batch in batches:
            for seq, data in batch:
                if seq == 0 or seq > sent:
                    out.append(data)
                    sent = max(sent, seq)
        self.sent = sent
        return b"".join(out)


class Hub:
    """Local fan-out: scope -> subscribers. Delivering costs nothing per
    subscriber outside the event's scope."""

    def __init__(
        self, *, heartbeat: float = 15.0, send_buffer: int = 256 * 1024, max_pending: int = 1000
    ) -> None:
        self.heartbeat = heartbeat
        #: A direct subscriber whose unsent bytes exceed this is dropped.
        self.send_buffer = send_buffer
        #: A queued subscriber with more pending events than this is dropped.
        self.max_pending = max_pending
        self._subs: dict[str, dict[Subscriber, None]] = {}
        self._wheel: list[dict[Subscriber, None]] = [{} for _ in range(WHEEL_SLOTS)]
        self._slots = itertools.count()
        self._tick_handle: asyncio.TimerHandle | None = None
        self._tick_slot = 0
        self.listeners: list[Callable[[Event], None]] = []
        #: Sequence number of the newest event published (set by the tailer at start).
        self.last_seq = 0
        #: (seq, town, SSE bytes) of the newest published events, oldest first. Every
        #: event published after `recent_floor` is in it.
        self._recent: list[tuple[int, str | None, bytes]] = []
        self.recent_floor = 0
        self.closing = False
        self.final_retry_ms = 3000
        # Counters, read by /metrics.
        self.published = 0
        self.replayed = 0
        self.dropped = 0
        self.heartbeats = 0

    def configure(self, heartbeat: float, send_buffer: int, retry_ms: int) -> None:
        """Take the `[sse]` settings (called once at start-up)."""
        self.heartbeat = heartbeat
        self.send_buffer = send_buffer
        self.final_retry_ms = retry_ms

    # --- subscribers ------------------------------------------------------------

    def subscribe(self, scope: str, on_tick: Callable[[], None] | None = None) -> Subscriber:
        """A new subscriber in QUEUED mode, starting after the newest published event."""
        sub = Subscriber(scope, next(self._slots) % WHEEL_SLOTS, on_tick)
        sub.sent = self.last_seq
        if self.closing:
            sub.closing = True
            sub.state = State.CLOSED
            return sub
        self._subs.setdefault(scope, {})[sub] = None
        self._wheel[sub.slot][sub] = None
        self._arm()
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        subs = self._subs.get(sub.scope)
        if subs is not None:
            subs.pop(sub, None)
            if not subs:
                del self._subs[sub.scope]
        self._wheel[sub.slot].pop(sub, None)
        sub.state = State.CLOSED
        sub.transport = None
        sub.pending = []
        sub.wake()

    def go_direct(self, sub: Subscriber, transport: Writable) -> bytes:
        """Switch a subscriber to direct writes; returns what was pending (newer than
        `sub.sent`) for the caller to send first. Synchronous, so no event can fall
        between the returned bytes and the first direct write."""
        pending = sub.take()
        if sub.state is State.QUEUED:
            sub.state = State.DIRECT
            sub.transport = transport
        return pending

    def drop(self, sub: Subscriber) -> None:
        """End a subscriber that cannot keep up; its client reconnects and replays."""
        if sub.state is State.CLOSED:
            return
        self.dropped += 1
        sub.dropped = True
        t = sub.transport
        self.unsubscribe(sub)
        if t is not None:
            # abort, not close: close would wait for a client that is not reading.
            t.abort()

    def count(self, scope: str | None = None) -> int:
        if scope is not None:
            return len(self._subs.get(scope, ()))
        return sum(len(s) for s in self._subs.values())

    def scopes(self) -> dict[str, int]:
        return {k: len(v) for k, v in self._subs.items()}

    # --- publishing ---------------------------------------------------------------

    def publish(self, events: Sequence[Event], encoded: Sequence[bytes] | None = None) -> None:
        """Fan out a batch of events (whole transactions, in sequence order).

        Each subscriber gets the batch's events of its scope as one write, so the
        events of one transaction are seen together."""
        if not events:
            return
        datas = encoded if encoded is not None else [encode_event(e) for e in events]
        groups: dict[str, list[tuple[int, bytes]]] = {}
        subs = self._subs
        for e, data in zip(events, datas, strict=True):
            for key in event_scopes(e.town, subs):
                groups.setdefault(key, []).append((e.seq, data))
        self.published += len(events)
        self.last_seq = max(self.last_seq, events[-1].seq)
        recent = self._recent
        recent.extend((e.seq, e.town, d) for e, d in zip(events, datas, strict=True))
        if len(recent) > 2 * RECENT_EVENTS:
            self.recent_floor = recent[-RECENT_EVENTS - 1][0]
            del recent[:-RECENT_EVENTS]
        for key, batch in groups.items():
            self._deliver(key, batch)
        for listener in self.listeners:
            for e in events:
                try:
                    listener(e)
                except Exception:
                    log.exception("event listener failed")

    def start_at(self, seq: int) -> None:
        """The tailer starts after `seq`: nothing older is in memory."""
        self.last_seq = seq
        self.recent_floor = seq
        self._recent.clear()

    def covers(self, seq: int) -> bool:
        """Whether every event this process published after `seq` is still in memory."""
        return self.recent_floor <= seq <= self.last_seq

    def recent_after(self, seq: int, upto: int) -> list[tuple[int, str | None, bytes]]:
        """Published events with `seq` < sequence number <= `upto`, from memory
        (call `covers(seq)` first)."""
        recent = self._recent
        lo = bisect.bisect_right(recent, seq, key=lambda r: r[0])
        hi = bisect.bisect_right(recent, upto, key=lambda r: r[0])
        return recent[lo:hi]

    def publish_scope(self, scope: str, data: bytes) -> None:
        """Fan out bytes that are not in the event log (an LED board's frame)."""
        if scope in self._subs:
            self._deliver(scope, [(0, data)])

    def _deliver(self, key: str, batch: Batch) -> None:
        subs = self._subs.get(key)
        if not subs:
            return
        body = batch[0][1] if len(batch) == 1 else b"".join(d for _, d in batch)
        framed = chunk(body)
        first = batch[0][0]
        last = batch[-1][0]
        limit = self.send_buffer
        slow: list[Subscriber] = []
        for sub in subs:
            t = sub.transport
            if t is not None:  # DIRECT: the hot path
                if t.is_closing():
                    continue
                if first and first <= sub.sent:
                    # Rare: this subscriber's replay read the log past the tailer.
                    ahead = b"".join(d for q, d in batch if q > sub.sent)
                    if ahead:
                        t.write(chunk(ahead))
                else:
                    t.write(framed)
                if t.get_write_buffer_size() > limit:
                    slow.append(sub)
                if last > sub.sent:
                    sub.sent = last
            else:
                sub.pending.append(batch)
                sub.pending_n += len(batch)
                if sub.pending_n > self.max_pending:
                    slow.append(sub)
                else:
                    sub.wake()
        for sub in slow:
            self.drop(sub)

    # --- heartbeats -------------------------------------------------------------

    def _arm(self) -> None:
        if self._tick_handle is None and not self.closing:
            loop = asyncio.get_running_loop()
            self._tick_handle = loop.call_later(self.heartbeat / WHEEL_SLOTS, self._tick)

    def _tick(self) -> None:
        """One slot of the wheel: heartbeat its direct subscribers (a write to a dead
        peer fails or backs up, which ends the connection) and note them as seen."""
        self._tick_handle = None
        slot = self._wheel[self._tick_slot]
        self._tick_slot = (self._tick_slot + 1) % WHEEL_SLOTS
        slow: list[Subscriber] = []
        for sub in slot:
            t = sub.transport
            if t is not None and not t.is_closing():
                t.write(HEARTBEAT_CHUNK)
                self.heartbeats += 1
                if t.get_write_buffer_size() > self.send_buffer:
                    slow.append(sub)
            if sub.on_tick is not None:
                try:
                    sub.on_tick()
                except Exception:
                    log.exception("subscriber tick failed")
        for sub in slow:
            self.drop(sub)
        if any(self._wheel):
            self._arm()

    # --- shutdown -----------------------------------------------------------------

    def goodbye_retry_ms(self, slot: int) -> int:
        """The `retry:` hint sent at shutdown, between one and two retry intervals."""
        return self.final_retry_ms + self.final_retry_ms * slot // WHEEL_SLOTS

    def close_all(self, retry_ms: int | None = None) -> None:
        """Tell every client to reconnect (a `retry:` hint, then the end of the stream)
        and end every subscription. New subscribers are refused from now on."""
        self.closing = True
        if retry_ms is not None:
            self.final_retry_ms = retry_ms
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None
        # Spread the clients' return over one more retry interval, so that a
        # restarted process is not met by every screen in the same instant.
        goodbyes = [
            chunk(b"retry: %d\r\n\r\n" % self.goodbye_retry_ms(slot)) + LAST_CHUNK
            for slot in range(WHEEL_SLOTS)
        ]
        for subs in list(self._subs.values()):
            for sub in list(subs):
                sub.closing = True
                t = sub.transport
                self.unsubscribe(sub)
                if t is not None and not t.is_closing():
                    t.write(goodbyes[sub.slot])
                    if t.get_write_buffer_size():
                        t.abort()  # not reading: do not wait for it
                    else:
                        t.close()


def tune_socket(transport: object, dead_after: float, send_buffer: int) -> None:
    """Bound what one stream can hold in the kernel, and notice dead peers.

    TCP_USER_TIMEOUT lets the kernel end a connection whose sent data stays
    unacknowledged for `dead_after` seconds: that is how a heartbeat write
    notices a half-open connection (a board that lost power). A fixed send
    buffer replaces autotuning (up to megabytes per socket), so a client that
    stops reading holds at most about `send_buffer` in the kernel before the hub
    sees its backlog and drops it."""
    get = getattr(transport, "get_extra_info", None)
    sock = get("socket") if get is not None else None
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    opt = getattr(socket, "TCP_USER_TIMEOUT", None)
    if opt is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, opt, int(dead_after * 1000))


class Tailer:
    """Reads new events from the store once and publishes them to the hub."""

    def __init__(self, store: Store, hub: Hub, poll_interval: float = 0.5) -> None:
        self.store = store
        self.hub = hub
        self.poll_interval = poll_interval
        self.last_seq = 0
        self._wake = asyncio.Event()
        #: Seconds from the newest event's commit to its publication, last batch.
        self.lag_seconds = 0.0
        self.batches = 0

    def wake(self) -> None:
        self._wake.set()

    async def start_at_head(self) -> None:
        _, newest = await self.store.event_bounds()
        self.last_seq = newest
        self.hub.start_at(newest)

    async def drain(self) -> int:
        """Read every committed event past `last_seq`, then publish them as one batch.

        Nothing is published until the read reaches the end of the log, so a
        transaction larger than a page still reaches subscribers in one piece."""
        events: list[Event] = []
        seq = self.last_seq
        while True:
            page = await self.store.events_after(seq, 500)
            events.extend(page)
            if page:
                seq = page[-1].seq
            if len(page) < 500:
                break
        if not events:
            return 0
        encoded = [encode_event(e) for e in events]
        self.hub.publish(events, encoded)
        self.last_seq = seq
        self.batches += 1
        newest = events[-1].at
        if newest is not None:
            self.lag_seconds = max(0.0, time.time() - newest.timestamp())
        return len(events)

    async def run(self) -> None:
        while True:
            # asyncio.timeout rather than wait_for: on Python 3.11 wait_for can swallow
            # a cancellation that races with the wake-up, and the tailer never stops.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.drain()
            except Exception:
                log.exception("tailer failed to read events; retrying")
                await asyncio.sleep(self.poll_interval)
