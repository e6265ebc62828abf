"""The demo case system: deterministic cases, stage moves, and a real Open311 server."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from xml.etree import ElementTree

import httpx
import pytest

from feeds.record import STAGES
from feeds.simulator import DEFAULT_TOWNS, RunningServer, Simulator, serve_simulator

NOW = datetime(2026, 5, 20, 2, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def wait_until(condition: Callable[[], bool], polls: int = 2000) -> None:
    """Poll a condition a bounded number of times (fails rather than hangs)."""
    for _ in range(polls):
        if condition():
            return
        await asyncio.sleep(0.005)
    pytest.fail("condition never became true")


@pytest.fixture
async def served() -> AsyncIterator[tuple[Simulator, RunningServer]]:
    sim = Simulator(seed=3, initial_cases=30)
    async with serve_simulator(sim) as server:
        yield sim, server


def test_same_seed_same_cases() -> None:
    a = Simulator(seed=5, clock=Clock())
    b = Simulator(seed=5, clock=Clock())
    c = Simulator(seed=6, clock=Clock())
    assert [a.as_open311(x) for x in a.cases.values()] == [
        b.as_open311(x) for x in b.cases.values()
    ]
    assert a.advance() == b.advance()
    assert [x.summary for x in a.cases.values()] != [x.summary for x in c.cases.values()]


def test_cases_look_like_the_towns_ledgers() -> None:
    sim = Simulator(seed=1, initial_cases=80, clock=Clock())
    cases = list(sim.cases.values())
    assert len(cases) == 80
    assert len({c.id for c in cases}) == 80
    prefixes = {
        "longshi": "LS",
        "huangjia": "HJ",
        "shuangfeng": "SF",
        "xiangshi": "XS",
        "shinian": "SN",
    }
    for case in cases:
        assert re.fullmatch(r"[A-Z]{2}2026-\d{4}", case.id)
        assert case.id.startswith(prefixes[case.town])
        assert (case.town, case.town_name) in DEFAULT_TOWNS
        assert case.received <= case.updated <= NOW
        assert re.fullmatch(r"1[3589]\d{9}", case.phone)
        assert case.stage in STAGES
    assert {c.town for c in cases} == set(prefixes)
    # Some summaries name the requester, as real ledgers do.
    assert any(c.requester_name in c.summary for c in cases)
    assert any(c.phone in c.summary for c in cases)
    assert len({c.channel for c in cases}) >= 4
    assert {c.kind for c in cases} == {"consult", "general"}
    # Seeded cases are spread over the stages, not all new.
    assert len({c.stage for c in cases}) >= 4


def test_advance_moves_one_stage_at_a_time_until_verified() -> None:
    clock = Clock()
    sim = Simulator(seed=2, initial_cases=10, clock=clock)
    order = list(STAGES)
    moves = 0
    for _ in range(200):
        before = {c.id: c.stage for c in sim.cases.values()}
        clock.now += timedelta(seconds=5)
        changed = sim.advance()
        moves += len(changed)
        for case_id in changed:
            case = sim.cases[case_id]
            assert case.updated == clock.now
            if case_id in before:
                assert order.index(case.stage) == order.index(before[case_id]) + 1
            else:
                assert case.stage == "registered"
            if case.stage == "resolved":
                assert case.outcome in ("resolved", "explained", "planned")
                assert case.resolved_at == clock.now
            if case.stage == "replied":
                assert case.satisfaction is not None
    assert moves > 200
    stages = [c.stage for c in sim.cases.values()]
    assert stages.count("verified") > len(stages) // 3
    outcomes = {c.outcome for c in sim.cases.values() if c.outcome}
    assert "resolved" in outcomes and len(outcomes) >= 2


def test_set_stage_and_withdraw() -> None:
    clock = Clock()
    sim = Simulator(seed=1, initial_cases=3, clock=clock)
    case_id = next(iter(sim.cases))
    clock.now += timedelta(hours=1)
    case = sim.set_stage(case_id, "resolved", "planned")
    assert (case.stage, case.outcome, case.updated) == ("resolved", "planned", clock.now)
    assert case.status == "closed"
    assert sim.set_stage(case_id, "resolved", "explained").status == "no_further_action"
    assert sim.set_stage(case_id, "assigned").outcome is None
    assert sim.withdraw(case_id).status == "duplicate"
    with pytest.raises(ValueError):
        sim.set_stage(case_id, "closed")


async def test_serves_open311_json(served: tuple[Simulator, RunningServer]) -> None:
    _, server = served
    assert server.port > 0
    async with httpx.AsyncClient(base_url=server.open311_url) as client:
        services = (await client.get("/services.json")).json()
        assert {"service_code", "service_name"} <= set(services[0])
        assert "农村饮水" in {s["service_name"] for s in services}

        items = (await client.get("/requests.json")).json()
        assert len(items) == 30
        item = items[0]
        for key in (
            "service_request_id",
            "status",
            "service_name",
            "description",
            "agency_responsible",
            "requested_datetime",
            "updated_datetime",
            "address",
        ):
            assert item[key], key
        assert item["status"] in (
            "open",
            "action_scheduled",
            "in_progress",
            "fixed",
            "no_further_action",
            "closed",
        )
        updated = [i["updated_datetime"] for i in items]
        assert updated == sorted(updated, key=datetime.fromisoformat)

        one = (await client.get(f"/requests/{item['service_request_id']}.json")).json()
        assert one[0]["service_request_id"] == item["service_request_id"]
        missing = await client.get("/requests/XX2026-9999.json")
        assert missing.status_code == 404
        assert missing.json()[0]["code"] == 404


async def test_window_filters_on_updated_datetime(
    served: tuple[Simulator, RunningServer],
) -> None:
    sim, server = served
    case_id = sorted(sim.cases)[0]
    sim.set_stage(case_id, "verified", "resolved", satisfaction="satisfied")
    since = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    async with httpx.AsyncClient(base_url=server.open311_url) as client:
        recent = (await client.get("/requests.json", params={"start_date": since})).json()
        assert [i["service_request_id"] for i in recent] == [case_id]
        assert recent[0]["extended_attributes"]["stage"] == "verified"
        assert recent[0]["extended_attributes"]["satisfaction"] == "satisfied"
        too_long = await client.get(
            "/requests.json",
            params={"start_date": "2026-01-01T00:00:00Z", "end_date": "2026-06-01T00:00:00Z"},
        )
        assert too_long.status_code == 400
        assert "90 days" in too_long.json()[0]["description"]


async def test_paging_and_cap(served: tuple[Simulator, RunningServer]) -> None:
    sim, server = served
    sim.max_results = 12
    async with httpx.AsyncClient(base_url=server.open311_url) as client:
        capped = (await client.get("/requests.json")).json()
        assert len(capped) == 12
        seen: list[str] = []
        for page in range(1, 10):
            got = (await client.get("/requests.json", params={"page": page, "page_size": 8})).json()
            seen += [i["service_request_id"] for i in got]
            if len(got) < 8:
                break
        assert len(seen) == 30 == len(set(seen))


async def test_xml_errors_keys_and_failures(served: tuple[Simulator, RunningServer]) -> None:
    sim, server = served
    async with httpx.AsyncClient(base_url=server.open311_url) as client:
        xml = await client.get("/requests.xml", params={"extensions": "true"})
        root = ElementTree.fromstring(xml.content)  # noqa: S314 - our own server
        assert root.tag == "service_requests"
        assert len(root.findall("request")) == 30
        assert root.find("request/extended_attributes/village") is not None

        sim.api_key = "k-123"
        refused = await client.get("/requests.xml")
        assert refused.status_code == 403
        error = ElementTree.fromstring(refused.content)  # noqa: S314 - our own server
        assert error.findtext("error/description") == "Invalid api_key"
        assert (await client.get("/requests.json", params={"api_key": "k-123"})).status_code == 200

        sim.fail_next(2, status=502)
        hits = sim.hits
        codes = [
            (await client.get("/requests.json", params={"api_key": "k-123"})).status_code
            for _ in range(3)
        ]
        assert codes == [502, 502, 200]
        assert sim.hits == hits + 3


async def test_run_advances_until_stopped() -> None:
    sim = Simulator(seed=4, initial_cases=5, step_seconds=0.001)
    before = {c.id: (c.stage, c.updated) for c in sim.cases.values()}
    stop = asyncio.Event()
    task = asyncio.create_task(sim.run(stop))
    await wait_until(lambda: {c.id: (c.stage, c.updated) for c in sim.cases.values()} != before)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert task.done()


async def test_serve_simulator_advances_when_asked() -> None:
    sim = Simulator(seed=4, initial_cases=5, step_seconds=0.001)
    count = len(sim.cases)
    stages = [c.stage for c in sim.cases.values()]
    async with serve_simulator(sim, advance=True) as server:
        async with httpx.AsyncClient() as client:
            resp = await client.get(server.open311_url + "/discovery.json")
            assert resp.json()["endpoints"][0]["url"].endswith("/open311/v2")
        await wait_until(
            lambda: len(sim.cases) != count or [c.stage for c in sim.cases.values()] != stages
        )


async def test_a_port_in_use_is_an_os_error(served: tuple[Simulator, RunningServer]) -> None:
    sim, server = served
    with pytest.raises(OSError, match="cannot listen"):
        async with serve_simulator(sim, port=server.port):
            pass
