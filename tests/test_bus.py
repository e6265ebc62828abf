"""The hub and the tailer without a network: scopes, batches, drops, heartbeats, memory."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime

from display.bus import (
    ALL,
    HEARTBEAT_CHUNK,
    LAST_CHUNK,
    RECENT_EVENTS,
    STAFF,
    Hub,
    State,
    Tailer,
    board_scope,
    chunk,
    encode_event,
    town_scope,
)
from display.store.base import Event


class FakeTransport:
    """Records writes; `stuck` makes everything written stay in the buffer."""

    def __init__(self, stuck: bool = False) -> None:
        self.writes: list[bytes] = []
        self.stuck = stuck
        self.buffered = 0
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        if self.stuck:
            self.buffered += len(data)

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return self.buffered


def ev(seq: int, town: str | None = "longshi", kind: str = "case") -> Event:
    return Event(seq, kind, town, f'{{"seq":{seq}}}')


def direct(hub: Hub, scope: str, t: FakeTransport | None = None) -> FakeTransport:
    t = t or FakeTransport()
    sub = hub.subscribe(scope)
    assert hub.go_direct(sub, t) == b""
    return t


async def test_each_subscriber_gets_its_scope_as_one_write_of_shared_bytes() -> None:
    hub = Hub()
    longshi = [direct(hub, town_scope("longshi")) for _ in range(3)]
    huangjia = direct(hub, town_scope("huangjia"))
    everything = direct(hub, ALL)
    staff = direct(hub, STAFF)
    batch = [ev(1), ev(2, "huangjia"), ev(3, None, "notice"), ev(4)]
    hub.publish(batch)

    want_longshi = chunk(encode_event(batch[0]) + encode_event(batch[2]) + encode_event(batch[3]))
    for t in longshi:
        assert t.writes == [want_longshi]
    # The same bytes object goes to every subscriber of a scope: encoded once.
    assert longshi[0].writes[0] is longshi[1].writes[0] is longshi[2].writes[0]
    assert huangjia.writes == [chunk(encode_event(batch[1]) + encode_event(batch[2]))]
    whole = chunk(b"".join(encode_event(e) for e in batch))
    assert everything.writes == [whole]
    assert staff.writes == [whole]
    assert hub.published == 4 and hub.last_seq == 4


async def test_a_board_scope_gets_only_its_frames() -> None:
    hub = Hub()
    gate = direct(hub, board_scope("gate"))
    kiosk = direct(hub, ALL)
    hub.publish([ev(1)])
    hub.publish_scope(board_scope("gate"), b"event: frame\r\ndata: {}\r\n\r\n")
    hub.publish_scope(board_scope("nobody"), b"x")
    assert gate.writes == [chunk(b"event: frame\r\ndata: {}\r\n\r\n")]
    assert len(kiosk.writes) == 1


async def test_queued_subscribers_skip_what_their_replay_sent() -> None:
    hub = Hub()
    sub = hub.subscribe(ALL)
    hub.publish([ev(1), ev(2)])
    hub.publish([ev(3)])
    sub.sent = 2  # the replay read the log up to 2
    assert sub.take() == encode_event(ev(3))
    assert sub.sent == 3
    t = FakeTransport()
    assert hub.go_direct(sub, t) == b""
    assert sub.state is State.DIRECT
    # A batch that overlaps what the subscriber has (its replay read past the
    # tailer) is cut to the new events for that subscriber only.
    sub.sent = 5
    hub.publish([ev(4), ev(5), ev(6)])
    assert t.writes == [chunk(encode_event(ev(6)))]
    hub.publish([ev(7)])
    assert t.writes[-1] == chunk(encode_event(ev(7)))


async def test_slow_subscribers_are_dropped_and_others_keep_receiving() -> None:
    hub = Hub(send_buffer=500, max_pending=3)
    slow = direct(hub, ALL, FakeTransport(stuck=True))
    fine = direct(hub, ALL)
    queued = hub.subscribe(ALL)
    for seq in range(1, 20):
        hub.publish([ev(seq)])
    assert slow.aborted
    assert not fine.aborted and len(fine.writes) == 19
    assert queued.ended and queued.dropped
    assert hub.dropped == 2
    assert hub.count(ALL) == 1


async def test_the_heartbeat_wheel_writes_to_idle_subscribers_and_notes_boards() -> None:
    hub = Hub(heartbeat=0.08)
    ticks: list[int] = []
    sub = hub.subscribe(board_scope("gate"), on_tick=lambda: ticks.append(1))
    t = FakeTransport()
    hub.go_direct(sub, t)
    await asyncio.sleep(0.4)
    assert t.writes.count(HEARTBEAT_CHUNK) >= 2
    assert len(ticks) >= 2
    hub.unsubscribe(sub)
    n = len(t.writes)
    await asyncio.sleep(0.2)
    assert len(t.writes) == n


async def test_close_all_tells_clients_to_reconnect_and_refuses_newcomers() -> None:
    hub = Hub()
    hub.configure(heartbeat=15.0, send_buffer=1 << 16, retry_ms=1234)
    t = direct(hub, ALL)
    queued = hub.subscribe(town_scope("longshi"))
    hub.close_all()
    assert t.writes[-1] == chunk(b"retry: 1234\r\n\r\n") + LAST_CHUNK
    assert t.closed
    assert queued.ended and queued.closing
    # Clients come back spread over one more retry interval.
    assert {hub.goodbye_retry_ms(slot) for slot in range(16)} <= set(range(1234, 2468))
    assert len({hub.goodbye_retry_ms(slot) for slot in range(16)}) == 16
    late = hub.subscribe(ALL)
    assert late.ended and late.closing
    assert hub.count() == 0


async def test_recent_events_are_kept_in_memory_for_replays() -> None:
    hub = Hub()
    hub.start_at(10)
    assert hub.covers(10) and not hub.covers(9) and not hub.covers(11)
    hub.publish([ev(11), ev(12, "huangjia")])
    hub.publish([ev(13)])
    assert [s for s, _, _ in hub.recent_after(11, 13)] == [12, 13]
    assert [s for s, _, _ in hub.recent_after(10, 12)] == [11, 12]
    for seq in range(14, 14 + 2 * RECENT_EVENTS + 5):
        hub.publish([ev(seq)])
    assert not hub.covers(11)
    assert hub.covers(hub.last_seq - RECENT_EVENTS)
    tail = hub.recent_after(hub.last_seq - 3, hub.last_seq)
    assert [s for s, _, _ in tail] == [hub.last_seq - 2, hub.last_seq - 1, hub.last_seq]


class PagedStore:
    """events_after in pages, like the real stores."""

    def __init__(self, events: Sequence[Event]) -> None:
        self.events = list(events)
        self.reads = 0

    async def events_after(self, seq: int, limit: int = 1000) -> list[Event]:
        self.reads += 1
        return [e for e in self.events if e.seq > seq][:limit]

    async def event_bounds(self) -> tuple[int, int]:
        return (self.events[0].seq, self.events[-1].seq) if self.events else (1, 0)


async def test_the_tailer_publishes_everything_it_read_as_one_batch() -> None:
    # A transaction bigger than a page (1,200 events) reaches each subscriber in
    # one write, never split between two deliveries.
    at = datetime.fromisoformat("2026-11-20T01:00:00+00:00")
    store = PagedStore([Event(s, "case", "longshi", "{}", at) for s in range(1, 1201)])
    hub = Hub()
    tailer = Tailer(store, hub)  # type: ignore[arg-type]
    t = direct(hub, ALL)
    assert await tailer.drain() == 1200
    assert store.reads == 3
    assert len(t.writes) == 1
    assert tailer.last_seq == hub.last_seq == 1200
    assert tailer.lag_seconds > 0
    assert await tailer.drain() == 0
    assert len(t.writes) == 1
