"""Redaction benchmark: recall per kind, must-survive words kept, lines per second.

    .venv/bin/python bench/redaction.py [CORPUS ...]

Speed is measured on one core by redacting the whole corpus repeatedly for about a second,
against a same-run baseline (NFKC plus one trivial regex pass over the same lines).
"""

from __future__ import annotations

import re
import sys
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path

from display.privacy import prepare_hints, redact
from display.privacy.evaluate import load_corpus, score

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
CORPUS = DATA / "redaction_corpus.jsonl"
# Same sentence shapes, other seed and name pools; see tests/data/make_redaction_corpus.py.
HOLDOUT = DATA / "redaction_corpus_holdout.jsonl"
NUMBER_KINDS = ("phone", "landline", "id_number", "bank_card", "plate")


def lines_per_second(fn: Callable[[str], object], texts: list[str], budget: float = 1.0) -> float:
    done = 0
    start = time.perf_counter()
    while True:
        for t in texts:
            fn(t)
        done += len(texts)
        elapsed = time.perf_counter() - start
        if elapsed >= budget:
            return done / elapsed


_TRIVIAL = re.compile(r"\d{11}")


def baseline(text: str) -> str:
    return _TRIVIAL.sub("***", unicodedata.normalize("NFKC", text))


def report(path: Path) -> None:
    s = score(load_corpus(path))
    print(f"corpus: {path.name}, {s.lines} lines")
    print("recall per kind (caught / total):")
    for kind in sorted(s.total):
        target = "100%" if kind in NUMBER_KINDS else ("99%" if kind == "name" else "")
        mark = f"  (target {target})" if target else ""
        print(f"  {kind:10} {s.caught.get(kind, 0):4d} / {s.total[kind]:4d}  "
              f"{100 * s.recall(kind):6.2f}%{mark}")  # fmt: skip
    print(f"must-survive words kept: {s.kept} / {s.keep_total} = {100 * s.keep_share:.2f}% "
          "(target 98%)")  # fmt: skip
    print(f"clean lines changed: {len(s.clean_changed)}")
    for kind, value, out in s.missed[:8]:
        print(f"  MISSED {kind}: {value!r} in {out}")
    for word, out in s.lost[:8]:
        print(f"  FALSE POSITIVE (lost {word!r}): {out}")
    for text, out in s.clean_changed[:8]:
        print(f"  FALSE POSITIVE (clean line changed): {text}\n    -> {out}")
    print()


def main() -> int:
    paths = [Path(a) for a in sys.argv[1:]] or [CORPUS, HOLDOUT]
    for path in paths:
        if path.exists():
            report(path)
    corpus = load_corpus(paths[0])
    texts = [line.text for line in corpus]
    base = lines_per_second(baseline, texts)
    ours = lines_per_second(lambda t: redact(t), texts)
    hinted = [(line.text, line.hints or ("张兴九", "13812345678")) for line in corpus]
    with_hints = lines_per_second(lambda t: redact(*t), hinted)  # type: ignore[arg-type]
    # Ingest prepares a record's hints once and redacts several fields with them.
    prepared = [(text, prepare_hints(hints)) for text, hints in hinted]
    with_prepared = lines_per_second(lambda t: redact(*t), prepared)  # type: ignore[arg-type]
    print(f"speed on {paths[0].name}, one core:")
    print(f"baseline (NFKC + one regex): {base:12,.0f} lines/s")
    print(f"redact():                    {ours:12,.0f} lines/s  (target 5,000)")
    print(f"redact() with 2 hints:       {with_hints:12,.0f} lines/s")
    print(f"  the same hints prepared:   {with_prepared:12,.0f} lines/s")
    print(f"ratio redact / baseline:     {ours / base:12.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
