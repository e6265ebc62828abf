"""Signed pushes from a case system: signature, replay guard and body parsing.

The HTTP endpoint (`POST /feeds/{name}/push`) lives in display/; this module holds
the parts that know nothing of HTTP. The signature is
`sha256=<hex HMAC-SHA256 of b"<timestamp>." + body>` with the feed's secret, the
timestamp is Unix seconds in its own header, and a signature is accepted once.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import json
import re
from collections.abc import Mapping
from typing import Any

from feeds.record import (
    MAX_SOURCE_ID,
    Batch,
    CaseRecord,
    RecordError,
    Rejected,
    record_from_mapping,
)

SIGNATURE_HEADER = "X-Yizheng-Signature"
TIMESTAMP_HEADER = "X-Yizheng-Timestamp"
#: Seconds of clock difference tolerated between the sender and us.
MAX_SKEW = 300
MAX_BODY = 5 * 1024 * 1024
MAX_RECORDS = 10_000

_SIGNATURE = re.compile(r"sha256=([0-9a-f]{64})")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


class SignatureError(Exception):
    """The push is refused (answer 401). `reason` is safe to send back."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PushError(ValueError):
    """The body is not a push at all (answer 400)."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header value for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def signed_headers(secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers a sender posts `body` (JSON) with, signed at `timestamp`."""
    return {
        "content-type": "application/json",
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, timestamp, body),
    }


class ReplayGuard:
    """Remembers accepted signatures until they fall out of the skew window.

    Memory is bounded: when full, the oldest entry is forgotten and every timestamp
    up to it is refused from then on, so forgetting never re-opens a replay.
    """

    def __init__(self, window: float = MAX_SKEW, max_entries: int = 100_000) -> None:
        self.window = window
        self.max_entries = max_entries
        self._heap: list[tuple[int, str]] = []
        self._seen: set[str] = set()
        self._floor = -1

    def __len__(self) -> int:
        return len(self._seen)

    def _prune(self, now: float) -> None:
        horizon = now - self.window
        while self._heap and self._heap[0][0] < horizon:
            _, sig = heapq.heappop(self._heap)
            self._seen.discard(sig)

    def check_and_remember(self, signature: str, timestamp: int, now: float) -> bool:
        """True (and remembered) the first time; False for a replay."""
        self._prune(now)
        if signature in self._seen or timestamp <= self._floor:
            return False
        heapq.heappush(self._heap, (timestamp, signature))
        self._seen.add(signature)
        while len(self._heap) > self.max_entries:
            ts, sig = heapq.heappop(self._heap)
            self._seen.discard(sig)
            self._floor = max(self._floor, ts)
        return True


def verify(
    secret: str,
    timestamp_header: str | None,
    signature_header: str | None,
    body: bytes,
    *,
    now: float,
    guard: ReplayGuard | None,
) -> None:
    """Accept a push or raise SignatureError(reason)."""
    if not secret:
        raise SignatureError("the feed has no secret")
    ts_text = (timestamp_header or "").strip()
    if not ts_text:
        raise SignatureError(f"missing {TIMESTAMP_HEADER}")
    if not _TIMESTAMP.fullmatch(ts_text):
        raise SignatureError(f"{TIMESTAMP_HEADER} must be Unix seconds")
    timestamp = int(ts_text)
    if abs(now - timestamp) > MAX_SKEW:
        raise SignatureError(f"timestamp more than {MAX_SKEW} s away from the server clock")
    sig_text = (signature_header or "").strip().lower()
    if not sig_text:
        raise SignatureError(f"missing {SIGNATURE_HEADER}")
    if not _SIGNATURE.fullmatch(sig_text):
        raise SignatureError(f"{SIGNATURE_HEADER} must be sha256=<64 hex digits>")
    expected = sign(secret, timestamp, body)
    if not hmac.compare_digest(expected.encode(), sig_text.encode()):
        raise SignatureError("signature does not match")
    # Only a verified signature is remembered, so junk cannot fill the guard.
    if guard is not None and not guard.check_and_remember(sig_text, timestamp, now):
        raise SignatureError("signature already used")


def _source_id_of(item: Any) -> str | None:
    if not isinstance(item, Mapping):
        return None
    value = item.get("source_id")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value or len(value) > MAX_SOURCE_ID or any(ord(c) < 32 for c in value):
        return None
    return value


def parse_push(body: bytes) -> Batch:
    """Parse `{"records": [...]}`; invalid records become Rejected with their index.

    Raises PushError when the body is not that shape at all.
    """
    if len(body) > MAX_BODY:
        raise PushError(f"body larger than {MAX_BODY // (1024 * 1024)} MiB")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise PushError("body is not JSON (UTF-8)") from None
    if not isinstance(data, Mapping):
        raise PushError('body must be a JSON object {"records": [...]}')
    records = data.get("records")
    if not isinstance(records, list):
        raise PushError('"records" must be a list')
    if len(records) > MAX_RECORDS:
        raise PushError(f"more than {MAX_RECORDS} records in one push")
    batch = Batch()
    seen: set[str] = set()
    good: list[CaseRecord] = []
    for i, item in enumerate(records):
        source_id = _source_id_of(item)
        try:
            record = record_from_mapping(item)
        except RecordError as exc:
            batch.rejected.append(Rejected(source_id, f"records[{i}]：{exc}"))
            continue
        except (RecursionError, OverflowError, ValueError, TypeError) as exc:
            batch.rejected.append(
                Rejected(source_id, f"records[{i}]：无法解析（{type(exc).__name__}）")
            )
            continue
        if record.source_id in seen:
            batch.rejected.append(
                Rejected(record.source_id, f"records[{i}]：编号（source_id）：本次推送中重复")
            )
            continue
        seen.add(record.source_id)
        good.append(record)
    batch.records = good
    return batch
