"""What the kiosk and LED screens show, gathered from the store in one place.

The API's `/api/v1/stats` and the kiosk panels both read figures through
`town_figures`, so a page can never disagree with the API.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from display.charts import TrendChart, trend_chart
from display.domain import (
    SATISFACTION_LABELS,
    SHANGHAI,
    Notice,
    PublicCase,
    Stats,
    TimelineEntry,
    local_date,
    now_utc,
)
from display.settings import Town

if TYPE_CHECKING:
    from display.context import Context


@dataclass(frozen=True)
class Figures:
    total: Stats
    year: Stats
    month: Stats
    stale_since: datetime | None


async def town_figures(ctx: Context, town: str | None) -> Figures:
    """A town's (None: the county's) figures: all time, this year, this month."""
    now = now_utc().astimezone(SHANGHAI)
    year_start = datetime(now.year, 1, 1, tzinfo=SHANGHAI).astimezone(UTC)
    month_start = datetime(now.year, now.month, 1, tzinfo=SHANGHAI).astimezone(UTC)
    return Figures(
        total=await ctx.store.stats(town),
        year=await ctx.store.stats(town, since=year_start),
        month=await ctx.store.stats(town, since=month_start),
        stale_since=await ctx.stale_since(town),
    )


async def open_cases(
    ctx: Context, town: str | None, limit: int = 50
) -> list[tuple[PublicCase, int | None]]:
    """Open cases, overdue and supervised first, each with its working days left."""
    rows = await ctx.store.list_cases(town=town, open_only=True, limit=limit)
    today = local_date(now_utc())
    return [(c, ctx.days_left(c, today)) for c in rows]


async def live_notices(ctx: Context, town: str | None, limit: int = 10) -> list[Notice]:
    return await ctx.store.list_notices(town, live_at=now_utc(), limit=limit)


async def open_trend(ctx: Context, town: str | None, weeks: int = 8) -> list[tuple[date, int]]:
    """Open cases at the end of each of the last `weeks` weeks (清零 progress)."""
    today = local_date(now_utc())
    days = [today - timedelta(days=7 * i) for i in range(weeks - 1, -1, -1)]
    counts = await ctx.store.open_trend(town, days)
    return list(zip(days, counts, strict=True))


# --- case lookup -------------------------------------------------------------------

#: Case numbers are the source system's ids: letters, digits and dashes (LS2026-0012).
CASE_NO = re.compile(r"[A-Z0-9][A-Z0-9-]{0,39}")
_SPLIT_NO = re.compile(r"([A-Z]+)(\d{4})(\d+)")
_PREFIX = re.compile(r"[A-Z]+")
_DASHES = dict.fromkeys(map(ord, "‐‑‒–—―−ー一"), "-")


def normalize_case_no(raw: str) -> str | None:
    """The canonical form of a typed case number, or None when it cannot be one.

    Full-width characters (Ｌ Ｓ １) become ASCII, dashes of any kind become '-',
    spaces go, letters become upper case.
    """
    text = unicodedata.normalize("NFKC", raw).translate(_DASHES)
    text = "".join(text.split()).upper()
    return text if CASE_NO.fullmatch(text) else None


@dataclass(frozen=True)
class Step:
    """One line of a case's public timeline."""

    entry: TimelineEntry
    satisfaction_label: str | None = None


@dataclass(frozen=True)
class CaseLookup:
    case: PublicCase
    days_left: int | None
    steps: tuple[Step, ...]


async def find_case(ctx: Context, no: str) -> CaseLookup | None:
    """A case and its anonymized timeline by its (normalized) number.

    A number typed without its dash (LS20260012) also finds LS2026-0012.
    """
    case = await ctx.store.get_case(no)
    if case is None and "-" not in no:
        m = _SPLIT_NO.fullmatch(no)
        if m:
            no = f"{m[1]}{m[2]}-{m[3]}"
            case = await ctx.store.get_case(no)
    if case is None:
        return None
    timeline = await ctx.store.timeline(case.no)
    if case.sensitive:
        # Sensitive cases show the category only: no free text, not even in notes.
        timeline = [
            TimelineEntry(at=t.at, stage=t.stage, department=t.department, outcome=t.outcome)
            for t in timeline
        ]
    if not any(t.stage == "registered" for t in timeline):
        # A case first seen in a later stage was still registered when it was received.
        timeline = [TimelineEntry(at=case.received_at, stage="registered"), *timeline]
    steps = [Step(t) for t in timeline]
    rated = SATISFACTION_LABELS.get(case.satisfaction or "")
    if rated and steps:
        # The citizen's rating belongs to the reply: the last replied (or verified) step.
        at = max(
            (i for i, t in enumerate(timeline) if t.stage in ("replied", "verified")),
            default=len(steps) - 1,
        )
        steps[at] = Step(steps[at].entry, rated)
    return CaseLookup(case=case, days_left=ctx.days_left(case), steps=tuple(steps))


async def case_prefixes(ctx: Context, town: str | None, limit: int = 6) -> list[str]:
    """The letter prefixes of recent case numbers (LS, HJ…), most common first, for the
    keypad's prefix picker."""
    rows = await ctx.store.list_cases(town=town, limit=300)
    counts: Counter[str] = Counter()
    for c in rows:
        m = _PREFIX.match(c.no.upper())
        if m:
            counts[m[0]] += 1
    return [p for p, _ in counts.most_common(limit)]


# --- county overview -----------------------------------------------------------------


@dataclass(frozen=True)
class TownRow:
    town: Town
    stats: Stats
    trend: TrendChart


async def county_rows(ctx: Context, weeks: int = 8) -> list[TownRow]:
    """Every town's figures (the same as /api/v1/stats?town=) and its 清零 trend."""
    rows = []
    for town in ctx.settings.towns:
        figures = await town_figures(ctx, town.slug)
        rows.append(
            TownRow(
                town=town,
                stats=figures.total,
                trend=trend_chart(await open_trend(ctx, town.slug, weeks)),
            )
        )
    return rows
