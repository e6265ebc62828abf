"""Chinese line breaking for pixel fonts.

Text arrives as styled runs (text plus a role that picks the colour). It is cut
into atoms that must stay whole: numbers with their unit (3个工作日, 12件, 85%),
dates (2026年3月5日, 2026-03-05), times (14:30) and case numbers
(LS2026-0012); every other character is an atom of its own. Atoms are then
glued by 避头尾 (kinsoku): closing punctuation (，。、！？）：；”」…) joins
the atom before it so it never starts a line, and opening brackets (（“「)
join the atom after them so they never end one. Lines are filled greedily;
a space is a break opportunity that disappears at the end of a line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from display.led.fonts import BitmapFont

#: Must not start a line.
NO_START = frozenset("，。、！？）：；”’」』】》〉〕〗｝…‥·・,.!?:;)]}%％～々ー")
#: Must not end a line.
NO_END = frozenset("（“‘「『【《〈〔〖｛([{")

_UNIT = r"(?:个工作日|个月|[件个天日号次户人元项条年月%％])?"
ATOM_RE = re.compile(
    r"\d{4}年\d{1,2}月\d{1,2}日"
    r"|\d{1,2}月\d{1,2}日"
    r"|\d{4}年\d{1,2}月"
    r"|[A-Za-z0-9]+(?:[-_./:：,][A-Za-z0-9]+)*" + _UNIT + r"|\s+|.",
    re.S,
)


@dataclass(frozen=True)
class Run:
    text: str
    role: str = "text"
    #: Never break inside this run, nor between it and an adjacent keep run
    #: (short markers: 已超期, 办理中, 办结113件, a category).
    keep: bool = False


@dataclass(frozen=True)
class Line:
    runs: tuple[Run, ...]
    align: str = "left"  # left | center

    @property
    def text(self) -> str:
        return "".join(r.text for r in self.runs)


Styled = list[tuple[str, str]]  # (character, role)


def _styled(runs: Iterable[Run]) -> Styled:
    return [(ch, r.role) for r in runs for ch in r.text]


def _keep_spans(runs: Iterable[Run]) -> list[tuple[int, int]]:
    """Character spans never to break inside; adjacent keep runs form one span."""
    spans: list[tuple[int, int]] = []
    pos = 0
    for r in runs:
        end = pos + len(r.text)
        if r.keep:
            if spans and spans[-1][1] == pos:
                spans[-1] = (spans[-1][0], end)
            else:
                spans.append((pos, end))
        pos = end
    return [s for s in spans if s[1] - s[0] > 1]


def _to_runs(chars: Styled) -> tuple[Run, ...]:
    runs: list[Run] = []
    for ch, role in chars:
        if runs and runs[-1].role == role:
            runs[-1] = Run(runs[-1].text + ch, role)
        else:
            runs.append(Run(ch, role))
    return tuple(runs)


def atoms(text: str) -> list[str]:
    """The unbreakable pieces of `text`, before 避头尾 gluing."""
    return ATOM_RE.findall(text)


def _merge_keep(pieces: list[str], keep: Sequence[tuple[int, int]]) -> list[str]:
    if not keep:
        return pieces
    out: list[str] = []
    pos = 0
    for p in pieces:
        if out and any(s < pos < e for s, e in keep):
            out[-1] += p
        else:
            out.append(p)
        pos += len(p)
    return out


def clusters(text: str, keep: Sequence[tuple[int, int]] = ()) -> list[str]:
    """Atoms glued by 避头尾 (and `keep` spans); whitespace clusters are break opportunities."""
    out: list[str] = []
    for atom in _merge_keep(atoms(text), keep):
        if atom.isspace():
            out.append(atom)
            continue
        prev = out[-1] if out else None
        if prev is not None and not prev.isspace() and (atom[0] in NO_START or prev[-1] in NO_END):
            out[-1] = prev + atom
        elif (
            prev is not None
            and prev.isspace()
            and len(out) >= 2
            and (atom[0] in NO_START or out[-2][-1] in NO_END)
        ):
            # A space is no break where 避头尾 forbids one: glue across it.
            out[-2:] = [out[-2] + prev + atom]
        else:
            out.append(atom)
    return out


def wrap(runs: Sequence[Run], font: BitmapFont, width: int, align: str = "left") -> list[Line]:
    """Break styled text into lines at most `width` pixels wide."""
    chars = _styled(runs)
    text = "".join(ch for ch, _ in chars)
    lines: list[Styled] = []
    line: Styled = []
    line_w = 0
    pending: Styled = []  # a space waiting for the next cluster on the same line
    pos = 0
    for cl in clusters(text, _keep_spans(runs)):
        piece = chars[pos : pos + len(cl)]
        pos += len(cl)
        if cl.isspace():
            if line:
                pending = piece[:1]
            continue
        w = font.measure(cl)
        space_w = font.measure(pending[0][0]) if pending else 0
        if line and line_w + space_w + w <= width:
            line += pending + piece
            line_w += space_w + w
        elif not line and w <= width:
            line, line_w = list(piece), w
        else:
            if line:
                lines.append(line)
            line, line_w = [], 0
            if w <= width:
                line, line_w = list(piece), w
            else:
                # Wider than a whole line (a very long number on a tiny board):
                # the only place left to break is between characters.
                for item in piece:
                    cw = font.advance(item[0])
                    if line and line_w + cw > width:
                        # Still no closing mark first, no opening mark last, when
                        # moving one character down can avoid it.
                        carry: Styled = []
                        while len(line) > 1 and (
                            (carry[0][0] if carry else item[0]) in NO_START or line[-1][0] in NO_END
                        ):
                            carry.insert(0, line.pop())
                        while carry and carry[0][0].isspace():
                            carry.pop(0)  # the break falls on this space
                        if sum(font.advance(c) for c, _ in carry) + cw > width:
                            # A run of closing marks longer than a line: 避头尾 cannot
                            # hold here, the board's width must.
                            line += carry
                            carry = []
                        lines.append(line)
                        line = carry
                        line_w = sum(font.advance(c) for c, _ in carry)
                    if item[0].isspace() and not line:
                        continue  # a break: no space at the start of a line
                    line.append(item)
                    line_w += cw
        pending = []
    if line:
        lines.append(line)
    for chars_ in lines:
        while chars_ and chars_[-1][0].isspace():
            chars_.pop()  # a space that ended up at a break
    return [Line(_to_runs(chars_), align) for chars_ in lines if chars_]


def line_width(line: Line, font: BitmapFont) -> int:
    return font.measure(line.text)


def one_line(runs: Sequence[Run], align: str = "left") -> Line:
    """All runs on one line, collapsing whitespace (for marquees)."""
    chars = _styled(runs)
    out: Styled = []
    for ch, role in chars:
        if ch.isspace():
            if out and not out[-1][0].isspace():
                out.append((" ", role))
            continue
        out.append((ch, role))
    while out and out[-1][0].isspace():
        out.pop()
    return Line(_to_runs(out), align)
