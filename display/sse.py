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
import functools
import json
import logging
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
    LAST_CHUNK,
    STAFF,
    TOWN_PREFIX,
    Hub,
    Subscriber,
    chunk,
    encode_event,
    tune_socket,
)
from display.store.base import Store
from display.web import security_headers

if TYPE_CHECKING:
    from display.context import Context

log = logging.getLogger("yizheng.sse")

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


@functools.cache
def response_head(https: bool) -> bytes:
    """The head of a stream the hub writes directly: the same headers, those
    SecurityHeadersMiddleware adds to every other response, and chunked framing."""
    lines = [b"HTTP/1.1 200 OK\r\n"]
    lines += [k + b": " + v + b"\r\n" for k, v in (*HEADERS, *security_headers(https))]
    lines.append(b"transfer-encoding: chunked\r\n\r\n")
    return b"".join(lines)


#: How long a reconnecting client may take to receive a page of its replay.
REPLAY_PATIENCE = 30.0


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


def town_matches(scope_key: str, town: str | None) -> bool:
    """Whether an event of `town` belongs to a stream scope (the hub's rule, for replays)."""
    if scope_key in (ALL, STAFF):
        return True
    if scope_key.startswith(TOWN_PREFIX):
        return town is None or town == scope_key[len(TOWN_PREFIX) :]
    return False


class Handover:
    """What it takes to hand a connection from the server to the hub."""

    __slots__ = ("cycle", "transport")

    def __init__(self, cycle: Any, transport: asyncio.Transport) -> None:
        self.cycle = cycle
        self.transport = transport


def handover_of(scope: Scope, receive: Receive) -> Handover | None:
    """The connection's server cycle and transport, when the hub may take it over.

    uvicorn's `receive` is a bound method of its request cycle, which holds the
    transport; Starlette passes `receive` through untouched. Over HTTP/1.1 with
    no content-length uvicorn frames the body as chunks, so writing our own
    chunks to the transport continues the same body."""
    if scope.get("http_version") != "1.1" or scope.get("method") != "GET":
        return None
    cycle = getattr(receive, "__self__", None)
    if cycle is None or type(cycle).__module__ not in _DIRECT_SERVERS:
        return None
    if not isinstance(getattr(cycle, "disconnected", None), bool):
        return None
    transport = getattr(cycle, "transport", None)
    if not isinstance(transport, asyncio.Transport) or transport.is_closing():
        return None
    return Handover(cycle, transport)


class Detached(asyncio.Protocol):
    """Stands in for the server's protocol on a connection the hub has taken over.

    The client of an event stream has nothing more to send, so incoming bytes
    are ignored; the end of the connection unsubscribes at once and is passed
    on, so the server still counts its connections right."""

    __slots__ = ("hub", "server_protocol", "sub")

    def __init__(self, server_protocol: asyncio.BaseProtocol, hub: Hub, sub: Subscriber) -> None:
        self.server_protocol = server_protocol
        self.hub = hub
        self.sub = sub

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool | None:
        return None  # close

    def pause_writing(self) -> None:
        self.server_protocol.pause_writing()

    def resume_writing(self) -> None:
        self.server_protocol.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.hub.unsubscribe(self.sub)
        self.server_protocol.connection_lost(exc)


def detach(handover: Handover, hub: Hub, sub: Subscriber) -> None:
    """Hand the connection to the hub and let the request's task end.

    An idle subscriber then costs no task, no coroutine frames and no Request:
    only the connection's own objects and a Subscriber. The server takes an
    application that returns before its response is complete for an error and
    closes the connection, unless the client has gone; from the server's side
    the client has gone, since the server no longer hears from the connection
    (its protocol is `Detached`, which still passes the real end on)."""
    t = handover.transport
    t.set_protocol(Detached(t.get_protocol(), hub, sub))
    handover.cycle.disconnected = True


def reset_event(reason: str, seq: int) -> bytes:
    """Tells the client to reload its snapshot and carry on from `seq`."""
    data = json.dumps({"reason": reason, "last_event_id": seq})
    return ServerSentEvent(data=data, event="reset", id=str(seq)).encode()


def log_prelude(
    store: Store, hub: Hub, scope_key: str, last_id: int | None, retry_ms: int
) -> Prelude:
    """Head, then the missed events of the scope (or a reset), for log-backed streams.

    `sub.sent` is, on entry, the hub's position when the subscriber joined: the
    replay must reach it, since everything later waits in the subscriber."""

    async def prelude(sub: Subscriber) -> AsyncIterator[bytes]:
        head = ServerSentEvent(comment="yizheng", retry=retry_ms).encode()
        joined = sub.sent
        if last_id is None:
            # A fresh client starts after the newest published event; give it that
            # position now, so that a reconnect before its first event is exact too.
            yield head + ServerSentEvent(id=str(joined)).encode()
            return
        if last_id >= 0 and hub.covers(last_id):
            # Recent: from memory, without a database read, so a reconnect storm
            # costs little.
            recent = [
                d
                for _, town, d in hub.recent_after(last_id, joined)
                if town_matches(scope_key, town)
            ]
            hub.replayed += len(recent)
            yield head + b"".join(recent)
            return
        oldest, newest = await store.event_bounds()
        if joined < last_id <= newest:
            # Ahead of this process's tailer (it comes from a process further on):
            # what follows arrives live, and anything up to last_id is skipped.
            sub.sent = last_id
            yield head
            return
        if last_id < 0 or last_id > newest or last_id < oldest - 1:
            reason = "retention" if 0 <= last_id < oldest - 1 else "unknown_id"
            sub.sent = max(joined, newest)
            yield head + reset_event(reason, sub.sent)
            return
        sent = last_id
        out: list[bytes] = [head]
        tries = 0
        while True:
            events = await store.events_after(sent, 500)
            for e in events:
                if town_matches(scope_key, e.town):
                    out.append(encode_event(e))
            if events:
                sent = events[-1].seq
            if len(events) == 500:
                hub.replayed += len(out)
                yield b"".join(out)
                out = []
                continue
            if sent >= joined:
                break
            if hub.covers(sent):
                # The database answered from before events this process has already
                # published (a reader behind the writer): take those from memory.
                out += [
                    d
                    for _, town, d in hub.recent_after(sent, joined)
                    if town_matches(scope_key, town)
                ]
                sent = joined
                break
            tries += 1
            if tries > 100:
                sub.sent = max(joined, newest)
                out.append(reset_event("unavailable", sub.sent))
                hub.replayed += len(out) - 1
                yield b"".join(out)
                return
            await asyncio.sleep(0.05)
        sub.sent = sent
        hub.replayed += len(out) - (1 if out and out[0] is head else 0)
        if out:
            yield b"".join(out)

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
        https: bool = False,
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
        self.https = https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handover = handover_of(scope, receive) if self.direct else None
        if handover is None:
            await self._portable(receive, send)
        else:
            await self._direct(handover)

    async def _direct(self, handover: Handover) -> None:
        """Write the whole response to the transport ourselves, then detach.

        The head and the prelude go out in one write (one system call per new
        connection); the server's `send` is never called, so it has nothing to
        add to the response and must not: every way out of here marks the
        server's cycle as ended."""
        hub = self.hub
        t = handover.transport
        sub = hub.subscribe(self.scope_key, self.on_tick)
        detached = False
        try:
            out = response_head(self.https)
            if not sub.ended:
                async for body in self.prelude(sub):
                    t.write(out + chunk(body))
                    out = b""
                    if sub.ended or t.is_closing() or not await self._drained(t):
                        break
            if out:
                t.write(out)
            if t.is_closing():
                return
            if sub.ended:  # shut down (or dropped) during the replay
                if sub.closing:
                    t.write(chunk(self._goodbye(sub)) + LAST_CHUNK)
                    t.close()
                else:
                    t.abort()
                return
            rest = hub.go_direct(sub, t)
            if rest:
                t.write(chunk(rest))
            tune_socket(t, max(10.0, 3 * self.heartbeat), hub.send_buffer)
            detach(handover, hub, sub)
            # From here the connection's end reaches the hub through `Detached`,
            # unless it had already begun.
            detached = not t.is_closing()
        except Exception:
            log.exception("event stream failed; closing it")
            t.abort()
        finally:
            handover.cycle.disconnected = True
            if not detached:
                hub.unsubscribe(sub)

    async def _drained(self, t: asyncio.Transport) -> bool:
        """Wait (during a long replay) until the client has taken most of what was
        written; False, having dropped it, if it does not within REPLAY_PATIENCE."""
        limit = self.hub.send_buffer
        waited = 0.0
        while t.get_write_buffer_size() > limit and not t.is_closing():
            if waited >= REPLAY_PATIENCE:
                t.abort()
                return False
            await asyncio.sleep(0.05)
            waited += 0.05
        return not t.is_closing()

    def _goodbye(self, sub: Subscriber) -> bytes:
        return b"retry: %d\r\n\r\n" % self.hub.goodbye_retry_ms(sub.slot)

    async def _portable(self, receive: Receive, send: Send) -> None:
        """Any ASGI server: the request's task sends through `send` what the hub
        queued for it, and the heartbeats."""
        hub = self.hub
        sub = hub.subscribe(self.scope_key, self.on_tick)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
            if not sub.ended:
                async for body in self.prelude(sub):
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                    if sub.ended:
                        break
            if not sub.ended:
                await self._queued(sub, receive, send)
            if not sub.dropped:
                await self._end(sub, send)
        except OSError:
            pass
        finally:
            hub.unsubscribe(sub)

    async def _end(self, sub: Subscriber, send: Send) -> None:
        body = self._goodbye(sub) if sub.closing else b""
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
