"""The LED player page in a real headless chromium: pixel-exact, CSP-clean, live."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from PIL import Image, ImageChops
from playwright.async_api import Browser, expect

from display.app import create_app
from display.settings import Settings
from tests.browser import chromium_browser, open_page
from tests.conftest import LiveServer, case_record, push_records, serve_app

__all__ = ["chromium_browser"]

pytestmark = pytest.mark.browser

BOARDS = [
    {
        "id": "gate",
        "town": "longshi",
        "kind": "led",
        "width": 128,
        "height": 32,
        "color": "mono",
        "page_seconds": 120,
    },
    {
        "id": "wall",
        "town": "longshi",
        "kind": "led",
        "width": 256,
        "height": 128,
        "color": "rgb",
        "page_seconds": 120,
    },
]


@pytest.fixture
async def server(make_settings: Callable[..., Settings]) -> AsyncIterator[LiveServer]:
    app = create_app(make_settings(boards=BOARDS))
    async with serve_app(app) as (url, srv):
        yield LiveServer(app, url, srv)


@pytest.mark.parametrize("board", ["gate", "wall"])
async def test_player_shows_the_frame_pixel_for_pixel(
    server: LiveServer, chromium_browser: Browser, board: str
) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        doc = (await client.get(f"{server.url}/led/{board}/pages.json")).json()
        png = (await client.get(f"{server.url}/led/{board}/frame.png?page=0")).content
    w, h = doc["width"], doc["height"]
    async with open_page(chromium_browser, viewport=(w, h)) as probe:
        page = probe.page
        await page.goto(f"{server.url}/led/{board}")
        img = page.locator("#led")
        await expect(img).to_have_attribute("width", str(w))
        await page.wait_for_function(
            "() => { const i = document.getElementById('led');"
            " return i.complete && i.naturalWidth > 0; }"
        )
        shot = Image.open(io.BytesIO(await page.screenshot())).convert("RGB")
        expected = Image.open(io.BytesIO(png)).convert("RGB")
        assert shot.size == (w, h)
        # The GIF's first frame is page 0, shown 1:1 with no smoothing.
        assert ImageChops.difference(shot, expected).getbbox() is None
        probe.assert_clean()


async def test_player_swaps_in_the_new_version(
    server: LiveServer, chromium_browser: Browser
) -> None:
    async with open_page(chromium_browser, viewport=(128, 32)) as probe:
        page = probe.page
        await page.goto(f"{server.url}/led/gate")
        first = await page.locator("#led").get_attribute("src")
        assert first is not None
        async with httpx.AsyncClient(timeout=10) as client:
            r = await push_records(client, server.url, [case_record("b1")])
            assert r.status_code < 300
            await expect(page.locator("#led")).not_to_have_attribute("src", first, timeout=10_000)
            doc = json.loads((await client.get(f"{server.url}/led/gate/pages.json")).text)
        src = await page.locator("#led").get_attribute("src")
        assert src is not None and src.endswith(doc["version"])
        probe.assert_clean()
