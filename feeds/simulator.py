"""A demo case system that speaks Open311 GeoReport v2 (JSON and XML).

It invents realistic appeals (群众诉求) for the configured towns and moves them
through the five-step mechanism, so that `yizheng demo` and the tests have a live
source that behaves like a real server: date windows (filtered on
updated_datetime), the page/page_size extension, a result cap, api keys, error
bodies, and switches for outages and slow answers.

Everything it invents is fictional; the requester names and phone numbers exist
so that the privacy tests can prove they never reach a screen.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from xml.etree import ElementTree

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from feeds.record import SHANGHAI, RecordError, parse_datetime

DEFAULT_TOWNS: tuple[tuple[str, str], ...] = (
    ("longshi", "龙市镇"),
    ("huangjia", "黄家镇"),
    ("shuangfeng", "双凤镇"),
    ("xiangshi", "响石镇"),
    ("shinian", "石碾镇"),
)

_PREFIXES = {
    "longshi": "LS",
    "huangjia": "HJ",
    "shuangfeng": "SF",
    "xiangshi": "XS",
    "shinian": "SN",
}

_VILLAGES: dict[str, tuple[str, ...]] = {
    "longshi": ("银杏村", "龙市社区", "水口村", "金花村", "黄桷村"),
    "huangjia": ("九龙村", "黄家社区", "登高村", "石林村"),
    "shuangfeng": ("双凤社区", "凤鸣村", "长滩村", "花园村"),
    "xiangshi": ("吉庆村", "响石社区", "高峰村", "新华村"),
    "shinian": ("石碾社区", "太平村", "红星村", "双河村"),
}
_GENERIC_VILLAGES = ("和平村", "红光村", "新建村", "团结村", "场镇社区")

_CHANNELS = ("12345热线", "随手拍", "走访", "微信群", "网络平台", "来信来访", "大管家服务中心")

_SURNAMES = ("张", "王", "李", "刘", "陈", "杨", "赵", "黄", "周", "吴", "何", "罗", "曾", "邓")
_GIVEN = (
    "兴九",
    "小红",
    "国强",
    "桂芳",
    "德明",
    "秀英",
    "建华",
    "玉兰",
    "光荣",
    "春梅",
    "志刚",
    "淑珍",
    "永福",
    "海燕",
    "正全",
    "明芬",
)
_HONORIFIC = ("大爷", "大娘", "大哥", "大姐", "")


@dataclass(frozen=True, slots=True)
class _Template:
    category: str
    code: str
    kind: str
    departments: tuple[str, ...]
    text: str


# {person} names the requester in the text; {phone} quotes their number.
_TEMPLATES: tuple[_Template, ...] = (
    _Template(
        "医疗保障",
        "medical",
        "consult",
        ("镇社会事务办", "市医疗保障局"),
        "{person}反映不知道怎么办理糖尿病、高血压特殊门诊",
    ),
    _Template(
        "医疗保障",
        "medical",
        "consult",
        ("镇社会事务办",),
        "{village}村民咨询城乡居民医保缴费标准和住院报销比例",
    ),
    _Template(
        "道路交通",
        "road",
        "general",
        ("镇规划建设办", "市交通运输局"),
        "村民{name}反映{village}{group}组路灯损坏，夜间出行不便，联系电话{phone}",
    ),
    _Template(
        "道路交通",
        "road",
        "general",
        ("市交通运输局", "镇规划建设办"),
        "{village}{group}组通组道路破损严重，雨天泥泞，群众出行困难",
    ),
    _Template(
        "道路交通",
        "road",
        "general",
        ("镇综合行政执法办",),
        "场镇车位规划不合理，门口车位挡了店门三分之一，影响店铺生意",
    ),
    _Template(
        "农村饮水",
        "water",
        "general",
        ("镇农业服务中心", "市水务局"),
        "{village}{group}组自来水水压不足，地势高的农户早晚用不上水",
    ),
    _Template(
        "农村饮水",
        "water",
        "general",
        ("镇农业服务中心",),
        "{person}反映{village}{group}组饮水管道破裂漏水，已持续一周",
    ),
    _Template(
        "社会救助",
        "assistance",
        "consult",
        ("镇社会事务办",),
        "{person}反映家庭困难，咨询低保申请条件和办理流程，联系电话{phone}",
    ),
    _Template(
        "社会救助", "assistance", "consult", ("镇社会事务办",), "咨询临时救助申请需要准备哪些材料"
    ),
    _Template(
        "环境卫生",
        "sanitation",
        "general",
        ("镇综合行政执法办", "镇农业服务中心"),
        "{village}垃圾收运不及时，垃圾池堆积发臭，影响周边住户",
    ),
    _Template(
        "环境卫生",
        "sanitation",
        "general",
        ("镇综合行政执法办",),
        "{village}{group}组河沟有人倾倒建筑垃圾，希望及时清理",
    ),
    _Template(
        "农业农村",
        "agriculture",
        "consult",
        ("镇农业服务中心",),
        "咨询耕地地力保护补贴今年什么时候发放",
    ),
    _Template(
        "农业农村",
        "agriculture",
        "general",
        ("镇农业服务中心", "市农业农村局"),
        "{village}{group}组灌溉渠堵塞，影响春耕用水",
    ),
    _Template(
        "住房建设",
        "housing",
        "general",
        ("镇规划建设办", "市住房和城乡建设局"),
        "{person}反映自家房屋墙体开裂，申请农村危房鉴定",
    ),
    _Template(
        "住房建设", "housing", "consult", ("镇规划建设办",), "咨询农房风貌改造补助政策和申请时间"
    ),
    _Template(
        "劳动就业",
        "employment",
        "general",
        ("市人力资源和社会保障局", "镇社会事务办"),
        "{person}反映在{village}务工被拖欠工资两个月，联系电话{phone}",
    ),
    _Template(
        "劳动就业", "employment", "consult", ("镇社会事务办",), "咨询返乡创业担保贷款的申请条件"
    ),
    _Template(
        "邻里纠纷",
        "dispute",
        "general",
        ("镇司法所", "村委会"),
        "{village}{group}组两户因宅基地边界发生纠纷，请求调解",
    ),
)

_SERVICES: tuple[tuple[str, str], ...] = tuple(
    dict.fromkeys((t.code, t.category) for t in _TEMPLATES)
)

_PROGRESS_NOTES: dict[str, str] = {
    "assigned": "已交办{department}办理",
    "in_progress": "{department}已安排工作人员现场核实，正在办理",
    "replied": "已电话回复诉求人",
    "verified": "纪检监察干部回访：问题解决到位",
}
_RESOLVED_NOTES: dict[str, str] = {
    "resolved": "问题已解决，办结销号",
    "explained": "经核实不符合政策规定，已向群众解释说明",
    "planned": "已纳入规划，分步解决",
}

# Open311 statuses a real server would show for each of our stages.
_OPEN311_STATUS = {
    "registered": "open",
    "assigned": "action_scheduled",
    "in_progress": "in_progress",
    "replied": "closed",
    "verified": "closed",
}
_RESOLVED_STATUS = {"resolved": "fixed", "explained": "no_further_action", "planned": "closed"}
_STAGE_ORDER = ("registered", "assigned", "in_progress", "resolved", "replied", "verified")
#: The Open311 spec limits one query to 90 days.
_MAX_RANGE = timedelta(days=90)


@dataclass(slots=True)
class SimUpdate:
    update_id: int
    at: datetime
    status: str
    text: str


@dataclass(slots=True)
class SimCase:
    id: str
    town: str
    town_name: str
    village: str
    group: int
    channel: str
    kind: str
    category: str
    service_code: str
    department: str
    summary: str
    first_name: str
    last_name: str
    phone: str
    received: datetime
    updated: datetime
    lat: float
    long: float
    stage: str = "registered"
    outcome: str | None = None
    satisfaction: str | None = None
    supervised: bool = False
    resolved_at: datetime | None = None
    replied_at: datetime | None = None
    #: An Open311 status that overrides the stage (duplicate, hidden, ...).
    withdrawn_status: str | None = None
    updates: list[SimUpdate] = field(default_factory=list)

    @property
    def requester_name(self) -> str:
        return self.last_name + self.first_name

    @property
    def status(self) -> str:
        if self.withdrawn_status:
            return self.withdrawn_status
        if self.stage == "resolved":
            return _RESOLVED_STATUS.get(self.outcome or "resolved", "closed")
        return _OPEN311_STATUS[self.stage]


def _iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    return dt.astimezone(SHANGHAI).replace(microsecond=0).isoformat()


class Simulator:
    """A deterministic Open311 case system; `app` is its ASGI application."""

    def __init__(
        self,
        towns: Sequence[tuple[str, str]] = DEFAULT_TOWNS,
        *,
        seed: int = 1,
        step_seconds: float = 5.0,
        initial_cases: int = 40,
        max_results: int = 1000,
        api_key: str | None = None,
        jurisdiction_id: str | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if not towns:
            raise ValueError("the simulator needs at least one town")
        self.towns = tuple(towns)
        self.step_seconds = step_seconds
        self.max_results = max_results
        self.api_key = api_key
        self.jurisdiction_id = jurisdiction_id
        #: Seconds to wait before answering (to test client timeouts).
        self.delay = 0.0
        #: Requests answered on the requests endpoint, including failures.
        self.hits = 0
        self._fail: list[int] = []
        self._clock = clock or (lambda: datetime.now(UTC))
        self._rng = random.Random(seed)
        self._seq: dict[str, int] = {}
        self._update_seq = 0
        self.cases: dict[str, SimCase] = {}
        now = self._now()
        for _ in range(initial_cases):
            self._seed_case(now)
        self.app = self._build_app()

    def _now(self) -> datetime:
        return self._clock().astimezone(UTC).replace(microsecond=0)

    # -- inventing cases -----------------------------------------------------

    def _new_case(self, received: datetime) -> SimCase:
        rng = self._rng
        slug, town_name = rng.choice(self.towns)
        village = rng.choice(_VILLAGES.get(slug, _GENERIC_VILLAGES))
        group = rng.randint(1, 12)
        tpl = rng.choice(_TEMPLATES)
        surname, given = rng.choice(_SURNAMES), rng.choice(_GIVEN)
        phone = "1" + rng.choice("3589") + "".join(str(rng.randint(0, 9)) for _ in range(9))
        honorific = rng.choice(_HONORIFIC)
        person = f"{surname}{given}{honorific}" if honorific else f"村民{surname}{given}"
        summary = tpl.text.format(
            person=person,
            name=surname + given,
            phone=phone,
            village=village,
            group=group,
            town=town_name,
        )
        prefix = _PREFIXES.get(slug, slug[:2].upper())
        year = received.astimezone(SHANGHAI).year
        key = f"{prefix}{year}"
        self._seq[key] = self._seq.get(key, 0) + 1
        kind = tpl.kind
        return SimCase(
            id=f"{key}-{self._seq[key]:04d}",
            town=slug,
            town_name=town_name,
            village=village,
            group=group,
            channel=rng.choice(_CHANNELS),
            kind=kind,
            category=tpl.category,
            service_code=tpl.code,
            department=rng.choice(tpl.departments),
            summary=summary,
            first_name=given,
            last_name=surname,
            phone=phone,
            received=received,
            updated=received,
            lat=round(29.34 + rng.uniform(-0.15, 0.15), 5),
            long=round(105.29 + rng.uniform(-0.15, 0.15), 5),
            supervised=rng.random() < 0.08,
        )

    def _seed_case(self, now: datetime) -> None:
        age = timedelta(seconds=self._rng.randint(3600, 60 * 86400))
        case = self._new_case(now - age)
        # Older cases are further along, as in a real ledger.
        steps = max(0, min(5, int(age.days / 7) + self._rng.randint(-1, 1)))
        if self._rng.random() < 0.12:
            # Some cases lag behind (some overdue) and the commission supervises
            # (督办) about half of those: the county view needs them.
            steps = min(steps, 2)
            case.supervised = case.supervised or self._rng.random() < 0.5
        gap = (age - timedelta(minutes=30)) / 6
        for i in range(steps):
            self._step(case, case.received + gap * (i + 1))
        self.cases[case.id] = case

    def _pick_outcome(self) -> str:
        roll = self._rng.random()
        return "resolved" if roll < 0.75 else "explained" if roll < 0.92 else "planned"

    def _pick_satisfaction(self) -> str:
        roll = self._rng.random()
        if roll < 0.8:
            return "satisfied"
        return "basically_satisfied" if roll < 0.95 else "dissatisfied"

    def _record_update(self, case: SimCase, at: datetime) -> None:
        if case.stage == "resolved":
            template = _RESOLVED_NOTES[case.outcome or "resolved"]
        elif case.stage in _PROGRESS_NOTES:
            template = _PROGRESS_NOTES[case.stage]
        else:
            return
        self._update_seq += 1
        text = template.format(department=case.department)
        case.updates.append(SimUpdate(self._update_seq, at, case.status, text))

    def _step(self, case: SimCase, at: datetime) -> bool:
        at = at.replace(microsecond=0)  # Open311 times have whole seconds
        index = _STAGE_ORDER.index(case.stage)
        if index + 1 >= len(_STAGE_ORDER) or case.withdrawn_status:
            return False
        case.stage = _STAGE_ORDER[index + 1]
        if case.stage == "resolved":
            case.outcome = self._pick_outcome()
            case.resolved_at = at
        elif case.stage == "replied":
            case.satisfaction = self._pick_satisfaction()
            case.replied_at = at
        case.updated = at
        self._record_update(case, at)
        return True

    def file_case(self) -> SimCase:
        """File a new case now (registered) and return it."""
        now = self._now()
        case = self._new_case(now)
        self.cases[case.id] = case
        return case

    def advance(self) -> list[str]:
        """Move one to three cases one stage forward and sometimes file a new case.

        Deterministic for a given seed and call sequence. Returns the changed ids.
        """
        now = self._now()
        movable = sorted(
            (c for c in self.cases.values() if c.stage != "verified" and not c.withdrawn_status),
            key=lambda c: c.id,
        )
        changed: list[str] = []
        if movable:
            count = min(len(movable), self._rng.randint(1, 3))
            for case in self._rng.sample(movable, count):
                if self._step(case, now):
                    changed.append(case.id)
        if self._rng.random() < 0.35:
            changed.append(self.file_case().id)
        return changed

    def set_stage(
        self,
        case_id: str,
        stage: str,
        outcome: str | None = None,
        *,
        satisfaction: str | None = None,
        supervised: bool | None = None,
    ) -> SimCase:
        """Put a case in a stage directly (for tests); bumps updated_datetime."""
        if stage not in _STAGE_ORDER:
            raise ValueError(f"unknown stage {stage!r}")
        case = self.cases[case_id]
        now = max(self._now(), case.updated)
        case.stage = stage
        case.withdrawn_status = None
        after = _STAGE_ORDER.index(stage) >= _STAGE_ORDER.index("resolved")
        case.outcome = (outcome or case.outcome or "resolved") if after else None
        if after and case.resolved_at is None:
            case.resolved_at = now
        if not after:
            case.resolved_at = None
        if satisfaction is not None:
            case.satisfaction = satisfaction
        if supervised is not None:
            case.supervised = supervised
        case.updated = now
        self._record_update(case, now)
        return case

    def withdraw(self, case_id: str, status: str = "duplicate") -> SimCase:
        """Mark a case withdrawn with an Open311 status such as duplicate or hidden."""
        case = self.cases[case_id]
        case.withdrawn_status = status
        case.updated = max(self._now(), case.updated)
        return case

    def fail_next(self, count: int, status: int = 503) -> None:
        """Answer the next `count` requests with an Open311 error body."""
        self._fail.extend([status] * count)

    async def run(self, stop: asyncio.Event) -> None:
        """Advance every step_seconds until `stop` is set."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.step_seconds)
            if not stop.is_set():
                self.advance()

    # -- Open311 representation ----------------------------------------------

    def as_open311(self, case: SimCase, *, extensions: bool = False) -> dict[str, Any]:
        item: dict[str, Any] = {
            "service_request_id": case.id,
            "status": case.status,
            "status_notes": case.updates[-1].text if case.updates else None,
            "service_name": case.category,
            "service_code": case.service_code,
            "description": case.summary,
            "agency_responsible": case.department,
            "service_notice": None,
            "requested_datetime": _iso(case.received),
            "updated_datetime": _iso(case.updated),
            "expected_datetime": None,
            "address": f"四川省隆昌市{case.town_name}{case.village}{case.group}组",
            "address_id": None,
            "zipcode": "642150",
            "lat": case.lat,
            "long": case.long,
            "media_url": None,
            "first_name": case.first_name,
            "last_name": case.last_name,
            "phone": case.phone,
            "extended_attributes": {
                "village": case.village,
                "channel": case.channel,
                "kind": case.kind,
                "stage": None if case.withdrawn_status else case.stage,
                "outcome": case.outcome,
                "supervised": case.supervised,
                "satisfaction": case.satisfaction,
                "resolved_datetime": _iso(case.resolved_at),
                "replied_datetime": _iso(case.replied_at),
            },
        }
        if extensions:
            item["notes"] = [
                {"datetime": _iso(u.at), "summary": u.text, "type": "activity"}
                for u in case.updates
            ]
        return item

    # -- HTTP ------------------------------------------------------------------

    def _build_app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/open311/v2/discovery.{fmt}", self._discovery),
                Route("/open311/v2/services.{fmt}", self._services),
                Route("/open311/v2/requests.{fmt}", self._requests),
                Route("/open311/v2/requests/{case_id}.{fmt}", self._request),
                Route("/open311/v2/servicerequestupdates.{fmt}", self._updates),
            ]
        )

    async def _gate(self, request: Request) -> Response | None:
        """Common checks: injected failures, delay, format, key and jurisdiction."""
        fmt = request.path_params["fmt"]
        if self.delay:
            await asyncio.sleep(self.delay)
        if self._fail:
            status = self._fail.pop(0)
            return _error(fmt, status, "系统维护中，请稍后再试")
        if fmt not in ("json", "xml"):
            return _error("json", 404, "format must be json or xml")
        q = request.query_params
        if self.api_key is not None and q.get("api_key") != self.api_key:
            return _error(fmt, 403, "Invalid api_key")
        if self.jurisdiction_id is not None and q.get("jurisdiction_id") not in (
            None,
            self.jurisdiction_id,
        ):
            return _error(fmt, 404, "Invalid jurisdiction_id")
        return None

    async def _discovery(self, request: Request) -> Response:
        refused = await self._gate(request)
        if refused:
            return refused
        return JSONResponse(
            {
                "changeset": "2026-01-01",
                "contact": "隆昌市群众诉求演示系统（模拟）",
                "endpoints": [
                    {
                        "specification": "http://wiki.open311.org/GeoReport_v2",
                        "url": str(request.base_url).rstrip("/") + "/open311/v2",
                        "type": "test",
                        "formats": ["application/json", "text/xml"],
                    }
                ],
            }
        )

    async def _services(self, request: Request) -> Response:
        refused = await self._gate(request)
        if refused:
            return refused
        items = [
            {
                "service_code": code,
                "service_name": name,
                "description": name,
                "metadata": False,
                "type": "realtime",
                "keywords": None,
                "group": "群众诉求",
            }
            for code, name in _SERVICES
        ]
        return _answer(request.path_params["fmt"], "services", "service", items)

    def _window(self, q: Mapping[str, str]) -> tuple[datetime, datetime] | str:
        now = self._now()
        try:
            start_raw = q.get("start_date") or q.get("updated_after")
            end_raw = q.get("end_date") or q.get("updated_before")
            end = parse_datetime(end_raw, "end_date") if end_raw else now
            start = parse_datetime(start_raw, "start_date") if start_raw else end - _MAX_RANGE
        except RecordError as exc:
            return str(exc)
        if end - start > _MAX_RANGE:
            return "start_date and end_date may be at most 90 days apart"
        return start, end

    async def _requests(self, request: Request) -> Response:
        self.hits += 1
        refused = await self._gate(request)
        if refused:
            return refused
        fmt = request.path_params["fmt"]
        q = request.query_params
        window = self._window(q)
        if isinstance(window, str):
            return _error(fmt, 400, window)
        start, end = window
        cases = [c for c in self.cases.values() if start <= c.updated <= end]
        if q.get("service_request_id"):
            wanted = set(q["service_request_id"].split(","))
            cases = [c for c in self.cases.values() if c.id in wanted]
        if q.get("status"):
            statuses = set(q["status"].split(","))
            cases = [c for c in cases if c.status in statuses]
        if q.get("service_code"):
            cases = [c for c in cases if c.service_code == q["service_code"]]
        cases.sort(key=lambda c: (c.updated, c.id))
        page_size_raw, page_raw = q.get("page_size"), q.get("page")
        if page_size_raw or page_raw:
            try:
                size = min(max(int(page_size_raw or 50), 1), self.max_results)
                page = max(int(page_raw or 1), 1)
            except ValueError:
                return _error(fmt, 400, "page and page_size must be whole numbers")
            cases = cases[(page - 1) * size : page * size]
        else:
            cases = cases[: self.max_results]
        extensions = q.get("extensions") == "true"
        items = [self.as_open311(c, extensions=extensions) for c in cases]
        return _answer(fmt, "service_requests", "request", items)

    async def _request(self, request: Request) -> Response:
        refused = await self._gate(request)
        if refused:
            return refused
        fmt = request.path_params["fmt"]
        case = self.cases.get(request.path_params["case_id"])
        if case is None:
            return _error(fmt, 404, "service_request_id not found")
        extensions = request.query_params.get("extensions") == "true"
        return _answer(
            fmt, "service_requests", "request", [self.as_open311(case, extensions=extensions)]
        )

    async def _updates(self, request: Request) -> Response:
        refused = await self._gate(request)
        if refused:
            return refused
        fmt = request.path_params["fmt"]
        window = self._window(request.query_params)
        if isinstance(window, str):
            return _error(fmt, 400, window)
        start, end = window
        updates = sorted(
            ((c, u) for c in self.cases.values() for u in c.updates if start <= u.at <= end),
            key=lambda cu: cu[1].update_id,
        )
        items: list[dict[str, Any]] = [
            {
                "update_id": str(u.update_id),
                "service_request_id": c.id,
                "status": u.status,
                "updated_datetime": _iso(u.at),
                "description": u.text,
                "media_url": None,
            }
            for c, u in updates
        ]
        if fmt == "json":
            return JSONResponse({"service_request_updates": items})
        return _answer(fmt, "service_request_updates", "request_update", items)


# -- encoding ------------------------------------------------------------------

_SINGULAR = {"notes": "note", "keywords": "keyword"}


def _fill(elem: ElementTree.Element, value: Any) -> None:
    if isinstance(value, Mapping):
        for key, sub in value.items():
            _fill(ElementTree.SubElement(elem, key), sub)
    elif isinstance(value, list):
        child_tag = _SINGULAR.get(elem.tag, "item")
        for sub in value:
            _fill(ElementTree.SubElement(elem, child_tag), sub)
    elif isinstance(value, bool):
        elem.text = "true" if value else "false"
    elif value is not None:
        elem.text = str(value)


def _xml(root_tag: str, item_tag: str, items: Sequence[Mapping[str, Any]]) -> bytes:
    root = ElementTree.Element(root_tag)
    for item in items:
        _fill(ElementTree.SubElement(root, item_tag), item)
    body = ElementTree.tostring(root, encoding="unicode")
    return ('<?xml version="1.0" encoding="utf-8"?>\n' + body).encode()


def _answer(fmt: str, root_tag: str, item_tag: str, items: list[dict[str, Any]]) -> Response:
    if fmt == "xml":
        return Response(_xml(root_tag, item_tag, items), media_type="text/xml; charset=utf-8")
    return JSONResponse(items)


def _error(fmt: str, status: int, description: str) -> Response:
    errors = [{"code": status, "description": description}]
    if fmt == "xml":
        return Response(
            _xml("errors", "error", errors), status, media_type="text/xml; charset=utf-8"
        )
    return JSONResponse(errors, status)


# -- serving -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunningServer:
    host: str
    port: int

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def open311_url(self) -> str:
        return f"{self.base_url}/open311/v2"


class _QuietServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._exit = asyncio.Event()

    # The embedding process owns the signals (Ctrl-C must stop `yizheng demo`,
    # not just the simulator).
    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield

    async def startup(self, sockets: list[Any] | None = None) -> None:
        try:
            await super().startup(sockets)
        except SystemExit:
            # uvicorn ends the process when it cannot bind; here that must be an
            # error for the caller, not the end of `yizheng demo` or the test run.
            self.should_exit = True

    def request_exit(self) -> None:
        self.should_exit = True
        self._exit.set()

    async def main_loop(self) -> None:
        # uvicorn polls should_exit every 0.1 s; waiting on an event makes stopping
        # immediate (tests start and stop many servers). on_tick still refreshes the
        # Date header once a second (it does so when counter % 10 == 0).
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 10) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._exit.wait(), 1.0)


@contextlib.asynccontextmanager
async def serve_app(
    app: Any, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[RunningServer]:
    """Serve an ASGI app with uvicorn on host:port (0: a free port) for the block."""
    config = uvicorn.Config(
        app, host=host, port=port, lifespan="off", log_level="warning", access_log=False
    )
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise OSError(f"cannot listen on {host}:{port}")
            await asyncio.sleep(0.005)
        real_port = server.servers[0].sockets[0].getsockname()[1]
        yield RunningServer(host, real_port)
    finally:
        server.request_exit()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def serve_simulator(
    sim: Simulator, host: str = "127.0.0.1", port: int = 0, *, advance: bool = False
) -> AsyncIterator[RunningServer]:
    """Serve the simulator; with advance=True it also moves cases every step_seconds.

    `server.open311_url` is the URL to configure as an open311 feed.
    """
    async with serve_app(sim.app, host, port) as server:
        stop = asyncio.Event()
        runner = asyncio.create_task(sim.run(stop)) if advance else None
        try:
            yield server
        finally:
            stop.set()
            if runner is not None:
                await runner
