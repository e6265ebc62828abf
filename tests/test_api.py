"""The public JSON API: shapes, the OpenAPI document, and hostile query strings."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import case_record, push_records


@pytest.fixture
async def seeded(live: Any) -> Any:
    async with httpx.AsyncClient(timeout=10) as client:
        r = await push_records(
            client,
            live.url,
            [
                case_record("LS-1", status="assigned"),
                case_record(
                    "LS-2",
                    status="resolved",
                    outcome="explained",
                    resolved_at="2026-11-24T10:00:00+08:00",
                ),
                case_record("HJ-1", town="huangjia", status="registered"),
            ],
        )
        assert r.status_code == 202
    return live


async def test_cases_filters_and_case_detail(seeded: Any) -> None:
    async with httpx.AsyncClient(base_url=seeded.url, timeout=10) as client:
        open_ = (
            await client.get("/api/v1/cases", params={"town": "longshi", "stage": "open"})
        ).json()
        assert [c["no"] for c in open_["cases"]] == ["LS-1"]
        by_name = (await client.get("/api/v1/cases", params={"town": "龙市镇"})).json()
        assert {c["no"] for c in by_name["cases"]} == {"LS-1", "LS-2"}
        one = (await client.get("/api/v1/cases/LS-2")).json()
        assert one["stage"] == "resolved" and one["outcome_label"] == "已解释说明"
        assert one["timeline"] and one["timeline"][-1]["stage"] == "resolved"
        assert one["days_left"] is None
        open_one = (await client.get("/api/v1/cases/LS-1")).json()
        assert isinstance(open_one["days_left"], int) and open_one["due_date"]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/v1/cases?limit=abc", 400),
        ("/api/v1/cases?limit=0", 400),
        ("/api/v1/cases?limit=100000", 400),
        ("/api/v1/cases?offset=-1", 400),
        ("/api/v1/cases?offset=99999999999999999999", 400),
        ("/api/v1/cases?stage=deleted", 400),
        ("/api/v1/cases?town=%3Cscript%3Ealert(1)%3C/script%3E", 404),
        ("/api/v1/stats?town=nowhere", 404),
        ("/api/v1/cases/" + "9" * 500, 404),
        ("/api/v1/cases/..%2F..%2Fetc%2Fpasswd", 404),
        ("/api/v1/cases/%00", 404),
        ("/events?town=nowhere", 404),
        ("/kiosk/nowhere", 404),
        ("/led/nowhere/frame.png", 404),
        ("/led/longshi-gate/frame.png?page=-1", 400),
        ("/led/longshi-gate/frame.bin?format=jpeg", 400),
    ],
)
async def test_hostile_query_strings_get_clear_errors(seeded: Any, path: str, status: int) -> None:
    async with httpx.AsyncClient(base_url=seeded.url, timeout=10) as client:
        r = await client.get(path)
    assert r.status_code == status
    assert "<script>" not in r.text
    if r.headers["content-type"].startswith("application/json"):
        assert r.json()["error"]  # a message, in Chinese, saying what is wrong


async def test_openapi_document_describes_every_public_path(live: Any) -> None:
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
        doc = (await client.get("/api/openapi.json")).json()
        assert doc["openapi"].startswith("3.")
        for path in doc["paths"]:
            if path == "/events":  # an endless stream: only its headers
                async with client.stream("GET", path) as r:
                    assert r.headers["content-type"].startswith("text/event-stream")
                continue
            concrete = path.replace("{no}", "LS-404")
            r = await client.get(concrete, headers={"accept": "application/json"})
            assert r.status_code in (200, 404), path
            assert r.headers["content-type"].startswith("application/json")
        assert doc["paths"]["/api/v1/cases"]["get"]["parameters"]


async def test_security_headers_on_every_response(live: Any) -> None:
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
        for path in ["/api/v1/stats", "/kiosk/longshi", "/healthz", "/nowhere"]:
            r = await client.get(path)
            assert "script-src 'self'" in r.headers["content-security-policy"]
            assert r.headers["x-content-type-options"] == "nosniff"
            assert r.headers["x-frame-options"] == "DENY"
