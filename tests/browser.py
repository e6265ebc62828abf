"""Real-browser testing with Debian's chromium, driven by Playwright for Python.

Use the `browser_page` fixture (import it, and the `chromium_browser` fixture it
needs, into your test module) or the `open_page` async context manager:

    from tests.browser import BrowserPage, browser_page, chromium_browser

    __all__ = ["browser_page", "chromium_browser"]  # fixtures, used by name

    @pytest.mark.browser
    async def test_page(live, browser_page: BrowserPage) -> None:
        await browser_page.page.goto(f"{live.url}/kiosk/longshi")
        browser_page.assert_clean()

Every page collects console errors, uncaught exceptions and CSP violations
(caught by a `securitypolicyviolation` listener installed before any page
script runs), so a test can assert that a page ran cleanly. Without chromium
the tests skip with a reason locally and fail in CI (`YIZHENG_CI=1`). Never
download browsers: Playwright only drives the system's chromium.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import chromium_path, require_in_ci

if TYPE_CHECKING:
    from playwright.async_api import Browser, ConsoleMessage, Page

SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

LANDSCAPE = (1920, 1080)
PORTRAIT = (1080, 1920)

_CSP_HOOK = """
document.addEventListener("securitypolicyviolation", function (e) {
  window.__yizhengCsp(e.violatedDirective + " blocked " + (e.blockedURI || "inline")
    + " at " + (e.sourceFile || "") + ":" + e.lineNumber);
});
"""


@dataclass
class BrowserPage:
    """A page and everything it complained about."""

    page: Page
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)

    def errors(self, allow: Sequence[str] = ()) -> list[str]:
        """Every error so far, except those matching one of the `allow` regexes."""
        found = [
            *(f"console: {m}" for m in self.console_errors),
            *(f"page error: {m}" for m in self.page_errors),
            *(f"CSP violation: {m}" for m in self.csp_violations),
        ]
        return [e for e in found if not any(re.search(p, e) for p in allow)]

    def assert_clean(self, allow: Sequence[str] = ()) -> None:
        errors = self.errors(allow)
        assert not errors, "the page reported errors:\n" + "\n".join(errors)

    async def screenshot(self, name: str, *, full_page: bool = False) -> Path:
        """Save a screenshot to tests/screenshots/ (git-ignored) and return its path."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=full_page)
        return path


async def eventually(
    condition: Callable[[], bool], seconds: float = 5.0, message: str = "condition"
) -> None:
    """Wait until `condition()` holds (for conditions outside the DOM, such as requests
    seen or errors collected; for the DOM use Playwright's `expect`)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} did not hold within {seconds} s")
        await asyncio.sleep(0.05)


def _require_chromium() -> str:
    path = chromium_path()
    if path is None:
        require_in_ci(
            "Debian's chromium is not installed at /usr/bin/chromium "
            "(apt-get install chromium, or set YIZHENG_CHROMIUM)"
        )
        raise AssertionError("unreachable")  # require_in_ci skips or fails
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        require_in_ci("Playwright for Python is not installed (pip install -e '.[dev]')")
    return path


@contextlib.asynccontextmanager
async def launch_browser() -> AsyncIterator[Browser]:
    """A headless chromium for the duration of the block."""
    executable = _require_chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            await browser.close()


@contextlib.asynccontextmanager
async def open_page(
    browser: Browser, viewport: tuple[int, int] = LANDSCAPE, **context_options: Any
) -> AsyncIterator[BrowserPage]:
    """A fresh browser context and page that records console errors, page errors and CSP
    violations. `context_options` go to `browser.new_context` (locale, has_touch, …)."""
    options: dict[str, Any] = {
        "locale": "zh-CN",
        "timezone_id": "Asia/Shanghai",
        "viewport": {"width": viewport[0], "height": viewport[1]},
    }
    options.update(context_options)
    context = await browser.new_context(**options)
    try:
        page = await context.new_page()
        probe = BrowserPage(page)

        def on_console(msg: ConsoleMessage) -> None:
            if msg.type == "error":
                probe.console_errors.append(msg.text)

        page.on("console", on_console)
        page.on("pageerror", lambda exc: probe.page_errors.append(str(exc)))

        def on_csp(text: str) -> None:
            probe.csp_violations.append(text)

        await page.expose_function("__yizhengCsp", on_csp)
        await page.add_init_script(_CSP_HOOK)
        yield probe
    finally:
        await context.close()


@pytest.fixture
async def chromium_browser() -> AsyncIterator[Browser]:
    async with launch_browser() as browser:
        yield browser


@pytest.fixture
async def browser_page(chromium_browser: Browser) -> AsyncIterator[BrowserPage]:
    """A 1920x1080 page in headless chromium; see BrowserPage."""
    async with open_page(chromium_browser) as probe:
        yield probe
