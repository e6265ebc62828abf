"""Rebuild the bundled LED fonts from Debian's `xfonts-wqy` (WenQuanYi Bitmap Song).

    python assets/fonts/build_fonts.py                 # fetches the .deb with apt-get download
    python assets/fonts/build_fonts.py --deb FILE.deb  # or from a .deb you already have
    python assets/fonts/build_fonts.py --pcf-dir DIR   # or from the unpacked PCF files

It reads the 12 px (`wenquanyi_9pt.pcf`) and 16 px (`wenquanyi_12pt.pcf`) strikes,
keeps the glyphs Chinese notices and place names need (all of GBK: GB2312's
6,763 hanzi and about 14,000 more, ASCII, CJK punctuation, fullwidth forms)
and writes them unaltered as gzip-compressed BDF files beside this script. The output is byte-for-byte
reproducible (gzip mtime 0, sorted glyphs). Only the standard library is used,
so the script runs without the project's virtualenv.

The glyph bitmaps are copied bit for bit; no glyph is modified, so the font
embedding exception of the WenQuanYi licence applies to rendered frames.
"""

from __future__ import annotations

import argparse
import gzip
import io
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
STRIKES = {12: "wenquanyi_9pt.pcf", 16: "wenquanyi_12pt.pcf"}
OUT_NAME = "wqy-bitmap-song-{size}.bdf.gz"

PCF_PROPERTIES = 1 << 0
PCF_ACCELERATORS = 1 << 1
PCF_BDF_ACCELERATORS = 1 << 8
PCF_METRICS = 1 << 2
PCF_BITMAPS = 1 << 3
PCF_BDF_ENCODINGS = 1 << 5
PCF_BYTE_MSB = 1 << 2
PCF_BIT_MSB = 1 << 3
PCF_COMPRESSED_METRICS = 0x100

# Characters beyond GB2312 that notices use (typographic quotes and dashes,
# the middle dot, ellipsis, the circle numerals that GB2312 lacks, ...).
EXTRA = "“”‘’—–…·•、〈〉《》「」『』【】〔〕〖〗〜・①②③④⑤⑥⑦⑧⑨⑩№℃％～￥"


def wanted_codepoints() -> set[int]:
    cps = set(range(0x20, 0x7F))
    # All of GBK (GB2312's 6,763 hanzi and the 14,000 more of GBK): village and place
    # names use characters beyond GB2312 (塆, 磡, 氹, 嶍 ...), and so do names of people
    # and things a board may show. Double-byte codes: lead 0x81-0xFE, trail 0x40-0xFE.
    for hi in range(0x81, 0xFF):
        for lo in range(0x40, 0xFF):
            try:
                ch = bytes((hi, lo)).decode("gbk")
            except UnicodeDecodeError:
                continue
            cps.add(ord(ch))
    cps.update(range(0x3000, 0x3040))  # CJK symbols and punctuation
    cps.update(range(0xFF01, 0xFF5F))  # fullwidth ASCII
    cps.update(ord(c) for c in EXTRA)
    return cps


@dataclass(frozen=True)
class Glyph:
    codepoint: int
    advance: int
    left: int  # left side bearing
    width: int
    ascent: int
    descent: int
    rows: tuple[bytes, ...]  # each row ceil(width/8) bytes, MSB first


@dataclass(frozen=True)
class PcfFont:
    properties: dict[str, str | int]
    glyphs: dict[int, Glyph]


def _table(data: bytes, toc: dict[int, tuple[int, int, int]], kind: int) -> tuple[int, str, int]:
    fmt, _size, offset = toc[kind]
    (fmt2,) = struct.unpack_from("<I", data, offset)
    assert fmt2 == fmt, "PCF table format mismatch"
    return fmt, (">" if fmt & PCF_BYTE_MSB else "<"), offset + 4


def read_pcf(path: Path) -> PcfFont:
    data = path.read_bytes()
    magic, count = struct.unpack_from("<4sI", data, 0)
    if magic != b"\x01fcp":
        raise SystemExit(f"{path}: not a PCF file")
    toc = {}
    for i in range(count):
        kind, fmt, size, offset = struct.unpack_from("<4I", data, 8 + 16 * i)
        toc[kind] = (fmt, size, offset)

    _fmt, e, o = _table(data, toc, PCF_PROPERTIES)
    (nprops,) = struct.unpack_from(e + "I", data, o)
    raw_props = [struct.unpack_from(e + "IBI", data, o + 4 + 9 * i) for i in range(nprops)]
    so = o + 4 + 9 * nprops + (4 - (nprops & 3)) % 4
    (ssize,) = struct.unpack_from(e + "I", data, so)
    strings = data[so + 4 : so + 4 + ssize]

    def cstr(off: int) -> str:
        return strings[off : strings.index(b"\0", off)].decode("latin-1")

    properties: dict[str, str | int] = {
        cstr(name): (cstr(value) if is_str else value) for name, is_str, value in raw_props
    }

    accel = PCF_BDF_ACCELERATORS if PCF_BDF_ACCELERATORS in toc else PCF_ACCELERATORS
    _fmt, e, o = _table(data, toc, accel)
    font_ascent, font_descent = struct.unpack_from(e + "ii", data, o + 8)
    properties.setdefault("FONT_ASCENT", font_ascent)
    properties.setdefault("FONT_DESCENT", font_descent)

    fmt, e, o = _table(data, toc, PCF_METRICS)
    metrics: list[tuple[int, int, int, int, int]] = []
    if fmt & PCF_COMPRESSED_METRICS:
        (n,) = struct.unpack_from(e + "H", data, o)
        for i in range(n):
            vals = struct.unpack_from("5B", data, o + 2 + 5 * i)
            lsb, rsb, adv, asc, desc = (v - 0x80 for v in vals)
            metrics.append((lsb, rsb, adv, asc, desc))
    else:
        (n,) = struct.unpack_from(e + "I", data, o)
        for i in range(n):
            lsb, rsb, adv, asc, desc, _attr = struct.unpack_from(e + "5hH", data, o + 4 + 12 * i)
            metrics.append((lsb, rsb, adv, asc, desc))

    fmt, e, o = _table(data, toc, PCF_BITMAPS)
    if not fmt & PCF_BIT_MSB or (fmt >> 4) & 3:
        raise SystemExit(f"{path}: only MSB-first bitmaps with 1-byte scan units are supported")
    pad = 1 << (fmt & 3)
    (n,) = struct.unpack_from(e + "I", data, o)
    offsets = struct.unpack_from(e + f"{n}I", data, o + 4)
    bitmap_base = o + 4 + 4 * n + 16

    fmt, e, o = _table(data, toc, PCF_BDF_ENCODINGS)
    min2, max2, min1, max1, _default = struct.unpack_from(e + "5H", data, o)
    span = max2 - min2 + 1
    nenc = span * (max1 - min1 + 1)
    indices = struct.unpack_from(e + f"{nenc}H", data, o + 10)

    glyphs: dict[int, Glyph] = {}
    for k, gi in enumerate(indices):
        if gi == 0xFFFF:
            continue
        cp = ((min1 + k // span) << 8) | (min2 + k % span)
        lsb, rsb, adv, asc, desc = metrics[gi]
        width, height = rsb - lsb, asc + desc
        stride = ((width + 7) // 8 + pad - 1) // pad * pad
        start = bitmap_base + offsets[gi]
        rows = tuple(
            data[start + r * stride : start + r * stride + (width + 7) // 8] for r in range(height)
        )
        glyphs[cp] = Glyph(cp, adv, lsb, width, asc, desc, rows)
    return PcfFont(properties, glyphs)


def write_bdf(font: PcfFont, size: int, keep: set[int]) -> bytes:
    p = font.properties
    glyphs = [font.glyphs[cp] for cp in sorted(keep) if cp in font.glyphs]
    ascent, descent = int(p["FONT_ASCENT"]), int(p["FONT_DESCENT"])
    max_w = max(g.width for g in glyphs)
    min_x = min(g.left for g in glyphs)
    out = io.StringIO()
    w = out.write
    w("STARTFONT 2.1\n")
    w(f"FONT {p['FONT']}\n")
    w(f"SIZE {size} 75 75\n")
    w(f"FONTBOUNDINGBOX {max_w} {ascent + descent} {min_x} {-descent}\n")
    w("COMMENT Subset of WenQuanYi Bitmap Song (Debian xfonts-wqy), glyphs unaltered;\n")
    w("COMMENT made by assets/fonts/build_fonts.py. Licence: LICENSE-wqy-bitmap-song.txt\n")
    props = {
        "FAMILY_NAME": p.get("FAMILY_NAME", "WenQuanYi Bitmap Song"),
        "PIXEL_SIZE": size,
        "FONT_ASCENT": ascent,
        "FONT_DESCENT": descent,
        "CHARSET_REGISTRY": "ISO10646",
        "CHARSET_ENCODING": "1",
        "COPYRIGHT": p.get("COPYRIGHT", "WenQuanYi Board of Trustees"),
    }
    w(f"STARTPROPERTIES {len(props)}\n")
    for k, v in props.items():
        w(f'{k} "{v}"\n' if isinstance(v, str) else f"{k} {v}\n")
    w("ENDPROPERTIES\n")
    w(f"CHARS {len(glyphs)}\n")
    for g in glyphs:
        w(f"STARTCHAR U+{g.codepoint:04X}\nENCODING {g.codepoint}\n")
        w(f"SWIDTH {g.advance * 1000 // size} 0\nDWIDTH {g.advance} 0\n")
        w(f"BBX {g.width} {g.ascent + g.descent} {g.left} {-g.descent}\nBITMAP\n")
        for row in g.rows:
            w(row.hex().upper() + "\n")
        w("ENDCHAR\n")
    w("ENDFONT\n")
    return out.getvalue().encode("ascii")


def fetch_pcf_dir(deb: Path | None, work: Path) -> Path:
    if deb is None:
        subprocess.run(["apt-get", "download", "xfonts-wqy"], cwd=work, check=True)  # noqa: S607
        deb = next(work.glob("xfonts-wqy_*.deb"))
    subprocess.run(["dpkg-deb", "-x", str(deb), str(work / "x")], check=True)  # noqa: S603, S607
    return work / "x" / "usr" / "share" / "fonts" / "X11" / "misc"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--deb", type=Path, help="xfonts-wqy .deb file")
    ap.add_argument("--pcf-dir", type=Path, help="directory holding wenquanyi_*.pcf")
    ap.add_argument("--out", type=Path, default=HERE, help="output directory")
    args = ap.parse_args()
    keep = wanted_codepoints()
    with tempfile.TemporaryDirectory() as tmp:
        pcf_dir = args.pcf_dir or fetch_pcf_dir(args.deb, Path(tmp))
        for size, name in STRIKES.items():
            font = read_pcf(pcf_dir / name)
            bdf = write_bdf(font, size, keep)
            target = args.out / OUT_NAME.format(size=size)
            with (
                target.open("wb") as f,
                gzip.GzipFile(filename="", mode="wb", fileobj=f, compresslevel=9, mtime=0) as gz,
            ):
                gz.write(bdf)
            present = sum(1 for cp in keep if cp in font.glyphs)
            print(f"{target.name}: {present} glyphs, {target.stat().st_size} bytes")
        if args.pcf_dir is None:
            doc = Path(tmp) / "x" / "usr" / "share" / "doc" / "xfonts-wqy" / "copyright"
            gpl = Path("/usr/share/common-licenses/GPL-2")
            if doc.exists():
                lic = args.out / "LICENSE-wqy-bitmap-song.txt"
                with lic.open("w", encoding="utf-8") as f:
                    f.write(doc.read_text(encoding="utf-8"))
                    if gpl.exists():
                        f.write("\n\n" + "=" * 72 + "\n" + gpl.read_text(encoding="utf-8"))
    shutil.rmtree(HERE / "__pycache__", ignore_errors=True)


if __name__ == "__main__":
    main()
