"""The per-application state: everything a handler may reach, on one object.

No globals: tests build several apps side by side, each with its own Context.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from display.bus import Hub, Tailer
from display.domain import PublicCase, local_date, now_utc
from display.ingest import Ingestor
from display.settings import Board, Settings
from display.store import Store, open_store
from display.store.base import BoardRow
from display.workdays import WorkCalendar

if TYPE_CHECKING:
    from display.led.cache import FrameCache

log = logging.getLogger("yizheng")


@dataclass
class Context:
    settings: Settings
    store: Store
    hub: Hub
    tailer: Tailer
    calendar: WorkCalendar
    ingestor: Ingestor
    frames: FrameCache | None = None
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    runners: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    _seen: dict[str, datetime] = field(default_factory=dict)
    last_seen: dict[str, datetime] = field(default_factory=dict)
    #: Boards staff registered in the admin (config boards live in settings.boards).
    registered_boards: dict[str, Board] = field(default_factory=dict)
    #: board id -> SHA-256 of its token, for boards that have one.
    board_tokens: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, settings: Settings) -> Context:
        hub = Hub()
        holder: list[Tailer] = []
        store = open_store(settings, on_commit=lambda: holder[0].wake() if holder else None)
        tailer = Tailer(store, hub, settings.sse.poll_interval)
        holder.append(tailer)
        calendar = WorkCalendar(
            settings.deadlines.extra_holidays, settings.deadlines.extra_workdays
        )
        return cls(
            settings=settings,
            store=store,
            hub=hub,
            tailer=tailer,
            calendar=calendar,
            ingestor=Ingestor(settings, store, calendar),
        )

    def board(self, board_id: str) -> Board | None:
        """A board from the configuration or registered by staff (admin)."""
        return self.settings.board(board_id) or self.registered_boards.get(board_id)

    def all_boards(self) -> list[Board]:
        return [*self.settings.boards, *self.registered_boards.values()]

    async def load_boards(self) -> None:
        """Boards staff registered (stored, not in the configuration) and every board's
        token digest, from one read of the store. Meant for start-up."""
        configured = {b.id for b in self.settings.boards}
        rows = await self.store.boards()
        self.board_tokens = {r.id: r.token_hash for r in rows if r.token_hash}
        for row in rows:
            if row.id not in configured and row.profile.get("registered") is True:
                self.registered_boards[row.id] = board_from_row(row)

    def days_left(self, case: PublicCase, today: date | None = None) -> int | None:
        """Working days until the case is due; negative when overdue; None when closed."""
        if not case.is_open or case.due_date is None:
            return None
        today = today or local_date(now_utc())
        return self.calendar.workdays_between(today, case.due_date)

    def board_token_ok(self, board_id: str, presented: str | None) -> bool | None:
        """None when the board has no token; else whether `presented` is its token."""
        expected = self.board_tokens.get(board_id)
        if expected is None:
            return None
        if not presented:
            return False
        return hmac.compare_digest(board_token_hash(presented), expected)

    def board_seen(self, board_id: str) -> None:
        """Cheap: noted in memory, written to the store in batches."""
        now = now_utc()
        self._seen[board_id] = now
        self.last_seen[board_id] = now

    def spawn(self, coro: Awaitable[Any], name: str) -> None:
        async def guarded() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background task %s failed", name)

        self.tasks.append(asyncio.create_task(guarded(), name=name))

    async def flush_seen(self) -> None:
        seen, self._seen = self._seen, {}
        await self.store.touch_boards(seen)

    async def every(self, seconds: float, fn: Callable[[], Awaitable[Any]]) -> None:
        """Run fn every `seconds` until the app stops; one failure does not end the loop."""
        while not self.stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self.stop.wait()
            if self.stop.is_set():
                return
            try:
                await fn()
            except Exception:
                log.exception("periodic task failed")

    async def stale_since(self, town: str | None) -> datetime | None:
        """When the data for a town stopped being current: the oldest last success of a
        pulled feed that is past its staleness limit. None when everything is current."""
        states = {s.name: s for s in await self.store.feed_states()}
        now = now_utc()
        worst: datetime | None = None
        for feed in self.settings.feeds:
            if feed.kind == "webhook":
                continue
            st = states.get(feed.name)
            last = st.last_success_at if st else None
            if last is None or now - last > timedelta(seconds=feed.staleness):
                if last is not None and (worst is None or last < worst):
                    worst = last
        return worst


def board_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def board_profile(board: Board) -> dict[str, Any]:
    return {
        "kind": board.kind,
        "name": board.name,
        "width": board.width,
        "height": board.height,
        "color": board.color,
        "font_size": board.font_size,
        "page_seconds": board.page_seconds,
        "scroll_speed": board.scroll_speed,
        "content": list(board.content),
        "brightness": [list(b) for b in board.brightness],
        "title": board.title,
    }


def board_from_row(row: BoardRow) -> Board:
    """A board staff registered, rebuilt from its stored profile (see board_profile)."""
    p = row.profile
    brightness = tuple((str(a), int(b)) for a, b in p.get("brightness", []) or [])
    return Board(
        id=row.id,
        town=row.town,
        kind=str(p.get("kind", "led")),
        name=str(p.get("name", "")),
        width=int(p.get("width", 128)),
        height=int(p.get("height", 32)),
        color=str(p.get("color", "mono")),
        font_size=int(p.get("font_size", 16)),
        page_seconds=float(p.get("page_seconds", 6.0)),
        scroll_speed=int(p.get("scroll_speed", 32)),
        brightness=brightness or (("06:00", 100), ("20:00", 40)),
        content=tuple(p.get("content", ("title", "stats", "cases", "notices"))),
        title=str(p.get("title", "")),
    )
