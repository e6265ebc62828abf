"""Which cases are sensitive, and so show only their category on public screens."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from display.privacy.normalize import normalize

# PIPL art. 28 names medical health, financial accounts, the personal information of
# minors and specific identities as sensitive; a dispute names its parties. A single
# character (医, 病, 药, 诊) is enough for health: 医保, 诊所, 药费 are all health matters.
DEFAULT_SENSITIVE_KEYWORDS: tuple[str, ...] = (
    # health and medical aid
    "医", "病", "药", "诊", "健康", "残疾", "残障", "伤残", "疾", "住院", "手术", "癌", "瘫",
    "透析", "精神", "心理", "抑郁", "孕", "生育", "流产", "艾滋", "传染", "康复", "护理",
    "失能", "失智", "体检", "疫苗",
    # minors and students
    "未成年", "学生", "儿童", "留守", "孤儿", "幼儿", "婴", "小孩", "孩子", "子女", "上学",
    "入学", "辍学", "就学", "学籍", "学费", "助学", "监护", "抚养", "收养",
    # social assistance and finances
    "低保", "五保", "特困", "困难户", "困难群众", "生活困难", "救助", "救济", "补助",
    "补贴", "贫困", "脱贫", "临时救", "贷款", "债务", "欠款", "借款", "还款", "欠薪",
    "拖欠", "工资", "赔偿", "赔款", "养老金", "抚恤", "优抚", "社保", "存款", "银行卡",
    "征信", "破产",
    # disputes between named parties, family and offences
    "纠纷", "家暴", "家庭暴力", "离婚", "婚姻", "赡养", "遗产", "继承", "分家", "打架",
    "斗殴", "殴打", "威胁", "报警", "诈骗", "被骗", "盗窃", "偷", "犯罪", "吸毒", "赌博",
    "性侵", "猥亵", "自杀", "轻生", "矛盾", "上访", "信访", "举报",
    # other PIPL art. 28 categories
    "宗教", "信仰", "行踪", "刑满", "社区矫正", "服刑",
)  # fmt: skip

# Phrases that contain a keyword but are not about a person: crop and livestock disease,
# pesticides, dangerous reservoirs. They are blanked before the keywords are looked for.
DEFAULT_NOT_SENSITIVE: tuple[str, ...] = (
    "病虫害", "病害", "病险", "农药", "兽医", "兽药", "动物疫病", "医疗废物",
)  # fmt: skip


@lru_cache(maxsize=32)
def _compile(
    keywords: tuple[str, ...], exceptions: tuple[str, ...]
) -> tuple[re.Pattern[str] | None, re.Pattern[str] | None]:
    def alt(words: tuple[str, ...]) -> re.Pattern[str] | None:
        words = tuple(sorted({normalize(w).strip() for w in words} - {""}, key=len))
        if not words:
            return None
        return re.compile("|".join(re.escape(w) for w in reversed(words)))

    return alt(keywords), alt(exceptions)


def is_sensitive(
    category: str | None,
    summary: str | None,
    keywords: Iterable[str] | None = None,
    exceptions: Iterable[str] | None = None,
) -> bool:
    """True when the category or the summary contains a sensitive keyword.

    `keywords` replaces DEFAULT_SENSITIVE_KEYWORDS; None or an empty list means the
    default, so an unset setting can never switch the policy off. Phrases in `exceptions`
    (default DEFAULT_NOT_SENSITIVE) are ignored.
    """
    kw = tuple(keywords) if keywords is not None else ()
    kw = kw or DEFAULT_SENSITIVE_KEYWORDS
    ex = DEFAULT_NOT_SENSITIVE if exceptions is None else tuple(exceptions)
    keyword_re, exception_re = _compile(kw, ex)
    if keyword_re is None:
        return False
    text = normalize(f"{category or ''}\n{summary or ''}")
    if exception_re is not None:
        text = exception_re.sub("\n", text)
    return keyword_re.search(text) is not None
