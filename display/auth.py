"""Staff accounts, sessions, CSRF tokens, roles and login throttling.

Sessions are signed cookies (itsdangerous) that name the user, carry the CSRF
secret of the session and a fingerprint of the user's password hash and session
epoch, so that a password reset or a disable ends every session at once, in
every process, and an enable does not bring them back. Logging out also revokes
the session id in this process.

Roles: `admin` (accounts, boards, feeds, audit log, and everything county staff
do), `county` (every town; supervision 督办), `town` (only the towns listed on the
account). Handlers call `require(request, role=..., town=...)`; `guard` wraps each
admin handler so that a refusal becomes the right response.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from display.settings import Settings
from display.store.base import UserRow

ROLES = ("admin", "county", "town")
ROLE_LABELS = {"admin": "管理员", "county": "市级督办", "town": "镇（街道）编辑"}
MIN_PASSWORD = 10
#: The admin refuses to run with a shorter `secret_key` (sessions would be forgeable).
MIN_SECRET = 16
SESSION_COOKIE = "yz_admin"
#: A session lasts one working day; then the user logs in again.
SESSION_MAX_AGE = 12 * 3600
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
NAME_RE = re.compile(r"^[\w.\-]{2,40}$")

_hasher = PasswordHasher()
# Verified against when the name is unknown, so that a miss costs as much as a hit.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


# --- passwords and accounts ------------------------------------------------------


def hash_password(password: str) -> str:
    """An argon2id hash of `password` (parameters from argon2-cffi's defaults)."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def validate_password(password: str) -> str | None:
    if len(password) < MIN_PASSWORD:
        return f"密码至少需要 {MIN_PASSWORD} 个字符"
    if password.strip() != password or not password.isprintable():
        return "密码不能以空格开头或结尾，也不能包含控制字符"
    return None


def validate_new_user(
    settings: Settings, name: str, role: str, towns: Sequence[str], password: str
) -> str | None:
    """Why this account cannot be created (a message to show), or None when it can."""
    if not NAME_RE.match(name):
        return "账号名须为 2–40 个字母、数字、汉字、点、下划线或连字符"
    if role not in ROLES:
        return f"角色须为 {' / '.join(ROLES)} 之一"
    known = {t.slug for t in settings.towns}
    unknown = [t for t in towns if t not in known]
    if unknown:
        return f"未配置的镇（街道）：{', '.join(unknown)}"
    if role == "town" and not towns:
        return "镇（街道）编辑须至少指定一个镇（街道）"
    return validate_password(password)


def admin_problem(settings: Settings) -> str | None:
    """Why the admin cannot run with these settings, or None."""
    if len(settings.secret_key) < MIN_SECRET:
        return (
            f"管理后台未启用：secret_key 未配置或少于 {MIN_SECRET} 个字符"
            "（请在 yizheng.toml 或 YIZHENG_SECRET_KEY 中设置一个随机长字符串）"
        )
    return None


@dataclass(frozen=True)
class Staff:
    """The logged-in user, as handlers see it."""

    name: str
    role: str
    towns: tuple[str, ...]
    session_id: str = ""

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def sees_all(self) -> bool:
        """County staff and admins see every town."""
        return self.role in ("admin", "county")

    @property
    def role_label(self) -> str:
        return ROLE_LABELS.get(self.role, self.role)

    def has_role(self, role: str | Sequence[str] | None) -> bool:
        if role is None:
            return True
        allowed = (role,) if isinstance(role, str) else tuple(role)
        # Admins may do whatever county staff may; county staff whatever town editors may.
        rank = {"town": 0, "county": 1, "admin": 2}
        return any(rank.get(self.role, -1) >= rank.get(r, 99) for r in allowed)

    def can_town(self, town: str | None) -> bool:
        """May this user see and change things of `town` (None: county-wide things)?"""
        if self.sees_all:
            return True
        return town is not None and town in self.towns


# --- refusals ----------------------------------------------------------------------


class AuthError(Exception):
    status = 403

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotLoggedIn(AuthError):
    status = 401


class Forbidden(AuthError):
    status = 403


class BadCsrf(AuthError):
    status = 403


class Throttled(AuthError):
    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _Unset(enum.Enum):
    UNSET = 0


ANY_TOWN = _Unset.UNSET


# --- sessions ----------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    csrf: str
    user: str | None = None
    fingerprint: str | None = None
    sid: str = ""


def _serializer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.secret_key, salt="yizheng.admin.session")


def fingerprint(row: UserRow) -> str:
    """Changes when the password changes and when the account is disabled or enabled
    (its session epoch); reveals nothing of the hash."""
    raw = f"yizheng-session:{row.session_epoch}:{row.password_hash}".encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def _ctx_extra(request: Request) -> dict[str, Any]:
    extra: dict[str, Any] = request.app.state.ctx.extra
    return extra


def _revoked(request: Request) -> dict[str, float]:
    revoked: dict[str, float] = _ctx_extra(request).setdefault("revoked_sessions", {})
    return revoked


def read_session(request: Request) -> Session | None:
    cached = request.scope.get("yizheng.session")
    if isinstance(cached, Session):
        return cached
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw:
        return None
    settings: Settings = request.app.state.ctx.settings
    try:
        data = _serializer(settings).loads(raw, max_age=SESSION_MAX_AGE)
    except BadSignature:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("c"), str):
        return None
    sid = data.get("s") if isinstance(data.get("s"), str) else ""
    if sid and sid in _revoked(request):
        return None
    user = data.get("u") if isinstance(data.get("u"), str) else None
    fp = data.get("f") if isinstance(data.get("f"), str) else None
    session = Session(csrf=data["c"], user=user, fingerprint=fp, sid=sid or "")
    request.scope["yizheng.session"] = session
    return session


def new_session(user: UserRow | None = None) -> Session:
    return Session(
        csrf=secrets.token_urlsafe(24),
        user=user.name if user else None,
        fingerprint=fingerprint(user) if user else None,
        sid=secrets.token_urlsafe(12),
    )


def set_session(request: Request, response: Response, session: Session) -> None:
    settings: Settings = request.app.state.ctx.settings
    value = _serializer(settings).dumps(
        {"c": session.csrf, "u": session.user, "f": session.fingerprint, "s": session.sid}
    )
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=SESSION_MAX_AGE,
        path="/admin",
        httponly=True,
        samesite="lax",
        secure=settings.https,
    )
    request.scope["yizheng.session"] = session


def clear_session(request: Request, response: Response) -> None:
    session = read_session(request)
    if session is not None and session.sid:
        revoked = _revoked(request)
        now = time.monotonic()
        for sid, until in list(revoked.items()):
            if until < now:
                del revoked[sid]
        revoked[session.sid] = now + SESSION_MAX_AGE
    settings: Settings = request.app.state.ctx.settings
    response.delete_cookie(
        SESSION_COOKIE, path="/admin", httponly=True, samesite="lax", secure=settings.https
    )


def ensure_session(request: Request) -> tuple[Session, bool]:
    """The request's session, or a fresh anonymous one (True: the cookie must be set)."""
    session = read_session(request)
    if session is not None:
        return session, False
    session = new_session()
    request.scope["yizheng.session"] = session
    return session, True


def csrf_token(request: Request) -> str:
    """The token for this session's forms (templates put it in a hidden field)."""
    session, _ = ensure_session(request)
    return session.csrf


async def check_csrf(request: Request) -> None:
    """Refuse a state-changing request whose token does not match the session's."""
    origin = request.headers.get("origin")
    if origin and origin != "null":
        # Host names only: a proxy may drop the port from Host (nginx's $host does).
        host = urlsplit("//" + request.headers.get("host", "")).hostname
        if urlsplit(origin).hostname != host:
            raise BadCsrf("请求来源不符，已拒绝")
    session = read_session(request)
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if session is None or not sent or not hmac.compare_digest(sent, session.csrf):
        raise BadCsrf("表单已过期或缺少安全令牌，请刷新页面后重试")


async def current_user(request: Request) -> Staff | None:
    """The logged-in staff member, or None. Checks the account on every request."""
    cached = request.scope.get("yizheng.staff", _Unset.UNSET)
    if cached is not _Unset.UNSET:
        return cached if isinstance(cached, Staff) else None
    staff: Staff | None = None
    session = read_session(request)
    if session is not None and session.user:
        row = await request.app.state.ctx.store.get_user(session.user)
        if (
            row is not None
            and not row.disabled
            and session.fingerprint is not None
            and hmac.compare_digest(session.fingerprint, fingerprint(row))
        ):
            staff = Staff(name=row.name, role=row.role, towns=row.towns, session_id=session.sid)
    request.scope["yizheng.staff"] = staff
    return staff


async def require(
    request: Request, role: str | Sequence[str] | None = None, town: str | _Unset | None = ANY_TOWN
) -> Staff:
    """The logged-in user, if they hold `role` and may act on `town`; else raise.

    `town=None` means a county-wide object: only county staff and admins.
    """
    staff = await current_user(request)
    if staff is None:
        raise NotLoggedIn("请先登录")
    if not staff.has_role(role):
        raise Forbidden("您的账号无权进行此操作")
    if town is not ANY_TOWN and not staff.can_town(town):
        raise Forbidden("您只能查看和管理本镇（街道）的内容")
    return staff


async def stream_guard(request: Request) -> Response | None:
    """The staff event stream's gate (ctx.extra["staff_auth"]): logged-in staff only,
    and a town editor only for their own town (`?town=` is then required)."""
    try:
        staff = await require(request)
        raw = request.query_params.get("town")
        if raw:
            town = request.app.state.ctx.settings.town(raw)
            await require(request, town=town.slug if town else raw)
        elif not staff.can_town(None):
            raise Forbidden("请指定本镇（街道）：/admin/events?town=…")
    except AuthError as err:
        return refusal(request, err)
    return None


# --- login throttling ----------------------------------------------------------------


@dataclass
class Throttle:
    """Failed logins per account name and per client address, in a sliding window.

    After `per_name` failures for one name, or `per_ip` from one address, within
    `window` seconds, further attempts are refused without checking the password
    until the oldest failure leaves the window.
    """

    per_name: int = 5
    per_ip: int = 20
    window: float = 900.0
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, list[float]] = field(default_factory=dict)

    def _recent(self, key: str) -> list[float]:
        now = self.clock()
        times = [t for t in self._failures.get(key, []) if now - t < self.window]
        if times:
            self._failures[key] = times
        else:
            self._failures.pop(key, None)
        return times

    def blocked_for(self, name: str, ip: str) -> int:
        """Seconds until a login may be tried again (0: now)."""
        wait = 0.0
        for key, limit in ((f"name:{name.casefold()}", self.per_name), (f"ip:{ip}", self.per_ip)):
            times = self._recent(key)
            if len(times) >= limit:
                wait = max(wait, times[-limit] + self.window - self.clock())
        return int(wait) + 1 if wait > 0 else 0

    def failed(self, name: str, ip: str) -> None:
        now = self.clock()
        for key in (f"name:{name.casefold()}", f"ip:{ip}"):
            self._recent(key)
            self._failures.setdefault(key, []).append(now)
        if len(self._failures) > 10_000:  # bound memory under a spray of names
            oldest = sorted(self._failures, key=lambda k: self._failures[k][-1])
            for key in oldest[: len(oldest) // 2]:
                del self._failures[key]

    def succeeded(self, name: str) -> None:
        self._failures.pop(f"name:{name.casefold()}", None)


def throttle_of(request: Request) -> Throttle:
    extra = _ctx_extra(request)
    throttle = extra.get("login_throttle")
    if not isinstance(throttle, Throttle):
        throttle = Throttle()
        extra["login_throttle"] = throttle
    return throttle


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def authenticate(request: Request, name: str, password: str) -> UserRow:
    """The account for `name` and `password`; raises Throttled or NotLoggedIn."""
    throttle = throttle_of(request)
    ip = client_ip(request)
    wait = throttle.blocked_for(name, ip)
    if wait:
        minutes = max(1, (wait + 59) // 60)
        raise Throttled(f"登录失败次数过多，请约 {minutes} 分钟后再试", wait)
    row: UserRow | None = await request.app.state.ctx.store.get_user(name) if name else None
    usable = row is not None and not row.disabled
    target = row.password_hash if row is not None and usable else _DUMMY_HASH
    # argon2 takes tens of milliseconds of CPU: keep it off the event loop.
    ok = await asyncio.to_thread(verify_password, target, password)
    if row is None or not usable or not ok:
        throttle.failed(name, ip)
        raise NotLoggedIn("账号或密码错误")
    throttle.succeeded(name)
    return row


# --- wiring handlers -------------------------------------------------------------------

Handler = Callable[[Request, Staff], Awaitable[Response]]


def safe_next(value: str | None) -> str:
    """Only local admin paths: never an open redirect."""
    if (
        value
        and value.startswith("/admin")
        and not value.startswith("//")
        and "\\" not in value
        and "\n" not in value
        and "\r" not in value
    ):
        return value
    return "/admin"


def refusal(request: Request, err: AuthError, staff: Staff | None = None) -> Response:
    """The response for a refusal: pages redirect to the login, everything else gets text."""
    if isinstance(err, NotLoggedIn) and request.method in ("GET", "HEAD"):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/admin/login?next={quote(target, safe='/')}", status_code=303)
    headers = {"cache-control": "no-store"}
    if isinstance(err, Throttled):
        headers["retry-after"] = str(err.retry_after)
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse({"error": err.message}, status_code=err.status, headers=headers)
    env = request.app.state.templates
    session = read_session(request)
    html = env.get_template("admin/error.html").render(
        request=request,
        status=err.status,
        message=err.message,
        user=staff if session is not None else None,
        csrf=session.csrf if session is not None else "",
        csrf_field=CSRF_FIELD,
        town_name=lambda slug: _town_name(request, slug),
    )
    return HTMLResponse(html, status_code=err.status, headers=headers)


def _town_name(request: Request, slug: str | None) -> str:
    if slug is None:
        return "全市"
    town = request.app.state.ctx.settings.town(slug)
    return town.name if town is not None else slug


def guard(
    handler: Handler, role: str | Sequence[str] | None = None
) -> Callable[[Request], Awaitable[Response]]:
    """Wrap an admin handler: admin enabled, logged in with `role`, CSRF on writes.

    Handlers still call `require(..., town=...)` for each object they touch.
    """

    async def endpoint(request: Request) -> Response:
        problem = admin_problem(request.app.state.ctx.settings)
        if problem:
            return PlainNoStore(problem, status_code=503)
        staff: Staff | None = None
        try:
            staff = await require(request, role=role)
            if request.method not in ("GET", "HEAD"):
                await check_csrf(request)
            response = await handler(request, staff)
        except AuthError as err:
            response = refusal(request, err, staff)
        response.headers.setdefault("cache-control", "no-store")
        return response

    endpoint.__name__ = getattr(handler, "__name__", "endpoint")
    return endpoint


class PlainNoStore(Response):
    media_type = "text/plain; charset=utf-8"

    def __init__(self, content: str, status_code: int = 200) -> None:
        super().__init__(content, status_code=status_code, headers={"cache-control": "no-store"})
