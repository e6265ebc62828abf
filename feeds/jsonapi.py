"""Any JSON HTTP API, through a field mapping in the configuration.

```toml
[[feeds]]
name = "county"
kind = "jsonapi"
url = "https://cases.example.gov.cn/api/appeals"
items = "data.list"                  # dotted path to the array of cases
paging = "page"                      # "none" | "page" | "cursor"
page_size = 100
total = "data.total"                 # optional: stop when this many items were read
updated_since_param = "updatedAfter" # optional: ask only for what changed
bearer = "…"
[feeds.fields]                       # our field = dotted path in each item
source_id = "id"
summary = "content.text"
town = "area.town"
[feeds.statuses]                     # source word -> stage, "stage:outcome" or "withdrawn"
"CLOSED" = "resolved:resolved"
```

A field the mapping does not name is looked up under its own name, so an API
that already speaks CaseRecord needs no mapping. Items whose town is not in
the towns mapping are rejected with "未知乡镇" (see feeds.ledger); items with no
town get the feed's `town` option, else none (ingest quarantines them).
The cursor only advances when `updated_at` is mapped; without it each pull
reads everything, which idempotent upserts make correct but slower.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import httpx

from feeds import adapters, httpclient
from feeds.ledger import (
    FALSE_WORDS,
    SATISFACTION_WORDS,
    TRUE_WORDS,
    TownLookup,
    fold_word,
    outcome_from_text,
    parse_ledger_date,
    parse_status_table,
)
from feeds.record import (
    FIELD_LABELS,
    MAX_SOURCE_ID,
    OUTCOMES,
    SHANGHAI,
    Batch,
    CaseRecord,
    RecordError,
    Rejected,
    parse_datetime,
    record_from_mapping,
)

RECORD_FIELDS: tuple[str, ...] = (
    "source_id",
    "summary",
    "received_at",
    "town",
    "village",
    "kind",
    "category",
    "channel",
    "department",
    "status",
    "outcome",
    "updated_at",
    "resolved_at",
    "replied_at",
    "supervised",
    "satisfaction",
    "withdrawn",
    "notes",
    "requester_name",
    "requester_phone",
    "requester_address",
)
DATE_FIELDS = frozenset({"received_at", "updated_at", "resolved_at", "replied_at"})
PAGINGS = ("none", "page", "cursor")
DEFAULT_MAX_PAGES = 1000

_MISSING = object()


def get_path(data: Any, path: str) -> Any:
    """`a.b.0.c` in nested objects and arrays; `_MISSING` when any step is absent.
    The empty path is the whole document."""
    if not path:
        return data
    node = data
    for step in path.split("."):
        if isinstance(node, Mapping):
            if step not in node:
                return _MISSING
            node = node[step]
        elif isinstance(node, list) and step.lstrip("-").isdigit():
            i = int(step)
            if not -len(node) <= i < len(node):
                return _MISSING
            node = node[i]
        else:
            return _MISSING
    return node


def _to_datetime(value: Any, field: str) -> datetime:
    if isinstance(value, bool):
        raise RecordError(field, "无法识别的日期")
    if isinstance(value, int | float):
        # Unix time; milliseconds when the number is too large to be seconds.
        seconds = value / 1000 if value > 1e11 else value
        try:
            return parse_datetime(datetime.fromtimestamp(seconds, UTC), field)
        except (OverflowError, OSError, ValueError):
            raise RecordError(field, "无法识别的日期") from None
    try:
        return parse_ledger_date(value)
    except (ValueError, OverflowError):
        raise RecordError(field, "无法识别的日期") from None


def _to_bool(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in (None, ""):
        return False
    word = fold_word(str(value))
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise RecordError(field, "应为 是/否")


class JsonApiAdapter:
    """`kind = "jsonapi"`: pages through a JSON API and maps each item to a CaseRecord.

    The cursor is the latest `updated_at` seen (ISO 8601, UTC); with
    `updated_since_param` it is sent back so each pull asks only for changes.
    """

    def __init__(self, name: str, config: Mapping[str, Any], towns: Mapping[str, str]) -> None:
        self.name = name
        url = _str(config, "url", name)
        if not url or not url.startswith(("http://", "https://")):
            raise adapters.FeedError(f"{name}: url 必填，且应以 http:// 或 https:// 开头")
        parts = urlsplit(url)
        # httpx replaces a URL's query with `params`, so keep the query as params.
        self.url = urlunsplit(parts._replace(query=""))
        self.params: dict[str, str] = dict(parse_qsl(parts.query, keep_blank_values=True))
        for key, value in _table(config, "params", name).items():
            self.params[key] = str(value)
        self.where = httpclient.safe_url(self.url)

        fields = _table(config, "fields", name)
        for key, value in fields.items():
            if key not in RECORD_FIELDS:
                raise adapters.FeedError(
                    f"{name}: fields.{key} 不是记录字段（可用：{'、'.join(RECORD_FIELDS)}）"
                )
            if not isinstance(value, str):
                raise adapters.FeedError(f"{name}: fields.{key} 应为点分路径文本")
        self.fields: dict[str, str] = {f: str(fields.get(f, f)) for f in RECORD_FIELDS}
        self.items_path = _str(config, "items", name) or ""

        paging = _str(config, "paging", name) or "none"
        if paging not in PAGINGS:
            raise adapters.FeedError(f"{name}: paging 应为 {'、'.join(PAGINGS)}")
        self.paging = paging
        self.page_param = _str(config, "page_param", name) or "page"
        self.size_param = _str(config, "size_param", name) or "page_size"
        self.page_size = _int(config, "page_size", name, 100, 1)
        self.first_page = _int(config, "first_page", name, 1, 0)
        self.total_path = _str(config, "total", name)
        self.cursor_param = _str(config, "cursor_param", name) or "cursor"
        self.next_cursor_path = _str(config, "next_cursor", name)
        if paging == "cursor" and not self.next_cursor_path:
            raise adapters.FeedError(f'{name}: paging = "cursor" 需要 next_cursor 路径')
        self.max_pages = _int(config, "max_pages", name, DEFAULT_MAX_PAGES, 1)

        self.updated_since_param = _str(config, "updated_since_param", name)
        self.updated_since_format = _str(config, "updated_since_format", name) or "iso"
        since = config.get("since")
        self.since: datetime | None = None
        if since not in (None, ""):
            try:
                self.since = _to_datetime(since, "since")
            except RecordError:
                raise adapters.FeedError(f"{name}: since 不是有效日期") from None

        self.success_path = _str(config, "success_path", name)
        self.success_value = config.get("success_value", 0)

        headers = {str(k): str(v) for k, v in _table(config, "headers", name).items()}
        bearer = _str(config, "bearer", name)
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        headers.setdefault("Accept", "application/json")
        self.headers = headers
        timeout = config.get("timeout", httpclient.DEFAULT_TIMEOUT)
        if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
            raise adapters.FeedError(f"{name}: timeout 应为正数（秒）")
        self.timeout = float(timeout)

        self.statuses = parse_status_table(_table(config, "statuses", name))
        self.towns = TownLookup(towns, _table(config, "towns", name))
        town = _str(config, "town", name)
        self.default_town = self.towns.get(town) if town else None
        if town and self.default_town is None:
            raise adapters.FeedError(f"{name}: town 未知乡镇")
        self._client: httpx.AsyncClient | None = None

    # ------------------------------------------------------------------ HTTP

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def _fetch(self, params: Mapping[str, str | int]) -> Any:
        if self._client is None:
            self._client = httpclient.make_client(self.timeout, self.headers)
        resp = await httpclient.get(self._client, self.url, params, feed=self.name)
        if resp.status_code in (401, 403):
            raise adapters.FeedError(
                f"{self.name}: {self.where} 拒绝访问（HTTP {resp.status_code}），"
                "请检查 bearer 或 headers 配置"
            )
        if resp.status_code >= 400:
            raise adapters.FeedError(f"{self.name}: {self.where} 返回 HTTP {resp.status_code}")
        try:
            body = json.loads(_decode(resp.body, resp.content_type))
        except (ValueError, LookupError):
            raise adapters.FeedError(f"{self.name}: {self.where} 返回的不是 JSON") from None
        if self.success_path:
            flag = get_path(body, self.success_path)
            if flag is _MISSING or str(flag) != str(self.success_value):
                raise adapters.FeedError(
                    f"{self.name}: {self.where} 返回失败（{self.success_path} 不是 "
                    f"{self.success_value}）"
                )
        return body

    def _items(self, body: Any) -> list[Any]:
        items = get_path(body, self.items_path)
        if items is None:
            return []  # many APIs send `"list": null` for an empty page
        if items is _MISSING or not isinstance(items, list):
            where = f'items = "{self.items_path}"' if self.items_path else "根"
            raise adapters.FeedError(f"{self.name}: {self.where} 的返回格式不符：{where} 不是数组")
        return items

    def _since_value(self, since: datetime) -> str:
        fmt = self.updated_since_format
        if fmt == "unix":
            return str(int(since.timestamp()))
        if fmt == "unix_ms":
            return str(int(since.timestamp() * 1000))
        local = since.astimezone(SHANGHAI)
        if "%" in fmt:
            return local.strftime(fmt)
        return local.isoformat()

    async def pull(self, cursor: str | None) -> Batch:
        last: datetime | None = None
        if cursor:
            try:
                last = parse_datetime(cursor, "cursor")
            except RecordError:
                last = None  # unreadable: start again from `since`; upserts are idempotent
        since = last or self.since
        base: dict[str, str | int] = dict(self.params)
        if self.updated_since_param and since is not None:
            base[self.updated_since_param] = self._since_value(since)

        batch = Batch()
        latest = last
        index = 0
        read = 0
        page = self.first_page
        token: str | None = None
        tokens: set[str] = set()
        previous: str | None = None
        for _ in range(self.max_pages):
            params = dict(base)
            if self.paging == "page":
                params[self.page_param] = page
                params[self.size_param] = self.page_size
            elif self.paging == "cursor" and token is not None:
                params[self.cursor_param] = token
            body = await self._fetch(params)
            items = self._items(body)
            for item in items:
                index += 1
                result = self.to_record(item, index)
                if isinstance(result, Rejected):
                    batch.rejected.append(result)
                    continue
                batch.records.append(result)
                if result.updated_at is not None and (latest is None or result.updated_at > latest):
                    latest = result.updated_at
            if self.paging == "none" or not items:
                break
            if self.paging == "page":
                fingerprint = hashlib.sha256(
                    json.dumps(items, sort_keys=True, default=str).encode()
                ).hexdigest()
                if fingerprint == previous:
                    raise adapters.FeedError(
                        f"{self.name}: {self.where} 忽略了分页参数 {self.page_param}"
                        "（连续两页内容相同）"
                    )
                previous = fingerprint
                read += len(items)
                total = get_path(body, self.total_path) if self.total_path else _MISSING
                if isinstance(total, int | str) and str(total).isdigit():
                    if read >= int(total):
                        break
                elif len(items) < self.page_size:
                    break
                page += 1
            else:
                assert self.next_cursor_path is not None
                nxt = get_path(body, self.next_cursor_path)
                # Identity and type checks: a next cursor of 0 is a cursor, not "done".
                if nxt is _MISSING or nxt is None or nxt is False or nxt == "":
                    break
                token = str(nxt)
                if token in tokens:
                    raise adapters.FeedError(f"{self.name}: {self.where} 的分页游标重复")
                tokens.add(token)
        else:
            raise adapters.FeedError(
                f"{self.name}: 超过最大页数 {self.max_pages}（可调大 max_pages）"
            )
        batch.cursor = latest.isoformat() if latest is not None else cursor
        return batch

    # ------------------------------------------------------------------ items

    def to_record(self, item: Any, index: int) -> CaseRecord | Rejected:
        """One item of the API's array as a CaseRecord, or why not."""
        label = f"第{index}条"
        if not isinstance(item, Mapping):
            return Rejected(label, "条目不是 JSON 对象")
        data: dict[str, Any] = {}
        for field, path in self.fields.items():
            value = get_path(item, path)
            if value is not _MISSING and value is not None:
                data[field] = value
        raw_id = data.get("source_id")
        if isinstance(raw_id, float) and raw_id.is_integer():
            raw_id = int(raw_id)
        if isinstance(raw_id, int) and not isinstance(raw_id, bool):
            raw_id = str(raw_id)
        if isinstance(raw_id, str):
            raw_id = raw_id.strip()
            data["source_id"] = raw_id
        source_id = raw_id if isinstance(raw_id, str) and 0 < len(raw_id) <= MAX_SOURCE_ID else None
        try:
            self._convert(data)
            return record_from_mapping(data)
        except RecordError as err:
            return Rejected(
                source_id or label,
                f"{FIELD_LABELS.get(err.field, err.field)}"
                f"（{self.fields.get(err.field, err.field)}）：{err.reason}",
            )

    def _convert(self, data: dict[str, Any]) -> None:
        """Source words and formats to CaseRecord values, in place."""
        status = data.get("status")
        if status is not None and status != "":
            text = str(status)
            mapped = self.statuses.get(text) or self.statuses.get(fold_word(text))
            if mapped is None:
                raise RecordError("status", "无法识别的状态")
            stage, outcome = mapped
            if stage == "withdrawn":
                data["withdrawn"] = True
                del data["status"]
            else:
                data["status"] = stage
                if outcome and data.get("outcome") in (None, ""):
                    data["outcome"] = outcome
        outcome = data.get("outcome")
        if isinstance(outcome, str) and outcome not in OUTCOMES and outcome:
            found = outcome_from_text(outcome)
            if found is None:
                raise RecordError("outcome", "无法识别的办理结果")
            data["outcome"] = found
        for field in DATE_FIELDS:
            if data.get(field) not in (None, ""):
                data[field] = _to_datetime(data[field], field)
        for field in ("supervised", "withdrawn"):
            if field in data:
                data[field] = _to_bool(data[field], field)
        satisfaction = data.get("satisfaction")
        if satisfaction not in (None, ""):
            found = SATISFACTION_WORDS.get(fold_word(str(satisfaction)))
            if found is None:
                raise RecordError("satisfaction", "无法识别（应为 满意/基本满意/不满意）")
            data["satisfaction"] = found
        kind = data.get("kind")
        if kind not in (None, ""):
            data["kind"] = (
                "consult" if fold_word(str(kind)) in ("consult", "咨询", "咨询类") else "general"
            )
        elif "咨询" in str(data.get("category") or ""):
            data["kind"] = "consult"
        town = data.get("town")
        if town not in (None, ""):
            slug = self.towns.get(str(town))
            if slug is None:
                raise RecordError("town", "未知乡镇")
            data["town"] = slug
        elif self.default_town:
            data["town"] = self.default_town


def _decode(body: bytes, content_type: str) -> str | bytes:
    # json.loads detects UTF-8/16/32 itself; some county systems send GBK and say so.
    for part in content_type.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "charset":
            charset = value.strip().strip('"').lower()
            if charset not in ("utf-8", "utf8"):
                return body.decode("gb18030" if charset in ("gbk", "gb2312") else charset)
    return body


def _str(config: Mapping[str, Any], key: str, name: str) -> str | None:
    value = config.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise adapters.FeedError(f"{name}: {key} 应为文本")
    return value


def _int(config: Mapping[str, Any], key: str, name: str, default: int, minimum: int) -> int:
    value = config.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise adapters.FeedError(f"{name}: {key} 应为不小于 {minimum} 的整数")
    return value


def _table(config: Mapping[str, Any], key: str, name: str) -> Mapping[str, Any]:
    value = config.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise adapters.FeedError(f"{name}: {key} 应为表（[feeds.{key}]）")
    return value
