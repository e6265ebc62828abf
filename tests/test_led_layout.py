"""Chinese line breaking (避头尾, whole numbers), paging and marquees."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from display.led.fonts import load_font
from display.led.layout import NO_END, NO_START, Run, atoms, clusters, wrap
from display.led.render import layout_pages, render_board
from display.led.sample import AT, sample_case, sample_content
from display.settings import Board

F16 = load_font(16)
F12 = load_font(12)


def texts(runs: list[Run], width: int, font=F16) -> list[str]:  # type: ignore[no-untyped-def]
    return [line.text for line in wrap(runs, font, width)]


def test_fonts_are_pixel_exact_cells() -> None:
    assert F16.advance("议") == 16 and F12.advance("议") == 12
    g = F16.glyph("政")
    assert g.mask is not None and g.mask.size == (16, 16) and g.mask.mode == "1"
    # Every pixel is either lit or not: no anti-aliasing in the glyph masks.
    hist = g.mask.convert("L").histogram()
    assert sum(hist[1:255]) == 0 and hist[255] > 0
    # A character outside the subset is drawn as the replacement box, not dropped.
    assert F16.advance("\U00020000") == F16.advance("□")


def test_every_gbk_hanzi_has_its_own_glyph() -> None:
    """Village names use hanzi beyond GB2312 (X家塆, 磡头, 氹仔); the fonts hold all of
    GBK, and such a character is drawn as itself, not as the replacement box."""
    gbk = set()
    for hi in range(0x81, 0xFF):
        for lo in range(0x40, 0xFF):
            try:
                gbk.add(bytes((hi, lo)).decode("gbk"))
            except UnicodeDecodeError:
                continue
    hanzi = {c for c in gbk if "\u4e00" <= c <= "\u9fff"}
    assert len(hanzi) > 20_000
    for font in (F12, F16):
        assert [c for c in sorted(hanzi) if c not in font] == []
        box = font.glyph("□").mask
        for ch in "塆磡氹嶍崀":
            mask = font.glyph(ch).mask
            assert mask is not None and box is not None
            assert mask.tobytes() != box.tobytes(), ch


@pytest.mark.parametrize(
    "text",
    ["LS2026-0012", "2026年3月5日", "2026-03-05", "14:30", "85%", "3个工作日", "128件", "12.5"],
)
def test_numbers_dates_and_case_numbers_are_atoms(text: str) -> None:
    assert text in atoms(f"编号{text}。")


def test_numbers_stay_whole_across_lines() -> None:
    runs = [Run("请于2026年3月5日前到LS2026-0012窗口办理，联系电话12345。")]
    for width in (96, 112, 128, 160, 256):
        lines = texts(runs, width)
        joined = "".join(lines)
        assert joined == runs[0].text
        for whole in ("2026年3月5日", "LS2026-0012", "12345"):
            assert any(whole in line for line in lines), (width, lines)


def test_number_wider_than_the_board_breaks_between_characters() -> None:
    # LS2026-0012 is 88 px at 16 px: on a 64 px board it must break somewhere.
    lines = texts([Run("LS2026-0012")], 64)
    assert "".join(lines) == "LS2026-0012" and len(lines) == 2


def test_no_line_starts_with_closing_punctuation() -> None:
    text = "群众反映的问题，已经办结。请大家监督！（回访满意）“好”：是的；完毕、"
    for width in range(64, 260, 8):  # boards are at least 64 px wide
        lines = texts([Run(text)], width)
        assert "".join(lines) == text
        for line in lines[1:]:
            assert line[0] not in NO_START, (width, lines)
        for line in lines[:-1]:
            assert line[-1] not in NO_END, (width, lines)


def test_kinsoku_pushes_the_character_before_the_comma() -> None:
    # 8 hanzi fit a 128 px line: 十 and its comma must go down together.
    lines = texts([Run("一二三四五六七十，八")], 128)
    assert lines == ["一二三四五六七", "十，八"]


def test_opening_bracket_never_ends_a_line() -> None:
    lines = texts([Run("一二三四五六七（八）")], 128)
    assert lines == ["一二三四五六七", "（八）"]


def test_keep_runs_do_not_break() -> None:
    runs = [Run("一二三四五六"), Run(" "), Run("已超期", "overdue", keep=True)]
    assert texts(runs, 128) == ["一二三四五六", "已超期"]
    loose = [Run("一二三四五六"), Run(" "), Run("已超期", "overdue")]
    assert texts(loose, 128) == ["一二三四五六 已", "超期"]


def test_spaces_vanish_at_line_ends() -> None:
    plain = texts([Run("受理128件 办结113件 办结率88%")], 96)
    assert all(not line.startswith(" ") and not line.endswith(" ") for line in plain)
    assert "".join(plain).replace(" ", "") == "受理128件办结113件办结率88%"
    kept = [
        Run("受理128件", keep=True),
        Run(" "),
        Run("办结113件", keep=True),
        Run(" "),
        Run("办结率88%", keep=True),
    ]
    assert texts(kept, 96) == ["受理128件", "办结113件", "办结率88%"]


def test_roles_survive_wrapping() -> None:
    lines = wrap([Run("办理中 "), Run("已超期", "overdue", keep=True)], F16, 64)
    assert [[(r.text, r.role) for r in line.runs] for line in lines] == [
        [("办理中", "text")],
        [("已超期", "overdue")],
    ]


def test_clusters_glue_both_ways() -> None:
    assert clusters("他说：“好。”") == ["他", "说：", "“好。”"]


def board(**kw: object) -> Board:
    base: dict[str, object] = {"id": "t", "town": "longshi"}
    base.update(kw)
    return Board(**base)  # type: ignore[arg-type]


def test_one_line_board_scrolls_long_items_as_marquee() -> None:
    b = board(width=64, height=16, font_size=12)
    r = render_board(b, sample_content(), now=AT)
    assert all(p.image.size == (64, 16) for p in r.pages)
    scrolls = [p for p in r.pages if p.scroll]
    assert scrolls, "case lines do not fit 64 px and must scroll"
    for p in scrolls:
        assert p.marquee is not None and p.marquee.strip.width > 64
        travel = (p.marquee.strip.width - 64) / b.scroll_speed
        assert p.seconds >= travel  # the whole text passes before the page changes
        assert "\n" not in p.text
    notice = next(p for p in r.pages if "张某" in p.text)
    assert notice.scroll and notice.text.startswith("办结公示：")


def test_short_item_on_one_line_board_is_static_and_centered() -> None:
    b = board(width=64, height=16, font_size=12, content=("title",), title="议政")
    r = render_board(b, sample_content(), now=AT)
    assert len(r.pages) == 1 and not r.pages[0].scroll
    bbox = r.pages[0].image.getbbox()
    assert bbox is not None
    left, right = bbox[0], 64 - bbox[2]
    assert abs(left - right) <= 2


def test_two_line_board_pages_hold_two_lines() -> None:
    b = board(width=128, height=32, font_size=16)
    r = render_board(b, sample_content(), now=AT)
    for p in r.pages:
        assert len(p.text.split("\n")) <= 2
        assert not p.scroll
    assert r.pages[0].text == "龙市镇诉求公示"  # the short title that fits one line
    # A case always shows its number whole, then its deadline.
    case = next(p for p in r.pages if "LS2026-0015" in p.text)
    assert case.text.split("\n")[0] == "LS2026-0015"
    assert "已超期" in case.text


def test_long_notice_is_split_into_pages_in_order() -> None:
    b = board(width=128, height=32, font_size=16, content=("notices",))
    r = render_board(b, sample_content(), now=AT)
    assert len(r.pages) > 1
    body = "".join(p.text.replace("\n", "") for p in r.pages)
    assert (
        body == "办结公示LS2026-0003 张某反映的灌溉渠堵塞问题已于2026年3月1日疏通完毕，回访满意。"
    )


def test_big_board_has_title_header_on_every_page() -> None:
    b = board(width=256, height=128, font_size=16, color="rgb")
    r = render_board(b, sample_content(cases=5), now=AT)
    for p in r.pages:
        lines = p.text.split("\n")
        assert lines[0] == "龙市镇群众诉求办理公示"
        assert len(lines) <= 8
    everything = "\n".join(p.text for p in r.pages)
    assert "受理128件 办结113件 办结率88%" in everything
    assert "剩3个工作日" in everything and "已超期" in everything and "今日到期" in everything
    assert "督办" in everything


def test_sensitive_case_shows_category_only() -> None:
    hidden = sample_case("LS2026-0099", category="医疗卫生", summary="张某某的病情", sensitive=True)
    content = sample_content()
    content = type(content)(
        title="", town_name="龙市镇", stats=None, cases=((hidden, 5),), notices=()
    )
    r = render_board(board(width=256, height=128), content, now=AT)
    text = "\n".join(p.text for p in r.pages)
    assert "医疗卫生" in text and "病情" not in text


def test_urgent_notice_takes_over() -> None:
    r = render_board(board(width=256, height=128), sample_content(urgent=True), now=AT)
    text = "\n".join(p.text for p in r.pages)
    assert text.startswith("紧急通知 停水通知")
    assert "LS2026" not in text and "受理" not in text


def test_stale_feed_is_announced() -> None:
    r = render_board(board(width=256, height=128), sample_content(stale=True), now=AT)
    assert "数据更新于 09:05" in r.pages[0].text


def test_empty_board_says_so() -> None:
    content = sample_content(cases=0)
    r = render_board(board(width=128, height=32, content=("cases",)), content, now=AT)
    assert [p.text for p in r.pages] == ["目前没有在办诉求"]


def test_layout_specs_never_exceed_board_lines() -> None:
    for w, h, fs in ((64, 32, 12), (96, 48, 16), (160, 64, 12), (512, 256, 16)):
        b = board(width=w, height=h, font_size=fs)
        font = load_font(fs)
        for spec in layout_pages(b, sample_content(cases=5), font):
            assert len(spec.lines) <= h // fs
            for line in spec.lines:
                assert font.measure(line.text) <= w


ALPHABET = (
    "群众诉求办理公示已超期剩个工作日龙市镇村道路灯，。、！？：；（）“”「」 0123456789-年月%LS"
)


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=ALPHABET, min_size=1, max_size=60), width=st.integers(64, 256))
def test_wrap_properties(text: str, width: int) -> None:
    lines = wrap([Run(text)], F16, width)
    got = [line.text for line in lines]
    # Nothing is lost or reordered; only the spaces at the breaks go.
    assert "".join(got).replace(" ", "") == text.replace(" ", "")
    for line in got:
        assert line == line.strip(" ")
        assert F16.measure(line) <= width or len(line) == 1
    if all(F16.measure(c) <= width for c in clusters(text) if not c.isspace()):
        # When every unbreakable piece fits a line, 避头尾 holds everywhere.
        for line in got[1:]:
            assert line[0] not in NO_START
        for line in got[:-1]:
            assert line[-1] not in NO_END
