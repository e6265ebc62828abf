"""LED HTTP outputs on a real server: ETags and 304s, errors, raw frames, SSE and the client."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageChops

from display.app import create_app
from display.led.client import led_client
from display.led.encode import decode_raw, from_mono1, to_rgb565
from display.settings import Settings
from tests.conftest import LiveServer, case_record, push_records, read_sse, serve_app

BOARDS = [
    {
        "id": "longshi-gate",
        "town": "longshi",
        "kind": "led",
        "width": 128,
        "height": 32,
        "color": "mono",
        "page_seconds": 3,
    },
    {
        "id": "longshi-rgb",
        "town": "longshi",
        "kind": "led",
        "width": 256,
        "height": 128,
        "color": "rgb",
    },
    {
        "id": "huangjia-p10",
        "town": "huangjia",
        "kind": "led",
        "width": 64,
        "height": 16,
        "color": "dual",
        "font_size": 12,
    },
    {"id": "longshi-hall", "town": "longshi", "kind": "kiosk", "width": 1920, "height": 1080},
]
NAME, PHONE = "王小明", "13812345678"


@pytest.fixture
async def server(make_settings: Callable[..., Settings]) -> AsyncIterator[LiveServer]:
    app = create_app(make_settings(boards=BOARDS))
    async with serve_app(app) as (url, srv):
        live = LiveServer(app, url, srv)
        async with httpx.AsyncClient(timeout=10) as client:
            r = await push_records(
                client,
                url,
                [
                    case_record(
                        "c1",
                        summary=f"{NAME}反映村道路灯不亮，电话{PHONE}",
                        requester_name=NAME,
                        requester_phone=PHONE,
                    ),
                    case_record("c2", category="环境卫生", status="assigned"),
                ],
            )
            assert r.status_code < 300, r.text
        yield live


def as_565(img: Image.Image) -> Image.Image:
    """The image as an rgb565 panel shows it."""
    rgb = img.convert("RGB")
    return decode_raw(to_rgb565(rgb), "rgb565", rgb.width, rgb.height)


def same_pixels(a: Image.Image, b: Image.Image) -> bool:
    return (
        a.size == b.size
        and ImageChops.difference(a.convert("RGB"), b.convert("RGB")).getbbox() is None
    )


OUTPUTS = [
    ("frame.png?page=0", "image/png"),
    ("frame.png", "image/png"),
    ("frame.gif", "image/gif"),
    ("frame.bin?format=mono1&page=0", "application/octet-stream"),
    ("frame.bin?format=rgb565&page=1", "application/octet-stream"),
    ("frame.bin?format=rgb888", "application/octet-stream"),
    ("pages.json", "application/json"),
    ("text", "text/plain; charset=utf-8"),
    ("", "text/html; charset=utf-8"),
]


@pytest.mark.parametrize(("path", "media_type"), OUTPUTS)
async def test_every_output_has_etag_and_304(
    server: LiveServer, path: str, media_type: str
) -> None:
    url = f"{server.url}/led/longshi-gate" + (f"/{path}" if path else "")
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.get(url)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == media_type
        assert r.headers["cache-control"] == "no-cache"
        etag = r.headers["etag"]
        assert etag.startswith('"') and etag.endswith('"')
        assert r.content
        again = await client.get(url, headers={"if-none-match": etag})
        assert again.status_code == 304 and again.content == b""
        assert again.headers["etag"] == etag
        other = await client.get(url, headers={"if-none-match": '"something-else"'})
        assert other.status_code == 200


async def test_unknown_board_and_kiosk_are_404_json(server: LiveServer) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        for board in ("nope", "longshi-hall"):
            for suffix in ("/frame.png", "/text", "/pages.json", "", "/frame.bin"):
                r = await client.get(f"{server.url}/led/{board}{suffix}")
                assert r.status_code == 404
                assert r.json() == {"error": "未找到该显示屏"}


@pytest.mark.parametrize("query", ["page=99", "page=-1", "page=abc", "format=bmp"])
async def test_bad_page_or_format_is_400(server: LiveServer, query: str) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.get(f"{server.url}/led/longshi-gate/frame.bin?{query}")
        assert r.status_code == 400
        message = r.json()["error"]
        assert ("页码无效" in message) if "page" in query else ("格式无效" in message)


@pytest.mark.parametrize("board", ["longshi-gate", "longshi-rgb", "huangjia-p10"])
async def test_raw_frames_match_the_png(server: LiveServer, board: str) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        doc = (await client.get(f"{server.url}/led/{board}/pages.json")).json()
        w, h = doc["width"], doc["height"]
        for page in doc["pages"][:3]:
            png = Image.open(
                io.BytesIO(
                    (
                        await client.get(f"{server.url}/led/{board}/frame.png?page={page['index']}")
                    ).content
                )
            )
            assert png.size == (w, h)
            for fmt in ("mono1", "rgb565", "rgb888"):
                r = await client.get(
                    f"{server.url}/led/{board}/frame.bin",
                    params={"format": fmt, "page": page["index"]},
                )
                assert r.headers["x-led-width"] == str(w)
                img = decode_raw(r.content, fmt, w, h)
                if fmt == "mono1":
                    # Lit = any channel on (a dimmed blue is lit, though its luma rounds to 0).
                    r_, g_, b_ = png.convert("RGB").split()
                    lit = ImageChops.lighter(ImageChops.lighter(r_, g_), b_).point(
                        [0] + [255] * 255
                    )
                    assert same_pixels(img, lit)
                elif fmt == "rgb888":
                    assert same_pixels(img, png)
                else:
                    # rgb565 keeps 5-6-5 bits: exactly the PNG's pixels at that depth (at
                    # night a dimmed board's colours are not 0/255 and lose their low bits).
                    assert same_pixels(img, as_565(png))


async def test_text_and_pages_json_agree(server: LiveServer) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        doc = (await client.get(f"{server.url}/led/longshi-rgb/pages.json")).json()
        assert doc["width"] == 256 and doc["color"] == "rgb" and 0 <= doc["brightness"] <= 100
        for page in doc["pages"]:
            r = await client.get(f"{server.url}/led/longshi-rgb/text?page={page['index']}")
            assert r.text == page["text"]
            assert r.headers["etag"] == f'"{page["etag"]}.txt"'
        everything = "\n".join(p["text"] for p in doc["pages"])
        assert "龙市镇群众诉求办理公示" in everything
        assert "已交办" in everything and "剩" in everything


async def test_no_personal_data_in_any_led_output(server: LiveServer) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        for board in ("longshi-gate", "longshi-rgb"):
            doc = (await client.get(f"{server.url}/led/{board}/pages.json")).json()
            bodies = [json.dumps(doc, ensure_ascii=False)]
            for page in doc["pages"]:
                bodies.append(
                    (await client.get(f"{server.url}/led/{board}/text?page={page['index']}")).text
                )
            bodies.append((await client.get(f"{server.url}/led/{board}")).text)
            for body in bodies:
                assert NAME not in body and PHONE not in body


async def test_sse_frame_event_and_change(server: LiveServer) -> None:
    base = f"{server.url}/led/longshi-gate"
    async with httpx.AsyncClient(timeout=10) as client:
        first = await read_sse(
            client, f"{base}/events", until=lambda evs: any(e.get("event") == "frame" for e in evs)
        )
        frame = json.loads(next(e for e in first if e.get("event") == "frame")["data"])
        assert frame["width"] == 128 and frame["height"] == 32
        png = Image.open(io.BytesIO((await client.get(f"{base}/frame.png?page=0")).content))
        inline = from_mono1(base64.b64decode(frame["pages"][0]["mono1"]), 128, 32)
        assert same_pixels(inline, png)
        version = frame["version"]

        async def push_later() -> None:
            await asyncio.sleep(0.3)
            await push_records(
                client, server.url, [case_record("c3", category="农业农村", status="in_progress")]
            )

        pusher = asyncio.create_task(push_later())

        def changed(evs: list[dict[str, str]]) -> bool:
            return any(
                e.get("event") == "frame" and json.loads(e["data"])["version"] != version
                for e in evs
            )

        events = await read_sse(client, f"{base}/events", until=changed)
        await pusher
        new = json.loads([e for e in events if e.get("event") == "frame"][-1]["data"])
        assert new["version"] != version
        texts = [(await client.get(f"{base}/text?page={p['index']}")).text for p in new["pages"]]
        assert any("受理3件" in t for t in texts)


async def test_big_or_colour_boards_have_no_inline_frames(server: LiveServer) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        evs = await read_sse(
            client,
            f"{server.url}/led/longshi-rgb/events",
            until=lambda evs: any(e.get("event") == "frame" for e in evs),
        )
        frame = json.loads(next(e for e in evs if e.get("event") == "frame")["data"])
        assert all("mono1" not in p for p in frame["pages"])


@pytest.mark.parametrize(("board", "fmt"), [("longshi-gate", "mono1"), ("huangjia-p10", "rgb565")])
async def test_reference_client_draws_the_frames(
    server: LiveServer, tmp_path: Path, board: str, fmt: str
) -> None:
    out = tmp_path / "frames"
    status = await asyncio.wait_for(
        led_client(f"{server.url}/led/{board}", out, fmt, max_frames=1), 20
    )
    assert status == 0
    files = sorted(out.glob("*.png"))
    async with httpx.AsyncClient(timeout=10) as client:
        doc = (await client.get(f"{server.url}/led/{board}/pages.json")).json()
        assert len(files) == len(doc["pages"])
        for f in files:
            version, index = f.stem.rsplit("-", 1)
            assert version == doc["version"]
            png = Image.open(
                io.BytesIO(
                    (await client.get(f"{server.url}/led/{board}/frame.png?page={index}")).content
                )
            )
            with Image.open(f) as got:
                got.load()
            expect = (
                png.convert("RGB").convert("L").point([0] + [255] * 255)
                if fmt == "mono1"
                else as_565(png)
            )
            assert same_pixels(got, expect)


async def test_reference_client_draws_in_the_terminal(server: LiveServer) -> None:
    out = io.StringIO()
    status = await asyncio.wait_for(
        led_client(f"{server.url}/led/longshi-gate", None, "mono1", max_frames=1, out=out), 20
    )
    assert status == 0
    text = out.getvalue()
    assert "longshi-gate" in text
    assert "█" in text or "▀" in text or "▄" in text


async def test_board_seen_is_recorded(server: LiveServer) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        await client.get(f"{server.url}/led/huangjia-p10/frame.png")
    seen: dict[str, Any] = server.ctx.last_seen
    assert "huangjia-p10" in seen
