"""Store fixtures over both backends: a real SQLite file, a real PostgreSQL schema.

Each PostgreSQL test gets a fresh schema in the `test` database, named on the
URL's search_path (asyncpg passes unknown URL parameters as server settings),
and dropped afterwards. Advisory lock keys and the NOTIFY channel are derived
from the schema, so tests and engineers sharing the database never contend.

Import the fixtures you use into a test module:
`from tests.store_fixtures import pg_url_fixture, store_fixture  # noqa: F401`.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from display.store.base import Store
from tests.conftest import require_in_ci

PG_BASE_URL = os.environ.get("YIZHENG_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
PG_UNREACHABLE = "PostgreSQL not reachable at 127.0.0.1:5432"

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


async def _admin() -> asyncpg.Connection[asyncpg.Record] | None:
    try:
        return await asyncpg.connect(PG_BASE_URL, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return None


def with_search_path(base: str, schema: str) -> str:
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}search_path={schema}"


@contextlib.asynccontextmanager
async def pg_schema() -> AsyncIterator[str]:
    """A database URL whose search_path is a fresh, empty schema; dropped afterwards.
    Skips (fails in CI) when PostgreSQL is not reachable."""
    admin = await _admin()
    if admin is None:
        require_in_ci(PG_UNREACHABLE)
        raise AssertionError("unreachable")  # require_in_ci skips or fails
    schema = f"t_{uuid.uuid4().hex[:16]}"
    try:
        await admin.execute(f"CREATE SCHEMA {schema}")
        yield with_search_path(PG_BASE_URL, schema)
    finally:
        with contextlib.suppress(asyncpg.PostgresError, OSError):
            await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await admin.close()


@pytest.fixture(name="pg_url")
async def pg_url_fixture() -> AsyncIterator[str]:
    async with pg_schema() as url:
        yield url


def open_backend(backend: str, where: str | Path, **kw: Any) -> Store:
    """A Store (not yet opened) for a backend: `where` is a file path or a database URL."""
    if backend == "sqlite":
        from display.store.sqlite import SqliteStore

        return SqliteStore(str(where), **kw)
    from display.store.postgres import PostgresStore

    return PostgresStore(str(where), **kw)


@pytest.fixture(name="store", params=BACKENDS)
async def store_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """An opened, migrated store on a fresh database of each backend."""
    if request.param == "sqlite":
        s = open_backend("sqlite", tmp_path / "store.db")
        await s.open()
        await s.migrate()
        try:
            yield s
        finally:
            await s.close()
        return
    async with pg_schema() as url:
        s = open_backend("postgres", url)
        await s.open()
        await s.migrate()
        try:
            yield s
        finally:
            await s.close()
