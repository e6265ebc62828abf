"""Frame encoders: PNG, animated GIF and the raw formats microcontrollers read.

Raw formats (no header; the size comes from the board profile or pages.json):

- mono1: rows top to bottom, each row ceil(width/8) bytes, most significant bit
  = leftmost pixel, 1 = lit. This is what Adafruit_GFX `drawBitmap` reads.
  A pixel is lit when any of its channels is non-zero.
- rgb565: 16 bits per pixel, little-endian, row-major (RRRRRGGG GGGBBBBB).
- rgb888: R, G, B bytes per pixel, row-major.

The `from_*` decoders are the exact inverses (rgb565 loses the low bits of
each channel) and are used by the reference client and the tests.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from PIL import Image, ImageChops

from display.led.render import LedPage, marquee_frames

RAW_FORMATS = ("mono1", "rgb565", "rgb888")

_LIT = [0] + [255] * 255
_R_HI = [v & 0xF8 for v in range(256)]
_G_HI = [v >> 5 for v in range(256)]
_G_LO = [(v << 3) & 0xE0 for v in range(256)]
_B_LO = [v >> 3 for v in range(256)]


def _rgb(img: Image.Image) -> Image.Image:
    return img if img.mode == "RGB" else img.convert("RGB")


def to_png(img: Image.Image) -> bytes:
    """PNG at the board's exact size: 1-bit for mono images, palette or RGB otherwise."""
    buf = io.BytesIO()
    if img.mode == "RGB":
        colors = img.getcolors(256)
        if colors is not None:
            # LED frames use a handful of colours: a palette PNG is far smaller. Pillow's
            # quantizer may merge the close, dim colours of a board at night, so the
            # palette image is used only when it is exact.
            quantized = img.quantize(
                colors=len(colors), method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE
            )
            if ImageChops.difference(quantized.convert("RGB"), img).getbbox() is None:
                img = quantized
    img.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def to_mono1(img: Image.Image) -> bytes:
    if img.mode == "1":
        return img.tobytes()
    lit = img.convert("L") if img.mode != "RGB" else _any_channel(img)
    return lit.point(_LIT).convert("1", dither=Image.Dither.NONE).tobytes()


def _any_channel(img: Image.Image) -> Image.Image:
    r, g, b = img.split()
    return ImageChops.lighter(ImageChops.lighter(r, g), b)


def to_rgb565(img: Image.Image) -> bytes:
    r, g, b = _rgb(img).split()
    low = ImageChops.add(g.point(_G_LO), b.point(_B_LO))  # disjoint bits: add == or
    high = ImageChops.add(r.point(_R_HI), g.point(_G_HI))
    return Image.merge("LA", (low, high)).tobytes()


def to_rgb888(img: Image.Image) -> bytes:
    return _rgb(img).tobytes()


def from_mono1(data: bytes, width: int, height: int) -> Image.Image:
    """Decode mono1 bytes to a mode "1" image (1 = lit = white)."""
    expected = (width + 7) // 8 * height
    if len(data) != expected:
        raise ValueError(f"mono1 {width}x{height} needs {expected} bytes, got {len(data)}")
    return Image.frombytes("1", (width, height), data)


def from_rgb565(data: bytes, width: int, height: int) -> Image.Image:
    """Decode little-endian rgb565 to RGB, widening each channel by bit replication."""
    if len(data) != width * height * 2:
        raise ValueError(f"rgb565 {width}x{height} needs {width * height * 2} bytes")
    la = Image.frombytes("LA", (width, height), data)
    low, high = la.split()
    r5 = high.point([v >> 3 for v in range(256)])
    g6 = ImageChops.add(
        high.point([(v & 7) << 3 for v in range(256)]), low.point([v >> 5 for v in range(256)])
    )
    b5 = low.point([v & 0x1F for v in range(256)])
    return Image.merge(
        "RGB",
        (
            r5.point([(v << 3) | (v >> 2) if v < 32 else 0 for v in range(256)]),
            g6.point([(v << 2) | (v >> 4) if v < 64 else 0 for v in range(256)]),
            b5.point([(v << 3) | (v >> 2) if v < 32 else 0 for v in range(256)]),
        ),
    )


def from_rgb888(data: bytes, width: int, height: int) -> Image.Image:
    if len(data) != width * height * 3:
        raise ValueError(f"rgb888 {width}x{height} needs {width * height * 3} bytes")
    return Image.frombytes("RGB", (width, height), data)


def encode_raw(img: Image.Image, fmt: str) -> bytes:
    if fmt == "mono1":
        return to_mono1(img)
    if fmt == "rgb565":
        return to_rgb565(img)
    if fmt == "rgb888":
        return to_rgb888(img)
    raise ValueError(f"unknown raw format {fmt!r}; use one of {', '.join(RAW_FORMATS)}")


def decode_raw(data: bytes, fmt: str, width: int, height: int) -> Image.Image:
    if fmt == "mono1":
        return from_mono1(data, width, height)
    if fmt == "rgb565":
        return from_rgb565(data, width, height)
    if fmt == "rgb888":
        return from_rgb888(data, width, height)
    raise ValueError(f"unknown raw format {fmt!r}; use one of {', '.join(RAW_FORMATS)}")


def to_gif(pages: Sequence[LedPage]) -> bytes:
    """All pages as one looping animated GIF; marquee pages scroll, each page keeps its time."""
    if not pages:
        raise ValueError("no pages to encode")
    width, height = pages[0].image.size
    frames: list[Image.Image] = []
    durations: list[int] = []
    for page in pages:
        for img, ms in marquee_frames(page, width, height):
            frames.append(_rgb(img))
            durations.append(ms)
    palette_src = Image.new("RGB", (width, height * len(frames)))
    for i, f in enumerate(frames):
        palette_src.paste(f, (0, i * height))
    # One exact palette for the whole animation (LED frames have only a few colours).
    colors = palette_src.getcolors(256)
    pal = palette_src.quantize(
        colors=max(2, len(colors) if colors else 256),
        method=Image.Quantize.FASTOCTREE,
        dither=Image.Dither.NONE,
    )
    p_frames = [f.quantize(palette=pal, dither=Image.Dither.NONE) for f in frames]
    buf = io.BytesIO()
    p_frames[0].save(
        buf,
        format="GIF",
        save_all=True,
        append_images=p_frames[1:],
        duration=durations,
        loop=0,
        disposal=1,
        optimize=False,
    )
    return buf.getvalue()
