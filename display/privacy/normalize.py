"""The text form every span position refers to.

NFKC folds full-width digits and letters (１３８ → 138, ＋８６ → +86) so one set of rules
catches them. Plain NFKC would also turn Chinese punctuation into ASCII (，→ , ：→ :),
…… into ......, ① into 1 and ㎡ into m2, which changes how a notice looks on a public
screen. `normalize` therefore applies NFKC to everything except those characters.
"""

from __future__ import annotations

import re
import unicodedata

# Full-width Chinese punctuation, the ideographic space, ellipsis, circled numbers and the
# CJK square units (㎡, ㎏ ...). Every one of them is changed by NFKC, so NFKC never produces
# them and `normalize` is idempotent.
_KEEP = "，：；！？（）～\u3000…" + "".join(map(chr, range(0x2460, 0x2474))) + "℃"
_KEEP_RE = re.compile("([" + re.escape(_KEEP) + "\u3380-\u33ff])")


def normalize(text: str) -> str:
    """NFKC, except for the Chinese punctuation and symbols listed in `_KEEP`."""
    if text.isascii():
        return text
    # Fast path for the usual case, text that needs no change. The parts NFKC is applied to
    # below are substrings of the text with the kept characters taken out; when that text
    # is in NFKC, so is each of its substrings, NFKC leaves every part as it is and the
    # result would be `text` again.
    if unicodedata.is_normalized("NFKC", _KEEP_RE.sub("", text)):
        return text
    parts = _KEEP_RE.split(text)
    # split() with one capturing group alternates: text, kept char, text, kept char, ...
    parts[0::2] = [unicodedata.normalize("NFKC", p) if p else p for p in parts[0::2]]
    return "".join(parts)
