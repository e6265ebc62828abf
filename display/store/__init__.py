"""Storage: the Store protocol and its backends, chosen by the database URL."""

from __future__ import annotations

from collections.abc import Callable

from display.settings import Settings
from display.store.base import Store


def open_store(settings: Settings, on_commit: Callable[[], None] | None = None) -> Store:
    """A Store for `settings.database_url` (not yet opened: call `await store.open()`)."""
    path = settings.sqlite_path
    if path is not None:
        from display.store.sqlite import SqliteStore

        return SqliteStore(path, on_commit=on_commit)
    from display.store.postgres import PostgresStore

    store: Store = PostgresStore(settings.database_url, on_commit=on_commit)
    return store


__all__ = ["Store", "open_store"]
