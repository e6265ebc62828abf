"""Render a board's content into pages: pure and deterministic for the same inputs.

`render_board(board, content, now=...)` turns LedContent into pages sized
exactly to the board. The steps:

1. blocks: the title, figures, each open case, each notice (or only the urgent
   notice, which takes over the board) become styled runs;
2. layout: on a one-line board each block is a page of its own, and a block
   wider than the board becomes a marquee page (`scroll=True`); on taller
   boards blocks are wrapped (see layout.py) and packed onto pages, a block
   longer than a page continuing on the next; boards of four lines or more keep
   the title as a header line on every page;
3. drawing: glyphs are pasted bit for bit in the colour of their role.
   Mono boards get a 1-bit image (overdue and supervised markers inverted),
   dual and rgb boards get RGB with the lit value scaled by the brightness
   schedule.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from PIL import Image

from display.domain import SHANGHAI, Notice, PublicCase, Stats
from display.led.content import LedContent, content_key
from display.led.fonts import BitmapFont, load_font
from display.led.layout import Line, Run, line_width, one_line, wrap
from display.settings import Board

#: Bump when the drawing changes, so every board's version (and ETag) changes.
RENDER_VERSION = "1"
#: Pause at each end of a marquee, in seconds.
MARQUEE_HOLD = 1.0
#: Cases beyond this are summarised as 另有N件在办.
MAX_CASES = 40
#: Pages beyond this are dropped (a safety net for a runaway notice body).
MAX_PAGES = 60
#: Roles drawn inverted on mono boards, so that the marker reads without colour.
BADGES = frozenset({"overdue", "supervised", "urgent"})

RGB = tuple[int, int, int]
R: RGB = (255, 0, 0)
G: RGB = (0, 255, 0)
Y: RGB = (255, 255, 0)
PALETTES: dict[str, dict[str, RGB]] = {
    # Red/green boards: green for the ordinary, yellow to draw the eye, red for trouble.
    "dual": {
        "text": G,
        "title": Y,
        "figure": Y,
        "due": G,
        "ok": G,
        "notice": Y,
        "overdue": R,
        "supervised": Y,
        "urgent": R,
        "stale": R,
    },
    "rgb": {
        "text": (255, 255, 255),
        "title": (255, 170, 0),
        "figure": (0, 255, 0),
        "due": (0, 220, 255),
        "ok": (0, 255, 0),
        "notice": (0, 200, 255),
        "overdue": R,
        "supervised": Y,
        "urgent": R,
        "stale": (255, 128, 0),
    },
}


@dataclass(frozen=True)
class Marquee:
    """A line too wide for the board: the whole line as one strip, and where it sits."""

    strip: Image.Image
    y: int
    speed: int  # pixels per second


@dataclass(frozen=True)
class LedPage:
    index: int
    image: Image.Image  # exactly the board's size; a marquee page shows its first frame
    text: str
    seconds: float
    etag: str
    scroll: bool
    marquee: Marquee | None = None


@dataclass(frozen=True)
class RenderedBoard:
    board_id: str
    version: str
    pages: tuple[LedPage, ...]
    rendered_at: datetime | None = None
    width: int = 0
    height: int = 0
    color: str = "mono"
    brightness: int = 100
    #: When the drawing goes out of date by itself (brightness change, midnight).
    valid_until: datetime | None = None
    total_seconds: float = field(default=0.0)


@dataclass(frozen=True)
class _Spec:
    lines: tuple[Line, ...]
    marquee: Line | None = None


# --- brightness ---------------------------------------------------------------


def _minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


def brightness_at(board: Board, now: datetime) -> int:
    """The brightness (0-100 %) the board's schedule gives at `now` (Asia/Shanghai)."""
    if not board.brightness:
        return 100
    local = now.astimezone(SHANGHAI)
    minute = local.hour * 60 + local.minute
    steps = sorted((_minutes(t), pct) for t, pct in board.brightness)
    current = steps[-1][1]  # before the first step: last night's value
    for at, pct in steps:
        if at <= minute:
            current = pct
    return current


def next_change(board: Board, now: datetime) -> datetime:
    """The next brightness step or local midnight (days left change), whichever is first."""
    local = now.astimezone(SHANGHAI)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    candidates = [day + timedelta(days=1)]
    for t, _pct in board.brightness:
        at = day + timedelta(minutes=_minutes(t))
        candidates.append(at if at > local else at + timedelta(days=1))
    return min(candidates)


# --- blocks ---------------------------------------------------------------------


Para = tuple[tuple[Run, ...], str]  # (runs, align)


@dataclass(frozen=True)
class _Block:
    """One item on the board, in one or more wordings, fullest first."""

    variants: tuple[tuple[Para, ...], ...]
    sep: str = " "  # joins paragraphs on a one-line board
    #: A wording that wraps to more lines is used only when no wording fits.
    max_lines: int | None = None


def _para(runs: Sequence[Run], align: str = "left") -> Para:
    return (tuple(runs), align)


def _block(*paragraphs: Para, sep: str = " ") -> _Block:
    return _Block((tuple(paragraphs),), sep)


def _variants(*variants: tuple[Para, ...], sep: str = " ", max_lines: int | None = None) -> _Block:
    unique: list[tuple[Para, ...]] = []
    for v in variants:
        if v not in unique:
            unique.append(v)
    return _Block(tuple(unique), sep, max_lines)


def title_candidates(board: Board, content: LedContent) -> list[str]:
    """The title, then shorter wordings for boards too narrow for it."""
    if board.title:
        return [board.title]
    town = content.town_name or ""
    base = content.title or f"{town}群众诉求办理公示"
    out: list[str] = []
    for c in (base, f"{town}诉求办理公示", f"{town}诉求公示", "群众诉求公示"):
        if c not in out:
            out.append(c)
    return out


def _pct(v: float | None) -> str:
    return f"{round(v * 100)}%" if v is not None else "—"


def _stats_block(s: Stats, lines: int) -> _Block:
    def figure(label: str, value: str, role: str = "figure", unit: str = "件") -> list[Run]:
        return [Run(label, keep=True), Run(value + unit, role, keep=True)]

    received = figure("受理", str(s.received))
    resolved = figure("办结", str(s.resolved))
    rate = figure("办结率", _pct(s.resolution_rate), unit="")
    sp = [Run(" ")]
    first = [*received, *sp, *resolved, *sp, *rate]
    if lines < 4:
        # Too narrow for all three: the rate says more than the count of resolved.
        return _variants((_para(first),), (_para([*received, *sp, *rate]),))
    second = figure("在办", str(s.open))
    if s.overdue:
        second += sp + figure("超期", str(s.overdue), "overdue")
    if s.supervised:
        second += sp + figure("督办", str(s.supervised), "supervised")
    return _block(_para(first), _para(second))


def days_text(case: PublicCase, days_left: int | None) -> tuple[str, str] | None:
    """The compact deadline marker and its role: 已超期, 今日到期, 剩3个工作日."""
    if case.overdue or (days_left is not None and days_left < 0):
        return "已超期", "overdue"
    if days_left is None:
        return None
    if days_left == 0:
        return "今日到期", "overdue"
    return f"剩{days_left}个工作日", "due"


def case_label(case: PublicCase, lines: int) -> str | None:
    """What the case is about: the category, or on big boards the redacted summary."""
    if case.sensitive or case.summary is None:
        return case.category
    if lines >= 4 or not case.category:
        s = " ".join(case.summary.split())
        return s if len(s) <= 24 else s[:23] + "…"
    return case.category


def _case_block(case: PublicCase, days_left: int | None, lines: int) -> _Block:
    head: list[Run] = []
    if case.supervised:
        head += [Run("督办", "supervised", keep=True), Run(" ")]
    head.append(Run(case.no))
    label = case_label(case, lines)
    sp = Run(" ")
    label_runs = [sp, Run(label, keep=len(label) <= 8)] if label else []
    stage = [sp, Run(case.stage_label, keep=True)]
    days = days_text(case, days_left)
    days_runs = [sp, Run(days[0], days[1], keep=True)] if days else []
    return _variants(
        (_para([*head, *label_runs, *stage, *days_runs]),),
        (_para([*head, *stage, *days_runs]),),
        (_para([*head, *(days_runs or stage)]),),
    )


def _notice_block(n: Notice) -> _Block:
    head = [Run(n.title, "notice")]
    body = [Run(" ".join(n.body.split()))]
    return _block(_para(head), _para(body), sep="：")


def build_blocks(board: Board, content: LedContent, lines: int, title: bool) -> list[_Block]:
    """The blocks in display order; `title` False when the title is a header line."""
    if content.urgent is not None:
        u = content.urgent
        return [
            _block(
                _para([Run("紧急通知", "urgent", keep=True), Run(" "), Run(u.title, "title")]),
                _para([Run(" ".join(u.body.split()))]),
                sep="：",
            )
        ]
    blocks: list[_Block] = []
    if "title" in board.content and title:
        blocks.append(
            _variants(
                *(
                    (_para([Run(t, "title", keep=True)], "center"),)
                    for t in title_candidates(board, content)
                ),
                max_lines=1,
            )
        )
    if content.stale_since is not None:
        at = content.stale_since.astimezone(SHANGHAI).strftime("%H:%M")
        blocks.append(
            _block(_para([Run("数据更新于", "stale", keep=True), Run(" "), Run(at, "stale")]))
        )
    if "stats" in board.content and content.stats is not None:
        blocks.append(_stats_block(content.stats, lines))
    if "cases" in board.content:
        shown = content.cases[:MAX_CASES]
        for case, days_left in shown:
            blocks.append(_case_block(case, days_left, lines))
        if len(content.cases) > len(shown):
            more = len(content.cases) - len(shown)
            blocks.append(_block(_para([Run(f"另有{more}件在办")])))
        if not content.cases:
            blocks.append(_block(_para([Run("目前没有在办诉求", "ok")])))
    if "notices" in board.content:
        for n in content.notices:
            blocks.append(_notice_block(n))
    return blocks


# --- layout ---------------------------------------------------------------------


def _joined(b: _Block, variant: tuple[Para, ...]) -> Line:
    runs: list[Run] = []
    for i, (r, _a) in enumerate(variant):
        if i:
            runs.append(Run(b.sep))
        runs += r
    return one_line(runs, variant[0][1])


def layout_pages(board: Board, content: LedContent, font: BitmapFont) -> list[_Spec]:
    lines = max(1, board.height // font.size)
    header: Line | None = None
    if lines >= 4 and "title" in board.content and content.urgent is None:
        for t in title_candidates(board, content):
            if font.measure(t) <= board.width:
                header = Line((Run(t, "title"),), "center")
                break
    blocks = build_blocks(board, content, lines, title=header is None)
    if not blocks:
        blocks = [_block(_para([Run(title_candidates(board, content)[0], "title")], "center"))]
    specs: list[_Spec] = []
    if lines == 1:
        for b in blocks:
            for v in b.variants:
                line = _joined(b, v)
                if line_width(line, font) <= board.width:
                    specs.append(_Spec((line,)))
                    break
            else:
                line = _joined(b, b.variants[0])
                specs.append(_Spec((), marquee=Line(line.runs, "left")))
        return specs[:MAX_PAGES]
    capacity = lines - (1 if header else 0)
    current: list[Line] = []
    for b in blocks:
        options = []
        for v in b.variants:
            wrapped: list[Line] = []
            for r, align in v:
                wrapped += wrap(r, font, board.width, align)
            options.append(wrapped)
        limit = min(capacity, b.max_lines or capacity)
        fitting = [o for o in options if len(o) <= limit]
        # The fullest wording that fits on a page, else the fullest wording
        # continued over several pages.
        chosen = fitting[0] if fitting else options[0]
        if current and len(current) + len(chosen) > capacity:
            specs.append(_Spec(tuple(current)))
            current = []
        while len(chosen) > capacity:
            specs.append(_Spec(tuple(chosen[:capacity])))
            chosen = chosen[capacity:]
        current += chosen
    if current:
        specs.append(_Spec(tuple(current)))
    if header is not None:
        specs = [_Spec((header, *s.lines)) for s in specs]
    return specs[:MAX_PAGES]


# --- drawing --------------------------------------------------------------------


def _palette(color: str, brightness: int) -> dict[str, RGB]:
    scale = max(0, min(100, brightness)) / 100
    return {
        role: (round(c[0] * scale), round(c[1] * scale), round(c[2] * scale))
        for role, c in PALETTES[color].items()
    }


def _draw_line(
    img: Image.Image, line: Line, font: BitmapFont, x: int, y: int, palette: dict[str, RGB] | None
) -> None:
    size = font.size
    for run in line.runs:
        if palette is None:
            badge = run.role in BADGES
            fg = 0 if badge else 1
            if badge:
                img.paste(1, (x, y, x + font.measure(run.text), y + size))
        else:
            fg_rgb = palette.get(run.role, palette["text"])
        for ch in run.text:
            g = font.glyph(ch)
            if g.mask is not None:
                img.paste(
                    fg if palette is None else fg_rgb, (x, y, x + g.advance, y + size), g.mask
                )
            x += g.advance


def _new(board: Board, width: int, height: int) -> Image.Image:
    return Image.new("1" if board.color == "mono" else "RGB", (width, height), 0)


def _page_etag(img: Image.Image, text: str, marquee: Marquee | None) -> str:
    h = hashlib.sha256()
    h.update(f"{img.mode}:{img.width}x{img.height}:".encode())
    h.update(img.tobytes())
    if marquee is not None:
        h.update(f"|m{marquee.y}:{marquee.speed}:{marquee.strip.width}".encode())
        h.update(marquee.strip.tobytes())
    h.update(text.encode("utf-8"))
    return h.hexdigest()[:20]


def _board_key(board: Board) -> list[object]:
    return [
        board.id,
        board.town,
        board.width,
        board.height,
        board.color,
        board.font_size,
        board.page_seconds,
        board.scroll_speed,
        list(board.content),
        board.title,
    ]


def render_board(board: Board, content: LedContent, *, now: datetime) -> RenderedBoard:
    """Render every page of `board` for `content`; the same inputs give the same output."""
    font = load_font(board.font_size)
    size = font.size
    brightness = brightness_at(board, now)
    palette = None if board.color == "mono" else _palette(board.color, brightness)
    specs = layout_pages(board, content, font)
    n_lines = max(1, board.height // size)
    top = (board.height - n_lines * size) // 2
    pages: list[LedPage] = []
    for i, spec in enumerate(specs):
        img = _new(board, board.width, board.height)
        marquee: Marquee | None = None
        seconds = float(board.page_seconds)
        if spec.marquee is not None:
            w = line_width(spec.marquee, font)
            strip = _new(board, w, size)
            _draw_line(strip, spec.marquee, font, 0, 0, palette)
            marquee = Marquee(strip, top, board.scroll_speed)
            img.paste(strip.crop((0, 0, board.width, size)), (0, top))
            seconds = max(seconds, marquee_seconds(w, board.width, board.scroll_speed))
            text = spec.marquee.text
        else:
            y = top
            if len(spec.lines) == 1:
                # A page of one line (a title, 目前没有在办诉求) sits in the middle.
                y += (n_lines - 1) * size // 2
            for line in spec.lines:
                w = line_width(line, font)
                x = (board.width - w) // 2 if line.align == "center" and w < board.width else 0
                _draw_line(img, line, font, x, y, palette)
                y += size
            text = "\n".join(line.text for line in spec.lines)
        pages.append(
            LedPage(
                i, img, text, seconds, _page_etag(img, text, marquee), marquee is not None, marquee
            )
        )
    blob = json.dumps(
        [RENDER_VERSION, _board_key(board), content_key(content), brightness],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    version = hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]
    return RenderedBoard(
        board_id=board.id,
        version=version,
        pages=tuple(pages),
        rendered_at=now,
        width=board.width,
        height=board.height,
        color=board.color,
        brightness=brightness,
        valid_until=next_change(board, now),
        total_seconds=sum(p.seconds for p in pages),
    )


def page_at(rendered: RenderedBoard, now: datetime) -> LedPage:
    """The page due on screen at `now`, cycling page durations from `rendered_at`."""
    pages = rendered.pages
    if len(pages) == 1 or rendered.rendered_at is None or rendered.total_seconds <= 0:
        return pages[0]
    t = (now - rendered.rendered_at).total_seconds() % rendered.total_seconds
    for p in pages:
        if t < p.seconds:
            return p
        t -= p.seconds
    return pages[-1]


def marquee_steps(
    strip_width: int, width: int, speed: int, frame_ms: int = 60
) -> tuple[list[int], int]:
    """The x offsets of a marquee's frames and the time per moving frame (ms).

    Offsets run from 0 (the text's start, as the PNG shows it) until the text's
    end reaches the right edge. Frame times are multiples of 10 ms (GIF).
    """
    travel = max(0, strip_width - width)
    step = max(1, round(speed * frame_ms / 1000))
    ms = max(20, round(step * 1000 / speed / 10) * 10)
    return [*range(0, travel, step), travel], ms


def marquee_seconds(strip_width: int, width: int, speed: int) -> float:
    """Hold, scroll, hold: how long the whole text takes to pass."""
    offsets, ms = marquee_steps(strip_width, width, speed)
    return (2 * round(MARQUEE_HOLD * 1000) + max(0, len(offsets) - 2) * ms) / 1000


def marquee_frames(page: LedPage, width: int, height: int) -> list[tuple[Image.Image, int]]:
    """The frames of a page with their durations in ms, adding up to `page.seconds`.

    A static page is one frame; a marquee holds its start, scrolls, and holds
    its end for whatever remains of the page's time.
    """
    total = round(page.seconds * 1000)
    m = page.marquee
    if m is None:
        return [(page.image, total)]
    offsets, ms = marquee_steps(m.strip.width, width, m.speed)
    hold = round(MARQUEE_HOLD * 1000)
    frames: list[tuple[Image.Image, int]] = []
    for k, off in enumerate(offsets):
        img = page.image.copy()
        img.paste(0, (0, m.y, width, m.y + m.strip.height))
        img.paste(m.strip.crop((off, 0, off + width, m.strip.height)), (0, m.y))
        frames.append((img, hold if k == 0 else ms))
    last_img, _ = frames[-1]
    frames[-1] = (last_img, max(hold, total - sum(d for _, d in frames[:-1])))
    return frames
