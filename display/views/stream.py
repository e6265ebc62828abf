"""SSE endpoints: the public case stream (`/events`), each LED board's frame stream
(`/led/{board}/events`) and the staff stream (`/admin/events`).

The staff stream is guarded by a hook the staff accounts module installs:
`ctx.extra["staff_auth"]`, an async callable taking the request and returning
None to allow it or a Response (a refusal, a redirect to the login page) to
send instead. Without the hook the staff stream answers 403.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from sse_starlette import ServerSentEvent
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from display.bus import ALL, STAFF, Hub, Subscriber, board_scope, town_scope
from display.sse import EventStream, last_event_id, log_prelude
from display.views.api import town_param
from display.web import ctx_of

if TYPE_CHECKING:
    from display.led.render import RenderedBoard

log = logging.getLogger("yizheng.sse")

StaffAuth = Callable[[Request], Awaitable[Response | None]]


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(
        {"error": message}, status_code=status, headers={"cache-control": "no-cache"}
    )


def _log_stream(request: Request, scope_key: str) -> EventStream:
    ctx = ctx_of(request)
    sse = ctx.settings.sse
    return EventStream(
        hub=ctx.hub,
        scope_key=scope_key,
        heartbeat=sse.heartbeat,
        prelude=log_prelude(ctx.store, ctx.hub, scope_key, last_event_id(request), sse.retry_ms),
        https=ctx.settings.https,
    )


async def events(request: Request) -> Response:
    town, err = town_param(request)
    if err:
        return err
    return _log_stream(request, town_scope(town) if town else ALL)


async def staff_events(request: Request) -> Response:
    ctx = ctx_of(request)
    auth: StaffAuth | None = ctx.extra.get("staff_auth")
    if auth is None:
        return _error(403, "工作人员事件流尚未启用")
    refusal = await auth(request)
    if refusal is not None:
        return refusal
    town, err = town_param(request)
    if err:
        return err
    return _log_stream(request, town_scope(town) if town else STAFF)


def encode_frame(rendered: RenderedBoard) -> bytes:
    """The SSE `frame` event of a board's rendering; its id is the rendering's version."""
    from display.views.led import frame_event

    data = json.dumps(frame_event(rendered), ensure_ascii=False, separators=(",", ":"))
    return ServerSentEvent(data=data, event="frame", id=rendered.version).encode()


def frames_changed(hub: Hub) -> Callable[[str, RenderedBoard], Awaitable[None]]:
    """The FrameCache's `on_change`: announce a board's new rendering on its stream,
    encoded once, and only when the board has a subscriber."""

    async def on_change(board_id: str, rendered: RenderedBoard) -> None:
        scope = board_scope(board_id)
        if hub.count(scope):
            hub.publish_scope(scope, encode_frame(rendered))

    return on_change


async def board_events(request: Request) -> Response:
    from display.views.led import BoardProblem, resolve_board

    ctx = ctx_of(request)
    try:
        asked = await resolve_board(request)
    except BoardProblem as p:
        return _error(p.status, p.message)
    board, frames = asked.board, asked.frames
    held = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    sse = ctx.settings.sse
    board_id = board.id

    async def prelude(sub: Subscriber) -> AsyncIterator[bytes]:
        # Read the frame after subscribing: a change from now on is in the hub.
        head = ServerSentEvent(comment="yizheng", retry=sse.retry_ms).encode()
        current = frames.cached(board_id) or await frames.get(board_id)
        yield head if held == current.version else head + encode_frame(current)

    return EventStream(
        hub=ctx.hub,
        scope_key=board_scope(board_id),
        prelude=prelude,
        heartbeat=sse.heartbeat,
        on_tick=(lambda: ctx.board_seen(board_id)) if asked.token_ok is not False else None,
        https=ctx.settings.https,
    )


class StreamEndpoint:
    """A stream handler mounted as a bare ASGI app: a connection that stays open for
    days should not keep a Request and an exception-handling layer alive, and ten
    thousand of them connecting at once should not pay for them either."""

    def __init__(self, handler: Callable[[Request], Awaitable[Response]]) -> None:
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] == "HEAD":
            response: Response = Response(
                status_code=200, headers={"content-type": "text/event-stream; charset=utf-8"}
            )
        elif scope["method"] != "GET":
            response = PlainTextResponse("Method Not Allowed", 405, headers={"allow": "GET, HEAD"})
        else:
            response = await self.handler(Request(scope, receive))
        await response(scope, receive, send)


def routes() -> list[BaseRoute]:
    return [
        Route("/events", StreamEndpoint(events)),
        Route("/led/{board}/events", StreamEndpoint(board_events)),
        Route("/admin/events", StreamEndpoint(staff_events)),
    ]
