"""HTTP plumbing shared by the views: templates, asset URLs, security headers, errors."""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from display.domain import SHANGHAI

if TYPE_CHECKING:
    from display.context import Context

#: `display/templates` links to the checkout's top-level `templates/`; a wheel
#: carries a copy (package data), so an installed service needs no checkout.
TEMPLATES = Path(__file__).resolve().parent / "templates"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


def security_headers(https: bool) -> list[tuple[bytes, bytes]]:
    """The headers every response carries (the SSE fast path writes them itself)."""
    headers = [
        (b"content-security-policy", CSP.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"same-origin"),
    ]
    if https:
        headers.append((b"strict-transport-security", b"max-age=31536000"))
    return headers


class SecurityHeadersMiddleware:
    """CSP without inline script, no framing, nosniff, on every response."""

    def __init__(self, app: ASGIApp, https: bool = False) -> None:
        self.app = app
        self.https = https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        extra = security_headers(self.https)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in extra if k not in names]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class AssetUrls:
    """`/assets/<path>?v=<content hash>` so screens fetch a new file after a deployment."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._cache: dict[str, tuple[float, str]] = {}

    def __call__(self, path: str) -> str:
        file = self.root / path
        try:
            mtime = file.stat().st_mtime
        except OSError:
            return f"/assets/{path}"
        cached = self._cache.get(path)
        if cached is None or cached[0] != mtime:
            digest = hashlib.sha256(file.read_bytes()).hexdigest()[:12]
            cached = (mtime, digest)
            self._cache[path] = cached
        return f"/assets/{path}?v={cached[1]}"

    def version(self) -> str:
        """One hash over every asset and template: changes on any deployment."""
        h = hashlib.sha256()
        for base in (self.root, TEMPLATES):
            for f in sorted(base.rglob("*")):
                if f.is_file() and "fonts" not in f.parts:
                    st = f.stat()
                    h.update(f"{f}:{st.st_size}:{st.st_mtime_ns}".encode())
        return h.hexdigest()[:12]


def _local_time(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    if value is None:
        return ""
    return value.astimezone(SHANGHAI).strftime(fmt)


def _cn_date(value: date | datetime | None) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = value.astimezone(SHANGHAI).date()
    return f"{value.year}年{value.month}月{value.day}日"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def templates_for(ctx: Context, assets: Path) -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "xml", "svg"], default=True),
        auto_reload=True,
        enable_async=False,
    )
    urls = AssetUrls(assets)
    env.globals["asset"] = urls
    env.globals["asset_version"] = urls.version
    env.globals["county_name"] = ctx.settings.county_name
    env.filters["local_time"] = _local_time
    env.filters["cn_date"] = _cn_date
    env.filters["pct"] = _pct
    return env


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    env: Environment = request.app.state.templates
    html = env.get_template(template).render(request=request, **context)
    return HTMLResponse(html, status_code=status_code)


def error(status: int, message: str) -> JSONResponse:
    """A JSON error whose message is safe to show (Simplified Chinese, no personal data)."""
    return JSONResponse({"error": message}, status_code=status)


def ctx_of(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


def not_modified(request: Request, etag: str) -> Response | None:
    inm = request.headers.get("if-none-match")
    if inm and etag in {t.strip() for t in inm.split(",")}:
        return Response(status_code=304, headers={"etag": etag})
    return None
