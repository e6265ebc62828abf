"""Rendering: golden images for each colour mode and font size, encoders, brightness.

Golden PNGs live in tests/data/led_golden/. After an intended change to the
drawing, regenerate them explicitly and review the diff:

    YIZHENG_REGEN_GOLDEN=1 .venv/bin/pytest tests/test_led_render.py -k golden

Without the variable a missing or different golden fails the test.
"""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops

from display.led.encode import (
    from_mono1,
    from_rgb565,
    from_rgb888,
    to_gif,
    to_mono1,
    to_png,
    to_rgb565,
    to_rgb888,
)
from display.led.render import (
    brightness_at,
    marquee_frames,
    next_change,
    page_at,
    render_board,
)
from display.led.sample import AT, sample_content
from display.settings import Board

GOLDEN = Path(__file__).parent / "data" / "led_golden"
REGEN = os.environ.get("YIZHENG_REGEN_GOLDEN") == "1"

PROFILES = {
    "mono12-64x16": Board(id="g1", town="longshi", width=64, height=16, color="mono", font_size=12),
    "mono16-128x32": Board(
        id="g2", town="longshi", width=128, height=32, color="mono", font_size=16
    ),
    "dual12-96x48": Board(id="g3", town="longshi", width=96, height=48, color="dual", font_size=12),
    "dual16-128x32": Board(
        id="g4", town="longshi", width=128, height=32, color="dual", font_size=16
    ),
    "rgb12-160x64": Board(id="g5", town="longshi", width=160, height=64, color="rgb", font_size=12),
    "rgb16-256x128": Board(
        id="g6", town="longshi", width=256, height=128, color="rgb", font_size=16
    ),
}


def same_pixels(a: Image.Image, b: Image.Image) -> bool:
    return (
        a.size == b.size
        and ImageChops.difference(a.convert("RGB"), b.convert("RGB")).getbbox() is None
    )


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_golden(name: str) -> None:
    board = PROFILES[name]
    rendered = render_board(board, sample_content(), now=AT)
    for page in rendered.pages[:2]:
        path = GOLDEN / f"{name}-p{page.index}.png"
        if REGEN:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(to_png(page.image))
            continue
        assert path.exists(), f"{path.name} missing: run with YIZHENG_REGEN_GOLDEN=1"
        with Image.open(path) as golden:
            golden.load()
        assert same_pixels(golden, page.image), (
            f"{path.name} differs from the rendering; if intended, regenerate "
            "with YIZHENG_REGEN_GOLDEN=1 and review the images"
        )
    if REGEN:
        pytest.skip("golden images regenerated")


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_colour_modes(name: str) -> None:
    board = PROFILES[name]
    page = render_board(board, sample_content(), now=AT).pages[0]
    assert page.image.size == (board.width, board.height)
    if board.color == "mono":
        assert page.image.mode == "1"
    else:
        colors = {c for _, c in page.image.getcolors(4096) or []}
        allowed = (
            {(0, 0, 0), (255, 0, 0), (0, 255, 0), (255, 255, 0)} if board.color == "dual" else None
        )
        if allowed is not None:
            assert colors <= allowed
        assert len(colors) >= 2


def test_rgb_colours_mean_something() -> None:
    board = PROFILES["rgb16-256x128"]
    pages = render_board(board, sample_content(), now=AT).pages
    colors = {c for p in pages for _, c in p.image.getcolors(4096) or []}
    assert (255, 0, 0) in colors  # overdue
    assert (255, 255, 0) in colors  # supervised


def test_mono_marks_overdue_inverted() -> None:
    board = PROFILES["mono16-128x32"]
    page = next(
        p for p in render_board(board, sample_content(), now=AT).pages if "已超期" in p.text
    )
    # The 已超期 badge is a lit box with dark glyph strokes: its row is mostly lit.
    lit = page.image.crop((0, 16, 128, 32)).convert("L").histogram()[255]
    assert lit > 16 * 40


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_raw_frames_decode_back_to_the_png(name: str) -> None:
    board = PROFILES[name]
    page = render_board(board, sample_content(), now=AT).pages[0]
    w, h = board.width, board.height
    png = Image.open(io.BytesIO(to_png(page.image)))
    assert same_pixels(png, page.image)
    mono = to_mono1(page.image)
    assert len(mono) == (w + 7) // 8 * h
    lit = png.convert("RGB").convert("L").point([0] + [255] * 255)
    assert same_pixels(from_mono1(mono, w, h), lit)
    rgb565 = to_rgb565(page.image)
    assert len(rgb565) == w * h * 2
    # rgb565 keeps 5/6/5 bits: compare with the PNG's pixels reduced the same way.
    reduced = png.convert("RGB").point(lambda v: v)
    r, g, b = reduced.split()
    expect = Image.merge(
        "RGB",
        (
            r.point(lambda v: (v >> 3 << 3) | (v >> 5)),
            g.point(lambda v: (v >> 2 << 2) | (v >> 6)),
            b.point(lambda v: (v >> 3 << 3) | (v >> 5)),
        ),
    )
    assert same_pixels(from_rgb565(rgb565, w, h), expect)
    assert same_pixels(from_rgb888(to_rgb888(page.image), w, h), png)


def test_mono1_layout_is_adafruit_drawbitmap() -> None:
    img = Image.new("1", (10, 2), 0)
    img.putpixel((0, 0), 1)  # leftmost pixel: MSB of the first byte
    img.putpixel((9, 0), 1)  # tenth pixel: second byte, second bit from the top
    img.putpixel((7, 1), 1)
    assert to_mono1(img) == bytes([0b1000_0000, 0b0100_0000, 0b0000_0001, 0])


def test_rgb565_is_little_endian() -> None:
    img = Image.new("RGB", (2, 1))
    img.putpixel((0, 0), (255, 0, 0))
    img.putpixel((1, 0), (0, 0, 255))
    assert to_rgb565(img) == bytes([0x00, 0xF8, 0x1F, 0x00])
    assert to_rgb888(img) == bytes([255, 0, 0, 0, 0, 255])


def test_render_is_deterministic_and_versioned() -> None:
    board = PROFILES["rgb16-256x128"]
    a = render_board(board, sample_content(), now=AT)
    b = render_board(board, sample_content(), now=AT)
    assert a.version == b.version
    assert [p.etag for p in a.pages] == [p.etag for p in b.pages]
    c = render_board(board, sample_content(stale=True), now=AT)
    assert c.version != a.version


def test_unchanged_page_keeps_its_etag_when_another_changes() -> None:
    board = PROFILES["mono16-128x32"]
    a = render_board(board, sample_content(cases=3), now=AT)
    b = render_board(board, sample_content(cases=4), now=AT)
    assert a.version != b.version
    assert a.pages[0].etag == b.pages[0].etag  # the title page did not change


def test_brightness_schedule_scales_lit_pixels() -> None:
    board = Board(
        id="b",
        town="longshi",
        width=128,
        height=32,
        color="rgb",
        brightness=(("06:00", 100), ("20:00", 40)),
    )
    day = datetime(2026, 3, 2, 4, 0, tzinfo=UTC)  # 12:00 local
    night = datetime(2026, 3, 2, 13, 0, tzinfo=UTC)  # 21:00 local
    early = datetime(2026, 3, 1, 20, 0, tzinfo=UTC)  # 04:00 local: still last night
    assert brightness_at(board, day) == 100
    assert brightness_at(board, night) == 40
    assert brightness_at(board, early) == 40
    bright = render_board(board, sample_content(), now=day)
    dim = render_board(board, sample_content(), now=night)
    assert dim.brightness == 40 and dim.version != bright.version
    colors: Any = dim.pages[0].image.getcolors(4096) or []
    top = max(max(c) for _, c in colors)
    assert top == round(255 * 0.4)
    assert next_change(board, day) == datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # 20:00 local
    assert next_change(board, night) == datetime(2026, 3, 2, 16, 0, tzinfo=UTC)  # midnight


def test_mono_frames_are_not_dimmed() -> None:
    board = Board(id="b", town="longshi", width=128, height=32, color="mono")
    night = datetime(2026, 3, 2, 13, 0, tzinfo=UTC)
    r = render_board(board, sample_content(), now=night)
    assert r.brightness == 40 and r.pages[0].image.mode == "1"


def test_page_due_now_cycles_by_duration() -> None:
    board = PROFILES["mono16-128x32"]
    r = render_board(board, sample_content(), now=AT)
    assert r.rendered_at is not None
    assert page_at(r, AT).index == 0
    t = 0.0
    for p in r.pages:
        assert page_at(r, AT + _s(t + p.seconds / 2)).index == p.index
        t += p.seconds
    assert page_at(r, AT + _s(t + 0.1)).index == 0  # wraps around


def _s(seconds: float):  # type: ignore[no-untyped-def]
    from datetime import timedelta

    return timedelta(seconds=seconds)


def test_gif_animates_pages_and_marquees() -> None:
    board = PROFILES["mono12-64x16"]
    r = render_board(board, sample_content(), now=AT)
    gif: Any = Image.open(io.BytesIO(to_gif(r.pages)))
    assert gif.size == (64, 16)
    durations = []
    firsts = []
    for i in range(gif.n_frames):
        gif.seek(i)
        durations.append(gif.info["duration"])
        firsts.append(gif.convert("RGB"))
    expected = sum(len(marquee_frames(p, 64, 16)) for p in r.pages)
    assert gif.n_frames == expected
    assert sum(durations) == round(r.total_seconds * 1000)
    assert same_pixels(firsts[0], r.pages[0].image)
    # A marquee's frames differ from each other (the text moves).
    scroll = next(p for p in r.pages if p.scroll)
    frames = marquee_frames(scroll, 64, 16)
    assert len(frames) > 2 and not same_pixels(frames[0][0], frames[-1][0])
    assert frames[0][1] == 1000 and frames[-1][1] >= 1000
    assert sum(ms for _, ms in frames) == round(scroll.seconds * 1000)


def test_privacy_only_public_fields_drawn() -> None:
    content = sample_content(cases=5)
    board = PROFILES["rgb16-256x128"]
    text = "\n".join(p.text for p in render_board(board, content, now=AT).pages)
    for case, _ in content.cases:
        assert case.village is None or case.village not in text
    assert "社会救助" in text  # the sensitive case shows its category
