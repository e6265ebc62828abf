"""The Open311 adapter against real servers on loopback ports: the simulator, and a
canned server for answers the simulator never gives (odd statuses, broken items)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from feeds import httpclient
from feeds.adapters import FeedError, build_adapter
from feeds.open311 import Open311Adapter, parse_xml
from feeds.record import Batch, CaseRecord
from feeds.simulator import RunningServer, Simulator, serve_app, serve_simulator
from tests.conftest import TOWN_LOOKUP

TOWNS = TOWN_LOOKUP


def adapter(url: str, **options: Any) -> Open311Adapter:
    built = build_adapter("hotline", "open311", {"url": url, **options}, TOWNS)
    assert isinstance(built, Open311Adapter)
    return built


async def pull(url: str, cursor: str | None = None, **options: Any) -> tuple[Batch, int]:
    a = adapter(url, **options)
    try:
        batch = await a.pull(cursor)
    finally:
        await a.aclose()
    return batch, a.requests_made


def by_id(batch: Batch) -> dict[str, CaseRecord]:
    return {r.source_id: r for r in batch.records}


@pytest.fixture
async def sim_server() -> AsyncIterator[tuple[Simulator, RunningServer]]:
    sim = Simulator(seed=11, initial_cases=40)
    async with serve_simulator(sim) as server:
        yield sim, server


@dataclass
class Canned:
    """A server that answers whatever the test puts here, and records the queries."""

    body: bytes = b"[]"
    status: int = 200
    content_type: str = "application/json"
    ignore_paging: bool = True
    queries: list[dict[str, str]] = field(default_factory=list)

    def items(self, items: list[Any]) -> None:
        self.body = json.dumps(items, ensure_ascii=False).encode()

    async def endpoint(self, request: Request) -> Response:
        self.queries.append(dict(request.query_params))
        return Response(self.body, self.status, media_type=self.content_type)


@pytest.fixture
async def canned() -> AsyncIterator[tuple[Canned, str]]:
    state = Canned()
    app = Starlette(routes=[Route("/open311/v2/{res}", state.endpoint)])
    async with serve_app(app) as server:
        yield state, server.open311_url


def item(sid: str | None = "LS2026-0100", **over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "service_request_id": sid,
        "status": "open",
        "service_name": "道路交通",
        "description": "银杏村3组路灯损坏",
        "agency_responsible": "镇规划建设办",
        "requested_datetime": "2026-03-05T09:00:00+08:00",
        "updated_datetime": "2026-03-06T09:00:00+08:00",
        "address": "四川省隆昌市龙市镇银杏村3组",
    }
    base.update(over)
    return base


# -- the simulator -------------------------------------------------------------


async def test_pulls_every_case_with_fields_mapped(
    sim_server: tuple[Simulator, RunningServer],
) -> None:
    sim, server = sim_server
    batch, _ = await pull(server.open311_url)
    assert batch.rejected == []
    records = by_id(batch)
    assert set(records) == set(sim.cases)
    for case in sim.cases.values():
        rec = records[case.id]
        assert rec.town == case.town
        assert rec.village == case.village
        assert rec.category == case.category
        assert rec.department == case.department
        assert rec.channel == case.channel
        assert rec.kind == case.kind
        assert rec.summary == case.summary
        assert rec.status == case.stage
        assert rec.outcome == case.outcome
        assert rec.supervised == case.supervised
        assert rec.satisfaction == case.satisfaction
        assert rec.received_at == case.received
        assert rec.updated_at == case.updated
        # Chinese order: family name first.
        assert rec.requester_name == case.last_name + case.first_name
        assert rec.requester_phone == case.phone
        assert [n.text for n in rec.notes] == [u.text for u in case.updates]
    assert batch.cursor is not None
    assert datetime.fromisoformat(batch.cursor) == max(c.updated for c in sim.cases.values())


async def test_xml_gives_the_same_records_as_json(
    sim_server: tuple[Simulator, RunningServer],
) -> None:
    _, server = sim_server
    as_json, _ = await pull(server.open311_url)
    as_xml, _ = await pull(server.open311_url, format="xml")
    assert as_xml.rejected == []
    assert by_id(as_xml) == by_id(as_json)


async def test_paging(sim_server: tuple[Simulator, RunningServer]) -> None:
    sim, server = sim_server
    batch, requests = await pull(server.open311_url, page_size=7)
    assert set(by_id(batch)) == set(sim.cases)
    # Windows are halved until each fits one page of 7: at least 40 / 7 requests.
    assert requests >= 6


async def test_cases_changing_while_a_window_is_read_are_not_lost() -> None:
    """Paging through a changing window skips cases; the adapter must not lose them."""
    sim = Simulator(seed=5, initial_cases=40)
    # The ten oldest cases change, one before each answer; the other thirty never
    # change again, so one skipped is lost for good.
    untouched = sorted(sim.cases.values(), key=lambda c: (c.updated, c.id))[:10]
    stages = ("registered", "assigned", "in_progress", "resolved", "replied", "verified")

    async def churning(scope: Any, receive: Any, send: Any) -> None:
        # Before each answer, one of the oldest cases changes and so leaves every
        # window that ends in the past, shifting the cases after it up a place.
        if scope["type"] == "http" and scope["path"].endswith("/requests.json") and untouched:
            case = untouched.pop(0)
            following = stages[(stages.index(case.stage) + 1) % len(stages)]
            sim.set_stage(case.id, following)
        await sim.app(scope, receive, send)

    async with serve_app(churning) as server:
        a = adapter(server.open311_url, page_size=5, overlap=0)
        try:
            latest: dict[str, CaseRecord] = {}
            cursor = None
            for _ in range(10):
                batch = await a.pull(cursor)
                fresh = [r for r in batch.records if latest.get(r.source_id) != r]
                latest.update((r.source_id, r) for r in fresh)
                cursor = batch.cursor
                if not fresh:
                    break
        finally:
            await a.aclose()
    assert {k: r.updated_at for k, r in latest.items()} == {
        c.id: c.updated for c in sim.cases.values()
    }


async def test_a_server_that_ignores_paging_is_read_once(
    canned: tuple[Canned, str],
) -> None:
    state, url = canned
    state.items([item(f"LS2026-{i:04d}") for i in range(1, 6)])
    batch, requests = await pull(url, page_size=3)
    assert sorted(by_id(batch)) == [f"LS2026-{i:04d}" for i in range(1, 6)]
    assert requests == 1


async def test_a_server_capping_page_size_lower_is_still_read_to_the_end(
    sim_server: tuple[Simulator, RunningServer],
) -> None:
    sim, server = sim_server
    sim.max_results = 15  # page_size=100 is silently cut to 15
    batch, _ = await pull(server.open311_url, page_size=100)
    assert len(batch.records) == 40


async def test_windows_are_sliced_below_the_servers_cap(
    sim_server: tuple[Simulator, RunningServer],
) -> None:
    sim, server = sim_server
    sim.max_results = 10
    # Without paging, one query only ever sees 10 records...
    truncated, _ = await pull(server.open311_url, page_size=0, max_results=1000)
    assert len(truncated.records) == 10
    # ...so a window that reaches the cap is halved until each half fits.
    batch, requests = await pull(server.open311_url, page_size=0, max_results=10)
    assert set(by_id(batch)) == set(sim.cases)
    assert requests > 4


async def test_windows_never_exceed_90_days(
    sim_server: tuple[Simulator, RunningServer],
) -> None:
    _, server = sim_server
    since = (datetime.now(UTC) - timedelta(days=250)).date().isoformat()
    # The simulator answers 400 to a longer range, which would be a FeedError.
    batch, requests = await pull(server.open311_url, since=since, page_size=0)
    assert len(batch.records) == 40
    assert requests == 3


async def test_cursor_reads_only_what_changed_with_overlap(
    sim_server: tuple[Simulator, RunningServer],
) -> None:
    sim, server = sim_server
    a = adapter(server.open311_url, overlap=120)
    try:
        first = await a.pull(None)
        assert len(first.records) == 40
        # Only the cases changed within the overlap before the cursor come back.
        assert first.cursor is not None
        latest = datetime.fromisoformat(first.cursor)
        recent = {c.id for c in sim.cases.values() if c.updated >= latest - timedelta(seconds=120)}
        again = await a.pull(first.cursor)
        assert set(by_id(again)) == recent
        assert 1 <= len(recent) < 40
        assert again.cursor == first.cursor

        case_id = sorted(sim.cases)[0]
        sim.set_stage(case_id, "resolved", "explained")
        changed = await a.pull(again.cursor)
        assert set(by_id(changed)) == recent | {case_id}
        assert (by_id(changed)[case_id].status, by_id(changed)[case_id].outcome) == (
            "resolved",
            "explained",
        )
        assert changed.cursor is not None and again.cursor is not None
        assert changed.cursor > again.cursor

        # The overlap re-reads the latest change: harmless, ingest upserts.
        overlap = await a.pull(changed.cursor)
        assert case_id in by_id(overlap)
    finally:
        await a.aclose()


async def test_withdrawn_case(sim_server: tuple[Simulator, RunningServer]) -> None:
    sim, server = sim_server
    case_id = sorted(sim.cases)[1]
    sim.withdraw(case_id, "duplicate")
    batch, _ = await pull(server.open311_url)
    assert by_id(batch)[case_id].withdrawn
    assert sum(r.withdrawn for r in batch.records) == 1


async def test_fixmystreet_updates_become_notes(
    sim_server: tuple[Simulator, RunningServer],
) -> None:
    sim, server = sim_server
    batch, _ = await pull(server.open311_url, extensions=False, updates=True)
    records = by_id(batch)
    with_updates = [c for c in sim.cases.values() if c.updates]
    assert with_updates
    for case in with_updates:
        notes = records[case.id].notes
        assert [n.text for n in notes][-len(case.updates) :] == [u.text for u in case.updates]
        assert all(n.stage is not None for n in notes if n.text != case.updates[-1].text)


async def test_error_body_becomes_a_clear_feed_error(
    sim_server: tuple[Simulator, RunningServer],
) -> None:
    sim, server = sim_server
    sim.api_key = "the-right-key"
    for fmt in ("json", "xml"):
        with pytest.raises(FeedError) as info:
            await pull(server.open311_url, api_key="secret-wrong-key", format=fmt)
        message = str(info.value)
        assert "HTTP 403" in message and "Invalid api_key" in message
        assert "secret-wrong-key" not in message
        assert str(server.port) in message
    batch, _ = await pull(server.open311_url, api_key="the-right-key")
    assert len(batch.records) == 40


async def test_jurisdiction_is_sent(sim_server: tuple[Simulator, RunningServer]) -> None:
    sim, server = sim_server
    sim.jurisdiction_id = "longchang"
    with pytest.raises(FeedError, match="jurisdiction"):
        await pull(server.open311_url, jurisdiction_id="neijiang")
    batch, _ = await pull(server.open311_url, jurisdiction_id="longchang")
    assert len(batch.records) == 40


async def test_slow_server_times_out(sim_server: tuple[Simulator, RunningServer]) -> None:
    sim, server = sim_server
    sim.delay = 0.5
    with pytest.raises(FeedError, match="超时"):
        await pull(server.open311_url, timeout=0.05)


async def test_unreachable_server() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(FeedError, match="无法连接"):
        await pull(f"http://127.0.0.1:{port}/open311/v2")


async def test_broken_answers(canned: tuple[Canned, str]) -> None:
    state, url = canned
    state.body, state.status, state.content_type = b"<html>Bad gateway</html>", 502, "text/html"
    with pytest.raises(FeedError, match=r"HTTP 502$"):
        await pull(url)
    state.status = 200
    with pytest.raises(FeedError, match="不是有效的 JSON"):
        await pull(url)
    state.body = b'{"unexpected": true}'
    with pytest.raises(FeedError, match="不是服务请求列表"):
        await pull(url)
    state.body = b'[{"code": 500, "description": "database offline"}]'
    with pytest.raises(FeedError, match="500 database offline"):
        await pull(url)
    state.body = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]>'
        b"<service_requests><request>&a;</request></service_requests>"
    )
    with pytest.raises(FeedError, match="不是有效的 XML"):
        await pull(url, format="xml")


async def test_malformed_items_are_rejected_and_the_rest_goes_on(
    canned: tuple[Canned, str],
) -> None:
    state, url = canned
    state.items(
        [
            item("LS2026-0001"),
            item("LS2026-0002", requested_datetime="next tuesday"),
            item(None),
            "not an object",
            item("LS2026-0003", status="lost_in_the_post"),
            item("LS2026-0004", address="四川省成都市锦江区某街道"),
            item("LS2026-0005", extended_attributes={"supervised": "maybe"}),
            item("LS2026-0006", first_name="小红", last_name="何", phone="13812345678"),
        ]
    )
    batch, _ = await pull(url)
    assert sorted(by_id(batch)) == ["LS2026-0001", "LS2026-0006"]
    reasons = {r.source_id: r.reason for r in batch.rejected}
    assert reasons == {
        "LS2026-0002": "受理时间（received_at）：无法识别的日期（应为 ISO 8601）",
        None: reasons[None],
        "LS2026-0003": "办理状态（status）：无法识别的状态 'lost_in_the_post'",
        "LS2026-0004": "所属乡镇（town）：地址中没有已配置的乡镇",
        "LS2026-0005": "是否督办（supervised）：应为 true 或 false",
    }
    assert len(batch.rejected) == 6
    rejected_text = repr(batch.rejected)
    assert "成都" not in rejected_text and "next tuesday" not in rejected_text
    rec = by_id(batch)["LS2026-0006"]
    assert (rec.requester_name, rec.requester_phone) == ("何小红", "13812345678")


async def test_status_mapping_defaults_and_overrides(canned: tuple[Canned, str]) -> None:
    state, url = canned
    statuses = {
        "open": ("registered", None, False),
        "closed": ("resolved", "resolved", False),
        "investigating": ("in_progress", None, False),
        "in_progress": ("in_progress", None, False),
        "action_scheduled": ("assigned", None, False),
        "Action Scheduled": ("assigned", None, False),
        "fixed": ("resolved", "resolved", False),
        "duplicate": ("registered", None, True),
        "hidden": ("registered", None, True),
        "not_councils_responsibility": ("resolved", "explained", False),
        "no_further_action": ("resolved", "explained", False),
        "internal_referral": ("assigned", None, False),
        "replied": ("replied", None, False),
        "verified": ("verified", None, False),
    }
    state.items([item(f"T{i}", status=s) for i, s in enumerate(statuses)])
    batch, _ = await pull(url)
    got = by_id(batch)
    for i, (status, expected) in enumerate(statuses.items()):
        rec = got[f"T{i}"]
        assert (rec.status, rec.outcome, rec.withdrawn) == expected, status

    overridden, _ = await pull(
        url, statuses={"investigating": "assigned", "closed": "resolved:planned"}
    )
    got = by_id(overridden)
    assert got["T2"].status == "assigned"
    assert (got["T1"].status, got["T1"].outcome) == ("resolved", "planned")


async def test_extended_stage_wins_but_not_over_withdrawal(canned: tuple[Canned, str]) -> None:
    state, url = canned
    state.items(
        [
            item(
                "A", status="closed", extended_attributes={"stage": "replied", "outcome": "planned"}
            ),
            item("B", status="duplicate", extended_attributes={"stage": "assigned"}),
            item("C", status="open", extended_attributes={"outcome": "resolved"}),
        ]
    )
    got = by_id((await pull(url))[0])
    assert (got["A"].status, got["A"].outcome) == ("replied", "planned")
    assert got["B"].withdrawn
    assert (got["C"].status, got["C"].outcome) == ("registered", None)


async def test_town_matching(canned: tuple[Canned, str]) -> None:
    state, url = canned
    state.items(
        [
            item("A", address="隆昌市黄家镇九龙村"),
            item("B", address=None, area="石碾镇"),
            item("C", address="Shuangfeng town, Longchang"),
            item("D", address="隆昌市龙市街"),
            item("E", address=None, extended_attributes={"town": "响石镇"}),
        ]
    )
    # The feed's own table: longest key first, so 龙市街 beats 龙市.
    batch, _ = await pull(url, towns={"龙市": "huangjia", "龙市街": "longshi"})
    got = by_id(batch)
    assert {k: r.town for k, r in got.items()} == {
        "A": "huangjia",
        "B": "shinian",
        "C": "shuangfeng",
        "D": "longshi",
        "E": "xiangshi",
    }
    state.items([item("F", address="某地某路1号")])
    only_town, _ = await pull(url, town="龙市镇")
    assert by_id(only_town)["F"].town == "longshi"


async def test_agency_and_notes_shapes(canned: tuple[Canned, str]) -> None:
    state, url = canned
    state.items(
        [
            item(
                "A",
                agency_responsible={"recipient": ["镇规划建设办", "市交通运输局"]},
                status_notes="已派人查看",
                notes=[
                    {
                        "datetime": "2026-03-05T10:00:00+08:00",
                        "summary": "已受理",
                        "type": "opened",
                    },
                    {"datetime": None, "summary": "no date, dropped"},
                ],
            )
        ]
    )
    rec = by_id((await pull(url))[0])["A"]
    assert rec.department == "镇规划建设办、市交通运输局"
    assert [n.text for n in rec.notes] == ["已受理", "已派人查看"]
    assert rec.notes[1].stage == "registered"


def test_parse_xml_shapes() -> None:
    data = parse_xml(
        b"<?xml version='1.0' encoding='utf-8'?><service_requests><request>"
        b"<service_request_id>1</service_request_id><notes><note><summary>a</summary></note>"
        b"</notes><empty/></request></service_requests>"
    )
    assert data == [{"service_request_id": "1", "notes": [{"summary": "a"}], "empty": None}]
    assert parse_xml(b"<service_requests/>") == []
    with pytest.raises(ValueError, match="well-formed"):
        parse_xml(b"<unclosed>")


@pytest.mark.parametrize(
    "body",
    [
        # entity expansion, with the DTD hidden behind a long comment
        b"<?xml version='1.0'?><!--" + b"x" * 10_000 + b"-->"
        b'<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        b"<service_requests><request><description>&b;</description></request>"
        b"</service_requests>",
        # an external entity
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b"<service_requests><request><description>&x;</description></request>"
        b"</service_requests>",
    ],
)
def test_parse_xml_refuses_dtds(body: bytes) -> None:
    with pytest.raises(ValueError, match="DTD"):
        parse_xml(body)


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        ("carrier-pigeon", {}, "unknown kind"),
        ("webhook", {}, "push-only"),
        ("open311", {"url": "ftp://x"}, "feeds.hotline.url"),
        ("open311", {"format": "csv"}, "feeds.hotline.format"),
        ("open311", {"statuses": {"open": "opened"}}, "feeds.hotline.statuses.open"),
        ("open311", {"statuses": {"x": "resolved:maybe"}}, "feeds.hotline.statuses.x"),
        ("open311", {"since": "last year"}, "feeds.hotline.since"),
        ("open311", {"window_days": 120}, "feeds.hotline.window_days"),
        ("open311", {"timeout": 0}, "feeds.hotline.timeout"),
        ("open311", {"town": "成都"}, "feeds.hotline.town"),
        ("open311", {"towns": ["龙市镇"]}, "feeds.hotline.towns"),
    ],
)
def test_bad_configuration_names_the_key(
    kind: str, options: Mapping[str, Any], message: str
) -> None:
    config = {"url": "http://127.0.0.1:1/open311/v2", **options}
    with pytest.raises(FeedError, match=message):
        build_adapter("hotline", kind, config, TOWNS)


async def test_simulator_kind_defaults_to_the_simulator_port() -> None:
    a = build_adapter("demo", "simulator", {}, TOWNS)
    assert isinstance(a, Open311Adapter)
    assert a.config.url == "http://127.0.0.1:9311/open311/v2"
    await a.aclose()


async def test_a_trickling_answer_hits_the_overall_deadline() -> None:
    async def trickle(request: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            yield b"["
            for _ in range(300):
                await asyncio.sleep(0.01)  # each read is quick, the whole is not
                yield b" "
            yield b"]"

        return StreamingResponse(body(), media_type="application/json")

    app = Starlette(routes=[Route("/open311/v2/{res}", trickle)])
    async with serve_app(app) as server:
        with pytest.raises(FeedError, match="没有答完"):
            await pull(server.open311_url, timeout=0.15)


async def test_oversized_answer_is_refused(canned: tuple[Canned, str]) -> None:
    state, url = canned
    state.body = b"[" + b" " * 5000 + b"]"
    async with httpx.AsyncClient() as client:
        with pytest.raises(FeedError, match="的应答超过"):
            await httpclient.get(client, url + "/requests.json", feed="hotline", limit=4096)
        small = await httpclient.get(client, url + "/requests.json?api_key=k", feed="hotline")
    assert small.status_code == 200 and len(small.body) == 5002
    assert "api_key" not in small.url


async def test_coordinates_map_to_a_town_through_areas(canned: tuple[Canned, str]) -> None:
    state, url = canned
    state.items(
        [
            item("A", address=None, lat="29.35", long="105.25"),
            item("B", address=None, lat=29.31, long=105.21),
            item("C", address=None, lat=30.5, long=104.0),
        ]
    )
    areas = {"龙市镇": [29.30, 105.20, 29.40, 105.30], "shinian": [29.30, 105.20, 29.32, 105.22]}
    batch, _ = await pull(url, areas=areas)
    assert {k: r.town for k, r in by_id(batch).items()} == {"A": "longshi", "B": "shinian"}
    assert [r.source_id for r in batch.rejected] == ["C"]
    with pytest.raises(FeedError, match=r"feeds\.hotline\.areas\.longshi"):
        build_adapter("hotline", "open311", {"url": url, "areas": {"longshi": [1, 2]}}, TOWNS)


async def test_the_address_is_a_redaction_hint(canned: tuple[Canned, str]) -> None:
    state, url = canned
    state.items([item("A", address="隆昌市龙市镇银杏村3组45号")])
    rec = by_id((await pull(url))[0])["A"]
    assert rec.requester_address == "隆昌市龙市镇银杏村3组45号"
    assert "隆昌市龙市镇银杏村3组45号" in rec.hints


async def test_a_large_backlog_is_read_in_several_pulls(
    sim_server: tuple[Simulator, RunningServer],
) -> None:
    sim, server = sim_server
    since = (datetime.now(UTC) - timedelta(days=70)).isoformat()
    a = adapter(server.open311_url, since=since, window_days=7, max_records=1)
    seen: set[str] = set()
    cursor = None
    try:
        for pulls in range(1, 100):  # noqa: B007 - pulls is read after the loop
            batch = await a.pull(cursor)
            seen |= set(by_id(batch))
            cursor = batch.cursor
            if not a.has_more:
                break
    finally:
        await a.aclose()
    assert not a.has_more
    assert seen == set(sim.cases)
    assert pulls > 3


def test_unknown_options_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    build_adapter("hotline", "open311", {"url": "http://127.0.0.1:1", "page-size": 5}, TOWNS)
    assert "page-size" in caplog.text
