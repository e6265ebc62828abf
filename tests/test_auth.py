"""display.auth: passwords, account rules, throttling, and sessions over real HTTP."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from display import auth
from display.app import create_app
from display.settings import Settings
from display.store.base import UserRow
from tests.conftest import LiveServer, serve_app
from tests.test_admin import PASSWORD, StaffClient, add_staff


def test_passwords_are_argon2_and_verify() -> None:
    h = auth.hash_password("a-long-password")
    assert h.startswith("$argon2id$")
    assert auth.verify_password(h, "a-long-password")
    assert not auth.verify_password(h, "a-long-passwore")
    assert not auth.verify_password("not a hash", "a-long-password")


def test_the_session_fingerprint_covers_the_password_and_the_epoch() -> None:
    h = auth.hash_password("a-long-password")
    row = UserRow(1, "zhang", "town", ("longshi",), h, False, 0)
    others = [
        dataclasses.replace(row, password_hash=auth.hash_password("a-long-password")),
        dataclasses.replace(row, session_epoch=1),  # disabled once, or disabled and enabled
    ]
    assert len({auth.fingerprint(r) for r in (row, *others)}) == 3
    # The fingerprint is all a session carries of the account: nothing of the hash.
    assert h not in auth.fingerprint(row) and len(auth.fingerprint(row)) == 16


def test_validate_new_user(settings: Settings) -> None:
    ok = "long-enough-pw"
    assert auth.validate_new_user(settings, "zhang", "town", ["longshi"], ok) is None
    assert auth.validate_new_user(settings, "县纪委", "county", [], ok) is None
    assert "至少指定" in (auth.validate_new_user(settings, "zhang", "town", [], ok) or "")
    assert "未配置" in (auth.validate_new_user(settings, "zhang", "town", ["mars"], ok) or "")
    assert "角色" in (auth.validate_new_user(settings, "zhang", "boss", [], ok) or "")
    assert "10" in (auth.validate_new_user(settings, "zhang", "admin", [], "short") or "")
    assert "账号名" in (auth.validate_new_user(settings, "a b", "admin", [], ok) or "")
    assert "空格" in (auth.validate_new_user(settings, "zhang", "admin", [], " " + ok) or "")


def test_roles_and_towns() -> None:
    town = auth.Staff("z", "town", ("longshi",))
    county = auth.Staff("c", "county", ())
    admin = auth.Staff("a", "admin", ())
    assert town.can_town("longshi") and not town.can_town("huangjia")
    assert not town.can_town(None)  # county-wide things
    assert county.can_town("huangjia") and county.can_town(None)
    assert town.has_role("town") and not town.has_role("county")
    assert county.has_role("county") and not county.has_role("admin")
    assert admin.has_role("county") and admin.has_role("admin")


def test_throttle_per_name_and_per_ip_with_a_fake_clock() -> None:
    now = [1000.0]
    t = auth.Throttle(per_name=3, per_ip=5, window=60.0, clock=lambda: now[0])
    for _ in range(3):
        assert t.blocked_for("zhang", "1.1.1.1") == 0
        t.failed("zhang", "1.1.1.1")
    assert t.blocked_for("zhang", "1.1.1.1") > 0
    assert t.blocked_for("ZHANG", "2.2.2.2") > 0  # per name, from anywhere
    assert t.blocked_for("li", "1.1.1.1") == 0  # the address has failures to spare
    t.failed("li", "1.1.1.1")
    t.failed("wang", "1.1.1.1")
    assert t.blocked_for("zhao", "1.1.1.1") > 0  # five from one address
    assert t.blocked_for("zhao", "3.3.3.3") == 0
    now[0] += 61
    assert t.blocked_for("zhang", "1.1.1.1") == 0
    t.failed("zhang", "1.1.1.1")
    t.succeeded("zhang")
    assert t._recent("name:zhang") == []


def test_safe_next_refuses_open_redirects() -> None:
    assert auth.safe_next("/admin/notices?town=longshi") == "/admin/notices?town=longshi"
    for bad in (
        "//evil.example",
        "https://evil.example/admin",
        "/kiosk",
        "/admin\\x",
        None,
        "",
        "/admin\r\nSet-Cookie: x=1",
    ):
        assert auth.safe_next(bad) == "/admin"


# --- over HTTP -----------------------------------------------------------------------------


def _cookie(r: httpx.Response) -> str:
    raw = next(
        v
        for k, v in r.headers.multi_items()
        if k == "set-cookie" and v.startswith(auth.SESSION_COOKIE + "=")
    )
    return raw


async def test_session_cookie_flags(live: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live.url) as client:
        r = await client.get("/admin/login")
        assert r.status_code == 200
        raw = _cookie(r).lower()
        assert "httponly" in raw and "samesite=lax" in raw and "path=/admin" in raw
        assert "secure" not in raw
        assert 'name="csrf_token"' in r.text


async def test_session_cookie_is_secure_behind_https(
    make_settings: Callable[..., Settings],
) -> None:
    app = create_app(make_settings(https=True))
    async with serve_app(app) as (base, _), httpx.AsyncClient(base_url=base) as client:
        r = await client.get("/admin/login")
        assert "; secure" in _cookie(r).lower()
        assert r.headers["strict-transport-security"]


async def test_login_logout_and_revocation(live: LiveServer) -> None:
    await add_staff(live)
    c = StaffClient(live.url)
    try:
        r = await c.http.get("/admin/notices?town=longshi")
        assert r.status_code == 303
        assert r.headers["location"] == "/admin/login?next=/admin/notices%3Ftown%3Dlongshi"
        token = await c.csrf("/admin/login")
        r = await c.http.post(
            "/admin/login",
            data={
                "csrf_token": token,
                "name": "longshi",
                "password": PASSWORD,
                "next": "/admin/notices?town=longshi",
            },
        )
        assert r.status_code == 303 and r.headers["location"] == "/admin/notices?town=longshi"
        # A new CSRF secret after login (no fixation).
        assert await c.csrf() != token
        stolen = c.http.cookies.get(auth.SESSION_COOKIE)
        assert stolen
        page = (await c.http.get("/admin")).text
        assert "longshi" in page and "镇（街道）编辑" in page
        r = await c.post("/admin/logout")
        assert r.status_code == 303 and r.headers["location"] == "/admin/login"
        assert (await c.http.get("/admin")).status_code == 303
        # The cookie from before the logout is dead in this process.
        async with httpx.AsyncClient(
            base_url=live.url, cookies={auth.SESSION_COOKIE: stolen}
        ) as replay:
            assert (await replay.get("/admin")).status_code == 303
    finally:
        await c.aclose()


async def test_tampered_or_foreign_cookies_are_not_sessions(
    live: LiveServer, make_settings: Callable[..., Settings]
) -> None:
    await add_staff(live)
    c = StaffClient(live.url)
    try:
        assert (await c.login("admin")).status_code == 303
        good = c.http.cookies.get(auth.SESSION_COOKIE)
        assert good
        # Flip a character of the signature.
        bad = good[:-2] + ("A" if good[-2] != "A" else "B") + good[-1]
        async with httpx.AsyncClient(
            base_url=live.url, cookies={auth.SESSION_COOKIE: bad}
        ) as other:
            assert (await other.get("/admin")).status_code == 303
        # A session signed with another key (another deployment) is refused too.
        foreign = make_settings(secret_key="another-secret-key-0123456789")
        from itsdangerous import URLSafeTimedSerializer

        forged = URLSafeTimedSerializer(foreign.secret_key, salt="yizheng.admin.session").dumps(
            {"c": "x", "u": "admin", "f": "0" * 16, "s": "s"}
        )
        async with httpx.AsyncClient(
            base_url=live.url, cookies={auth.SESSION_COOKIE: forged}
        ) as other:
            assert (await other.get("/admin")).status_code == 303
    finally:
        await c.aclose()


async def test_wrong_passwords_are_throttled_and_logged(live: LiveServer) -> None:
    await add_staff(live)
    c = StaffClient(live.url)
    try:
        for _ in range(auth.Throttle().per_name):
            r = await c.login("longshi", "wrong-password!")
            assert r.status_code == 401 and "账号或密码错误" in r.text
        # Now even the right password is refused, without being checked.
        r = await c.login("longshi")
        assert r.status_code == 429 and "次数过多" in r.text
        assert int(r.headers["retry-after"]) > 0
        # Other accounts are not locked by it.
        assert (await c.login("huangjia")).status_code == 303
        # Unknown names count as failures and do not reveal whether the name exists.
        d = StaffClient(live.url)
        try:
            r = await d.login("nobody-here", "whatever-password")
            assert r.status_code == 401 and "账号或密码错误" in r.text
        finally:
            await d.aclose()
    finally:
        await c.aclose()
    rows = await live.ctx.store.audit_log()
    actions = [r.action for r in rows]
    assert actions.count("login.failed") == auth.Throttle().per_name + 1
    assert "login.throttled" in actions
    # The typed name of an unknown account is not logged (it may be a mistyped password).
    assert not any("nobody-here" in f"{r.actor}{r.target}{r.detail}" for r in rows)


async def test_throttle_per_address_across_names(live: LiveServer) -> None:
    await add_staff(live)
    live.ctx.extra["login_throttle"] = auth.Throttle(per_name=100, per_ip=3)
    c = StaffClient(live.url)
    try:
        for name in ("a1", "a2", "a3"):
            assert (await c.login(name, "wrong-password!")).status_code == 401
        assert (await c.login("admin")).status_code == 429
    finally:
        await c.aclose()


async def test_login_form_needs_its_csrf_token(live: LiveServer) -> None:
    await add_staff(live)
    async with httpx.AsyncClient(base_url=live.url) as client:
        r = await client.post("/admin/login", data={"name": "admin", "password": PASSWORD})
        assert r.status_code == 403
        assert "安全令牌" in r.text
        assert (await client.get("/admin")).status_code == 303  # not logged in


async def test_admin_refuses_to_run_with_a_short_secret(
    make_settings: Callable[..., Settings],
) -> None:
    app = create_app(make_settings(secret_key="short"))
    async with serve_app(app) as (base, _), httpx.AsyncClient(base_url=base) as client:
        for method, path in (
            ("GET", "/admin/login"),
            ("GET", "/admin"),
            ("POST", "/admin/login"),
            ("GET", "/admin/notices"),
        ):
            r = await client.request(method, path)
            assert r.status_code == 503, path
            assert "secret_key" in r.text
        # The public side still works.
        assert (await client.get("/kiosk/longshi")).status_code == 200


async def test_demo_secret_is_long_enough() -> None:
    from display.cli import demo_settings

    demo = demo_settings(Settings(), Path("/tmp/x.db"), "http://127.0.0.1:1")
    assert auth.admin_problem(demo) is None


@pytest.mark.parametrize("path", ["/admin/users", "/admin/audit"])
async def test_county_staff_are_not_admins(live: LiveServer, path: str) -> None:
    await add_staff(live)
    c = StaffClient(live.url)
    try:
        assert (await c.login("county")).status_code == 303
        r = await c.http.get(path)
        assert r.status_code == 403 and "无权" in r.text
        assert re.search(r'href="/admin/users"', (await c.http.get("/admin")).text) is None
    finally:
        await c.aclose()


async def test_sessions_expire(live: LiveServer) -> None:
    """A session signed longer ago than SESSION_MAX_AGE is refused; a fresh one works."""
    import time

    from itsdangerous import TimestampSigner, URLSafeTimedSerializer

    await add_staff(live)
    row = await live.ctx.store.get_user("admin")
    assert row is not None
    payload = {"c": "csrf", "u": "admin", "f": auth.fingerprint(row), "s": "sid1"}

    def signed(age: int) -> str:
        class Signer(TimestampSigner):
            def get_timestamp(self) -> int:
                return int(time.time()) - age

        s = URLSafeTimedSerializer(
            live.ctx.settings.secret_key, salt="yizheng.admin.session", signer=Signer
        )
        return s.dumps(payload)

    for age, status in ((60, 200), (auth.SESSION_MAX_AGE + 60, 303)):
        async with httpx.AsyncClient(
            base_url=live.url, cookies={auth.SESSION_COOKIE: signed(age)}
        ) as client:
            assert (await client.get("/admin")).status_code == status, age
