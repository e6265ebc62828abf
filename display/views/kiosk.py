"""Kiosk pages: a town's screen, its case lookup and the county overview.

Thin: parse, gather from `display.panels`, render. The pages work without
JavaScript; htmx and its SSE extension swap in server-rendered fragments when
an event says their content changed (docs/kiosk.md).

State on the Context, in `ctx.extra`: `kiosk_lookup_limiter` (the lookup rate
limit; a LookupLimiter is made on first use), and for tests or unusual screens
`kiosk_rotate_seconds` and `kiosk_idle_seconds`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from display.charts import channel_bars
from display.context import Context
from display.domain import now_utc
from display.panels import (
    case_prefixes,
    county_rows,
    find_case,
    live_notices,
    normalize_case_no,
    open_cases,
    town_figures,
)
from display.settings import Town
from display.web import ctx_of, render

#: Seconds each panel stays before the next one; the stylesheet's progress bar agrees.
ROTATE_SECONDS = 15
#: After this long without a touch the screen clears a lookup and rotates again.
IDLE_SECONDS = 120
PARTS = ("glance", "figures", "channels", "cases", "notices")
VERSION_HEADER = "X-Yizheng-Version"


# --- lookup rate limit -----------------------------------------------------------------


@dataclass
class LookupLimiter:
    """A token bucket per client address, so nobody can walk the number space.

    In memory: a kiosk process forgets buckets on restart, which only ever lets a
    client look up a little more, never less.
    """

    rate: float = 10 / 60  # tokens per second: 10 a minute
    burst: float = 10
    max_clients: int = 10_000
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    def allow(self, client: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        allowed = tokens >= 1
        if allowed:
            tokens -= 1
        if len(self._buckets) >= self.max_clients and client not in self._buckets:
            self._forget_full(now)
        self._buckets[client] = (tokens, now)
        return allowed

    def retry_after(self, client: str) -> int:
        tokens, _ = self._buckets.get(client, (self.burst, 0.0))
        return max(1, int((1 - tokens) / self.rate) + 1)

    def _forget_full(self, now: float) -> None:
        """Drop the buckets that have refilled: forgetting them changes nothing."""
        for key, (tokens, last) in list(self._buckets.items()):
            if tokens + (now - last) * self.rate >= self.burst:
                del self._buckets[key]
        if len(self._buckets) >= self.max_clients:
            self._buckets.clear()


def lookup_limiter(ctx: Context) -> LookupLimiter:
    limiter = ctx.extra.get("kiosk_lookup_limiter")
    if not isinstance(limiter, LookupLimiter):
        limiter = LookupLimiter()
        ctx.extra["kiosk_lookup_limiter"] = limiter
    return limiter


# --- helpers ---------------------------------------------------------------------------


def _town(request: Request) -> Town | None:
    return ctx_of(request).settings.town(request.path_params["town"])


def _is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def _version(request: Request) -> str:
    version: str = request.app.state.templates.globals["asset_version"]()
    return version


def _fragment(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    """A fragment for htmx, carrying the deployment's version so screens reload
    themselves when templates or assets change."""
    resp = render(request, template, status_code=status_code, **context)
    resp.headers[VERSION_HEADER] = _version(request)
    resp.headers["cache-control"] = "no-store"
    return resp


async def _last_seq(ctx: Context) -> int:
    """Read *before* the snapshot: events after it are replayed to the page, so nothing
    falls between the snapshot and the live stream (a repeat only refreshes a panel)."""
    _, newest = await ctx.store.event_bounds()
    return newest


async def _part(ctx: Context, town: Town, part: str) -> dict[str, Any]:
    if part in ("glance", "figures", "channels"):
        figures = await town_figures(ctx, town.slug)
        return {"figures": figures, "channels": channel_bars(figures.total.channels)}
    if part == "cases":
        return {"cases": await open_cases(ctx, town.slug)}
    return {"notices": await live_notices(ctx, town.slug)}


def _not_found(request: Request) -> Response:
    return render(
        request, "kiosk/not_found.html", status_code=404, towns=ctx_of(request).settings.towns
    )


# --- town ------------------------------------------------------------------------------


async def town_page(request: Request) -> Response:
    ctx = ctx_of(request)
    town = _town(request)
    if town is None:
        return _not_found(request)
    last_seq = await _last_seq(ctx)
    figures = await town_figures(ctx, town.slug)
    return render(
        request,
        "kiosk/town.html",
        town=town,
        last_seq=last_seq,
        now=now_utc(),
        rotate_seconds=ctx.extra.get("kiosk_rotate_seconds", ROTATE_SECONDS),
        idle_seconds=ctx.extra.get("kiosk_idle_seconds", IDLE_SECONDS),
        figures=figures,
        channels=channel_bars(figures.total.channels),
        cases=await open_cases(ctx, town.slug),
        notices=await live_notices(ctx, town.slug),
        prefixes=await case_prefixes(ctx, town.slug),
        lookup=None,
        no="",
    )


async def town_partial(request: Request) -> Response:
    """Fragments the page swaps in when an event says their content changed."""
    ctx = ctx_of(request)
    town = _town(request)
    part = request.path_params["part"]
    if town is None or part not in PARTS:
        return Response("未找到", status_code=404, media_type="text/plain; charset=utf-8")
    return _fragment(
        request, f"kiosk/_{part}.html", town=town, now=now_utc(), **await _part(ctx, town, part)
    )


async def lookup(request: Request) -> Response:
    """`?no=LS2026-0012`: a case's public timeline. A whole page without JavaScript, the
    result fragment for htmx. Rate limited per client address."""
    ctx = ctx_of(request)
    town = _town(request)
    if town is None:
        return _not_found(request)
    raw = request.query_params.get("no", "")[:64]
    no = normalize_case_no(raw) if raw.strip() else None
    state, found, status = "empty", None, 200
    if raw.strip() and no is None:
        state, status = "invalid", 400
    elif no is not None:
        limiter = lookup_limiter(ctx)
        client = request.client.host if request.client else "unknown"
        if not limiter.allow(client):
            state, status = "limited", 429
        else:
            found = await find_case(ctx, no)
            state, status = ("found", 200) if found else ("unknown", 404)
    context: dict[str, Any] = {
        "town": town,
        "state": state,
        "lookup": found,
        "no": no or raw.strip(),
        "now": now_utc(),
    }
    if _is_htmx(request):
        resp = _fragment(request, "kiosk/_lookup.html", status_code=status, **context)
    else:
        resp = render(
            request,
            "kiosk/lookup.html",
            status_code=status,
            prefixes=await case_prefixes(ctx, town.slug),
            **context,
        )
    if status == 429:
        resp.headers["retry-after"] = str(
            lookup_limiter(ctx).retry_after(request.client.host if request.client else "unknown")
        )
    resp.headers["cache-control"] = "no-store"
    return resp


# --- county ----------------------------------------------------------------------------


async def county_page(request: Request) -> Response:
    ctx = ctx_of(request)
    last_seq = await _last_seq(ctx)
    return render(
        request,
        "kiosk/county.html",
        last_seq=last_seq,
        now=now_utc(),
        rows=await county_rows(ctx),
        figures=await town_figures(ctx, None),
    )


async def county_partial(request: Request) -> Response:
    ctx = ctx_of(request)
    return _fragment(
        request,
        "kiosk/_county.html",
        now=now_utc(),
        rows=await county_rows(ctx),
        figures=await town_figures(ctx, None),
    )


def routes() -> list[BaseRoute]:
    return [
        Route("/kiosk", county_page),
        Route("/kiosk/_county", county_partial),
        Route("/kiosk/{town}", town_page),
        Route("/kiosk/{town}/lookup", lookup),
        Route("/kiosk/{town}/_{part}", town_partial),
    ]
