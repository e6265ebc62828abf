"""Fixed demonstration content for the LED renderer (tests, benchmark, docs).

Wording follows the township reports; every name is already anonymized the
way ingest would (张某), and the sensitive case shows only its category.
"""

from __future__ import annotations

from datetime import UTC, datetime

from display.domain import Notice, PublicCase, Stats
from display.led.content import LedContent

AT = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # 2026-03-02 10:00 in Asia/Shanghai


def sample_case(
    no: str,
    *,
    stage: str = "in_progress",
    category: str | None = "道路交通",
    summary: str | None = None,
    town: str = "longshi",
    overdue: bool = False,
    supervised: bool = False,
    sensitive: bool = False,
) -> PublicCase:
    return PublicCase(
        no=no,
        town=town,
        stage=stage,
        kind="general",
        received_at=AT,
        updated_at=AT,
        category=category,
        summary=summary,
        overdue=overdue,
        supervised=supervised,
        sensitive=sensitive,
    )


def sample_content(
    *, town_name: str = "龙市镇", urgent: bool = False, stale: bool = False, cases: int = 3
) -> LedContent:
    pool: list[tuple[PublicCase, int | None]] = [
        (sample_case("LS2026-0015", stage="assigned", category="环境卫生", overdue=True), -2),
        (
            sample_case(
                "LS2026-0021",
                stage="registered",
                category="社会救助",
                sensitive=True,
                supervised=True,
            ),
            12,
        ),
        (sample_case("LS2026-0012", summary="村道路灯不亮，夜间出行不便"), 3),
        (sample_case("LS2026-0030", category="农业农村", summary="灌溉渠渗漏，请求维修"), 21),
        (sample_case("LS2026-0031", stage="assigned", category="供水供电"), 0),
    ]
    notice = Notice(
        id=1,
        town="longshi",
        title="办结公示",
        body="LS2026-0003 张某反映的灌溉渠堵塞问题已于2026年3月1日疏通完毕，回访满意。",
    )
    return LedContent(
        title="",
        town_name=town_name,
        stats=Stats(town="longshi", received=128, resolved=113, open=15, overdue=1, supervised=2),
        cases=tuple(pool[:cases]),
        notices=(notice,),
        urgent=Notice(
            id=9,
            town="longshi",
            title="停水通知",
            body="3月3日8:00至18:00镇区检修供水管网，请提前储水。",
            urgent=True,
        )
        if urgent
        else None,
        stale_since=datetime(2026, 3, 2, 1, 5, tzinfo=UTC) if stale else None,
    )
