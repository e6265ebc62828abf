"""SSE endpoints: the public case stream (`/events`)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from display.sse import EventStream, last_event_id
from display.store.base import Event
from display.views.api import town_param
from display.web import ctx_of


async def events(request: Request) -> Response:
    ctx = ctx_of(request)
    town, err = town_param(request)
    if err:
        return err
    last = last_event_id(request)
    scope_key = f"town:{town}" if town else "*"

    def match(e: Event) -> bool:
        return town is None or e.town is None or e.town == town

    return EventStream(hub=ctx.hub, store=ctx.store, scope_key=scope_key, match=match,
                       last_id=last, heartbeat=ctx.settings.sse.heartbeat,
                       retry_ms=ctx.settings.sse.retry_ms)


def routes() -> list[BaseRoute]:
    return [Route("/events", events)]
