"""What the kiosk and LED screens show, gathered from the store in one place.

The API's `/api/v1/stats` and the kiosk panels both read figures through
`town_figures`, so a page can never disagree with the API.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from display.domain import SHANGHAI, Notice, PublicCase, Stats, local_date, now_utc

if TYPE_CHECKING:
    from display.context import Context


@dataclass(frozen=True)
class Figures:
    total: Stats
    year: Stats
    month: Stats
    stale_since: datetime | None


async def town_figures(ctx: Context, town: str | None) -> Figures:
    now = now_utc().astimezone(SHANGHAI)
    year_start = datetime(now.year, 1, 1, tzinfo=SHANGHAI).astimezone(UTC)
    month_start = datetime(now.year, now.month, 1, tzinfo=SHANGHAI).astimezone(UTC)
    return Figures(
        total=await ctx.store.stats(town),
        year=await ctx.store.stats(town, since=year_start),
        month=await ctx.store.stats(town, since=month_start),
        stale_since=await ctx.stale_since(town),
    )


async def open_cases(ctx: Context, town: str | None,
                     limit: int = 50) -> list[tuple[PublicCase, int | None]]:
    rows = await ctx.store.list_cases(town=town, open_only=True, limit=limit)
    today = local_date(now_utc())
    return [(c, ctx.days_left(c, today)) for c in rows]


async def live_notices(ctx: Context, town: str | None, limit: int = 10) -> list[Notice]:
    return await ctx.store.list_notices(town, live_at=now_utc(), limit=limit)


async def open_trend(ctx: Context, town: str | None,
                     weeks: int = 8) -> list[tuple[date, int]]:
    """Open cases at the end of each of the last `weeks` weeks (清零 progress)."""
    today = local_date(now_utc())
    days = [today - timedelta(days=7 * i) for i in range(weeks - 1, -1, -1)]
    counts = await ctx.store.open_trend(town, days)
    return list(zip(days, counts, strict=True))
