"""The publish flow in a real headless chromium: log in, write a notice, watch the
redaction and screen previews, publish, and see it arrive on an open kiosk.

Screenshots go to tests/screenshots/admin-*.png; with YIZHENG_DOC_SCREENSHOTS=1 they
are also copied to docs/screenshots/ for docs/staff.md.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Dialog, Page, expect

from tests.browser import BrowserPage, browser_page, chromium_browser, open_page
from tests.conftest import LiveServer, case_record, push_records
from tests.test_admin import BOARDS, PASSWORD, add_staff, seed_cases
from tests.test_admin import settings as settings  # the fixture, with boards

__all__ = ["BOARDS", "browser_page", "chromium_browser", "settings"]

pytestmark = pytest.mark.browser

DOCS_SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"


async def shot(probe: BrowserPage, name: str, *, full_page: bool = True) -> None:
    path = await probe.screenshot(name, full_page=full_page)
    if os.environ.get("YIZHENG_DOC_SCREENSHOTS") == "1":
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, DOCS_SCREENSHOTS / path.name)


async def log_in(page: Page, base: str, name: str, then: str = "/admin") -> None:
    await page.goto(f"{base}{then}")
    # Anonymous: sent to the login form, which comes back to the page asked for.
    await expect(page.locator("h1")).to_have_text("工作人员登录")
    await page.fill('input[name="name"]', name)
    await page.fill('input[name="password"]', PASSWORD)
    await page.click('button[type="submit"]')
    await page.wait_for_url(f"{base}{then}")


async def test_publish_flow_in_a_real_browser(live: LiveServer, browser_page: BrowserPage) -> None:
    await add_staff(live)
    nos = await seed_cases(live)
    page = browser_page.page
    page.set_default_timeout(15_000)
    await page.set_viewport_size({"width": 1440, "height": 1000})

    await page.goto(f"{live.url}/admin/login")
    await shot(browser_page, "admin-login", full_page=False)
    await log_in(page, live.url, "longshi")
    await expect(page.locator(".bar .who")).to_contain_text("longshi")
    await shot(browser_page, "admin-dashboard")

    # A kiosk is already open in the town hall, subscribed to the town's stream.
    async with open_page(page.context.browser) as kiosk:  # type: ignore[arg-type]
        await kiosk.page.goto(f"{live.url}/kiosk/longshi")
        await expect(kiosk.page.locator("#notices")).to_contain_text("暂无公示")

        # From the list of resolved cases: the editor comes prefilled from the case.
        await page.goto(f"{live.url}/admin/notices")
        await expect(page.locator("#resolved-cases")).to_contain_text(nos["longshi"])
        await shot(browser_page, "admin-notices-empty")
        await page.click(f'#resolved-cases a[href="/admin/notices/new?case={nos["longshi"]}"]')
        await expect(page.locator('input[name="title"]')).to_have_value("【道路交通】诉求办结公示")
        body = page.locator('textarea[name="body"]')
        await expect(body).to_contain_text(nos["longshi"])

        # Staff add a sentence with personal data; the preview marks what will go.
        await body.press("Control+End")
        await body.type("\n感谢村民张兴九（电话13812345678）的监督。")
        removed = page.locator("#preview mark.removed", has_text="13812345678")
        await expect(removed).to_have_count(1)
        await expect(page.locator("#preview .redaction-summary")).to_contain_text("手机号")
        await expect(page.locator("#preview .published-text")).to_contain_text("张某")
        await expect(page.locator("#preview .published-text")).not_to_contain_text("13812345678")
        # The real LED frame of the town's board, and the kiosk panel, with the draft on it.
        frame = page.locator('#preview figure[data-board="longshi-gate"] img.led-frame').first
        await expect(frame).to_be_visible()
        width = await frame.evaluate("img => img.naturalWidth")
        assert width == 128 or width > 128  # a marquee strip is wider than the board
        assert await page.locator('#preview figure[data-board="huangjia-gate"]').count() == 0
        await expect(page.locator("#preview .kiosk-preview")).to_contain_text(
            "【道路交通】诉求办结公示"
        )
        await shot(browser_page, "admin-editor")

        await page.click("#publish")
        await page.wait_for_url(f"{live.url}/admin/notices?done=published")
        await expect(page.locator(".flash")).to_contain_text("公示已发布")
        await expect(page.locator("#notice-list")).to_contain_text("公示中")
        await shot(browser_page, "admin-notices")

        # The open kiosk gets it over its event stream, without a reload.
        await expect(kiosk.page.locator("#notices")).to_contain_text("【道路交通】诉求办结公示")
        await expect(kiosk.page.locator("#notices")).to_contain_text("张某")
        await expect(kiosk.page.locator("#notices")).not_to_contain_text("13812345678")
        kiosk.assert_clean()

        # Withdraw (the page asks first), and the kiosk drops it.
        async def accept(dialog: Dialog) -> None:
            await dialog.accept()

        page.on("dialog", accept)
        await page.click('#notice-list button:has-text("撤回")')
        await page.wait_for_url(f"{live.url}/admin/notices?done=withdrawn")
        await expect(page.locator("#notice-list")).to_contain_text("已撤回")
        await expect(kiosk.page.locator("#notices")).not_to_contain_text("【道路交通】诉求办结公示")

    browser_page.assert_clean()
    actions = [r.action for r in await live.ctx.store.audit_log()]
    assert {"login", "notice.create", "notice.withdraw"} <= set(actions)


async def test_admin_pages_in_a_real_browser(live: LiveServer, browser_page: BrowserPage) -> None:
    """Boards, feeds, cases, accounts and the audit log render without errors or CSP
    violations; screenshots for the staff guide."""
    await add_staff(live)
    nos = await seed_cases(live)
    async with httpx.AsyncClient(timeout=10) as client:
        await client.get(f"{live.url}/led/longshi-gate/pages.json")  # the board polls
        # A record the case system sends twice with an unknown town: one problem, seen 2x.
        for _ in range(2):
            bad = [case_record("LS2026-0999", town="火星镇")]
            assert (await push_records(client, live.url, bad)).status_code == 400
    page = browser_page.page
    page.set_default_timeout(15_000)
    await page.set_viewport_size({"width": 1440, "height": 1000})
    await log_in(page, live.url, "county", then="/admin/cases")
    await page.click(f'a[href="/admin/cases/{nos["huangjia"]}"]')
    await page.fill('textarea[name="note"]', "请一周内修复")
    await page.click('button[value="supervise"]')
    await expect(page.locator(".flash")).to_contain_text("已标记督办")
    await expect(page.locator("h1 .tag.supervised")).to_have_text("督办")
    await shot(browser_page, "admin-case")
    await page.click(".bar .who button")  # 退出登录
    await page.wait_for_url(f"{live.url}/admin/login")

    await log_in(page, live.url, "admin", then="/admin/boards")
    row = page.locator('tr[data-board="longshi-gate"]')
    await expect(row).to_contain_text("在线")
    thumb = row.locator("img.led-thumb")
    await expect(thumb).to_be_visible()
    assert await thumb.evaluate("img => img.complete && img.naturalWidth") == 128
    await shot(browser_page, "admin-boards")
    await page.fill('input[name="id"]', "longshi-market")
    await page.fill('input[name="name"]', "龙市镇集市屏")
    await page.select_option('select[name="town"]', "longshi")
    await page.click('button:has-text("登记并生成令牌")')
    await expect(page.locator("#board-token")).not_to_be_empty()
    await shot(browser_page, "admin-board-token", full_page=False)
    for path, name in (
        ("/admin/feeds", "admin-feeds"),
        ("/admin/users", "admin-users"),
        ("/admin/audit", "admin-audit"),
    ):
        await page.goto(f"{live.url}{path}")
        await expect(page.locator("h1")).to_be_visible()
        if path == "/admin/feeds":
            problem = page.locator("table.grid tbody tr", has_text="LS2026-0999")
            await expect(problem).to_have_count(1)
            await expect(problem.locator("td").nth(3)).to_have_text("2")
        await shot(browser_page, name)
    await expect(page.locator("#audit")).to_contain_text("登记显示屏")
    await expect(page.locator("#audit")).to_contain_text("标记督办")
    browser_page.assert_clean()
