"""Feed leadership: of all the processes on one database, exactly one runs the feeds.

Every process serves HTTP and tails the event log; only the leader pulls from
the case systems. On PostgreSQL the leader holds a session-level advisory
lock on a dedicated connection; on SQLite it holds an exclusive `flock` on
`<db>.feeds.lock`, so several uvicorn workers on one file also elect one
leader. Either lock belongs to the operating system's view of the holder: when
the leader dies (even by SIGKILL) its connection or file descriptor closes,
the lock is released, and the next follower to poll takes over, within one
poll interval.

No record is lost or doubled on a handover because a feed's cursor commits in
the same transaction as the cases it covers (a large batch: with the last of
its chunks, see SqlStore.apply_cases): a pull interrupted before that commit is
simply pulled again by the next leader, and a pull that did commit moved the
cursor past its records. Ingest is an idempotent upsert, so even the
brief overlap when a leader loses its database connection but is still
running (it stops at its next check) only produces "unchanged" records.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

from display.store.postgres import PostgresFeedLock

if TYPE_CHECKING:
    from display.context import Context

log = logging.getLogger("yizheng.leader")

#: `ctx.extra` key: True while this process runs the feeds (for /healthz and /metrics).
LEADER_KEY = "feed_leader"


class FeedLock(Protocol):
    async def try_acquire(self) -> bool: ...
    async def held(self) -> bool: ...
    async def release(self) -> None: ...


class FileFeedLock:
    """An exclusive, non-blocking `flock` on a file beside the SQLite database. The
    kernel releases it when the holder's descriptor closes, however the process ends."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    async def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    async def held(self) -> bool:
        return self._fd is not None

    async def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


class SoleLock:
    """An in-memory SQLite database has one process by definition."""

    def __init__(self) -> None:
        self._held = False

    async def try_acquire(self) -> bool:
        self._held = True
        return True

    async def held(self) -> bool:
        return self._held

    async def release(self) -> None:
        self._held = False


def feed_lock(database_url: str) -> FeedLock:
    """The leadership lock for a database URL."""
    if database_url.startswith("sqlite:///"):
        path = database_url[len("sqlite:///") :]
        if path in ("", ":memory:"):
            return SoleLock()
        return FileFeedLock(path + ".feeds.lock")
    return PostgresFeedLock(database_url)


def leader_interval(ctx: Context) -> float:
    """How often a follower tries the lock and the leader checks it still holds it."""
    return min(max(ctx.settings.sse.poll_interval, 0.1), 5.0)


async def run_as_leader(
    ctx: Context,
    start: Callable[[], None],
    stop: Callable[[], Awaitable[None]],
    *,
    lock: FeedLock | None = None,
    interval: float | None = None,
) -> None:
    """Until the app stops: whenever this process wins the lock, `start()`; whenever it
    loses it, `await stop()`. Releases the lock (after stopping) when it ends."""
    lock = lock or feed_lock(ctx.settings.database_url)
    every = interval if interval is not None else leader_interval(ctx)
    leading = False
    ctx.extra[LEADER_KEY] = False
    try:
        while not ctx.stop.is_set():
            if leading:
                if not await lock.held():
                    log.warning("feed leadership lost; stopping the feeds in this process")
                    leading = False
                    ctx.extra[LEADER_KEY] = False
                    await stop()
            elif await lock.try_acquire():
                leading = True
                ctx.extra[LEADER_KEY] = True
                log.info("feed leadership taken; running the feeds in this process")
                start()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ctx.stop.wait(), every)
    finally:
        ctx.extra[LEADER_KEY] = False
        if leading:
            await stop()
        await lock.release()


async def stop_feeds(ctx: Context) -> None:
    """Cancel this process's feed runners. A pull cut off before its commit rolls back
    with its cursor, so the next leader pulls the same records again.

    At shutdown (`ctx.stop` set) this does nothing: app.shutdown closes the adapters
    and cancels every task, and must not see `ctx.runners` change under it."""
    if ctx.stop.is_set():
        return
    runners = dict(ctx.runners)
    ctx.runners.clear()  # before any await: nobody sees a half-stopped set
    names = {f"feed:{name}" for name in runners}
    tasks = [t for t in ctx.tasks if t.get_name() in names and not t.done()]
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    for runner in runners.values():
        with contextlib.suppress(Exception):
            await runner.adapter.aclose()


async def lead_feeds(ctx: Context) -> None:
    """Run the configured pull feeds in this process while it is the feed leader."""
    from display.feedrun import start_feeds

    await run_as_leader(ctx, lambda: start_feeds(ctx), lambda: stop_feeds(ctx))


__all__ = [
    "LEADER_KEY",
    "FeedLock",
    "FileFeedLock",
    "PostgresFeedLock",
    "SoleLock",
    "feed_lock",
    "lead_feeds",
    "run_as_leader",
    "stop_feeds",
]
