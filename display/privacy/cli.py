"""`yizheng redact`: redact lines from stdin to stdout."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TextIO

from display.privacy.redact import redact


def redact_cli(stdin: TextIO, stdout: TextIO, *, as_json: bool, hints: Iterable[str] = ()) -> int:
    """Write one redacted line per input line, in order; with `as_json`, one JSON object
    {"text": ..., "spans": [{"start", "end", "kind", "replacement"}]} per line.

    Returns the process exit code (0).
    """
    hint_list = tuple(hints)
    for line in stdin:
        body = line.removesuffix("\n").removesuffix("\r")
        result = redact(body, hint_list)
        if as_json:
            record = {
                "text": result.text,
                "spans": [
                    {"start": s.start, "end": s.end, "kind": s.kind, "replacement": s.replacement}
                    for s in result.spans
                ],
            }
            stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
        else:
            stdout.write(result.text + "\n")
    stdout.flush()
    return 0
