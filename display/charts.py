"""Chart geometry for server-rendered SVG.

This module only computes where things go; the templates (`_partials.html`)
draw the SVG with autoescaping on, so no label is ever inserted unescaped.
Colours and type sizes live in the stylesheet (CSP forbids inline styles).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class Bar:
    label: str
    value: int
    x: float
    y: float
    width: float
    height: float
    #: Where the value label sits (its baseline).
    value_x: float
    value_y: float
    #: Where the category label sits (its baseline).
    label_x: float
    label_y: float
    highlight: bool = False


@dataclass(frozen=True)
class BarChart:
    """Horizontal bars: a label on the left, the bar, the value at its end."""

    width: int
    height: int
    bars: tuple[Bar, ...]
    total: int
    label_width: float

    @property
    def empty(self) -> bool:
        return self.total == 0


@dataclass(frozen=True)
class TrendChart:
    """Vertical bars, one per week, with a line over their tops (清零 progress)."""

    width: int
    height: int
    bars: tuple[Bar, ...]
    #: SVG path data of the line through the bar tops.
    line: str
    baseline_y: float
    first: int
    last: int

    @property
    def cleared(self) -> bool:
        return self.last == 0

    @property
    def change(self) -> int:
        return self.last - self.first


def _fmt(v: float) -> float:
    return round(v, 1)


def channel_bars(
    channels: Mapping[str, int],
    *,
    width: int = 900,
    row_height: int = 64,
    label_width: int = 300,
    limit: int = 8,
) -> BarChart:
    """Bars for the channels appeals came from, largest first; the rest fold into 其他."""
    items = sorted(channels.items(), key=lambda kv: (-kv[1], kv[0]))
    if len(items) > limit:
        rest = sum(n for _, n in items[limit - 1 :])
        items = [*items[: limit - 1], ("其他", rest)]
    total = sum(n for _, n in items)
    top = max((n for _, n in items), default=0)
    value_room = 170.0
    span = width - label_width - value_room
    bars = []
    for i, (label, n) in enumerate(items):
        y = i * row_height + row_height * 0.15
        h = row_height * 0.7
        w = span * n / top if top else 0.0
        x = float(label_width)
        bars.append(
            Bar(
                label=label,
                value=n,
                x=x,
                y=_fmt(y),
                width=_fmt(max(w, 2.0 if n else 0.0)),
                height=_fmt(h),
                value_x=_fmt(x + w + 14),
                value_y=_fmt(y + h * 0.72),
                label_x=float(label_width - 18),
                label_y=_fmt(y + h * 0.72),
                highlight=i == 0,
            )
        )
    return BarChart(
        width=width,
        height=max(len(items), 1) * row_height,
        bars=tuple(bars),
        total=total,
        label_width=float(label_width),
    )


def trend_chart(
    points: Sequence[tuple[date, int]], *, width: int = 360, height: int = 240
) -> TrendChart:
    """Weekly open-case counts as bars with a line; the latest week is highlighted."""
    top_pad, bottom_pad = 34.0, 34.0
    plot_h = height - top_pad - bottom_pad
    n = len(points)
    side = 16.0  # room for the first and last week's labels
    slot = (width - 2 * side) / n if n else float(width)
    bar_w = slot * 0.62
    top = max((v for _, v in points), default=0)
    baseline = top_pad + plot_h
    bars = []
    vertices = []
    for i, (day, value) in enumerate(points):
        h = plot_h * value / top if top else 0.0
        x = side + i * slot + (slot - bar_w) / 2
        y = baseline - h
        cx = x + bar_w / 2
        bars.append(
            Bar(
                # Every other week is labelled (always the latest), so labels never touch.
                label=f"{day.month}/{day.day}" if (n - 1 - i) % 2 == 0 else "",
                value=value,
                x=_fmt(x),
                y=_fmt(y),
                width=_fmt(bar_w),
                height=_fmt(h),
                value_x=_fmt(cx),
                value_y=_fmt(y - 8),
                label_x=_fmt(cx),
                label_y=_fmt(height - 8),
                highlight=i == n - 1,
            )
        )
        vertices.append(f"{_fmt(cx)},{_fmt(y)}")
    line = ("M" + " L".join(vertices)) if vertices else ""
    return TrendChart(
        width=width,
        height=height,
        bars=tuple(bars),
        line=line,
        baseline_y=_fmt(baseline),
        first=points[0][1] if points else 0,
        last=points[-1][1] if points else 0,
    )
