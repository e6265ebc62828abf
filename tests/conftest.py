"""Shared fixtures: real SQLite files, real servers on loopback ports.

`make_settings` builds validated Settings the way the TOML file would;
`serve_app` runs the real application under uvicorn on an ephemeral port;
`push_records` signs and posts records through the real webhook endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from display.app import create_app
from display.settings import Settings, parse
from feeds import webhook

T = TypeVar("T")

PUSH_SECRET = "test-push-secret-0123456789"

TOWNS = [
    {"slug": "longshi", "name": "龙市镇", "first_reply_days": 14},
    {"slug": "huangjia", "name": "黄家镇"},
    {"slug": "shuangfeng", "name": "双凤镇"},
    {"slug": "xiangshi", "name": "响石镇"},
    {"slug": "shinian", "name": "石碾镇"},
]
#: Every way an adapter may name those towns (slug or name) -> slug.
TOWN_LOOKUP = {key: t["slug"] for t in TOWNS for key in (t["slug"], t["name"])}


def open311_feed(base: str, interval: float, **more: object) -> dict[str, object]:
    """The `hotline` feed: Open311 GeoReport v2 at `{base}/open311/v2` (the simulator's
    path, or a test server's)."""
    return {
        "name": "hotline",
        "kind": "open311",
        "url": f"{base}/open311/v2",
        "interval": interval,
        **more,
    }


def settings_dict(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "database": {"url": f"sqlite:///{tmp_path / 'yizheng.db'}"},
        "secret_key": "test-secret-key-not-for-production",
        "deadlines": {"consult_workdays": 5, "general_workdays": 30},
        "towns": TOWNS,
        "boards": [
            {
                "id": "longshi-gate",
                "town": "longshi",
                "kind": "led",
                "width": 128,
                "height": 32,
                "color": "mono",
            },
            {
                "id": "longshi-hall",
                "town": "longshi",
                "kind": "kiosk",
                "width": 1920,
                "height": 1080,
            },
        ],
        "feeds": [{"name": "push", "kind": "webhook", "secret": PUSH_SECRET}],
        "sse": {"heartbeat": 1.0, "poll_interval": 0.2},
    }
    data.update(overrides)
    return data


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        return parse(settings_dict(tmp_path, **overrides))

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class LiveServer:
    app: Starlette
    url: str
    server: uvicorn.Server

    @property
    def ctx(self) -> Any:
        return self.app.state.ctx


@contextlib.asynccontextmanager
async def serve_app(app: Any, port: int | None = None) -> AsyncIterator[tuple[str, uvicorn.Server]]:
    """Serve an ASGI app with uvicorn on 127.0.0.1 for the duration of the block."""
    port = port or free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="auto",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 20
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("server exited before starting")
        if time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)


@pytest.fixture
async def live(settings: Settings) -> AsyncIterator[LiveServer]:
    app = create_app(settings)
    async with serve_app(app) as (url, server):
        yield LiveServer(app, url, server)


def signed_headers(
    body: bytes, secret: str = PUSH_SECRET, timestamp: int | None = None
) -> dict[str, str]:
    return webhook.signed_headers(
        secret, int(time.time()) if timestamp is None else timestamp, body
    )


_last_push_ts = [0]


async def push_records(
    client: httpx.AsyncClient,
    base: str,
    records: Sequence[Mapping[str, Any]],
    feed: str = "push",
    secret: str = PUSH_SECRET,
) -> httpx.Response:
    """Sign and post records. Each call gets its own timestamp, so pushing the same
    body twice is two pushes, not a replayed signature."""
    ts = max(int(time.time()), _last_push_ts[0] + 1)
    _last_push_ts[0] = ts
    body = json.dumps({"records": list(records)}, ensure_ascii=False).encode()
    return await client.post(
        f"{base}/feeds/{feed}/push", content=body, headers=signed_headers(body, secret, ts)
    )


def case_record(source_id: str, **fields: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "source_id": source_id,
        "town": "longshi",
        "village": "银杏村",
        "kind": "general",
        "category": "道路交通",
        "channel": "12345热线",
        "summary": "反映银杏村3组道路破损，雨天积水",
        "department": "镇规划建设办",
        "status": "registered",
        "received_at": "2026-11-20T09:30:00+08:00",
    }
    rec.update(fields)
    return rec


async def read_sse(
    client: httpx.AsyncClient,
    url: str,
    *,
    until: Callable[[list[dict[str, str]]], bool],
    headers: Mapping[str, str] | None = None,
    limit: float = 15.0,
) -> list[dict[str, str]]:
    """Read SSE events from a real server until `until(events)` holds (or time out)."""
    events: list[dict[str, str]] = []

    async def run() -> None:
        async with client.stream("GET", url, headers=dict(headers or {})) as resp:
            assert resp.status_code == 200, resp.status_code
            current: dict[str, str] = {}
            async for line in resp.aiter_lines():
                if line == "":
                    if current:
                        events.append(current)
                        current = {}
                        if until(events):
                            return
                    continue
                if line.startswith(":"):
                    current.setdefault("_comment", line)
                    continue
                key, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                current[key] = current[key] + "\n" + value if key in current else value

    await asyncio.wait_for(run(), limit)
    return events


async def all_cases(client: httpx.AsyncClient, base: str) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = (await client.get(f"{base}/api/v1/cases?limit=500")).json()[
        "cases"
    ]
    return cases


async def poll_until(
    fetch: Callable[[], Awaitable[T]],
    ok: Callable[[T], bool],
    *,
    tries: int = 100,
    delay: float = 0.1,
) -> T:
    """Call `fetch` until `ok(result)` (a feed's first pull, a case arriving); the last
    result either way, for the caller's own assertions."""
    result = await fetch()
    for _ in range(tries):
        if ok(result):
            break
        await asyncio.sleep(delay)
        result = await fetch()
    return result


def chromium_path() -> str | None:
    path = os.environ.get("YIZHENG_CHROMIUM", "/usr/bin/chromium")
    return path if Path(path).exists() else None


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI (YIZHENG_CI=1) a skipped test is a failure: CI has every dependency."""
    if os.environ.get("YIZHENG_CI") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped and session.exitstatus == 0:
        print(f"\nyizheng CI: {skipped} test(s) skipped; nothing may skip in CI")
        session.exitstatus = 1


def require_in_ci(reason: str) -> None:
    """Skip with a reason locally; fail in CI, where every dependency must be present."""
    if os.environ.get("YIZHENG_CI") == "1":
        pytest.fail(f"{reason} — CI must provide it (YIZHENG_CI=1)")
    pytest.skip(reason)
