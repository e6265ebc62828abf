"""Kiosk pages: a town's screen and the county overview. Thin: gather, render."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from display.panels import live_notices, open_cases, open_trend, town_figures
from display.web import ctx_of, render


async def town_page(request: Request) -> Response:
    ctx = ctx_of(request)
    town = ctx.settings.town(request.path_params["town"])
    if town is None:
        return render(request, "kiosk/not_found.html", status_code=404,
                      towns=ctx.settings.towns)
    return render(
        request, "kiosk/town.html",
        town=town,
        figures=await town_figures(ctx, town.slug),
        cases=await open_cases(ctx, town.slug),
        notices=await live_notices(ctx, town.slug),
    )


async def town_partial(request: Request) -> Response:
    """Fragments the page swaps in when an event says its content changed."""
    ctx = ctx_of(request)
    town = ctx.settings.town(request.path_params["town"])
    part = request.path_params["part"]
    if town is None or part not in ("figures", "cases", "notices"):
        return Response("未找到", status_code=404, media_type="text/plain; charset=utf-8")
    context = {"town": town}
    if part == "figures":
        context["figures"] = await town_figures(ctx, town.slug)
    elif part == "cases":
        context["cases"] = await open_cases(ctx, town.slug)
    else:
        context["notices"] = await live_notices(ctx, town.slug)
    return render(request, f"kiosk/_{part}.html", **context)


async def county_page(request: Request) -> Response:
    ctx = ctx_of(request)
    rows = []
    for town in ctx.settings.towns:
        rows.append((town, (await town_figures(ctx, town.slug)).total,
                     await open_trend(ctx, town.slug)))
    return render(request, "kiosk/county.html", rows=rows,
                  figures=await town_figures(ctx, None))


def routes() -> list[BaseRoute]:
    return [
        Route("/kiosk", county_page),
        Route("/kiosk/{town}", town_page),
        Route("/kiosk/{town}/_{part}", town_partial),
    ]
