"""create_app(settings) -> Starlette: routes, middleware, lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from display.context import Context, board_profile, board_token_hash
from display.domain import local_date, now_utc
from display.leader import lead_feeds
from display.metrics import routes as metrics_routes
from display.settings import Settings
from display.sse import start_push, stop_push
from display.views import api, kiosk, push, stream
from display.web import SecurityHeadersMiddleware, templates_for

log = logging.getLogger("yizheng")

#: A quarantined problem not seen again for this many days is forgotten.
QUARANTINE_DAYS = 30

#: Stylesheets, scripts, fonts. `display/assets` links to the checkout's top-level
#: `assets/` (the layout in DESIGN.md); a wheel carries a copy (package data).
ASSETS = Path(__file__).resolve().parent / "assets"


async def startup(ctx: Context) -> None:
    await ctx.store.open()
    applied = await ctx.store.migrate()
    if applied:
        log.info("database migrated: %s", ", ".join(applied))
    for board in ctx.settings.boards:
        token_hash = board_token_hash(board.token) if board.token else None
        await ctx.store.upsert_board(board.id, board.town, board_profile(board), token_hash)
    await ctx.load_boards()
    from display.auth import stream_guard

    ctx.extra["staff_auth"] = stream_guard
    start_push(ctx)  # live push: [sse] settings, streams end on SIGTERM
    await ctx.tailer.start_at_head()
    ctx.spawn(ctx.tailer.run(), "tailer")
    await ctx.store.refresh_overdue(local_date(now_utc()))
    await ctx.store.announce_due_notices(now_utc())
    ctx.spawn(ctx.every(60.0, lambda: ctx.store.refresh_overdue(local_date(now_utc()))), "overdue")
    ctx.spawn(ctx.every(5.0, lambda: ctx.store.announce_due_notices(now_utc())), "notices")
    ctx.spawn(ctx.every(10.0, ctx.flush_seen), "board-seen")
    sse = ctx.settings.sse
    ctx.spawn(
        ctx.every(
            300.0,
            lambda: ctx.store.prune_events(
                sse.retention_events, now_utc() - timedelta(days=sse.retention_days)
            ),
        ),
        "prune",
    )
    ctx.spawn(
        ctx.every(
            3600.0,
            lambda: ctx.store.prune_quarantine(now_utc() - timedelta(days=QUARANTINE_DAYS)),
        ),
        "prune-quarantine",
    )
    _start_led(ctx)
    if ctx.settings.run_feeds:
        # One process per database runs the feeds (display/leader.py).
        ctx.spawn(lead_feeds(ctx), "feed-leader")


def _start_led(ctx: Context) -> None:
    try:
        from display.led.cache import FrameCache
        from display.led.content import load_content
    except ImportError:  # the LED package is optional while it is being built
        return
    leds = [b for b in ctx.all_boards() if b.kind == "led"]

    async def load(board: Any) -> Any:
        return await load_content(ctx, board)

    ctx.frames = FrameCache(leds, load, on_change=stream.frames_changed(ctx.hub))

    def on_event(e: Any) -> None:
        if ctx.frames is not None and e.kind in ("case", "notice", "stats"):
            ctx.frames.invalidate(e.town)

    ctx.hub.listeners.append(on_event)


async def shutdown(ctx: Context) -> None:
    ctx.stop.set()
    stop_push(ctx)  # tell clients to reconnect, end every stream
    for runner in ctx.runners.values():
        with contextlib.suppress(Exception):
            await runner.adapter.aclose()
    for task in ctx.tasks:
        task.cancel()
    for task in ctx.tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    ctx.tasks.clear()
    if ctx.frames is not None:
        await ctx.frames.aclose()
    with contextlib.suppress(Exception):
        await ctx.flush_seen()
    await ctx.store.close()


def routes() -> list[BaseRoute]:
    out: list[BaseRoute] = [*api.routes(), *stream.routes(), *kiosk.routes(), *push.routes()]
    try:
        from display.views import led

        out += led.routes()
    except ImportError:
        pass
    try:
        from display.views import admin  # type: ignore[attr-defined, unused-ignore]

        out += admin.routes()
    except ImportError:
        pass
    out += metrics_routes()
    out.append(Mount("/assets", app=StaticFiles(directory=ASSETS), name="assets"))
    return out


def create_app(settings: Settings) -> Starlette:
    """Build the service. Nothing is opened until the lifespan starts."""
    ctx = Context.build(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await startup(ctx)
        try:
            yield
        finally:
            await shutdown(ctx)

    app = Starlette(
        routes=routes(),
        middleware=[Middleware(SecurityHeadersMiddleware, https=settings.https)],
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    app.state.templates = templates_for(ctx, ASSETS)
    return app
