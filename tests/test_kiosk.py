"""Kiosk pages over real HTTP: figures agree with the API, lookup, rate limit, privacy,
charts. The browser tests (test_kiosk_browser.py) reuse this module's data."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest

from display.charts import channel_bars, trend_chart
from display.domain import SHANGHAI
from display.panels import normalize_case_no
from display.views.kiosk import VERSION_HEADER, LookupLimiter
from tests.conftest import case_record, push_records

#: A sensitive case's summary: it must never reach a page.
SECRET_SUMMARY = "反映邻居王某某家庭纠纷，夜间争吵打架"


def days_ago(days: float) -> str:
    """An ISO time `days` before now, so deadlines and "this month" hold on any date."""
    return (datetime.now(SHANGHAI) - timedelta(days=days)).replace(microsecond=0).isoformat()


def town_records() -> list[dict[str, Any]]:
    """A handful of cases in 龙市镇 in every state, and one in 黄家镇."""
    return [
        case_record(
            "LS2026-0001",
            status="replied",
            outcome="resolved",
            satisfaction="satisfied",
            category="道路交通",
            channel="12345热线",
            summary="反映银杏村3组道路破损，雨天积水",
            received_at=days_ago(25),
            resolved_at=days_ago(17),
            replied_at=days_ago(16),
            notes=[
                {
                    "at": days_ago(24),
                    "stage": "assigned",
                    "text": "已交镇规划建设办现场查看",
                }
            ],
        ),
        case_record(
            "LS2026-0002",
            status="in_progress",
            supervised=True,
            category="环境卫生",
            channel="随手拍",
            village="水口村",
            summary="水口村垃圾收运不及时，气味较大",
            department="镇农业服务中心",
            received_at=days_ago(90),
        ),
        case_record(
            "LS2026-0003",
            status="registered",
            category="供水",
            channel="走访",
            village="金花村",
            summary="金花村自来水水压偏低，高处住户无水",
            received_at=days_ago(2),
        ),
        case_record(
            "LS2026-0004",
            status="assigned",
            category="邻里纠纷",
            channel="来信来访",
            summary=SECRET_SUMMARY,
            received_at=days_ago(7),
            notes=[
                {
                    "at": days_ago(6),
                    "stage": "assigned",
                    "text": "王某某与邻居协商未果",
                }
            ],
        ),
        case_record(
            "LS2026-0005",
            status="resolved",
            outcome="explained",
            category="土地",
            channel="12345热线",
            summary="咨询宅基地审批流程",
            received_at=days_ago(45),
            resolved_at=days_ago(37),
        ),
        case_record(
            "HJ2026-0001",
            town="huangjia",
            village="九龙村",
            status="registered",
            summary="九龙村路灯损坏",
            received_at=days_ago(3),
        ),
    ]


async def seed(base: str) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        r = await push_records(client, base, town_records())
        assert r.status_code == 202, r.text
        assert r.json()["new"] == len(town_records()), r.text


def expected_text(value: Any, field: str) -> str:
    """How the page writes an API figure."""
    if field.endswith("_rate"):
        return "—" if value is None else f"{value:.1f}%"
    return str(value)


def api_value(stats: dict[str, Any], scope: str, field: str) -> Any:
    source = {"total": stats, "year": stats["this_year"], "month": stats["this_month"]}[scope]
    return source[field]


class FigureCells(HTMLParser):
    """Collects (scope, field, text) of every element with data-scope and data-field."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[tuple[str, str, str]] = []
        self._open: list[tuple[str, str, list[str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("data-scope") and a.get("data-field"):
            self._open.append((a["data-scope"] or "", a["data-field"] or "", []))

    def handle_data(self, data: str) -> None:
        for _, _, parts in self._open:
            parts.append(data)

    def handle_endtag(self, tag: str) -> None:
        if self._open and tag in ("td", "b", "dd"):
            scope, field, parts = self._open.pop()
            self.cells.append((scope, field, "".join(parts).strip()))


def figure_cells(html: str) -> list[tuple[str, str, str]]:
    parser = FigureCells()
    parser.feed(html)
    return parser.cells


# --- pages over HTTP ---------------------------------------------------------------------


async def test_town_page_figures_equal_api_stats(live: Any) -> None:
    await seed(live.url)
    async with httpx.AsyncClient(timeout=10) as client:
        page = (await client.get(f"{live.url}/kiosk/longshi")).text
        stats = (await client.get(f"{live.url}/api/v1/stats?town=longshi")).json()
    cells = figure_cells(page)
    # 6 at a glance, 9 measures x 3 periods in the figures panel.
    assert len(cells) == 6 + 27
    for scope, field, text in cells:
        assert text == expected_text(api_value(stats, scope, field), field), (scope, field)
    assert stats["received"] == 5 and stats["supervised"] == 1


async def test_fragments_carry_the_deployment_version(live: Any) -> None:
    await seed(live.url)
    async with httpx.AsyncClient(timeout=10) as client:
        page = (await client.get(f"{live.url}/kiosk/longshi")).text
        version = re.search(r'name="yizheng-version" content="([0-9a-f]+)"', page)
        assert version
        for part in ("glance", "figures", "channels", "cases", "notices"):
            r = await client.get(f"{live.url}/kiosk/longshi/_{part}")
            assert r.status_code == 200, part
            assert r.headers[VERSION_HEADER] == version[1]
        county = await client.get(f"{live.url}/kiosk/_county")
        assert county.headers[VERSION_HEADER] == version[1]
        assert (await client.get(f"{live.url}/kiosk/longshi/_secrets")).status_code == 404


async def test_page_subscribes_from_the_snapshot_it_rendered(live: Any) -> None:
    """The page's stream starts at the last event its snapshot includes, so an event
    between rendering and connecting is replayed, not lost."""
    await seed(live.url)
    _, newest = await live.ctx.store.event_bounds()
    async with httpx.AsyncClient(timeout=10) as client:
        page = (await client.get(f"{live.url}/kiosk/longshi")).text
        county = (await client.get(f"{live.url}/kiosk")).text
    assert newest > 0
    assert f'sse-connect="/events?town=longshi&amp;last_event_id={newest}"' in page
    assert f'sse-connect="/events?last_event_id={newest}"' in county


async def test_sensitive_case_shows_category_only(live: Any) -> None:
    await seed(live.url)
    async with httpx.AsyncClient(timeout=10) as client:
        page = (await client.get(f"{live.url}/kiosk/longshi")).text
        found = (
            await client.get(f"{live.url}/kiosk/longshi/lookup", params={"no": "LS2026-0004"})
        ).text
        fragment = (
            await client.get(
                f"{live.url}/kiosk/longshi/lookup",
                params={"no": "LS2026-0004"},
                headers={"HX-Request": "true"},
            )
        ).text
    for html in (page, found, fragment):
        assert "邻里纠纷" in html
        assert "仅公示类别" in html
        assert SECRET_SUMMARY not in html
        assert "王某某" not in html  # neither the summary nor the timeline note


async def test_lookup_without_javascript_shows_the_timeline(live: Any) -> None:
    await seed(live.url)
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.get(f"{live.url}/kiosk/longshi/lookup", params={"no": "ls2026-0001"})
        assert r.status_code == 200
        assert r.headers["cache-control"] == "no-store"
        html = r.text
        assert "<!doctype html>" in html.lower()
        assert 'data-no="LS2026-0001"' in html
        for text in (
            "已登记",
            "已交办",
            "已回复",
            "群众评价：满意",
            "已解决",
            "已交镇规划建设办现场查看",
        ):
            assert text in html, text
        # A form that works without script: GET to the same address.
        assert 'action="/kiosk/longshi/lookup" method="get"' in html


async def test_lookup_fragment_and_friendly_messages(live: Any) -> None:
    await seed(live.url)
    hx = {"HX-Request": "true"}
    url = f"{live.url}/kiosk/longshi/lookup"
    async with httpx.AsyncClient(timeout=10) as client:
        found = await client.get(url, params={"no": "ＬＳ２０２６－０００２"}, headers=hx)
        assert found.status_code == 200
        assert "<html" not in found.text
        assert 'data-no="LS2026-0002"' in found.text and "督办" in found.text
        assert "已超期" in found.text
        no_dash = await client.get(url, params={"no": "LS20260003"}, headers=hx)
        assert 'data-no="LS2026-0003"' in no_dash.text
        unknown = await client.get(url, params={"no": "LS2026-9999"}, headers=hx)
        assert unknown.status_code == 404
        assert "没有找到编号为" in unknown.text and "LS2026-9999" in unknown.text
        invalid = await client.get(url, params={"no": "<script>"}, headers=hx)
        assert invalid.status_code == 400
        assert "编号格式不对" in invalid.text and "<script>" not in invalid.text
        empty = await client.get(url, params={"no": ""})
        assert empty.status_code == 200 and "查询我的诉求" in empty.text


async def test_lookup_is_rate_limited_per_client(live: Any) -> None:
    await seed(live.url)
    url = f"{live.url}/kiosk/longshi/lookup"
    async with httpx.AsyncClient(timeout=10) as client:
        statuses = [
            (await client.get(url, params={"no": f"LS2026-{i:04d}"})).status_code
            for i in range(1, 11)
        ]
        assert 429 not in statuses
        limited = await client.get(url, params={"no": "LS2026-0001"})
    assert limited.status_code == 429
    assert "查询太频繁了" in limited.text
    assert int(limited.headers["retry-after"]) >= 1
    assert 'data-no="LS2026-0001"' not in limited.text


async def test_county_page_lists_every_town_with_its_trend(live: Any) -> None:
    await seed(live.url)
    async with httpx.AsyncClient(timeout=10) as client:
        html = (await client.get(f"{live.url}/kiosk")).text
        county = (await client.get(f"{live.url}/api/v1/stats")).json()
        longshi = (await client.get(f"{live.url}/api/v1/stats?town=longshi")).json()
    for name in ("龙市镇", "黄家镇", "双凤镇", "响石镇", "石碾镇"):
        assert name in html
    assert html.count('class="chart trend') == 5
    assert html.count("已清零") == 3  # the three towns without cases
    cells = figure_cells(html)
    assert len(cells) == 6
    for scope, field, text in cells:
        assert text == expected_text(api_value(county, scope, field), field), field
    card = html[html.index('data-town="longshi"') : html.index('data-town="huangjia"')]
    assert f'data-field="open">{longshi["open"]}<' in card
    assert f'data-field="supervised">{longshi["supervised"]}<' in card


async def test_unknown_town_lists_the_towns(live: Any) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.get(f"{live.url}/kiosk/nowhere")
        assert r.status_code == 404
        assert "/kiosk/longshi" in r.text
        lookup = await client.get(f"{live.url}/kiosk/nowhere/lookup", params={"no": "LS1"})
        assert lookup.status_code == 404


async def test_pages_are_served_under_the_csp(live: Any) -> None:
    await seed(live.url)
    async with httpx.AsyncClient(timeout=10) as client:
        for path in ("/kiosk/longshi", "/kiosk", "/kiosk/longshi/lookup?no=LS2026-0001"):
            r = await client.get(f"{live.url}{path}")
            assert "script-src 'self'" in r.headers["content-security-policy"]
            assert " style=" not in r.text and "<style" not in r.text, path
            assert "<script>" not in r.text, path
            for src in re.findall(r'(?:src|href)="(/assets/[^"]+)"', r.text):
                asset = await client.get(f"{live.url}{src}")
                assert asset.status_code == 200, src


# --- units -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("LS2026-0012", "LS2026-0012"),
        (" ls2026 - 0012 ", "LS2026-0012"),
        ("ＬＳ２０２６－００１２", "LS2026-0012"),
        ("LS2026—0012", "LS2026-0012"),
        ("", None),
        ("-12", None),
        ("LS2026/0012", None),
        ("<b>", None),
        ("A" * 41, None),
    ],
)
def test_normalize_case_no(raw: str, expected: str | None) -> None:
    assert normalize_case_no(raw) == expected


def test_token_bucket_refills_at_its_rate() -> None:
    limiter = LookupLimiter(rate=1.0, burst=3)
    assert [limiter.allow("a", now=0.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("b", now=0.0)  # buckets are per client
    assert not limiter.allow("a", now=0.5)
    assert limiter.allow("a", now=1.6)
    assert limiter.retry_after("a") >= 1


def test_token_bucket_memory_is_bounded() -> None:
    limiter = LookupLimiter(rate=1.0, burst=2, max_clients=100)
    for i in range(1000):
        limiter.allow(f"10.0.{i // 250}.{i % 250}", now=float(i))
    assert len(limiter._buckets) <= 100


def test_channel_bars_scale_to_the_largest_and_fold_the_rest() -> None:
    chart = channel_bars(
        {"热线": 10, "随手拍": 5, "走访": 0, **{f"渠道{i}": 1 for i in range(9)}},
        width=900,
        label_width=300,
        limit=4,
    )
    labels = [b.label for b in chart.bars]
    assert labels == ["热线", "随手拍", "渠道0", "其他"]
    assert chart.total == 24
    top, second = chart.bars[0], chart.bars[1]
    assert top.highlight and not second.highlight
    assert second.width == pytest.approx(top.width / 2, rel=0.01)
    assert all(b.x + b.width <= 900 for b in chart.bars)
    assert channel_bars({}).empty


def test_trend_chart_heights_follow_the_counts() -> None:
    days = [date(2026, 10, 2) + timedelta(days=7 * i) for i in range(4)]
    chart = trend_chart(list(zip(days, [8, 4, 2, 0], strict=True)), width=400, height=200)
    heights = [b.height for b in chart.bars]
    assert heights[0] > heights[1] > heights[2] > heights[3] == 0
    assert heights[1] == pytest.approx(heights[0] / 2, rel=0.01)
    assert chart.cleared and chart.change == -8
    assert chart.bars[-1].highlight
    assert [b.label for b in chart.bars] == ["", "10/9", "", "10/23"]
    assert chart.line.startswith("M") and chart.line.count("L") == 3
    assert all(b.y + b.height == pytest.approx(chart.baseline_y) for b in chart.bars)
