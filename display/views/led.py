"""LED board outputs: frames, text, pages.json, the HTML player and the frame stream.

Thin: every handler finds the board, asks the frame cache (which renders only
when content changed) and sends bytes with an ETag, answering 304 when the
board already has them. See docs/led.md for the formats.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from display.domain import now_utc
from display.led.cache import FrameCache
from display.led.encode import RAW_FORMATS
from display.led.render import LedPage, RenderedBoard, page_at
from display.settings import Board
from display.web import render

log = logging.getLogger("yizheng.led")

NO_CACHE = "no-cache"
#: Boards up to this many pixels (128x64) that are mono get mono1 frames inline in SSE.
INLINE_MAX_PIXELS = 128 * 64
HEARTBEAT_SECONDS = 15.0


class BoardProblem(Exception):
    """A request for a board's output that gets an error answer (status, message)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers={"cache-control": NO_CACHE})


def presented_token(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return request.query_params.get("token") or None


@dataclass(frozen=True)
class BoardRequest:
    board: Board
    frames: FrameCache
    rendered: RenderedBoard
    #: None: the board has no token; True: the request carried it; False: it did not.
    token_ok: bool | None


async def resolve_board(request: Request) -> BoardRequest:
    """The board a request for an LED output (or the board's stream) is about, its
    rendering, and whether the board itself asked. Raises BoardProblem."""
    ctx = request.app.state.ctx
    board: Board | None = ctx.board(request.path_params["board"])
    if board is None or board.kind != "led":
        raise BoardProblem(404, "未找到该显示屏")
    frames: FrameCache | None = getattr(ctx, "frames", None)
    if frames is None:
        raise BoardProblem(503, "显示屏服务尚未启动，请稍后再试")
    # A board with a token is "online" only when the board itself asks (its token in
    # `Authorization: Bearer` or `?token=`, for controllers that cannot set headers);
    # anyone may still look at its public pages. A wrong token is refused.
    token = presented_token(request)
    ok = ctx.board_token_ok(board.id, token)
    if ok is False and token:
        raise BoardProblem(401, "显示屏令牌无效")
    if ok is not False:
        ctx.board_seen(board.id)
    try:
        rendered = await frames.get(board.id)
    except Exception:
        log.exception("LED board %s: first render failed", board.id)
        raise BoardProblem(503, "暂时无法生成画面，请稍后再试") from None
    return BoardRequest(board, frames, rendered, ok)


async def _board(request: Request) -> tuple[Board, FrameCache, RenderedBoard]:
    r = await resolve_board(request)
    return r.board, r.frames, r.rendered


def _page(request: Request, rendered: RenderedBoard) -> LedPage:
    raw = request.query_params.get("page")
    if raw is None or raw == "":
        return page_at(rendered, now_utc())
    n = len(rendered.pages)
    if not raw.isdigit() or int(raw) >= n:
        raise BoardProblem(400, f"页码无效：page 应为 0 到 {n - 1} 之间的整数")
    return rendered.pages[int(raw)]


def _fresh(request: Request, etag: str) -> bool:
    """True when the client already holds `etag` (If-None-Match)."""
    inm = request.headers.get("if-none-match")
    if not inm:
        return False
    tags = {t.strip().removeprefix("W/") for t in inm.split(",")}
    return "*" in tags or etag in tags


def _send(
    request: Request,
    body: bytes | None,
    media_type: str,
    etag: str,
    extra: dict[str, str] | None = None,
) -> Response:
    headers = {"etag": etag, "cache-control": NO_CACHE, **(extra or {})}
    if body is None or _fresh(request, etag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)


def _page_headers(rendered: RenderedBoard, page: LedPage) -> dict[str, str]:
    return {
        "x-led-version": rendered.version,
        "x-led-page": str(page.index),
        "x-led-pages": str(len(rendered.pages)),
        "x-led-seconds": f"{page.seconds:g}",
        "x-led-brightness": str(rendered.brightness),
    }


def _guard(handler: Any) -> Any:
    async def wrapped(request: Request) -> Response:
        try:
            response: Response = await handler(request)
            return response
        except BoardProblem as p:
            return _error(p.status, p.message)

    wrapped.__name__ = handler.__name__
    return wrapped


@_guard
async def frame_png(request: Request) -> Response:
    _, frames, rendered = await _board(request)
    page = _page(request, rendered)
    body = frames.encoded(rendered.board_id, page.index, "png")
    return _send(request, body, "image/png", f'"{page.etag}.png"', _page_headers(rendered, page))


@_guard
async def frame_gif(request: Request) -> Response:
    _, frames, rendered = await _board(request)
    etag = f'"{rendered.version}.gif"'
    # The animation is the one output worth encoding off the event loop.
    body = (
        None
        if _fresh(request, etag)
        else await asyncio.to_thread(frames.encoded, rendered.board_id, 0, "gif")
    )
    return _send(
        request,
        body,
        "image/gif",
        etag,
        {"x-led-version": rendered.version, "x-led-pages": str(len(rendered.pages))},
    )


@_guard
async def frame_bin(request: Request) -> Response:
    board, frames, rendered = await _board(request)
    fmt = request.query_params.get("format") or ("mono1" if board.color == "mono" else "rgb565")
    if fmt not in RAW_FORMATS:
        raise BoardProblem(400, "格式无效：format 应为 mono1、rgb565 或 rgb888")
    page = _page(request, rendered)
    body = frames.encoded(rendered.board_id, page.index, fmt)
    headers = _page_headers(rendered, page)
    headers.update(
        {"x-led-width": str(board.width), "x-led-height": str(board.height), "x-led-format": fmt}
    )
    return _send(request, body, "application/octet-stream", f'"{page.etag}.{fmt}"', headers)


@_guard
async def page_text(request: Request) -> Response:
    _, frames, rendered = await _board(request)
    page = _page(request, rendered)
    body = frames.encoded(rendered.board_id, page.index, "text")
    return _send(
        request,
        body,
        "text/plain; charset=utf-8",
        f'"{page.etag}.txt"',
        _page_headers(rendered, page),
    )


def pages_doc(board: Board, rendered: RenderedBoard) -> dict[str, Any]:
    """pages.json: everything a polling controller needs to cycle the pages itself."""
    base = f"/led/{board.id}"
    return {
        "board": board.id,
        "version": rendered.version,
        "width": rendered.width,
        "height": rendered.height,
        "color": rendered.color,
        "font_size": board.font_size,
        # Mono frames are 1-bit: a mono controller applies this to its panel
        # (PWM/OE duty, or its own brightness command); rgb/dual frames already
        # have it applied to the pixel values.
        "brightness": rendered.brightness,
        "cycle_start": rendered.rendered_at.isoformat() if rendered.rendered_at else None,
        "total_seconds": rendered.total_seconds,
        "pages": [
            {
                "index": p.index,
                "seconds": p.seconds,
                "scroll": p.scroll,
                "scroll_speed": p.marquee.speed if p.marquee else None,
                "etag": p.etag,
                "text": p.text,
                "png": f"{base}/frame.png?page={p.index}",
            }
            for p in rendered.pages
        ],
    }


@_guard
async def pages_json(request: Request) -> Response:
    board, _frames, rendered = await _board(request)
    body = json.dumps(pages_doc(board, rendered), ensure_ascii=False).encode("utf-8")
    return _send(request, body, "application/json", f'"{rendered.version}.json"')


@_guard
async def player(request: Request) -> Response:
    asked = await resolve_board(request)
    board, rendered = asked.board, asked.rendered
    env = getattr(request.app.state, "templates", None)
    assets = env.globals.get("asset_version") if env is not None else None
    etag = f'"{rendered.version}-{assets() if callable(assets) else "0"}.html"'
    if _fresh(request, etag):
        return _send(request, None, "text/html", etag)
    page = page_at(rendered, now_utc())
    # A player opened with its token keeps sending it, so the board shows as online.
    token = presented_token(request) if asked.token_ok else None
    response = render(
        request, "led/board.html", board=board, rendered=rendered, page=page, token=token
    )
    response.headers["etag"] = etag
    response.headers["cache-control"] = NO_CACHE
    return response


def frame_event(rendered: RenderedBoard) -> dict[str, Any]:
    """The payload of an SSE `frame` event: version and page ETags; for mono boards
    up to 128x64 also each page's mono1 bytes, base64, so a microcontroller needs
    only this one connection."""
    from display.led.encode import to_mono1

    inline = rendered.color == "mono" and rendered.width * rendered.height <= INLINE_MAX_PIXELS
    doc: dict[str, Any] = {
        "board": rendered.board_id,
        "version": rendered.version,
        "width": rendered.width,
        "height": rendered.height,
        "color": rendered.color,
        "brightness": rendered.brightness,
        "cycle_start": rendered.rendered_at.isoformat() if rendered.rendered_at else None,
        "pages": [
            {"index": p.index, "etag": p.etag, "seconds": p.seconds, "scroll": p.scroll}
            for p in rendered.pages
        ],
    }
    if inline:
        for entry, p in zip(doc["pages"], rendered.pages, strict=True):
            entry["mono1"] = base64.b64encode(to_mono1(p.image)).decode("ascii")
    return doc


# The board's SSE stream (/led/{board}/events) lives in display/views/stream.py with
# the other streams; it sends frame_event() payloads.


def routes() -> list[BaseRoute]:
    return [
        Route("/led/{board}", player),
        Route("/led/{board}/frame.png", frame_png),
        Route("/led/{board}/frame.gif", frame_gif),
        Route("/led/{board}/frame.bin", frame_bin),
        Route("/led/{board}/pages.json", pages_json),
        Route("/led/{board}/text", page_text),
    ]
