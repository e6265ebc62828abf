"""Ledger files (台账): real CSV and XLSX files written to tmp_path, read back."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from openpyxl.styles import Font

from display.settings import Settings
from feeds.adapters import Adapter, FeedError, build_adapter
from feeds.ledger import (
    STATUS_WORDS,
    LedgerAdapter,
    format_import_summary,
    parse_ledger_date,
    read_ledger,
)
from feeds.record import SHANGHAI, Batch, CaseRecord, Rejected

TOWNS = {
    "longshi": "longshi",
    "龙市镇": "longshi",
    "shiyanqiao": "shiyanqiao",
    "石燕桥镇": "shiyanqiao",
}
HEADER = [
    "受理编号",
    "诉求人",
    "联系电话",
    "住址",
    "诉求内容",
    "所属镇(街道)",
    "村(社区)",
    "诉求类型",
    "办理状态",
    "受理时间",
    "办结时间",
    "责任单位",
    "回访满意度",
    "是否督办",
]
# Personal data seeded into files: none of it may appear in a rejection reason.
NAME, PHONE, ADDRESS = "张建国", "13912345678", "龙市镇石燕村3组25号"


def row(
    source_id: str = "LS-001",
    summary: str = "村道路灯损坏，夜间出行不便",
    town: str = "龙市镇",
    status: str = "办理中",
    received: str = "2026-03-05",
    **more: str,
) -> list[str]:
    values = {
        "受理编号": source_id,
        "诉求人": NAME,
        "联系电话": PHONE,
        "住址": ADDRESS,
        "诉求内容": summary,
        "所属镇(街道)": town,
        "村(社区)": "石燕村",
        "诉求类型": "基础设施",
        "办理状态": status,
        "受理时间": received,
        "办结时间": "",
        "责任单位": "镇建设办",
        "回访满意度": "",
        "是否督办": "否",
    }
    values.update(more)
    return [values[h] for h in HEADER]


def csv_bytes(
    rows: Sequence[Sequence[str]], encoding: str = "utf-8", delimiter: str = ","
) -> bytes:
    out = io.StringIO(newline="")
    csv.writer(out, delimiter=delimiter, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode(encoding)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def read(path: Path, config: Mapping[str, Any] | None = None) -> Batch:
    return read_ledger(path, config or {}, TOWNS)


def only(batch: Batch) -> CaseRecord:
    assert batch.rejected == []
    assert len(batch.records) == 1
    return batch.records[0]


def assert_no_personal_data(rejected: Sequence[Rejected]) -> None:
    for item in rejected:
        text = f"{item.source_id} {item.reason}"
        for secret in (NAME, PHONE, ADDRESS, "石燕村3组"):
            assert secret not in text


# ---------------------------------------------------------------- encodings and delimiters


def test_gbk_csv(tmp_path: Path) -> None:
    data = csv_bytes([HEADER, row(), row("LS-002", status="已办结")], "gbk")
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    batch = read(write(tmp_path / "台账.csv", data))
    assert batch.rejected == []
    first, second = batch.records
    assert first.source_id == "LS-001"
    assert first.summary == "村道路灯损坏，夜间出行不便"
    assert first.town == "longshi"
    assert first.village == "石燕村"
    assert first.department == "镇建设办"
    assert first.status == "in_progress"
    assert first.received_at == datetime(2026, 3, 5, tzinfo=SHANGHAI)
    assert first.requester_name == NAME
    assert first.requester_phone == PHONE
    assert first.requester_address == ADDRESS
    assert (second.status, second.outcome) == ("resolved", "resolved")


def test_gb18030_csv_with_characters_gbk_lacks(tmp_path: Path) -> None:
    summary = "𠮷家坝排水沟堵塞"  # U+20BB7 exists in GB18030 only
    with pytest.raises(UnicodeEncodeError):
        summary.encode("gbk")
    data = csv_bytes([HEADER, row(summary=summary)], "gb18030")
    assert only(read(write(tmp_path / "a.csv", data))).summary == summary


def test_utf8_bom_csv(tmp_path: Path) -> None:
    data = csv_bytes([HEADER, row()], "utf-8-sig")
    assert data.startswith(b"\xef\xbb\xbf")
    # The BOM must not stick to the first header, or 受理编号 would not be found.
    assert only(read(write(tmp_path / "a.csv", data))).source_id == "LS-001"


def test_tab_separated_with_commas_in_text(tmp_path: Path) -> None:
    summary = "路面破损,积水严重,请尽快处理"
    data = csv_bytes([HEADER, row(summary=summary)], "utf-8", "\t")
    record = only(read(write(tmp_path / "a.txt", data)))
    assert record.summary == summary
    assert record.town == "longshi"


def test_excel_unicode_text_export(tmp_path: Path) -> None:
    # Excel's "Unicode 文本" is UTF-16 with a BOM and tabs.
    data = csv_bytes([HEADER, row()], "utf-16", "\t")
    assert only(read(write(tmp_path / "a.txt", data))).source_id == "LS-001"


def test_undecodable_file_is_a_feed_error(tmp_path: Path) -> None:
    data = csv_bytes([HEADER], "utf-8") + b"\xff\xfe\x80\xff\n"
    with pytest.raises(FeedError, match="编码"):
        read(write(tmp_path / "a.csv", data))


def test_old_xls_is_a_clear_feed_error(tmp_path: Path) -> None:
    with pytest.raises(FeedError, match=r"\.xls"):
        read(write(tmp_path / "a.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 64))


def test_title_rows_and_multiline_cells_in_csv(tmp_path: Path) -> None:
    rows = [
        ["石燕桥镇群众诉求台账（2026年）", "", ""],
        ["填报单位：镇党政办", "", ""],
        HEADER,
        row(summary="第一行\n第二行"),
        row("LS-002", status="乱写"),
    ]
    batch = read(write(tmp_path / "a.csv", csv_bytes(rows)))
    assert [r.summary for r in batch.records] == ["第一行\n第二行"]
    # Row numbers count records as Excel shows them, not physical lines.
    assert batch.rejected == [Rejected("LS-002", "办理状态：无法识别的状态（第5行）")]


def test_no_header_is_a_feed_error(tmp_path: Path) -> None:
    data = csv_bytes([["a", "b"], ["1", "2"]])
    with pytest.raises(FeedError, match="表头"):
        read(write(tmp_path / "a.csv", data))


def test_missing_required_column_is_named(tmp_path: Path) -> None:
    header = [h for h in HEADER if h != "受理时间"]
    data = csv_bytes([header, row()[: len(header)]])
    with pytest.raises(FeedError, match="受理时间"):
        read(write(tmp_path / "a.csv", data))


# ---------------------------------------------------------------- XLSX


def build_xlsx(path: Path) -> Path:
    """A ledger as township offices make them: a merged title row, a two-row
    header with merged cells, blank rows, a stray formatted column on the right."""
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "台账"
    sheet["A1"] = "龙市镇群众诉求台账（2026年）"
    sheet.merge_cells("A1:J1")
    top = ["编号", "诉求人信息", None, "诉求内容", "村（社区）", "诉求类型", "办理状态",
           "受理时间", "办结时间", "是否督办"]  # fmt: skip
    sub = [None, "姓名", "联系电话", None, None, None, None, None, None, None]
    for col, text in enumerate(top, start=1):
        sheet.cell(row=2, column=col, value=text)
    for col, text in enumerate(sub, start=1):
        sheet.cell(row=3, column=col, value=text)
    sheet.merge_cells("B2:C2")
    for letter in "ADEFGHIJ":
        sheet.merge_cells(f"{letter}2:{letter}3")
    data: list[list[object]] = [
        [1001, NAME, PHONE, "自来水管破裂", "石燕村", "基础设施", "已交办",
         datetime(2026, 3, 5, 9, 30), None, "√"],
        [None] * 10,
        [1002.0, NAME, PHONE, "咨询低保申请条件", "石燕村", "政策咨询", "已解释",
         46086.5, 46090, "否"],
        ["LS-1003", NAME, PHONE, None, "石燕村", "环境卫生", "办理中",
         "2026年3月6日", None, None],
        [None] * 10,
        ["LS-1004", NAME, PHONE, "垃圾清运不及时", "石燕村", "环境卫生", "纳入规划",
         "2026.3.7", "2026/3/9", "是"],
    ]  # fmt: skip
    for r, values in enumerate(data, start=4):
        for c, value in enumerate(values, start=1):
            sheet.cell(row=r, column=c, value=value)
    # A formatted but empty cell far to the right, and one stray note with no header.
    sheet.cell(row=4, column=20).font = Font(bold=True)
    sheet.cell(row=6, column=14, value="备注无表头")
    book.create_sheet("说明")["A1"] = "本表由镇党政办每周更新"
    book.save(path)
    return path


def test_xlsx_with_title_merged_header_and_blank_rows(tmp_path: Path) -> None:
    batch = read(build_xlsx(tmp_path / "台账.xlsx"))
    by_id = {r.source_id: r for r in batch.records}
    assert list(by_id) == ["1001", "1002", "LS-1004"]

    first = by_id["1001"]
    assert first.requester_name == NAME
    assert first.requester_phone == PHONE
    assert first.summary == "自来水管破裂"
    assert first.village == "石燕村"
    assert first.status == "assigned"
    assert first.supervised is True
    assert first.received_at == datetime(2026, 3, 5, 9, 30, tzinfo=SHANGHAI)
    # No town column: the title row names the town.
    assert first.town == "longshi"

    second = by_id["1002"]
    assert second.kind == "consult"
    assert (second.status, second.outcome) == ("resolved", "explained")
    assert second.received_at == datetime(2026, 3, 5, 12, 0, tzinfo=SHANGHAI)
    assert second.resolved_at == datetime(2026, 3, 9, tzinfo=SHANGHAI)
    assert second.supervised is False

    fourth = by_id["LS-1004"]
    assert (fourth.status, fourth.outcome) == ("resolved", "planned")
    assert fourth.received_at == datetime(2026, 3, 7, tzinfo=SHANGHAI)

    # The half-filled row is rejected by its id, with its sheet and real Excel row number.
    assert batch.rejected == [Rejected("LS-1003", "诉求内容：不能为空（台账 第7行）")]


def test_xlsx_sheet_option(tmp_path: Path) -> None:
    path = build_xlsx(tmp_path / "a.xlsx")
    with pytest.raises(FeedError, match="表头"):
        read(path, {"sheet": "说明"})
    with pytest.raises(FeedError, match="sheet"):
        read(path, {"sheet": "没有这张表"})
    assert len(read(path, {"sheet": "台账"}).records) == 3


def test_broken_xlsx_is_a_feed_error(tmp_path: Path) -> None:
    data = build_xlsx(tmp_path / "a.xlsx").read_bytes()
    with pytest.raises(FeedError, match="XLSX"):
        read(write(tmp_path / "b.xlsx", data[: len(data) // 2]))


# ---------------------------------------------------------------- dates


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-05", datetime(2026, 3, 5)),
        ("2026/3/5", datetime(2026, 3, 5)),
        ("2026年3月5日", datetime(2026, 3, 5)),
        ("2026.3.5", datetime(2026, 3, 5)),
        ("2026-03-05 09:30", datetime(2026, 3, 5, 9, 30)),
        ("2026/3/5 9:30:15", datetime(2026, 3, 5, 9, 30, 15)),
        ("2026年3月5日 9时30分", datetime(2026, 3, 5, 9, 30)),
        ("2026年3月5日14:05", datetime(2026, 3, 5, 14, 5)),
        ("2026.3.5 8:00", datetime(2026, 3, 5, 8, 0)),
        ("20260305", datetime(2026, 3, 5)),
        ("46086", datetime(2026, 3, 5)),
        ("46086.75", datetime(2026, 3, 5, 18, 0)),
        ("2026-03-05T09:30:00+08:00", datetime(2026, 3, 5, 9, 30)),
        ("2026-03-05T01:30:00Z", datetime(2026, 3, 5, 9, 30)),
    ],
)
def test_date_formats(text: str, expected: datetime) -> None:
    assert parse_ledger_date(text) == expected.replace(tzinfo=SHANGHAI)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (46086, datetime(2026, 3, 5)),
        (46086.5, datetime(2026, 3, 5, 12, 0)),
        # Rounding noise in stored serials must not become a changed record.
        (46086.0 + 1 / 3 + 1e-9, datetime(2026, 3, 5, 8, 0)),
        (datetime(2026, 3, 5, 9, 30), datetime(2026, 3, 5, 9, 30)),
    ],
)
def test_excel_serials_and_datetime_cells(value: object, expected: datetime) -> None:
    assert parse_ledger_date(value) == expected.replace(tzinfo=SHANGHAI)


@pytest.mark.parametrize("text", ["2026-13-05", "2026-02-30", "昨天", "3月5日", "1999-03-05", "5"])
def test_bad_dates_raise(text: str) -> None:
    with pytest.raises(ValueError):
        parse_ledger_date(text)


def test_bad_date_rejects_the_row_and_names_the_column(tmp_path: Path) -> None:
    rows = [HEADER, row("A", received="上周三"), row("B", 办结时间="2026-02-30"), row("C")]
    batch = read(write(tmp_path / "a.csv", csv_bytes(rows)))
    assert [r.source_id for r in batch.records] == ["C"]
    assert batch.rejected == [
        Rejected("A", "受理时间：无法识别的日期（第2行）"),
        Rejected("B", "办结时间：无法识别的日期（第3行）"),
    ]


# ---------------------------------------------------------------- status and other words


@pytest.mark.parametrize(
    ("word", "stage", "outcome"),
    [
        ("已登记", "registered", None),
        ("待受理", "registered", None),
        ("已交办", "assigned", None),
        ("已转办", "assigned", None),
        ("办理中", "in_progress", None),
        ("整改中", "in_progress", None),
        ("已办结", "resolved", "resolved"),
        ("已解决", "resolved", "resolved"),
        ("已解释", "resolved", "explained"),
        ("不符合政策", "resolved", "explained"),
        ("纳入规划", "resolved", "planned"),
        ("已回复", "replied", None),
        ("已回访", "verified", None),
        ("已抽查", "verified", None),
        (" 已 办结 ", "resolved", "resolved"),
        ("in_progress", "in_progress", None),
    ],
)
def test_status_words(tmp_path: Path, word: str, stage: str, outcome: str | None) -> None:
    record = only(read(write(tmp_path / "a.csv", csv_bytes([HEADER, row(status=word)]))))
    assert (record.status, record.outcome) == (stage, outcome)


def test_every_documented_status_word_is_known() -> None:
    for word in ("已登记", "已交办", "办理中", "已办结", "已解释", "纳入规划", "已回复", "已回访"):
        assert word in STATUS_WORDS


def test_empty_status_is_registered(tmp_path: Path) -> None:
    record = only(read(write(tmp_path / "a.csv", csv_bytes([HEADER, row(status="")]))))
    assert record.status == "registered"


def test_status_overrides_from_config(tmp_path: Path) -> None:
    rows = [HEADER, row("A", status="已销号"), row("B", status="已撤销"), row("C", status="已办结")]
    config = {
        "statuses": {"已销号": "resolved:resolved", "已撤销": "withdrawn", "已办结": "replied"}
    }
    batch = read(write(tmp_path / "a.csv", csv_bytes(rows)), config)
    a, b, c = batch.records
    assert (a.status, a.outcome, a.withdrawn) == ("resolved", "resolved", False)
    assert b.withdrawn is True
    assert c.status == "replied"
    with pytest.raises(FeedError, match="statuses"):
        read(tmp_path / "a.csv", {"statuses": {"已销号": "closed"}})


def test_satisfaction_supervised_and_kind(tmp_path: Path) -> None:
    rows = [
        HEADER,
        row("A", 回访满意度="满意", 是否督办="√"),
        row("B", 回访满意度="基本满意", 是否督办="是", 诉求类型="政策咨询"),
        row("C", 回访满意度="不满意", 是否督办=""),
        row("D", 回访满意度="还行"),
        row("E", 是否督办="可能"),
    ]
    batch = read(write(tmp_path / "a.csv", csv_bytes(rows)))
    got = [(r.source_id, r.satisfaction, r.supervised, r.kind) for r in batch.records]
    assert got == [
        ("A", "satisfied", True, "general"),
        ("B", "basically_satisfied", True, "consult"),
        ("C", "dissatisfied", False, "general"),
    ]
    assert [(r.source_id, r.reason.split("：")[0]) for r in batch.rejected] == [
        ("D", "回访满意度"),
        ("E", "是否督办"),
    ]


# ---------------------------------------------------------------- towns


def test_towns_by_slug_name_or_short_name_and_unknown_rejected(tmp_path: Path) -> None:
    rows = [
        HEADER,
        row("A", town="龙市镇"),
        row("B", town="龙市"),
        row("C", town="shiyanqiao"),
        row("D", town="石燕桥镇 "),
        row("E", town="胡家镇"),
        row("F", town=""),
    ]
    batch = read(write(tmp_path / "a.csv", csv_bytes(rows)))
    assert [(r.source_id, r.town) for r in batch.records] == [
        ("A", "longshi"),
        ("B", "longshi"),
        ("C", "shiyanqiao"),
        ("D", "shiyanqiao"),
        ("F", None),
    ]
    assert batch.rejected == [Rejected("E", "所属镇(街道)：未知乡镇（第6行）")]


def test_town_from_config_for_a_ledger_without_town_column(tmp_path: Path) -> None:
    header = [h for h in HEADER if h != "所属镇(街道)"]
    values = [v for h, v in zip(HEADER, row(), strict=True) if h != "所属镇(街道)"]
    path = write(tmp_path / "a.csv", csv_bytes([header, values]))
    assert only(read(path)).town is None
    assert only(read(path, {"town": "石燕桥镇"})).town == "shiyanqiao"
    with pytest.raises(FeedError, match="town"):
        read(path, {"town": "胡家镇"})


# ---------------------------------------------------------------- columns


def test_full_width_headers_and_spaces(tmp_path: Path) -> None:
    header = [h.replace("(", "（").replace(")", "）") for h in HEADER]
    header[4] = " 诉求 内容\n"
    header[0] = "＊受理编号"
    record = only(read(write(tmp_path / "a.csv", csv_bytes([header, row()]))))
    assert (record.source_id, record.town, record.village) == ("LS-001", "longshi", "石燕村")


def test_column_overrides(tmp_path: Path) -> None:
    header = ["案件号", "群众反映事项", "登记日", "镇", "进度"]
    rows = [header, ["X-1", "河道垃圾", "2026/3/5", "龙市镇", "已回复"]]
    path = write(tmp_path / "a.csv", csv_bytes(rows))
    with pytest.raises(FeedError, match="编号"):
        read(path)
    columns = {
        "source_id": "案件号",
        "summary": "群众反映事项",
        "received_at": "登记日",
        "town": "镇",
        "status": ["办理进度", "进度"],
    }
    record = only(read(path, {"columns": columns}))
    assert (record.source_id, record.summary, record.town, record.status) == (
        "X-1",
        "河道垃圾",
        "longshi",
        "replied",
    )
    with pytest.raises(FeedError, match=r"columns\.phone"):
        read(path, {"columns": {**columns, "phone": "电话"}})


def test_override_wins_over_a_default_header(tmp_path: Path) -> None:
    header = [*HEADER, "问题概述"]
    path = write(tmp_path / "a.csv", csv_bytes([header, [*row(), "概述文字"]]))
    assert only(read(path, {"columns": {"summary": "问题概述"}})).summary == "概述文字"


def test_row_number_column_only_when_nothing_better(tmp_path: Path) -> None:
    header = ["序号", *HEADER]
    path = write(tmp_path / "a.csv", csv_bytes([header, ["7", *row()]]))
    assert only(read(path)).source_id == "LS-001"
    header = ["序号", *HEADER[1:]]
    path = write(tmp_path / "b.csv", csv_bytes([header, ["7", *row()[1:]]]))
    assert only(read(path)).source_id == "7"


# ---------------------------------------------------------------- bad rows


def test_half_filled_rows_are_rejected_and_the_rest_imports(tmp_path: Path) -> None:
    rows = [
        HEADER,
        row("A"),
        row("", summary="没有编号的诉求"),
        row("C", summary=""),
        row("D", received=""),
        row("E", summary="无"),
        row("X" * 65),
        row("G", 责任单位="很长的单位名称" * 20),
        ["", "", "", "", "", "", "", "", "", "", "", "", "", ""],
        row("H"),
    ]
    batch = read(write(tmp_path / "a.csv", csv_bytes(rows)))
    assert [r.source_id for r in batch.records] == ["A", "H"]
    assert batch.rejected == [
        Rejected("第3行", "受理编号：不能为空（第3行）"),
        Rejected("C", "诉求内容：不能为空（第4行）"),
        Rejected("D", "受理时间：不能为空（第5行）"),
        Rejected("E", "诉求内容：不能为空（第6行）"),
        Rejected("第7行", "受理编号：超过64个字符（第7行）"),
        Rejected("G", "责任单位：超过100个字符（第8行）"),
    ]
    assert_no_personal_data(batch.rejected)


def test_a_case_listed_twice_keeps_its_last_row(tmp_path: Path) -> None:
    rows = [HEADER, row("A", status="办理中"), row("B"), row("A", status="已办结")]
    batch = read(write(tmp_path / "a.csv", csv_bytes(rows)))
    assert [(r.source_id, r.status) for r in batch.records] == [
        ("B", "in_progress"),
        ("A", "resolved"),
    ]


def test_format_import_summary() -> None:
    text = format_import_summary(
        {"new": 3, "changed": 1, "unchanged": 10},
        [Rejected("C", "诉求内容：不能为空（第4行）")],
    )
    assert text.splitlines() == [
        "新增 3 条，变更 1 条，未变 10 条，隔离 1 条",
        "  隔离 C：诉求内容：不能为空（第4行）",
    ]


# ---------------------------------------------------------------- the adapter: files and folders


def ids(batch: Batch) -> list[str]:
    return sorted(r.source_id for r in batch.records)


def set_mtime(path: Path, seconds: int) -> None:
    os.utime(path, ns=(seconds * 10**9, seconds * 10**9))


async def test_folder_imports_new_and_changed_files_once(tmp_path: Path) -> None:
    folder = tmp_path / "ledgers"
    folder.mkdir()
    adapter = LedgerAdapter("ledger", {"path": str(folder)}, TOWNS)
    assert adapter.name == "ledger"

    a = write(folder / "a.csv", csv_bytes([HEADER, row("A1"), row("A2")], "gbk"))
    set_mtime(a, 1_700_000_000)
    first = await adapter.pull(None)
    assert ids(first) == ["A1", "A2"]
    assert first.cursor is not None

    # Nothing new: nothing imported.
    again = await adapter.pull(first.cursor)
    assert again.records == [] and again.rejected == []

    # A new file: only its rows.
    b = write(folder / "b.xlsx", build_xlsx(tmp_path / "b.xlsx").read_bytes())
    set_mtime(b, 1_700_000_100)
    second = await adapter.pull(again.cursor)
    assert ids(second) == ["1001", "1002", "LS-1004"]
    assert [r.source_id for r in second.rejected] == ["LS-1003"]
    assert "b.xlsx" in second.rejected[0].reason

    # Touched, same content: not imported again.
    set_mtime(a, 1_700_000_200)
    touched = await adapter.pull(second.cursor)
    assert touched.records == []

    # Changed: imported again, whole file (upserts downstream make that harmless).
    write(a, csv_bytes([HEADER, row("A1", status="已办结"), row("A2")], "gbk"))
    set_mtime(a, 1_700_000_300)
    changed = await adapter.pull(touched.cursor)
    assert ids(changed) == ["A1", "A2"]
    assert changed.records[0].status == "resolved"
    final = await adapter.pull(changed.cursor)
    assert final.records == []
    await adapter.aclose()


async def test_folder_ignores_lock_files_and_survives_a_bad_file(tmp_path: Path) -> None:
    write(tmp_path / "~$a.xlsx", b"lock")
    write(tmp_path / ".hidden.csv", csv_bytes([HEADER, row("H")]))
    write(tmp_path / "notes.md", b"# not a ledger")
    write(tmp_path / "bad.csv", b"ok,\x80\xff\x80\n")
    write(tmp_path / "good.csv", csv_bytes([HEADER, row("G")]))
    adapter = LedgerAdapter("ledger", {"path": str(tmp_path)}, TOWNS)
    batch = await adapter.pull(None)
    assert ids(batch) == ["G"]
    assert len(batch.rejected) == 1
    assert batch.rejected[0].source_id is None
    assert "bad.csv" in batch.rejected[0].reason and "编码" in batch.rejected[0].reason
    # The bad file is not retried until it changes.
    assert (await adapter.pull(batch.cursor)).rejected == []


async def test_a_case_in_two_exports_ends_with_the_newest_file(tmp_path: Path) -> None:
    old = write(tmp_path / "z-march.csv", csv_bytes([HEADER, row("A", status="办理中")]))
    new = write(tmp_path / "a-april.csv", csv_bytes([HEADER, row("A", status="已办结")]))
    set_mtime(old, 1_700_000_000)
    set_mtime(new, 1_700_100_000)
    batch = await LedgerAdapter("ledger", {"path": str(tmp_path)}, TOWNS).pull(None)
    assert [(r.source_id, r.status) for r in batch.records] == [("A", "resolved")]


async def test_single_file_path_and_errors(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", csv_bytes([HEADER, row("A")]))
    adapter = LedgerAdapter("ledger", {"path": str(path)}, TOWNS)
    first = await adapter.pull(None)
    assert ids(first) == ["A"]
    assert (await adapter.pull(first.cursor)).records == []
    write(path, csv_bytes([HEADER, row("A"), row("B")]))
    assert ids(await adapter.pull(first.cursor)) == ["A", "B"]
    # A garbled cursor costs a re-import, never a failure.
    assert ids(await adapter.pull("{not json")) == ["A", "B"]

    write(path, b"ok,\x80\xff\x80\n")
    with pytest.raises(FeedError, match="编码"):
        await adapter.pull(None)
    with pytest.raises(FeedError, match="不存在"):
        await LedgerAdapter("ledger", {"path": str(tmp_path / "nope")}, TOWNS).pull(None)
    with pytest.raises(FeedError, match="path"):
        LedgerAdapter("ledger", {}, TOWNS)


def test_built_by_the_factory(tmp_path: Path) -> None:
    adapter: Adapter = build_adapter("ledger", "ledger", {"path": str(tmp_path)}, TOWNS)
    assert isinstance(adapter, LedgerAdapter)
    assert adapter.name == "ledger"


def test_footers_and_numbered_template_rows_are_not_cases(tmp_path: Path) -> None:
    header = ["序号", *HEADER]
    empty = [""] * len(HEADER)
    rows = [
        header,
        ["1", *row("A")],
        ["2", *empty],
        ["3", *empty],
        ["", "合计：共 1 件", *empty[1:]],
        ["", f"填表人：{NAME}", "", f"联系电话：{PHONE}", *empty[3:]],
    ]
    batch = read(write(tmp_path / "a.csv", csv_bytes(rows)))
    assert [r.source_id for r in batch.records] == ["A"]
    assert batch.rejected == []


def test_a_name_typed_in_the_id_column_of_a_bad_row_is_not_kept(tmp_path: Path) -> None:
    rows = [
        HEADER,
        row(NAME, summary=""),
        row("龙市〔2026〕12号", summary=""),
        row("LS-9", summary=""),
    ]
    batch = read(write(tmp_path / "a.csv", csv_bytes(rows)))
    assert [r.source_id for r in batch.rejected] == ["第2行", "龙市〔2026〕12号", "LS-9"]
    assert_no_personal_data(batch.rejected)


async def test_adapter_errors_name_the_feed(tmp_path: Path) -> None:
    with pytest.raises(FeedError, match=r"^town-ledger: columns\.phone"):
        LedgerAdapter("town-ledger", {"path": str(tmp_path), "columns": {"phone": "电话"}}, TOWNS)
    write(tmp_path / "a.csv", b"ok,\x80\xff\x80\n")
    single = LedgerAdapter("town-ledger", {"path": str(tmp_path / "a.csv")}, TOWNS)
    with pytest.raises(FeedError, match=r"^town-ledger: .*编码"):
        await single.pull(None)


# ---------------------------------------------------------------- through the real runner and store


async def test_watched_folder_through_runner_and_store(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    from display.context import Context
    from display.feedrun import build_runner

    folder = tmp_path / "ledgers"
    folder.mkdir()
    feeds = [{"name": "ledger", "kind": "ledger", "path": str(folder)}]
    ctx = Context.build(make_settings(feeds=feeds))
    await ctx.store.open()
    try:
        await ctx.store.migrate()
        runner = build_runner(ctx, "ledger")
        a = write(
            folder / "a.csv", csv_bytes([HEADER, row("A1"), row("A2"), row("A3", summary="")])
        )
        set_mtime(a, 1_700_000_000)
        first = await runner.run_once()
        assert first is not None
        assert (first["new"], first["quarantined"]) == (2, 1)
        quarantined = await ctx.store.quarantine("ledger")
        assert quarantined, "the half-filled row was quarantined"
        for item in quarantined:
            assert NAME not in repr(item) and PHONE not in repr(item)

        # The cursor came back from the store: nothing is read twice.
        again = await runner.run_once()
        assert again is not None and again["new"] == again["changed"] == 0

        write(a, csv_bytes([HEADER, row("A1", status="已办结"), row("A2"), row("A3")]))
        set_mtime(a, 1_700_000_100)
        changed = await runner.run_once()
        assert changed is not None
        assert (changed["new"], changed["changed"], changed["unchanged"]) == (1, 1, 1)

    finally:
        await ctx.store.close()


async def test_a_changed_file_delivers_only_its_changed_rows_once_stored(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", csv_bytes([HEADER, row("A1"), row("A2"), row("A3")]))
    adapter = LedgerAdapter("ledger", {"path": str(path)}, TOWNS)
    first = await adapter.pull(None)
    assert ids(first) == ["A1", "A2", "A3"]
    adapter.committed()  # the sink stored it

    write(path, csv_bytes([HEADER, row("A1"), row("A2", status="已办结"), row("A3")]))
    set_mtime(path, 1_700_000_500)
    second = await adapter.pull(first.cursor)
    assert ids(second) == ["A2"]
    # Not committed (say the database was down): the next read delivers it again.
    write(path, csv_bytes([HEADER, row("A1"), row("A2", status="已办结"), row("A3", "新内容")]))
    set_mtime(path, 1_700_000_600)
    third = await adapter.pull(second.cursor)
    assert ids(third) == ["A2", "A3"]
    adapter.committed()
    # A case listed twice in one file is always read in full (its last row wins).
    write(path, csv_bytes([HEADER, row("A1"), row("A1", status="已办结"), row("A3", "新内容")]))
    set_mtime(path, 1_700_000_700)
    fourth = await adapter.pull(third.cursor)
    assert ids(fourth) == ["A1"] and fourth.records[0].status == "resolved"
    # What it remembers: case numbers and keyed digests, never a cell.
    for no, digest in adapter.memory._known.items():
        assert no.startswith("A") and len(digest) == 16
        assert NAME.encode() not in digest and PHONE.encode() not in digest


async def test_text_moved_between_cells_is_a_change(tmp_path: Path) -> None:
    """Row digests encode the cells one-to-one: text moving across a cell boundary
    (村 …石燕村 | 诉求类型 基础设施 → 石燕 | 村基础设施) is a changed row, not a skip."""
    path = write(tmp_path / "a.csv", csv_bytes([HEADER, row("A1"), row("A2")]))
    adapter = LedgerAdapter("ledger", {"path": str(path)}, TOWNS)
    first = await adapter.pull(None)
    adapter.committed()
    moved = row("A2", **{"村(社区)": "石燕", "诉求类型": "村基础设施"})
    write(path, csv_bytes([HEADER, row("A1"), moved]))
    set_mtime(path, 1_700_000_500)
    second = await adapter.pull(first.cursor)
    assert ids(second) == ["A2"] and second.unchanged == 1
    assert (second.records[0].village, second.records[0].category) == ("石燕", "村基础设施")
