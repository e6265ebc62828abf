"""The frame cache: each board's pages rendered once per change, encodings kept.

A poll (`get`, `encoded`) never renders once a board has been rendered. Content
changes arrive as `invalidate(town)`; the boards whose scope covers that town
are re-rendered once after `debounce` seconds however many invalidations came
in meanwhile. A re-render whose version equals the cached one is dropped, so
ETags and the page cycle stay put and `on_change` is called only for real
changes. When the drawing goes out of date by itself (a brightness step,
local midnight for days left) the board is refreshed on time as well.

If loading the content fails, the board keeps its last good pages.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from display.domain import now_utc
from display.led.content import LedContent
from display.led.encode import RAW_FORMATS, encode_raw, to_gif, to_png
from display.led.render import RenderedBoard, render_board
from display.settings import Board

log = logging.getLogger("yizheng.led")

FORMATS = ("png", "gif", "text", *RAW_FORMATS)
#: Retry a failed refresh after this many seconds (the old pages stay meanwhile).
RETRY_SECONDS = 30.0


class CacheClosed(RuntimeError):
    """The frame cache was closed while waiting on it."""


class FrameCache:
    def __init__(
        self,
        boards: Sequence[Board],
        load: Callable[[Board], Awaitable[LedContent]],
        *,
        debounce: float = 0.3,
        on_change: Callable[[str, RenderedBoard], Awaitable[None]] | None = None,
        clock: Callable[[], datetime] = now_utc,
    ) -> None:
        self._boards = {b.id: b for b in boards}
        self._load = load
        self._debounce = debounce
        self._on_change = on_change
        self._clock = clock
        self._rendered: dict[str, RenderedBoard] = {}
        self._first: dict[str, asyncio.Task[None]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._encoded: dict[str, dict[tuple[str, int, str], bytes]] = {}
        self._changed: dict[str, asyncio.Event] = {}
        self._dirty: set[str] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._expiry: dict[str, asyncio.TimerHandle] = {}
        self._closed = False
        #: Counters for tests and /metrics.
        self.renders = 0
        self.load_errors = 0

    def add_board(self, board: Board) -> None:
        """A board registered (or changed) while the service runs; rendered on first use."""
        self._boards[board.id] = board
        if board.id in self._rendered:
            self._dirty.add(board.id)
            self._arm()

    # --- reading ----------------------------------------------------------------

    def board(self, board_id: str) -> Board | None:
        return self._boards.get(board_id)

    def cached(self, board_id: str) -> RenderedBoard | None:
        """The rendered board if there is one; never renders."""
        return self._rendered.get(board_id)

    async def get(self, board_id: str) -> RenderedBoard:
        """The board's rendered pages; renders on first use only (KeyError: unknown board)."""
        rendered = self._rendered.get(board_id)
        if rendered is not None:
            return rendered
        if board_id not in self._boards:
            raise KeyError(board_id)
        task = self._first.get(board_id)
        if task is None:
            # The first render runs as its own task: a request that goes away
            # (a board that hangs up) does not cancel it for the others.
            task = asyncio.get_running_loop().create_task(self._refresh(board_id))
            self._first[board_id] = task
            task.add_done_callback(lambda t: self._first_done(board_id, t))
        await asyncio.shield(task)
        return self._rendered[board_id]

    def _first_done(self, board_id: str, task: asyncio.Task[None]) -> None:
        if self._first.get(board_id) is task:
            del self._first[board_id]
        if not task.cancelled():
            task.exception()  # retrieved: every waiter has it raised by `await`

    def encoded(self, board_id: str, page: int, fmt: str) -> bytes:
        """A page of the cached rendering in `fmt` (png, gif, text, mono1, rgb565, rgb888).

        For gif the page is ignored (the animation holds every page). Raises
        KeyError when the board has not been rendered yet (call `get` first)
        and IndexError for a page out of range.
        """
        rendered = self._rendered[board_id]
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
        if fmt == "gif":
            page = -1
        elif not 0 <= page < len(rendered.pages):
            raise IndexError(page)
        store = self._encoded.setdefault(board_id, {})
        key = (rendered.version, page, fmt)
        data = store.get(key)
        if data is None:
            data = _encode(rendered, page, fmt)
            store[key] = data
        return data

    async def wait_change(self, board_id: str, version: str | None) -> RenderedBoard:
        """Wait until the board's version differs from `version`, and return it.

        Raises CacheClosed once the cache is closed (the service is stopping).
        """
        while True:
            if self._closed:
                raise CacheClosed("the frame cache is closed")
            current = self._rendered.get(board_id)
            if current is None:
                current = await self.get(board_id)
            if current.version != version:
                return current
            event = self._changed.setdefault(board_id, asyncio.Event())
            await event.wait()

    # --- invalidation -------------------------------------------------------------

    def covers(self, board: Board, town: str | None) -> bool:
        return town is None or board.town is None or board.town == town

    def invalidate(self, town: str | None) -> None:
        """Content in `town` changed (None: everywhere); re-render affected boards, debounced."""
        if self._closed:
            return
        for bid, board in self._boards.items():
            if (bid in self._rendered or bid in self._first) and self.covers(board, town):
                self._dirty.add(bid)
        self._arm()

    def _arm(self, delay: float | None = None) -> None:
        if self._dirty and self._timer is None and not self._closed:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._debounce if delay is None else delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        dirty, self._dirty = self._dirty, set()
        for bid in sorted(dirty):
            task = asyncio.get_running_loop().create_task(self._refresh_quietly(bid))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _refresh_quietly(self, board_id: str) -> None:
        try:
            await self._refresh(board_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.load_errors += 1
            log.exception("LED board %s: refresh failed; keeping the last good pages", board_id)
            if not self._closed:
                loop = asyncio.get_running_loop()
                self._schedule(board_id, loop.time() + RETRY_SECONDS)

    async def _refresh(self, board_id: str) -> None:
        board = self._boards[board_id]
        lock = self._locks.setdefault(board_id, asyncio.Lock())
        async with lock:
            content = await self._load(board)
            now = self._clock()
            rendered, pngs = await asyncio.to_thread(_render_and_encode, board, content, now)
            self.renders += 1
            old = self._rendered.get(board_id)
            loop = asyncio.get_running_loop()
            if rendered.valid_until is not None and not self._closed:
                delay = max(1.0, (rendered.valid_until - now).total_seconds())
                self._schedule(board_id, loop.time() + delay)
            if old is not None and old.version == rendered.version:
                return
            self._rendered[board_id] = rendered
            self._encoded[board_id] = {
                (rendered.version, i, "png"): data for i, data in enumerate(pngs)
            }
            event = self._changed.pop(board_id, None)
            if event is not None:
                event.set()
        if old is not None and self._on_change is not None:
            try:
                await self._on_change(board_id, rendered)
            except Exception:
                log.exception("LED board %s: on_change failed", board_id)

    def _schedule(self, board_id: str, when: float) -> None:
        old = self._expiry.pop(board_id, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self._expiry[board_id] = loop.call_at(when, self._expire, board_id)

    def _expire(self, board_id: str) -> None:
        self._expiry.pop(board_id, None)
        if not self._closed:
            self._dirty.add(board_id)
            self._arm(0)

    async def aclose(self) -> None:
        """Stop timers and pending refreshes; idempotent."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for handle in self._expiry.values():
            handle.cancel()
        self._expiry.clear()
        tasks = [*self._tasks, *self._first.values()]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for event in self._changed.values():
            event.set()


def _render_and_encode(
    board: Board, content: LedContent, now: datetime
) -> tuple[RenderedBoard, list[bytes]]:
    rendered = render_board(board, content, now=now)
    return rendered, [to_png(p.image) for p in rendered.pages]


def _encode(rendered: RenderedBoard, page: int, fmt: str) -> bytes:
    if fmt == "gif":
        return to_gif(rendered.pages)
    p = rendered.pages[page]
    if fmt == "png":
        return to_png(p.image)
    if fmt == "text":
        return p.text.encode("utf-8")
    return encode_raw(p.image, fmt)
