"""Public JSON API, the public SSE stream and health. Thin: parse, call, render."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from display.domain import STAGES, now_utc
from display.openapi import OPENAPI
from display.panels import town_figures
from display.web import ctx_of, error

MAX_LIMIT = 500


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(
        data,
        status_code=status,
        headers={"cache-control": "no-cache", "access-control-allow-origin": "*"},
    )


def town_param(request: Request) -> tuple[str | None, Response | None]:
    raw = request.query_params.get("town")
    if raw in (None, "", "all"):
        return None, None
    town = ctx_of(request).settings.town(raw)
    if town is None:
        return None, error(404, "未找到该乡镇")
    return town.slug, None


def _int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or len(raw) > 9:
        return None
    value = int(raw)
    return value if lo <= value <= hi else None


async def cases(request: Request) -> Response:
    ctx = ctx_of(request)
    town, err = town_param(request)
    if err:
        return err
    stage = request.query_params.get("stage") or None
    if stage is not None and stage not in STAGES and stage != "open":
        return error(400, f"stage 参数无效，可选：{', '.join(STAGES)}, open")
    limit = _int_param(request, "limit", 100, 1, MAX_LIMIT)
    offset = _int_param(request, "offset", 0, 0, 10_000_000)
    if limit is None or offset is None:
        return error(400, f"limit 须为 1–{MAX_LIMIT} 的整数，offset 须为非负整数")
    rows = await ctx.store.list_cases(
        town=town,
        stage=None if stage == "open" else stage,
        open_only=stage == "open",
        limit=limit,
        offset=offset,
    )
    return _json(
        {"cases": [c.to_json(ctx.days_left(c)) for c in rows], "limit": limit, "offset": offset}
    )


async def case(request: Request) -> Response:
    ctx = ctx_of(request)
    no = request.path_params["no"]
    if len(no) > 64:
        return error(404, "未找到该编号的诉求")
    c = await ctx.store.get_case(no)
    if c is None:
        return error(404, "未找到该编号的诉求")
    timeline = await ctx.store.timeline(no)
    if c.sensitive:
        # Notes are free text; a sensitive case shows stages and dates only.
        timeline = [dataclasses.replace(t, note=None) for t in timeline]
    return _json({**c.to_json(ctx.days_left(c)), "timeline": [t.to_json() for t in timeline]})


async def stats(request: Request) -> Response:
    ctx = ctx_of(request)
    town, err = town_param(request)
    if err:
        return err
    f = await town_figures(ctx, town)
    return _json(
        {
            **f.total.to_json(),
            "this_year": f.year.to_json(),
            "this_month": f.month.to_json(),
            "stale_since": f.stale_since.isoformat() if f.stale_since else None,
        }
    )


async def boards(request: Request) -> Response:
    ctx = ctx_of(request)
    now = now_utc()
    # Seen within three heartbeats, or holding its event stream open right now.
    recent = timedelta(seconds=max(90.0, 3 * ctx.settings.sse.heartbeat))
    out = []
    for row in await ctx.store.boards():
        seen = ctx.last_seen.get(row.id) or row.last_seen_at
        # A board with a token proves itself by it (its stream marks it seen at every
        # heartbeat); an open stream alone may be anyone looking at its page.
        streaming = row.token_hash is None and ctx.hub.count(f"board:{row.id}") > 0
        out.append(
            {
                "id": row.id,
                "town": row.town,
                "kind": row.profile.get("kind"),
                "width": row.profile.get("width"),
                "height": row.profile.get("height"),
                "color": row.profile.get("color"),
                "last_seen": seen.isoformat() if seen else None,
                "online": streaming or bool(seen and now - seen < recent),
            }
        )
    return _json({"boards": out})


async def openapi(request: Request) -> Response:
    return _json(OPENAPI)


async def healthz(request: Request) -> Response:
    ctx = ctx_of(request)
    try:
        _oldest, newest = await ctx.store.event_bounds()
    except Exception:
        return _json({"status": "error", "database": "unreachable"}, 503)
    return _json(
        {
            "status": "ok",
            "events": newest,
            "tail": ctx.tailer.last_seq,
            "subscribers": ctx.hub.count(),
            "feed_leader": bool(ctx.extra.get("feed_leader", False)),
        }
    )


def routes() -> list[BaseRoute]:
    return [
        Route("/api/v1/cases", cases),
        Route("/api/v1/cases/{no:path}", case),
        Route("/api/v1/stats", stats),
        Route("/api/v1/boards", boards),
        Route("/api/openapi.json", openapi),
        Route("/healthz", healthz),
    ]
