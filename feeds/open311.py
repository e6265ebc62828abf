"""Open311 GeoReport v2 pull adapter (JSON or XML).

The crawl walks `start_date`/`end_date` windows of at most 90 days from the cursor
(minus an overlap) to now, pages through each window with the widely used
`page`/`page_size` extension, and halves a window whose answer looks truncated at
the server's cap (1000 by default). The cursor is the latest `updated_datetime`
seen, in the server's own clock, so a server whose clock lags ours loses nothing;
the overlap makes re-reading a few records normal, which is harmless because
ingest upserts by source id.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn
from xml.etree import ElementTree
from xml.parsers import expat

import httpx

from feeds import httpclient
from feeds.adapters import FeedError, TownMatcher
from feeds.record import (
    MAX_SUMMARY,
    OUTCOMES,
    STAGES,
    Batch,
    CaseRecord,
    RecordError,
    Rejected,
    parse_datetime,
    record_from_mapping,
)

log = logging.getLogger(__name__)

#: Open311 status (normalised: lower case, "_" for spaces and dashes) -> our stage,
#: "stage:outcome", or "withdrawn". Config `[feeds.statuses]` overrides entries.
DEFAULT_STATUSES: dict[str, str] = {
    "open": "registered",
    "closed": "resolved:resolved",
    "confirmed": "registered",
    "unconfirmed": "registered",
    "acknowledged": "registered",
    "investigating": "in_progress",
    "in_progress": "in_progress",
    "reopened": "in_progress",
    "action_scheduled": "assigned",
    "planned": "assigned",
    "internal_referral": "assigned",
    "fixed": "resolved:resolved",
    "not_councils_responsibility": "resolved:explained",
    "no_further_action": "resolved:explained",
    "unable_to_fix": "resolved:explained",
    "duplicate": "withdrawn",
    "hidden": "withdrawn",
    "deleted": "withdrawn",
    "withdrawn": "withdrawn",
}

#: The spec: no window may exceed 90 days.
MAX_WINDOW_DAYS = 90
#: A window shorter than this is not split further even if it looks truncated.
MIN_WINDOW = timedelta(seconds=2)
#: Note text and error descriptions from the server are cut to this length.
MAX_ERROR_TEXT = 200

_AFTER_RESOLVED = frozenset(("resolved", "replied", "verified"))
_TRUE = frozenset(("true", "1", "yes", "y", "是", "t"))
_FALSE = frozenset(("false", "0", "no", "n", "否", "f", ""))
_CJK = re.compile(r"[\u3400-\u9fff]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True, slots=True)
class StatusTarget:
    stage: str
    outcome: str | None = None
    withdrawn: bool = False


def normalize_status(text: str) -> str:
    return re.sub(r"[\s\-]+", "_", text.strip().lower())


def parse_status_target(text: str) -> StatusTarget:
    """'assigned', 'resolved:explained' or 'withdrawn'. Raises ValueError."""
    value = text.strip()
    if value == "withdrawn":
        return StatusTarget("registered", None, True)
    stage, _, outcome = value.partition(":")
    if stage not in STAGES:
        raise ValueError(f"{value!r} is not one of {', '.join(STAGES)} or 'withdrawn'")
    if outcome and outcome not in OUTCOMES:
        raise ValueError(f"outcome {outcome!r} is not one of {', '.join(OUTCOMES)}")
    return StatusTarget(stage, outcome or None)


@dataclass(frozen=True)
class Open311Config:
    url: str
    format: str = "json"
    jurisdiction_id: str | None = None
    api_key: str | None = None
    since: datetime | None = None
    #: 0 disables the page/page_size extension.
    page_size: int = 100
    #: The server's per-answer cap; a window whose answer reaches it is split.
    max_results: int = 1000
    window: timedelta = timedelta(days=MAX_WINDOW_DAYS)
    overlap: timedelta = timedelta(minutes=5)
    timeout: float = httpclient.DEFAULT_TIMEOUT
    statuses: Mapping[str, StatusTarget] = field(default_factory=dict)
    #: Send extensions=true (Chicago-style notes and extended attributes).
    extensions: bool = True
    #: Also read FixMyStreet's servicerequestupdates for timeline notes.
    updates: bool = False
    #: Query parameter names of the window (some servers filter by update time
    #: with updated_after/updated_before).
    window_params: tuple[str, str] = ("start_date", "end_date")
    #: Town for records whose address names none (a feed serving one town).
    town: str | None = None
    #: Stop a pull after this many records; the next pull continues from its cursor.
    max_records: int = 20_000
    max_pages: int = 1000
    #: town slug -> (south, west, north, east) in WGS84, for requests that carry
    #: coordinates but no recognisable address.
    areas: Mapping[str, tuple[float, float, float, float]] = field(default_factory=dict)


def _key(name: str, key: str) -> str:
    return f"feeds.{name}.{key}"


def _opt_str(name: str, config: Mapping[str, Any], key: str) -> str | None:
    value = config.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise FeedError(f"{_key(name, key)}: must be a string")
    return value.strip() or None


def _num(name: str, config: Mapping[str, Any], key: str, default: float, low: float) -> float:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < low:
        raise FeedError(f"{_key(name, key)}: must be a number >= {low:g}")
    return float(value)


def _bool(name: str, config: Mapping[str, Any], key: str, default: bool) -> bool:
    value = config.get(key, default)
    if not isinstance(value, bool):
        raise FeedError(f"{_key(name, key)}: must be true or false")
    return value


#: Keys of a feed table that this adapter reads, or that other layers own.
KNOWN_KEYS = frozenset(
    {
        "url", "format", "jurisdiction_id", "api_key", "since", "page_size", "max_results",
        "window_days", "overlap", "timeout", "statuses", "extensions", "updates",
        "window_params", "town", "towns", "areas", "max_records", "max_pages",
        # read by settings and the runner
        "name", "kind", "interval", "staleness", "path", "secret",
    }
)  # fmt: skip


def parse_config(name: str, config: Mapping[str, Any], towns: Mapping[str, str]) -> Open311Config:
    """Validate the feed's options; FeedError names the bad key."""
    unknown = sorted(str(k) for k in config if k not in KNOWN_KEYS)
    if unknown:
        # Not fatal (other layers may add keys), but a typo should not pass silently.
        log.warning("feeds.%s: unknown option(s) ignored: %s", name, ", ".join(unknown))
    url = _opt_str(name, config, "url")
    if not url or not re.match(r"^https?://", url):
        raise FeedError(f"{_key(name, 'url')}: an http:// or https:// URL is required")
    fmt = (_opt_str(name, config, "format") or "json").lower()
    if fmt not in ("json", "xml"):
        raise FeedError(f"{_key(name, 'format')}: must be 'json' or 'xml'")
    since_raw = config.get("since")
    since: datetime | None = None
    if since_raw not in (None, ""):
        try:
            since = parse_datetime(
                since_raw.isoformat() if hasattr(since_raw, "isoformat") else since_raw,
                _key(name, "since"),
            )
        except RecordError:
            raise FeedError(
                f"{_key(name, 'since')}: not a date (write 2026-01-01 or 2026-01-01T08:00)"
            ) from None
    statuses: dict[str, StatusTarget] = {}
    for key, target in {**DEFAULT_STATUSES, **{s: s for s in STAGES}}.items():
        statuses[normalize_status(key)] = parse_status_target(target)
    overrides = config.get("statuses") or {}
    if not isinstance(overrides, Mapping):
        raise FeedError(f"{_key(name, 'statuses')}: must be a table of status = stage")
    for key, target in overrides.items():
        if not isinstance(key, str) or not isinstance(target, str):
            raise FeedError(f"{_key(name, 'statuses')}: keys and values must be strings")
        try:
            statuses[normalize_status(key)] = parse_status_target(target)
        except ValueError as exc:
            raise FeedError(f"{_key(name, 'statuses')}.{key}: {exc}") from None
    window_params = config.get("window_params", ("start_date", "end_date"))
    if (
        not isinstance(window_params, list | tuple)
        or len(window_params) != 2
        or not all(isinstance(p, str) and p for p in window_params)
    ):
        raise FeedError(f"{_key(name, 'window_params')}: must be two parameter names")
    window_days = _num(name, config, "window_days", MAX_WINDOW_DAYS, 0.001)
    if window_days > MAX_WINDOW_DAYS:
        raise FeedError(f"{_key(name, 'window_days')}: Open311 allows at most 90 days")
    town = _opt_str(name, config, "town")
    if town is not None:
        slug = TownMatcher(towns).exact(town)
        if slug is None and towns:
            raise FeedError(f"{_key(name, 'town')}: {town!r} is not a configured town")
        town = slug or town
    return Open311Config(
        url=url.rstrip("/"),
        format=fmt,
        jurisdiction_id=_opt_str(name, config, "jurisdiction_id"),
        api_key=_opt_str(name, config, "api_key"),
        since=since,
        page_size=int(_num(name, config, "page_size", 100, 0)),
        max_results=int(_num(name, config, "max_results", 1000, 1)),
        window=timedelta(days=window_days),
        overlap=timedelta(seconds=_num(name, config, "overlap", 300, 0)),
        timeout=_num(name, config, "timeout", httpclient.DEFAULT_TIMEOUT, 0.01),
        statuses=statuses,
        extensions=_bool(name, config, "extensions", True),
        updates=_bool(name, config, "updates", False),
        window_params=(str(window_params[0]), str(window_params[1])),
        town=town,
        max_records=int(_num(name, config, "max_records", 20_000, 1)),
        max_pages=int(_num(name, config, "max_pages", 1000, 1)),
        areas=_parse_areas(name, config.get("areas"), towns),
    )


def _parse_areas(
    name: str, raw: Any, towns: Mapping[str, str]
) -> dict[str, tuple[float, float, float, float]]:
    if raw in (None, {}):
        return {}
    where = _key(name, "areas")
    if not isinstance(raw, Mapping):
        raise FeedError(f"{where}: must be a table of town = [south, west, north, east]")
    matcher = TownMatcher(towns)
    areas: dict[str, tuple[float, float, float, float]] = {}
    for town, box in raw.items():
        slug = matcher.exact(str(town)) if towns else str(town)
        if slug is None:
            raise FeedError(f"{where}.{town}: not a configured town")
        if (
            not isinstance(box, list | tuple)
            or len(box) != 4
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in box)
        ):
            raise FeedError(f"{where}.{town}: must be [south, west, north, east] in degrees")
        south, west, north, east = (float(v) for v in box)
        if not (-90 <= south < north <= 90 and -180 <= west < east <= 180):
            raise FeedError(f"{where}.{town}: south < north and west < east, in degrees")
        areas[slug] = (south, west, north, east)
    return areas


# -- XML ---------------------------------------------------------------------

#: Elements whose children form a list even when there is only one child.
_XML_LISTS = {
    "service_requests",
    "requests",
    "notes",
    "service_request_updates",
    "errors",
    "services",
    "keywords",
    "recipient_list",
}


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _xml_value(elem: ElementTree.Element) -> Any:
    children = list(elem)
    tag = _local(elem.tag)
    if tag in _XML_LISTS:
        return [_xml_value(c) for c in children]
    if not children:
        text = (elem.text or "").strip()
        return text or None
    out: dict[str, Any] = {}
    for child in children:
        key = _local(child.tag)
        value = _xml_value(child)
        if key in out:
            prev = out[key]
            out[key] = [*prev, value] if isinstance(prev, list) else [prev, value]
        else:
            out[key] = value
    return out


def _refuse_dtd(*_: Any) -> NoReturn:
    raise ValueError("XML with a DTD is refused")


def parse_xml(body: bytes) -> Any:
    """GeoReport XML to the same shapes as the JSON answers. Raises ValueError."""
    builder = ElementTree.TreeBuilder()
    parser = expat.ParserCreate(namespace_separator="}")
    # Refusing any DTD rules out entity expansion ("billion laughs") and external
    # entities, wherever in the document the declaration hides (as defusedxml does).
    parser.StartDoctypeDeclHandler = _refuse_dtd
    parser.EntityDeclHandler = _refuse_dtd
    parser.ExternalEntityRefHandler = _refuse_dtd
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(body, True)
        root = builder.close()
    except (expat.ExpatError, AssertionError) as exc:
        raise ValueError("not well-formed XML") from exc
    return _xml_value(root)


# -- conversion ----------------------------------------------------------------


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return value.strip() or None
    return None


def _flag(value: Any, field_name: str) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return value != 0
    if isinstance(value, str):
        folded = value.strip().lower()
        if folded in _TRUE:
            return True
        if folded in _FALSE:
            return False
    raise RecordError(field_name, "应为 true 或 false")


def _agency(value: Any) -> str | None:
    # FixMyStreet sends {"recipient": ["..."]} (or one string in XML).
    if isinstance(value, Mapping):
        value = value.get("recipient")
    if isinstance(value, list):
        names = [t for t in (_text(v) for v in value) if t]
        return "、".join(names) or None
    return _text(value)


def _person_name(first: str | None, last: str | None) -> str | None:
    if first and last:
        if _CJK.search(first + last):
            return f"{last}{first}"  # Chinese order: family name first
        return f"{first} {last}"
    return first or last


def _safe_text(value: str, limit: int = MAX_ERROR_TEXT) -> str:
    return _CONTROL.sub(" ", value).strip()[:limit]


class Open311Adapter:
    """Pulls service requests from one Open311 GeoReport v2 endpoint."""

    def __init__(
        self,
        name: str,
        config: Open311Config,
        towns: Mapping[str, str],
        *,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self._towns = TownMatcher(towns)
        self._client = client or httpclient.make_client(config.timeout)
        self._owns_client = client is None
        self._clock = clock or (lambda: datetime.now(UTC))
        #: Requests made so far (for tests and `feed status`).
        self.requests_made = 0
        #: The last pull stopped at max_records; the runner pulls again at once.
        self.has_more = False
        self._page_size = config.page_size
        self._page_size_checked = False

    @classmethod
    def from_config(
        cls, name: str, config: Mapping[str, Any], towns: Mapping[str, str]
    ) -> Open311Adapter:
        own = config.get("towns") or {}
        if not isinstance(own, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in own.items()
        ):
            raise FeedError(f"{_key(name, 'towns')}: must be a table of text = town slug")
        return cls(name, parse_config(name, config, towns), {**towns, **own})

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    # -- HTTP ----------------------------------------------------------------

    def _base_params(self) -> dict[str, str | int]:
        params: dict[str, str | int] = {}
        if self.config.jurisdiction_id:
            params["jurisdiction_id"] = self.config.jurisdiction_id
        if self.config.api_key:
            params["api_key"] = self.config.api_key
        return params

    async def _get(self, resource: str, params: Mapping[str, str | int]) -> Any:
        url = f"{self.config.url}/{resource}.{self.config.format}"
        self.requests_made += 1
        resp = await httpclient.get(self._client, url, params, feed=self.name)
        data: Any = None
        decode_error = False
        if resp.body.strip():
            try:
                if self.config.format == "xml":
                    data = parse_xml(resp.body)
                else:
                    data = json.loads(resp.body)
            except (ValueError, RecursionError):
                decode_error = True
        errors = _error_list(data)
        if resp.status_code >= 400 or errors:
            detail = f"：{errors}" if errors else ""
            raise FeedError(f"{self.name}: {resp.url} 返回 HTTP {resp.status_code}{detail}")
        if decode_error:
            raise FeedError(
                f"{self.name}: {resp.url} 的应答不是有效的 {self.config.format.upper()}"
            )
        return data

    async def _get_requests(self, params: Mapping[str, str | int]) -> list[Any]:
        data = await self._get("requests", params)
        if data is None:
            return []
        if isinstance(data, Mapping):
            for key in ("service_requests", "requests", "request"):
                if key in data:
                    data = data[key]
                    break
            else:
                data = None
            if isinstance(data, Mapping):  # one <request> in a non-list container
                data = [data]
        if not isinstance(data, list):
            raise FeedError(f"{self.name}: requests 的应答不是服务请求列表")
        return data

    def _window_params(self, start: datetime, end: datetime) -> dict[str, str | int]:
        params = self._base_params()
        p_start, p_end = self.config.window_params
        params[p_start] = _w3c(start)
        params[p_end] = _w3c(end)
        if self.config.extensions:
            params["extensions"] = "true"
        return params

    async def _get_window(self, start: datetime, end: datetime) -> tuple[list[Any], bool]:
        """One answer for one window, and whether it may be incomplete.

        A window is read with ONE request whenever possible. Paging through a window
        is not safe while the source changes: a case updated between two page
        requests leaves the window and every later case moves up a place, so one
        case is skipped — and, being older than the cursor, never read again. A
        full first page therefore counts as incomplete and the caller halves the
        window instead of asking for page 2.
        """
        params = self._window_params(start, end)
        cap = self.config.max_results
        size = self._page_size
        if size <= 0:
            items = await self._get_requests(params)
            return items, len(items) >= cap
        first = await self._get_requests({**params, "page": 1, "page_size": size})
        if len(first) > size:
            # The server ignores page_size: it answered everything (up to its cap).
            return first, len(first) >= cap
        if len(first) >= size:
            return first, True
        if first and not self._page_size_checked:
            # A short first page may only mean that the server caps page_size below
            # what we asked; look at page 2 once to learn the real page size.
            self._page_size_checked = True
            second = await self._get_requests({**params, "page": 2, "page_size": size})
            if second and _first_id(second) != _first_id(first):
                log.info("%s: the server caps page_size at %d", self.name, len(first))
                self._page_size = len(first)
                return first, True
        return first, len(first) >= cap

    async def _page_through(self, start: datetime, end: datetime) -> list[Any]:
        """Every page of a window too dense to split further (rare; not atomic)."""
        params = self._window_params(start, end)
        size = max(self._page_size, 1)
        items: list[Any] = []
        first_id: Any = None
        for page in range(1, self.config.max_pages + 1):
            got = await self._get_requests({**params, "page": page, "page_size": size})
            if page == 1:
                first_id = _first_id(got)
            elif got and _first_id(got) == first_id:
                break  # the server ignores `page`
            items.extend(got)
            if len(got) < size:
                break
        return items

    async def _crawl_window(self, start: datetime, end: datetime) -> list[Any]:
        items, incomplete = await self._get_window(start, end)
        if not incomplete:
            return items
        mid = _split_point(items, start, end)
        if end - start >= MIN_WINDOW and start < mid < end:
            return [*await self._crawl_window(start, mid), *await self._crawl_window(mid, end)]
        if self._page_size > 0:
            paged = await self._page_through(start, end)
            if len(paged) > len(items):
                return paged
        log.warning(
            "%s: %d requests between %s and %s reach the server's cap; some may be missing",
            self.name,
            len(items),
            _w3c(start),
            _w3c(end),
        )
        return items

    async def _get_updates(self, start: datetime, end: datetime) -> list[Any]:
        params = self._base_params()
        params["start_date"] = _w3c(start)
        params["end_date"] = _w3c(end)
        data = await self._get("servicerequestupdates", params)
        if isinstance(data, Mapping):
            data = data.get("service_request_updates", data.get("request_update", []))
            if isinstance(data, Mapping):
                data = [data]
        if not isinstance(data, list):
            raise FeedError(f"{self.name}: servicerequestupdates 的应答不是列表")
        return data

    # -- pull ----------------------------------------------------------------

    async def pull(self, cursor: str | None) -> Batch:
        cfg = self.config
        now = _ceil(self._clock())
        previous: datetime | None = None
        if cursor:
            try:
                previous = parse_datetime(cursor, "cursor")
            except RecordError:
                log.warning("%s: unreadable cursor; starting again from `since`", self.name)
        if previous is not None:
            start = previous - cfg.overlap
        elif cfg.since is not None:
            start = cfg.since
        else:
            start = now - timedelta(days=MAX_WINDOW_DAYS)
        start = _floor(min(start, now))

        raw: list[Any] = []
        done_until = start
        w_start = start
        self.has_more = False
        while w_start < now:
            w_end = min(w_start + cfg.window, now)
            raw.extend(await self._crawl_window(w_start, w_end))
            done_until = w_end
            w_start = w_end
            if len(raw) >= cfg.max_records:
                self.has_more = w_start < now
                break
        updates: list[Any] = []
        if cfg.updates and done_until > start:
            updates = await self._get_updates(start, done_until)

        batch = self._convert(raw, updates)
        seen = [r.updated_at for r in batch.records if r.updated_at is not None]
        if self.has_more:
            # Stopped early at a window boundary in the past: everything up to it has
            # been read, and the next pull must start beyond it even though the
            # overlap alone may fill max_records again.
            latest = done_until
        elif seen:
            # Clamp to what we asked for: a server clock ahead of ours must not
            # push the cursor past records we have not read yet.
            latest = min(max(seen), done_until)
        else:
            # Nothing changed: move on, keeping a day's margin for a lagging server clock.
            latest = done_until - max(cfg.overlap, timedelta(days=1))
        if previous is not None:
            latest = max(latest, previous)
        batch.cursor = latest.astimezone(UTC).isoformat()
        return batch

    def _convert(self, raw: Sequence[Any], updates: Sequence[Any]) -> Batch:
        notes_by_id: dict[str, list[dict[str, Any]]] = {}
        for upd in updates:
            if not isinstance(upd, Mapping):
                continue
            sid = _text(upd.get("service_request_id"))
            at = upd.get("updated_datetime")
            text = _text(upd.get("description"))
            if sid and at and text:
                note: dict[str, Any] = {"at": at, "text": text}
                target = self._status_target(_text(upd.get("status")))
                if target is not None and not target.withdrawn:
                    note["stage"] = target.stage
                notes_by_id.setdefault(sid, []).append(note)

        best: dict[str, CaseRecord] = {}
        rejected: dict[str | None, Rejected] = {}
        for i, item in enumerate(raw):
            if not isinstance(item, Mapping):
                rejected[f"#{i}"] = Rejected(None, f"requests[{i}]：不是 JSON 对象")
                continue
            sid = _text(item.get("service_request_id"))
            try:
                record = self.to_record(item, notes_by_id.get(sid or "", []))
            except RecordError as exc:
                rejected[sid or f"#{i}"] = Rejected(sid, str(exc))
                continue
            except (TypeError, ValueError, AttributeError) as exc:
                # The message of these may echo a value; keep only the type.
                rejected[sid or f"#{i}"] = Rejected(sid, f"无法解析的记录（{type(exc).__name__}）")
                continue
            rejected.pop(record.source_id, None)
            old = best.get(record.source_id)
            if old is None or _newer(record, old):
                best[record.source_id] = record
        # Overlapping windows may bring a case twice; one good version is enough.
        kept = [r for r in rejected.values() if r.source_id is None or r.source_id not in best]
        return Batch(records=list(best.values()), rejected=kept)

    def _status_target(self, status: str | None) -> StatusTarget | None:
        if not status:
            return None
        return self.config.statuses.get(normalize_status(status))

    def _town_at(self, lat_raw: Any, long_raw: Any) -> str | None:
        try:
            lat, lon = float(lat_raw), float(long_raw)
        except (TypeError, ValueError):
            return None
        # Smallest box first, so a town inside a larger district wins.
        hits = [
            ((n - s) * (e - w), slug)
            for slug, (s, w, n, e) in self.config.areas.items()
            if s <= lat <= n and w <= lon <= e
        ]
        return min(hits)[1] if hits else None

    def to_record(
        self, item: Mapping[str, Any], extra_notes: Sequence[Mapping[str, Any]] = ()
    ) -> CaseRecord:
        """One GeoReport service request as a CaseRecord. Raises RecordError."""
        ext_raw = item.get("extended_attributes")
        ext: Mapping[str, Any] = ext_raw if isinstance(ext_raw, Mapping) else {}

        def attr(key: str) -> Any:
            value = item.get(key)
            if value is None or value == "":
                value = ext.get(key)
            return value

        source_id = _text(item.get("service_request_id"))
        if not source_id:
            raise RecordError("service_request_id", "不能为空")
        status_text = _text(attr("status"))
        if not status_text:
            raise RecordError("status", "不能为空")
        target = self._status_target(status_text)
        if target is None:
            raise RecordError("status", f"无法识别的状态 {_safe_text(status_text, 40)!r}")
        stage = target.stage
        ext_stage = _text(ext.get("stage"))
        if ext_stage in STAGES and not target.withdrawn:
            stage = ext_stage
        outcome = _text(attr("outcome")) or target.outcome
        if stage not in _AFTER_RESOLVED:
            outcome = None

        town_text = _text(attr("town"))
        town = self._towns.exact(town_text) if self._towns else town_text
        for key in ("address", "area", "address_string", "zipcode", "district"):
            if town:
                break
            town = self._towns.find(_text(attr(key)))
        if not town and self.config.areas:
            town = self._town_at(attr("lat"), attr("long"))
        if not town:
            town = self.config.town
        if not town and self._towns:
            raise RecordError("town", "地址中没有已配置的乡镇")

        summary = (
            _text(item.get("description"))
            or _text(attr("detail"))
            or _text(attr("title"))
            or _text(item.get("service_name"))
        )
        updated = item.get("updated_datetime") or None
        notes: list[Mapping[str, Any]] = []
        raw_notes = attr("notes")
        if isinstance(raw_notes, Mapping):
            raw_notes = raw_notes.get("note", [raw_notes])
            if isinstance(raw_notes, Mapping):
                raw_notes = [raw_notes]
        if isinstance(raw_notes, list):
            for note in raw_notes:
                if isinstance(note, Mapping):
                    text = _text(note.get("summary")) or _text(note.get("description"))
                    notes.append({"at": note.get("datetime") or note.get("at"), "text": text})
        status_notes = _text(item.get("status_notes"))
        if status_notes and updated:
            notes.append({"at": updated, "text": status_notes, "stage": stage})
        notes.extend(extra_notes)

        name = _text(attr("requester_name")) or _person_name(
            _text(item.get("first_name")), _text(item.get("last_name"))
        )
        data: dict[str, Any] = {
            "source_id": source_id,
            "summary": summary,
            "received_at": item.get("requested_datetime") or None,
            "updated_at": updated,
            "town": town,
            "village": _text(attr("village")),
            "kind": _text(attr("kind")),
            "category": _text(item.get("service_name")) or _text(attr("category")),
            "channel": _text(attr("channel")),
            "department": _agency(item.get("agency_responsible")) or _text(attr("department")),
            "status": stage,
            "outcome": outcome,
            "resolved_at": attr("resolved_datetime") or attr("resolved_at"),
            "replied_at": attr("replied_datetime") or attr("replied_at"),
            "supervised": _flag(attr("supervised"), "supervised"),
            "satisfaction": _text(attr("satisfaction")),
            "withdrawn": target.withdrawn,
            "notes": _clean_notes(notes),
            "requester_name": name,
            "requester_phone": _text(attr("requester_phone")) or _text(item.get("phone")),
            # The request's address is often the requester's home: a hint for the
            # redactor, never stored.
            "requester_address": (
                _text(attr("requester_address")) or _text(item.get("address")) or ""
            )[:300],
        }
        if stage in _AFTER_RESOLVED and data["outcome"] is None and status_text == "closed":
            data["outcome"] = "resolved"
        return record_from_mapping(data)


def _clean_notes(notes: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Notes in time order, once each (several sources may report the same update),
    the latest 100. A note without a readable time or text is dropped, not the case."""
    unique: dict[tuple[datetime, str], dict[str, Any]] = {}
    for note in notes:
        text = _text(note.get("text"))
        if not text or not note.get("at"):
            continue
        try:
            at = parse_datetime(note["at"], "notes.at")
        except RecordError:
            continue
        key = (at, text)
        stage = note.get("stage")
        if key not in unique or (stage and not unique[key].get("stage")):
            unique[key] = {"at": at, "text": text[:MAX_SUMMARY], "stage": stage}
    return sorted(unique.values(), key=lambda n: n["at"])[-100:]


def _error_list(data: Any) -> str:
    """'code: description; …' when `data` is an Open311 error body, else ''."""
    if isinstance(data, Mapping):
        data = data.get("errors", data.get("error"))
        if isinstance(data, Mapping):
            data = [data]
    if not isinstance(data, list) or not data:
        return ""
    parts = []
    for err in data:
        if not isinstance(err, Mapping) or "description" not in err or "service_request_id" in err:
            return ""
        code = _text(err.get("code"))
        desc = _text(err.get("description")) or ""
        parts.append(f"{code} {desc}".strip() if code else desc)
    return _safe_text("; ".join(parts))


def _split_point(items: Sequence[Any], start: datetime, end: datetime) -> datetime:
    """Where to halve a window whose answer was full.

    The median updated_datetime of the answer, so that each further request
    yields about half a page whatever order the server sorts in (halving the
    time instead would take ~20 requests to narrow 90 days onto a burst of
    changes made within one second). The time midpoint when that does not fall
    strictly inside the window.
    """
    times: list[datetime] = []
    for item in items:
        if isinstance(item, Mapping) and item.get("updated_datetime"):
            try:
                times.append(parse_datetime(item["updated_datetime"], "updated_datetime"))
            except RecordError:
                continue
    if times:
        times.sort()
        median = _floor(times[len(times) // 2])
        if start < median < end:
            return median
    return _floor(start + (end - start) / 2)


def _first_id(items: Sequence[Any]) -> Any:
    first = items[0] if items else None
    return first.get("service_request_id") if isinstance(first, Mapping) else None


def _newer(a: CaseRecord, b: CaseRecord) -> bool:
    if a.updated_at is None:
        return b.updated_at is None
    return b.updated_at is None or a.updated_at >= b.updated_at


def _w3c(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _floor(dt: datetime) -> datetime:
    return dt.replace(microsecond=0)


def _ceil(dt: datetime) -> datetime:
    return dt.replace(microsecond=0) + timedelta(seconds=1) if dt.microsecond else dt
