"""Server-sent event streams with exact Last-Event-ID replay.

A client subscribes to the hub *before* replaying from the event log, so no
event falls between the replay and the live tail; whatever the hub published
meanwhile waits in the subscriber and is filtered by sequence number. A
client that asks for events older than the log retains gets a `reset` event
and reloads its snapshot.

After the replay, a connection served by uvicorn over HTTP/1.1 is handed to
the hub, which writes each batch's pre-framed bytes straight to its
transport: no queue, no task and no timer per connection, and the request's
own task sleeps in `receive()` until the client goes away. Any other server
gets the portable path: a small queue per subscriber drained by the request's
task through ASGI `send`. docs/capacity.md has the measurements behind this.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import threading
from collections.abc import AsyncIterator, Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

from sse_starlette import ServerSentEvent
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from display.bus import (
    ALL,
    HEARTBEAT,
    STAFF,
    TOWN_PREFIX,
    Hub,
    Subscriber,
    Writable,
    chunk,
    encode_event,
    set_user_timeout,
)
from display.store.base import Event, Store

if TYPE_CHECKING:
    from display.context import Context

#: Prelude of a stream: what to send before the live tail (head, replay, first frame).
Prelude = Callable[[Subscriber], AsyncIterator[bytes]]

#: Server cycles whose transport carries an HTTP/1.1 chunked body we can append to.
_DIRECT_SERVERS = frozenset(
    {
        "uvicorn.protocols.http.h11_impl",
        "uvicorn.protocols.http.httptools_impl",
    }
)

HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def last_event_id(request: Request) -> int | None:
    """From the Last-Event-ID header, or `last_event_id` for clients that cannot set it.

    None when absent; -1 when it is not a sequence number (the client gets a reset)."""
    raw = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    if raw is None or raw == "":
        return None
    raw = raw.strip()
    if not raw.isdigit() or len(raw) > 18:
        return -1
    return int(raw)


def scope_matches(scope_key: str, e: Event) -> bool:
    """Whether an event belongs to a stream scope (the hub's rule, for replays)."""
    if scope_key in (ALL, STAFF):
        return True
    if scope_key.startswith(TOWN_PREFIX):
        return e.town is None or e.town == scope_key[len(TOWN_PREFIX) :]
    return False


def direct_transport(scope: Scope, receive: Receive) -> Writable | None:
    """The connection's transport, when the server lets us append chunks to it.

    uvicorn's `receive` is a bound method of its request cycle, which holds the
    transport; Starlette passes `receive` through untouched. Over HTTP/1.1 with
    no content-length uvicorn frames the body as chunks, so writing our own
    chunks to the transport continues the same body."""
    if scope.get("http_version") != "1.1" or scope.get("method") != "GET":
        return None
    cycle = getattr(receive, "__self__", None)
    if cycle is None or type(cycle).__module__ not in _DIRECT_SERVERS:
        return None
    transport = getattr(cycle, "transport", None)
    if not isinstance(transport, asyncio.Transport) or transport.is_closing():
        return None
    return transport


def log_prelude(
    store: Store, hub: Hub, scope_key: str, last_id: int | None, retry_ms: int
) -> Prelude:
    """Head, then the missed events of the scope (or a reset), for log-backed streams."""

    async def prelude(sub: Subscriber) -> AsyncIterator[bytes]:
        head = ServerSentEvent(comment="yizheng", retry=retry_ms).encode()
        if last_id is None:
            # A fresh client starts after the newest published event; give it that
            # position now, so that a reconnect before its first event is exact too.
            yield head + ServerSentEvent(id=str(sub.sent)).encode()
            return
        oldest, newest = await store.event_bounds()
        if last_id < 0 or last_id > newest or last_id < oldest - 1:
            reason = "retention" if 0 <= last_id < oldest - 1 else "unknown_id"
            sub.sent = max(sub.sent, newest)
            yield (
                head
                + ServerSentEvent(
                    data=json.dumps({"reason": reason, "last_event_id": sub.sent}),
                    event="reset",
                    id=str(sub.sent),
                ).encode()
            )
            return
        sent = last_id
        first = True
        while True:
            events = await store.events_after(sent, 500)
            out = [encode_event(e) for e in events if scope_matches(scope_key, e)]
            hub.replayed += len(out)
            if events:
                sent = events[-1].seq
            if first:
                out.insert(0, head)
                first = False
            if out:
                yield b"".join(out)
            if len(events) < 500:
                break
        sub.sent = sent

    return prelude


class EventStream(Response):
    """ASGI response streaming one scope of the hub after a prelude."""

    def __init__(
        self,
        *,
        hub: Hub,
        scope_key: str,
        prelude: Prelude,
        heartbeat: float,
        on_tick: Callable[[], None] | None = None,
        direct: bool = True,
    ) -> None:
        # Response.__init__ is not called: this response writes its own headers.
        self.background = None
        self.hub = hub
        self.scope_key = scope_key
        self.prelude = prelude
        self.heartbeat = heartbeat
        self.on_tick = on_tick
        #: False forces the portable queue path (tests exercise both).
        self.direct = direct

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hub = self.hub
        sub = hub.subscribe(self.scope_key, self.on_tick)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
            if not sub.ended:
                async for body in self.prelude(sub):
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                    if sub.ended:
                        break
            if sub.ended:
                await self._end(sub, send)
                return
            transport = direct_transport(scope, receive) if self.direct else None
            if transport is None:
                await self._queued(sub, receive, send)
                return
            rest = hub.go_direct(sub, transport)
            if rest:
                transport.write(chunk(rest))
            set_user_timeout(transport, max(10.0, 3 * self.heartbeat))
            # Everything else happens in the hub; this task only waits for the end,
            # which is the client leaving, a drop (abort) or shutdown (close).
            while (await receive())["type"] != "http.disconnect":
                pass
        except OSError:
            pass
        finally:
            hub.unsubscribe(sub)

    async def _end(self, sub: Subscriber, send: Send) -> None:
        body = b""
        if sub.closing:
            body = f"retry: {self.hub.final_retry_ms}\r\n\r\n".encode()
        with contextlib.suppress(OSError, RuntimeError):
            await send({"type": "http.response.body", "body": body, "more_body": False})

    async def _queued(self, sub: Subscriber, receive: Receive, send: Send) -> None:
        """The portable path: this task sends what the hub queued, and heartbeats."""
        hub = self.hub

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            hub.unsubscribe(sub)

        watcher = asyncio.create_task(watch())
        try:
            while not sub.ended:
                await sub.wait(self.heartbeat)
                if sub.ended:
                    break
                body = sub.take()
                if not body:  # a timeout (or only events the replay already sent)
                    body = HEARTBEAT
                    hub.heartbeats += 1
                    if self.on_tick is not None:
                        self.on_tick()
                await send({"type": "http.response.body", "body": body, "more_body": True})
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        if not sub.dropped:
            await self._end(sub, send)


def install_shutdown_signals(hub: Hub) -> Callable[[], None]:
    """End every stream as soon as the server is told to stop.

    uvicorn waits for open connections to finish before it runs the lifespan
    shutdown, and an event stream never finishes by itself. So the server's own
    SIGTERM/SIGINT handler is chained: the signal first tells every client to
    reconnect and closes its stream, then goes on to the server. Returns a
    function that puts the previous handlers back."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    installed: dict[int, tuple[Any, Any]] = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if not callable(previous):
            continue

        def handler(signum: int, frame: FrameType | None, previous: Any = previous) -> None:
            loop.call_soon_threadsafe(hub.close_all)
            previous(signum, frame)

        signal.signal(sig, handler)
        installed[sig] = (previous, handler)

    def restore() -> None:
        for sig, (previous, handler) in installed.items():
            if signal.getsignal(sig) is handler:
                signal.signal(sig, previous)

    return restore


def start_push(ctx: Context) -> None:
    """Start-up wiring for live push: the `[sse]` settings, and ending streams on SIGTERM."""
    sse = ctx.settings.sse
    ctx.hub.configure(sse.heartbeat, sse.send_buffer, sse.retry_ms)
    ctx.extra["sse_restore_signals"] = install_shutdown_signals(ctx.hub)


def stop_push(ctx: Context) -> None:
    """Shutdown: tell every client to reconnect, end every stream, restore signals."""
    ctx.hub.close_all()
    restore = ctx.extra.pop("sse_restore_signals", None)
    if restore is not None:
        restore()
