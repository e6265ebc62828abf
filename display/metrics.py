"""`/metrics`: Prometheus text exposition of the push path and the feeds.

Each application has its own CollectorRegistry (never the global default), so
several apps can live in one process. Nothing is counted per event here: the
collector reads the hub's and tailer's plain counters when scraped.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from display.domain import now_utc
from display.store.base import FeedState

if TYPE_CHECKING:
    from display.context import Context


class PushCollector(Collector):
    """Reads the live state of one application's push path at scrape time."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        #: Feed states read by the (async) endpoint just before a scrape.
        self.feeds: Sequence[FeedState] = ()
        self.now: datetime | None = None

    def collect(self) -> Iterator[Metric]:
        ctx = self.ctx
        hub = ctx.hub
        now = self.now or now_utc()
        subs = GaugeMetricFamily(
            "yizheng_sse_subscribers", "Open event-stream subscribers, by scope.", labels=["scope"]
        )
        for scope, n in sorted(hub.scopes().items()):
            subs.add_metric([scope], n)
        yield subs
        yield CounterMetricFamily(
            "yizheng_events_published", "Events read from the log and fanned out.", hub.published
        )
        yield CounterMetricFamily(
            "yizheng_events_replayed",
            "Events sent to reconnecting clients from the log.",
            hub.replayed,
        )
        yield CounterMetricFamily(
            "yizheng_sse_dropped", "Subscribers dropped for not keeping up.", hub.dropped
        )
        yield CounterMetricFamily(
            "yizheng_sse_heartbeats", "Heartbeat comments written.", hub.heartbeats
        )
        yield GaugeMetricFamily(
            "yizheng_tail_seq",
            "Sequence number of the newest event published by this process.",
            ctx.tailer.last_seq,
        )
        yield GaugeMetricFamily(
            "yizheng_tail_lag_seconds",
            "From commit to publication, newest event of the last batch.",
            ctx.tailer.lag_seconds,
        )
        lag = GaugeMetricFamily(
            "yizheng_feed_lag_seconds",
            "Seconds since each feed's last successful run.",
            labels=["feed"],
        )
        for st in self.feeds:
            if st.last_success_at is not None:
                lag.add_metric([st.name], max(0.0, (now - st.last_success_at).total_seconds()))
        yield lag
        failures = GaugeMetricFamily(
            "yizheng_feed_consecutive_failures",
            "Failed runs since each feed's last success.",
            labels=["feed"],
        )
        for st in self.feeds:
            failures.add_metric([st.name], st.consecutive_failures)
        yield failures
        seen = GaugeMetricFamily(
            "yizheng_board_last_seen_seconds",
            "Seconds since each board was last heard from.",
            labels=["board"],
        )
        for board_id, at in sorted(ctx.last_seen.items()):
            seen.add_metric([board_id], max(0.0, (now - at).total_seconds()))
        yield seen
        if ctx.frames is not None:
            yield CounterMetricFamily(
                "yizheng_led_renders", "LED board renderings.", ctx.frames.renders
            )


class Metrics:
    """One application's registry and collector."""

    def __init__(self, ctx: Context) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.collector = PushCollector(ctx)
        self.registry.register(self.collector)

    async def render(self) -> bytes:
        ctx = self.collector.ctx
        self.collector.feeds = await ctx.store.feed_states()
        self.collector.now = now_utc()
        return generate_latest(self.registry)


def metrics_of(ctx: Context) -> Metrics:
    m = ctx.extra.get("metrics")
    if not isinstance(m, Metrics):
        m = Metrics(ctx)
        ctx.extra["metrics"] = m
    return m


async def metrics(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    body = await metrics_of(ctx).render()
    return Response(body, media_type=CONTENT_TYPE_LATEST, headers={"cache-control": "no-cache"})


def routes() -> list[BaseRoute]:
    return [Route("/metrics", metrics)]
