"""Settings: one validated, immutable object built at start-up.

Sources, later ones winning: built-in defaults, the TOML file, and
`YIZHENG_*` environment variables for scalar keys (`YIZHENG_DATABASE_URL`,
`YIZHENG_SECRET_KEY`, `YIZHENG_SSE_HEARTBEAT`, ...). A bad value raises
SettingsError naming the key, and the service does not start.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


class SettingsError(ValueError):
    """A configuration value is missing or wrong; the message names the key."""


@dataclass(frozen=True)
class Town:
    slug: str
    name: str
    first_reply_days: int | None = None
    villages: tuple[str, ...] = ()


@dataclass(frozen=True)
class Deadlines:
    consult_workdays: int = 5
    general_workdays: int = 30
    extra_holidays: tuple[date, ...] = ()
    extra_workdays: tuple[date, ...] = ()


@dataclass(frozen=True)
class Board:
    id: str
    town: str | None  # None: the whole county
    kind: str = "led"  # led | kiosk
    name: str = ""
    width: int = 128
    height: int = 32
    color: str = "mono"  # mono | dual | rgb
    font_size: int = 16
    page_seconds: float = 6.0
    scroll_speed: int = 32  # pixels per second for marquee text
    brightness: tuple[tuple[str, int], ...] = (("06:00", 100), ("20:00", 40))
    content: tuple[str, ...] = ("title", "stats", "cases", "notices")
    title: str = ""
    token: str | None = None


@dataclass(frozen=True)
class Feed:
    name: str
    kind: str  # open311 | ledger | jsonapi | webhook | simulator
    interval: float = 60.0
    url: str | None = None
    secret: str | None = None
    path: str | None = None
    staleness: float = 900.0
    #: Adapter-specific keys (jurisdiction_id, api_key, towns, statuses, columns, ...).
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Privacy:
    sensitive_keywords: tuple[str, ...] = ()


@dataclass(frozen=True)
class Sse:
    heartbeat: float = 15.0
    retry_ms: int = 3000
    retention_events: int = 100_000
    retention_days: float = 7.0
    poll_interval: float = 0.5
    send_buffer: int = 256 * 1024


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///yizheng.db"
    secret_key: str = ""
    deadlines: Deadlines = field(default_factory=Deadlines)
    towns: tuple[Town, ...] = ()
    boards: tuple[Board, ...] = ()
    feeds: tuple[Feed, ...] = ()
    privacy: Privacy = field(default_factory=Privacy)
    sse: Sse = field(default_factory=Sse)
    county_name: str = "隆昌市"
    https: bool = False
    #: Run the feeds in this process (several processes: one wins a lock).
    run_feeds: bool = True

    def town(self, key: str | None) -> Town | None:
        """Find a town by slug or by its configured Chinese name."""
        if not key:
            return None
        for t in self.towns:
            if key in (t.slug, t.name):
                return t
        return None

    def board(self, board_id: str) -> Board | None:
        for b in self.boards:
            if b.id == board_id:
                return b
        return None

    def feed(self, name: str) -> Feed | None:
        for f in self.feeds:
            if f.name == name:
                return f
        return None

    @property
    def sqlite_path(self) -> str | None:
        if self.database_url.startswith("sqlite:///"):
            return self.database_url[len("sqlite:///") :]
        return None


# --- validation helpers -------------------------------------------------------


def _int(
    d: Mapping[str, Any],
    key: str,
    where: str,
    default: int,
    lo: int | None = None,
    hi: int | None = None,
) -> int:
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int):
        raise SettingsError(f"{where}.{key}: must be an integer, got {v!r}")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise SettingsError(f"{where}.{key}: must be between {lo} and {hi}, got {v}")
    return v


def _num(d: Mapping[str, Any], key: str, where: str, default: float, lo: float = 0.0) -> float:
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise SettingsError(f"{where}.{key}: must be a number, got {v!r}")
    if v < lo:
        raise SettingsError(f"{where}.{key}: must be at least {lo}, got {v}")
    return float(v)


def _str(
    d: Mapping[str, Any],
    key: str,
    where: str,
    default: str | None = None,
    choices: tuple[str, ...] | None = None,
) -> str:
    v = d.get(key, default)
    if v is None:
        raise SettingsError(f"{where}.{key}: required")
    if not isinstance(v, str):
        raise SettingsError(f"{where}.{key}: must be a string, got {v!r}")
    if choices and v not in choices:
        raise SettingsError(f"{where}.{key}: must be one of {', '.join(choices)}, got {v!r}")
    return v


def _opt_str(d: Mapping[str, Any], key: str, where: str) -> str | None:
    v = d.get(key)
    if v is None:
        return None
    if not isinstance(v, str):
        raise SettingsError(f"{where}.{key}: must be a string, got {v!r}")
    return v


def _dates(d: Mapping[str, Any], key: str, where: str) -> tuple[date, ...]:
    out = []
    for v in d.get(key, []):
        if isinstance(v, date):
            out.append(v)
        elif isinstance(v, str):
            try:
                out.append(date.fromisoformat(v))
            except ValueError:
                raise SettingsError(f"{where}.{key}: {v!r} is not a date (YYYY-MM-DD)") from None
        else:
            raise SettingsError(f"{where}.{key}: {v!r} is not a date (YYYY-MM-DD)")
    return tuple(out)


def _slug(v: str, where: str) -> str:
    if not SLUG_RE.match(v):
        raise SettingsError(
            f"{where}: {v!r} must be lower-case letters, digits, - or _ (at most 40)"
        )
    return v


def _table(d: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    v = d.get(key, {})
    if not isinstance(v, Mapping):
        raise SettingsError(f"{key}: must be a table")
    return v


def _list(d: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    v = d.get(key, [])
    if not isinstance(v, list) or not all(isinstance(i, Mapping) for i in v):
        raise SettingsError(f"{key}: must be an array of tables ([[{key}]])")
    return v


BOARD_KEYS = {
    "id",
    "town",
    "kind",
    "name",
    "width",
    "height",
    "color",
    "font_size",
    "page_seconds",
    "scroll_speed",
    "brightness",
    "content",
    "title",
    "token",
}
FEED_KINDS = ("open311", "ledger", "jsonapi", "webhook", "simulator")
CONTENT_KINDS = ("title", "stats", "cases", "notices")


def _board(raw: Mapping[str, Any], i: int, towns: set[str]) -> Board:
    where = f"boards[{i}]"
    unknown = set(raw) - BOARD_KEYS
    if unknown:
        raise SettingsError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    bid = _slug(_str(raw, "id", where), f"{where}.id")
    town = _opt_str(raw, "town", where)
    if town is not None and town not in towns:
        raise SettingsError(f"{where}.town: {town!r} is not a configured town slug")
    kind = _str(raw, "kind", where, "led", ("led", "kiosk"))
    brightness_raw = raw.get("brightness", [["06:00", 100], ["20:00", 40]])
    brightness = []
    if not isinstance(brightness_raw, list):
        raise SettingsError(f'{where}.brightness: must be a list of ["HH:MM", percent]')
    for item in brightness_raw:
        if (
            not isinstance(item, list)
            or len(item) != 2
            or not isinstance(item[0], str)
            or not re.match(r"^\d\d:\d\d$", item[0])
            or not isinstance(item[1], int)
            or not 0 <= item[1] <= 100
        ):
            raise SettingsError(f'{where}.brightness: each entry is ["HH:MM", 0..100]')
        brightness.append((item[0], item[1]))
    content = raw.get("content", list(CONTENT_KINDS))
    if not isinstance(content, list) or any(c not in CONTENT_KINDS for c in content):
        raise SettingsError(f"{where}.content: a list of {', '.join(CONTENT_KINDS)}")
    return Board(
        id=bid,
        town=town,
        kind=kind,
        name=_str(raw, "name", where, ""),
        width=_int(raw, "width", where, 128, 16, 4096),
        height=_int(raw, "height", where, 32, 16, 4096),
        color=_str(raw, "color", where, "mono", ("mono", "dual", "rgb")),
        font_size=_int(
            raw, "font_size", where, 16 if _int(raw, "height", where, 32) >= 32 else 12, 12, 16
        ),
        page_seconds=_num(raw, "page_seconds", where, 6.0, 1.0),
        scroll_speed=_int(raw, "scroll_speed", where, 32, 1, 1000),
        brightness=tuple(brightness),
        content=tuple(content),
        title=_str(raw, "title", where, ""),
        token=_opt_str(raw, "token", where),
    )


def _feed(raw: Mapping[str, Any], i: int) -> Feed:
    where = f"feeds[{i}]"
    name = _slug(_str(raw, "name", where), f"{where}.name")
    kind = _str(raw, "kind", where, None, FEED_KINDS)
    url = _opt_str(raw, "url", where)
    if kind in ("open311", "jsonapi") and not url:
        raise SettingsError(f"{where}.url: required for kind {kind!r}")
    if url and not re.match(r"^https?://", url):
        raise SettingsError(f"{where}.url: must start with http:// or https://")
    secret = _opt_str(raw, "secret", where)
    if kind == "webhook" and (not secret or len(secret) < 16):
        raise SettingsError(f"{where}.secret: a webhook feed needs a secret of 16+ characters")
    path = _opt_str(raw, "path", where)
    if kind == "ledger" and not path:
        raise SettingsError(f"{where}.path: required for kind 'ledger'")
    base = {"name", "kind", "interval", "url", "secret", "path", "staleness"}
    return Feed(
        name=name,
        kind=kind,
        interval=_num(raw, "interval", where, 60.0, 0.1),
        url=url,
        secret=secret,
        path=path,
        staleness=_num(raw, "staleness", where, 900.0, 1.0),
        options={k: v for k, v in raw.items() if k not in base},
    )


def parse(data: Mapping[str, Any]) -> Settings:
    """Validate a settings mapping (from TOML plus environment)."""
    known = {
        "database",
        "deadlines",
        "towns",
        "boards",
        "feeds",
        "privacy",
        "sse",
        "secret_key",
        "county_name",
        "https",
        "run_feeds",
    }
    unknown = set(data) - known
    if unknown:
        raise SettingsError(f"unknown key(s) {', '.join(sorted(unknown))}")
    db = _table(data, "database")
    url = _str(db, "url", "database", "sqlite:///yizheng.db")
    if not (url.startswith("sqlite:///") or url.startswith(("postgresql://", "postgres://"))):
        raise SettingsError("database.url: must start with sqlite:/// or postgresql://")
    dl = _table(data, "deadlines")
    deadlines = Deadlines(
        consult_workdays=_int(dl, "consult_workdays", "deadlines", 5, 1, 365),
        general_workdays=_int(dl, "general_workdays", "deadlines", 30, 1, 365),
        extra_holidays=_dates(dl, "extra_holidays", "deadlines"),
        extra_workdays=_dates(dl, "extra_workdays", "deadlines"),
    )
    towns: list[Town] = []
    for i, raw in enumerate(_list(data, "towns")):
        where = f"towns[{i}]"
        slug = _slug(_str(raw, "slug", where), f"{where}.slug")
        frd = raw.get("first_reply_days")
        if frd is not None:
            frd = _int(raw, "first_reply_days", where, 0, 1, 365)
        villages = raw.get("villages", [])
        if not isinstance(villages, list) or not all(isinstance(v, str) for v in villages):
            raise SettingsError(f"{where}.villages: must be a list of names")
        towns.append(
            Town(
                slug=slug,
                name=_str(raw, "name", where),
                first_reply_days=frd,
                villages=tuple(villages),
            )
        )
    slugs = [t.slug for t in towns]
    if len(set(slugs)) != len(slugs):
        raise SettingsError("towns: slugs must be unique")
    boards = tuple(_board(raw, i, set(slugs)) for i, raw in enumerate(_list(data, "boards")))
    if len({b.id for b in boards}) != len(boards):
        raise SettingsError("boards: ids must be unique")
    feeds = tuple(_feed(raw, i) for i, raw in enumerate(_list(data, "feeds")))
    if len({f.name for f in feeds}) != len(feeds):
        raise SettingsError("feeds: names must be unique")
    pv = _table(data, "privacy")
    kw = pv.get("sensitive_keywords")
    if kw is not None and (
        not isinstance(kw, list) or not all(isinstance(k, str) and k for k in kw)
    ):
        raise SettingsError("privacy.sensitive_keywords: must be a list of non-empty strings")
    sse = _table(data, "sse")
    https = data.get("https", False)
    if not isinstance(https, bool):
        raise SettingsError(f"https: must be true or false, got {https!r}")
    run_feeds = data.get("run_feeds", True)
    if not isinstance(run_feeds, bool):
        raise SettingsError(f"run_feeds: must be true or false, got {run_feeds!r}")
    secret_key = _str(data, "secret_key", "settings", "")
    return Settings(
        database_url=url,
        secret_key=secret_key,
        deadlines=deadlines,
        towns=tuple(towns),
        boards=boards,
        feeds=feeds,
        privacy=Privacy(sensitive_keywords=tuple(kw) if kw is not None else ()),
        sse=Sse(
            heartbeat=_num(sse, "heartbeat", "sse", 15.0, 0.05),
            retry_ms=_int(sse, "retry_ms", "sse", 3000, 100, 600_000),
            retention_events=_int(sse, "retention_events", "sse", 100_000, 10),
            retention_days=_num(sse, "retention_days", "sse", 7.0, 0.001),
            poll_interval=_num(sse, "poll_interval", "sse", 0.5, 0.01),
            send_buffer=_int(sse, "send_buffer", "sse", 256 * 1024, 1024),
        ),
        county_name=_str(data, "county_name", "settings", "隆昌市"),
        https=https,
        run_feeds=run_feeds,
    )


ENV_KEYS: dict[str, tuple[str, ...]] = {
    "YIZHENG_DATABASE_URL": ("database", "url"),
    "YIZHENG_SECRET_KEY": ("secret_key",),
    "YIZHENG_COUNTY_NAME": ("county_name",),
    "YIZHENG_HTTPS": ("https",),
    "YIZHENG_RUN_FEEDS": ("run_feeds",),
    "YIZHENG_SSE_HEARTBEAT": ("sse", "heartbeat"),
    "YIZHENG_SSE_RETRY_MS": ("sse", "retry_ms"),
    "YIZHENG_SSE_RETENTION_EVENTS": ("sse", "retention_events"),
    "YIZHENG_SSE_RETENTION_DAYS": ("sse", "retention_days"),
    "YIZHENG_SSE_POLL_INTERVAL": ("sse", "poll_interval"),
}


def _env_value(name: str, raw: str) -> Any:
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    if re.fullmatch(r"-?\d+", raw):
        return int(raw)
    if re.fullmatch(r"-?\d+\.\d*", raw):
        return float(raw)
    return raw


def load(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read the TOML file (default: ./yizheng.toml when present) and the environment."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    if path is None and Path("yizheng.toml").exists():
        path = "yizheng.toml"
    if path is not None:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SettingsError(f"config file {p} not found") from None
        except tomllib.TOMLDecodeError as e:
            raise SettingsError(f"config file {p}: {e}") from None
    for name, keys in ENV_KEYS.items():
        if name in env:
            target = data
            for k in keys[:-1]:
                target = target.setdefault(k, {})
            value = env[name]
            target[keys[-1]] = (
                value
                if keys[-1] in ("url", "secret_key", "county_name")
                else _env_value(name, value)
            )
    return parse(data)
