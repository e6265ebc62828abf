"""Ledger files (台账): CSV and XLSX exported by township staff.

A ledger is whatever a town's office keeps in a spreadsheet: a title row or two,
a header in Chinese (sometimes over two merged rows), then one case per row,
with dates and status words typed by hand. This module finds the header, maps
the columns to CaseRecord fields, and turns each row into a CaseRecord or a
Rejected whose reason names the column and the problem, never the cell value.

Towns: a town cell is looked up in the `towns` mapping (slug or configured name,
with or without the 镇/乡/街道 suffix). A town text that is not found is
rejected here with the reason "未知乡镇"; an empty town cell gives `town=None`
(unless the feed sets `town`, or the title row names a known town), which the
ingest side quarantines.
"""

from __future__ import annotations

import asyncio
import codecs
import collections
import contextlib
import csv
import gc
import hashlib
import io
import itertools
import json
import os
import re
import secrets
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

from feeds import adapters
from feeds.record import (
    MAX_SHORT,
    MAX_SOURCE_ID,
    MAX_SUMMARY,
    OUTCOMES,
    STAGE_LABELS,
    STAGES,
    Batch,
    CaseRecord,
    Rejected,
    parse_datetime,
)

# Header aliases, best first. The file's headers and these are compared after
# `normalize_header` (NFKC folds full-width parentheses; whitespace is dropped).
DEFAULT_HEADERS: dict[str, tuple[str, ...]] = {
    "source_id": ("受理编号", "诉求编号", "编号", "案件编号", "工单编号", "工单号"),
    "requester_name": ("诉求人", "姓名", "诉求人姓名", "反映人"),
    "requester_phone": ("联系电话", "电话", "联系方式", "手机号码", "手机"),
    "requester_address": ("住址", "地址", "家庭住址", "详细地址"),
    "summary": ("诉求内容", "反映问题", "问题描述", "诉求事项", "主要诉求"),
    "town": ("所属镇(街道)", "镇(街道)", "所属乡镇", "乡镇(街道)", "乡镇", "镇街"),
    "village": ("村(社区)", "所属村(社区)", "村(居)", "村社区"),
    "kind": ("诉求性质",),
    "category": ("诉求类型", "类别", "诉求类别", "问题类型", "问题类别"),
    "channel": ("诉求渠道", "来源", "渠道", "诉求来源", "反映渠道"),
    "status": ("办理状态", "状态"),
    "outcome": ("办理结果", "处理结果"),
    "received_at": ("受理时间", "登记时间", "受理日期", "登记日期", "反映时间"),
    "updated_at": ("更新时间",),
    "resolved_at": ("办结时间", "办结日期"),
    "replied_at": ("回复时间", "回复日期", "答复时间"),
    "department": ("责任单位", "承办单位", "办理单位", "责任部门"),
    "satisfaction": ("回访满意度", "满意度", "群众满意度"),
    "supervised": ("是否督办", "督办"),
}
#: Used only when no better column exists: row numbers are not stable ids.
FALLBACK_HEADERS: dict[str, tuple[str, ...]] = {"source_id": ("序号",)}
REQUIRED_FIELDS: tuple[str, ...] = ("source_id", "summary", "received_at")
FIELD_LABELS: dict[str, str] = {
    "source_id": "编号",
    "summary": "诉求内容",
    "received_at": "受理时间",
}

#: Status words typed in ledgers -> (stage, outcome).
STATUS_WORDS: dict[str, tuple[str, str | None]] = {
    "已登记": ("registered", None),
    "待受理": ("registered", None),
    "已受理": ("registered", None),
    "待交办": ("registered", None),
    "已交办": ("assigned", None),
    "已转办": ("assigned", None),
    "已签收": ("assigned", None),
    "办理中": ("in_progress", None),
    "整改中": ("in_progress", None),
    "处理中": ("in_progress", None),
    "已办结": ("resolved", "resolved"),
    "已解决": ("resolved", "resolved"),
    "办结": ("resolved", "resolved"),
    "已解释": ("resolved", "explained"),
    "不符合政策": ("resolved", "explained"),
    "已解释说明": ("resolved", "explained"),
    "纳入规划": ("resolved", "planned"),
    "已纳入规划": ("resolved", "planned"),
    "已回复": ("replied", None),
    "已答复": ("replied", None),
    "已回访": ("verified", None),
    "已抽查": ("verified", None),
}
SATISFACTION_WORDS: dict[str, str] = {
    "满意": "satisfied",
    "非常满意": "satisfied",
    "基本满意": "basically_satisfied",
    "比较满意": "basically_satisfied",
    "不满意": "dissatisfied",
    "satisfied": "satisfied",
    "basically_satisfied": "basically_satisfied",
    "dissatisfied": "dissatisfied",
}
TRUE_WORDS = frozenset({"是", "√", "✓", "✔", "y", "yes", "true", "1", "督办", "已督办"})
FALSE_WORDS = frozenset({"否", "×", "✗", "n", "no", "false", "0", "未督办"})
#: Cells that mean "nothing here".
PLACEHOLDERS = frozenset({"", "/", "-", "--", "—", "——", "无", "暂无", "null", "none"})
FOOTER_PREFIXES = (
    "合计", "总计", "小计", "填表人", "填报人", "制表人", "审核人", "负责人", "联系人",
    "填表日期", "填报日期", "制表日期", "备注", "说明", "注：", "注:",
)  # fmt: skip
#: A case number: has a digit, or is plain ASCII; never spaces or a colon (not 填表人：…).
_ID_LIKE = re.compile(r"[^:：\s]*\d[^:：\s]*|[!-9;-~]+")
_BLANK = PLACEHOLDERS | {"NULL", "Null", "None", "NONE", "N/A", "n/a"}

LEDGER_SUFFIXES = frozenset({".csv", ".tsv", ".txt", ".xlsx", ".xlsm"})
HEADER_SCAN_ROWS = 30
#: Characters of a CSV file searched for its header (far more than HEADER_SCAN_ROWS
#: rows of any real ledger take).
HEADER_SCAN_CHARS = 1 << 20
EXCEL_EPOCH = datetime(1899, 12, 30)
_DELIMITERS = (",", "\t", ";")
_NO_HEADER = (
    f"前{HEADER_SCAN_ROWS}行中找不到表头（需要 编号、诉求内容、受理时间 等列，"
    "列名不同时可在 [feeds.columns] 中指定）"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DATE_RE = re.compile(
    r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?"
    r"(?:[\sT]*(\d{1,2})\s*[:：时点]\s*(\d{1,2})(?:\s*[:：分]\s*(\d{1,2})(?:\.\d+)?)?\s*[分秒]?)?"
)
_COMPACT_DATE_RE = re.compile(r"(\d{4})(\d{2})(\d{2})")
_SERIAL_RE = re.compile(r"\d{5}(?:\.\d+)?")


# --------------------------------------------------------------------------- helpers
# shared with feeds.jsonapi


def normalize_header(text: str) -> str:
    """Fold a header for comparison: full-width to half-width, no whitespace, no `*`."""
    folded = unicodedata.normalize("NFKC", text)
    return "".join(folded.split()).strip("*:")


def fold_word(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).split()).lower()


def parse_status_table(overrides: Mapping[str, Any] | None) -> dict[str, tuple[str, str | None]]:
    """The status words of a feed: defaults, our own stage names, then `[feeds.statuses]`.

    An override value is a stage, "stage:outcome", or "withdrawn". Raises
    `adapters.FeedError` naming the key when a value is not one of those.
    """
    table: dict[str, tuple[str, str | None]] = {fold_word(k): v for k, v in STATUS_WORDS.items()}
    for stage in STAGES:
        table[stage] = (stage, None)
    for word, label in STAGE_LABELS.items():
        table.setdefault(fold_word(label), (word, None))
    for key, value in (overrides or {}).items():
        if not isinstance(value, str):
            raise adapters.FeedError(f"statuses.{key}：应为阶段名或 阶段:结果")
        stage, _, outcome = value.partition(":")
        stage = stage.strip()
        outcome = outcome.strip()
        if stage == "withdrawn" and not outcome:
            table[fold_word(str(key))] = ("withdrawn", None)
            continue
        if stage not in STAGES or (outcome and outcome not in OUTCOMES):
            raise adapters.FeedError(
                f"statuses.{key}：应为 {'/'.join(STAGES)}、阶段:{'/'.join(OUTCOMES)} 或 withdrawn"
            )
        table[fold_word(str(key))] = (stage, outcome or None)
    return table


class TownLookup:
    """Text -> town slug: exact, then folded, then with or without the 镇/乡/街道 suffix."""

    _SUFFIXES = ("街道办事处", "街道办", "街道", "镇", "乡")

    def __init__(self, *mappings: Mapping[str, str] | None) -> None:
        self._table: dict[str, str] = {}
        self._names: list[tuple[str, str]] = []
        for mapping in mappings:
            for text, slug in (mapping or {}).items():
                self._add(str(text), str(slug))
                self._add(str(slug), str(slug))

    def _add(self, text: str, slug: str) -> None:
        key = fold_word(text)
        if not key:
            return
        self._table.setdefault(key, slug)
        for suffix in self._SUFFIXES:
            if key.endswith(suffix) and len(key) > len(suffix) + 1:
                self._table.setdefault(key[: -len(suffix)], slug)
                break
        if any("\u4e00" <= c <= "\u9fff" for c in key) and len(key) >= 2:
            self._names.append((key, slug))

    def __bool__(self) -> bool:
        return bool(self._table)

    def get(self, text: str) -> str | None:
        found = self._table.get(text)
        if found is not None:
            return found
        key = fold_word(text)
        found = self._table.get(key)
        if found is not None:
            return found
        for suffix in self._SUFFIXES:
            if key.endswith(suffix) and len(key) > len(suffix) + 1:
                return self._table.get(key[: -len(suffix)])
        return None

    def find_in(self, text: str) -> str | None:
        """A town named anywhere in `text` (a title row), longest name first."""
        key = fold_word(text)
        for name, slug in sorted(self._names, key=lambda n: -len(n[0])):
            if name in key:
                return slug
        return None


def _excel_serial(days: float) -> datetime:
    if not 1 <= days < 2958466:
        raise ValueError("serial out of range")
    # Whole seconds: Excel stores times as fractions of a day and rounding
    # noise would otherwise show up as a changed record on every import.
    return EXCEL_EPOCH + timedelta(seconds=round(days * 86400))


@lru_cache(maxsize=4096)
def _parse_date_text(text: str) -> datetime:
    m = _DATE_RE.fullmatch(text)
    if m:
        y, mo, d, h, mi, s = m.groups()
        return parse_datetime(
            datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0)), ""
        )
    if _SERIAL_RE.fullmatch(text):
        return parse_datetime(_excel_serial(float(text)), "")
    m = _COMPACT_DATE_RE.fullmatch(text)
    if m:
        return parse_datetime(datetime(int(m[1]), int(m[2]), int(m[3])), "")
    return parse_datetime(text, "")


def parse_ledger_date(value: object) -> datetime:
    """A date as people type it: 2026-03-05, 2026/3/5, 2026年3月5日, 2026.3.5, each with
    an optional time, an Excel serial number, or a datetime cell. Naive values are
    Asia/Shanghai. Returns an aware UTC datetime; raises ValueError (or RecordError)."""
    if type(value) is str:
        return _parse_date_text(value.strip())
    if isinstance(value, datetime):
        return parse_datetime(value, "")
    if isinstance(value, date):
        return parse_datetime(datetime.combine(value, time()), "")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return parse_datetime(_excel_serial(float(value)), "")
    if isinstance(value, str):
        return _parse_date_text(value.strip())
    raise ValueError("not a date")


def cell_text(value: object) -> str:
    """A cell as text: integral floats lose their `.0` (Excel turns ids into numbers)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    return str(value).strip()


# --------------------------------------------------------------------------- columns


@dataclass(frozen=True, slots=True)
class Column:
    field: str
    index: int
    header: str


def _alias_table(overrides: Mapping[str, Any] | None) -> list[tuple[str, list[str]]]:
    """(field, aliases best first) from the defaults and `[feeds.columns]`."""
    extra: dict[str, list[str]] = {}
    for key, value in (overrides or {}).items():
        if key not in DEFAULT_HEADERS:
            raise adapters.FeedError(
                f"columns.{key}：未知字段（可用：{'、'.join(DEFAULT_HEADERS)}）"
            )
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise adapters.FeedError(f"columns.{key}：应为列名或列名的列表")
        extra[key] = [normalize_header(v) for v in values]
    table = []
    for name, aliases in DEFAULT_HEADERS.items():
        folded = [normalize_header(a) for a in aliases]
        fallback = [normalize_header(a) for a in FALLBACK_HEADERS.get(name, ())]
        table.append((name, [*extra.get(name, []), *folded, *fallback]))
    return table


def _match_columns(
    header: Sequence[str], aliases: list[tuple[str, list[str]]]
) -> dict[str, Column]:
    index: dict[str, int] = {}
    for i, text in enumerate(header):
        key = normalize_header(text)
        if key:
            index.setdefault(key, i)
    found: dict[str, Column] = {}
    taken: set[int] = set()
    for name, names in aliases:
        for alias in names:
            i = index.get(alias, -1)
            if i >= 0 and i not in taken:
                found[name] = Column(name, i, header[i].strip())
                taken.add(i)
                break
    return found


def _find_header(
    rows: list[list[str]], aliases: list[tuple[str, list[str]]]
) -> tuple[int, int, dict[str, Column]] | None:
    """(first header row, rows it spans, columns) among the first rows.

    A header may span two rows when cells are merged (编号 merged down,
    诉求人信息 merged across 姓名 and 联系电话): the lower row's text wins per column.
    """
    best: tuple[int, int, dict[str, Column]] | None = None
    best_score = 1.0  # one matching word is a title, not a header
    for i, row in enumerate(rows):
        candidates: list[tuple[int, list[str]]] = [(1, row)]
        if i + 1 < len(rows):
            lower = rows[i + 1]
            width = max(len(row), len(lower))
            merged = [
                (lower[j] if j < len(lower) and lower[j] else "")
                or (row[j] if j < len(row) else "")
                for j in range(width)
            ]
            candidates.append((2, merged))
        for span, header in candidates:
            columns = _match_columns(header, aliases)
            score = len(columns) + 0.5 * sum(1 for f in REQUIRED_FIELDS if f in columns)
            if score > best_score:
                best, best_score = (i, span, columns), score
    return best


# --------------------------------------------------------------------------- rows


class _RowReader:
    """Turns the rows under a header into CaseRecords and Rejecteds."""

    def __init__(
        self,
        columns: Mapping[str, Column],
        statuses: Mapping[str, tuple[str, str | None]],
        towns: TownLookup,
        default_town: str | None,
        where: str,
    ) -> None:
        self.columns = columns
        self.statuses = statuses
        self.towns = towns
        self.default_town = default_town
        self.where = where
        self._indexes = tuple((name, col.index) for name, col in columns.items())

    def _reject(self, source_id: str | None, rowno: int, column: str, problem: str) -> Rejected:
        place = f"{self.where} 第{rowno}行" if self.where else f"第{rowno}行"
        # The id cell of a bad row may hold anything (a name typed in the wrong
        # column): only something that looks like a case number is kept.
        if not source_id or not _ID_LIKE.fullmatch(source_id):
            source_id = f"第{rowno}行"
        return Rejected(source_id, f"{column}：{problem}（{place}）")

    def read(self, cells: Sequence[object], rowno: int) -> CaseRecord | Rejected | None:
        # The hot loop of an import: 100,000-row ledgers are normal, so text
        # cells (all of a CSV) take the shortest path.
        cols = self.columns
        texts: dict[str, str] = {}
        raw: dict[str, object] = {}
        width = len(cells)
        for name, index in self._indexes:
            if index >= width:
                continue
            value = cells[index]
            if value is None:
                continue
            if type(value) is str:
                text = value.strip()
            else:
                text = cell_text(value)
                raw[name] = value
            if text and text not in _BLANK:
                texts[name] = text
        if not texts:
            return None
        if "summary" not in texts and "received_at" not in texts:
            # Template rows numbered in advance, and footers (合计, 填表人：…) are
            # not cases; rejecting them would fill the quarantine with noise.
            if len(texts) == 1 and "source_id" in texts:
                return None
            if any(t.startswith(FOOTER_PREFIXES) for t in texts.values()):
                return None

        source_id = texts.get("source_id")
        sid_col = cols["source_id"].header
        if not source_id:
            return self._reject(None, rowno, sid_col, "不能为空")
        if len(source_id) > MAX_SOURCE_ID:
            return self._reject(None, rowno, sid_col, f"超过{MAX_SOURCE_ID}个字符")
        if _CONTROL.search(source_id):
            return self._reject(None, rowno, sid_col, "含有控制字符")

        summary = texts.get("summary")
        if not summary:
            return self._reject(source_id, rowno, cols["summary"].header, "不能为空")
        if len(summary) > MAX_SUMMARY:
            return self._reject(
                source_id, rowno, cols["summary"].header, f"超过{MAX_SUMMARY}个字符"
            )

        dates: dict[str, datetime | None] = {}
        for name in ("received_at", "updated_at", "resolved_at", "replied_at"):
            if name not in texts:
                dates[name] = None
                continue
            try:
                dates[name] = parse_ledger_date(raw.get(name, texts[name]))
            except (ValueError, OverflowError):
                return self._reject(source_id, rowno, cols[name].header, "无法识别的日期")
        received_at = dates["received_at"]
        if received_at is None:
            return self._reject(source_id, rowno, cols["received_at"].header, "不能为空")

        stage, outcome, withdrawn = "registered", None, False
        if "status" in texts:
            mapped = self.statuses.get(texts["status"]) or self.statuses.get(
                fold_word(texts["status"])
            )
            if mapped is None:
                return self._reject(source_id, rowno, cols["status"].header, "无法识别的状态")
            stage, outcome = mapped
            if stage == "withdrawn":
                stage, withdrawn = "registered", True
        if "outcome" in texts and stage in ("resolved", "replied", "verified"):
            outcome = outcome_from_text(texts["outcome"]) or outcome

        town = self.default_town
        if "town" in texts:
            town = self.towns.get(texts["town"])
            if town is None:
                return self._reject(source_id, rowno, cols["town"].header, "未知乡镇")

        short: dict[str, str | None] = {}
        for name in ("village", "category", "channel", "department"):
            value_text = texts.get(name)
            if value_text and len(value_text) > MAX_SHORT:
                return self._reject(source_id, rowno, cols[name].header, f"超过{MAX_SHORT}个字符")
            short[name] = value_text

        satisfaction = None
        if "satisfaction" in texts:
            word = texts["satisfaction"]
            satisfaction = SATISFACTION_WORDS.get(word) or SATISFACTION_WORDS.get(fold_word(word))
            if satisfaction is None and fold_word(word) != "未回访":
                return self._reject(
                    source_id,
                    rowno,
                    cols["satisfaction"].header,
                    "无法识别（应为 满意/基本满意/不满意）",
                )

        supervised = False
        if "supervised" in texts:
            word = texts["supervised"]
            if word not in FALSE_WORDS and word not in TRUE_WORDS:
                word = fold_word(word)
            if word in TRUE_WORDS:
                supervised = True
            elif word not in FALSE_WORDS:
                return self._reject(
                    source_id, rowno, cols["supervised"].header, "无法识别（应为 是/否）"
                )

        kind_text = texts.get("kind") or short["category"] or ""
        return CaseRecord(
            source_id=source_id,
            summary=summary,
            received_at=received_at,
            town=town,
            village=short["village"],
            kind="consult" if "咨询" in kind_text else "general",
            category=short["category"],
            channel=short["channel"],
            department=short["department"],
            status=stage,
            outcome=outcome,
            updated_at=dates["updated_at"],
            resolved_at=dates["resolved_at"],
            replied_at=dates["replied_at"],
            supervised=supervised,
            satisfaction=satisfaction,
            withdrawn=withdrawn,
            requester_name=texts.get("requester_name"),
            requester_phone=texts.get("requester_phone"),
            requester_address=texts.get("requester_address"),
        )


def outcome_from_text(text: str) -> str | None:
    if "规划" in text:
        return "planned"
    if "解释" in text or "不符合" in text:
        return "explained"
    if "解决" in text or "办结" in text:
        return "resolved"
    return None


# --------------------------------------------------------------------------- files


class LedgerOptions:
    """A ledger feed's configuration, validated once."""

    def __init__(self, config: Mapping[str, Any], towns: Mapping[str, str]) -> None:
        self.aliases = _alias_table(_mapping(config, "columns"))
        self.statuses = parse_status_table(_mapping(config, "statuses"))
        self.towns = TownLookup(towns, _mapping(config, "towns"))
        town = config.get("town")
        self.default_town: str | None = None
        if town is not None:
            if not isinstance(town, str) or self.towns.get(town) is None:
                raise adapters.FeedError("town：未知乡镇")
            self.default_town = self.towns.get(town)
        sheet = config.get("sheet")
        if sheet is not None and not isinstance(sheet, str):
            raise adapters.FeedError("sheet：应为工作表名称")
        self.sheet: str | None = sheet


def _mapping(config: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    value = config.get(key)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise adapters.FeedError(f"{key}：应为表（[feeds.{key}]）")
    return value


def decode_ledger_text(data: bytes) -> str:
    """UTF-8 (with or without BOM), UTF-16 with BOM (Excel's "Unicode 文本"), else
    GB18030, which also covers GBK. Raises FeedError when none fits."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            pass
    else:
        for encoding in ("utf-8-sig", "gb18030"):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError:
                continue
    raise adapters.FeedError("无法识别文件编码（支持 UTF-8、GBK、GB18030）")


def _read_csv(
    data: bytes, options: LedgerOptions, where: str, memory: RowMemory | None = None
) -> tuple[list[CaseRecord], list[Rejected]]:
    text = decode_ledger_text(data)
    if "\x00" in text:
        raise adapters.FeedError("文件含有空字符，不是文本表格")
    # The delimiter is whichever one makes a header appear: more telling than
    # counting commas, which free-text cells are full of.
    best: tuple[int, str, list[list[str]], tuple[int, int, dict[str, Column]]] | None = None
    # The header is within the first HEADER_SCAN_ROWS rows: looking for it in a prefix
    # spares copying a large file into a StringIO once per delimiter.
    top = text[:HEADER_SCAN_CHARS]
    try:
        for delimiter in _DELIMITERS:
            reader = csv.reader(io.StringIO(top, newline=""), delimiter=delimiter)
            head = list(itertools.islice(reader, HEADER_SCAN_ROWS))
            found = _find_header(head, options.aliases)
            if found is not None and (best is None or len(found[2]) > best[0]):
                best = (len(found[2]), delimiter, head, found)
        if best is None:
            raise adapters.FeedError(_NO_HEADER)
        _, delimiter, head, (start, span, columns) = best
        titles = [c for row in head[:start] for c in row if c]
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        return _read_rows(
            enumerate(reader, start=1),
            start,
            span,
            columns,
            options,
            where,
            titles,
            memory,
            text=True,
        )
    except csv.Error as exc:
        raise adapters.FeedError(f"CSV 格式错误：{exc}") from None


class RowMemory:
    """Which rows a watched ledger already delivered, so a re-read file costs little.

    For each case number it keeps a keyed digest (BLAKE2b, a random key made when
    the adapter is created and never written anywhere) of the raw row: never the
    row itself. A row whose digest is unchanged is not converted again. Digests of
    a pull become known only once the sink has stored that pull (`commit`), so a
    pull whose transaction failed is read in full next time.
    """

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)
        self._known: dict[str, bytes] = {}
        self._pending: dict[str, bytes] = {}
        #: Rows skipped during the current pull.
        self.skipped = 0

    def fresh(
        self,
        rows: Iterable[tuple[int, Sequence[object]]],
        id_index: int,
        where: str,
        titles: Sequence[str],
        *,
        text: bool = False,
    ) -> list[tuple[int, Sequence[object], tuple[str, bytes] | None]]:
        """The rows to convert, each with its (case number, keyed digest) to remember
        once converted (None: a row never skipped); rows known unchanged are left
        out and counted in `skipped`.

        With `text`, every row is a list of str without NUL (a CSV file: a NUL makes
        it unreadable before this), and NUL-joining the cells is a faster encoding
        that is still one-to-one; other rows (XLSX: numbers, dates) go by repr.
        """
        rows = list(rows)
        if text:
            nos = [cast(str, c[id_index]).strip() if id_index < len(c) else "" for _, c in rows]
        else:
            nos = [cell_text(c[id_index]) if id_index < len(c) else "" for _, c in rows]
        # A case listed twice in one file keeps its last row: never skip either of them.
        counts = collections.Counter(nos)
        # What a row's digest also covers: its file and the title rows above it.
        base = hashlib.blake2b(key=self._key, digest_size=16)
        base.update(repr((where, tuple(titles), text)).encode())
        known = self._known
        out: list[tuple[int, Sequence[object], tuple[str, bytes] | None]] = []
        skipped = 0
        for (rowno, cells), no in zip(rows, nos, strict=True):
            if not no or counts[no] != 1:
                out.append((rowno, cells, None))
                continue
            h = base.copy()
            raw = "\x00".join(cast("Sequence[str]", cells)) if text else repr(list(cells))
            h.update(raw.encode())
            digest = h.digest()
            if known.get(no) == digest:
                skipped += 1
            else:
                out.append((rowno, cells, (no, digest)))
        self.skipped += skipped
        return out

    def remember(self, case_no: str, digest: bytes) -> None:
        self._pending[case_no] = digest

    def start(self) -> None:
        self._pending = {}
        self.skipped = 0

    def commit(self) -> None:
        if len(self._known) > 1_000_000:
            self._known.clear()  # bounded memory; the next pull is full price
        self._known.update(self._pending)
        self._pending = {}


def _read_rows(
    rows: Iterable[tuple[int, Sequence[object]]],
    start: int,
    span: int,
    columns: dict[str, Column],
    options: LedgerOptions,
    where: str,
    titles: Sequence[str] = (),
    memory: RowMemory | None = None,
    *,
    text: bool = False,
) -> tuple[list[CaseRecord], list[Rejected]]:
    """The records under a header. `text`: every row is a list of str (CSV)."""
    missing = [f for f in REQUIRED_FIELDS if f not in columns]
    if missing:
        names = "、".join(FIELD_LABELS[f] for f in missing)
        raise adapters.FeedError(f"找不到必需的列：{names}（可在 [feeds.columns] 中指定）")
    default_town = options.default_town
    if default_town is None and "town" not in columns:
        # A one-town ledger often says which town only in its title row.
        default_town = next(filter(None, map(options.towns.find_in, titles)), None)
    reader = _RowReader(columns, options.statuses, options.towns, default_town, where)
    records: list[CaseRecord] = []
    rejected: list[Rejected] = []
    first_data = start + span + 1  # row number of the first data row
    data: Iterable[tuple[int, Sequence[object]]] = (r for r in rows if r[0] >= first_data)
    todo: Iterable[tuple[int, Sequence[object], tuple[str, bytes] | None]]
    if memory is not None:
        todo = memory.fresh(data, columns["source_id"].index, where, titles, text=text)
    else:
        todo = ((rowno, cells, None) for rowno, cells in data)
    for rowno, cells, key in todo:
        result = reader.read(cells, rowno)
        if result is None:
            continue
        if isinstance(result, Rejected):
            rejected.append(result)
        else:
            records.append(result)
            if key is not None and memory is not None:
                memory.remember(*key)
    return records, rejected


def _read_xlsx(
    data: bytes, options: LedgerOptions, where: str, memory: RowMemory | None = None
) -> tuple[list[CaseRecord], list[Rejected]]:
    import openpyxl  # imported here: it is slow to import and only XLSX needs it

    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a broken zip or XML
        raise adapters.FeedError(f"无法打开 XLSX 文件（{type(exc).__name__}）") from None
    try:
        if options.sheet is not None:
            if options.sheet not in book.sheetnames:
                raise adapters.FeedError("sheet：工作簿中没有该工作表")
            sheets = [book[options.sheet]]
        else:
            sheets = list(book.worksheets)
        records: list[CaseRecord] = []
        rejected: list[Rejected] = []
        found_any = False
        for sheet in sheets:
            # Exports from WPS and others often declare a wrong sheet size.
            sheet.reset_dimensions()
            rows = sheet.iter_rows(values_only=True)
            head: list[tuple[object, ...]] = []
            for row in rows:
                head.append(row)
                if len(head) >= HEADER_SCAN_ROWS:
                    break
            found = _find_header([[cell_text(c) for c in r] for r in head], options.aliases)
            if found is None:
                continue
            found_any = True
            start, span, columns = found
            titles = [cell_text(c) for r in head[:start] for c in r if c is not None]
            label = where if len(sheets) == 1 else f"{where} {sheet.title}".strip()
            more = itertools.chain(enumerate(head, start=1), enumerate(rows, start=len(head) + 1))
            got, bad = _read_rows(more, start, span, columns, options, label, titles, memory)
            records.extend(got)
            rejected.extend(bad)
        if not found_any:
            raise adapters.FeedError(_NO_HEADER)
        return records, rejected
    finally:
        book.close()


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a file becomes rows and records.

    Parsing makes hundreds of thousands of small lists and strings that form no
    cycles; the collector would walk the whole heap again and again (measured:
    about 40% of re-reading a 100,000-row ledger). It is paused for one file only.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def parse_ledger_bytes(
    data: bytes, options: LedgerOptions, where: str = "", memory: RowMemory | None = None
) -> tuple[list[CaseRecord], list[Rejected]]:
    """Parse one ledger file's content; the format is told by its first bytes.

    With `memory`, rows it already holds (unchanged) are skipped."""
    with _gc_paused():
        return _parse_ledger_bytes(data, options, where, memory)


def _parse_ledger_bytes(
    data: bytes, options: LedgerOptions, where: str, memory: RowMemory | None
) -> tuple[list[CaseRecord], list[Rejected]]:
    if data.startswith(b"PK\x03\x04"):
        return _read_xlsx(data, options, where, memory)
    if data.startswith(b"\xd0\xcf\x11\xe0"):
        raise adapters.FeedError("不支持旧版 .xls 文件，请另存为 .xlsx 或 CSV")
    return _read_csv(data, options, where, memory)


def _dedupe(records: list[CaseRecord]) -> list[CaseRecord]:
    """A case listed twice keeps its last row, which is the newest in a ledger."""
    latest: dict[str, CaseRecord] = {}
    for record in records:
        latest.pop(record.source_id, None)
        latest[record.source_id] = record
    return list(latest.values())


def read_ledger(path: Path, config: Mapping[str, Any], towns: Mapping[str, str]) -> Batch:
    """Read one ledger file (`yizheng import FILE --feed NAME`). Synchronous.

    Raises `adapters.FeedError` when the file cannot be read at all; bad rows
    come back as `Batch.rejected` and the rest is imported.
    """
    options = LedgerOptions(config, towns)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise adapters.FeedError(f"无法读取文件：{exc.strerror or type(exc).__name__}") from None
    records, rejected = parse_ledger_bytes(data, options)
    return Batch(records=_dedupe(records), rejected=rejected, cursor=None)


def format_import_summary(counts: Mapping[str, int], rejected: Sequence[Rejected]) -> str:
    """The lines `yizheng import` and `feed run --once` print.

    `counts` has the keys new, changed, unchanged (missing keys count 0);
    the quarantined count is `len(rejected)` unless `counts` says otherwise.
    """
    quarantined = counts.get("quarantined", len(rejected))
    lines = [
        f"新增 {counts.get('new', 0)} 条，变更 {counts.get('changed', 0)} 条，"
        f"未变 {counts.get('unchanged', 0)} 条，隔离 {quarantined} 条"
    ]
    for item in rejected:
        lines.append(f"  隔离 {item.source_id or '-'}：{item.reason}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the adapter


@dataclass(frozen=True, slots=True)
class _Seen:
    size: int
    mtime_ns: int
    sha256: str


def _load_cursor(cursor: str | None) -> dict[str, _Seen]:
    # A cursor we cannot read only costs a re-import, which upserts make harmless.
    if not cursor:
        return {}
    try:
        raw = json.loads(cursor)
        return {
            str(name): _Seen(int(v[0]), int(v[1]), str(v[2]))
            for name, v in raw.get("files", {}).items()
        }
    except (ValueError, TypeError, AttributeError, IndexError, KeyError):
        return {}


def _dump_cursor(seen: Mapping[str, _Seen]) -> str:
    files = {name: [s.size, s.mtime_ns, s.sha256] for name, s in sorted(seen.items())}
    return json.dumps({"v": 1, "files": files}, ensure_ascii=False, separators=(",", ":"))


class LedgerAdapter:
    """`kind = "ledger"`: a ledger file, or a folder of them, imported when new or changed.

    Config: `path` (file or folder; relative paths are relative to the working
    directory), optional `[feeds.columns]`, `[feeds.statuses]`, `[feeds.towns]`,
    `town` (for a one-town ledger without a town column), `sheet` (XLSX).
    The cursor records (name, size, mtime, sha256) of each file imported.
    """

    def __init__(self, name: str, config: Mapping[str, Any], towns: Mapping[str, str]) -> None:
        self.name = name
        path = config.get("path")
        if not isinstance(path, str | os.PathLike) or not str(path):
            raise adapters.FeedError(f"{name}: path：台账文件或文件夹必填")
        self.path = Path(path)
        try:
            self.options = LedgerOptions(config, towns)
        except adapters.FeedError as exc:
            raise adapters.FeedError(f"{name}: {exc}") from None
        self.memory = RowMemory()

    def committed(self) -> None:
        """The sink stored the last pull: its rows count as delivered from now on."""
        self.memory.commit()

    async def pull(self, cursor: str | None) -> Batch:
        try:
            return await asyncio.to_thread(self.pull_sync, cursor)
        except adapters.FeedError as exc:
            # Like the other adapters' errors: the feed's name first.
            raise adapters.FeedError(f"{self.name}: {exc}") from None

    async def aclose(self) -> None:
        return None

    def _files(self) -> list[Path]:
        if self.path.is_file():
            return [self.path]
        if not self.path.is_dir():
            raise adapters.FeedError("path：台账文件或文件夹不存在")
        found = []
        for entry in os.scandir(self.path):
            name = entry.name
            # `~$x.xlsx` is Excel's lock file; dot files are editors' and sync tools'.
            if name.startswith((".", "~$")) or Path(name).suffix.lower() not in LEDGER_SUFFIXES:
                continue
            if entry.is_file():
                found.append(Path(entry.path))
        return found

    def pull_sync(self, cursor: str | None) -> Batch:
        """Import every file that is new or changed since `cursor`."""
        seen = _load_cursor(cursor)
        self.memory.start()
        single = self.path.is_file()
        batch = Batch()
        current: dict[str, _Seen] = {}
        pending: list[tuple[int, str, Path, os.stat_result]] = []
        for file in self._files():
            try:
                st = file.stat()
            except FileNotFoundError:
                continue
            pending.append((st.st_mtime_ns, file.name, file, st))
        # Oldest first, so a case in several exports ends with its newest row.
        pending.sort()
        records: list[CaseRecord] = []
        for _, name, file, st in pending:
            before = seen.get(name)
            if before and before.size == st.st_size and before.mtime_ns == st.st_mtime_ns:
                current[name] = before
                continue
            try:
                data = file.read_bytes()
            except FileNotFoundError:
                continue
            except OSError as exc:
                if single:
                    raise adapters.FeedError(
                        f"无法读取文件：{exc.strerror or type(exc).__name__}"
                    ) from None
                batch.rejected.append(Rejected(None, f"文件「{name}」无法读取"))
                continue
            digest = hashlib.sha256(data).hexdigest()[:32]
            # Record what was read, not a fresh stat: a file rewritten while we
            # read it then differs next time and is imported again.
            current[name] = _Seen(len(data), st.st_mtime_ns, digest)
            if before and before.sha256 == digest:
                continue  # touched, not changed
            try:
                got, bad = parse_ledger_bytes(
                    data, self.options, "" if single else name, self.memory
                )
            except adapters.FeedError as exc:
                if single:
                    raise
                batch.rejected.append(Rejected(None, f"文件「{name}」：{exc}"))
                continue
            records.extend(got)
            batch.rejected.extend(bad)
        batch.records = _dedupe(records)
        batch.cursor = _dump_cursor(current)
        batch.unchanged = self.memory.skipped
        return batch
