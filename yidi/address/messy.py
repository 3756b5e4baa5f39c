"""Reading customer writing the fast path cannot: traditional characters (OpenCC), characters separated by spaces,
one-character typos in a division name under a known province or city, Hong Kong / Macao localities, and pinyin or
English names (generated from the division table with pypinyin).

Everything here is built on first use and runs only for the addresses whose fast reading found no district and
whose text shows one of these signs (``needs_repair``), so clean addresses never pay for it.
"""

from __future__ import annotations

import csv
import re
from functools import lru_cache

from yidi.address.gazetteer import DATA_DIR, gazetteer
from yidi.address.names import AUTONOMOUS, CROSS_BORDER, CROSS_BORDER_FILLERS, HAS_CJK

_SPACED = re.compile(r"[\u3400-\u9fff][ \t\u3000]+[\u3400-\u9fff][ \t\u3000]+[\u3400-\u9fff]")
_SPACE_BETWEEN_HAN = re.compile(r"(?<=[\u3400-\u9fff])[ \t\u3000]+(?=[\u3400-\u9fff])")
_SUFFIXES = "区县市旗"
# Area words that end like a division but are not one: never read as a typo of a division (高新区 ≠ 高坪区).
NOT_DIVISIONS = frozenset({
    "高新区", "经开区", "开发区", "工业区", "保税区", "园区", "新区", "城区", "市区", "郊区", "景区", "校区", "社区",
    "小区", "厂区", "营区", "库区", "港区", "商业区", "生活区", "风景区", "示范区", "试验区", "实验区", "产业区",
    "综合区", "自贸区", "旅游区", "管理区", "办事处", "街道",
})  # fmt: skip
_NOT_DIVISION_ENDINGS = ("园区", "开发区", "高新区", "经开区", "工业区", "保税区", "景区", "社区", "小区", "校区")
# Words of Latin-script addresses that name the level, not the place; the letter tells which suffix fits.
LATIN_LEVEL_WORDS = {
    "district": "区", "qu": "区", "county": "县", "xian": "县", "city": "市", "shi": "市", "prefecture": "",
    "province": "", "sheng": "", "municipality": "", "autonomous": "", "region": "", "zizhiqu": "", "new": "",
    "area": "", "banner": "旗", "qi": "旗", "league": "盟", "zizhizhou": "州", "zizhixian": "县",
}  # fmt: skip
LATIN_STREET_WORDS = frozenset({
    "road", "rd", "street", "st", "avenue", "ave", "lu", "jie", "dadao", "lane", "alley", "room", "rm", "floor",
    "building", "bldg", "unit", "no", "apt", "tower", "block", "village", "cun", "town", "zhen", "xiang", "hao",
    "estate", "garden", "plaza", "park", "center", "centre", "industrial", "zone",
})  # fmt: skip


@lru_cache(maxsize=1)
def _traditional() -> re.Pattern:
    """A character OpenCC's t2s changes (built once from the CJK block, about 10 ms)."""
    han = "".join(chr(c) for c in range(0x4E00, 0xA000))
    changed = sorted({a for a, b in zip(han, _converter().convert(han), strict=False) if a != b})
    return re.compile("[" + "".join(changed) + "]")


@lru_cache(maxsize=1)
def _converter():
    import opencc

    return opencc.OpenCC("t2s")


@lru_cache(maxsize=1)
def _below() -> dict[str, tuple[str, ...]]:
    """Every division under a code (the candidates of a typo)."""
    g = gazetteer()
    below: dict[str, list[str]] = {}
    for code in g.name:
        for ancestor in g.chain[code]:
            if ancestor != code:
                below.setdefault(ancestor, []).append(code)
    return {k: tuple(v) for k, v in below.items()}


@lru_cache(maxsize=1)
def _places() -> tuple[dict[str, tuple[str, str]], dict[str, tuple[str, ...]]]:
    """HK/MO locality → (district code, English name), and the localities by first character."""
    g = gazetteer()
    places: dict[str, tuple[str, str]] = {}
    with (DATA_DIR / "cross_border_places.csv").open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            places[row["place"]] = (row["code"], row["note"])
    for code, name in g.name.items():  # the districts' own names and short forms (油尖旺区, 油尖旺)
        if code[:2] in ("81", "82") and g.level[code] == 3:
            places.setdefault(name, (code, ""))
            if len(name) > 3:
                places.setdefault(name[:-1], (code, ""))
    by_first: dict[str, list[str]] = {}
    for place in places:
        by_first.setdefault(place[:1], []).append(place)
    return places, {k: tuple(sorted(v, key=len, reverse=True)) for k, v in by_first.items()}


def _base(name: str) -> str:
    m = AUTONOMOUS.match(name)
    base = m.group(1) if m else re.sub(r"(特别行政区|地区|新区|林区|盟|市|区|县|旗)$", "", name) or name
    return base if len(base) >= 2 else name


@lru_cache(maxsize=1)
def _latin_index() -> dict[str, tuple[tuple[str, str, str], ...]]:
    """Pinyin of each city's and county's base name (沙坪坝区 → shapingba) → (code, the name so spelt, note), old
    names included with their note (Yubei → 两江新区, "pre-2025 name 渝北区"); built on the first Latin address
    (pypinyin loads its dictionary then, about a second)."""
    from pypinyin import lazy_pinyin

    g = gazetteer()
    latin: dict[str, list[tuple[str, str, str]]] = {}
    for code, name in g.name.items():
        if g.level[code] == 1 or code[:2] in ("71", "81", "82"):
            continue  # provinces: their English names are in names.PINYIN_PLACES; HK/MO/TW romanise otherwise
        latin.setdefault("".join(lazy_pinyin(_base(name))), []).append((code, name, ""))
    for surface, bucket in g.entries.items():
        for e in bucket:
            if e.kind == "old" and surface == e.alias and g.level[e.code] > 1:
                latin.setdefault("".join(lazy_pinyin(_base(surface))), []).append((e.code, surface, e.note))
    return {k: tuple(v) for k, v in latin.items()}


def needs_repair(result: tuple, text: str | None, end: int) -> bool:
    """Whether the fast reading ``result`` of ``text`` may be improved here: no district was found, the address is
    not foreign or ambiguous, and the text shows a sign of messy writing."""
    if not text or result[2] is not None:
        return False
    note = result[5] or ""
    if note.startswith(("foreign address", "ambiguous")) or "ambiguous" in note:
        return False
    if _SPACED.search(text) or _traditional().search(text):
        return True
    if result[3] is None:
        return False
    rest = text[end : end + 18].lstrip(" ,，、")
    if result[3][:2] + "0000" in CROSS_BORDER:
        return rest.startswith(CROSS_BORDER_FILLERS) or place_at(rest, 0) is not None
    # A word of 3–15 characters ending like a division (区/县/市/旗), without digits and not an area word.
    for i in range(2, min(len(rest), 15)):
        if rest[i] in _SUFFIXES:
            word = rest[: i + 1]
            return not (any(ch.isdigit() for ch in word) or word in NOT_DIVISIONS
                        or word.endswith(_NOT_DIVISION_ENDINGS))
    return False


def simplified(text: str) -> str:
    """Traditional characters to simplified (OpenCC t2s) and spaces between Chinese characters removed."""
    out = text
    if _traditional().search(out):
        out = _converter().convert(out)
    if _SPACED.search(out):
        out = _SPACE_BETWEEN_HAN.sub("", out)
    return out


def typo_at(parent: str, text: str, pos: int) -> str | None:
    """The one division under ``parent`` that the name at ``pos`` misspells by exactly one character (same length,
    same last character), or None when there is none or more than one."""
    g = gazetteer()
    found: set[str] = set()
    for code in _below().get(parent, ()):
        name = g.name[code]
        size = len(name)
        if size < 3:
            continue
        window = text[pos : pos + size]
        if len(window) != size or window[-1] != name[-1] or window in NOT_DIVISIONS or window in g.entries:
            continue
        if sum(a != b for a, b in zip(window, name, strict=True)) == 1 and HAS_CJK.match(window):
            found.add(code)
            if len(found) > 1:
                return None
    return found.pop() if found else None


def place_at(text: str, pos: int) -> tuple[str, str, str] | None:
    """A Hong Kong or Macao locality at ``pos``: (surface, district code, note)."""
    places, by_first = _places()
    for place in by_first.get(text[pos : pos + 1], ()):
        if text.startswith(place, pos):
            code, note = places[place]
            return place, code, note
    return None


def latin_places(text: str) -> list[tuple[str, dict[str, str]]]:
    """Comma-separated parts of a Latin-script address read as division names: (part, {candidate code: the note of
    an old name, or ""}), narrowed by the level word written with them (District → a name ending in 区)."""
    index = _latin_index()
    out = []
    for part in re.split(r"[,;/\n|]+", text.lower()):
        words = re.findall(r"[a-z]+", part.replace("'", ""))
        if not words or any(w in LATIN_STREET_WORDS for w in words):
            continue
        suffix = ""
        kept = []
        for w in words:
            if w in LATIN_LEVEL_WORDS:
                suffix = LATIN_LEVEL_WORDS[w] or suffix
            else:
                kept.append(w)
        key = "".join(kept)
        if len(key) < 4:
            continue
        spellings = index.get(key, ())
        if suffix:
            spellings = tuple(x for x in spellings if x[1].endswith(suffix)) or spellings
        candidates: dict[str, str] = {}
        for code, _, note in spellings:
            if not candidates.get(code):
                candidates[code] = note
        if candidates:
            out.append((part.strip(), candidates))
    return out
