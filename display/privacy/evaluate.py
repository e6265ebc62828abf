"""Scoring redaction against a labelled corpus (tests/data/redaction_corpus.jsonl).

Used by bench/redaction.py and by the test that holds the corpus targets.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from display.privacy.normalize import normalize
from display.privacy.redact import redact


@dataclass(frozen=True)
class CorpusLine:
    text: str
    pii: tuple[tuple[str, str], ...]  # (kind, value)
    keep: tuple[str, ...]
    hints: tuple[str, ...] = ()


@dataclass
class CorpusScore:
    lines: int = 0
    caught: dict[str, int] = field(default_factory=dict)
    total: dict[str, int] = field(default_factory=dict)
    kept: int = 0
    keep_total: int = 0
    missed: list[tuple[str, str, str]] = field(default_factory=list)  # kind, value, output
    lost: list[tuple[str, str]] = field(default_factory=list)  # word, output
    clean_changed: list[tuple[str, str]] = field(default_factory=list)  # input, output

    def recall(self, kind: str) -> float:
        return self.caught.get(kind, 0) / self.total[kind] if self.total.get(kind) else 1.0

    @property
    def keep_share(self) -> float:
        return self.kept / self.keep_total if self.keep_total else 1.0


def load_corpus(path: Path) -> list[CorpusLine]:
    lines = []
    with path.open(encoding="utf-8") as f:
        for raw in f:
            if raw.strip():
                row = json.loads(raw)
                lines.append(
                    CorpusLine(
                        text=row["text"],
                        pii=tuple((p["kind"], p["value"]) for p in row["pii"]),
                        keep=tuple(row["keep"]),
                        hints=tuple(row.get("hints", ())),
                    )
                )
    return lines


def score(lines: Iterable[CorpusLine]) -> CorpusScore:
    """A value is caught when neither it nor its normalised form appears in the output."""
    result = CorpusScore()
    for line in lines:
        result.lines += 1
        out = redact(line.text, line.hints).text
        for kind, value in line.pii:
            result.total[kind] = result.total.get(kind, 0) + 1
            if value in out or normalize(value) in out:
                result.missed.append((kind, value, out))
            else:
                result.caught[kind] = result.caught.get(kind, 0) + 1
        for word in line.keep:
            result.keep_total += 1
            if word in out:
                result.kept += 1
            else:
                result.lost.append((word, out))
        if not line.pii and out != normalize(line.text):
            result.clean_changed.append((line.text, out))
    return result
