"""Start the configured pull feeds in this process, feeding ingest."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from feeds.adapters import FeedError, build_adapter
from feeds.record import Batch
from feeds.runner import FeedRunner

if TYPE_CHECKING:
    from display.context import Context

log = logging.getLogger("yizheng.feeds")


class IngestSink:
    """The display side of feeds.runner.FeedSink."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def load_cursor(self, feed: str) -> str | None:
        return await self.ctx.ingestor.load_cursor(feed)

    async def ingest(self, feed: str, batch: Batch) -> Mapping[str, int]:
        return await self.ctx.ingestor.ingest_counts(feed, batch)

    async def record_failure(self, feed: str, error: str) -> None:
        await self.ctx.ingestor.record_failure(feed, error)


def town_map(ctx: Context, extra: Mapping[str, Any] | None = None) -> dict[str, str]:
    towns: dict[str, str] = {}
    for t in ctx.settings.towns:
        towns[t.slug] = t.slug
        towns[t.name] = t.slug
    for k, v in (extra or {}).items():
        if isinstance(k, str) and isinstance(v, str):
            towns[k] = v
    return towns


def feed_config(ctx: Context, name: str) -> dict[str, Any]:
    feed = ctx.settings.feed(name)
    if feed is None:
        raise FeedError(f"未配置名为 {name} 的数据源")
    config: dict[str, Any] = dict(feed.options)
    config.update({"url": feed.url, "path": feed.path, "interval": feed.interval})
    return config


def build_runner(ctx: Context, name: str) -> FeedRunner:
    feed = ctx.settings.feed(name)
    if feed is None:
        raise FeedError(f"未配置名为 {name} 的数据源")
    config = feed_config(ctx, name)
    adapter = build_adapter(name, feed.kind, config, town_map(ctx, config.get("towns")))
    return FeedRunner(adapter, IngestSink(ctx), interval=feed.interval)


def start_feeds(ctx: Context) -> None:
    ctx.ingestor.forget()
    for feed in ctx.settings.feeds:
        if feed.kind == "webhook":
            continue
        try:
            runner = build_runner(ctx, feed.name)
        except FeedError as e:
            log.error("feed %s not started: %s", feed.name, e)
            continue
        ctx.runners[feed.name] = runner
        ctx.spawn(runner.run(ctx.stop), f"feed:{feed.name}")
