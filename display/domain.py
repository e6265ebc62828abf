"""The public vocabulary: stages, outcomes, the public case, notices, figures.

Everything here is what may be shown. Values that cross module boundaries are
frozen dataclasses; their `to_json()` is the one shape used by the API, the
SSE stream and the templates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from feeds.record import KINDS, OUTCOMES, SATISFACTIONS, SHANGHAI, STAGE_LABELS, STAGES

__all__ = [
    "CLOSED_STAGES",
    "KINDS",
    "OPEN_STAGES",
    "OUTCOMES",
    "SATISFACTIONS",
    "SHANGHAI",
    "STAGES",
    "Notice",
    "PublicCase",
    "Stats",
    "TimelineEntry",
    "local_date",
    "now_utc",
]

OPEN_STAGES = ("registered", "assigned", "in_progress")
CLOSED_STAGES = ("resolved", "replied", "verified")

OUTCOME_LABELS = {
    "resolved": "已解决",
    "explained": "已解释说明",
    "planned": "纳入规划",
}
KIND_LABELS = {"consult": "咨询", "general": "一般"}
SATISFACTION_LABELS = {
    "satisfied": "满意",
    "basically_satisfied": "基本满意",
    "dissatisfied": "不满意",
}


def now_utc() -> datetime:
    return datetime.now(UTC)


def local_date(dt: datetime) -> date:
    """The calendar date in Asia/Shanghai, which is what deadlines count in."""
    return dt.astimezone(SHANGHAI).date()


def _iso(dt: datetime | None) -> str | None:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z") if dt else None


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    stage: str
    note: str | None = None
    department: str | None = None
    outcome: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "at": _iso(self.at),
            "stage": self.stage,
            "stage_label": STAGE_LABELS.get(self.stage, self.stage),
            "note": self.note,
            "department": self.department,
            "outcome": self.outcome,
            "outcome_label": OUTCOME_LABELS.get(self.outcome or "", None),
        }


@dataclass(frozen=True)
class PublicCase:
    """The anonymized public copy of a case. Nothing here may identify a person."""

    no: str
    town: str
    stage: str
    kind: str
    received_at: datetime
    updated_at: datetime
    category: str | None = None
    channel: str | None = None
    department: str | None = None
    outcome: str | None = None
    #: Redacted summary; None for sensitive cases, which show only the category.
    summary: str | None = None
    #: None for sensitive cases.
    village: str | None = None
    sensitive: bool = False
    resolved_at: datetime | None = None
    replied_at: datetime | None = None
    due_date: date | None = None
    due_estimated: bool = False
    first_reply_due: date | None = None
    overdue: bool = False
    supervised: bool = False
    satisfaction: str | None = None
    withdrawn: bool = False
    #: Closed within its deadline; None while open or without a deadline.
    on_time: bool | None = None

    @property
    def is_open(self) -> bool:
        return self.stage in OPEN_STAGES

    @property
    def stage_label(self) -> str:
        return STAGE_LABELS.get(self.stage, self.stage)

    @property
    def outcome_label(self) -> str | None:
        return OUTCOME_LABELS.get(self.outcome) if self.outcome else None

    def visible_fields(self) -> tuple[Any, ...]:
        """What screens show; a change here (and only here) makes an event."""
        return (
            self.town,
            self.stage,
            self.kind,
            self.category,
            self.channel,
            self.department,
            self.outcome,
            self.summary,
            self.village,
            self.sensitive,
            self.resolved_at,
            self.replied_at,
            self.due_date,
            self.due_estimated,
            self.first_reply_due,
            self.overdue,
            self.supervised,
            self.satisfaction,
            self.withdrawn,
            self.on_time,
        )

    def to_json(self, days_left: int | None = None) -> dict[str, Any]:
        return {
            "no": self.no,
            "town": self.town,
            "village": self.village,
            "kind": self.kind,
            "kind_label": KIND_LABELS.get(self.kind, self.kind),
            "category": self.category,
            "channel": self.channel,
            "department": self.department,
            "stage": self.stage,
            "stage_label": self.stage_label,
            "outcome": self.outcome,
            "outcome_label": self.outcome_label,
            "summary": self.summary,
            "sensitive": self.sensitive,
            "received_at": _iso(self.received_at),
            "updated_at": _iso(self.updated_at),
            "resolved_at": _iso(self.resolved_at),
            "replied_at": _iso(self.replied_at),
            "due_date": self.due_date.isoformat() if self.due_date else None,
            "due_estimated": self.due_estimated,
            "first_reply_due": self.first_reply_due.isoformat() if self.first_reply_due else None,
            "days_left": days_left,
            "overdue": self.overdue,
            "supervised": self.supervised,
            "satisfaction": self.satisfaction,
            "satisfaction_label": SATISFACTION_LABELS.get(self.satisfaction or "", None),
            "withdrawn": self.withdrawn,
            "on_time": self.on_time,
        }


@dataclass(frozen=True)
class Notice:
    """A resolved-case notice (办结公示) or an urgent announcement, written by staff."""

    id: int
    town: str | None  # None: every town
    title: str
    body: str
    case_no: str | None = None
    urgent: bool = False
    publish_at: datetime | None = None
    expires_at: datetime | None = None
    withdrawn_at: datetime | None = None
    created_at: datetime | None = None
    created_by: str | None = None

    def is_live(self, now: datetime) -> bool:
        if self.withdrawn_at is not None:
            return False
        if self.publish_at is not None and self.publish_at > now:
            return False
        return not (self.expires_at is not None and self.expires_at <= now)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "town": self.town,
            "title": self.title,
            "body": self.body,
            "case_no": self.case_no,
            "urgent": self.urgent,
            "publish_at": _iso(self.publish_at),
            "expires_at": _iso(self.expires_at),
            "withdrawn_at": _iso(self.withdrawn_at),
        }


@dataclass(frozen=True)
class Stats:
    """A town's (or the county's) figures. Computed by the store, one source of truth."""

    town: str | None
    received: int = 0
    resolved: int = 0
    open: int = 0
    in_progress: int = 0
    explained: int = 0
    planned: int = 0
    overdue: int = 0
    supervised: int = 0
    on_time: int = 0
    rated: int = 0
    satisfied: int = 0
    channels: dict[str, int] = field(default_factory=dict)

    @property
    def resolution_rate(self) -> float | None:
        return self.resolved / self.received if self.received else None

    @property
    def on_time_rate(self) -> float | None:
        return self.on_time / self.resolved if self.resolved else None

    @property
    def satisfaction_rate(self) -> float | None:
        return self.satisfied / self.rated if self.rated else None

    def to_json(self) -> dict[str, Any]:
        def pct(v: float | None) -> float | None:
            return round(v * 100, 1) if v is not None else None

        return {
            "town": self.town,
            "received": self.received,
            "resolved": self.resolved,
            "open": self.open,
            "in_progress": self.in_progress,
            "explained": self.explained,
            "planned": self.planned,
            "overdue": self.overdue,
            "supervised": self.supervised,
            "resolution_rate": pct(self.resolution_rate),
            "on_time_rate": pct(self.on_time_rate),
            "satisfaction_rate": pct(self.satisfaction_rate),
            "channels": dict(self.channels),
        }
