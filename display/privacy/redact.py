"""Redaction of personal information in Chinese appeal text.

Rules are plain regular expressions and small character sets, compiled once at import.
Every rule proposes spans of the normalised text; overlapping spans are merged, and the
output is the normalised text with each span replaced. See docs/privacy.md for the policy.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from display.privacy.normalize import normalize
from display.privacy.surnames import COMPOUND_SURNAMES, SINGLE_SURNAMES, WEAK_SURNAMES

KINDS: frozenset[str] = frozenset(
    {
        "name",
        "phone",
        "landline",
        "id_number",
        "bank_card",
        "plate",
        "qq",
        "wechat",
        "email",
        "address",
        "hint",
    }
)

# Replacements. Names follow the courts: the surname stays and the given name becomes one
# 某, whatever its length (张兴九 → 张某), so the length of the given name is not disclosed.
NAME_MASK = "某"
NUMBER_MASK = "***"
HINT_PLACE_MASK = "某处"


@dataclass(frozen=True)
class Span:
    """A removed stretch of the normalised input: [start, end) and what replaced it.

    It never holds the removed text itself, so spans can be stored and logged.
    """

    start: int
    end: int
    kind: str
    replacement: str


@dataclass(frozen=True)
class Redacted:
    """The safe text, and the spans of `normalize(input)` that were replaced to make it."""

    text: str
    spans: tuple[Span, ...]

    @property
    def changed(self) -> bool:
        """True when something was redacted (normalisation alone does not count)."""
        return bool(self.spans)


# A candidate span: (start, end, kind, replacement). A plain tuple rather than a dataclass
# because a line makes several of them and a frozen dataclass costs far more to build.
_Cand = tuple[int, int, str, str]

# --------------------------------------------------------------------------- numbers

# Government service hotlines, printed on every notice; never personal.
PUBLIC_NUMBERS: frozenset[str] = frozenset(
    "12345 12388 12315 12320 12319 12333 12366 12369 12348 12318 12110 12395 12306 "
    "12331 12338 12351 12358 12365".split()
)

# Separators people put inside numbers: spaces, hyphens, dots, middle dots, zero-width.
_SEP = r"[ \t\u3000\-.·\u200b-\u200d\ufeff]"
_NOT_AFTER_ALNUM = r"(?<![0-9A-Za-z])"
# A digit with no letter or digit before it: `_NOT_AFTER_ALNUM + r"\d"` with the digit
# first, so that the regex engine jumps from digit to digit instead of trying every place.
_DIGIT_NOT_AFTER_ALNUM = r"\d(?<![0-9A-Za-z]\d)"
_NOT_BEFORE_DIGIT = r"(?![0-9])"
_DAY = r"(?:0[1-9]|[12]\d|3[01])"
_MONTH = r"(?:0[1-9]|1[0-2])"

# The rules that start with _DIGIT_NOT_AFTER_ALNUM have matched one digit already, so
# their first count is one less than the digits meant: \d{5} after it makes six.
_ID18_RE = re.compile(
    _DIGIT_NOT_AFTER_ALNUM
    + rf"\d{{5}}{_SEP}?(?:18|19|20)\d\d{_MONTH}{_DAY}{_SEP}?\d{{3}}[0-9Xx](?![0-9A-Za-z])"
)
_ID15_RE = re.compile(_DIGIT_NOT_AFTER_ALNUM + rf"\d{{5}}\d\d{_MONTH}{_DAY}\d{{3}}(?![0-9A-Za-z])")
# Anything shaped like an 18-character ID that failed the date check is still masked.
_ID_LIKE_RE = re.compile(_DIGIT_NOT_AFTER_ALNUM + r"\d{16}[Xx](?![0-9A-Za-z])")
_BANK_RE = re.compile(
    _DIGIT_NOT_AFTER_ALNUM
    + r"(?:\d{15,18}|\d{3}(?:[ \-]\d{4}){3}(?:[ \-]?\d{1,3})?|\d{5}[ \-]\d{10,13})"
    + r"(?![0-9A-Za-z])"
)
# Any long run of digits left over (order numbers, account numbers...): never shown.
_LONG_DIGITS_RE = re.compile(_DIGIT_NOT_AFTER_ALNUM + r"\d{11,}" + _NOT_BEFORE_DIGIT)
_MOBILE_HEAD = r"1[3-9]\d"
_MOBILE_RE = re.compile(
    r"(?:(?<![0-9A-Za-z+])(?:\+|00)86[ \-]?|[(（]\+?86[)）][ \-]?|(?<![0-9A-Za-z]))"
    + _MOBILE_HEAD
    + rf"(?:{_SEP}{{0,2}}\d){{8}}"
    + _NOT_BEFORE_DIGIT
)
_LANDLINE_RE = re.compile(
    r"(?:[(（]0\d{2,3}[)）][ \-]?|"
    + _NOT_AFTER_ALNUM
    + r"0\d{2,3}[ \-]?)[1-9]\d{6,7}"
    + _NOT_BEFORE_DIGIT
)
_COLON = r"[ \t\u3000]*[:：]?[ \t\u3000]*(?:是|为)?[ \t\u3000]*[:：]?[ \t\u3000]*"
_PHONE_LABELS = ("电话", "手机", "座机", "固话", "联系方式", "号码", "tel", "phone")
_PHONE_LABEL_RE = re.compile(
    "(?i:"
    + "|".join(_PHONE_LABELS)
    + ")(?:号码|号)?"
    + _COLON
    + rf"(\d(?:{_SEP}{{0,2}}\d){{4,}})"
    + _NOT_BEFORE_DIGIT
)
_QQ_LABELS = ("qq", "扣扣")
_QQ_RE = re.compile(
    "(?i:" + "|".join(_QQ_LABELS) + ")(?:号码|号)?" + _COLON + r"(\d{5,12})" + _NOT_BEFORE_DIGIT
)
_WECHAT_LABELS = ("微信", "weixin", "wechat", "vx", "v信", "wx")
_WECHAT_RE = re.compile(
    "(?i:"
    + "|".join(_WECHAT_LABELS)
    + ")(?:号码|号|id)?"
    + _COLON
    + r"([A-Za-z0-9][-_A-Za-z0-9]{4,19})(?![-_A-Za-z0-9])"
)
# Bounded repeats keep a long run of letters with one @ from costing quadratic time.
_EMAIL_RE = re.compile(r"[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63}){1,8}")
_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
_PLATE_CHAR = "[A-HJ-NP-Za-hj-np-z0-9]"
_PLATE_RE = re.compile(
    rf"[{_PROVINCES}][A-Za-z]([ \-·•・.]?(?:[DFdf]{_PLATE_CHAR}\d{{4}}|\d{{5}}[DFdf]"
    rf"|{_PLATE_CHAR}{{5}}|{_PLATE_CHAR}{{4}}[挂学警港澳]))(?![A-Za-z0-9])"
)

# --------------------------------------------------------------------------- addresses

_NUM = r"\d{1,5}(?:-\d{1,5})?"
_FIRST_UNIT = r"(?:号楼|号院|单元|组|社|号|栋|幢|座|室|楼)"
_NEXT_UNIT = r"(?:号楼|号院|单元|组|社|号|栋|幢|座|室|楼|层)"
_ADDRESS_RE = re.compile(
    r"(?<![0-9A-Za-z\-.:/])"
    rf"((?:附)?{_NUM}{_FIRST_UNIT})((?:(?:附|之)?{_NUM}{_NEXT_UNIT})*)"
)
# 三组, 十二社 only straight after a village or community name.
_CN_GROUP_RE = re.compile(r"(?:(?<=村)|(?<=社区))[一二三四五六七八九十]{1,3}(?:组|社)")
# What every house number has: the last digit of its first number, then its first unit.
_DIGIT_THEN_UNIT_RE = re.compile(r"\d" + _FIRST_UNIT)
_DOOR_LABEL_RE = re.compile(r"门牌(?:号码|号)?" + _COLON + r"(\d{1,5}(?:-\d{1,5})?)")
_DIGITS_IN_RE = re.compile(r"\d{1,5}(?:-\d{1,5})?")
# A bare "12号" is a date after 月 and a document or line number after 第; and also a date
# when a time of day follows.
_DATE_AFTER_HAO_RE = re.compile(
    r"(?:上午|下午|中午|晚上|早上|凌晨|晚|当天|当日|前后|之前|以前|之后|以后|起|至|到|左右|、\d)"
)
_NOT_ADDRESS_AFTER_HAO = "文令线字码位机球公通"

# --------------------------------------------------------------------------- names

# Honorifics and roles after a name: 张兴九大爷, 王小红阿姨, 陈明书记.
_HONORIFICS = (
    "大爷 大娘 大妈 大姐 大哥 大叔 大伯 大婶 大嫂 大姨 阿姨 阿婆 阿公 叔叔 伯伯 婆婆 爷爷 奶奶 "
    "嬢嬢 孃孃 姐姐 哥哥 老汉 老太 老人 老师 师傅 师父 女士 先生 小姐 同志 同学 书记 副书记 "
    "主任 副主任 镇长 副镇长 乡长 局长 所长 站长 科长 部长 校长 院长 医生 大夫 护士 律师 "
    "警官 会计 主席 委员 网格员 老板 夫妇 夫妻 两口子 一家 之子 之女 之妻 的儿子 的女儿 "
    "的父亲 的母亲 的妻子 的丈夫 家属 一户 户主 本人 等人"
).split()
# Weaker markers, accepted only after a three-character name: 刘德华家, 王建国户, 李秀英等.
_WEAK_HONORIFICS = ("家", "户", "等")
# Reporting verbs and other words that follow a name in appeal text: 何小红反映, 张伟称.
_VERBS = (
    "反映 反应 来电 来访 来信 致电 打电话 称 诉称 表示 投诉 举报 咨询 询问 求助 "
    "反馈 提出 要求 希望 申请 请求 诉求 建议 认为 介绍 告诉 家中 家门 家里 家住 家的 家房 住在 "
    "居住 所述 现年 年近 年过 身份证 联系 承包 名下 通过"
).split() + [
    "的" + w
    for w in "微信 电话 手机 身份证 银行卡 房 住 承包 诉求 土地 家 儿 女 妻 丈夫 父 母 孩 车 "
    "QQ qq 邮箱".split()
]
# Short words that follow names (张三在家, 李四于3月, 王五系本村村民) but also follow
# ordinary words (分管领导在, 及时收集于); not enough after a surname that is also a word.
_SOFT_VERBS = frozenset("在于系因说讲等")
# Words before a name: roles and labels (村民何小红, 诉求人：王某某, 书记颜复环).
_TRIGGERS = (
    "村民 居民 群众 农户 农民 市民 诉求人 投诉人 申请人 反映人 来电人 来访人 举报人 求助人 "
    "当事人 户主 业主 租户 住户 家属 老人 患者 病人 学生 孩子 儿子 女儿 其子 其女 之子 之女 "
    "妻子 丈夫 母亲 父亲 爷爷 奶奶 邻居 联系人 姓名 名字 老板 师傅 书记 副书记 主任 副主任 "
    "主席 所长 站长 局长 科长 队长 校长 院长 部长 乡长 "
    "镇长 村长 组长 社长 网格员 工作人员 干部 同志 经办人 负责人 承包人 承包户 低保户 五保户 "
    "贫困户 残疾人 退役军人 党员 村医 医生 教师 老师 代表 委员 记者 摄像 摄影 通讯员 驾驶员 "
    "司机 车主 房东 租客 员工 职工 工人 务工人员 嫌疑人 原告 被告 被申请人 被投诉人 对方 男子 "
    "女子 老汉 小孩 孙子 孙女 外孙 侄子 兄弟 姐妹 儿媳 女婿"
).split()

# Characters that (almost) never appear in a given name, anywhere in it.
_STOP_ANY = (
    "的了在是和与及或也又还就都而且但并把被将对向从到于以为因由给让使等个些这那其之所者们"
    "啊吗呢吧呀哦嗯不没无未非别莫勿某每各另此该本几多半零〇两百千亿"
    "年日时号点分秒早晚今昨去前后上下左右里外内间旁边面底亲湾坝沟嘴寨坪塘垭坳坡堡"
    "村镇乡县市省区街路巷道组社楼室单户院门房屋墙厂店场站所局办处科委会府部队"
    "说称讲问答反映电话访投诉举报咨询求要请望申提议认介绍告表示做办修装拆挖堵漏排"
    "需必得想叫元块钱费款额价沟渠桥灯用务困难附近收集导机"
    "众员工司位记主师傅人女男老先士姨爷爷奶婆叔伯哥姐嫂婶娘妈爸"
    "贴速碾额情况问题现称系据核经该已曾再仍尚均共类"
    "住房屋地址号码身份证件卡牌车辆"
)
# Characters that may end a given name (建民, 家明) but do not start one (居民, 家长).
_STOP_FIRST = "民方理意益"

_CJK_LO, _CJK_HI = "\u4e00", "\u9fff"
_STOP_ANY_SET = frozenset(_STOP_ANY)
_STOP_FIRST_SET = frozenset(_STOP_FIRST) | _STOP_ANY_SET

# Two- or three-character words that start with a surname character and are not names,
# for the contexts where the characters themselves would pass.
_NOT_NAMES = frozenset(
    (
        "何时 何处 金额 张贴 马路 高速 母亲 常务 黄桷 占用 关心 关怀 房东 困难 干群 黄家 王家 "
        "石碾 安全 和平 平安 文明 公平 公正 公开 "
        "公共 公路 公司 公示 公告 公交 公厕 公墓 公园 公益 全面 全体 全部 全村 全镇 全市 常年 "
        "常住 经常 曾经 时常 于是 后来 后期 高度 高兴 强烈 明确 明显 明天 明年 方便 方法 "
        "方案 通知 通过 通行 向来 终于 利益 满意 代表 干部 党员 家长 家属 家庭 家人 师生 农户 "
        "农民 商户 居民 能力 能够 应该 应当 相关 相应 解决 解释 单位 计划 成立 成本 成为 经过 "
        "经济 山区 车辆 宁静 景区 司机 白天 从来 从而 党委 申请 边坡 尚未 农业 温度 庄稼 连续 "
        "古树 易地 广场 广大 文化 文件 国家 国土 东西 利用 越来 那边 养殖 查看 红薯 游客 双凤 "
        "关于 关注 关系 查询 水泥 水管 水沟 水渠 水质 水费 雷雨 龙市 云顶 双方 符合 武装 路面 "
        "路灯 路口 路段 江边 田间 田地 田坎 钱款 余额 任务 任何 管理 管道 卫生 严重 施工 金融 "
        "钟楼 毛路 胡家 响石 银杏 古宇 桂湖 石板 石桥 石头 黄土 黄色 白色 红色 高压 高温 高中 "
        "高考 周边 周末 周年 周围 林业 林地 林权 田园 苏州 罗汉 杨柳 柳树 梅花 桃花 花园 松树 "
        "竹林 水稻 水果 牛羊 羊圈 鱼塘 鲁莽 秦岭 项目 万元 百姓 平方 平时 平台 平坦 平整 计算 "
        "齐全 安装 安排 安置 安徽 康复 吉庆 明白 华西 孙子 孙女 宋体 程度 程序 蒋家 邓家 冯家 "
        "乐山 乐意 乐观 伍家 包括 包干 包装 雷电 成都 重庆 江西 江苏 左边 右边 丁字 卢沟 沙石 "
        "沙土 沙子 沙发 冷水 冷库 辛苦 简单 简易 曲折 危房 危险 危桥 步行 都市 宁愿 冉冉 席位 "
        "燕子 燕窝 牛奶 马上 马桶 马匹 强度 强降 强化 强调 季节 祝福 梁上 房梁 柴火 柴油 苗木 "
        "谷子 鱼苗 申报 贾家 龚家 裴家 熊猫 易涝 危化 伍某 和睦 和谐 和气 和好 向好 向阳 上官 "
        "明细 凤凰 凤山 龙门 龙头 龙眼 柏油 柏树 杜绝 阮家 蓝色 闵家 江河 尹家 谢谢 范围 彭家 "
        "郎中 韦家 昌盛 汤圆 罗列 罗盘 毕业 郝家 常规 常务 于今 时任 伍佰 余下 元旦 顾及 顾客 "
        "孟家 黄昏 黄金 萧条 姚家 汪洋 毛坯 禹王 米饭 米粉 贝壳 计量 成员 成片 成效 成绩 成熟 "
        "戴帽 谈话 宋家 舒适 屈指 项链 董事 杜仲 席卷 季度 麻烦 麻将 贾某 江湾 童年 颜色 郭家 "
        "梅雨 盛夏 林荫 钟点 徐徐 高楼 高粱 夏季 夏天 蔡家 田埂 胡同 胡乱 凌晨 万一 支持 支付 "
        "支援 柯家 管护 卢家 莫名 经营 经费 经办 房产 房租 裘皮 干旱 干净 干燥 解答 应急 宗教 "
        "丁家 宣传 邓小 郁闷 单独 单身 杭州 洪水 洪涝 包裹 诸多 左右 石材 崔家 吉祥 程家 滑坡 "
        "陆续 荣誉 翁家 惠民 曲线 封闭 封路 储存 松动 段家 富裕 乌龟 焦虑 巴士 车道 车站 车位 "
        "侯家 全年 全力 全国 秋季 秋收 宁家 甘蔗 祖坟 祖屋 武警 符号 刘家 景观 龙家 叶子 幸福 "
        "司法 黎明 薄膜 印发 白菜 从事 索要 赖账 卓越 屠宰 蒙受 池塘 乔木 双休 双向 闻讯 党组 "
        "党群 谭家 劳动 劳务 申诉 扶贫 扶持 冉家 桑树 桂花 牛棚 通过 通往 通讯 边上 燕家 浦东 "
        "尚且 农田 农机 农资 农村 温暖 温馨 别人 庄家 柴家 连接 连片 习惯 艾草 鱼类 容易 容量 "
        "向日 古城 古井 易燃 慎重 廖家 终止 步道 都有 满足 满载 国道 国庆 文字 广告 东边 东侧 "
        "利润 越野 师范 聂家 冷清 那些 那里 空地 空调 空气 曾家 沙坝 养老 须知 丰收 关闭 查处 "
        "后面 后续 红旗 游戏 权益 盖章 公众 公布 公安 公务 能源 能否 居住 居委 家中 家里 时间 "
        "时候 时段 年度 年底 年初 法律 法院 海拔 有关 有效 有人 爱心 福利 言语 伯伯 归还 汝阳"
    ).split()
)

_HON_RE = re.compile("|".join(sorted(_HONORIFICS, key=len, reverse=True)))
_VERB_RE = re.compile(
    "|".join(sorted(_VERBS, key=len, reverse=True))
    # 张三（男，45岁）; 张三，你家...; 张三，微信...; 张三等8户
    + r"|[,，(（][ ]?[男女][,，)）、0-9]|[(（]化名"
    + r"|[,，][ ]?(?:你|您|微信|vx|VX|电话|手机|QQ|qq|身份证|联系)"
    + r"|等(?:\d|人|[一二三四五六七八九十几多]+[户人名位])"
)
# The characters a match of _HON_RE can start with. Most positions tried hold none of
# them, and a set lookup is far cheaper than a regex match that tries every word.
_HON_FIRST = frozenset(w[0] for w in _HONORIFICS)
_TRIGGER_SPACE, _TRIGGER_COLON = " \t\u3000", ":："
_TRIGGER_RE = re.compile(
    "(?:"
    + "|".join(sorted(_TRIGGERS, key=len, reverse=True))
    + f")[{_TRIGGER_SPACE}]*[{_TRIGGER_COLON}]?[{_TRIGGER_SPACE}]*"
)
# The last character of any match of _TRIGGER_RE: that of a word, a space or a colon.
_TRIGGER_LAST = frozenset(w[-1] for w in _TRIGGERS) | frozenset(_TRIGGER_SPACE + _TRIGGER_COLON)
# After a name, these characters end it; used to choose between a two- and a
# three-character name when only a role word before it marks the name.
_BOUNDARY = frozenset(
    " \t\u3000,，.。、;；:：!！?？()（）“”\"'《》【】[]-—…的家等和与及在于因对向将把被也又已曾"
    "今去多住从到给让为是就都还说称反来投诉咨询要请希提申建认介告表0123456789"
)
_LIST_JOINERS = frozenset("、和与及跟同")
_JOINERS_AND_COMMAS = _LIST_JOINERS | frozenset(",，")
_OPEN_LEFT = frozenset(
    " \t\u3000,，.。、;；:：!！?？()（）“”\"'《》【】[]-—…0123456789"
    "的村镇乡区组社街路巷室栋楼元某和与跟同给对向找叫问请是"
)
# What may stand before a weak surname that starts a name (see `_surnames_in`).
_WEAK_OPEN = _OPEN_LEFT | _TRIGGER_LAST
_ALNUM_DIGITS = frozenset("0123456789")


def _given_ok(text: str, start: int, length: int) -> bool:
    end = start + length
    if end > len(text):
        return False
    first = text[start]
    if not (_CJK_LO <= first <= _CJK_HI) or first in _STOP_FIRST_SET:
        return False
    for c in text[start + 1 : end]:
        if not (_CJK_LO <= c <= _CJK_HI) or c in _STOP_ANY_SET:
            return False
    return True


def _is_boundary(text: str, pos: int) -> bool:
    if pos >= len(text):
        return True
    c = text[pos]
    return (
        c in _BOUNDARY
        or (c in _HON_FIRST and _HON_RE.match(text, pos) is not None)
        or _VERB_RE.match(text, pos) is not None
    )


def _may_start_given(c: str) -> bool:
    """Whether a given name may start with `c`: the first test of `_given_ok`."""
    return _CJK_LO <= c <= _CJK_HI and c not in _STOP_FIRST_SET


# Words that follow a one-character surname in category names (道路交通诉求: 路 is a
# surname, 交通 is not a given name). Kept apart from _NOT_NAMES, which also holds
# words that are common given names (国庆).
_NOT_GIVEN = frozenset(
    "交通 卫生 水利 环境 教育 医疗 民生 治安 消防 供水 供电 通信 通讯 物业 养老 社保 就业 "
    "林业 农业 城建 城管 市容 畜牧 殡葬 信访 司法 国土 规划 住建 应急 气象 旅游 体育 商务 "
    "市场 税务 金融 邮政 电力 燃气".split()
)


def _name_at(
    text: str, start: int, surname: str, trigger_ends: set[int], list_starts: set[int]
) -> int:
    """The end of a name whose surname starts at `start`, or -1 when none is marked there."""
    n = len(text)
    g0 = start + len(surname)
    # Every way to a name below needs a one- or two-character given name starting at g0,
    # and both start with the test of _may_start_given: when it fails, nothing is found.
    if g0 >= n:
        return -1
    c0 = text[g0]
    if not (_CJK_LO <= c0 <= _CJK_HI) or c0 in _STOP_FIRST_SET:  # _may_start_given
        return -1
    if c0 in _HON_FIRST and _HON_RE.match(text, g0):
        return -1  # 李大哥, 王女士: no given name to remove
    weak = len(surname) == 1 and surname in WEAK_SURNAMES
    if (
        weak
        and c0 in _SINGLE_SET
        and (
            c0 not in WEAK_SURNAMES
            or (g0 + 1 < n and text[g0 + 1] in _HON_FIRST and _HON_RE.match(text, g0 + 1))
        )
    ):
        # 和张大爷, 向李大哥, 和王明说: the surname is the next character, not this one.
        return -1
    # A weak surname glued to the word before it is part of that word (去年冬天来电,
    # 分管领导在, 饮水困难): it needs the start of a clause, a place or a role word before it.
    open_left = start == 0 or text[start - 1] in _OPEN_LEFT or start in trigger_ends
    if weak and not open_left:
        return -1
    # The given name: the first character passed _may_start_given above (_given_ok).
    c1 = text[g0 + 1] if g0 + 1 < n else ""
    ok2 = (
        c1 != ""
        and _CJK_LO <= c1 <= _CJK_HI
        and c1 not in _STOP_ANY_SET
        and text[start : g0 + 2] not in _NOT_NAMES
        # 道路交通诉求: 路 is a surname, but 交通 is a word, not a given name.
        and text[g0 : g0 + 2] not in _NOT_GIVEN
        # 司机李师傅: a word, then the next person's surname.
        and not (c1 in _SINGLE_SET and text[start : g0 + 1] in _NOT_NAMES)
    )
    # 王家, 李家: a family, not a one-character given name.
    ok1 = c0 != "家" and text[start : g0 + 1] not in _NOT_NAMES
    for glen, ok in ((2, ok2), (1, ok1)):
        if not ok:
            continue
        end = g0 + glen
        if end >= n:
            continue  # no marker after the end of the text, and no list goes on from it
        c = text[end]
        if c in _HON_FIRST and _HON_RE.match(text, end):
            return end
        if glen == 2 and text.startswith(_WEAK_HONORIFICS, end):
            return end
        if c in _SOFT_VERBS or _VERB_RE.match(text, end):
            return end
        if end + 1 in list_starts and (c in _LIST_JOINERS or (c in ",，" and open_left)):
            return end  # 张伟、李娜反映; 王建国，李秀英夫妇
    if start in trigger_ends:
        if ok2 and _is_boundary(text, g0 + 2):
            return g0 + 2
        if ok1 and _is_boundary(text, g0 + 1):
            return g0 + 1
        if ok2:
            return g0 + 2
        if ok1 and not weak:
            return g0 + 1
    return -1


def _cjk_class_without(excluded: frozenset[str]) -> str:
    """A regex character class of the CJK block of `_given_ok` minus `excluded`."""
    ranges: list[str] = []
    first = -1
    for cp in range(ord(_CJK_LO), ord(_CJK_HI) + 2):
        keep = cp <= ord(_CJK_HI) and chr(cp) not in excluded
        if keep and first < 0:
            first = cp
        elif not keep and first >= 0:
            ranges.append(chr(first) if cp - 1 == first else f"{chr(first)}-{chr(cp - 1)}")
            first = -1
    return "[" + "".join(ranges) + "]"


_COMPOUND_FIRST = frozenset(s[0] for s in COMPOUND_SURNAMES)
# A surname that may begin a name, found by the regex engine rather than by a Python loop
# over every character. The first alternative is exact: a single surname that cannot start
# a compound one, followed by a character that passes _may_start_given. The second takes
# every character that can start a compound surname, for `_surnames_in` to check.
_SURNAME_RE = re.compile(
    "["
    + re.escape("".join(sorted(frozenset(SINGLE_SURNAMES) - _COMPOUND_FIRST)))
    + "](?="
    + _cjk_class_without(_STOP_FIRST_SET)
    + ")|["
    + re.escape("".join(sorted(_COMPOUND_FIRST)))
    + "]"
)


def _surnames_in(text: str) -> list[tuple[int, str]]:
    """Where a surname starts that may begin a name, and which surname it is.

    Every position is tried, so overlapping surnames are kept. A position is left out when
    no given name can start after its surname (nor after the first character of a compound
    one): `_name_at` would return -1 there whatever the context.
    """
    positions = []
    n = len(text)
    for m in _SURNAME_RE.finditer(text):
        start = m.start()
        first = m.group()
        if first not in _COMPOUND_FIRST:
            # Checked in full by the regex. A weak surname also needs what `_name_at` calls
            # open_left: the start of the text, a character of _OPEN_LEFT before it, or a
            # role word that ends there, and so a character of _TRIGGER_LAST before it.
            if first not in WEAK_SURNAMES or not start or text[start - 1] in _WEAK_OPEN:
                positions.append((start, first))
            continue
        if start + 1 >= n:
            break  # a surname at the very end has no given name after it
        two = text[start : start + 2]
        if two in _COMPOUND_SET:
            if (start + 2 < n and _may_start_given(text[start + 2])) or _may_start_given(two[1]):
                positions.append((start, two))
        elif two[0] in _SINGLE_SET and _may_start_given(two[1]):
            positions.append((start, two[0]))
    return positions


def _name_spans(text: str, out: list[_Cand]) -> None:
    positions = _surnames_in(text)
    if not positions:
        return
    # `_name_at` asks only whether a role word ends where a surname starts. When no
    # surname follows a character that can end one, the answer is always no: no scan.
    trigger_ends: set[int] = set()
    for start, _surname in positions:
        if start and text[start - 1] in _TRIGGER_LAST:
            trigger_ends = {m.end() for m in _TRIGGER_RE.finditer(text)}
            break
    found: dict[int, int] = {}
    list_starts: set[int] = set()
    # A second round catches the earlier names of a list: 张伟、李娜反映.
    for _ in range(3):
        before = len(found)
        for start, surname in positions:
            if start in found:
                continue
            # After the first round, a position that failed before can only succeed
            # through the list rule of `_name_at`: a name found that starts just after the
            # joiner that follows this name. A surname of one or two characters and a given
            # name of one or two put that start at start + 3, 4 or 5.
            if list_starts and not (
                start + 3 in list_starts or start + 4 in list_starts or start + 5 in list_starts
            ):
                continue
            end = _name_at(text, start, surname, trigger_ends, list_starts)
            if end < 0 and len(surname) == 2 and text.startswith(NAME_MASK, start + 2):
                continue  # 欧阳某 is already redacted; 欧 + 阳 would be a new, wrong name
            if end < 0 and len(surname) == 2:  # 欧阳 failed: try 欧 alone
                end = _name_at(text, start, surname[0], trigger_ends, list_starts)
                surname = surname[0]
            if end > 0:
                found[start] = end
                out.append((start + len(surname), end, "name", NAME_MASK))
        # Only a list joiner can let a name found in one round mark another in the next.
        if len(found) == before or _JOINERS_AND_COMMAS.isdisjoint(text):
            break
        list_starts = set(found)


_ENUM_RE = re.compile(r"[\u4e00-\u9fff]{2,4}(?:、[\u4e00-\u9fff]{2,4})+")
_ENUM_LEFT = frozenset("(（“\"'：:，,；; \u3000")
_ENUM_RIGHT = frozenset(")）”\"'，,。；; \u3000")


def _plain_name(item: str) -> int:
    """The surname length when `item` is a bare name (张三, 欧阳娜娜), else 0."""
    for slen in (2, 1):
        sur = item[:slen]
        if (sur in _COMPOUND_SET if slen == 2 else sur in _SINGLE_SET) and 1 <= len(
            item
        ) - slen <= 2:
            if (
                _given_ok(item, slen, len(item) - slen)
                and item not in _NOT_NAMES
                and not _HON_RE.match(item, slen)
            ):
                return slen
    return 0


def _enumeration_spans(text: str, out: list[_Cand]) -> None:
    """Bare lists of names, as in a byline: （郑波、胡雷、周月玲）."""
    for m in _ENUM_RE.finditer(text):
        s, e = m.start(), m.end()
        left = text[s - 1] if s else " "
        right = text[e] if e < len(text) else " "
        if left not in _ENUM_LEFT or right not in _ENUM_RIGHT:
            continue
        items = m.group(0).split("、")
        if len(items) < 3 and not (left in "(（" and right in ")）"):
            continue
        lengths = [_plain_name(item) for item in items]
        if not all(lengths):
            continue
        pos = s
        for item, slen in zip(items, lengths, strict=True):
            out.append((pos + slen, pos + len(item), "name", NAME_MASK))
            pos += len(item) + 1


# Cheap tests that let `_number_spans` and `_address_spans` skip whole passes. Each pass
# below names the test that guards it and why no match is possible without it. `\d` is
# Unicode-aware here exactly as in the rules, so the guards see the same digits they do.
_DIGIT_RE = re.compile(r"\d")
_DIGIT_RUNS_RE = re.compile(r"\d+")
_MOBILE_HEAD_RE = re.compile(_MOBILE_HEAD)
# Every bank-card shape but one run of 16 digits or more has two groups of four digits
# with a space or a hyphen between them (6222 0212 ..., 622202 1234567890).
_SPACED_GROUPS_RE = re.compile(r"\d{4}[ \-]\d{4}")
# Any character that matches a Latin letter, also case-insensitively (ſ, K, ı and İ too).
_LATIN_RE = re.compile(r"[a-z]", re.IGNORECASE)


def _label_gate(labels: tuple[str, ...]) -> re.Pattern[str]:
    """What a text without a match of _LATIN_RE must contain for one of `labels` to match.

    A label matched case-insensitively begins with a character that matches its first
    letter that way, so a label that begins with a Latin letter needs a match of
    _LATIN_RE. The others are searched for as they are, case-insensitively like the rule.
    """
    others = [re.escape(w) for w in labels if not _LATIN_RE.match(w[0])]
    return re.compile("|".join(others) or "(?!)", re.IGNORECASE)


_PHONE_LABEL_GATE = _label_gate(_PHONE_LABELS)
_QQ_LABEL_GATE = _label_gate(_QQ_LABELS)
_WECHAT_LABEL_GATE = _label_gate(_WECHAT_LABELS)


def _number_spans(text: str, out: list[_Cand], has_digit: bool, *, gated: bool = True) -> None:
    """Phone, ID, bank card, QQ, WeChat, e-mail and plate candidates.

    Each rule runs only when the text can hold a match of it (its gate). With
    `gated=False` every rule runs: tests compare the two on generated text, so a rule
    changed without its gate fails a test instead of silently losing recall.
    """
    # The longest run of digits in a row. Each rule needs a run of some length: the
    # comparisons below hold the shortest run that each can match.
    longest = max(map(len, _DIGIT_RUNS_RE.findall(text))) if has_digit else 0
    # The phone, QQ and WeChat rules also need their label.
    latin = _LATIN_RE.search(text) is not None
    if not gated:
        has_digit, longest, latin = True, len(text) + 1, True
    if longest >= 8:  # the date of birth, 19900101, even when the parts are spaced
        for m in _ID18_RE.finditer(text):
            out.append((m.start(), m.end(), "id_number", NUMBER_MASK))
    if longest >= 15:
        for m in _ID15_RE.finditer(text):
            out.append((m.start(), m.end(), "id_number", NUMBER_MASK))
    if longest >= 17:
        for m in _ID_LIKE_RE.finditer(text):
            out.append((m.start(), m.end(), "id_number", NUMBER_MASK))
    if longest >= 16 or (longest >= 4 and _SPACED_GROUPS_RE.search(text)):
        for m in _BANK_RE.finditer(text):
            out.append((m.start(), m.end(), "bank_card", NUMBER_MASK))
    if longest >= 12:
        for m in _LONG_DIGITS_RE.finditer(text):
            out.append((m.start(), m.end(), "bank_card", NUMBER_MASK))
    if longest >= 3 and (not gated or _MOBILE_HEAD_RE.search(text)):  # 138 1234 5678
        for m in _MOBILE_RE.finditer(text):
            out.append((m.start(), m.end(), "phone", NUMBER_MASK))
    if longest >= 7:  # the local number after the area code
        for m in _LANDLINE_RE.finditer(text):
            out.append((m.start(), m.end(), "landline", NUMBER_MASK))
    # After a label, digits may be spaced one by one: a single digit is enough.
    if has_digit and (latin or _PHONE_LABEL_GATE.search(text)):
        for m in _PHONE_LABEL_RE.finditer(text):
            number = "".join(c for c in m.group(1) if c in _ALNUM_DIGITS)
            if number in PUBLIC_NUMBERS or (number[:3] in ("400", "800") and len(number) == 10):
                continue  # 12345 热线, 12388 举报电话: public service numbers, not personal
            digits = len(number)
            kind = "phone" if digits == 11 and m.group(1)[0] == "1" else "landline"
            out.append((m.start(1), m.end(1), kind, NUMBER_MASK))
    if longest >= 5 and (latin or _QQ_LABEL_GATE.search(text)):
        for m in _QQ_RE.finditer(text):
            out.append((m.start(1), m.end(1), "qq", NUMBER_MASK))
    # A WeChat ID needs its label and a Latin letter or an ASCII digit; a plate needs a
    # Latin letter after the province.
    if latin or (has_digit and _WECHAT_LABEL_GATE.search(text)):
        for m in _WECHAT_RE.finditer(text):
            out.append((m.start(1), m.end(1), "wechat", NUMBER_MASK))
    if "@" in text:
        for m in _EMAIL_RE.finditer(text):
            out.append((m.start(), m.end(), "email", NUMBER_MASK))
    if latin:
        for m in _PLATE_RE.finditer(text):
            out.append((m.start(1), m.end(1), "plate", NUMBER_MASK))


def _address_spans(text: str, out: list[_Cand], has_digit: bool, *, gated: bool = True) -> None:
    """House numbers, 门牌 and village groups; `gated` as in `_number_spans`."""
    # A house number needs a digit followed by a unit (12号, 3-2栋); the 门牌 label needs
    # itself and a digit; 三组 and 十二社 need 组 or 社.
    if not gated:
        has_digit = True
    if has_digit and (not gated or _DIGIT_THEN_UNIT_RE.search(text)):
        for m in _ADDRESS_RE.finditer(text):
            first = m.group(1)
            if first.endswith("号") and not first.endswith(("号楼", "号院")) and not m.group(2):
                before = text[m.start() - 1] if m.start() else ""
                if before in "月第" or _DATE_AFTER_HAO_RE.match(text, m.end()):
                    continue
                if m.end() < len(text) and text[m.end()] in _NOT_ADDRESS_AFTER_HAO:
                    continue
            out.append((m.start(), m.end(), "address", _DIGITS_IN_RE.sub(NAME_MASK, m.group(0))))
    if not gated or "组" in text or "社" in text:
        for m in _CN_GROUP_RE.finditer(text):
            out.append((m.start(), m.end(), "address", NAME_MASK + m.group(0)[-1]))
    if has_digit and (not gated or "门牌" in text):
        for m in _DOOR_LABEL_RE.finditer(text):
            out.append((m.start(1), m.end(1), "address", NAME_MASK))


# --------------------------------------------------------------------------- hints

_DIGIT_RUN_RE = re.compile(rf"\d(?:{_SEP}{{0,2}}\d)*")
_NOT_ASCII_DIGITS_RE = re.compile(r"[^0-9]+")
_ADMIN_UNIT_RE = re.compile(r"街道|社区|镇|乡|村")
_ADDRESS_HINT_CHARS = frozenset("组号路街巷道栋幢单元室楼社区村镇乡弄苑院")
_COMPOUND_SET = frozenset(COMPOUND_SURNAMES)
_SINGLE_SET = frozenset(SINGLE_SURNAMES)


def _find_all(text: str, needle: str) -> Iterable[int]:
    i = text.find(needle)
    while i >= 0:
        yield i
        i = text.find(needle, i + 1)


class PreparedHints(tuple[tuple[str, str], ...]):
    """Hints classified once, for a record whose several fields are redacted with the
    same hints. Held only for the duration of that record: never cached."""

    __slots__ = ()


def prepare_hints(hints: Iterable[str]) -> PreparedHints:
    return PreparedHints(f for f in map(_classify_hint, hints) if f is not None)


def _classify_hint(raw: str) -> tuple[str, str] | None:
    """What kind of value a hint is, and the needle to look for."""
    hint = normalize(raw).strip()
    if len(hint) < 2:
        return None  # a one-character hint would erase ordinary words
    digits = _NOT_ASCII_DIGITS_RE.sub("", hint)
    if len(digits) >= 5 and len(digits) * 2 >= len(hint):
        return ("digits", digits)
    if (
        len(hint) <= 4
        and (hint[:2] in _COMPOUND_SET or hint[0] in _SINGLE_SET)
        and all(_CJK_LO <= c <= _CJK_HI for c in hint)
    ):
        return ("name", hint)
    if not _ADDRESS_HINT_CHARS.isdisjoint(hint):
        units = list(_ADMIN_UNIT_RE.finditer(hint))
        finer = hint[units[-1].end() :] if units else hint
        # 某村 and coarser stay on screen; only what lies below the village goes.
        return ("place", finer) if len(finer) >= 2 else None
    return ("text", hint)


def _hint_spans(
    text: str, hints: Iterable[str] | PreparedHints, out: list[_Cand], has_digit: bool
) -> None:
    prepared = hints if isinstance(hints, PreparedHints) else prepare_hints(hints)
    for kind, needle in prepared:
        if kind == "digits":
            if has_digit:  # a digit hint is only ever found in a run of digits
                _digit_hint(text, needle, out)
        elif kind == "name":
            _name_hint(text, needle, out)
        elif kind == "place":
            for i in _find_all(text, needle):
                out.append((i, i + len(needle), "hint", HINT_PLACE_MASK))
        else:
            for i in _find_all(text, needle):
                out.append((i, i + len(needle), "hint", NAME_MASK))


def _digit_hint(text: str, digits: str, out: list[_Cand]) -> None:
    for m in _DIGIT_RUN_RE.finditer(text):
        run = m.group(0)
        if len(run) < len(digits):
            continue  # the run's ASCII digits are fewer still: the hint cannot be in it
        if run.isascii() and run.isdigit():
            # Nothing but ASCII digits: each digit's position is the run's start plus its
            # index, so the positions need not be listed.
            start = m.start()
            for k in _find_all(run, digits):
                out.append((start + k, start + k + len(digits), "hint", "***"))
            continue
        positions = [m.start() + i for i, c in enumerate(run) if c in _ALNUM_DIGITS]
        only = "".join(c for c in run if c in _ALNUM_DIGITS)
        for k in _find_all(only, digits):
            out.append((positions[k], positions[k + len(digits) - 1] + 1, "hint", "***"))


def _name_hint(text: str, hint: str, out: list[_Cand]) -> None:
    slen = 2 if hint[:2] in _COMPOUND_SET and len(hint) > 2 else 1
    given = hint[slen:]
    for i in _find_all(text, hint):
        out.append((i + slen, i + len(hint), "hint", NAME_MASK))
    # The given name alone (兴九) is as identifying as the full name; a one-character
    # given name alone is not removed, it is an ordinary character too often.
    if len(given) >= 2:
        for i in _find_all(text, given):
            out.append((i, i + len(given), "hint", NAME_MASK))


# --------------------------------------------------------------------------- assembly


def _merge(cands: list[_Cand]) -> list[_Cand]:
    # The sort is stable, so among findings with the same start and end the first one
    # found keeps its label: the order of the detectors in `redact` matters.
    if len(cands) > 1:
        cands.sort(key=_start_then_longest)
    spans: list[_Cand] = []
    for c in cands:
        start, end = c[0], c[1]
        if end <= start:
            continue
        if spans and start < spans[-1][1]:
            last = spans[-1]
            if end > last[1]:
                # Partly overlapping findings: cover both, keep the first one's label.
                spans[-1] = (last[0], end, last[2], last[3])
            continue
        spans.append(c)
    return spans


def _start_then_longest(c: _Cand) -> tuple[int, int]:
    return (c[0], -c[1])


def redact(text: str, hints: Iterable[str] | PreparedHints = ()) -> Redacted:
    """Remove personal information from `text`.

    `hints` are values known to be personal (the requester's name, phone, address): they
    are removed wherever they occur, also in part. Span positions refer to
    `normalize(text)`, which is also the base of the returned text.
    """
    norm = normalize(text)
    cands: list[_Cand] = []
    has_digit = _DIGIT_RE.search(norm) is not None
    _number_spans(norm, cands, has_digit)
    _address_spans(norm, cands, has_digit)
    _name_spans(norm, cands)
    if "、" in norm:
        _enumeration_spans(norm, cands)
    if hints:  # an empty tuple or PreparedHints: nothing to look for
        _hint_spans(norm, hints, cands, has_digit)
    if not cands:
        return Redacted(norm, ())
    spans = _merge(cands)
    parts: list[str] = []
    pos = 0
    for start, end, _kind, replacement in spans:
        parts.append(norm[pos:start])
        parts.append(replacement)
        pos = end
    parts.append(norm[pos:])
    return Redacted("".join(parts), tuple([Span(*s) for s in spans]))


def highlight_segments(text: str, redacted: Redacted) -> list[tuple[str, str | None]]:
    """Cut `normalize(text)` into segments for the staff preview.

    Each segment is (text, kind) where kind is None for text that stays and the span's
    kind for text that will be replaced. The segments join back to `normalize(text)`.
    """
    norm = normalize(text)
    segments: list[tuple[str, str | None]] = []
    pos = 0
    for s in redacted.spans:
        if s.start > pos:
            segments.append((norm[pos : s.start], None))
        segments.append((norm[s.start : s.end], s.kind))
        pos = s.end
    if pos < len(norm):
        segments.append((norm[pos:], None))
    return segments
