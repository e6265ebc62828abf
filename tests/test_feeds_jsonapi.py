"""The JSON API adapter against a real HTTP server on a loopback port."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from feeds.adapters import Adapter, FeedError, build_adapter
from feeds.jsonapi import JsonApiAdapter, get_path
from feeds.record import SHANGHAI, Batch, Rejected

TOWNS = {"longshi": "longshi", "龙市镇": "longshi", "石燕桥镇": "shiyanqiao"}
TOKEN = "s3cret-token"
NAME, PHONE = "李秀英", "13588889999"


def case(n: int, **more: Any) -> dict[str, Any]:
    """An item as a county system might send it: nested, its own words."""
    item: dict[str, Any] = {
        "id": n,
        "content": {"text": f"第{n}号诉求：排水沟堵塞"},
        "area": {"town": "龙市镇", "village": "石燕村"},
        "state": "PROCESSING",
        "createTime": "2026-03-05 09:30:00",
        "modifyTime": 1772700000 + n * 60,  # Unix seconds
        "petitioner": {"name": NAME, "mobile": PHONE},
    }
    item.update(more)
    return item


CASES = [case(n) for n in range(1, 8)]

FIELDS = {
    "source_id": "id",
    "summary": "content.text",
    "town": "area.town",
    "village": "area.village",
    "status": "state",
    "received_at": "createTime",
    "updated_at": "modifyTime",
    "requester_name": "petitioner.name",
    "requester_phone": "petitioner.mobile",
}
STATUSES = {"PROCESSING": "in_progress", "DONE": "resolved:resolved", "DELETED": "withdrawn"}


@dataclass
class Api:
    """What the server saw, and what it serves."""

    cases: list[Any] = field(default_factory=lambda: list(CASES))
    requests: list[dict[str, str]] = field(default_factory=list)
    auth: list[str | None] = field(default_factory=list)


def build_app(api: Api) -> Starlette:
    def seen(request: Request) -> dict[str, str]:
        api.requests.append(dict(request.query_params))
        api.auth.append(request.headers.get("authorization"))
        return dict(request.query_params)

    async def paged(request: Request) -> Response:
        q = seen(request)
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return JSONResponse({"code": 401, "msg": "unauthorized"}, status_code=401)
        items = api.cases
        since = q.get("updatedAfter")
        if since:
            limit = datetime.fromisoformat(since).replace(tzinfo=SHANGHAI).timestamp()
            if "+" in since:
                limit = datetime.fromisoformat(since).timestamp()
            items = [c for c in items if c["modifyTime"] >= limit]
        page, size = int(q.get("pageNo", "1")), int(q.get("pageSize", "10"))
        chunk = items[(page - 1) * size : page * size]
        return JSONResponse({"code": 0, "data": {"list": chunk, "total": len(items)}})

    async def cursor(request: Request) -> Response:
        q = seen(request)
        start = int(q.get("after", "0"))
        chunk = api.cases[start : start + 3]
        nxt = str(start + 3) if start + 3 < len(api.cases) else None
        return JSONResponse({"items": chunk, "paging": {"next": nxt}})

    async def bare(request: Request) -> Response:
        seen(request)
        return JSONResponse(api.cases[:2])

    async def html(request: Request) -> Response:
        seen(request)
        return PlainTextResponse("<html>系统维护中</html>", media_type="text/html")

    async def shape(request: Request) -> Response:
        seen(request)
        return JSONResponse({"data": {"list": {"id": 1}}})

    async def failing(request: Request) -> Response:
        seen(request)
        return JSONResponse({"error": "boom"}, status_code=500)

    async def soft_error(request: Request) -> Response:
        seen(request)
        return JSONResponse({"code": 1001, "msg": "token expired", "data": None})

    async def same_page(request: Request) -> Response:
        seen(request)
        return JSONResponse({"list": api.cases[:3]})

    async def loop_cursor(request: Request) -> Response:
        seen(request)
        return JSONResponse({"items": api.cases[:1], "next": "again"})

    async def gbk(request: Request) -> Response:
        seen(request)
        body = json.dumps(api.cases[:1], ensure_ascii=False).encode("gbk")
        return Response(body, media_type="application/json; charset=GBK")

    async def slow(request: Request) -> Response:
        seen(request)
        await asyncio.sleep(1)
        return JSONResponse([])

    return Starlette(
        routes=[
            Route("/paged", paged),
            Route("/cursor", cursor),
            Route("/bare", bare),
            Route("/html", html),
            Route("/shape", shape),
            Route("/failing", failing),
            Route("/soft-error", soft_error),
            Route("/same-page", same_page),
            Route("/loop-cursor", loop_cursor),
            Route("/gbk", gbk),
            Route("/slow", slow),
        ]
    )


@dataclass
class Server:
    url: str
    api: Api


@pytest.fixture(scope="module")
def live() -> Iterator[Server]:
    """One real server for the module, in its own thread and event loop: starting
    and stopping uvicorn per test would cost more than the tests themselves."""
    api = Api()
    config = uvicorn.Config(
        build_app(api),
        host="127.0.0.1",
        port=0,
        log_level="error",
        lifespan="off",
        ws="none",
        timeout_graceful_shutdown=1,
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        assert thread.is_alive(), "the test server did not start"
        time.sleep(0.01)
    port = srv.servers[0].sockets[0].getsockname()[1]
    yield Server(f"http://127.0.0.1:{port}", api)
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def server(live: Server) -> Server:
    live.api.cases = list(CASES)
    live.api.requests.clear()
    live.api.auth.clear()
    return live


def adapter(url: str, **config: Any) -> JsonApiAdapter:
    merged: dict[str, Any] = {"url": url, "fields": FIELDS, "statuses": STATUSES}
    merged.update(config)
    return JsonApiAdapter("county", merged, TOWNS)


async def pull(a: JsonApiAdapter, cursor: str | None = None) -> Batch:
    try:
        return await a.pull(cursor)
    finally:
        await a.aclose()


def paged(url: str, **config: Any) -> JsonApiAdapter:
    settings: dict[str, Any] = {
        "items": "data.list",
        "paging": "page",
        "page_param": "pageNo",
        "size_param": "pageSize",
        "page_size": 3,
        "bearer": TOKEN,
    }
    settings.update(config)
    return adapter(url + "/paged?appKey=k1", **settings)


# ---------------------------------------------------------------- pagination and mapping


async def test_page_pagination_with_short_last_page(server: Server) -> None:
    batch = await pull(paged(server.url))
    assert [r.source_id for r in batch.records] == ["1", "2", "3", "4", "5", "6", "7"]
    assert batch.rejected == []
    assert [q["pageNo"] for q in server.api.requests] == ["1", "2", "3"]
    # The query string in the configured url survives the paging parameters.
    assert {q["appKey"] for q in server.api.requests} == {"k1"}
    assert set(server.api.auth) == {f"Bearer {TOKEN}"}

    first = batch.records[0]
    assert first.summary == "第1号诉求：排水沟堵塞"
    assert (first.town, first.village, first.status) == ("longshi", "石燕村", "in_progress")
    assert first.received_at == datetime(2026, 3, 5, 9, 30, tzinfo=SHANGHAI)
    assert first.requester_name == NAME and first.requester_phone == PHONE
    assert first.updated_at is not None and first.updated_at.timestamp() == 1772700060
    assert batch.cursor == batch.records[-1].updated_at.isoformat()  # type: ignore[union-attr]


async def test_page_pagination_stops_at_total(server: Server) -> None:
    server.api.cases = server.api.cases[:6]
    batch = await pull(paged(server.url, total="data.total"))
    assert len(batch.records) == 6
    # Without `total` a full last page would cost one more (empty) request.
    assert [q["pageNo"] for q in server.api.requests] == ["1", "2"]


async def test_page_pagination_stops_on_empty_page(server: Server) -> None:
    server.api.cases = server.api.cases[:6]
    batch = await pull(paged(server.url))
    assert len(batch.records) == 6
    assert [q["pageNo"] for q in server.api.requests] == ["1", "2", "3"]


async def test_cursor_pagination(server: Server) -> None:
    a = adapter(
        server.url + "/cursor",
        items="items",
        paging="cursor",
        cursor_param="after",
        next_cursor="paging.next",
    )
    batch = await pull(a)
    assert [r.source_id for r in batch.records] == [str(n) for n in range(1, 8)]
    assert [q.get("after") for q in server.api.requests] == [None, "3", "6"]


async def test_updated_since_sends_the_cursor_back(server: Server) -> None:
    a = paged(server.url, updated_since_param="updatedAfter", page_size=10)
    first = await a.pull(None)
    assert len(first.records) == 7
    assert "updatedAfter" not in server.api.requests[0]
    server.api.cases.append(case(8, modifyTime=1772700000 + 8 * 60, state="DONE"))
    second = await a.pull(first.cursor)
    await a.aclose()
    # The newest record of the last pull comes again (>=), then the new one.
    assert [r.source_id for r in second.records] == ["7", "8"]
    assert server.api.requests[-1]["updatedAfter"] == "2026-03-05T16:47:00+08:00"
    assert (second.records[1].status, second.records[1].outcome) == ("resolved", "resolved")
    assert second.cursor is not None and second.cursor > (first.cursor or "")


async def test_since_and_custom_since_format(server: Server) -> None:
    a = paged(
        server.url,
        updated_since_param="updatedAfter",
        updated_since_format="%Y-%m-%d %H:%M:%S",
        since="2026/3/5 16:45",
    )
    batch = await pull(a)
    assert server.api.requests[0]["updatedAfter"] == "2026-03-05 16:45:00"
    assert [r.source_id for r in batch.records] == ["5", "6", "7"]


async def test_unpaged_root_array_and_identity_fields(server: Server) -> None:
    server.api.cases = [
        {
            "source_id": "P-1",
            "summary": "已是 CaseRecord 形状的条目",
            "received_at": "2026-03-05T09:30:00+08:00",
            "town": "longshi",
            "status": "replied",
            "satisfaction": "基本满意",
            "supervised": "是",
            "category": "政策咨询",
        },
        {"source_id": 2, "summary": "数字编号", "received_at": 1772674200000},
    ]
    a = JsonApiAdapter("plain", {"url": server.url + "/bare"}, TOWNS)
    batch = await pull(a)
    assert batch.rejected == []
    one, two = batch.records
    assert (one.status, one.satisfaction, one.supervised, one.kind) == (
        "replied",
        "basically_satisfied",
        True,
        "consult",
    )
    assert two.source_id == "2"
    assert two.received_at.timestamp() == 1772674200  # milliseconds understood


async def test_gbk_declared_json(server: Server) -> None:
    batch = await pull(adapter(server.url + "/gbk"))
    assert [r.summary for r in batch.records] == ["第1号诉求：排水沟堵塞"]


# ---------------------------------------------------------------- bad items


async def test_a_bad_item_is_rejected_and_the_rest_goes_on(server: Server) -> None:
    server.api.cases = [case(1), case(2, content={"text": ""})]  # /bare serves two
    batch = await pull(adapter(server.url + "/bare"))
    assert [r.source_id for r in batch.records] == ["1"]
    assert batch.rejected == [Rejected("2", "诉求内容（content.text）：不能为空")]


async def test_bad_items_in_a_page(server: Server) -> None:
    server.api.cases = [
        case(1),
        case(2, content={"text": ""}),
        case(3, state="UNKNOWN"),
        case(4, area={"town": "胡家镇"}),
        case(5, createTime="上周"),
        "not an object",
        case(7, id=None),
        case(8, state="DELETED"),
        case(9, id="X" * 80),
        case(10, content={"text": "长" * 2001}),
    ]
    batch = await pull(paged(server.url, page_size=20))
    assert [(r.source_id, r.withdrawn) for r in batch.records] == [("1", False), ("8", True)]
    assert batch.rejected == [
        Rejected("2", "诉求内容（content.text）：不能为空"),
        Rejected("3", "办理状态（state）：无法识别的状态"),
        Rejected("4", "所属乡镇（area.town）：未知乡镇"),
        Rejected("5", "受理时间（createTime）：无法识别的日期"),
        Rejected("第6条", "条目不是 JSON 对象"),
        Rejected("第7条", "编号（id）：不能为空"),
        Rejected("第9条", "编号（id）：超过64个字符"),
        Rejected("10", "诉求内容（content.text）：超过2000个字符"),
    ]
    for item in batch.rejected:
        assert NAME not in item.reason and PHONE not in item.reason


# ---------------------------------------------------------------- errors


async def test_missing_bearer_is_a_feed_error(server: Server) -> None:
    with pytest.raises(FeedError, match="401") as err:
        await pull(paged(server.url, bearer=None))
    assert TOKEN not in str(err.value)
    assert "k1" not in str(err.value)  # query strings may carry keys


async def test_header_auth(server: Server) -> None:
    a = paged(server.url, bearer=None, headers={"Authorization": f"Bearer {TOKEN}"})
    assert len((await pull(a)).records) == 7


@pytest.mark.parametrize(
    ("path", "config", "message"),
    [
        ("/html", {}, "不是 JSON"),
        ("/shape", {"items": "data.list"}, "data.list"),
        ("/bare", {"items": "data.list"}, "data.list"),
        ("/failing", {}, "HTTP 500"),
        ("/soft-error", {"success_path": "code", "success_value": 0}, "code"),
        ("/same-page", {"items": "list", "paging": "page", "page_size": 3}, "分页"),
        ("/loop-cursor", {"items": "items", "paging": "cursor", "next_cursor": "next"}, "游标"),
    ],
)
async def test_unreadable_answers_are_feed_errors(
    server: Server, path: str, config: Mapping[str, Any], message: str
) -> None:
    with pytest.raises(FeedError, match=message) as err:
        await pull(adapter(server.url + path, **config))
    assert str(err.value).startswith("county: ")


async def test_max_pages(server: Server) -> None:
    with pytest.raises(FeedError, match="max_pages"):
        await pull(paged(server.url, page_size=1, max_pages=3))
    assert len(server.api.requests) == 3


async def test_timeout_and_unreachable(server: Server) -> None:
    with pytest.raises(FeedError, match="超时"):
        await pull(adapter(server.url + "/slow", timeout=0.1))
    srv_port = server.url.rsplit(":", 1)[1]
    unused = "http://127.0.0.1:1" if srv_port != "1" else "http://127.0.0.1:2"
    with pytest.raises(FeedError, match="无法连接"):
        await pull(adapter(unused + "/x"))


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"url": "ftp://x"}, "url"),
        ({"url": "http://x", "fields": {"phone": "a"}}, "fields.phone"),
        ({"url": "http://x", "paging": "offset"}, "paging"),
        ({"url": "http://x", "paging": "cursor"}, "next_cursor"),
        ({"url": "http://x", "page_size": 0}, "page_size"),
        ({"url": "http://x", "timeout": "slow"}, "timeout"),
        ({"url": "http://x", "statuses": {"A": "closed"}}, "statuses"),
        ({"url": "http://x", "since": "last week"}, "since"),
    ],
)
def test_bad_config_names_the_key(config: Mapping[str, Any], message: str) -> None:
    with pytest.raises(FeedError, match=message):
        JsonApiAdapter("county", config, TOWNS)


def test_get_path() -> None:
    doc = {"a": {"b": [{"c": 1}, {"c": 2}]}, "n": None}
    assert get_path(doc, "a.b.1.c") == 2
    assert get_path(doc, "a.b.-1.c") == 2
    assert get_path(doc, "n") is None
    assert get_path(doc, "") is doc
    missing = get_path(doc, "a.x")
    assert missing is get_path(doc, "a.b.5") is get_path(doc, "a.b.c.d")
    assert missing is not None


def test_built_by_the_factory() -> None:
    adapter: Adapter = build_adapter("county", "jsonapi", {"url": "http://127.0.0.1/x"}, TOWNS)
    assert isinstance(adapter, JsonApiAdapter)
    assert adapter.name == "county"


async def test_default_town_for_items_without_one(server: Server) -> None:
    server.api.cases = [
        {"source_id": "T-1", "summary": "无乡镇字段", "received_at": "2026-03-05"},
        {
            "source_id": "T-2",
            "summary": "有乡镇字段",
            "received_at": "2026-03-05",
            "town": "龙市镇",
        },
    ]
    plain = await pull(JsonApiAdapter("plain", {"url": server.url + "/bare"}, TOWNS))
    assert [r.town for r in plain.records] == [None, "longshi"]
    one_town = JsonApiAdapter("plain", {"url": server.url + "/bare", "town": "石燕桥镇"}, TOWNS)
    assert [r.town for r in (await pull(one_town)).records] == ["shiyanqiao", "longshi"]
    with pytest.raises(FeedError, match="town"):
        JsonApiAdapter("plain", {"url": server.url + "/bare", "town": "胡家镇"}, TOWNS)
