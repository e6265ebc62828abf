"""The leak scanner: seed personal data through every input path, then look for it
in the database file and in every public output.

A name beside an illness on a village board is a real harm, so this test is
deliberately blunt: it searches raw bytes, not parsed fields.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import openpyxl

from display.app import create_app
from display.settings import Settings
from tests.conftest import (
    all_cases,
    case_record,
    open311_feed,
    poll_until,
    push_records,
    read_sse,
    serve_app,
    settings_dict,
)

# Values that must never appear anywhere public or stored.
NAME = "欧阳兴九"
NAME2 = "何小红"
PHONE = "13812345678"
PHONE_SPACED = "138 1234 5678"
ID_NUMBER = "51102819800101123X"
ADDRESS = "龙市镇银杏村3组15号"
HOUSE = "3组15号"
SECRETS = [NAME, NAME2, "兴九", "小红", PHONE, "12345678", ID_NUMBER, "19800101123", "15号"]


def seeded_records() -> list[dict[str, Any]]:
    return [
        case_record(
            "LS2026-0101",
            summary=f"{NAME}大爷反映不知道怎么办理特殊门诊，联系电话{PHONE_SPACED}，"
            f"身份证号{ID_NUMBER}",
            category="医疗保障",
            requester_name=NAME,
            requester_phone=PHONE,
            requester_address=ADDRESS,
        ),
        case_record(
            "LS2026-0102",
            summary=f"村民{NAME2}反映银杏村{HOUSE}门前路灯损坏，电话{PHONE}",
            requester_name=NAME2,
            requester_phone=PHONE,
        ),
        case_record(
            "LS2026-0103",
            summary=f"{NAME2}反映自家低保补助未到账",
            category="社会救助",
            status="resolved",
            outcome="resolved",
            resolved_at="2026-11-22T10:00:00+08:00",
            requester_name=NAME2,
        ),
    ]


def assert_clean(label: str, text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked in {label}"


def write_ledger(path: Path) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(
        [
            "编号",
            "诉求人",
            "联系电话",
            "诉求内容",
            "所属镇(街道)",
            "村(社区)",
            "诉求类型",
            "办理状态",
            "受理时间",
        ]
    )
    ws.append(
        [
            "LS2026-0201",
            NAME,
            PHONE,
            f"{NAME}反映银杏村{HOUSE}排水沟堵塞",
            "龙市镇",
            "银杏村",
            "一般",
            "办理中",
            "2026-11-20",
        ]
    )
    wb.save(path)


async def test_personal_data_never_reaches_storage_or_public_outputs(tmp_path: Path) -> None:
    from display.settings import parse

    ledger_dir = tmp_path / "ledgers"
    ledger_dir.mkdir()
    write_ledger(ledger_dir / "台账.xlsx")
    settings: Settings = parse(
        settings_dict(
            tmp_path,
            feeds=[
                {"name": "push", "kind": "webhook", "secret": "test-push-secret-0123456789"},
                {"name": "ledger", "kind": "ledger", "path": str(ledger_dir), "interval": 0.3},
            ],
        )
    )
    app = create_app(settings)
    async with serve_app(app) as (base, _), httpx.AsyncClient(timeout=10) as client:
        r = await push_records(client, base, seeded_records())
        assert r.status_code == 202, r.text
        # A record that fails validation carries personal data too; it must be
        # quarantined without it.
        r = await push_records(
            client,
            base,
            [
                case_record(
                    "LS2026-0104",
                    town="不存在镇",
                    summary=f"{NAME}的电话{PHONE}",
                    requester_name=NAME,
                ),
            ],
        )
        assert r.status_code == 400
        assert_clean("push error answer", r.text)
        ledger_case = await poll_until(
            lambda: client.get(f"{base}/api/v1/cases/LS2026-0201"), lambda r: r.status_code == 200
        )
        assert ledger_case.status_code == 200

        outputs: dict[str, str] = {}
        for path in [
            "/api/v1/cases?limit=500",
            "/api/v1/stats",
            "/api/v1/stats?town=longshi",
            "/api/v1/cases/LS2026-0101",
            "/api/v1/cases/LS2026-0102",
            "/api/v1/cases/LS2026-0103",
            "/api/v1/cases/LS2026-0201",
            "/kiosk",
            "/kiosk/longshi",
            "/api/v1/boards",
        ]:
            resp = await client.get(base + path)
            assert resp.status_code == 200, path
            outputs[path] = resp.text
        for path in ["/led/longshi-gate/text", "/led/longshi-gate/pages.json", "/led/longshi-gate"]:
            resp = await client.get(base + path)
            assert resp.status_code == 200, path
            outputs[path] = resp.text
        events = await read_sse(
            client,
            f"{base}/events",
            headers={"Last-Event-ID": "0"},
            until=lambda ev: sum(e.get("event") == "case" for e in ev) >= 4,
        )
        outputs["/events"] = json.dumps(events, ensure_ascii=False)
        for label, text in outputs.items():
            assert_clean(label, text)

        # The sensitive case shows its category, never its summary or village.
        sensitive = json.loads(outputs["/api/v1/cases/LS2026-0101"])
        assert sensitive["sensitive"] is True
        assert sensitive["summary"] is None and sensitive["village"] is None
        assert sensitive["category"] == "医疗保障"
        ordinary = json.loads(outputs["/api/v1/cases/LS2026-0102"])
        assert ordinary["summary"] and "路灯" in ordinary["summary"]

    # Every byte the database wrote: the main file, and the WAL if one is left.
    db = Path(settings.sqlite_path or "")
    raw = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))
    for secret in SECRETS:
        assert secret.encode() not in raw, f"{secret!r} reached the database file"


async def test_open311_requesters_never_reach_public_outputs(tmp_path: Path) -> None:
    """The demo case system names its requesters in the text and in Open311's
    first_name/last_name/phone; none of it may come out."""
    from display.settings import parse
    from feeds.simulator import Simulator

    sim = Simulator([("longshi", "龙市镇"), ("huangjia", "黄家镇")], seed=3, initial_cases=60)
    async with serve_app(sim.app) as (sim_url, _):
        settings = parse(
            settings_dict(
                tmp_path,
                feeds=[
                    open311_feed(sim_url, 0.3),
                ],
            )
        )
        app = create_app(settings)
        async with serve_app(app) as (base, _), httpx.AsyncClient(timeout=10) as client:
            got = await poll_until(lambda: all_cases(client, base), lambda c: len(c) >= 60)
            assert len(got) >= 60
            texts = [json.dumps(got, ensure_ascii=False)]
            for path in [
                "/kiosk/longshi",
                "/kiosk/huangjia",
                "/kiosk",
                "/led/longshi-gate/text",
                "/led/longshi-gate/pages.json",
            ]:
                resp = await client.get(base + path)
                assert resp.status_code == 200, path
                texts.append(resp.text)
            for c in got[:20]:
                texts.append((await client.get(f"{base}/api/v1/cases/{c['no']}")).text)
            events = await read_sse(
                client,
                f"{base}/events",
                headers={"Last-Event-ID": "0"},
                until=lambda ev: sum(e.get("event") == "case" for e in ev) >= 60,
            )
            texts.append(json.dumps(events, ensure_ascii=False))
    blob = "\n".join(texts)
    named = [c for c in sim.cases.values() if c.first_name]
    assert named
    for case in named:
        assert case.requester_name not in blob, "a requester's full name leaked"
        if len(case.first_name) >= 2:
            assert case.first_name not in blob, "a requester's given name leaked"
        assert case.phone not in blob, "a requester's phone leaked"


async def test_a_failing_feed_logs_and_stores_its_error_without_personal_data(
    tmp_path: Path, capfd: Any
) -> None:
    """A case system whose error answer quotes a citizen: the error reaches the log
    and the feed status, redacted."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from display.logs import configure
    from display.settings import parse

    async def broken(request: Any) -> JSONResponse:
        return JSONResponse(
            [{"code": 400, "description": f"村民{NAME2}（电话{PHONE}）的诉求格式错误"}],
            status_code=400,
        )

    source = Starlette(routes=[Route("/open311/v2/requests.json", broken)])
    configure()
    async with serve_app(source) as (src_url, _):
        settings = parse(
            settings_dict(
                tmp_path,
                feeds=[
                    open311_feed(src_url, 0.2),
                ],
            )
        )
        app = create_app(settings)
        async with serve_app(app):
            ctx = app.state.ctx
            states = await poll_until(
                ctx.store.feed_states, lambda st: bool(st and st[0].last_error)
            )
            assert states and states[0].last_error
            stored = states[0].last_error
    logged = capfd.readouterr().err
    # The source's own words came through (so redaction, not silence, kept them clean).
    assert "诉求格式错误" in stored and "诉求格式错误" in logged
    for text in (stored, logged):
        assert PHONE not in text and "小红" not in text


async def test_sensitive_cases_carry_no_timeline_notes(live: Any) -> None:
    note = {"at": "2026-11-21T10:00:00+08:00", "text": "双方协商未果，已转镇司法所调解"}
    async with httpx.AsyncClient(timeout=10) as client:
        r = await push_records(
            client,
            live.url,
            [
                case_record("LS-77", category="邻里纠纷", status="assigned", notes=[note]),
                case_record("LS-78", status="assigned", notes=[note]),
            ],
        )
        assert r.status_code == 202, r.text
        sensitive = (await client.get(f"{live.url}/api/v1/cases/LS-77")).json()
        ordinary = (await client.get(f"{live.url}/api/v1/cases/LS-78")).json()
    assert sensitive["sensitive"] is True
    assert all(t["note"] is None for t in sensitive["timeline"])
    assert any(t["note"] == note["text"] for t in ordinary["timeline"])


async def test_json_api_requesters_never_reach_public_outputs(tmp_path: Path) -> None:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from display.settings import parse

    items = [
        {
            "id": "JA-1",
            "content": {"text": f"{NAME}反映门前水管破裂，电话{PHONE}"},
            "area": {"town": "龙市镇"},
            "state": "in_progress",
            "created": "2026-11-20T09:00:00",
            "person": {"name": NAME, "mobile": PHONE},
        },
        {
            "id": "JA-2",
            "content": {"text": f"村民{NAME2}咨询医保缴费，身份证{ID_NUMBER}"},
            "area": {"town": "龙市镇"},
            "state": "registered",
            "created": "2026-11-21T09:00:00",
            "person": {"name": NAME2, "mobile": PHONE},
        },
    ]

    async def api(request: Any) -> JSONResponse:
        return JSONResponse({"data": {"list": items}})

    source = Starlette(routes=[Route("/api/appeals", api)])
    async with serve_app(source) as (src_url, _):
        settings = parse(
            settings_dict(
                tmp_path,
                feeds=[
                    {
                        "name": "platform",
                        "kind": "jsonapi",
                        "url": f"{src_url}/api/appeals",
                        "interval": 0.3,
                        "items": "data.list",
                        "paging": "none",
                        "fields": {
                            "source_id": "id",
                            "summary": "content.text",
                            "town": "area.town",
                            "status": "state",
                            "received_at": "created",
                            "requester_name": "person.name",
                            "requester_phone": "person.mobile",
                        },
                    }
                ],
            )
        )
        app = create_app(settings)
        async with serve_app(app) as (base, _), httpx.AsyncClient(timeout=10) as client:
            r = await poll_until(
                lambda: client.get(f"{base}/api/v1/cases/JA-2"), lambda r: r.status_code == 200
            )
            assert r.status_code == 200
            texts = [r.text]
            for path in [
                "/api/v1/cases/JA-1",
                "/api/v1/cases?limit=50",
                "/kiosk/longshi",
                "/led/longshi-gate/text",
                "/led/longshi-gate/pages.json",
            ]:
                resp = await client.get(base + path)
                assert resp.status_code == 200, path
                texts.append(resp.text)
            events = await read_sse(
                client,
                f"{base}/events",
                headers={"Last-Event-ID": "0"},
                until=lambda ev: sum(e.get("event") == "case" for e in ev) >= 2,
            )
            texts.append(json.dumps(events, ensure_ascii=False))
    first = json.loads(texts[1])
    assert "水管" in (first["summary"] or "")  # the text itself came through, redacted
    for text in texts:
        assert_clean("json api output", text)
