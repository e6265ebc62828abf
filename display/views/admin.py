"""The staff side: notices, supervision, boards, feeds, accounts and the audit log.

Every handler is wrapped by `auth.guard` (admin enabled, logged in, role, CSRF on
writes) and calls `auth.require(..., town=...)` for each object it touches, so
a town editor who crafts a request against another town gets 403. Every change
is written to the audit log with who, what and from where.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from display import auth
from display.auth import Staff, guard, require
from display.context import Context, board_profile, board_token_hash
from display.domain import CLOSED_STAGES, SHANGHAI, STAGES, Notice, PublicCase, now_utc
from display.privacy import highlight_segments, redact
from display.settings import SLUG_RE, Board, Town
from display.web import ctx_of, render

log = logging.getLogger("yizheng.admin")

TITLE_MAX = 60
BODY_MAX = 2000
NOTE_MAX = 500
#: A board that polled or streamed within this long is shown as online.
ONLINE_SECONDS = 120
#: At most this many boards get a live preview in the notice editor.
PREVIEW_BOARDS = 8

REDACTION_LABELS = {
    "name": "姓名",
    "phone": "手机号",
    "landline": "固定电话",
    "id_number": "身份证号",
    "bank_card": "银行卡号",
    "plate": "车牌号",
    "qq": "QQ 号",
    "wechat": "微信号",
    "email": "电子邮箱",
    "address": "详细地址",
    "hint": "个人信息",
}

#: Messages shown after a redirect, by code (never text from the query string).
DONE_MESSAGES = {
    "published": "公示已发布，将在数秒内出现在显示屏上。",
    "scheduled": "公示已保存，将在设定时间发布。",
    "updated": "公示已更新。",
    "withdrawn": "公示已撤回，显示屏将在数秒内移除。",
    "supervised": "已标记督办。",
    "unsupervised": "已取消督办。",
    "synced": "已请求立即同步。",
    "user_added": "账号已创建。",
    "password": "密码已重置，该账号的所有登录会话已失效。",
    "disabled": "账号已停用。",
    "enabled": "账号已启用。",
    "password_changed": "您的密码已修改，请用新密码重新登录。",
}


# --- helpers ---------------------------------------------------------------------


def error_page(request: Request, user: Staff, status: int, message: str) -> Response:
    """The admin's error page: `message` (Chinese, for staff) with HTTP `status`."""
    return page(
        request, "admin/error.html", user, status_code=status, status=status, message=message
    )


def page(
    request: Request, template: str, user: Staff | None, status_code: int = 200, **context: Any
) -> Response:
    """Render an admin page with the session's CSRF token and the user's navigation."""
    session, fresh = auth.ensure_session(request)
    ctx = ctx_of(request)
    done = DONE_MESSAGES.get(request.query_params.get("done", ""))
    response = render(
        request,
        template,
        status_code=status_code,
        user=user,
        csrf=session.csrf,
        csrf_field=auth.CSRF_FIELD,
        done=done,
        towns=ctx.settings.towns,
        town_name=lambda s: town_name(ctx, s),
        **context,
    )
    if fresh:
        auth.set_session(request, response, session)
    response.headers["cache-control"] = "no-store"
    return response


def town_name(ctx: Context, slug: str | None) -> str:
    if slug is None:
        return "全市"
    town = ctx.settings.town(slug)
    return town.name if town else slug


def my_towns(ctx: Context, user: Staff) -> list[Town]:
    return [t for t in ctx.settings.towns if user.can_town(t.slug)]


async def audit(
    request: Request, user: Staff | str, action: str, target: str | None, detail: str | None = None
) -> None:
    actor = user.name if isinstance(user, Staff) else user
    await ctx_of(request).store.audit(actor, action, target, detail, auth.client_ip(request))


def done(path: str, code: str) -> RedirectResponse:
    sep = "&" if "?" in path else "?"
    return RedirectResponse(f"{path}{sep}done={code}", status_code=303)


def field(form: FormData, name: str, limit: int = 10_000) -> str:
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


def local_input(dt: datetime | None) -> str:
    """A datetime as the value of an <input type=datetime-local> (Asia/Shanghai)."""
    return dt.astimezone(SHANGHAI).strftime("%Y-%m-%dT%H:%M") if dt else ""


def parse_local(raw: str) -> datetime | None:
    """Parse a datetime-local value; staff type local time (Asia/Shanghai)."""
    if not raw:
        return None
    try:
        dt = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(raw) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=SHANGHAI)
    return dt


def notice_status(n: Notice, now: datetime) -> tuple[str, str]:
    """(code, label) of a notice's state for lists."""
    if n.withdrawn_at is not None:
        return "withdrawn", "已撤回"
    if n.expires_at is not None and n.expires_at <= now:
        return "expired", "已过期"
    if n.publish_at is not None and n.publish_at > now:
        return "scheduled", "定时发布"
    return "live", "公示中"


# --- login, logout, dashboard ----------------------------------------------------------


async def login(request: Request) -> Response:
    problem = auth.admin_problem(ctx_of(request).settings)
    if problem:
        return auth.PlainNoStore(problem, status_code=503)
    nxt = auth.safe_next(request.query_params.get("next"))
    if request.method == "GET":
        if await auth.current_user(request) is not None:
            return RedirectResponse(nxt, status_code=303)
        return page(request, "admin/login.html", None, next=nxt, name="", error=None)
    form = await request.form()
    nxt = auth.safe_next(field(form, "next", 500))
    name = field(form, "name", 40)
    password_value = form.get("password")
    password = password_value if isinstance(password_value, str) else ""
    try:
        await auth.check_csrf(request)
        row = await auth.authenticate(request, name, password[:1024])
    except auth.Throttled as err:
        await audit(request, "(登录)", "login.throttled", None, None)
        response = page(
            request,
            "admin/login.html",
            None,
            status_code=429,
            next=nxt,
            name=name,
            error=err.message,
        )
        response.headers["retry-after"] = str(err.retry_after)
        return response
    except auth.AuthError as err:
        known = await ctx_of(request).store.get_user(name) if name else None
        # Only a real account name goes into the log: a mistyped password in the name
        # field must not be kept.
        await audit(
            request,
            known.name if known else "(未知账号)",
            "login.failed",
            known.name if known else None,
            None,
        )
        return page(
            request,
            "admin/login.html",
            None,
            status_code=err.status,
            next=nxt,
            name=name,
            error=err.message,
        )
    response = RedirectResponse(nxt, status_code=303)
    old = auth.read_session(request)
    session = auth.new_session(row)  # a new id and CSRF secret: no session fixation
    if old is not None:
        auth.clear_session(request, response)
    auth.set_session(request, response, session)
    await audit(request, row.name, "login", None, auth.ROLE_LABELS.get(row.role, row.role))
    response.headers["cache-control"] = "no-store"
    return response


async def logout(request: Request, user: Staff) -> Response:
    response = RedirectResponse("/admin/login", status_code=303)
    auth.clear_session(request, response)
    await audit(request, user, "logout", None)
    return response


async def dashboard(request: Request, user: Staff) -> Response:
    ctx = ctx_of(request)
    now = now_utc()
    rows = []
    for town in my_towns(ctx, user):
        stats = await ctx.store.stats(town.slug)
        live = [
            n for n in await ctx.store.list_notices(town.slug, live_at=now) if n.town == town.slug
        ]
        rows.append((town, stats, len(live), any(n.urgent for n in live)))
    boards = await board_views(ctx, user)
    feeds = await feed_views(ctx) if user.sees_all else []
    return page(
        request,
        "admin/dashboard.html",
        user,
        rows=rows,
        boards_online=sum(1 for b in boards if b.online),
        boards_total=len(boards),
        feed_problems=[f for f in feeds if f.problem],
    )


# --- notices ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NoticeForm:
    """What the editor posts, as typed (before redaction)."""

    town: str | None = None
    title: str = ""
    body: str = ""
    case_no: str | None = None
    urgent: bool = False
    when: str = "now"  # now | at
    publish_at: str = ""
    expires_at: str = ""


def read_notice_form(form: FormData) -> NoticeForm:
    town = field(form, "town", 40)
    return NoticeForm(
        town=None if town in ("", "all") else town,
        title=field(form, "title", TITLE_MAX * 4),
        body=field(form, "body", BODY_MAX * 2),
        case_no=field(form, "case_no", 80) or None,
        urgent=field(form, "urgent", 10) in ("1", "on", "true"),
        when="at" if field(form, "when", 10) == "at" else "now",
        publish_at=field(form, "publish_at", 40),
        expires_at=field(form, "expires_at", 40),
    )


@dataclass(frozen=True)
class Draft:
    """A checked notice form: the redacted notice, the redaction preview and problems."""

    form: NoticeForm
    notice: Notice
    errors: tuple[str, ...]
    title_segments: list[tuple[str, str | None]]
    body_segments: list[tuple[str, str | None]]
    removed: tuple[str, ...]  # labels of what was removed, one per span


def check_notice(
    ctx: Context,
    user: Staff,
    f: NoticeForm,
    *,
    notice_id: int = 0,
    created_by: str | None = None,
    now: datetime | None = None,
) -> Draft:
    now = now or now_utc()
    errors: list[str] = []
    if f.town is not None and ctx.settings.town(f.town) is None:
        errors.append("请选择有效的镇（街道）")
    elif not user.can_town(f.town):
        errors.append("您只能为本镇（街道）发布公示")
    title = redact(f.title)
    body = redact(f.body)
    if not title.text:
        errors.append("请填写标题")
    elif len(title.text) > TITLE_MAX:
        errors.append(f"标题不能超过 {TITLE_MAX} 个字")
    if not body.text:
        errors.append("请填写正文")
    elif len(body.text) > BODY_MAX:
        errors.append(f"正文不能超过 {BODY_MAX} 个字")
    publish_at: datetime | None = now
    expires_at: datetime | None = None
    try:
        if f.when == "at":
            publish_at = parse_local(f.publish_at)
            if publish_at is None:
                errors.append("请填写发布时间")
        expires_at = parse_local(f.expires_at)
    except ValueError:
        errors.append("时间格式无效")
    if expires_at is not None:
        if expires_at <= now:
            errors.append("到期时间须晚于现在")
        elif publish_at is not None and expires_at <= publish_at:
            errors.append("到期时间须晚于发布时间")
    notice = Notice(
        id=notice_id,
        town=f.town,
        title=title.text[:TITLE_MAX],
        body=body.text[:BODY_MAX],
        case_no=f.case_no,
        urgent=f.urgent,
        publish_at=publish_at,
        expires_at=expires_at,
        created_by=created_by or user.name,
    )
    removed = tuple(REDACTION_LABELS.get(s.kind, s.kind) for s in (*title.spans, *body.spans))
    return Draft(
        f,
        notice,
        tuple(errors),
        highlight_segments(f.title, title),
        highlight_segments(f.body, body),
        removed,
    )


def form_of(n: Notice) -> NoticeForm:
    return NoticeForm(
        town=n.town,
        title=n.title,
        body=n.body,
        case_no=n.case_no,
        urgent=n.urgent,
        when="at" if n.publish_at else "now",
        publish_at=local_input(n.publish_at),
        expires_at=local_input(n.expires_at),
    )


def prefill_from_case(ctx: Context, case: PublicCase) -> NoticeForm:
    """Title and body from the public (already redacted) copy of a resolved case."""
    town = town_name(ctx, case.town)
    what = case.category
    lines = [f"{town}受理的群众诉求（编号 {case.no}）已办结。"]
    if case.summary and not case.sensitive:
        lines.append(f"诉求内容：{case.summary}")
    else:
        lines.append(f"诉求类别：{what or '其他'}")
    if case.department:
        lines.append(f"承办单位：{case.department}")
    if case.outcome_label:
        lines.append(f"办理结果：{case.outcome_label}")
    if case.resolved_at:
        d = case.resolved_at.astimezone(SHANGHAI)
        lines.append(f"办结时间：{d.year}年{d.month}月{d.day}日")
    lines.append("欢迎群众监督。")
    # The category in brackets: "道路交通诉求" reads to the name rules as a person's appeal.
    title = f"【{what}】诉求办结公示" if what else "群众诉求办结公示"
    return NoticeForm(town=case.town, title=title, body="\n".join(lines), case_no=case.no)


@dataclass(frozen=True)
class LedPreview:
    board: Board
    #: (data: URL, caption, shown width in CSS pixels, scrolls: a marquee strip)
    images: tuple[tuple[str, str, int, bool], ...]
    problem: str | None = None


def _data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def preview_boards(ctx: Context, town: str | None) -> list[Board]:
    """The LED boards that would show a notice of `town` (county boards show every town)."""
    return [
        b for b in ctx.all_boards() if b.kind == "led" and (town is None or b.town in (town, None))
    ][:PREVIEW_BOARDS]


async def led_previews(ctx: Context, draft: Notice) -> list[LedPreview]:
    """The real LED frames each board would show with the draft notice on it."""
    try:
        from display.led.content import load_content
        from display.led.encode import to_png
        from display.led.render import render_board
    except ImportError:  # pragma: no cover - the LED package is part of the service
        return []
    now = now_utc()
    out = []
    for board in preview_boards(ctx, draft.town):
        try:
            content = await load_content(ctx, board)
            others = tuple(n for n in content.notices if n.id != draft.id or not draft.id)
            current = content.urgent
            if current is not None and draft.id and current.id == draft.id:
                current = None
            if draft.urgent:
                content = dataclasses.replace(content, urgent=draft, notices=others)
            else:
                content = dataclasses.replace(content, urgent=current, notices=(draft, *others))
            rendered = await asyncio.to_thread(render_board, board, content, now=now)
        except Exception:
            log.exception("notice preview for board %s failed", board.id)
            out.append(LedPreview(board, (), "暂时无法生成该屏预览"))
            continue
        key = re.sub(r"\s+", "", draft.title)[:6]
        first = next(
            (i for i, p in enumerate(rendered.pages) if key and key in re.sub(r"\s+", "", p.text)),
            None,
        )
        if content.urgent is not None and not draft.urgent:
            first = None
        # The notice's first page and the pages after it (its body continues there).
        pages = list(rendered.pages[first : first + 4]) if first is not None else []
        chosen = pages or list(rendered.pages[:2])
        images = []
        scale = max(1, min(4, 640 // board.width))
        for p in chosen:
            if p.marquee is not None:
                # The whole strip the board scrolls through, at the same scale.
                strip = p.marquee.strip
                png = await asyncio.to_thread(to_png, strip)
                caption = f"第 {p.index + 1} 页（滚动显示）"
                images.append((_data_url(png), caption, strip.width * scale, True))
            else:
                png = await asyncio.to_thread(to_png, p.image)
                caption = f"第 {p.index + 1} 页"
                images.append((_data_url(png), caption, board.width * scale, False))
        problem = None
        if not pages:
            problem = (
                "该屏正在显示紧急通知，本公示将在其结束后显示"
                if content.urgent is not None
                else "该屏当前画面中未找到本公示（可能在后续轮播中显示）"
            )
        out.append(LedPreview(board, tuple(images), problem))
    return out


async def preview_context(ctx: Context, draft: Draft) -> dict[str, Any]:
    now = now_utc()
    live = [
        n
        for n in await ctx.store.list_notices(draft.notice.town, live_at=now, limit=9)
        if n.id != draft.notice.id
    ]
    panel = [draft.notice, *live]
    if draft.notice.urgent:
        panel.sort(key=lambda n: not n.urgent)
    return {
        "leds": await led_previews(ctx, draft.notice),
        "kiosk_notices": panel,
        "labels": REDACTION_LABELS,
    }


async def notices(request: Request, user: Staff) -> Response:
    ctx = ctx_of(request)
    now = now_utc()
    scope = request.query_params.get("town") or None
    if scope is not None:
        await require(request, town=scope)
    if scope is not None or user.sees_all:
        found = await ctx.store.list_notices(scope, limit=200)
    else:
        found = []
        for t in my_towns(ctx, user):
            found += await ctx.store.list_notices(t.slug, limit=200)
    seen: set[int] = set()
    rows = []
    for n in found:  # town lists overlap in the county-wide notices
        if n.id not in seen and (user.can_town(n.town) or n.town is None):
            seen.add(n.id)
            rows.append(n)
    rows.sort(key=lambda n: n.created_at or now, reverse=True)
    resolved: list[PublicCase] = []
    for town in my_towns(ctx, user) if scope is None else [ctx.settings.town(scope)]:
        if town is None:
            continue
        for stage in CLOSED_STAGES:
            resolved += await ctx.store.list_cases(town=town.slug, stage=stage, limit=50)
    published = {n.case_no for n in rows if n.case_no and n.withdrawn_at is None}
    resolved.sort(key=lambda c: c.resolved_at or c.updated_at, reverse=True)
    return page(
        request,
        "admin/notices.html",
        user,
        notices=[(n, *notice_status(n, now), user.can_town(n.town)) for n in rows],
        resolved=[c for c in resolved if c.no not in published][:50],
        scope=scope,
    )


async def editor_page(
    request: Request,
    user: Staff,
    draft: Draft,
    notice: Notice | None,
    *,
    show_errors: bool = False,
    status: int = 200,
) -> Response:
    """The notice editor with its redaction and board previews."""
    ctx = ctx_of(request)
    return page(
        request,
        "admin/notice_edit.html",
        user,
        status_code=status,
        draft=draft,
        notice=notice,
        show_errors=show_errors,
        **await preview_context(ctx, draft),
        choices=my_towns(ctx, user),
    )


async def notice_new(request: Request, user: Staff) -> Response:
    ctx = ctx_of(request)
    if request.method == "GET":
        case_no = request.query_params.get("case")
        if case_no:
            case = await ctx.store.get_case(case_no)
            if case is None:
                return error_page(request, user, 404, "未找到该案件")
            await require(request, town=case.town)
            form = prefill_from_case(ctx, case)
        else:
            town = request.query_params.get("town")
            mine = my_towns(ctx, user)
            if town:
                await require(request, town=town)
            form = NoticeForm(town=town or (mine[0].slug if mine else None))
        draft = check_notice(ctx, user, form)
        return await editor_page(request, user, draft, None)
    form = read_notice_form(await request.form())
    await require(request, town=form.town)
    if form.case_no:
        case = await ctx.store.get_case(form.case_no)
        if case is None or case.town != form.town:
            return error_page(request, user, 400, "关联的案件不存在或不属于所选镇（街道）")
    return await _save_or_preview(request, user, form, None)


async def notice_edit(request: Request, user: Staff) -> Response:
    ctx = ctx_of(request)
    notice = await _notice_of(request)
    if request.method == "GET":
        draft = check_notice(
            ctx, user, form_of(notice), notice_id=notice.id, created_by=notice.created_by
        )
        return await editor_page(request, user, draft, notice)
    if notice.withdrawn_at is not None:
        return error_page(request, user, 409, "已撤回的公示不能再修改，请新建一条")
    form = read_notice_form(await request.form())
    await require(request, town=form.town)
    return await _save_or_preview(request, user, form, notice)


async def _notice_of(request: Request) -> Notice:
    raw = request.path_params["id"]
    notice = await ctx_of(request).store.get_notice(int(raw))
    if notice is None:
        raise NotFound("未找到该公示")
    await require(request, town=notice.town)
    return notice


async def _save_or_preview(
    request: Request, user: Staff, form: NoticeForm, old: Notice | None
) -> Response:
    ctx = ctx_of(request)
    data = await request.form()
    action = field(data, "action", 20)
    draft = check_notice(
        ctx, user, form, notice_id=old.id if old else 0, created_by=old.created_by if old else None
    )
    if action != "publish" or draft.errors:
        status = 400 if action == "publish" else 200
        return await editor_page(request, user, draft, old, show_errors=True, status=status)
    saved = await ctx.store.save_notice(draft.notice)
    detail = f"{town_name(ctx, saved.town)}｜{saved.title}"
    if saved.urgent:
        detail += "｜紧急"
    if draft.removed:
        kinds = "、".join(sorted(set(draft.removed)))
        detail += f"｜已去除个人信息 {len(draft.removed)} 处（{kinds}）"
    await audit(
        request, user, "notice.update" if old else "notice.create", f"notice:{saved.id}", detail
    )
    if old:
        code = "updated"
    else:
        code = "scheduled" if saved.publish_at and saved.publish_at > now_utc() else "published"
    return done("/admin/notices", code)


async def notice_preview(request: Request, user: Staff) -> Response:
    """The preview fragment the editor's script asks for while staff type."""
    ctx = ctx_of(request)
    data = await request.form()
    form = read_notice_form(data)
    await require(request, town=form.town)
    raw_id = field(data, "notice_id", 12)
    old = None
    if raw_id.isdigit() and int(raw_id):
        old = await ctx.store.get_notice(int(raw_id))
        if old is not None:
            await require(request, town=old.town)
    draft = check_notice(
        ctx, user, form, notice_id=old.id if old else 0, created_by=old.created_by if old else None
    )
    return page(
        request,
        "admin/_preview.html",
        user,
        draft=draft,
        show_errors=True,
        **await preview_context(ctx, draft),
    )


async def notice_withdraw(request: Request, user: Staff) -> Response:
    ctx = ctx_of(request)
    notice = await _notice_of(request)
    if notice.withdrawn_at is None:
        n = await ctx.store.withdraw_notice(notice.id, now_utc())
        if n is not None:
            await audit(
                request,
                user,
                "notice.withdraw",
                f"notice:{notice.id}",
                f"{town_name(ctx, notice.town)}｜{notice.title}",
            )
    return done("/admin/notices", "withdrawn")


# --- cases and supervision ---------------------------------------------------------------


async def cases(request: Request, user: Staff) -> Response:
    ctx = ctx_of(request)
    town = request.query_params.get("town") or None
    stage = request.query_params.get("stage") or None
    if stage not in (None, "open", *STAGES):
        stage = None
    if town is not None:
        await require(request, town=town)
        towns: list[str | None] = [town]
    else:
        towns = [t.slug for t in my_towns(ctx, user)] if not user.sees_all else [None]
    rows: list[PublicCase] = []
    for t in towns:
        rows += await ctx.store.list_cases(
            town=t, stage=None if stage == "open" else stage, open_only=stage == "open", limit=200
        )
    supervised_only = request.query_params.get("supervised") == "1"
    if supervised_only:
        rows = [c for c in rows if c.supervised]
    return page(
        request,
        "admin/cases.html",
        user,
        cases=rows,
        scope=town,
        stage=stage,
        stages=STAGES,
        supervised_only=supervised_only,
        days_left={c.no: ctx.days_left(c) for c in rows},
    )


async def case_detail(request: Request, user: Staff) -> Response:
    ctx = ctx_of(request)
    no = request.path_params["no"]
    case = await ctx.store.get_case(no)
    if case is None:
        raise NotFound("未找到该案件")
    await require(request, town=case.town)
    if request.method == "POST":
        await require(request, role="county")
        data = await request.form()
        action = field(data, "action", 20)
        note = redact(field(data, "note", NOTE_MAX * 2)).text[:NOTE_MAX] or None
        supervised = action == "supervise"
        if action not in ("supervise", "unsupervise"):
            return error_page(request, user, 400, "未知操作")
        await ctx.store.set_supervised(no, supervised, note if supervised else None)
        await audit(
            request,
            user,
            "case.supervise" if supervised else "case.unsupervise",
            f"case:{no}",
            note,
        )
        return done(f"/admin/cases/{quote(no)}", "supervised" if supervised else "unsupervised")
    timeline = await ctx.store.timeline(no)
    linked = [n for n in await ctx.store.list_notices(case.town, limit=200) if n.case_no == no]
    return page(
        request,
        "admin/case.html",
        user,
        case=case,
        timeline=timeline,
        days_left=ctx.days_left(case),
        linked=linked,
        note_max=NOTE_MAX,
    )


# --- boards ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BoardView:
    board: Board
    source: str  # config | registered
    last_seen: datetime | None
    online: bool


async def board_views(ctx: Context, user: Staff) -> list[BoardView]:
    rows = {r.id: r for r in await ctx.store.boards()}
    now = now_utc()
    out = []
    for board in ctx.all_boards():
        if not user.can_town(board.town):
            continue
        row = rows.get(board.id)
        seen = ctx.last_seen.get(board.id) or (row.last_seen_at if row else None)
        online = seen is not None and now - seen < timedelta(seconds=ONLINE_SECONDS)
        source = "registered" if board.id in ctx.registered_boards else "config"
        out.append(BoardView(board, source, seen, online))
    return out


BOARD_DEFAULTS: dict[str, str] = {
    "kind": "led",
    "width": "128",
    "height": "32",
    "color": "mono",
    "font_size": "16",
    "name": "",
    "title": "",
    "town": "",
    "id": "",
}


def check_board(ctx: Context, form: dict[str, str]) -> tuple[Board | None, list[str]]:
    errors = []
    bid = form["id"]
    if not SLUG_RE.match(bid):
        errors.append("编号须为小写字母、数字、- 或 _（最多 40 个字符）")
    elif ctx.board(bid) is not None:
        errors.append("该编号已被使用")
    town = form["town"] or None
    if town is not None and ctx.settings.town(town) is None:
        errors.append("请选择有效的镇（街道）")
    kind = form["kind"]
    if kind not in ("led", "kiosk"):
        errors.append("类型须为 LED 屏或触摸屏")
    color = form["color"]
    if color not in ("mono", "dual", "rgb"):
        errors.append("颜色须为单色、双色或全彩")

    def number(key: str, label: str, lo: int, hi: int) -> int:
        raw = form[key]
        if not raw.isdigit() or not lo <= int(raw) <= hi:
            errors.append(f"{label}须为 {lo}–{hi} 的整数")
            return lo
        return int(raw)

    width = number("width", "宽度", 16, 4096)
    height = number("height", "高度", 16, 4096)
    font_size = number("font_size", "字号", 12, 16)
    if font_size not in (12, 16):
        errors.append("字号须为 12 或 16")
    if len(form["name"]) > 40 or len(form["title"]) > 40:
        errors.append("名称和标题不能超过 40 个字")
    if errors:
        return None, errors
    return Board(
        id=bid,
        town=town,
        kind=kind,
        name=form["name"],
        width=width,
        height=height,
        color=color,
        font_size=font_size,
        title=form["title"],
    ), []


def token_page(request: Request, user: Staff, board: Board, token: str) -> Response:
    base = str(request.base_url).rstrip("/")
    url = f"{base}/led/{board.id}" if board.kind == "led" else f"{base}/kiosk/{board.town or ''}"
    return page(request, "admin/board_token.html", user, board=board, token=token, url=url)


async def boards(request: Request, user: Staff) -> Response:
    ctx = ctx_of(request)
    form = dict(BOARD_DEFAULTS)
    errors: list[str] = []
    if request.method == "POST":
        await require(request, role="admin")
        data = await request.form()
        form = {k: field(data, k, 80) for k in BOARD_DEFAULTS}
        board, errors = check_board(ctx, form)
        if board is not None:
            token = secrets.token_urlsafe(24)
            profile = {**board_profile(board), "registered": True}
            await ctx.store.upsert_board(board.id, board.town, profile, board_token_hash(token))
            ctx.board_tokens[board.id] = board_token_hash(token)
            ctx.registered_boards[board.id] = board
            frames = ctx.frames
            add = getattr(frames, "add_board", None)
            if callable(add):
                add(board)
            await audit(
                request,
                user,
                "board.register",
                f"board:{board.id}",
                f"{town_name(ctx, board.town)}｜{board.kind} {board.width}×{board.height}"
                f" {board.color}",
            )
            return token_page(request, user, board, token)
    views = await board_views(ctx, user)
    return page(
        request,
        "admin/boards.html",
        user,
        status_code=400 if errors else 200,
        boards=views,
        form=form,
        errors=errors,
        choices=my_towns(ctx, user),
    )


async def _board_of(request: Request) -> Board:
    ctx = ctx_of(request)
    board = ctx.board(request.path_params["id"])
    if board is None:
        raise NotFound("未找到该显示屏")
    await require(request, town=board.town)
    return board


async def board_detail(request: Request, user: Staff) -> Response:
    ctx = ctx_of(request)
    board = await _board_of(request)
    view = next((v for v in await board_views(ctx, user) if v.board.id == board.id), None)
    return page(
        request, "admin/board.html", user, view=view, board=board, profile=board_profile(board)
    )


async def board_token(request: Request, user: Staff) -> Response:
    ctx = ctx_of(request)
    board = await _board_of(request)
    await require(request, role="admin")
    token = secrets.token_urlsafe(24)
    await ctx.store.upsert_board(
        board.id,
        board.town,
        {**board_profile(board), "registered": board.id in ctx.registered_boards},
        board_token_hash(token),
    )
    ctx.board_tokens[board.id] = board_token_hash(token)
    await audit(request, user, "board.token", f"board:{board.id}", "重新生成令牌")
    return token_page(request, user, board, token)


async def board_frame(request: Request, user: Staff) -> Response:
    """The board's current frame as staff see it (also for boards the LED cache lacks)."""
    ctx = ctx_of(request)
    board = await _board_of(request)
    if board.kind != "led":
        raise NotFound("触摸屏没有 LED 画面")
    from display.led.content import load_content
    from display.led.encode import to_png
    from display.led.render import page_at, render_board

    frames = ctx.frames
    if frames is not None and frames.board(board.id) is not None:
        rendered = await frames.get(board.id)
        current = page_at(rendered, now_utc())
        png = frames.encoded(board.id, current.index, "png")
    else:
        content = await load_content(ctx, board)
        rendered = await asyncio.to_thread(render_board, board, content, now=now_utc())
        png = await asyncio.to_thread(to_png, page_at(rendered, now_utc()).image)
    return Response(png, media_type="image/png", headers={"cache-control": "no-store"})


# --- feeds -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedView:
    name: str
    kind: str
    interval: float
    staleness: float
    last_success: datetime | None
    last_attempt: datetime | None
    lag_seconds: int | None
    last_error: str | None
    failures: int
    counts: dict[str, int]
    quarantined: int
    runs_here: bool
    problem: bool


async def feed_views(ctx: Context) -> list[FeedView]:
    states = {s.name: s for s in await ctx.store.feed_states()}
    now = now_utc()
    out = []
    for feed in ctx.settings.feeds:
        st = states.get(feed.name)
        runner = ctx.runners.get(feed.name)
        rstate = getattr(runner, "state", None)
        last = st.last_success_at if st else None
        if rstate is not None and getattr(rstate, "last_success", None) is not None:
            last = max(last, rstate.last_success) if last else rstate.last_success
        lag = int((now - last).total_seconds()) if last else None
        error = st.last_error if st else None
        failures = st.consecutive_failures if st else 0
        stale = feed.kind != "webhook" and (lag is None or lag > feed.staleness)
        out.append(
            FeedView(
                name=feed.name,
                kind=feed.kind,
                interval=feed.interval,
                staleness=feed.staleness,
                last_success=last,
                last_attempt=st.last_attempt_at if st else None,
                lag_seconds=lag,
                last_error=error,
                failures=failures,
                counts=dict(st.counts) if st else {},
                quarantined=st.quarantined if st else 0,
                runs_here=runner is not None,
                problem=stale or failures > 0,
            )
        )
    return out


def lag_text(seconds: int | None) -> str:
    if seconds is None:
        return "从未成功"
    if seconds < 60:
        return f"{seconds} 秒"
    if seconds < 3600:
        return f"{seconds // 60} 分钟"
    if seconds < 86400:
        return f"{seconds // 3600} 小时 {seconds % 3600 // 60} 分钟"
    return f"{seconds // 86400} 天"


async def feeds(request: Request, user: Staff) -> Response:
    ctx = ctx_of(request)
    views = await feed_views(ctx)
    quarantine = {v.name: await ctx.store.quarantine(v.name, 20) for v in views}
    return page(
        request, "admin/feeds.html", user, feeds=views, quarantine=quarantine, lag_text=lag_text
    )


async def feed_sync(request: Request, user: Staff) -> Response:
    ctx = ctx_of(request)
    name = request.path_params["name"]
    if ctx.settings.feed(name) is None:
        raise NotFound("未找到该数据源")
    runner = ctx.runners.get(name)
    if runner is None:
        return error_page(
            request,
            user,
            409,
            "该数据源不在本进程中运行（推送型数据源或由其他进程负责），无法立即同步",
        )
    runner.sync_now()
    await audit(request, user, "feed.sync", f"feed:{name}")
    return done("/admin/feeds", "synced")


# --- audit log -----------------------------------------------------------------------------


async def audit_page(request: Request, user: Staff) -> Response:
    rows = await ctx_of(request).store.audit_log(500)
    return page(request, "admin/audit.html", user, rows=rows)


# --- users ---------------------------------------------------------------------------------


async def users(request: Request, user: Staff) -> Response:
    ctx = ctx_of(request)
    errors: list[str] = []
    form = {"name": "", "role": "town", "towns": ""}
    status = 200
    if request.method == "POST":
        data = await request.form()
        name = field(data, "name", 40)
        role = field(data, "role", 10)
        towns = [t for t in data.getlist("towns") if isinstance(t, str) and t]
        password_value = data.get("password")
        password = password_value if isinstance(password_value, str) else ""
        form = {"name": name, "role": role, "towns": ",".join(towns)}
        problem = auth.validate_new_user(ctx.settings, name, role, towns, password)
        if problem is None and await ctx.store.get_user(name) is not None:
            problem = "该账号已存在；如需重置密码，请使用列表中的“重置密码”"
        if problem is None and role != "town":
            towns = []
        if problem:
            errors.append(problem)
            status = 400
        else:
            hashed = await asyncio.to_thread(auth.hash_password, password)
            await ctx.store.add_user(name, role, towns, hashed)
            await audit(
                request,
                user,
                "user.add",
                f"user:{name}",
                f"{auth.ROLE_LABELS[role]}" + (f"｜{','.join(towns)}" if towns else ""),
            )
            return done("/admin/users", "user_added")
    rows = await ctx.store.list_users()
    return page(
        request,
        "admin/users.html",
        user,
        status_code=status,
        rows=rows,
        errors=errors,
        form=form,
        roles=auth.ROLE_LABELS,
        min_password=auth.MIN_PASSWORD,
    )


async def user_action(request: Request, user: Staff) -> Response:
    ctx = ctx_of(request)
    name = request.path_params["name"]
    action = request.path_params["action"]
    row = await ctx.store.get_user(name)
    if row is None:
        raise NotFound("未找到该账号")
    if action == "password":
        data = await request.form()
        value = data.get("password")
        password = value if isinstance(value, str) else ""
        problem = auth.validate_password(password)
        if problem:
            return error_page(request, user, 400, problem)
        hashed = await asyncio.to_thread(auth.hash_password, password)
        await ctx.store.set_password(name, hashed)
        await audit(request, user, "user.password", f"user:{name}")
        return done("/admin/users", "password")
    if action in ("disable", "enable"):
        if name == user.name:
            return error_page(request, user, 400, "不能停用自己的账号")
        disable = action == "disable"
        await ctx.store.set_disabled(row.name, disable)
        await audit(request, user, f"user.{action}", f"user:{name}")
        return done("/admin/users", "disabled" if disable else "enabled")
    raise NotFound("未知操作")


async def account(request: Request, user: Staff) -> Response:
    """Change one's own password (the old one is asked for again)."""
    ctx = ctx_of(request)
    error = None
    if request.method == "POST":
        data = await request.form()
        old_v, new_v = data.get("old_password"), data.get("new_password")
        old = old_v if isinstance(old_v, str) else ""
        new = new_v if isinstance(new_v, str) else ""
        try:
            await auth.authenticate(request, user.name, old[:1024])
        except auth.AuthError as err:
            error = "原密码错误" if not isinstance(err, auth.Throttled) else err.message
        else:
            error = auth.validate_password(new)
            if error is None:
                hashed = await asyncio.to_thread(auth.hash_password, new)
                await ctx.store.set_password(user.name, hashed)
                await audit(request, user, "user.password", f"user:{user.name}", "本人修改")
                response = done("/admin/login", "password_changed")
                auth.clear_session(request, response)
                return response
    return page(
        request,
        "admin/account.html",
        user,
        status_code=400 if error else 200,
        error=error,
        min_password=auth.MIN_PASSWORD,
    )


# --- wiring ----------------------------------------------------------------------------------


class NotFound(auth.AuthError):
    status = 404


def routes() -> list[BaseRoute]:
    def r(
        path: str, handler: auth.Handler, role: str | None = None, methods: Sequence[str] = ("GET",)
    ) -> Route:
        return Route(path, guard(handler, role), methods=list(methods))

    return [
        Route("/admin/login", login, methods=["GET", "POST"]),
        r("/admin/logout", logout, methods=["POST"]),
        r("/admin", dashboard),
        r("/admin/account", account, methods=["GET", "POST"]),
        r("/admin/notices", notices),
        r("/admin/notices/new", notice_new, methods=["GET", "POST"]),
        r("/admin/notices/preview", notice_preview, methods=["POST"]),
        r("/admin/notices/{id:int}", notice_edit, methods=["GET", "POST"]),
        r("/admin/notices/{id:int}/withdraw", notice_withdraw, methods=["POST"]),
        r("/admin/cases", cases),
        r("/admin/cases/{no:path}", case_detail, methods=["GET", "POST"]),
        r("/admin/boards", boards, methods=["GET", "POST"]),
        r("/admin/boards/{id}", board_detail),
        r("/admin/boards/{id}/frame.png", board_frame),
        r("/admin/boards/{id}/token", board_token, role="admin", methods=["POST"]),
        r("/admin/feeds", feeds),
        r("/admin/feeds/{name}/sync", feed_sync, role="admin", methods=["POST"]),
        r("/admin/audit", audit_page, role="admin"),
        r("/admin/users", users, role="admin", methods=["GET", "POST"]),
        r("/admin/users/{name}/{action}", user_action, role="admin", methods=["POST"]),
    ]
