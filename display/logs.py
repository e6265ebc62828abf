"""Logging set-up: every handler passes through the redacting filter, so no log
line carries a name, phone or ID number, whatever the code above logged."""

from __future__ import annotations

import logging
import sys


def configure(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
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
