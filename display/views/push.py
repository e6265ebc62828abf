"""`POST /feeds/{name}/push`: signed pushes from a case system."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from display.web import ctx_of, error
from feeds.webhook import (
    MAX_BODY,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    PushError,
    ReplayGuard,
    SignatureError,
    parse_push,
    verify,
)


async def _read_body(request: Request, limit: int) -> bytes | None:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


async def push(request: Request) -> Response:
    ctx = ctx_of(request)
    name = request.path_params["name"]
    feed = ctx.settings.feed(name)
    if feed is None or feed.kind != "webhook" or not feed.secret:
        return error(404, "未找到该推送数据源")
    body = await _read_body(request, MAX_BODY)
    if body is None:
        return error(413, f"请求体过大（上限 {MAX_BODY // (1024 * 1024)} MB）")
    guard: ReplayGuard = ctx.extra.setdefault(f"replay:{name}", ReplayGuard())
    try:
        verify(
            feed.secret,
            request.headers.get(TIMESTAMP_HEADER),
            request.headers.get(SIGNATURE_HEADER),
            body,
            now=time.time(),
            guard=guard,
        )
    except SignatureError as e:
        return error(401, f"签名校验失败：{e}")
    try:
        batch = parse_push(body)
    except PushError as e:
        return error(400, f"请求格式错误：{e}")
    counts = await ctx.ingestor.ingest(name, batch)
    invalid = [{"source_id": sid, "reason": reason} for sid, reason in counts.reasons]
    accepted = counts.new + counts.changed + counts.unchanged + counts.withdrawn
    # Some records stored: 202, listing the rest. Every record refused: 400.
    status = 400 if invalid and not accepted else 202
    return JSONResponse(
        {"accepted": accepted, **counts.as_dict(), "invalid": invalid}, status_code=status
    )


def routes() -> list[BaseRoute]:
    return [Route("/feeds/{name}/push", push, methods=["POST"])]
