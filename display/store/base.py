"""The Store protocol and the values that cross it.

`store/` knows SQL and nothing of HTTP. Both backends (sqlite.py, postgres.py)
implement `Store`; code above them never sees a connection.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol

from display.domain import Notice, PublicCase, Stats, TimelineEntry
from feeds.record import Rejected

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def ts(dt: datetime | None) -> str | None:
    """Fixed-width UTC text, so that string order is time order in SQLite."""
    if dt is None:
        return None
    # isoformat is several times cheaper than strftime (an import writes a few per
    # case) and, unlike strftime, pads years below 1000 to four digits.
    return dt.astimezone(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def parse_ts(value: str | None) -> datetime | None:
    if value is None:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def parse_date(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


@dataclass(frozen=True)
class CaseChange:
    """One case as ingest computed it, with any notes the source sent."""

    source_id: str
    case: PublicCase
    notes: tuple[TimelineEntry, ...] = ()


@dataclass(frozen=True)
class Event:
    seq: int
    kind: str
    town: str | None
    data: str  # JSON text, the public projection
    at: datetime | None = None


@dataclass
class IngestCounts:
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    withdrawn: int = 0
    quarantined: int = 0
    reasons: list[tuple[str | None, str]] = field(default_factory=list)

    def add(self, other: IngestCounts) -> None:
        """Add `other`'s counts and reasons to these."""
        self.new += other.new
        self.changed += other.changed
        self.unchanged += other.unchanged
        self.withdrawn += other.withdrawn
        self.quarantined += other.quarantined
        self.reasons.extend(other.reasons)

    def as_dict(self) -> dict[str, int]:
        return {
            "new": self.new,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "withdrawn": self.withdrawn,
            "quarantined": self.quarantined,
        }


@dataclass(frozen=True)
class FeedState:
    name: str
    cursor: str | None
    last_attempt_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    consecutive_failures: int
    counts: Mapping[str, int]
    quarantined: int = 0


@dataclass(frozen=True)
class QuarantineRow:
    """A current problem of a feed: one record's latest reason for being refused
    (or, for a problem with no record id, one reason)."""

    id: int
    feed: str
    source_id: str | None
    reason: str
    #: When it was last seen.
    at: datetime
    #: When it was first seen, and how many times since.
    first_at: datetime | None = None
    seen: int = 1


@dataclass(frozen=True)
class BoardRow:
    id: str
    town: str | None
    profile: Mapping[str, Any]
    token_hash: str | None
    last_seen_at: datetime | None


@dataclass(frozen=True)
class UserRow:
    id: int
    name: str
    role: str
    towns: tuple[str, ...]
    password_hash: str
    disabled: bool
    #: Bumped by every disable and enable; part of the session fingerprint.
    session_epoch: int = 0


@dataclass(frozen=True)
class AuditRow:
    id: int
    at: datetime
    actor: str
    action: str
    target: str | None
    detail: str | None
    ip: str | None


class Store(Protocol):
    """What the service needs from a database. Every write is one transaction, but
    for `apply_cases` of a large batch: chunks, the cursor with the last one."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def migrate(self) -> list[str]: ...

    # cases
    async def apply_cases(
        self,
        feed: str,
        changes: Sequence[CaseChange],
        rejected: Sequence[Rejected],
        cursor: str | None,
    ) -> IngestCounts: ...
    async def refresh_overdue(self, today: date) -> int: ...
    async def set_supervised(
        self, no: str, supervised: bool, note: str | None
    ) -> PublicCase | None: ...
    async def get_case(self, no: str) -> PublicCase | None: ...
    async def timeline(self, no: str) -> list[TimelineEntry]: ...
    async def list_cases(
        self,
        *,
        town: str | None = None,
        stage: str | None = None,
        open_only: bool = False,
        limit: int = 100,
        offset: int = 0,
    ) -> list[PublicCase]: ...
    async def stats(self, town: str | None = None, since: datetime | None = None) -> Stats: ...
    async def open_trend(self, town: str | None, days: Sequence[date]) -> list[int]: ...

    # events
    async def events_after(self, seq: int, limit: int = 1000) -> list[Event]: ...
    async def event_bounds(self) -> tuple[int, int]: ...
    async def prune_events(self, keep: int, before: datetime) -> int: ...

    # notices
    async def save_notice(self, notice: Notice) -> Notice: ...
    async def withdraw_notice(self, notice_id: int, at: datetime) -> Notice | None: ...
    async def get_notice(self, notice_id: int) -> Notice | None: ...
    async def list_notices(
        self, town: str | None = None, *, live_at: datetime | None = None, limit: int = 50
    ) -> list[Notice]: ...
    async def announce_due_notices(self, now: datetime) -> int: ...

    # feeds
    async def load_cursor(self, feed: str) -> str | None: ...
    async def record_failure(self, feed: str, error: str, at: datetime) -> None: ...
    async def feed_states(self) -> list[FeedState]: ...
    async def prune_quarantine(self, before: datetime) -> int:
        """Forget problems last seen before `before`; how many."""
        ...

    async def quarantine(
        self, feed: str | None = None, limit: int = 100
    ) -> list[QuarantineRow]: ...

    # boards
    async def upsert_board(
        self, board_id: str, town: str | None, profile: Mapping[str, Any], token_hash: str | None
    ) -> None: ...
    async def boards(self) -> list[BoardRow]: ...
    async def touch_boards(self, seen: Mapping[str, datetime]) -> None: ...

    # staff
    async def add_user(
        self, name: str, role: str, towns: Sequence[str], password_hash: str
    ) -> UserRow: ...
    async def get_user(self, name: str) -> UserRow | None: ...
    async def list_users(self) -> list[UserRow]: ...
    async def set_password(self, name: str, password_hash: str) -> None: ...
    async def set_disabled(self, name: str, disabled: bool) -> None:
        """Disable or enable an account; either way its sessions end."""
        ...

    async def audit(
        self, actor: str, action: str, target: str | None, detail: str | None, ip: str | None
    ) -> None: ...
    async def audit_log(self, limit: int = 200) -> list[AuditRow]: ...

    async def backup(self, path: str) -> None: ...


def case_row_values(feed: str, source_id: str, c: PublicCase) -> tuple[Any, ...]:
    return (
        c.no,
        feed,
        source_id,
        c.town,
        c.village,
        c.kind,
        c.category,
        c.channel,
        c.department,
        c.stage,
        c.outcome,
        c.summary,
        int(c.sensitive),
        ts(c.received_at),
        ts(c.updated_at),
        ts(c.resolved_at),
        ts(c.replied_at),
        c.due_date.isoformat() if c.due_date else None,
        int(c.due_estimated),
        c.first_reply_due.isoformat() if c.first_reply_due else None,
        int(c.overdue),
        None if c.on_time is None else int(c.on_time),
        int(c.supervised),
        c.satisfaction,
        int(c.withdrawn),
    )


CASE_COLUMNS = (
    "no, feed, source_id, town, village, kind, category, channel, department, stage, outcome, "
    "summary, sensitive, received_at, updated_at, resolved_at, replied_at, due_date, "
    "due_estimated, first_reply_due, overdue, on_time, supervised, satisfaction, withdrawn"
)
CASE_SELECT = (
    "no, town, stage, kind, received_at, updated_at, category, channel, department, outcome, "
    "summary, village, sensitive, resolved_at, replied_at, due_date, due_estimated, "
    "first_reply_due, overdue, supervised, satisfaction, withdrawn, on_time"
)


def case_from_row(r: Sequence[Any]) -> PublicCase:
    received = parse_ts(r[4])
    updated = parse_ts(r[5])
    assert received is not None and updated is not None
    return PublicCase(
        no=r[0],
        town=r[1],
        stage=r[2],
        kind=r[3],
        received_at=received,
        updated_at=updated,
        category=r[6],
        channel=r[7],
        department=r[8],
        outcome=r[9],
        summary=r[10],
        village=r[11],
        sensitive=bool(r[12]),
        resolved_at=parse_ts(r[13]),
        replied_at=parse_ts(r[14]),
        due_date=parse_date(r[15]),
        due_estimated=bool(r[16]),
        first_reply_due=parse_date(r[17]),
        overdue=bool(r[18]),
        supervised=bool(r[19]),
        satisfaction=r[20],
        withdrawn=bool(r[21]),
        on_time=None if r[22] is None else bool(r[22]),
    )


NOTICE_SELECT = (
    "id, town, title, body, case_no, urgent, publish_at, expires_at, withdrawn_at, "
    "created_at, created_by"
)


def notice_from_row(r: Sequence[Any]) -> Notice:
    return Notice(
        id=r[0],
        town=r[1],
        title=r[2],
        body=r[3],
        case_no=r[4],
        urgent=bool(r[5]),
        publish_at=parse_ts(r[6]),
        expires_at=parse_ts(r[7]),
        withdrawn_at=parse_ts(r[8]),
        created_at=parse_ts(r[9]),
        created_by=r[10],
    )


#: One encoder for every event: `json.dumps` with options builds a new encoder per
#: call, which was a third of encoding a case event.
_EVENT_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def event_json(kind: str, payload: Mapping[str, Any]) -> str:
    return _EVENT_ENCODER.encode(payload)


def migration_files() -> list[tuple[str, str]]:
    return [(p.stem, p.read_text(encoding="utf-8")) for p in sorted(MIGRATIONS_DIR.glob("*.sql"))]


@dataclass
class CasePlan:
    """What one batch changes, decided in memory so that the backends can write it
    with a handful of bulk statements inside one transaction."""

    counts: IngestCounts = field(default_factory=IngestCounts)
    upserts: list[tuple[Any, ...]] = field(default_factory=list)
    timeline: list[tuple[Any, ...]] = field(default_factory=list)
    notes: list[tuple[Any, ...]] = field(default_factory=list)
    events: list[tuple[str, str | None, str]] = field(default_factory=list)
    quarantine: list[tuple[str | None, str]] = field(default_factory=list)
    touched: set[str] = field(default_factory=set)


def plan_cases(
    feed: str,
    changes: Sequence[CaseChange],
    rejected: Sequence[Rejected],
    existing: Mapping[str, tuple[str, str, PublicCase]],
) -> CasePlan:
    """Decide, for each incoming case, whether it is new, changed or unchanged.

    `existing` maps a case number to (feed, source_id, stored case). An event is
    planned only when something visible changed. A case that appears twice in one
    batch is applied in order, each version compared with the one before it.
    """
    import dataclasses

    existing = dict(existing)
    plan = CasePlan()
    counts = plan.counts
    for ch in changes:
        c = ch.case
        row = existing.get(c.no)
        if row is not None and (row[0], row[1]) != (feed, ch.source_id):
            reason = "编号与其他数据源的案件重复"
            counts.quarantined += 1
            counts.reasons.append((ch.source_id, reason))
            plan.quarantine.append((ch.source_id, reason))
            continue
        old = row[2] if row is not None else None
        # Supervision set by county staff survives a feed that does not know it.
        if old is not None and old.supervised and not c.supervised:
            c = dataclasses.replace(c, supervised=True)
        if old is None and c.withdrawn:
            counts.withdrawn += 1
            continue
        if old is not None and old.visible_fields() == c.visible_fields():
            counts.unchanged += 1
            continue
        plan.upserts.append(case_row_values(feed, ch.source_id, c))
        if old is None or old.stage != c.stage:
            plan.timeline.append((c.no, ts(stage_time(c)), c.stage, c.department, c.outcome))
        for note in ch.notes:
            plan.notes.append((c.no, ts(note.at), note.stage, note.note))
        if c.withdrawn:
            counts.withdrawn += 1
        elif old is None:
            counts.new += 1
        else:
            counts.changed += 1
        plan.events.append(("case", c.town, event_json("case", c.to_json())))
        plan.touched.add(c.town)
        if old is not None and old.town != c.town:
            plan.touched.add(old.town)
        existing[c.no] = (feed, ch.source_id, c)
    for rej in rejected:
        counts.quarantined += 1
        counts.reasons.append((rej.source_id, rej.reason))
        plan.quarantine.append((rej.source_id, rej.reason[:500]))
    return plan


def stage_time(c: PublicCase) -> datetime:
    """When the case reached its current stage, as well as the source tells."""
    if c.stage in ("resolved", "verified") and c.resolved_at:
        return c.resolved_at if c.stage == "resolved" else c.updated_at
    if c.stage == "replied" and c.replied_at:
        return c.replied_at
    if c.stage == "registered":
        return c.received_at
    return c.updated_at
