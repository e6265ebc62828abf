"""CaseRecord -> public case: validate, redact, compute deadlines, store.

This is the one door through which case data enters the database. The
requester hints (name, phone, address) are used to redact the free text here
and go no further: nothing below this module ever sees them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import operator
import secrets
from collections.abc import Callable, Mapping
from datetime import date, timedelta

from display.domain import (
    CLOSED_STAGES,
    OPEN_STAGES,
    PublicCase,
    TimelineEntry,
    local_date,
    now_utc,
)
from display.privacy import PreparedHints, is_sensitive, prepare_hints, redact
from display.settings import Settings
from display.store.base import CaseChange, IngestCounts, Store
from display.workdays import WorkCalendar
from feeds.record import Batch, CaseRecord, RecordError, Rejected

log = logging.getLogger("yizheng.ingest")

#: All of a record's fields as one tuple, in one C call (the fingerprint's input).
_record_values = operator.attrgetter(*(f.name for f in dataclasses.fields(CaseRecord)))

#: Batches larger than this are prepared in a worker thread.
THREAD_THRESHOLD = 200

#: How often (in records) `ingest` reports its progress.
PROGRESS_EVERY = 10_000

#: progress(records prepared, records in the batch)
Progress = Callable[[int, int], None]

#: Fingerprints of stored records kept in memory (about 150 bytes each).
MAX_FINGERPRINTS = 500_000


class Ingestor:
    def __init__(self, settings: Settings, store: Store, calendar: WorkCalendar) -> None:
        self.settings = settings
        self.store = store
        self.calendar = calendar
        self._keywords = settings.privacy.sensitive_keywords or None
        self._fp_key = secrets.token_bytes(32)
        self._seen: dict[tuple[str, str], bytes] = {}

    def public_case(
        self, rec: CaseRecord, *, today: date | None = None, hints: PreparedHints | None = None
    ) -> PublicCase:
        """The anonymized public copy of one record. Raises RecordError when unusable.
        `hints`: `prepare_hints(rec.hints)`, when the caller has them already."""
        town = self.settings.town(rec.town)
        if town is None:
            raise RecordError("town", "未知乡镇" if rec.town else "缺少所属乡镇")
        if hints is None:
            hints = prepare_hints(rec.hints)
        summary = redact(rec.summary, hints).text
        # The short fields go through the redactor together, joined by NUL (removed
        # from the fields first), which no rule matches across.
        short = [(v or "").replace("\x00", "") for v in (rec.category, rec.department, rec.village)]
        if any(short):
            category_, department_, village_ = redact("\x00".join(short), hints).text.split("\x00")
        else:
            category_ = department_ = village_ = ""
        category = category_ or None
        department = department_ or None
        village = village_ or None
        sensitive = is_sensitive(category, summary, self._keywords)
        received_day = local_date(rec.received_at)
        rules = self.settings.deadlines
        workdays = rules.consult_workdays if rec.kind == "consult" else rules.general_workdays
        due = self.calendar.add_workdays(received_day, workdays)
        first_reply_due = (
            received_day + timedelta(days=town.first_reply_days) if town.first_reply_days else None
        )
        today = today or local_date(now_utc())
        is_open = rec.status in OPEN_STAGES
        resolved_at = rec.resolved_at
        if rec.status in CLOSED_STAGES and resolved_at is None:
            resolved_at = rec.updated_at or rec.received_at
        on_time = (
            local_date(resolved_at) <= due.due
            if rec.status in CLOSED_STAGES and resolved_at
            else None
        )
        return PublicCase(
            no=rec.source_id,
            town=town.slug,
            stage=rec.status,
            kind=rec.kind,
            received_at=rec.received_at,
            updated_at=rec.updated_at or rec.received_at,
            category=category,
            channel=rec.channel,
            department=department,
            outcome=rec.outcome if rec.status in CLOSED_STAGES else None,
            summary=None if sensitive else summary,
            village=None if sensitive else village,
            sensitive=sensitive,
            resolved_at=resolved_at if rec.status in CLOSED_STAGES else None,
            replied_at=rec.replied_at,
            due_date=due.due,
            due_estimated=due.estimated,
            first_reply_due=first_reply_due,
            overdue=is_open and today > due.due,
            supervised=rec.supervised,
            satisfaction=rec.satisfaction,
            withdrawn=rec.withdrawn,
            on_time=on_time,
        )

    def change(self, rec: CaseRecord, today: date | None = None) -> CaseChange:
        """The public copy of `rec` with its redacted notes."""
        hints = prepare_hints(rec.hints)
        case = self.public_case(rec, today=today, hints=hints)
        if case.sensitive:
            # A sensitive case shows its category and stage only; notes are free text.
            return CaseChange(source_id=rec.source_id, case=case)
        notes = tuple(
            TimelineEntry(
                at=n.at, stage=n.stage or case.stage, note=redact(n.text, hints).text or None
            )
            for n in rec.notes
            if n.text
        )
        return CaseChange(source_id=rec.source_id, case=case, notes=notes)

    async def ingest(
        self, feed: str, batch: Batch, progress: Progress | None = None
    ) -> IngestCounts:
        """Store one batch with its quarantine and cursor (`Store.apply_cases`: a large
        batch in several transactions, the cursor with the last).

        A record identical to the one this process last stored from the same feed
        is counted unchanged without being redacted again (see `_fingerprint`).
        `progress(done, total)` is called every PROGRESS_EVERY records while the
        batch is prepared (from a worker thread for a large batch), and once more
        with done == total when it is; the store write follows.
        """
        today = local_date(now_utc())
        if len(batch.records) > THREAD_THRESHOLD:
            # Redacting a large ledger takes seconds of CPU: off the event loop, so the
            # screens' streams and pages keep being served meanwhile.
            prepared = await asyncio.to_thread(self._prepare, feed, batch, today, progress)
        else:
            prepared = self._prepare(feed, batch, today, progress)
        changes, rejected, skipped, prints = prepared
        counts = await self.store.apply_cases(feed, changes, rejected, batch.cursor)
        counts.unchanged += skipped + batch.unchanged
        refused = {sid for sid, _ in counts.reasons}
        if len(self._seen) > MAX_FINGERPRINTS:
            self._seen.clear()  # bounded memory; the next import is simply full price
        for sid, fp in prints.items():
            if sid not in refused:
                self._seen[(feed, sid)] = fp
        if counts.quarantined:
            log.info("feed %s: %d record(s) quarantined", feed, counts.quarantined)
        return counts

    def _prepare(
        self, feed: str, batch: Batch, today: date, progress: Progress | None = None
    ) -> tuple[list[CaseChange], list[Rejected], int, dict[str, bytes]]:
        """The public copies of a batch's records, skipping those known unchanged."""
        changes: list[CaseChange] = []
        # Adapters never put a value in a reason on purpose, but a reason is text from
        # the feed's side on its way into the database: it is redacted like any other.
        rejected = [Rejected(r.source_id, redact(r.reason).text) for r in batch.rejected]
        # The last version of a record within one batch wins.
        last = {rec.source_id: i for i, rec in enumerate(batch.records)}
        skipped = 0
        prints: dict[str, bytes] = {}
        total = len(batch.records)
        for i, rec in enumerate(batch.records):
            if progress is not None and i and i % PROGRESS_EVERY == 0:
                progress(i, total)
            if last[rec.source_id] != i:
                continue
            fp = self._fingerprint(rec, today)
            if self._seen.get((feed, rec.source_id)) == fp:
                skipped += 1
                continue
            try:
                changes.append(self.change(rec, today))
            except RecordError as e:
                rejected.append(Rejected(rec.source_id, str(e)))
                continue
            prints[rec.source_id] = fp
        if progress is not None:
            progress(total, total)
        return changes, rejected, skipped, prints

    def forget(self) -> None:
        """Drop the fingerprints: another process may have written since (a new feed
        leader starts from what is stored, not from what it remembers)."""
        self._seen.clear()

    def _fingerprint(self, rec: CaseRecord, today: date) -> bytes:
        """A keyed digest of everything the public copy is computed from.

        The key is random, made when this process starts and never written
        anywhere, so the digest cannot be tested against guessed names or phone
        numbers; digests live in this process's memory only and die with it.
        """
        raw = repr((_record_values(rec), today.isoformat())).encode()
        return hashlib.blake2b(raw, key=self._fp_key, digest_size=16).digest()

    # FeedSink protocol (feeds.runner) -----------------------------------------

    async def load_cursor(self, feed: str) -> str | None:
        return await self.store.load_cursor(feed)

    async def record_failure(self, feed: str, error: str) -> None:
        await self.store.record_failure(feed, redact(error).text, now_utc())

    async def ingest_counts(self, feed: str, batch: Batch) -> Mapping[str, int]:
        return (await self.ingest(feed, batch)).as_dict()


__all__ = ["Ingestor"]
