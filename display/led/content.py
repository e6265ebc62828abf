"""What a board shows: the public content the renderer draws, and its stable hash."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from display.domain import Notice, PublicCase, Stats, local_date, now_utc
from display.settings import Board

if TYPE_CHECKING:
    from display.context import Context


@dataclass(frozen=True)
class LedContent:
    """Everything one board draws, already anonymized (public projection only)."""

    title: str
    town_name: str | None
    stats: Stats | None
    #: Open cases in display order, each with its working days left (None: unknown).
    cases: tuple[tuple[PublicCase, int | None], ...]
    notices: tuple[Notice, ...]
    #: An urgent notice takes over the whole board.
    urgent: Notice | None = None
    #: The feed is stale: the board says 数据更新于 HH:MM.
    stale_since: datetime | None = None


def _case_key(case: PublicCase, days_left: int | None) -> list[Any]:
    # Only what the renderer reads; a change elsewhere must not re-render.
    return [
        case.no,
        case.stage,
        case.category,
        case.summary if not case.sensitive else None,
        case.sensitive,
        case.overdue,
        case.supervised,
        days_left,
    ]


def _notice_key(n: Notice) -> list[Any]:
    return [n.id, n.title, n.body, n.case_no, n.urgent]


def _stats_key(s: Stats | None) -> list[Any] | None:
    if s is None:
        return None
    return [s.received, s.resolved, s.open, s.in_progress, s.overdue, s.supervised, s.on_time]


def _dt_key(dt: datetime | None) -> str | None:
    return dt.isoformat(timespec="minutes") if dt is not None else None


def content_key(content: LedContent) -> str:
    """A stable hash of what will be drawn: equal content, equal key, in any process."""
    doc = [
        content.title,
        content.town_name,
        _stats_key(content.stats),
        [_case_key(c, d) for c, d in content.cases],
        [_notice_key(n) for n in content.notices],
        _notice_key(content.urgent) if content.urgent is not None else None,
        _dt_key(content.stale_since),
    ]
    blob = json.dumps(doc, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


def _display_order(item: tuple[PublicCase, int | None]) -> tuple[int, int, str]:
    case, days_left = item
    # Trouble first (overdue, then supervised), then the nearest deadline.
    rank = 0 if case.overdue else 1 if case.supervised else 2
    return (rank, days_left if days_left is not None else 10**6, case.no)


async def load_content(ctx: Context, board: Board, *, case_limit: int = 40) -> LedContent:
    """Gather a board's content from the store: the public projection only."""
    now = now_utc()
    town = ctx.settings.town(board.town) if board.town else None
    slug = town.slug if town else None
    stats = await ctx.store.stats(slug)
    today = local_date(now)
    rows = await ctx.store.list_cases(town=slug, open_only=True, limit=case_limit)
    cases = sorted(((c, ctx.days_left(c, today)) for c in rows), key=_display_order)
    notices = await ctx.store.list_notices(slug, live_at=now, limit=10)
    urgent = next((n for n in notices if n.urgent), None)
    return LedContent(
        title=board.title,
        town_name=town.name if town else ctx.settings.county_name,
        stats=stats,
        cases=tuple(cases),
        notices=tuple(n for n in notices if not n.urgent),
        urgent=urgent,
        stale_since=await ctx.stale_since(slug),
    )
