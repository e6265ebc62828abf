"""`yizheng led-client URL`: a board's stream consumed the way a microcontroller would.

It opens one SSE connection to `URL/events`. Each `frame` event names the
board's version and its pages' ETags; mono boards up to 128x64 carry the mono1
bytes inline, otherwise the client fetches `frame.bin?format=…&page=N` for each
page whose ETag it does not hold yet. Frames are decoded with the same
decoders the tests use and drawn in the terminal (half-block characters) or
written as PNG files. On a dropped connection it waits and reconnects, keeping
the last frames, as a board must.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TextIO

import httpx
from PIL import Image

from display.led.encode import decode_raw

RECONNECT_SECONDS = (1.0, 2.0, 5.0, 10.0)


async def sse_events(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """(event, data) pairs from an SSE response body."""
    event, data = "message", list[str]()
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            key, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if key == "event":
                event = value
            elif key == "data":
                data.append(value)


def draw_terminal(img: Image.Image, out: TextIO) -> None:
    """Two pixel rows per text row: █ ▀ ▄ for mono, 24-bit colour half blocks otherwise."""
    w, h = img.size
    if img.mode == "1":
        px = img.load()
        assert px is not None
        for y in range(0, h, 2):
            row = []
            for x in range(w):
                top = bool(px[x, y])
                bottom = bool(px[x, y + 1]) if y + 1 < h else False
                row.append("█" if top and bottom else "▀" if top else "▄" if bottom else " ")
            out.write("".join(row).rstrip() + "\n")
    else:
        rgb = img.convert("RGB")
        px = rgb.load()
        assert px is not None
        for y in range(0, h, 2):
            parts = []
            for x in range(w):
                t = px[x, y]
                b = px[x, y + 1] if y + 1 < h else (0, 0, 0)
                assert isinstance(t, tuple) and isinstance(b, tuple)
                parts.append(f"\x1b[38;2;{t[0]};{t[1]};{t[2]}m\x1b[48;2;{b[0]};{b[1]};{b[2]}m▀")
            out.write("".join(parts) + "\x1b[0m\n")
    out.flush()


class BoardClient:
    """Holds the frames of one board by page ETag, as a microcontroller's RAM would."""

    def __init__(self, base_url: str, fmt: str, http: httpx.AsyncClient) -> None:
        self.base = base_url
        self.fmt = fmt
        self.http = http
        self.frames: dict[str, Image.Image] = {}  # page etag -> decoded frame
        self.fetches = 0

    async def frames_for(self, event: dict[str, Any]) -> list[tuple[int, Image.Image]]:
        w, h = int(event["width"]), int(event["height"])
        out: list[tuple[int, Image.Image]] = []
        for page in event["pages"]:
            etag = page["etag"]
            img = self.frames.get(etag)
            if img is None:
                if self.fmt == "mono1" and "mono1" in page:
                    img = decode_raw(base64.b64decode(page["mono1"]), "mono1", w, h)
                else:
                    r = await self.http.get(
                        f"{self.base}/frame.bin", params={"format": self.fmt, "page": page["index"]}
                    )
                    r.raise_for_status()
                    self.fetches += 1
                    img = decode_raw(r.content, self.fmt, w, h)
                self.frames[etag] = img
            out.append((int(page["index"]), img))
        live = {p["etag"] for p in event["pages"]}
        for stale in set(self.frames) - live:
            del self.frames[stale]
        return out


def _base_url(url: str) -> str:
    url = url.rstrip("/")
    for suffix in ("/events", "/pages.json", "/frame.png", "/frame.bin", "/text"):
        url = url.removesuffix(suffix)
    return url


async def led_client(
    url: str,
    out_dir: Path | None,
    fmt: str = "mono1",
    max_frames: int | None = None,
    *,
    out: TextIO | None = None,
    connect_timeout: float = 30.0,
) -> int:
    """Follow a board's frame stream; returns an exit status.

    `url` is the board's address (http://host/led/ID). Each `frame` event counts
    as one frame; with `max_frames` the client stops after that many. With
    `out_dir` the pages are written as `{version}-{page}.png`; otherwise they are
    drawn on `out` (stdout).
    """
    if fmt not in ("mono1", "rgb565", "rgb888"):
        print(f"yizheng: unknown format {fmt!r}", file=sys.stderr)
        return 2
    stream = out or sys.stdout
    base = _base_url(url)
    if out_dir is not None:
        await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
    seen = 0
    failures = 0
    async with httpx.AsyncClient(timeout=httpx.Timeout(connect_timeout, read=None)) as http:
        client = BoardClient(base, fmt, http)
        while max_frames is None or seen < max_frames:
            try:
                async with http.stream(
                    "GET", f"{base}/events", headers={"accept": "text/event-stream"}
                ) as resp:
                    if resp.status_code == 404:
                        print(f"yizheng: {base}: no such board", file=sys.stderr)
                        return 1
                    resp.raise_for_status()
                    failures = 0
                    async for event, data in sse_events(resp):
                        if event != "frame":
                            continue
                        doc = json.loads(data)
                        pages = await client.frames_for(doc)
                        for index, img in pages:
                            if out_dir is not None:
                                img.save(out_dir / f"{doc['version']}-{index}.png")
                            else:
                                stream.write(
                                    f"— {doc['board']} {doc['version']} "
                                    f"第{index + 1}/{len(pages)}页 —\n"
                                )
                                draw_terminal(img, stream)
                        seen += 1
                        if max_frames is not None and seen >= max_frames:
                            return 0
            except (httpx.HTTPError, ValueError) as e:
                delay = RECONNECT_SECONDS[min(failures, len(RECONNECT_SECONDS) - 1)]
                failures += 1
                print(
                    f"yizheng: {base}: {e.__class__.__name__}; reconnecting in {delay:g} s",
                    file=sys.stderr,
                )
                await asyncio.sleep(delay)
    return 0
