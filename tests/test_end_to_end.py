"""The whole path: a case system on a port -> Open311 pull -> store -> SSE on a port."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx

from display.app import create_app
from display.settings import Settings
from feeds.simulator import Simulator
from tests.conftest import (
    all_cases,
    case_record,
    open311_feed,
    poll_until,
    push_records,
    read_sse,
    serve_app,
)


async def test_simulator_stage_change_reaches_sse_subscriber(
    make_settings: Callable[..., Settings],
) -> None:
    towns = [("longshi", "龙市镇"), ("huangjia", "黄家镇")]
    sim = Simulator(towns, seed=7, step_seconds=3600, initial_cases=12)
    async with serve_app(sim.app) as (sim_url, _):
        settings = make_settings(feeds=[open311_feed(sim_url, 0.3)])
        app = create_app(settings)
        async with serve_app(app) as (base, _), httpx.AsyncClient(timeout=10) as client:
            # The first pull lands every simulated case.
            cases = await poll_until(lambda: all_cases(client, base), lambda c: len(c) >= 12)
            assert len(cases) >= 12
            target = next(c for c in cases if c["stage"] in ("registered", "assigned"))
            seen_stage: list[str] = []

            def arrived(events: list[dict[str, str]]) -> bool:
                for e in events:
                    if e.get("event") == "case":
                        data: dict[str, Any] = json.loads(e["data"])
                        if data["no"] == target["no"]:
                            seen_stage.append(data["stage"])
                            return data["stage"] == "in_progress"
                return False

            async def change_later() -> None:
                await asyncio.sleep(0.5)
                sim.set_stage(target["no"], "in_progress")

            changer = asyncio.create_task(change_later())
            events = await read_sse(client, f"{base}/events?town={target['town']}", until=arrived)
            await changer
            assert seen_stage[-1] == "in_progress"
            ids = [int(e["id"]) for e in events if "id" in e]
            assert ids == sorted(ids)
            after = (await client.get(f"{base}/api/v1/cases/{target['no']}")).json()
            assert after["stage"] == "in_progress"
            assert [t["stage"] for t in after["timeline"]][-1] == "in_progress"


async def test_push_then_replay_with_last_event_id(live: Any) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        r = await push_records(client, live.url, [case_record("LS-1"), case_record("LS-2")])
        assert r.status_code == 202, r.text
        assert r.json()["new"] == 2
        everything = await read_sse(
            client,
            f"{live.url}/events?town=longshi",
            headers={"Last-Event-ID": "0"},
            until=lambda ev: sum(e.get("event") == "case" for e in ev) >= 2,
        )
        case_events = [e for e in everything if e.get("event") == "case"]
        first_id = int(case_events[0]["id"])
        # Reconnecting after the first event replays exactly what came later.
        rest = await read_sse(
            client,
            f"{live.url}/events?town=longshi",
            headers={"Last-Event-ID": str(first_id)},
            until=lambda ev: any(e.get("event") == "case" for e in ev),
        )
        replayed = [json.loads(e["data"])["no"] for e in rest if e.get("event") == "case"]
        assert replayed == ["LS-2"]


async def test_unchanged_push_makes_no_event_and_change_makes_one(live: Any) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        await push_records(client, live.url, [case_record("LS-9")])
        _, before = await live.ctx.store.event_bounds()
        r = await push_records(client, live.url, [case_record("LS-9")])
        assert r.json()["unchanged"] == 1
        _, same = await live.ctx.store.event_bounds()
        assert same == before
        r = await push_records(client, live.url, [case_record("LS-9", status="assigned")])
        assert r.json()["changed"] == 1
        events = await live.ctx.store.events_after(before)
        assert [e.kind for e in events] == ["case", "stats"]


async def test_kiosk_and_stats_agree(live: Any) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        await push_records(
            client,
            live.url,
            [
                case_record(
                    "LS-1",
                    status="resolved",
                    outcome="resolved",
                    resolved_at="2026-11-21T10:00:00+08:00",
                ),
                case_record("LS-2", status="in_progress"),
                case_record("HJ-1", town="黄家镇", status="registered"),
            ],
        )
        stats = (await client.get(f"{live.url}/api/v1/stats?town=longshi")).json()
        assert (stats["received"], stats["resolved"], stats["open"]) == (2, 1, 1)
        page = (await client.get(f"{live.url}/kiosk/longshi")).text
        assert "龙市镇群众诉求办理公示" in page
        assert 'data-field="received">2<' in page
        assert "LS-2" in page and "HJ-1" not in page
        county = (await client.get(f"{live.url}/api/v1/stats")).json()
        assert county["received"] == 3
