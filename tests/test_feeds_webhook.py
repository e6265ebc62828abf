"""Signed pushes: signature, clock skew, replays, and body parsing."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from feeds.webhook import (
    MAX_BODY,
    MAX_SKEW,
    PushError,
    ReplayGuard,
    SignatureError,
    parse_push,
    sign,
    verify,
)

SECRET = "a-long-shared-secret-1234"
NOW = 1_780_000_000


def record(source_id: str | None = "LS2026-0001", **over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "source_id": source_id,
        "town": "longshi",
        "summary": "村民何小红反映银杏村3组路灯损坏，联系电话13812345678",
        "received_at": "2026-03-05T09:00:00",
        "status": "assigned",
        "requester_name": "何小红",
        "requester_phone": "13812345678",
    }
    base.update(over)
    return base


def body_of(records: list[Any]) -> bytes:
    return json.dumps({"records": records}, ensure_ascii=False).encode()


def test_sign_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"records": []}'
    expected = hmac.new(SECRET.encode(), b"1780000000." + body, hashlib.sha256).hexdigest()
    assert sign(SECRET, NOW, body) == "sha256=" + expected


def test_verify_accepts_a_good_signature_at_the_edge_of_the_skew() -> None:
    body = body_of([record()])
    for sent in (NOW, NOW - MAX_SKEW, NOW + MAX_SKEW):
        verify(SECRET, str(sent), sign(SECRET, sent, body), body, now=NOW, guard=None)


@pytest.mark.parametrize(
    ("timestamp", "signature", "reason"),
    [
        (None, "sig", "missing X-Yizheng-Timestamp"),
        ("", "sig", "missing X-Yizheng-Timestamp"),
        ("yesterday", "sig", "must be Unix seconds"),
        ("1780000000.5", "sig", "must be Unix seconds"),
        (str(NOW - MAX_SKEW - 1), "good", "more than 300 s"),
        (str(NOW + MAX_SKEW + 1), "good", "more than 300 s"),
        (str(NOW), None, "missing X-Yizheng-Signature"),
        (str(NOW), "md5=abc", "must be sha256="),
        (str(NOW), "sha256=" + "0" * 64, "does not match"),
        (str(NOW), "wrong-secret", "does not match"),
        (str(NOW), "other-body", "does not match"),
    ],
)
def test_verify_refuses(timestamp: str | None, signature: str | None, reason: str) -> None:
    body = body_of([record()])
    ts = int(timestamp) if timestamp and timestamp.isdigit() else NOW
    if signature == "good":
        signature = sign(SECRET, ts, body)
    elif signature == "wrong-secret":
        signature = sign("another-secret-0000", ts, body)
    elif signature == "other-body":
        signature = sign(SECRET, ts, body + b" ")
    with pytest.raises(SignatureError) as info:
        verify(SECRET, timestamp, signature, body, now=NOW, guard=ReplayGuard())
    assert reason in info.value.reason
    assert SECRET not in info.value.reason


def test_verify_refuses_without_a_secret() -> None:
    with pytest.raises(SignatureError, match="no secret"):
        verify("", str(NOW), sign("", NOW, b"{}"), b"{}", now=NOW, guard=None)


def test_a_signature_is_accepted_once() -> None:
    guard = ReplayGuard()
    body = body_of([record()])
    sig = sign(SECRET, NOW, body)
    verify(SECRET, str(NOW), sig, body, now=NOW, guard=guard)
    with pytest.raises(SignatureError, match="already used"):
        verify(SECRET, str(NOW), sig, body, now=NOW + 10, guard=guard)
    # The same content sent again a second later is a new push, not a replay.
    verify(SECRET, str(NOW + 1), sign(SECRET, NOW + 1, body), body, now=NOW + 1, guard=guard)
    # A refused signature is not remembered (junk cannot fill the guard).
    with pytest.raises(SignatureError):
        verify(SECRET, str(NOW), "sha256=" + "1" * 64, body, now=NOW, guard=guard)
    assert len(guard) == 2


def test_replay_guard_forgets_what_the_skew_window_already_refuses() -> None:
    guard = ReplayGuard()
    for i in range(50):
        assert guard.check_and_remember(f"s{i}", NOW + i, now=NOW + i)
    assert len(guard) == 50
    assert guard.check_and_remember("late", NOW + 1000, now=NOW + 1000)
    assert len(guard) == 1


def test_replay_guard_memory_is_bounded_without_reopening_replays() -> None:
    guard = ReplayGuard(max_entries=3)
    for i in range(5):
        assert guard.check_and_remember(f"s{i}", NOW + i, now=NOW + 5)
    assert len(guard) == 3
    # s0 was forgotten, but its timestamp is now below the guard's floor.
    assert not guard.check_and_remember("s0", NOW, now=NOW + 5)
    assert not guard.check_and_remember("s4", NOW + 4, now=NOW + 5)


@given(st.binary(max_size=2000), st.integers(min_value=0, max_value=10**11))
def test_sign_verify_round_trip(body: bytes, timestamp: int) -> None:
    sig = sign(SECRET, timestamp, body)
    verify(SECRET, str(timestamp), sig, body, now=timestamp, guard=None)
    with pytest.raises(SignatureError):
        verify(SECRET, str(timestamp), sig, body + b"x", now=timestamp, guard=None)


def test_parse_push_keeps_valid_records_and_explains_invalid_ones() -> None:
    batch = parse_push(
        body_of(
            [
                record("A"),
                record("B", received_at="not a date"),
                record("C", supervised="yes"),
                "a string",
                record(None),
                record("D", status="closed"),
                record("A", summary="again"),
                record("E", town=None, notes=[{"at": "2026-03-06T10:00:00", "text": "已交办"}]),
            ]
        )
    )
    assert [r.source_id for r in batch.records] == ["A", "E"]
    assert batch.records[0].requester_name == "何小红"
    assert batch.records[1].notes[0].text == "已交办"
    assert [(r.source_id, r.reason) for r in batch.rejected] == [
        ("B", "records[1]：受理时间（received_at）：无法识别的日期（应为 ISO 8601）"),
        ("C", "records[2]：是否督办（supervised）：应为 true 或 false"),
        (None, "records[3]：记录（record）：应为 JSON 对象"),
        (None, "records[4]：编号（source_id）：不能为空"),
        (
            "D",
            "records[5]：办理状态（status）：取值无效（应为 registered, assigned, in_progress, "
            "resolved, replied, verified）",
        ),
        ("A", "records[6]：编号（source_id）：本次推送中重复"),
    ]
    # Reasons never echo personal data.
    assert "何小红" not in repr(batch.rejected) and "138" not in repr(batch.rejected)
    assert batch.cursor is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "not JSON"),
        (b"records=1", "not JSON"),
        (b"\xff\xfe{}", "not JSON"),
        (b"[]", "JSON object"),
        (b'"records"', "JSON object"),
        (b"{}", "must be a list"),
        (b'{"records": {"a": 1}}', "must be a list"),
        (b'{"records": null}', "must be a list"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
    ],
)
def test_parse_push_refuses_bodies_that_are_not_a_push(body: bytes, message: str) -> None:
    with pytest.raises(PushError, match=message):
        parse_push(body)


def test_parse_push_limits() -> None:
    with pytest.raises(PushError, match="more than 10000 records"):
        parse_push(body_of([{}] * 10_001))
    with pytest.raises(PushError, match="larger than 5 MiB"):
        parse_push(b'{"records": [], "pad": "' + b"x" * MAX_BODY + b'"}')
    batch = parse_push(body_of([record(f"LS2026-{i:05d}") for i in range(10_000)]))
    assert len(batch.records) == 10_000 and batch.rejected == []
