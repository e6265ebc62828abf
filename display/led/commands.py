"""`yizheng render BOARD --out FILE [--page N]`: one board's frame from the database."""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime
from pathlib import Path

from display.domain import now_utc
from display.led.content import LedContent, load_content
from display.led.encode import RAW_FORMATS, encode_raw, to_gif, to_png
from display.led.render import RenderedBoard, page_at, render_board
from display.settings import Board, Settings


def write_output(rendered: RenderedBoard, out: Path, page: int | None, now: datetime) -> str:
    """Write `out` by its suffix: .png (one page), .gif (all pages), .txt, .mono1/.rgb565/.rgb888.

    Returns a one-line description of what was written.
    """
    if page is not None and not 0 <= page < len(rendered.pages):
        raise IndexError(f"page {page} does not exist; the board has {len(rendered.pages)} pages")
    p = rendered.pages[page] if page is not None else page_at(rendered, now)
    suffix = out.suffix.lower().lstrip(".")
    if suffix == "gif":
        data = to_gif(rendered.pages)
        what = f"{len(rendered.pages)} pages"
    elif suffix == "txt":
        data = p.text.encode("utf-8")
        what = f"page {p.index} text"
    elif suffix in RAW_FORMATS or suffix == "bin":
        data = encode_raw(p.image, "mono1" if suffix == "bin" else suffix)
        what = f"page {p.index} raw"
    else:
        data = to_png(p.image)
        what = f"page {p.index} of {len(rendered.pages)}"
    out.write_bytes(data)
    return f"{out}: {what}, {rendered.width}x{rendered.height} {rendered.color}, {len(data)} bytes"


async def render_board_from_store(settings: Settings, board: Board, now: datetime) -> RenderedBoard:
    from display.context import Context

    ctx = Context.build(settings)
    await ctx.store.open()
    try:
        await ctx.store.migrate()
        content: LedContent = await load_content(ctx, board)
    finally:
        await ctx.store.close()
    return render_board(board, content, now=now)


def render_cmd(settings: Settings, board_id: str, out: Path, page: int | None = None) -> int:
    """The CLI command; returns the exit status (2 for a bad board or page)."""
    board = settings.board(board_id)
    if board is None or board.kind != "led":
        known = ", ".join(b.id for b in settings.boards if b.kind == "led") or "none"
        print(f"yizheng: no LED board {board_id!r} (configured: {known})", file=sys.stderr)
        return 2
    now = now_utc()
    rendered = asyncio.run(render_board_from_store(settings, board, now))
    try:
        print(write_output(rendered, out, page, now))
    except IndexError as e:
        print(f"yizheng: {e}", file=sys.stderr)
        return 2
    return 0
