"""The staff side over real HTTP: a real app on a loopback port, real SQLite, real SSE.

Covers: anonymous refusal of every admin route, CSRF, town isolation (by UI and by
crafted requests), scripts in notices shown as text everywhere, a notice reaching
a subscribed kiosk stream and an LED board's pages and leaving them on withdrawal,
urgent take-over, supervision, boards, feeds, accounts and the audit log.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from display.app import create_app
from display.auth import hash_password
from display.context import board_token_hash
from display.settings import Settings
from display.views.admin import routes as admin_routes
from tests.conftest import (
    LiveServer,
    case_record,
    open311_feed,
    push_records,
    read_sse,
    serve_app,
)

PASSWORD = "correct-horse-battery"
_HASH = hash_password(PASSWORD)
STAFF = {
    "admin": ("admin", []),
    "county": ("county", []),
    "longshi": ("town", ["longshi"]),
    "huangjia": ("town", ["huangjia"]),
}
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
BOARDS = [
    {
        "id": "longshi-gate",
        "town": "longshi",
        "kind": "led",
        "width": 128,
        "height": 32,
        "color": "mono",
    },
    {"id": "longshi-hall", "town": "longshi", "kind": "kiosk", "width": 1920, "height": 1080},
    {
        "id": "huangjia-gate",
        "town": "huangjia",
        "kind": "led",
        "width": 128,
        "height": 32,
        "color": "mono",
        "name": "黄家镇LED屏",
    },
]


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(boards=BOARDS)


async def add_staff(live: LiveServer) -> None:
    for name, (role, towns) in STAFF.items():
        await live.ctx.store.add_user(name, role, towns, _HASH)


class StaffClient:
    """One browser-like client: its own cookie jar, logged in as one staff member."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = httpx.AsyncClient(base_url=base, timeout=15, follow_redirects=False)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def csrf(self, path: str = "/admin") -> str:
        r = await self.http.get(path)
        assert r.status_code == 200, (path, r.status_code)
        m = CSRF_RE.search(r.text)
        assert m, f"no CSRF field on {path}"
        return html.unescape(m.group(1))

    async def login(self, name: str, password: str = PASSWORD) -> httpx.Response:
        token = await self.csrf("/admin/login")
        return await self.http.post(
            "/admin/login", data={"csrf_token": token, "name": name, "password": password}
        )

    async def post(
        self,
        path: str,
        data: dict[str, Any] | None = None,
        *,
        csrf: bool = True,
        form_page: str = "/admin",
    ) -> httpx.Response:
        payload = dict(data or {})
        if csrf:
            payload["csrf_token"] = await self.csrf(form_page)
        return await self.http.post(path, data=payload)

    async def publish(self, town: str, title: str, body: str, **extra: Any) -> httpx.Response:
        return await self.post(
            "/admin/notices/new",
            {
                "town": town,
                "title": title,
                "body": body,
                "when": "now",
                "action": "publish",
                **extra,
            },
        )


@pytest.fixture
async def staff(live: LiveServer) -> AsyncIterator[Callable[[str], Any]]:
    await add_staff(live)
    clients: list[StaffClient] = []

    async def as_user(name: str) -> StaffClient:
        c = StaffClient(live.url)
        clients.append(c)
        r = await c.login(name)
        assert r.status_code == 303, r.text
        return c

    yield as_user
    for c in clients:
        await c.aclose()


async def seed_cases(live: LiveServer) -> dict[str, str]:
    """A resolved case in longshi and an open one in huangjia; returns town -> case no."""
    async with httpx.AsyncClient(timeout=10) as client:
        r = await push_records(
            client,
            live.url,
            [
                case_record(
                    "L-1",
                    status="resolved",
                    outcome="resolved",
                    resolved_at="2026-11-25T10:00:00+08:00",
                    summary="反映银杏村3组道路破损，雨天积水，联系人张兴九13812345678",
                ),
                case_record("H-1", town="huangjia", village="黄家村", summary="反映黄家村路灯不亮"),
            ],
        )
        assert r.status_code == 202, r.text
        cases = (await client.get(f"{live.url}/api/v1/cases?limit=50")).json()["cases"]
    return {c["town"]: c["no"] for c in cases}


async def led_pages(client: httpx.AsyncClient, base: str, board: str) -> dict[str, Any]:
    r = await client.get(f"{base}/led/{board}/pages.json")
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


async def led_until(
    client: httpx.AsyncClient, base: str, board: str, cond: Callable[[str], bool]
) -> dict[str, Any]:
    """Poll a board's pages until the joined page texts satisfy `cond` (bounded)."""
    doc: dict[str, Any] = {}
    for _ in range(100):
        doc = await led_pages(client, base, board)
        if cond("".join(p["text"].replace("\n", "") for p in doc["pages"])):
            return doc
        await asyncio.sleep(0.1)
    raise AssertionError(f"board {board} never matched; last pages: {doc.get('pages')}")


def _routes() -> list[tuple[str, str]]:
    out = []
    samples = {
        "{id:int}": "1",
        "{no:path}": "X-1",
        "{id}": "longshi-gate",
        "{name}": "push",
        "{action}": "disable",
    }
    for r in admin_routes():
        assert isinstance(r, Route)
        path = r.path
        for k, v in samples.items():
            path = path.replace(k, v)
        if path == "/admin/users/push/disable":
            path = "/admin/users/admin/disable"
        for method in sorted(r.methods or ()):
            if method != "HEAD":
                out.append((method, path))
    return out


# --- anonymous, CSRF, sessions ------------------------------------------------------------


async def test_anonymous_requests_to_every_admin_route_are_refused(live: LiveServer) -> None:
    await add_staff(live)
    await seed_cases(live)
    routes = _routes()
    assert len(routes) >= 20
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
        for method, path in routes:
            if path == "/admin/login":
                continue
            r = await client.request(method, path, data={"title": "x"})
            if method == "GET":
                assert r.status_code == 303, (method, path, r.status_code)
                assert r.headers["location"].startswith("/admin/login?next=")
            else:
                assert r.status_code == 401, (method, path, r.status_code)
            assert "x-frame-options" in r.headers
    # Nothing changed behind the refusals.
    assert await live.ctx.store.list_notices() == []
    assert not any(u.disabled for u in await live.ctx.store.list_users())


async def test_posts_without_a_valid_csrf_token_are_refused(
    live: LiveServer, staff: Callable[[str], Any]
) -> None:
    admin = await staff("admin")
    form = {
        "town": "longshi",
        "title": "无令牌",
        "body": "正文",
        "when": "now",
        "action": "publish",
    }
    r = await admin.post("/admin/notices/new", form, csrf=False)
    assert r.status_code == 403
    assert "安全令牌" in r.text
    r = await admin.http.post("/admin/notices/new", data={**form, "csrf_token": "forged"})
    assert r.status_code == 403
    # The right token from another session does not work either.
    other = await staff("county")
    r = await admin.http.post("/admin/notices/new", data={**form, "csrf_token": await other.csrf()})
    assert r.status_code == 403
    # A cross-site origin is refused even with the right token.
    r = await admin.http.post(
        "/admin/notices/new",
        data={**form, "csrf_token": await admin.csrf()},
        headers={"origin": "https://evil.example"},
    )
    assert r.status_code == 403
    r = await admin.post("/admin/logout", csrf=False)
    assert r.status_code == 403
    assert await live.ctx.store.list_notices() == []
    # The header works too (the editor's script sends the form, but API-style is allowed).
    r = await admin.http.post(
        "/admin/notices/new", data=form, headers={"x-csrf-token": await admin.csrf()}
    )
    assert r.status_code == 303
    assert [n.title for n in await live.ctx.store.list_notices()] == ["无令牌"]


async def test_admin_pages_are_not_cached_and_not_framed(
    live: LiveServer, staff: Callable[[str], Any]
) -> None:
    admin = await staff("admin")
    for path in (
        "/admin",
        "/admin/notices",
        "/admin/boards",
        "/admin/feeds",
        "/admin/audit",
        "/admin/users",
        "/admin/cases",
        "/admin/notices/new",
        "/admin/account",
    ):
        r = await admin.http.get(path)
        assert r.status_code == 200, (path, r.status_code)
        assert r.headers["cache-control"] == "no-store"
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert r.headers["x-content-type-options"] == "nosniff"
        # CSP forbids inline script and style: the pages must not rely on them.
        assert "<script>" not in r.text and " style=" not in r.text and "<style" not in r.text
        assert " onclick=" not in r.text


# --- town isolation ----------------------------------------------------------------------------


async def test_town_editor_cannot_read_or_change_another_towns_notices(
    live: LiveServer, staff: Callable[[str], Any]
) -> None:
    hj = await staff("huangjia")
    r = await hj.publish("huangjia", "黄家镇停水通知", "黄家镇明日停水")
    assert r.status_code == 303
    theirs = (await live.ctx.store.list_notices("huangjia"))[0]
    ls = await staff("longshi")
    # By UI: the list does not show it.
    r = await ls.http.get("/admin/notices")
    assert r.status_code == 200
    assert "黄家镇停水通知" not in r.text
    # By crafted requests: read, edit, withdraw, preview, create for the other town.
    r = await ls.http.get(f"/admin/notices/{theirs.id}")
    assert r.status_code == 403 and "本镇" in r.text
    assert "退出登录" in r.text  # the refusal page keeps the user's navigation
    r = await ls.post(
        f"/admin/notices/{theirs.id}",
        {"town": "longshi", "title": "改了", "body": "改了", "when": "now", "action": "publish"},
    )
    assert r.status_code == 403
    r = await ls.post(
        f"/admin/notices/{theirs.id}",
        {"town": "huangjia", "title": "改了", "body": "改了", "when": "now", "action": "publish"},
    )
    assert r.status_code == 403
    r = await ls.post(f"/admin/notices/{theirs.id}/withdraw")
    assert r.status_code == 403
    r = await ls.publish("huangjia", "冒名公示", "冒名")
    assert r.status_code == 403
    r = await ls.post(
        "/admin/notices/preview",
        {"town": "huangjia", "title": "x", "body": "y", "notice_id": str(theirs.id)},
    )
    assert r.status_code == 403
    r = await ls.post(
        "/admin/notices/preview",
        {"town": "longshi", "title": "x", "body": "y", "notice_id": str(theirs.id)},
    )
    assert r.status_code == 403
    r = await ls.http.get("/admin/notices?town=huangjia")
    assert r.status_code == 403
    r = await ls.http.get("/admin/notices/new?town=huangjia")
    assert r.status_code == 403
    # Nothing changed.
    after = await live.ctx.store.get_notice(theirs.id)
    assert after == theirs
    assert [n.title for n in await live.ctx.store.list_notices()] == ["黄家镇停水通知"]
    # County staff see it; the owner can withdraw it.
    county = await staff("county")
    assert "黄家镇停水通知" in (await county.http.get("/admin/notices")).text
    r = await hj.post(f"/admin/notices/{theirs.id}/withdraw")
    assert r.status_code == 303


async def test_town_editor_cannot_read_or_change_another_towns_cases_or_boards(
    live: LiveServer, staff: Callable[[str], Any]
) -> None:
    nos = await seed_cases(live)
    ls = await staff("longshi")
    # Cases: the list shows only longshi, the other town's case is refused.
    r = await ls.http.get("/admin/cases")
    assert nos["longshi"] in r.text and nos["huangjia"] not in r.text
    r = await ls.http.get(f"/admin/cases/{nos['huangjia']}")
    assert r.status_code == 403
    r = await ls.http.get("/admin/cases?town=huangjia")
    assert r.status_code == 403
    r = await ls.http.get(f"/admin/notices/new?case={nos['huangjia']}")
    assert r.status_code == 403
    # Publishing a notice that claims the other town's case is refused too.
    r = await ls.publish("longshi", "借用案件", "借用", case_no=nos["huangjia"])
    assert r.status_code == 400
    # Town editors may not supervise, even their own town's case.
    r = await ls.post(f"/admin/cases/{nos['longshi']}", {"action": "supervise", "note": "x"})
    assert r.status_code == 403
    r = await ls.post(f"/admin/cases/{nos['huangjia']}", {"action": "supervise", "note": "x"})
    assert r.status_code == 403
    case = await live.ctx.store.get_case(nos["huangjia"])
    assert case is not None and not case.supervised
    # Boards: the list shows only longshi's; the other town's board and frame are refused.
    r = await ls.http.get("/admin/boards")
    assert "longshi-gate" in r.text and "huangjia-gate" not in r.text
    assert "登记新显示屏" not in r.text  # admins only
    for path in ("/admin/boards/huangjia-gate", "/admin/boards/huangjia-gate/frame.png"):
        r = await ls.http.get(path)
        assert r.status_code == 403, path
    r = await ls.post("/admin/boards/huangjia-gate/token")
    assert r.status_code == 403
    r = await ls.post(
        "/admin/boards",
        {
            "id": "sneaky",
            "town": "longshi",
            "kind": "led",
            "width": "128",
            "height": "32",
            "color": "mono",
            "font_size": "16",
        },
    )
    assert r.status_code == 403
    assert "sneaky" not in {b.id for b in await live.ctx.store.boards()}
    # Admin-only pages.
    for path in ("/admin/users", "/admin/audit"):
        assert (await ls.http.get(path)).status_code == 403
    r = await ls.post("/admin/users/longshi/disable")
    assert r.status_code == 403
    r = await ls.post("/admin/feeds/push/sync")
    assert r.status_code == 403
    # The own town works.
    r = await ls.http.get(f"/admin/cases/{nos['longshi']}")
    assert r.status_code == 200
    r = await ls.http.get("/admin/boards/longshi-gate/frame.png")
    assert r.status_code == 200 and r.content.startswith(b"\x89PNG")


# --- notices reach the screens -----------------------------------------------------------------


async def test_published_notice_reaches_kiosk_stream_and_led_then_withdrawal_removes_it(
    live: LiveServer, staff: Callable[[str], Any]
) -> None:
    ls = await staff("longshi")
    title = "道路修复办结公示"
    async with httpx.AsyncClient(timeout=15) as client:
        before = await led_pages(client, live.url, "longshi-gate")
        assert title not in json.dumps(before, ensure_ascii=False)
        _, head = await live.ctx.store.event_bounds()
        r = await ls.publish("longshi", title, "银杏村3组道路已修复，欢迎群众监督")
        assert r.status_code == 303
        assert r.headers["location"] == "/admin/notices?done=published"

        def notice_event(live_flag: bool) -> Callable[[list[dict[str, str]]], bool]:
            def match(events: list[dict[str, str]]) -> bool:
                return any(
                    e.get("event") == "notice"
                    and json.loads(e["data"])["title"] == title
                    and json.loads(e["data"])["live"] is live_flag
                    for e in events
                )

            return match

        events = await read_sse(
            client,
            f"{live.url}/events?town=longshi",
            headers={"Last-Event-ID": str(head)},
            until=notice_event(True),
        )
        assert any(e.get("event") == "notice" for e in events)
        doc = await led_until(client, live.url, "longshi-gate", lambda t: "道路修复" in t)
        assert doc["version"] != before["version"]
        kiosk = (await client.get(f"{live.url}/kiosk/longshi")).text
        assert title in kiosk
        # Another town's screens do not get it.
        other = await led_pages(client, live.url, "huangjia-gate")
        assert "道路修复" not in "".join(p["text"] for p in other["pages"])

        notice = (await live.ctx.store.list_notices("longshi"))[0]
        _, head = await live.ctx.store.event_bounds()
        r = await ls.post(f"/admin/notices/{notice.id}/withdraw")
        assert r.status_code == 303
        await read_sse(
            client,
            f"{live.url}/events?town=longshi",
            headers={"Last-Event-ID": str(head)},
            until=notice_event(False),
        )
        await led_until(client, live.url, "longshi-gate", lambda t: "道路修复" not in t)
        assert title not in (await client.get(f"{live.url}/kiosk/longshi")).text
    page = (await ls.http.get("/admin/notices")).text
    assert "已撤回" in page


async def test_urgent_notice_takes_over_the_towns_boards_until_withdrawn(
    live: LiveServer, staff: Callable[[str], Any]
) -> None:
    ls = await staff("longshi")
    async with httpx.AsyncClient(timeout=15) as client:
        before = await led_until(client, live.url, "longshi-gate", lambda t: "洪水" not in t)
        assert len("".join(p["text"] for p in before["pages"])) > 0
    r = await ls.publish("longshi", "洪水预警", "请沿河群众立即转移", urgent="1")
    assert r.status_code == 303
    async with httpx.AsyncClient(timeout=15) as client:
        doc = await led_until(client, live.url, "longshi-gate", lambda t: "洪水预警" in t)
        # Nothing but the urgent notice is left on the board.
        rest = "".join(p["text"].replace("\n", "") for p in doc["pages"])
        for piece in ("紧急通知", "洪水预警", "请沿河群众立即转移"):
            assert piece in rest
            rest = rest.replace(piece, "")
        assert rest.strip(" ：:") == "", rest
        notice = (await live.ctx.store.list_notices("longshi"))[0]
        assert notice.urgent
        await ls.post(f"/admin/notices/{notice.id}/withdraw")
        await led_until(client, live.url, "longshi-gate", lambda t: "洪水" not in t)


async def test_scheduled_and_expiring_notices_are_validated(
    live: LiveServer, staff: Callable[[str], Any]
) -> None:
    ls = await staff("longshi")
    r = await ls.publish("longshi", "定时", "正文", when="at", publish_at="")
    assert r.status_code == 400 and "请填写发布时间" in r.text
    r = await ls.publish("longshi", "过期", "正文", expires_at="2020-01-01T08:00")
    assert r.status_code == 400 and "到期时间须晚于现在" in r.text
    r = await ls.publish(
        "longshi",
        "定时",
        "正文",
        when="at",
        publish_at="2099-01-01T08:00",
        expires_at="2099-01-02T08:00",
    )
    assert r.status_code == 303 and r.headers["location"].endswith("done=scheduled")
    n = (await live.ctx.store.list_notices("longshi"))[0]
    assert n.publish_at is not None and n.publish_at.isoformat() == "2099-01-01T00:00:00+00:00"
    assert n.expires_at is not None and n.expires_at.isoformat() == "2099-01-02T00:00:00+00:00"
    page = (await ls.http.get("/admin/notices")).text
    assert "定时发布" in page
    async with httpx.AsyncClient(timeout=10) as client:
        assert "定时" not in (await client.get(f"{live.url}/kiosk/longshi/_notices")).text
    r = await ls.publish("longshi", "", "")
    assert r.status_code == 400 and "请填写标题" in r.text and "请填写正文" in r.text


# --- privacy and scripts -------------------------------------------------------------------------


XSS = ["<script>alert(1)</script>", "<img src=x onerror=alert(2)>"]


async def test_script_in_a_notice_is_shown_as_text_everywhere(
    live: LiveServer, staff: Callable[[str], Any]
) -> None:
    ls = await staff("longshi")
    title = "公示" + XSS[1]
    body = "正文" + XSS[0] + XSS[1]
    _, head = await live.ctx.store.event_bounds()
    r = await ls.publish("longshi", title, body)
    assert r.status_code == 303
    notice = (await live.ctx.store.list_notices("longshi"))[0]
    assert "<script>" in notice.body  # stored as typed; escaping is the output's job

    def escaped_only(text: str, where: str, body: bool = True) -> None:
        for raw in XSS:
            assert raw not in text, where
        if body:
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text, where
        assert "&lt;img src=x onerror=alert(2)&gt;" in text, where

    async with httpx.AsyncClient(timeout=15) as client:
        escaped_only((await client.get(f"{live.url}/kiosk/longshi")).text, "kiosk")
        escaped_only((await client.get(f"{live.url}/kiosk/longshi/_notices")).text, "partial")
        doc = await led_until(client, live.url, "longshi-gate", lambda t: "公示" in t)
        r = await client.get(f"{live.url}/led/longshi-gate/text")
        assert r.headers["content-type"].startswith("text/plain")
        assert r.headers["x-content-type-options"] == "nosniff"
        assert json.loads(json.dumps(doc))["pages"]  # pages.json is JSON, not markup
        r = await client.get(f"{live.url}/led/longshi-gate/pages.json")
        assert r.headers["content-type"].startswith("application/json")
        # The event stream carries it as JSON text (text/event-stream, never markup).
        events = await read_sse(
            client,
            f"{live.url}/events?town=longshi",
            headers={"Last-Event-ID": str(head)},
            until=lambda es: any(e.get("event") == "notice" for e in es),
        )
        data = json.loads(next(e for e in events if e.get("event") == "notice")["data"])
        assert data["body"] == body and data["title"] == title
    escaped_only((await ls.http.get("/admin/notices")).text, "list", body=False)
    escaped_only((await ls.http.get(f"/admin/notices/{notice.id}")).text, "editor")
    r = await ls.post("/admin/notices/preview", {"town": "longshi", "title": title, "body": body})
    escaped_only(r.text, "preview")


async def test_personal_data_is_redacted_before_saving_and_the_editor_shows_it(
    live: LiveServer, staff: Callable[[str], Any]
) -> None:
    nos = await seed_cases(live)
    ls = await staff("longshi")
    # Prefilled from the resolved case: its public (already redacted) copy.
    r = await ls.http.get(f"/admin/notices/new?case={nos['longshi']}")
    assert r.status_code == 200
    assert "13812345678" not in r.text and "张兴九" not in r.text
    assert "【道路交通】诉求办结公示" in r.text and nos["longshi"] in r.text
    body = "经核实，张兴九反映的问题已解决，联系电话13812345678。"
    r = await ls.post("/admin/notices/preview", {"town": "longshi", "title": "办结", "body": body})
    assert r.status_code == 200
    assert re.search(r'<mark class="removed" data-kind="phone"[^>]*>13812345678</mark>', r.text)
    assert "手机号" in r.text and "姓名" in r.text
    assert 'class="led-frame"' in r.text and "data:image/png;base64," in r.text
    assert 'data-board="longshi-gate"' in r.text and 'data-board="huangjia-gate"' not in r.text
    r = await ls.publish("longshi", "办结", body, case_no=nos["longshi"])
    assert r.status_code == 303
    saved = (await live.ctx.store.list_notices("longshi"))[0]
    assert "13812345678" not in saved.body and "张兴九" not in saved.body
    assert "张某" in saved.body and saved.case_no == nos["longshi"]
    log = await live.ctx.store.audit_log()
    assert "已去除个人信息" in (log[0].detail or "")
    assert "13812345678" not in json.dumps([r.detail for r in log], ensure_ascii=False)


# --- supervision, boards, feeds, accounts, audit -------------------------------------------------


async def test_county_staff_supervise_a_case_and_screens_show_it(
    live: LiveServer, staff: Callable[[str], Any]
) -> None:
    nos = await seed_cases(live)
    county = await staff("county")
    no = nos["huangjia"]
    _, head = await live.ctx.store.event_bounds()
    r = await county.post(
        f"/admin/cases/{no}", {"action": "supervise", "note": "请一周内修复，联系人李四13900001111"}
    )
    assert r.status_code == 303
    async with httpx.AsyncClient(timeout=15) as client:
        events = await read_sse(
            client,
            f"{live.url}/events?town=huangjia",
            headers={"Last-Event-ID": str(head)},
            until=lambda es: any(
                e.get("event") == "case" and json.loads(e["data"])["supervised"] for e in es
            ),
        )
        assert events
        api = (await client.get(f"{live.url}/api/v1/cases/{no}")).json()
        assert api["supervised"] is True
        assert "13900001111" not in json.dumps(api, ensure_ascii=False)
        doc = await led_until(client, live.url, "huangjia-gate", lambda t: "督办" in t)
        assert doc["pages"]
    timeline = await live.ctx.store.timeline(no)
    assert timeline[-1].note is not None and timeline[-1].note.startswith("督办：请一周内修复")
    assert "13900001111" not in timeline[-1].note
    r = await county.post(f"/admin/cases/{no}", {"action": "unsupervise"})
    assert r.status_code == 303
    case = await live.ctx.store.get_case(no)
    assert case is not None and not case.supervised


async def test_admin_registers_a_board_and_sees_the_token_once(
    live: LiveServer, staff: Callable[[str], Any]
) -> None:
    admin = await staff("admin")
    r = await admin.post(
        "/admin/boards",
        {
            "id": "longshi-market",
            "name": "龙市镇集市屏",
            "town": "longshi",
            "kind": "led",
            "width": "64",
            "height": "32",
            "color": "dual",
            "font_size": "16",
            "title": "",
        },
    )
    assert r.status_code == 200, r.text
    token = html.unescape(re.search(r'id="board-token">([^<]+)<', r.text).group(1))  # type: ignore[union-attr]
    assert len(token) >= 30
    assert "/led/longshi-market" in r.text
    assert r.headers["cache-control"] == "no-store"
    rows = {b.id: b for b in await live.ctx.store.boards()}
    assert rows["longshi-market"].token_hash == board_token_hash(token)
    assert token not in json.dumps(rows["longshi-market"].profile)
    assert rows["longshi-market"].profile["color"] == "dual"
    assert "longshi-market" in live.ctx.registered_boards
    # The token is not shown again.
    page = (await admin.http.get("/admin/boards/longshi-market")).text
    assert token not in page and "从未连接" in page
    listing = (await admin.http.get("/admin/boards")).text
    assert "longshi-market" in listing and token not in listing
    r = await admin.http.get("/admin/boards/longshi-market/frame.png")
    assert r.status_code == 200 and r.content.startswith(b"\x89PNG")
    # Duplicates and bad profiles are refused with reasons.
    r = await admin.post(
        "/admin/boards",
        {
            "id": "longshi-market",
            "town": "longshi",
            "kind": "led",
            "width": "5",
            "height": "32",
            "color": "mono",
            "font_size": "16",
        },
    )
    assert r.status_code == 400 and "已被使用" in r.text and "宽度" in r.text
    # A new token replaces the old one.
    r = await admin.post("/admin/boards/longshi-market/token")
    new = html.unescape(re.search(r'id="board-token">([^<]+)<', r.text).group(1))  # type: ignore[union-attr]
    assert new != token
    rows = {b.id: b for b in await live.ctx.store.boards()}
    assert rows["longshi-market"].token_hash == board_token_hash(new)
    # Town editors see their town's new board but cannot re-key it.
    ls = await staff("longshi")
    assert "longshi-market" in (await ls.http.get("/admin/boards")).text
    assert (await ls.post("/admin/boards/longshi-market/token")).status_code == 403


async def test_board_online_status_follows_last_seen(
    live: LiveServer, staff: Callable[[str], Any]
) -> None:
    admin = await staff("admin")
    async with httpx.AsyncClient(timeout=10) as client:
        await led_pages(client, live.url, "longshi-gate")  # the board polls
    r = await admin.http.get("/admin/boards")
    row = re.search(r'<tr data-board="longshi-gate">.*?</tr>', r.text, re.S)
    assert row and "在线" in row.group(0)
    row = re.search(r'<tr data-board="huangjia-gate">.*?</tr>', r.text, re.S)
    assert row and "从未连接" in row.group(0)


async def test_feeds_page_shows_quarantine_reasons_and_sync_needs_a_runner(
    live: LiveServer, staff: Callable[[str], Any]
) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        bad = case_record("BAD-1", status="nonsense")
        r = await push_records(client, live.url, [bad])
        assert r.status_code == 400, r.text
    reasons = await live.ctx.store.quarantine("push")
    assert reasons, "the bad record was not quarantined"
    admin = await staff("admin")
    page = (await admin.http.get("/admin/feeds")).text
    assert "BAD-1" in page and html.escape(reasons[0].reason, quote=False) in page
    r = await admin.post("/admin/feeds/push/sync")
    assert r.status_code == 409 and "不在本进程" in r.text
    r = await admin.post("/admin/feeds/nope/sync")
    assert r.status_code == 404


async def test_sync_now_wakes_a_pull_feed(make_settings: Callable[..., Settings]) -> None:
    from feeds.simulator import Simulator

    sim = Simulator([("longshi", "龙市镇")], seed=3, step_seconds=3600, initial_cases=2)
    async with serve_app(sim.app) as (sim_url, _):
        settings = make_settings(feeds=[open311_feed(sim_url, 3600)])
        app = create_app(settings)
        async with serve_app(app) as (base, server):
            live = LiveServer(app, base, server)
            await add_staff(live)
            runner = live.ctx.runners["hotline"]
            for _ in range(100):  # the first pull happens at start
                if runner.state.successes >= 1:
                    break
                await asyncio.sleep(0.05)
            assert runner.state.successes == 1
            admin = StaffClient(base)
            try:
                assert (await admin.login("admin")).status_code == 303
                page = (await admin.http.get("/admin/feeds")).text
                assert "立即同步" in page and "hotline" in page
                r = await admin.post("/admin/feeds/hotline/sync")
                assert r.status_code == 303
                for _ in range(100):
                    if runner.state.successes >= 2:
                        break
                    await asyncio.sleep(0.05)
                assert runner.state.successes >= 2
            finally:
                await admin.aclose()
            actions = [a.action for a in await live.ctx.store.audit_log()]
            assert "feed.sync" in actions


async def test_admin_manages_accounts(live: LiveServer, staff: Callable[[str], Any]) -> None:
    admin = await staff("admin")
    r = await admin.post(
        "/admin/users",
        {"name": "shuangfeng", "role": "town", "towns": "shuangfeng", "password": "short"},
    )
    assert r.status_code == 400 and "至少需要 10 个字符" in r.text
    r = await admin.post(
        "/admin/users", {"name": "sf2", "role": "town", "password": "long-enough-pw"}
    )
    assert r.status_code == 400 and "至少指定一个" in r.text
    r = await admin.post(
        "/admin/users",
        {"name": "shuangfeng", "role": "town", "towns": "shuangfeng", "password": "long-enough-pw"},
    )
    assert r.status_code == 303
    row = await live.ctx.store.get_user("shuangfeng")
    assert (
        row is not None and row.towns == ("shuangfeng",) and row.password_hash.startswith("$argon2")
    )
    r = await admin.post(
        "/admin/users", {"name": "shuangfeng", "role": "admin", "password": "long-enough-pw"}
    )
    assert r.status_code == 400 and "已存在" in r.text
    new = StaffClient(live.url)
    try:
        assert (await new.login("shuangfeng", "long-enough-pw")).status_code == 303
        assert (await new.http.get("/admin")).status_code == 200
        # Disabling ends the session at once and blocks the login.
        r = await admin.post("/admin/users/shuangfeng/disable")
        assert r.status_code == 303
        assert (await new.http.get("/admin")).status_code == 303
        assert (await new.login("shuangfeng", "long-enough-pw")).status_code == 401
        r = await admin.post("/admin/users/shuangfeng/enable")
        assert r.status_code == 303
        # Re-enabling does not bring the old session back.
        assert (await new.http.get("/admin")).status_code == 303
        assert (await new.login("shuangfeng", "long-enough-pw")).status_code == 303
        # A password reset ends existing sessions too.
        r = await admin.post("/admin/users/shuangfeng/password", {"password": "another-long-pw"})
        assert r.status_code == 303
        assert (await new.http.get("/admin")).status_code == 303
        assert (await new.login("shuangfeng", "another-long-pw")).status_code == 303
    finally:
        await new.aclose()
    r = await admin.post("/admin/users/admin/disable")
    assert r.status_code == 400 and "不能停用自己" in r.text
    page = (await admin.http.get("/admin/users")).text
    assert "$argon2" not in page


async def test_every_staff_action_is_in_the_audit_log(
    live: LiveServer, staff: Callable[[str], Any]
) -> None:
    nos = await seed_cases(live)
    ls = await staff("longshi")
    await ls.publish("longshi", "审计测试", "正文")
    notice = (await live.ctx.store.list_notices("longshi"))[0]
    await ls.post(
        f"/admin/notices/{notice.id}",
        {
            "town": "longshi",
            "title": "审计测试二",
            "body": "正文",
            "when": "now",
            "action": "publish",
        },
    )
    await ls.post(f"/admin/notices/{notice.id}/withdraw")
    await ls.post("/admin/logout")
    county = await staff("county")
    await county.post(f"/admin/cases/{nos['huangjia']}", {"action": "supervise", "note": "快"})
    admin = await staff("admin")
    await admin.post(
        "/admin/users", {"name": "newbie", "role": "county", "password": "long-enough-pw"}
    )
    await admin.post("/admin/users/newbie/password", {"password": "another-long-pw"})
    await admin.post("/admin/users/newbie/disable")
    await admin.post(
        "/admin/boards",
        {
            "id": "audit-board",
            "town": "",
            "kind": "led",
            "width": "128",
            "height": "32",
            "color": "mono",
            "font_size": "16",
        },
    )
    bad = StaffClient(live.url)
    try:
        await bad.login("longshi", "wrong-password")
    finally:
        await bad.aclose()
    rows = await live.ctx.store.audit_log()
    seen = {(r.actor, r.action, r.target) for r in rows}
    expected = {
        ("longshi", "login", None),
        ("longshi", "notice.create", f"notice:{notice.id}"),
        ("longshi", "notice.update", f"notice:{notice.id}"),
        ("longshi", "notice.withdraw", f"notice:{notice.id}"),
        ("longshi", "logout", None),
        ("county", "case.supervise", f"case:{nos['huangjia']}"),
        ("admin", "user.add", "user:newbie"),
        ("admin", "user.password", "user:newbie"),
        ("admin", "user.disable", "user:newbie"),
        ("admin", "board.register", "board:audit-board"),
        ("longshi", "login.failed", "longshi"),
    }
    assert expected <= seen, expected - seen
    assert all(r.ip == "127.0.0.1" for r in rows)
    page = (await admin.http.get("/admin/audit")).text
    assert "撤回公示" in page and "标记督办" in page and "127.0.0.1" in page
    # The log offers no way to change it: no form on the page, no write route.
    assert '<form method="post" action="/admin/audit' not in page
    r = await admin.post("/admin/audit")
    assert r.status_code == 405


async def test_staff_change_their_own_password(
    live: LiveServer, staff: Callable[[str], Any]
) -> None:
    ls = await staff("longshi")
    r = await ls.post("/admin/account", {"old_password": "wrong-one!!", "new_password": "x" * 12})
    assert r.status_code == 400 and "原密码错误" in r.text
    r = await ls.post("/admin/account", {"old_password": PASSWORD, "new_password": "short"})
    assert r.status_code == 400 and "至少需要" in r.text
    r = await ls.post("/admin/account", {"old_password": PASSWORD, "new_password": "new-long-pass"})
    assert r.status_code == 303 and r.headers["location"].startswith("/admin/login")
    assert (await ls.http.get("/admin")).status_code == 303  # logged out
    assert (await ls.login("longshi")).status_code == 401
    assert (await ls.login("longshi", "new-long-pass")).status_code == 303
    log = await live.ctx.store.audit_log()
    assert any(r.action == "user.password" and r.target == "user:longshi" for r in log)


def test_admin_templates_never_mark_data_safe() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "templates" / "admin"
    files = sorted(root.glob("*.html"))
    assert len(files) >= 10
    for f in files:
        text = f.read_text(encoding="utf-8")
        assert "|safe" not in text.replace(" ", ""), f.name
        assert "autoescape false" not in text, f.name
        assert "<script>" not in text and " style=" not in text, f.name


async def test_county_wide_notice_is_read_only_for_town_editors(
    live: LiveServer, staff: Callable[[str], Any]
) -> None:
    county = await staff("county")
    r = await county.publish("all", "全市防汛通知", "各镇做好防汛准备")
    assert r.status_code == 303
    notice = (await live.ctx.store.list_notices())[0]
    assert notice.town is None
    ls = await staff("longshi")
    page = (await ls.http.get("/admin/notices")).text
    assert "全市防汛通知" in page and "只读" in page
    assert f"/admin/notices/{notice.id}/withdraw" not in page
    assert (await ls.http.get(f"/admin/notices/{notice.id}")).status_code == 403
    assert (await ls.post(f"/admin/notices/{notice.id}/withdraw")).status_code == 403
    assert (await ls.publish("all", "冒充全市", "x")).status_code == 403
    async with httpx.AsyncClient(timeout=10) as client:
        for town in ("longshi", "huangjia"):
            text = (await client.get(f"{live.url}/kiosk/{town}/_notices")).text
            assert "全市防汛通知" in text


async def test_registered_boards_come_back_after_a_restart(
    live: LiveServer, staff: Callable[[str], Any], settings: Settings
) -> None:

    admin = await staff("admin")
    r = await admin.post(
        "/admin/boards",
        {
            "id": "shinian-gate",
            "name": "石碾镇屏",
            "town": "shinian",
            "kind": "led",
            "width": "96",
            "height": "16",
            "color": "rgb",
            "font_size": "12",
            "title": "石碾议政",
        },
    )
    assert r.status_code == 200
    registered = live.ctx.registered_boards["shinian-gate"]
    second = create_app(settings)  # another process on the same database
    async with serve_app(second) as (url, _):
        ctx = second.state.ctx
        # Start-up loaded it, and the LED outputs serve it.
        assert ctx.board("shinian-gate") == registered
        async with httpx.AsyncClient(timeout=10) as client:
            frame = await client.get(f"{url}/led/shinian-gate/frame.png")
        assert frame.status_code == 200
        assert frame.headers["content-type"] == "image/png"
        # Boards from the configuration are not duplicated as registered ones.
        assert "longshi-gate" not in ctx.registered_boards


async def test_a_failing_feed_shows_its_error_and_lag(
    make_settings: Callable[..., Settings],
) -> None:
    from tests.conftest import free_port

    dead = f"http://127.0.0.1:{free_port()}/open311/v2"  # nothing listens there
    settings = make_settings(
        boards=BOARDS,
        feeds=[
            {"name": "hotline", "kind": "open311", "url": dead, "interval": 3600, "staleness": 60}
        ],
    )
    app = create_app(settings)
    async with serve_app(app) as (base, server):
        live = LiveServer(app, base, server)
        await add_staff(live)
        runner = live.ctx.runners["hotline"]
        for _ in range(200):
            if runner.state.consecutive_failures >= 1:
                break
            await asyncio.sleep(0.05)
        assert runner.state.consecutive_failures >= 1
        for _ in range(100):  # the failure is recorded in the store right after
            states = {s.name: s for s in await live.ctx.store.feed_states()}
            if "hotline" in states and states["hotline"].last_error:
                break
            await asyncio.sleep(0.05)
        county = StaffClient(base)
        try:
            assert (await county.login("county")).status_code == 303
            page = (await county.http.get("/admin/feeds")).text
            card = re.search(r'id="feed-hotline">.*?</section>', page, re.S)
            assert card is not None
            assert "从未成功" in card.group(0)
            assert re.search(r'<dd class="bad">\s*[1-9]', card.group(0))
            assert states["hotline"].last_error
            assert html.escape(states["hotline"].last_error, quote=False)[:20] in card.group(0)
            assert "立即同步" not in card.group(0)  # admins only
            dash = (await county.http.get("/admin")).text
            assert "数据源异常" in dash and "hotline" in dash
        finally:
            await county.aclose()


async def test_staff_event_stream_follows_the_town_rules(
    live: LiveServer, staff: Callable[[str], Any]
) -> None:
    town = await staff("longshi")
    county = await staff("county")
    assert (await town.http.get("/admin/events")).status_code == 403  # must name its town
    assert (await town.http.get("/admin/events?town=huangjia")).status_code == 403
    async with town.http.stream("GET", "/admin/events?town=longshi") as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
    async with county.http.stream("GET", "/admin/events") as r:
        assert r.status_code == 200
