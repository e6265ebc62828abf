"""What a board shows: the public content the renderer draws, and its stable hash."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from display.domain import Notice, PublicCase, Stats


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
