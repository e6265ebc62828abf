"""The kiosk in a real headless chromium: live updates, lookup, lost connections,
deployments, and the figures the API reports. Screenshots go to tests/screenshots/."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, Request, expect

from display.app import create_app
from display.domain import Notice
from display.settings import Settings
from display.views.kiosk import LookupLimiter
from feeds.simulator import Simulator
from tests.browser import (
    PORTRAIT,
    SCREENSHOTS,
    BrowserPage,
    browser_page,
    chromium_browser,
    eventually,
    launch_browser,
    open_page,
)
from tests.conftest import (
    PUSH_SECRET,
    case_record,
    free_port,
    open311_feed,
    push_records,
    serve_app,
)
from tests.test_kiosk import SECRET_SUMMARY, api_value, days_ago, expected_text, seed

__all__ = ["browser_page", "chromium_browser"]  # fixtures used below

pytestmark = pytest.mark.browser

DOCS_SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
#: Messages a browser logs while the server it talks to is away: expected in the
#: outage tests, and nowhere else.
OUTAGE = (
    r"ERR_CONNECTION_REFUSED",
    r"ERR_INCOMPLETE_CHUNKED_ENCODING",
    r"console: \[object Event\]$",  # htmx logs the EventSource's error event
    r"console: htmx:(afterRequest|sendError|sseError)",
)


def freeze_version(app: Any) -> str:
    """Fix the app's deployment version at its current value. The page reloads itself
    when the version changes, and other people may be editing templates in this tree
    while the tests run; the deployment test changes it on purpose."""
    version: str = app.state.templates.globals["asset_version"]()
    app.state.templates.globals["asset_version"] = lambda: version
    return version


@pytest.fixture(autouse=True)
def _frozen_version(request: pytest.FixtureRequest) -> None:
    if "live" in request.fixturenames:
        freeze_version(request.getfixturevalue("live").app)


def make_app(settings: Settings) -> Any:
    app = create_app(settings)
    freeze_version(app)
    return app


async def goto_live(page: Page, url: str) -> None:
    """Open a kiosk page and wait until its event stream is open."""
    await page.goto(url)
    await expect(page.locator("[data-kiosk]")).to_have_attribute("data-conn", "live")


async def page_figures(page: Page) -> list[list[str]]:
    cells: list[list[str]] = await page.eval_on_selector_all(
        "[data-scope][data-field]",
        "els => els.map(e => [e.dataset.scope, e.dataset.field, e.textContent.trim()])",
    )
    return cells


async def test_town_page_is_clean_and_its_figures_equal_the_api(
    live: Any, browser_page: BrowserPage
) -> None:
    await seed(live.url)
    page = browser_page.page
    await goto_live(page, f"{live.url}/kiosk/longshi")
    async with httpx.AsyncClient(timeout=10) as client:
        stats = (await client.get(f"{live.url}/api/v1/stats?town=longshi")).json()
    cells = await page_figures(page)
    assert len(cells) == 33
    for scope, field, text in cells:
        assert text == expected_text(api_value(stats, scope, field), field), (scope, field)
    await expect(page.locator("#glance [data-field=received]")).to_have_text("5")
    # The channel chart is drawn from the same figures.
    bars = page.locator("#channels svg .bar")
    await expect(bars).to_have_count(len(stats["channels"]))
    await expect(page.locator('#channels .bar[data-label="12345热线"]')).to_have_attribute(
        "data-value", str(stats["channels"]["12345热线"])
    )
    # Privacy: the sensitive case shows its category, never its summary.
    row = page.locator('tr[data-no="LS2026-0004"]')
    await expect(row).to_contain_text("邻里纠纷")
    assert SECRET_SUMMARY not in await page.content()
    # Overdue and supervised are marked; open cases show working days left.
    await expect(page.locator('tr[data-no="LS2026-0002"] .deadline')).to_contain_text("已超期")
    await expect(page.locator('tr[data-no="LS2026-0002"] .deadline')).to_contain_text("督办")
    await expect(page.locator('tr[data-no="LS2026-0003"] .deadline')).to_contain_text("个工作日")
    await browser_page.screenshot("kiosk-town-landscape")
    browser_page.assert_clean()


async def test_portrait_layout(live: Any, chromium_browser: Any) -> None:
    await seed(live.url)
    async with open_page(chromium_browser, PORTRAIT) as probe:
        await goto_live(probe.page, f"{live.url}/kiosk/longshi")
        # The six figures at a glance sit in two rows of three in portrait.
        boxes = [
            await probe.page.locator(".glance-figures > div").nth(i).bounding_box()
            for i in range(6)
        ]
        assert all(b is not None for b in boxes)
        tops = sorted({round(b["y"]) for b in boxes if b is not None})
        assert len(tops) == 2
        width = await probe.page.evaluate("document.documentElement.scrollWidth")
        assert width <= PORTRAIT[0]  # nothing runs off the side
        await probe.screenshot("kiosk-town-portrait")
        await probe.page.click("[data-show=lookup]")
        await probe.screenshot("kiosk-town-portrait-lookup")
        probe.assert_clean()


async def test_pushed_change_appears_without_reload(live: Any, browser_page: BrowserPage) -> None:
    await seed(live.url)
    page = browser_page.page
    await goto_live(page, f"{live.url}/kiosk/longshi")
    await page.evaluate("window.sameDocument = true")
    row = page.locator('tr[data-no="LS2026-0003"]')
    await expect(row).to_have_attribute("data-stage", "registered")
    async with httpx.AsyncClient(timeout=10) as client:
        r = await push_records(
            client,
            live.url,
            [
                case_record(
                    "LS2026-0003",
                    status="assigned",
                    category="供水",
                    channel="走访",
                    village="金花村",
                    summary="金花村自来水水压偏低，高处住户无水",
                    received_at=days_ago(2),
                ),
                case_record("LS2026-0006", received_at=days_ago(1)),
            ],
        )
        assert r.status_code == 202
    await expect(row).to_have_attribute("data-stage", "assigned", timeout=5000)
    await expect(page.locator('tr[data-no="LS2026-0006"]')).to_have_count(1, timeout=5000)
    await expect(page.locator("#glance [data-field=received]")).to_have_text("6", timeout=5000)
    async with httpx.AsyncClient(timeout=10) as client:
        stats = (await client.get(f"{live.url}/api/v1/stats?town=longshi")).json()
    await expect(page.locator("#figures [data-scope=month][data-field=received]")).to_have_text(
        str(stats["this_month"]["received"])
    )
    # A notice published by staff appears in its panel.
    await live.ctx.store.save_notice(
        Notice(id=0, town="longshi", title="金花村供水问题已办结", body="已更换加压泵。")
    )
    await expect(page.locator("#notices")).to_contain_text("金花村供水问题已办结", timeout=5000)
    assert await page.evaluate("window.sameDocument") is True
    browser_page.assert_clean()


async def test_lookup_with_the_keypad(live: Any, browser_page: BrowserPage) -> None:
    await seed(live.url)
    page = browser_page.page
    await goto_live(page, f"{live.url}/kiosk/longshi")
    await page.click("[data-show=lookup]")
    await expect(page.locator("#panel-lookup")).to_be_visible()
    # The prefix picker offers the town's prefixes; the keypad types the rest.
    await page.click('[data-prefix="LS"]')
    for key in "2026-0001":
        await page.click(f'#panel-lookup [data-key="{key}"]')
    await expect(page.locator("#lookup-no")).to_have_value("LS2026-0001")
    await page.click("#panel-lookup .go")
    card = page.locator('#lookup-result .case-card[data-no="LS2026-0001"]')
    await expect(card).to_be_visible()
    steps = card.locator(".timeline .step")
    await expect(steps).to_have_count(3)
    await expect(steps.nth(0)).to_contain_text("已登记")
    await expect(steps.nth(1)).to_contain_text("已交办")
    await expect(steps.nth(2)).to_contain_text("已回复")
    await expect(steps.nth(2)).to_contain_text("镇规划建设办")
    await expect(steps.nth(2)).to_contain_text("已解决")
    await expect(steps.nth(2)).to_contain_text("群众评价：满意")
    await browser_page.screenshot("kiosk-lookup-found")
    # The lookup stays on screen: the panel is pinned, not rotated away.
    await expect(page.locator("[data-kiosk]")).to_have_class("screen rotates is-pinned")
    # An unknown number gets a friendly message.
    await page.click("#panel-lookup [data-clear]")
    await page.click("#panel-lookup [data-letters-toggle]")
    for key in "XS-9":
        await page.click(f'#panel-lookup [data-key="{key}"]')
    await page.click("#panel-lookup [data-back]")
    await page.click('#panel-lookup [data-key="7"]')
    await page.click("#panel-lookup .go")
    message = page.locator("#lookup-result .message.unknown")
    await expect(message).to_contain_text("没有找到编号为")
    await expect(message).to_contain_text("XS-7")
    await browser_page.screenshot("kiosk-lookup-unknown")
    # A sensitive case shows the category only, in the lookup too.
    await page.fill("#lookup-no", "LS2026-0004")
    await page.click("#panel-lookup .go")
    await expect(page.locator('.case-card[data-no="LS2026-0004"]')).to_contain_text("仅公示类别")
    assert SECRET_SUMMARY not in await page.content()
    assert "王某某" not in await page.content()
    # The unknown number's answer is a 404 (with the friendly message), which the
    # browser notes in its console.
    browser_page.assert_clean(allow=[r"status of 404"])


async def test_lookup_rate_limit_shows_a_friendly_page(
    live: Any, browser_page: BrowserPage
) -> None:
    await seed(live.url)
    live.ctx.extra["kiosk_lookup_limiter"] = LookupLimiter(rate=1 / 3600, burst=2)
    page = browser_page.page
    await goto_live(page, f"{live.url}/kiosk/longshi")
    await page.click("[data-show=lookup]")
    for no in ("LS2026-0001", "LS2026-0002"):
        await page.fill("#lookup-no", no)
        await page.click("#panel-lookup .go")
        await expect(page.locator(f'.case-card[data-no="{no}"]')).to_be_visible()
    await page.fill("#lookup-no", "LS2026-0003")
    await page.click("#panel-lookup .go")
    await expect(page.locator("#lookup-result .message.limited")).to_contain_text("查询太频繁了")
    await expect(page.locator('.case-card[data-no="LS2026-0003"]')).to_have_count(0)
    browser_page.assert_clean(allow=[r"status of 429"])


async def test_panels_rotate_and_a_touch_keeps_one(live: Any, browser_page: BrowserPage) -> None:
    await seed(live.url)
    live.ctx.extra["kiosk_rotate_seconds"] = 0.4
    page = browser_page.page
    root = page.locator("[data-kiosk]")
    await goto_live(page, f"{live.url}/kiosk/longshi")
    for panel in ("channels", "cases", "notices", "figures"):
        await expect(root).to_have_attribute("data-panel", panel, timeout=4000)
        await expect(page.locator(f"#panel-{panel}")).to_be_visible()
    await expect(page.locator("#panel-lookup")).to_be_hidden()
    await page.click("[data-show=cases]")
    await expect(root).to_have_class("screen rotates is-pinned")
    # Several beats later the touched panel is still there.
    await page.wait_for_timeout(1500)
    await expect(root).to_have_attribute("data-panel", "cases")
    await expect(page.locator("#panel-cases")).to_be_visible()
    browser_page.assert_clean()


async def test_dropped_stream_resumes_with_last_event_id(
    live: Any, browser_page: BrowserPage
) -> None:
    await seed(live.url)
    page = browser_page.page
    streams: list[Request] = []
    page.on("request", lambda r: streams.append(r) if "/events" in r.url else None)
    await goto_live(page, f"{live.url}/kiosk/longshi")
    root = page.locator("[data-kiosk]")
    async with httpx.AsyncClient(timeout=10) as client:
        await push_records(client, live.url, [case_record("LS2026-0007")])
        await expect(page.locator('tr[data-no="LS2026-0007"]')).to_have_count(1)
        seen_id = await root.get_attribute("data-last-event-id")
        assert seen_id is not None and f"last_event_id={seen_id}" not in streams[0].url
        # The server drops the stream, as it drops a client too slow to keep up.
        hub = live.ctx.hub
        subscribers = [sub for subs in list(hub._subs.values()) for sub in list(subs)]
        assert subscribers
        for sub in subscribers:
            hub.drop(sub)
        # A change while the page is away.
        await push_records(client, live.url, [case_record("LS2026-0010")])
    await eventually(lambda: len(streams) > 1, 10.0, "a second stream request")
    await expect(root).to_have_attribute("data-conn", "live")
    # The browser's own retry: the same URL, with the Last-Event-ID header.
    assert (await streams[1].all_headers()).get("last-event-id") == seen_id
    assert streams[1].url == streams[0].url
    await expect(page.locator('tr[data-no="LS2026-0010"]')).to_have_count(1, timeout=5000)
    browser_page.assert_clean(allow=OUTAGE)


async def unavailable(scope: Any, receive: Any, send: Any) -> None:
    """What a reverse proxy answers while the service behind it restarts."""
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [(b"content-type", b"text/plain; charset=utf-8")],
        }
    )
    await send({"type": "http.response.body", "body": "服务暂不可用".encode()})


async def asks_after(requests: Sequence[Request], seq: str) -> bool:
    """Whether one of the stream requests asks for the events after `seq`: by the
    Last-Event-ID header (the browser's own retries) or by the URL (a new EventSource
    made by htmx-ext-sse from the sse-connect URL, which the page keeps up to date)."""
    for r in requests:
        if r.url.endswith(f"last_event_id={seq}"):
            return True
        if (await r.all_headers()).get("last-event-id") == seq:
            return True
    return False


async def test_server_outage_shows_stale_notice_and_catches_up(
    make_settings: Callable[..., Settings], chromium_browser: Any
) -> None:
    settings = make_settings(sse={"heartbeat": 0.5, "poll_interval": 0.2, "retry_ms": 300})
    port = free_port()
    async with open_page(chromium_browser) as probe:
        page = probe.page
        root = page.locator("[data-kiosk]")
        row = page.locator('tr[data-no="LS2026-0003"]')
        streams: list[Request] = []
        page.on("request", lambda r: streams.append(r) if "/events" in r.url else None)
        async with serve_app(make_app(settings), port) as (base, _):
            await seed(base)
            await goto_live(page, f"{base}/kiosk/longshi")
            await expect(row).to_have_attribute("data-stage", "registered")
            loaded_id = await root.get_attribute("data-last-event-id")
            async with httpx.AsyncClient() as client:
                await push_records(client, base, [case_record("LS2026-0009")])
            await expect(page.locator('tr[data-no="LS2026-0009"]')).to_have_count(1)
            seen_id = await root.get_attribute("data-last-event-id")
            assert seen_id is not None and int(seen_id) > int(loaded_id or 0)
        # The server is gone: the page keeps its content and says how old it is.
        await expect(root).to_have_attribute("data-conn", "lost", timeout=10000)
        await expect(page.locator(".status-lost")).to_be_visible()
        await expect(page.locator("#status")).to_contain_text("数据更新于")
        await expect(row).to_have_attribute("data-stage", "registered")
        await expect(page.locator('tr[data-no="LS2026-0009"]')).to_have_count(1)
        await probe.screenshot("kiosk-town-stale")
        # The browser retries by itself (with Last-Event-ID, which a failed request
        # does not show: test_dropped_stream_resumes_with_last_event_id checks it).
        first_retry = len(streams)
        await eventually(lambda: len(streams) > first_retry, 10.0, "a retry")
        # Meanwhile the case moves on (through another instance on the same database).
        async with serve_app(make_app(settings)) as (other, _), httpx.AsyncClient() as client:
            r = await push_records(
                client,
                other,
                [
                    case_record(
                        "LS2026-0003",
                        status="in_progress",
                        category="供水",
                        channel="走访",
                        village="金花村",
                        summary="金花村自来水水压偏低，高处住户无水",
                        received_at=days_ago(2),
                    )
                ],
            )
            assert r.json()["changed"] == 1
        # A proxy answers 503 while the service restarts: the browser closes the
        # EventSource for good, and htmx-ext-sse opens new ones from the sse-connect URL,
        # which carries the last id the page saw.
        async with serve_app(unavailable, port):
            await eventually(
                lambda: any(r.url.endswith(f"last_event_id={seen_id}") for r in streams),
                10.0,
                "a new EventSource that resumes from the last id seen",
            )
            await expect(root).to_have_attribute("data-conn", "lost")
        # The service is back on the same address: the page resumes and catches up.
        async with serve_app(make_app(settings), port):
            await expect(root).to_have_attribute("data-conn", "live", timeout=15000)
            await expect(row).to_have_attribute("data-stage", "in_progress", timeout=5000)
            await expect(page.locator(".status-lost")).to_be_hidden()
            assert await asks_after(streams[-1:], seen_id)
        probe.assert_clean(allow=[*OUTAGE, r"status of 503"])


async def test_new_deployment_reloads_the_page(live: Any, browser_page: BrowserPage) -> None:
    await seed(live.url)
    page = browser_page.page
    await goto_live(page, f"{live.url}/kiosk/longshi")
    await page.evaluate("window.sameDocument = true")
    # A deployment changes the templates and assets, so their version changes.
    live.app.state.templates.globals["asset_version"] = lambda: "0123456789ab"
    async with httpx.AsyncClient(timeout=10) as client:
        await push_records(client, live.url, [case_record("LS2026-0008")])
    await expect(page.locator('meta[name="yizheng-version"]')).to_have_attribute(
        "content", "0123456789ab", timeout=10000
    )
    assert await page.evaluate("window.sameDocument") is None
    await expect(page.locator('tr[data-no="LS2026-0008"]')).to_have_count(1)
    browser_page.assert_clean()


async def test_county_overview_updates_live(live: Any, browser_page: BrowserPage) -> None:
    await seed(live.url)
    page = browser_page.page
    await goto_live(page, f"{live.url}/kiosk")
    cards = page.locator(".town-card")
    await expect(cards).to_have_count(5)
    await expect(page.locator(".town-card svg.chart.trend")).to_have_count(5)
    huangjia = page.locator('.town-card[data-town="huangjia"]')
    await expect(huangjia.locator("[data-field=open]")).to_have_text("1")
    async with httpx.AsyncClient(timeout=10) as client:
        await push_records(
            client,
            live.url,
            [case_record("HJ2026-0002", town="huangjia", received_at=days_ago(1))],
        )
        county = (await client.get(f"{live.url}/api/v1/stats")).json()
    await expect(huangjia.locator("[data-field=open]")).to_have_text("2", timeout=5000)
    for scope, field, text in await page_figures(page):
        assert text == expected_text(api_value(county, scope, field), field), field
    await browser_page.screenshot("kiosk-county-landscape")
    browser_page.assert_clean()


async def test_helper_reports_csp_violations(live: Any, browser_page: BrowserPage) -> None:
    """The error collection itself works: an inline style is refused and reported."""
    page = browser_page.page
    await goto_live(page, f"{live.url}/kiosk/longshi")
    assert browser_page.errors() == []
    await page.evaluate("document.body.setAttribute('style', 'color: red')")
    await eventually(lambda: bool(browser_page.errors()), 5, "an error report")
    assert any("inline style" in e for e in browser_page.errors()), browser_page.errors()
    with pytest.raises(AssertionError, match="inline style"):
        browser_page.assert_clean()


async def test_demo_screenshots(make_settings: Callable[..., Settings]) -> None:
    """Screens with the demo case system's data, for people to look at. With
    YIZHENG_DOC_SCREENSHOTS=1 they are also copied to docs/screenshots/ for the README."""
    sim = Simulator(seed=3, initial_cases=110)
    for _ in range(25):
        sim.advance()
    async with serve_app(sim.app) as (sim_url, _):
        settings = make_settings(
            feeds=[
                {"name": "push", "kind": "webhook", "secret": PUSH_SECRET},
                open311_feed(sim_url, 60),
            ]
        )
        app = make_app(settings)
        async with serve_app(app) as (base, _), httpx.AsyncClient(timeout=10) as client:
            for _ in range(200):
                cases = (await client.get(f"{base}/api/v1/cases?limit=500")).json()["cases"]
                if len(cases) >= 110:
                    break
                await asyncio.sleep(0.05)
            assert len(cases) >= 110
            # Two older cases from the hotline's push feed: one overdue and supervised.
            r = await push_records(client, base, demo_pushes())
            assert r.status_code == 202, r.text
            store = app.state.ctx.store
            await store.save_notice(
                Notice(
                    id=0,
                    town="longshi",
                    title="银杏村3组道路破损已修复",
                    body="经镇规划建设办现场核实，已完成路面修补并疏通排水沟，群众表示满意。",
                )
            )
            await store.save_notice(
                Notice(
                    id=0,
                    town="longshi",
                    title="水口村饮水管网问题已办结",
                    body="镇农业服务中心协调供水站更换老化管道，水压已恢复正常。",
                )
            )
            own = next(c for c in cases if c["town"] == "longshi" and c["stage"] == "replied")
            shots: list[Path] = []
            async with launch_browser() as browser:
                async with open_page(browser) as probe:
                    await goto_live(probe.page, f"{base}/kiosk/longshi")
                    shots.append(await probe.screenshot("kiosk-town"))
                    await probe.page.click("[data-show=lookup]")
                    await probe.page.fill("#lookup-no", own["no"])
                    await probe.page.click("#panel-lookup .go")
                    await expect(probe.page.locator(".case-card")).to_be_visible()
                    shots.append(await probe.screenshot("kiosk-lookup"))
                    await goto_live(probe.page, f"{base}/kiosk")
                    shots.append(await probe.screenshot("kiosk-county"))
                    probe.assert_clean()
                async with open_page(browser, PORTRAIT) as probe:
                    await goto_live(probe.page, f"{base}/kiosk/longshi")
                    await probe.page.click("[data-show=cases]")
                    shots.append(await probe.screenshot("kiosk-portrait"))
                    probe.assert_clean()
    assert all(p.stat().st_size > 10_000 for p in shots)
    assert all(p.parent == SCREENSHOTS for p in shots)
    if os.environ.get("YIZHENG_DOC_SCREENSHOTS") == "1":
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for p in shots:
            shutil.copy(p, DOCS_SCREENSHOTS / p.name)


def demo_pushes() -> list[dict[str, Any]]:
    return [
        case_record(
            "LS2026-0301",
            status="in_progress",
            supervised=True,
            village="黄桷村",
            category="农村公路",
            channel="12345热线",
            summary="黄桷村至场镇道路塌方，影响村民出行，反映多次未修复",
            department="镇规划建设办",
            received_at=days_ago(70),
        ),
        case_record(
            "LS2026-0302",
            status="assigned",
            village="水口村",
            category="农业灌溉",
            channel="走访",
            summary="水口村2组山坪塘渗漏，春灌用水紧张",
            department="镇农业服务中心",
            received_at=days_ago(50),
        ),
    ]


async def test_works_without_javascript(live: Any, chromium_browser: Any) -> None:
    """Every panel is on the page and the lookup is a plain form."""
    await seed(live.url)
    async with open_page(chromium_browser, java_script_enabled=False) as probe:
        page = probe.page
        await page.goto(f"{live.url}/kiosk/longshi")
        for panel in ("figures", "channels", "cases", "notices", "lookup"):
            await expect(page.locator(f"#panel-{panel}")).to_be_visible()
        await expect(page.locator(".keypad")).to_be_hidden()
        await page.fill("#lookup-no", "ls2026-0002")
        await page.click("#panel-lookup .go")
        await expect(page).to_have_url(f"{live.url}/kiosk/longshi/lookup?no=ls2026-0002")
        await expect(page.locator('.case-card[data-no="LS2026-0002"]')).to_contain_text("督办")
        await page.click("a.back")
        await expect(page).to_have_url(f"{live.url}/kiosk/longshi")
        probe.assert_clean()


async def test_idle_screen_forgets_the_lookup(live: Any, browser_page: BrowserPage) -> None:
    await seed(live.url)
    live.ctx.extra["kiosk_idle_seconds"] = 1
    page = browser_page.page
    root = page.locator("[data-kiosk]")
    await goto_live(page, f"{live.url}/kiosk/longshi")
    await page.click("[data-show=lookup]")
    await page.fill("#lookup-no", "LS2026-0001")
    await page.click("#panel-lookup .go")
    await expect(page.locator('.case-card[data-no="LS2026-0001"]')).to_be_visible()
    # Nobody touches the screen: the case disappears and the panels rotate again.
    await expect(page.locator(".case-card")).to_have_count(0, timeout=5000)
    await expect(page.locator("#lookup-no")).to_have_value("")
    await expect(root).not_to_have_class("screen rotates is-pinned")
    await expect(root).to_have_attribute("data-panel", "figures")
    browser_page.assert_clean()
