from __future__ import annotations

from pathlib import Path

import pytest

from display.settings import SettingsError, load, parse
from tests.conftest import settings_dict

EXAMPLE = Path(__file__).resolve().parent.parent / "yizheng.example.toml"


def test_example_file_is_valid_and_has_the_towns() -> None:
    s = load(EXAMPLE, env={})
    slugs = {t.slug for t in s.towns}
    assert {"longshi", "huangjia", "shuangfeng", "xiangshi", "shinian"} <= slugs
    assert s.town("龙市镇") is not None and s.town("龙市镇").first_reply_days == 14  # type: ignore[union-attr]
    gate = s.board("longshi-gate")
    assert gate is not None and (gate.width, gate.height, gate.color) == (128, 32, "mono")
    assert any(b.kind == "kiosk" for b in s.boards)
    assert s.deadlines.consult_workdays == 5 and s.deadlines.general_workdays == 30


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    s = load(
        EXAMPLE,
        env={"YIZHENG_DATABASE_URL": f"sqlite:///{tmp_path}/x.db", "YIZHENG_SSE_HEARTBEAT": "2.5"},
    )
    assert s.database_url.endswith("/x.db")
    assert s.sse.heartbeat == 2.5


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ({"deadlines": {"general_workdays": "thirty"}}, "deadlines.general_workdays"),
        ({"database": {"url": "mysql://x"}}, "database.url"),
        ({"boards": [{"id": "b", "town": "nowhere"}]}, "boards[0].town"),
        ({"boards": [{"id": "b", "color": "purple"}]}, "boards[0].color"),
        ({"boards": [{"id": "B C"}]}, "boards[0].id"),
        ({"feeds": [{"name": "p", "kind": "webhook", "secret": "short"}]}, "feeds[0].secret"),
        ({"feeds": [{"name": "o", "kind": "open311"}]}, "feeds[0].url"),
        ({"feeds": [{"name": "o", "kind": "carrier-pigeon"}]}, "feeds[0].kind"),
        ({"towns": [{"slug": "龙市", "name": "龙市镇"}]}, "towns[0].slug"),
        ({"sse": {"heartbeat": -1}}, "sse.heartbeat"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, override: dict[str, object], key: str) -> None:
    with pytest.raises(SettingsError) as info:
        parse(settings_dict(tmp_path, **override))
    assert key in str(info.value)


def test_broken_toml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[database\nurl = 1", encoding="utf-8")
    with pytest.raises(SettingsError, match=r"bad\.toml"):
        load(bad, env={})
    with pytest.raises(SettingsError, match="not found"):
        load(tmp_path / "missing.toml", env={})
