"""Bundled CJK bitmap fonts (WenQuanYi Bitmap Song, 12 and 16 px) for the LED boards.

The fonts live in `assets/fonts/` as gzip-compressed BDF subsets made by
`assets/fonts/build_fonts.py`. Each glyph is placed in a cell `size` pixels
tall so that hanzi fill the cell exactly; a line of text is `size` pixels high
and glyphs are drawn bit for bit, never scaled or anti-aliased.
"""

from __future__ import annotations

import gzip
import threading
import unicodedata
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from PIL import Image

FONT_DIR = Path(__file__).resolve().parents[1] / "assets" / "fonts"
FONT_FILE = "wqy-bitmap-song-{size}.bdf.gz"
SIZES = (12, 16)
#: Drawn for characters the subset lacks (WHITE SQUARE, part of GB2312).
REPLACEMENT = "□"


class FontError(RuntimeError):
    """The bundled font file is missing or unreadable."""


@dataclass(frozen=True)
class Glyph:
    advance: int
    #: The glyph as a cell-high mask (mode "1", `advance` x font size); None for blanks.
    mask: Image.Image | None


@dataclass(frozen=True)
class _RawGlyph:
    advance: int
    width: int
    height: int
    xoff: int
    yoff: int
    bits: bytes  # rows of ceil(width/8) bytes, most significant bit first


class BitmapFont:
    """A pixel font: `advance(ch)`, `glyph(ch)`, `measure(text)`."""

    def __init__(self, size: int, raw: dict[int, _RawGlyph], baseline: int) -> None:
        self.size = size
        self.baseline = baseline
        self._raw = raw
        self._glyphs: dict[str, Glyph] = {}
        self._lock = threading.Lock()

    def __contains__(self, ch: str) -> bool:
        return ord(ch) in self._raw

    def _resolve(self, ch: str) -> int:
        cp = ord(ch)
        if cp in self._raw:
            return cp
        alt = unicodedata.normalize("NFKC", ch)
        if len(alt) == 1 and ord(alt) in self._raw:
            return ord(alt)
        return ord(REPLACEMENT)

    def glyph(self, ch: str) -> Glyph:
        g = self._glyphs.get(ch)
        if g is not None:
            return g
        with self._lock:
            raw = self._raw[self._resolve(ch)]
            mask: Image.Image | None = None
            if raw.width and raw.height and any(raw.bits):
                bitmap = Image.frombytes("1", (raw.width, raw.height), raw.bits)
                mask = Image.new("1", (max(raw.advance, raw.xoff + raw.width), self.size), 0)
                top = self.baseline - (raw.height + raw.yoff)
                # Keep the whole glyph inside the cell: descenders and tall
                # brackets move up or down by the pixels they would lose.
                top = max(0, min(top, self.size - raw.height))
                mask.paste(bitmap, (max(0, raw.xoff), top))
                mask = mask.crop((0, 0, raw.advance, self.size)) if raw.advance else mask
            g = Glyph(raw.advance, mask)
            self._glyphs[ch] = g
            return g

    def advance(self, ch: str) -> int:
        return self.glyph(ch).advance

    def measure(self, text: str) -> int:
        return sum(self.glyph(ch).advance for ch in text)

    def draw_mask(self, text: str) -> Image.Image:
        """The text as one mode "1" mask, `measure(text)` x `size` pixels."""
        img = Image.new("1", (max(1, self.measure(text)), self.size), 0)
        x = 0
        for ch in text:
            g = self.glyph(ch)
            if g.mask is not None:
                img.paste(1, (x, 0, x + g.advance, self.size), g.mask)
            x += g.advance
        return img


def _parse_bdf(data: bytes) -> tuple[dict[int, _RawGlyph], dict[str, str]]:
    glyphs: dict[int, _RawGlyph] = {}
    props: dict[str, str] = {}
    lines = data.decode("ascii").splitlines()
    i = 0
    n = len(lines)
    in_props = False
    while i < n:
        line = lines[i]
        if line.startswith("STARTPROPERTIES"):
            in_props = True
        elif line.startswith("ENDPROPERTIES"):
            in_props = False
        elif in_props:
            key, _, value = line.partition(" ")
            props[key] = value.strip('"')
        elif line.startswith("STARTCHAR"):
            cp = -1
            adv = w = h = xo = yo = 0
            i += 1
            while not lines[i].startswith("BITMAP"):
                k, _, v = lines[i].partition(" ")
                if k == "ENCODING":
                    cp = int(v)
                elif k == "DWIDTH":
                    adv = int(v.split()[0])
                elif k == "BBX":
                    w, h, xo, yo = (int(p) for p in v.split())
                i += 1
            rows = lines[i + 1 : i + 1 + h]
            glyphs[cp] = _RawGlyph(adv, w, h, xo, yo, bytes.fromhex("".join(rows)))
            i += h + 1
        i += 1
    return glyphs, props


_load_lock = threading.Lock()


@cache
def _load(size: int, font_dir: Path) -> BitmapFont:
    path = font_dir / FONT_FILE.format(size=size)
    try:
        data = gzip.decompress(path.read_bytes())
    except OSError as e:
        raise FontError(f"LED font {path} cannot be read: {e}") from None
    raw, _props = _parse_bdf(data)
    if ord(REPLACEMENT) not in raw or ord("一") not in raw:
        raise FontError(f"LED font {path} lacks basic glyphs; rebuild it with build_fonts.py")
    # The hanzi descent sets the baseline so that hanzi end on the cell's last row.
    baseline = size + raw[ord("一")].yoff
    return BitmapFont(size, raw, baseline)


def load_font(size: int, font_dir: Path | None = None) -> BitmapFont:
    """The bundled font at `size` px (12 or 16), loaded once per process."""
    if size not in SIZES:
        raise ValueError(f"LED font size must be one of {SIZES}, got {size}")
    with _load_lock:
        return _load(size, font_dir or FONT_DIR)
