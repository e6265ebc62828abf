"""The frame cache: polls never render; invalidations re-render once, in scope only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import pytest

from display.led.cache import FrameCache
from display.led.content import LedContent
from display.led.render import RenderedBoard
from display.led.sample import AT, sample_content
from display.settings import Board

LONGSHI = Board(id="longshi-gate", town="longshi", width=128, height=32)
HUANGJIA = Board(id="huangjia-gate", town="huangjia", width=64, height=16, font_size=12)
COUNTY = Board(id="county", town=None, width=256, height=128, color="rgb")


class Source:
    """A hand-made content source that counts its loads, like the store would be queried."""

    def __init__(self) -> None:
        self.content: dict[str, LedContent] = {
            b.id: sample_content() for b in (LONGSHI, HUANGJIA, COUNTY)
        }
        self.loads: dict[str, int] = {}
        self.fail = False
        self.gate: asyncio.Event | None = None

    async def load(self, board: Board) -> LedContent:
        self.loads[board.id] = self.loads.get(board.id, 0) + 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise RuntimeError("store unavailable")
        return self.content[board.id]


async def until(cond: Callable[[], bool], limit: float = 5.0) -> None:
    async with asyncio.timeout(limit):
        while not cond():  # noqa: ASYNC110 - polling a counter the cache updates
            await asyncio.sleep(0.01)


@pytest.fixture
async def setup() -> AsyncIterator[tuple[FrameCache, Source, list[tuple[str, str]]]]:
    src = Source()
    changes: list[tuple[str, str]] = []

    async def on_change(board_id: str, rendered: RenderedBoard) -> None:
        changes.append((board_id, rendered.version))

    cache = FrameCache(
        [LONGSHI, HUANGJIA, COUNTY], src.load, debounce=0.05, on_change=on_change, clock=lambda: AT
    )
    yield cache, src, changes
    await cache.aclose()


async def test_a_poll_never_renders(
    setup: tuple[FrameCache, Source, list[tuple[str, str]]],
) -> None:
    cache, src, _ = setup
    first = await cache.get(LONGSHI.id)
    assert cache.renders == 1
    for _ in range(20):
        assert await cache.get(LONGSHI.id) is first
        for page in range(len(first.pages)):
            cache.encoded(LONGSHI.id, page, "png")
            cache.encoded(LONGSHI.id, page, "mono1")
        cache.encoded(LONGSHI.id, 0, "gif")
    assert cache.renders == 1 and src.loads == {LONGSHI.id: 1}


async def test_encodings_are_cached_per_version(
    setup: tuple[FrameCache, Source, list[tuple[str, str]]],
) -> None:
    cache, _, _ = setup
    await cache.get(LONGSHI.id)
    a = cache.encoded(LONGSHI.id, 1, "rgb565")
    assert cache.encoded(LONGSHI.id, 1, "rgb565") is a
    with pytest.raises(IndexError):
        cache.encoded(LONGSHI.id, 99, "png")
    with pytest.raises(ValueError, match="unknown format"):
        cache.encoded(LONGSHI.id, 0, "jpeg")
    with pytest.raises(KeyError):
        cache.encoded(HUANGJIA.id, 0, "png")  # not rendered yet: encoded never renders


async def test_concurrent_first_gets_render_once(
    setup: tuple[FrameCache, Source, list[tuple[str, str]]],
) -> None:
    cache, src, _ = setup
    src.gate = asyncio.Event()
    getters = [asyncio.create_task(cache.get(LONGSHI.id)) for _ in range(10)]
    await until(lambda: src.loads.get(LONGSHI.id) == 1)
    src.gate.set()
    results = await asyncio.gather(*getters)
    assert all(r is results[0] for r in results)
    assert cache.renders == 1


async def test_many_invalidations_render_once_after_debounce(
    setup: tuple[FrameCache, Source, list[tuple[str, str]]],
) -> None:
    cache, src, changes = setup
    before = await cache.get(LONGSHI.id)
    src.content[LONGSHI.id] = sample_content(cases=5)
    for _ in range(50):
        cache.invalidate("longshi")
    assert cache.renders == 1  # nothing happens before the debounce
    await until(lambda: cache.renders == 2)
    after = await cache.get(LONGSHI.id)
    assert after.version != before.version
    assert changes == [(LONGSHI.id, after.version)]
    await asyncio.sleep(0.2)  # nothing else is pending
    assert cache.renders == 2 and src.loads[LONGSHI.id] == 2


async def test_unrelated_town_does_not_rerender(
    setup: tuple[FrameCache, Source, list[tuple[str, str]]],
) -> None:
    cache, src, _ = setup
    await cache.get(LONGSHI.id)
    await cache.get(HUANGJIA.id)
    cache.invalidate("huangjia")
    await until(lambda: src.loads[HUANGJIA.id] == 2)
    await asyncio.sleep(0.15)
    assert src.loads[LONGSHI.id] == 1


async def test_county_board_covers_every_town(
    setup: tuple[FrameCache, Source, list[tuple[str, str]]],
) -> None:
    cache, src, _ = setup
    for b in (LONGSHI, HUANGJIA, COUNTY):
        await cache.get(b.id)
    cache.invalidate("xiangshi")
    await until(lambda: src.loads[COUNTY.id] == 2)
    await asyncio.sleep(0.15)
    assert src.loads[LONGSHI.id] == 1 and src.loads[HUANGJIA.id] == 1
    cache.invalidate(None)
    await until(lambda: src.loads[LONGSHI.id] == 2 and src.loads[HUANGJIA.id] == 2)
    assert src.loads[COUNTY.id] == 3


async def test_same_content_keeps_version_and_calls_no_one(
    setup: tuple[FrameCache, Source, list[tuple[str, str]]],
) -> None:
    cache, src, changes = setup
    before = await cache.get(LONGSHI.id)
    cache.invalidate("longshi")
    await until(lambda: src.loads[LONGSHI.id] == 2)
    await until(lambda: cache.renders == 2)
    assert await cache.get(LONGSHI.id) is before  # ETags and the page cycle stay put
    assert changes == []


async def test_failed_refresh_keeps_last_good_pages(
    setup: tuple[FrameCache, Source, list[tuple[str, str]]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache, src, changes = setup
    before = await cache.get(LONGSHI.id)
    src.fail = True
    cache.invalidate("longshi")
    await until(lambda: cache.load_errors == 1)
    assert await cache.get(LONGSHI.id) is before
    assert changes == []
    assert "keeping the last good pages" in caplog.text


async def test_first_render_failure_is_raised_then_retried(
    setup: tuple[FrameCache, Source, list[tuple[str, str]]],
) -> None:
    cache, src, _ = setup
    src.fail = True
    with pytest.raises(RuntimeError):
        await cache.get(LONGSHI.id)
    src.fail = False
    assert (await cache.get(LONGSHI.id)).pages


async def test_wait_change_wakes_on_new_version(
    setup: tuple[FrameCache, Source, list[tuple[str, str]]],
) -> None:
    cache, src, _ = setup
    first = await cache.get(LONGSHI.id)
    waiter = asyncio.create_task(cache.wait_change(LONGSHI.id, first.version))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    src.content[LONGSHI.id] = replace(sample_content(), stale_since=AT)
    cache.invalidate("longshi")
    changed = await asyncio.wait_for(waiter, 5)
    assert changed.version != first.version


async def test_unknown_board_is_a_key_error(
    setup: tuple[FrameCache, Source, list[tuple[str, str]]],
) -> None:
    cache, _, _ = setup
    with pytest.raises(KeyError):
        await cache.get("nope")


async def test_aclose_is_idempotent_and_stops_refreshes(
    setup: tuple[FrameCache, Source, list[tuple[str, str]]],
) -> None:
    cache, src, _ = setup
    await cache.get(LONGSHI.id)
    await cache.aclose()
    await cache.aclose()
    cache.invalidate("longshi")
    await asyncio.sleep(0.15)
    assert src.loads[LONGSHI.id] == 1


async def test_brightness_step_refreshes_the_board_on_time() -> None:
    from datetime import UTC, datetime

    src = Source()
    changes: list[str] = []
    now = [datetime(2026, 3, 2, 11, 59, 59, 500_000, tzinfo=UTC)]  # 19:59:59.5 local

    async def on_change(board_id: str, rendered: RenderedBoard) -> None:
        changes.append(board_id)

    rgb = Board(id="rgb", town="longshi", width=128, height=32, color="rgb")
    src.content["rgb"] = sample_content()
    cache = FrameCache([rgb], src.load, on_change=on_change, clock=lambda: now[0])
    try:
        day = await cache.get("rgb")
        assert day.brightness == 100
        now[0] = datetime(2026, 3, 2, 12, 0, 1, tzinfo=UTC)  # 20:00:01: the dim step
        await until(lambda: changes == ["rgb"])
        night = await cache.get("rgb")
        assert night.brightness == 40 and night.version != day.version
        assert src.loads["rgb"] == 2  # no invalidation was needed
    finally:
        await cache.aclose()


async def test_a_cancelled_first_request_does_not_cancel_the_render(
    setup: tuple[FrameCache, Source, list[tuple[str, str]]],
) -> None:
    cache, src, _ = setup
    src.gate = asyncio.Event()
    first = asyncio.create_task(cache.get(LONGSHI.id))
    await until(lambda: src.loads.get(LONGSHI.id) == 1)
    second = asyncio.create_task(cache.get(LONGSHI.id))
    first.cancel()  # the board that asked first hung up
    await asyncio.sleep(0.01)
    src.gate.set()
    rendered = await asyncio.wait_for(second, 5)
    assert rendered.pages and cache.renders == 1
    assert first.cancelled()


async def test_waiters_are_released_when_the_cache_closes(
    setup: tuple[FrameCache, Source, list[tuple[str, str]]],
) -> None:
    from display.led.cache import CacheClosed

    cache, _, _ = setup
    first = await cache.get(LONGSHI.id)
    waiter = asyncio.create_task(cache.wait_change(LONGSHI.id, first.version))
    await asyncio.sleep(0.01)
    await cache.aclose()
    with pytest.raises(CacheClosed):
        await asyncio.wait_for(waiter, 5)
