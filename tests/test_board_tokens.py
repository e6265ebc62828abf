"""Board tokens: a board with a token is online only when the board itself asks."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from display.app import create_app
from display.settings import Settings
from tests.conftest import serve_app

BOARDS = [
    {
        "id": "gate",
        "town": "longshi",
        "kind": "led",
        "width": 64,
        "height": 16,
        "token": "gate-token-0123456789",
    },
    {"id": "open", "town": "longshi", "kind": "led", "width": 64, "height": 16},
]


async def test_token_marks_the_board_seen_and_a_wrong_one_is_refused(
    make_settings: Callable[..., Settings],
) -> None:
    app = create_app(make_settings(boards=BOARDS))
    async with serve_app(app) as (base, _), httpx.AsyncClient(timeout=10) as client:
        ctx = app.state.ctx
        # Anyone may look; without the token the board does not count as seen.
        r = await client.get(f"{base}/led/gate/frame.png")
        assert r.status_code == 200
        assert "gate" not in ctx.last_seen
        r = await client.get(f"{base}/led/gate/text", params={"token": "wrong"})
        assert r.status_code == 401
        assert "gate" not in ctx.last_seen
        r = await client.get(
            f"{base}/led/gate/text", headers={"authorization": "Bearer gate-token-0123456789"}
        )
        assert r.status_code == 200
        assert "gate" in ctx.last_seen
        # The player page passes its token on to the requests it makes.
        page = await client.get(f"{base}/led/gate", params={"token": "gate-token-0123456789"})
        assert "events?token=gate-token-0123456789" in page.text
        plain = await client.get(f"{base}/led/gate")
        assert "token=" not in plain.text
        # A board without a token counts every request, as before.
        await client.get(f"{base}/led/open/frame.png")
        assert "open" in ctx.last_seen
        # The token is stored only as a digest.
        rows = {row.id: row for row in await ctx.store.boards()}
        assert rows["gate"].token_hash and "gate-token" not in rows["gate"].token_hash


async def test_board_stream_checks_the_token_and_https_adds_hsts(
    make_settings: Callable[..., Settings],
) -> None:
    app = create_app(make_settings(boards=BOARDS, https=True))
    async with serve_app(app) as (base, _), httpx.AsyncClient(timeout=10) as client:
        ctx = app.state.ctx
        r = await client.get(f"{base}/led/gate/events", params={"token": "wrong"})
        assert r.status_code == 401
        async with client.stream("GET", f"{base}/led/gate/events") as r:
            assert r.status_code == 200
            assert r.headers["strict-transport-security"].startswith("max-age=")
        assert "gate" not in ctx.last_seen
        async with client.stream("GET", f"{base}/events") as r:
            assert r.headers["strict-transport-security"].startswith("max-age=")
            assert r.headers["x-frame-options"] == "DENY"
        async with client.stream(
            "GET", f"{base}/led/gate/events", params={"token": "gate-token-0123456789"}
        ) as r:
            assert r.status_code == 200
        assert "gate" in ctx.last_seen
