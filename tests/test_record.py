"""CaseRecord, the contract every source speaks: clear errors, nothing echoed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feeds.record import RecordError, record_from_mapping

VALID = {"source_id": "LS-1", "summary": "路灯不亮", "received_at": "2026-11-20T09:30:00"}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=50),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
FIELDS = [
    "source_id",
    "summary",
    "received_at",
    "town",
    "village",
    "kind",
    "category",
    "status",
    "outcome",
    "updated_at",
    "resolved_at",
    "supervised",
    "satisfaction",
    "notes",
    "requester_name",
    "requester_phone",
    "withdrawn",
]


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=8))
def test_any_json_object_is_a_record_or_a_clear_error(patch: dict[str, Any]) -> None:
    try:
        rec = record_from_mapping({**VALID, **patch})
    except RecordError as e:
        assert e.field and e.reason
        # The error names the field, never the value that was sent: the same value's
        # characters replaced (length kept, so "too long" stays too long) give the same
        # message. (A plain "not in" check trips on values such as "fals", which the
        # fixed text "应为 true 或 false" contains.)
        for key, value in patch.items():
            if isinstance(value, str) and len(value) >= 4:
                masked = {**VALID, **patch, key: "\ue000" * len(value)}
                try:
                    record_from_mapping(masked)
                except RecordError as again:
                    assert str(again) == str(e) or value not in str(e), (key, str(e))
    else:
        assert rec.source_id and rec.summary
        assert rec.received_at.tzinfo is not None


def test_local_time_is_asia_shanghai() -> None:
    rec = record_from_mapping(VALID)
    assert rec.received_at == datetime(2026, 11, 20, 1, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"source_id": ""}, "source_id"),
        ({"source_id": "x" * 65}, "source_id"),
        ({"summary": None}, "summary"),
        ({"summary": "长" * 2001}, "summary"),
        ({"received_at": "yesterday"}, "received_at"),
        ({"received_at": "1899-01-01T00:00:00"}, "received_at"),
        ({"status": "deleted"}, "status"),
        ({"supervised": "yes"}, "supervised"),
        ({"notes": [{"at": "bad", "text": "x"}]}, "notes.at"),
    ],
)
def test_bad_fields_are_named(patch: dict[str, Any], field: str) -> None:
    with pytest.raises(RecordError) as info:
        record_from_mapping({**VALID, **patch})
    assert info.value.field == field


def test_not_an_object() -> None:
    with pytest.raises(RecordError, match="record"):
        record_from_mapping(["LS-1"])
