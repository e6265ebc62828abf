"""Server-sent event streams with exact Last-Event-ID replay.

A client subscribes to the hub *before* replaying from the event log, so no
event falls between the replay and the live tail; anything the replay
already sent is skipped by its sequence number. A client that asks for
events older than the log retains gets a `reset` event and reloads its
snapshot.

The response is a plain ASGI callable rather than a per-connection
generator with its own queue: the hub writes the shared, pre-encoded bytes
into the subscriber's small buffer and this loop sends them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable

from sse_starlette import ServerSentEvent
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from display.bus import Hub, Subscriber, encode_event
from display.store.base import Event, Store

HEARTBEAT = b": hb\n\n"


def last_event_id(request: Request) -> int | None:
    """From the Last-Event-ID header, or `last_event_id` for clients that cannot set it."""
    raw = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    if raw is None or raw == "":
        return None
    raw = raw.strip()
    if not raw.isdigit() or len(raw) > 18:
        return -1
    return int(raw)


class EventStream(Response):
    """ASGI response streaming one scope's events."""

    def __init__(self, *, hub: Hub, store: Store, scope_key: str,
                 match: Callable[[Event], bool], last_id: int | None, heartbeat: float,
                 retry_ms: int, max_items: int = 1000,
                 on_tick: Callable[[], None] | None = None,
                 first: list[bytes] | None = None) -> None:
        # Response.__init__ is not called: this response writes its own headers.
        self.background = None
        self._pending = b""
        self.hub = hub
        self.store = store
        self.scope_key = scope_key
        self.match = match
        self.last_id = last_id
        self.heartbeat = heartbeat
        self.retry_ms = retry_ms
        self.max_items = max_items
        self.on_tick = on_tick
        self.first = first or []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sub = self.hub.subscribe(self.scope_key, self.max_items)
        disconnected = asyncio.Event()

        async def watch() -> None:
            while True:
                msg = await receive()
                if msg["type"] == "http.disconnect":
                    disconnected.set()
                    sub.drop()
                    return

        watcher = asyncio.create_task(watch())
        try:
            await send({
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-cache"),
                    (b"x-accel-buffering", b"no"),
                ],
            })
            head = ServerSentEvent(comment="yizheng", retry=self.retry_ms).encode()
            sent = await self._replay(head, sub)
            if sent is None:
                return
            await self._live(sub, sent, send, disconnected)
        except OSError:
            pass
        finally:
            self.hub.unsubscribe(sub)
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        with contextlib.suppress(OSError, RuntimeError):
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _replay(self, head: bytes, sub: Subscriber) -> int | None:
        """Queue the head, a reset or the missed events; returns the last seq sent."""
        chunks = [head, *self.first]
        oldest, newest = await self.store.event_bounds()
        last = self.last_id
        if last is None:
            sent = newest
        elif last < 0 or last > newest or last < oldest - 1:
            chunks.append(ServerSentEvent(
                data=json.dumps({"reason": "retention" if 0 <= last < oldest - 1 else
                                 "unknown_id", "last_event_id": newest}),
                event="reset", id=str(newest)).encode())
            sent = newest
        else:
            sent = last
            while True:
                events = await self.store.events_after(sent, 500)
                for e in events:
                    if self.match(e):
                        chunks.append(encode_event(e))
                    sent = e.seq
                if len(events) < 500:
                    break
        self._pending = b"".join(chunks)
        return sent

    async def _live(self, sub: Subscriber, sent: int, send: Send,
                    disconnected: asyncio.Event) -> None:
        await send({"type": "http.response.body", "body": self._pending, "more_body": True})
        self._pending = b""
        while not disconnected.is_set():
            await sub.wait(self.heartbeat)
            if sub.dropped:
                return
            items = sub.take()
            if items:
                body = b"".join(data for seq, data in items if seq > sent)
                sent = max(sent, items[-1][0])
                if not body:
                    continue
            else:
                body = HEARTBEAT
            if self.on_tick is not None:
                self.on_tick()
            await send({"type": "http.response.body", "body": body, "more_body": True})
