"""HTTP GET for pull adapters: a timeout, a size limit, and errors that are safe to show.

Error messages name the host and path only: query strings may carry api keys.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from urllib.parse import urlsplit

import httpx

from feeds.adapters import FeedError

DEFAULT_TIMEOUT = 10.0
#: A case system answering more than this in one response is broken or hostile.
MAX_RESPONSE_BYTES = 32 * 1024 * 1024
USER_AGENT = "yizheng-feeds/0.1"
#: The whole answer must arrive within this many per-read timeouts.
TOTAL_FACTOR = 6


def safe_url(url: str) -> str:
    """scheme://host[:port]/path, without credentials or query."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


def make_client(
    timeout: float = DEFAULT_TIMEOUT, headers: Mapping[str, str] | None = None
) -> httpx.AsyncClient:
    """An AsyncClient for one feed; the caller closes it (adapter.aclose)."""
    merged = {"User-Agent": USER_AGENT}
    merged.update(headers or {})
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout),
        headers=merged,
        follow_redirects=True,
        # Case systems on county intranets often sit behind a proxy that the
        # environment does not describe correctly; be explicit.
        trust_env=False,
    )


class Response:
    """A fully read response: status, content type and body bytes."""

    __slots__ = ("body", "content_type", "status_code", "url")

    def __init__(self, status_code: int, content_type: str, body: bytes, url: str) -> None:
        self.status_code = status_code
        self.content_type = content_type
        self.body = body
        self.url = url


async def get(
    client: httpx.AsyncClient,
    url: str,
    params: Mapping[str, str | int] | None = None,
    *,
    feed: str,
    limit: int = MAX_RESPONSE_BYTES,
) -> Response:
    """GET and read the whole body (at most `limit` bytes).

    Raises FeedError for timeouts, connection failures and oversized bodies; HTTP
    error statuses are returned so the caller can read the source's error body.
    """
    where = safe_url(url)
    # httpx's timeout bounds each read; a server trickling bytes could stall us for
    # ever, so bound the whole answer as well.
    per_read = client.timeout.read or DEFAULT_TIMEOUT
    total = per_read * TOTAL_FACTOR
    try:
        async with asyncio.timeout(total), client.stream("GET", url, params=params) as resp:
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    raise FeedError(f"{feed}: {where} 的应答超过 {limit // (1024 * 1024)} MiB")
                chunks.append(chunk)
            return Response(
                resp.status_code, resp.headers.get("content-type", ""), b"".join(chunks), where
            )
    except httpx.TimeoutException:
        raise FeedError(f"{feed}: {where} 在 {per_read:g} 秒内没有应答（超时）") from None
    except TimeoutError:
        raise FeedError(f"{feed}: {where} 在 {total:g} 秒内没有答完（超时）") from None
    except httpx.HTTPError as exc:
        raise FeedError(f"{feed}: 无法连接 {where}（{type(exc).__name__}）") from None
