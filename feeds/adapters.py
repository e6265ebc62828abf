"""The adapter protocol every pull source implements, and the factory that builds one.

An adapter reads one source and returns a `Batch`. It raises `FeedError` only when
the source cannot be read at all; a single bad record becomes a `Rejected` entry
in the batch and the rest goes on.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from feeds.record import Batch


class FeedError(Exception):
    """The source could not be read. The message is safe to show staff: it names the
    feed, the host and what went wrong, never personal data or credentials."""


class Adapter(Protocol):
    name: str

    async def pull(self, cursor: str | None) -> Batch:
        """Read what changed since `cursor` (None: from the configured start)."""
        ...

    async def aclose(self) -> None: ...


#: kind -> constructor(name, config, towns). Other adapter modules add their entries here.
AdapterFactory = Callable[[str, Mapping[str, Any], Mapping[str, str]], Adapter]

#: Used by the "simulator" kind when the feed names no url (the simulator's default port).
SIMULATOR_URL = "http://127.0.0.1:9311/open311/v2"


def _open311(name: str, config: Mapping[str, Any], towns: Mapping[str, str]) -> Adapter:
    # Imported late so that importing this module stays cheap and cycle-free
    # (open311 imports FeedError from here).
    from feeds.open311 import Open311Adapter

    return Open311Adapter.from_config(name, config, towns)


def _simulator(name: str, config: Mapping[str, Any], towns: Mapping[str, str]) -> Adapter:
    from feeds.open311 import Open311Adapter

    merged = dict(config)
    if not merged.get("url"):
        merged["url"] = SIMULATOR_URL
    return Open311Adapter.from_config(name, merged, towns)


ADAPTERS: dict[str, AdapterFactory] = {
    "open311": _open311,
    "simulator": _simulator,
    "ledger": lambda *a: importlib.import_module("feeds.ledger").LedgerAdapter(*a),
    "jsonapi": lambda *a: importlib.import_module("feeds.jsonapi").JsonApiAdapter(*a),
}


def build_adapter(
    name: str, kind: str, config: Mapping[str, Any], towns: Mapping[str, str]
) -> Adapter:
    """Build the adapter for one configured feed.

    `config` is the feed's TOML table as a flat mapping; `towns` maps text found in
    records (slugs and Chinese names) to town slugs. Raises FeedError for an unknown
    kind or a bad option (the message names the key).
    """
    if kind == "webhook":
        raise FeedError(f"feeds.{name}: a webhook feed is push-only and has no adapter")
    factory = ADAPTERS.get(kind)
    if factory is None:
        known = ", ".join(sorted(ADAPTERS))
        raise FeedError(f"feeds.{name}.kind: unknown kind {kind!r} (known: {known})")
    return factory(name, config, towns)


class TownMatcher:
    """Finds a town slug in free text: exact key first, then the longest key that
    occurs in the text (so 龙市镇 wins over a shorter key contained in it)."""

    def __init__(self, towns: Mapping[str, str]) -> None:
        self._exact = {k.strip().lower(): v for k, v in towns.items() if k.strip()}
        self._keys = sorted(self._exact, key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self._exact)

    def exact(self, text: str | None) -> str | None:
        if not text:
            return None
        return self._exact.get(text.strip().lower())

    def find(self, text: str | None) -> str | None:
        if not text:
            return None
        folded = text.strip().lower()
        hit = self._exact.get(folded)
        if hit is not None:
            return hit
        for key in self._keys:
            if key in folded:
                return self._exact[key]
        return None
