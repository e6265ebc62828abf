"""Logging set-up: every handler passes through the redacting filter, so no log
line carries a name, phone or ID number, whatever the code above logged."""

from __future__ import annotations

import logging
import sys


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the time, not the stream it was created
    with: the CLI may be started again in one process (tests), each time with its
    own stderr."""

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


def configure(level: int = logging.INFO) -> None:
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    try:
        from display.privacy import RedactingFilter

        handler.addFilter(RedactingFilter())
    except ImportError:  # pragma: no cover - the privacy package ships with the service
        pass
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    # Per-request lines from the HTTP client would drown the feed's own messages.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
