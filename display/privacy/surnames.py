"""Chinese surnames: the full 百家姓 plus common modern surnames it lacks.

Single-character surnames are a string (used to build a regex character class); compound
surnames are matched before single ones so that 欧阳娜娜 keeps 欧阳, not 欧.
"""

from __future__ import annotations

# The classic 百家姓 (single-character part), in its traditional order.
_BAIJIAXING = (
    "赵钱孙李周吴郑王冯陈褚卫蒋沈韩杨朱秦尤许何吕施张孔曹严华金魏陶姜戚谢邹喻柏水窦章"
    "云苏潘葛奚范彭郎鲁韦昌马苗凤花方俞任袁柳酆鲍史唐费廉岑薛雷贺倪汤滕殷罗毕郝邬安常"
    "乐于时傅皮卞齐康伍余元卜顾孟平黄和穆萧尹姚邵湛汪祁毛禹狄米贝明臧计伏成戴谈宋茅庞"
    "熊纪舒屈项祝董梁杜阮蓝闵席季麻强贾路娄危江童颜郭梅盛林刁钟徐邱骆高夏蔡田樊胡凌霍"
    "虞万支柯昝管卢莫经房裘缪干解应宗丁宣贲邓郁单杭洪包诸左石崔吉钮龚程嵇邢滑裴陆荣翁"
    "荀羊於惠甄曲家封芮羿储靳汲邴糜松井段富巫乌焦巴弓牧隗山谷车侯宓蓬全郗班仰秋仲伊宫"
    "宁仇栾暴甘钭厉戎祖武符刘景詹束龙叶幸司韶郜黎蓟薄印宿白怀蒲邰从鄂索咸籍赖卓蔺屠蒙"
    "池乔阴郁胥能苍双闻莘党翟谭贡劳逄姬申扶堵冉宰郦雍却璩桑桂濮牛寿通边扈燕冀郏浦尚农"
    "温别庄晏柴瞿阎充慕连茹习宦艾鱼容向古易慎戈廖庾终暨居衡步都耿满弘匡国文寇广禄阙东"
    "欧殳沃利蔚越夔隆师巩厍聂晁勾敖融冷訾辛阚那简饶空曾毋沙乜养鞠须丰巢关蒯相查后荆红"
    "游竺权逯盖益桓公"
    # Single surnames printed in pairs in the compound section of 百家姓.
    "仉督晋楚闫法汝鄢涂钦归海岳帅缑亢况有琴商牟佘佴伯赏墨哈谯笪年爱阳佟言福"
)

# Common today (census top 300) but absent from 百家姓, or simplified forms of listed ones.
_MODERN = "肖付兰代敬母练粟覃冼邝揭占历阿蓝晋巫鞠苟候雒泮"

SINGLE_SURNAMES: str = "".join(dict.fromkeys(_BAIJIAXING + _MODERN))

# Compound surnames of 百家姓. Left out on purpose: 东门, 西门, 南门, 百里 and 第五, which
# are far more often ordinary words (南门口, 第五组) than surnames.
COMPOUND_SURNAMES: tuple[str, ...] = (
    "万俟", "司马", "上官", "欧阳", "夏侯", "诸葛", "闻人", "东方", "赫连", "皇甫", "尉迟",
    "公羊", "澹台", "公冶", "宗政", "濮阳", "淳于", "单于", "太叔", "申屠", "公孙", "仲孙",
    "轩辕", "令狐", "钟离", "宇文", "长孙", "慕容", "鲜于", "闾丘", "司徒", "司空", "亓官",
    "司寇", "子车", "颛孙", "端木", "巫马", "公西", "漆雕", "乐正", "壤驷", "公良", "拓跋",
    "夹谷", "宰父", "谷梁", "段干", "东郭", "呼延", "羊舌", "微生", "梁丘", "左丘", "南宫",
)  # fmt: skip

# Surnames that are mostly ordinary words. A name with one of them needs a strong marker
# (an honorific, or a role word before it), not just a reporting verb after it.
WEAK_SURNAMES: frozenset[str] = frozenset(
    "有法年爱福言伯赏琴归海督汝钦于和时全平明计成都能通相后公东文国广利越师那空养须查红"
    "游益居家步终易古向尚农别连习容双从印宿司景符甘宁秋仲车山谷牧巴乌富井松封曲羊"
    "单左应解干经管支凌元乐常安花水云"
)
