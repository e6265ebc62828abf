"""LED benchmark: page rendering, and a cached frame against a static file.

    .venv/bin/python bench/led.py [--requests N] [--connections C]

Prints, each against its target (issue 6):
- render: `render_board` for a 256x128 rgb board and a 128x32 mono board, per
  page (target: at most 10 ms for a 256x128 page);
- serve: the real application under uvicorn on a loopback port, in its own
  process, serving `/led/{board}/frame.png?page=0` from the frame cache, and a
  starlette StaticFiles mount on the same server serving a file with the same
  bytes (target: the cached frame at least 80% as fast). Both are measured with
  plain GETs and with If-None-Match (304), by one keep-alive HTTP/1.1 client
  per connection that is light enough for the server to be the bottleneck.
  The rounds alternate between the two so that drift hits both.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from display.led.render import render_board  # noqa: E402
from display.led.sample import AT, sample_content  # noqa: E402
from display.settings import Board  # noqa: E402

SECRET = "bench-push-secret-0123456789"  # noqa: S105 - a throwaway bench server
BOARD = "bench-gate"


def bench_render() -> None:
    print("render (median of 50 renders, all pages; per page = median / pages)")
    for board in (
        Board(id="big", town="longshi", width=256, height=128, color="rgb", font_size=16),
        Board(id="gate", town="longshi", width=128, height=32, color="mono", font_size=16),
        Board(id="p10", town="longshi", width=64, height=16, color="dual", font_size=12),
    ):
        content = sample_content(cases=5)
        render_board(board, content, now=AT)  # loads the font once
        times = []
        for _ in range(50):
            t = time.perf_counter()
            r = render_board(board, content, now=AT)
            times.append(time.perf_counter() - t)
        med = statistics.median(times) * 1000
        per_page = med / len(r.pages)
        target = (
            "  (target <= 10 ms: " + ("met" if per_page <= 10 else "MISSED") + ")"
            if board.width == 256
            else ""
        )
        print(
            f"  {board.width}x{board.height} {board.color:<4} {len(r.pages):2d} pages: "
            f"{med:6.2f} ms, {per_page:5.2f} ms/page{target}"
        )


# --- the server process -------------------------------------------------------


def serve(port: int, workdir: Path) -> None:
    import uvicorn
    from starlette.routing import Mount
    from starlette.staticfiles import StaticFiles

    from display.app import create_app
    from display.settings import parse

    settings = parse(
        {
            "database": {"url": f"sqlite:///{workdir / 'bench.db'}"},
            "secret_key": "bench-secret-key-not-for-production",
            "towns": [{"slug": "longshi", "name": "龙市镇"}],
            "boards": [
                {
                    "id": BOARD,
                    "town": "longshi",
                    "kind": "led",
                    "width": 256,
                    "height": 128,
                    "color": "rgb",
                }
            ],
            "feeds": [{"name": "push", "kind": "webhook", "secret": SECRET}],
        }
    )
    app = create_app(settings)
    app.router.routes.append(Mount("/static", app=StaticFiles(directory=workdir / "static")))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# --- the client ---------------------------------------------------------------


async def _get(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str, etag: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    extra = f"If-None-Match: {etag}\r\n" if etag else ""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", "0"))
    body = await reader.readexactly(n) if n else b""
    return status, headers, body


async def _load(port: int, path: str, etag: str | None, requests: int, connections: int) -> float:
    """Requests per second for `requests` GETs spread over `connections` connections."""
    per = requests // connections

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for _ in range(per):
                status, _h, _b = await _get(reader, writer, path, etag)
                assert status in (200, 304), status
        finally:
            writer.close()

    t = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return per * connections / (time.perf_counter() - t)


async def bench_serve(port: int, workdir: Path, requests: int, connections: int) -> None:
    import hashlib

    import httpx

    from feeds.webhook import signed_headers

    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(200):
            try:
                if (await client.get(f"{base}/healthz")).status_code < 500:
                    break
            except httpx.TransportError:
                await asyncio.sleep(0.05)
        else:
            raise SystemExit("the server did not start")
        records = [
            {
                "source_id": f"b{i}",
                "town": "longshi",
                "kind": "general",
                "category": cat,
                "summary": summary,
                "status": status,
                "received_at": "2026-11-20T09:30:00+08:00",
            }
            for i, (cat, summary, status) in enumerate(
                [
                    ("道路交通", "村道路灯不亮，夜间出行不便", "in_progress"),
                    ("环境卫生", "垃圾清运不及时", "assigned"),
                    ("农业农村", "灌溉渠渗漏，请求维修", "registered"),
                    ("供水供电", "自来水水压不足", "in_progress"),
                ]
            )
        ]
        body = json.dumps({"records": records}, ensure_ascii=False).encode()
        ts = int(time.time())
        r = await client.post(
            f"{base}/feeds/push/push",
            content=body,
            headers=signed_headers(SECRET, ts, body),
        )
        r.raise_for_status()
        await asyncio.sleep(1.0)  # debounced re-render
        frame = await client.get(f"{base}/led/{BOARD}/frame.png?page=0")
        frame.raise_for_status()
        (workdir / "static" / "frame.png").write_bytes(frame.content)
        static = await client.get(f"{base}/static/frame.png")
        assert static.content == frame.content
        digest = hashlib.sha256(frame.content).hexdigest()[:12]
        print(
            f"serve ({len(frame.content)} byte PNG, sha256 {digest}; "
            f"{requests} requests per round over {connections} connections, "
            "3 alternating rounds, best round)"
        )
        cases = [
            ("GET", f"/led/{BOARD}/frame.png?page=0", None, "/static/frame.png", None),
            (
                "304",
                f"/led/{BOARD}/frame.png?page=0",
                frame.headers["etag"],
                "/static/frame.png",
                static.headers["etag"],
            ),
        ]
    for label, led_path, led_etag, static_path, static_etag in cases:
        await _load(port, led_path, led_etag, requests // 4, connections)  # warm-up
        await _load(port, static_path, static_etag, requests // 4, connections)
        led_rates, static_rates = [], []
        for _ in range(3):
            led_rates.append(await _load(port, led_path, led_etag, requests, connections))
            static_rates.append(await _load(port, static_path, static_etag, requests, connections))
        led, stat = max(led_rates), max(static_rates)
        ratio = led / stat
        verdict = "met" if ratio >= 0.8 else "MISSED"
        print(
            f"  {label}: cached frame {led:8.0f} req/s, static file {stat:8.0f} req/s,"
            f" ratio {ratio:5.2f} (target >= 0.80: {verdict})"
        )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--serve", nargs=2, metavar=("PORT", "DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(int(args.serve[0]), Path(args.serve[1]))
        return
    bench_render()
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        (workdir / "static").mkdir()
        proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(port), str(workdir)],
            env={**os.environ, "PYTHONPATH": str(_HERE.parent)},
        )
        try:
            asyncio.run(bench_serve(port, workdir, args.requests, args.connections))
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
