"""`/metrics`: Prometheus text from a real server, one registry per application."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from display.app import create_app
from display.settings import Settings
from tests.conftest import LiveServer, case_record, push_records, serve_app
from tests.test_sse import RawStream


async def test_metrics_export_the_push_path(live: LiveServer) -> None:
    async with (
        httpx.AsyncClient(timeout=10) as client,
        RawStream.open(live.url, "/events?town=longshi") as raw,
    ):
        await raw.chunks(lambda cs: len(cs) >= 1)
        await push_records(client, live.url, [case_record("h1")])
        await raw.chunks(lambda cs: len(cs) >= 1)
        r = await client.get(f"{live.url}/metrics")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain")
        text = r.text
        for name in (
            "yizheng_sse_subscribers",
            "yizheng_events_published_total",
            "yizheng_events_replayed_total",
            "yizheng_sse_dropped_total",
            "yizheng_tail_lag_seconds",
            "yizheng_feed_lag_seconds",
            "yizheng_board_last_seen_seconds",
        ):
            assert f"# TYPE {name.removesuffix('_total')}" in text, name
        assert 'yizheng_sse_subscribers{scope="town:longshi"} 1.0' in text
        published = next(
            line for line in text.splitlines() if line.startswith("yizheng_events_published_total")
        )
        assert float(published.split()[1]) >= 2
        assert "push" in text  # the feed's lag, by name


async def test_two_apps_in_one_process_have_their_own_metrics(
    make_settings: Callable[..., Settings],
) -> None:
    from display.metrics import metrics_of

    a = create_app(make_settings())
    b = create_app(make_settings(database={"url": "sqlite:///:memory:"}))
    assert metrics_of(a.state.ctx).registry is not metrics_of(b.state.ctx).registry
    a.state.ctx.hub.published = 7
    async with serve_app(a) as (url, _), httpx.AsyncClient() as client:
        text = (await client.get(f"{url}/metrics")).text
    assert "yizheng_events_published_total 7.0" in text
