"""CaseRecord: the contract between every case system and the display.

An adapter turns whatever its source speaks into CaseRecords. A CaseRecord is
raw: it may carry the requester's name, phone and address as *hints*. It lives
in memory only; `display.ingest` redacts it and drops the hints before
anything is written.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")

STAGES: tuple[str, ...] = (
    "registered",
    "assigned",
    "in_progress",
    "resolved",
    "replied",
    "verified",
)
#: What screens, staff and ledgers call each stage.
STAGE_LABELS: dict[str, str] = {
    "registered": "已登记",
    "assigned": "已交办",
    "in_progress": "办理中",
    "resolved": "已办结",
    "replied": "已回复",
    "verified": "已回访",
}
OUTCOMES: tuple[str, ...] = ("resolved", "explained", "planned")
KINDS: tuple[str, ...] = ("consult", "general")
SATISFACTIONS: tuple[str, ...] = ("satisfied", "basically_satisfied", "dissatisfied")

#: Field length limits. A source that sends more is sending garbage or an attack.
MAX_SOURCE_ID = 64
MAX_SUMMARY = 2000
MAX_SHORT = 100

HINT_FIELDS = ("requester_name", "requester_phone", "requester_address")


#: What staff read for a record field in a quarantine reason (the field's name follows).
FIELD_LABELS = {
    "record": "记录",
    "source_id": "编号",
    "service_request_id": "编号",
    "summary": "诉求内容",
    "received_at": "受理时间",
    "updated_at": "更新时间",
    "resolved_at": "办结时间",
    "replied_at": "答复时间",
    "town": "所属乡镇",
    "village": "村(社区)",
    "kind": "诉求性质",
    "category": "诉求类型",
    "channel": "受理渠道",
    "department": "责任单位",
    "status": "办理状态",
    "outcome": "办理结果",
    "supervised": "是否督办",
    "satisfaction": "回访满意度",
    "withdrawn": "是否撤销",
    "notes": "办理记录",
    "notes.at": "办理记录时间",
}


class RecordError(ValueError):
    """A record that cannot be accepted: which field, and why, in Chinese, as staff
    read it in the quarantine (`所属乡镇（town）：未知乡镇`); the field's own name is kept
    for whoever maintains the sending system. Never contains personal data."""

    def __init__(self, field: str, reason: str) -> None:
        label = FIELD_LABELS.get(field)
        super().__init__(f"{label}（{field}）：{reason}" if label else f"{field}：{reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True, slots=True)
class TimelineNote:
    """An update the source reported on a case (e.g. an Open311 service request update)."""

    at: datetime
    text: str
    stage: str | None = None


@dataclass(frozen=True, slots=True)
class CaseRecord:
    source_id: str
    summary: str
    received_at: datetime
    town: str | None = None
    village: str | None = None
    kind: str = "general"
    category: str | None = None
    channel: str | None = None
    department: str | None = None
    status: str = "registered"
    outcome: str | None = None
    updated_at: datetime | None = None
    resolved_at: datetime | None = None
    replied_at: datetime | None = None
    supervised: bool = False
    satisfaction: str | None = None
    #: The source withdrew the record (deleted, hidden, merged as a duplicate).
    withdrawn: bool = False
    notes: tuple[TimelineNote, ...] = ()
    # Hints: used to redact free text, never stored.
    requester_name: str | None = field(default=None, repr=False)
    requester_phone: str | None = field(default=None, repr=False)
    requester_address: str | None = field(default=None, repr=False)

    @property
    def hints(self) -> tuple[str, ...]:
        return tuple(
            h for h in (self.requester_name, self.requester_phone, self.requester_address) if h
        )

    def without_hints(self) -> CaseRecord:
        return dataclasses.replace(
            self, requester_name=None, requester_phone=None, requester_address=None
        )


def parse_datetime(value: Any, field_name: str) -> datetime:
    """Parse ISO 8601; a value without an offset is Asia/Shanghai local time."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        text = value.strip()
        if not text or len(text) > 40:
            raise RecordError(field_name, "无法识别的日期（应为 ISO 8601）")
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise RecordError(field_name, "无法识别的日期（应为 ISO 8601）") from None
    else:
        raise RecordError(field_name, "无法识别的日期（应为 ISO 8601）")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=SHANGHAI)
    if not (2000 <= dt.year <= 2100):
        raise RecordError(field_name, "年份超出范围")
    return dt.astimezone(UTC)


def _opt_str(data: Mapping[str, Any], key: str, limit: int = MAX_SHORT) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise RecordError(key, "应为文本")
    value = value.strip()
    if len(value) > limit:
        raise RecordError(key, f"超过{limit}个字符")
    return value or None


def _opt_dt(data: Mapping[str, Any], key: str) -> datetime | None:
    value = data.get(key)
    if value in (None, ""):
        return None
    return parse_datetime(value, key)


def _choice(
    data: Mapping[str, Any], key: str, allowed: tuple[str, ...], default: str | None
) -> str | None:
    value = data.get(key)
    if value in (None, ""):
        return default
    if not isinstance(value, str) or value not in allowed:
        raise RecordError(key, f"取值无效（应为 {', '.join(allowed)}）")
    return value


def _parse_notes(raw: Any) -> tuple[TimelineNote, ...]:
    if raw in (None, []):
        return ()
    if not isinstance(raw, list) or len(raw) > 100:
        raise RecordError("notes", "应为最多 100 条的数组")
    notes = []
    for item in raw:
        if not isinstance(item, Mapping):
            raise RecordError("notes", "每条记录应为 JSON 对象")
        text = _opt_str(item, "text", MAX_SUMMARY) or ""
        notes.append(
            TimelineNote(
                at=parse_datetime(item.get("at"), "notes.at"),
                text=text,
                stage=_choice(item, "stage", STAGES, None),
            )
        )
    return tuple(notes)


def record_from_mapping(data: Any) -> CaseRecord:
    """Validate one CaseRecord given as JSON (pushes, the JSON adapter).

    Raises RecordError naming the field; the message never echoes the value.
    """
    if not isinstance(data, Mapping):
        raise RecordError("record", "应为 JSON 对象")
    source_id = _opt_str(data, "source_id", MAX_SOURCE_ID)
    if not source_id:
        raise RecordError("source_id", "不能为空")
    if any(ord(c) < 32 for c in source_id):
        raise RecordError("source_id", "含有控制字符")
    summary = _opt_str(data, "summary", MAX_SUMMARY)
    if not summary:
        raise RecordError("summary", "不能为空")
    if "received_at" not in data or data["received_at"] in (None, ""):
        raise RecordError("received_at", "不能为空")
    supervised = data.get("supervised", False)
    if supervised in (None, ""):
        supervised = False
    if not isinstance(supervised, bool):
        raise RecordError("supervised", "应为 true 或 false")
    withdrawn = data.get("withdrawn", False)
    if not isinstance(withdrawn, bool):
        raise RecordError("withdrawn", "应为 true 或 false")
    return CaseRecord(
        source_id=source_id,
        summary=summary,
        received_at=parse_datetime(data["received_at"], "received_at"),
        town=_opt_str(data, "town"),
        village=_opt_str(data, "village"),
        kind=_choice(data, "kind", KINDS, "general") or "general",
        category=_opt_str(data, "category"),
        channel=_opt_str(data, "channel"),
        department=_opt_str(data, "department"),
        status=_choice(data, "status", STAGES, "registered") or "registered",
        outcome=_choice(data, "outcome", OUTCOMES, None),
        updated_at=_opt_dt(data, "updated_at"),
        resolved_at=_opt_dt(data, "resolved_at"),
        replied_at=_opt_dt(data, "replied_at"),
        supervised=supervised,
        satisfaction=_choice(data, "satisfaction", SATISFACTIONS, None),
        withdrawn=withdrawn,
        notes=_parse_notes(data.get("notes")),
        requester_name=_opt_str(data, "requester_name"),
        requester_phone=_opt_str(data, "requester_phone"),
        requester_address=_opt_str(data, "requester_address", 300),
    )


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record an adapter could not turn into a CaseRecord. No raw values kept."""

    source_id: str | None
    reason: str


@dataclass(slots=True)
class Batch:
    """What one pull produced: good records, rejected ones, and the cursor to save
    with them (in the same transaction) so a crash neither loses nor repeats."""

    records: list[CaseRecord] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    cursor: str | None = None
    #: Records the source still holds that the adapter knows are unchanged since
    #: they were last stored, and so did not convert again (counted as unchanged).
    unchanged: int = 0
