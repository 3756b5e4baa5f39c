"""Reading one address: structured fields first, then the leading division names of the text, with the rules of
the package docstring (ambiguous names, old names, the 2025 Chongqing reform, foreign and cross-border, Latin
script). One call per distinct address; ``classify`` does the frame-scale work around it."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

import pandas as pd

from yidi.address.gazetteer import Entry, Gazetteer, gazetteer
from yidi.address.messy import needs_repair
from yidi.address.names import (
    AREA_COUNTIES,
    CHONGQING,
    CROSS_BORDER,
    CROSS_BORDER_FILLERS,
    EMPTY_WORDS,
    FOREIGN_COUNTRIES_EN,
    FOREIGN_COUNTRIES_ZH,
    HAS_CJK,
    ISO_COUNTRY_NAMES,
    ISO_COUNTRY_PROVINCE,
    LEADING_JUNK,
    MUNICIPALITIES,
    MUNICIPALITY_CITY_FILLERS,
    PINYIN_PLACES,
    PROVINCE_LEVEL_CITY_FILLERS,
    SEPARATORS,
    SICHUAN,
    STREET_NEXT_1,
    STREET_NEXT_2,
    WORD_NEXT_2,
)


@dataclass(slots=True)
class State:
    province: str | None = None
    city: str | None = None
    district: str | None = None
    ambiguous: tuple[Entry, ...] = ()  # same-level candidates of an unresolved name
    foreign: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def deepest(self) -> str | None:
        return self.district or self.city or self.province

    def copy(self) -> State:
        return State(self.province, self.city, self.district, self.ambiguous, self.foreign, list(self.notes))

    @property
    def depth(self) -> int:
        return 3 if self.district else 2 if self.city else 1 if self.province else 0


# Punctuation that can begin a street part as written ("-2+3 路", "(B座)"); kept in the detail.
STREET_START_MARKS = frozenset("-+=@#'\"(（[【《<")


def _normalise(text: object) -> str:
    if text is None or text is pd.NA or (isinstance(text, float) and text != text):
        return ""
    s = unicodedata.normalize("NFKC", str(text)).replace("市辖区", "").strip()  # as classify._clean_column
    return "" if s.lower() in EMPTY_WORDS else s


def _looks_like_street(text: str, end: int) -> bool:
    nxt = text[end : end + 1]
    return bool(nxt) and (nxt in STREET_NEXT_1 or text[end : end + 2] in STREET_NEXT_2)


def _skip_separators(text: str, pos: int) -> int:
    n = len(text)
    while pos < n and text[pos] in SEPARATORS:
        pos += 1
    return pos


def _consistent(g: Gazetteer, e: Entry, st: State) -> bool:
    deepest = st.deepest
    if deepest is None:
        return True
    if e.code == deepest or e.code in g.chain[deepest]:
        return True  # repeated (重庆 重庆市 渝北区 …) or a higher level already known
    if e.code in AREA_COUNTIES.get(deepest, ()):
        return True  # 雄安新区容城县: the county inside the functional area
    return deepest in g.chain[e.code] and e.level > g.level[deepest]


def _match_at(g: Gazetteer, text: str, pos: int, st: State, *, free: bool) -> tuple[str, list[Entry]] | None:
    """Longest division name at ``pos`` whose readings fit the state; ``free`` means no context yet."""
    for surface in g.by_prefix.get(text[pos : pos + 2], ()):
        if not text.startswith(surface, pos):
            continue
        end = pos + len(surface)
        fitting: list[Entry] = []
        for e in g.entries[surface]:
            if e.kind == "short":
                if _looks_like_street(text, end):
                    continue
                if free and e.level == 3 and surface not in g.context_free_shorts:
                    continue
            elif text[end : end + 1] in WORD_NEXT_2 and surface[-1] in "市区":
                continue
            if _consistent(g, e, st):
                fitting.append(e)
        if fitting:
            top = min(e.level for e in fitting)
            chosen = [e for e in fitting if e.level == top]
            if free and top == 2 and all(e.kind == "short" for e in chosen):
                # A bare short name that is also a district elsewhere (朝阳: 朝阳市, 北京 and 长春 朝阳区) is not
                # a city until something else says so: all readings stay candidates.
                rivals = [e for e in g.entries[surface] if e.kind == "short" and e.level == 3
                          and not any(c.code in g.chain[e.code] for c in chosen)]
                if rivals and not _looks_like_street(text, end):
                    chosen += rivals
            return surface, chosen
    return None


def _apply(g: Gazetteer, st: State, entries: list[Entry]) -> bool:
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


def _scan(g: Gazetteer, st: State, text: str, pos: int, *, anywhere: bool = False, messy: bool = False,
          found_at: list[int] | None = None) -> int:
    """Consume leading division names of ``text`` from ``pos``; returns the position after them. ``messy`` also
    reads one-character typos under a known province or city and Hong Kong / Macao localities (``messy.py``).
    ``anywhere``: the names may begin further on; where they begin is appended to ``found_at``."""
    pos = _skip_separators(text, pos)
    if anywhere and st.depth == 0:
        # Nothing at the start: look for the first *full* name further on ("xx公司 重庆市渝北区 …").
        for i in range(pos + 1, min(len(text), pos + 200) - 1):  # addresses are short; bound the search
            hit = _match_at(g, text, i, st, free=True)
            if hit and any(e.kind != "short" for e in hit[1]) and not _looks_like_street(text, i + len(hit[0])):
                pos = i
                if found_at is not None:
                    found_at.append(i)
                break
        else:
            return pos
    for _ in range(6):
        if pos >= len(text) - 1 or st.depth == 3 and st.district not in AREA_COUNTIES:
            break
        hit = _match_at(g, text, pos, st, free=st.depth == 0)
        if hit is None and st.province == SICHUAN and st.depth == 1:
            # Chongqing was part of 四川 until 1997; "四川省重庆市…" / "四川万县…" still appear.
            chongqing = _match_at(g, text, pos, State(), free=True)
            if chongqing is not None and all(e.code.startswith("50") for e in chongqing[1]):
                hit = chongqing
                st.province = None
                st.notes.append("四川 written for 重庆 (part of 四川 until 1997)")
        if hit is None and messy and st.deepest and not st.ambiguous:
            hit = _typo(g, st, text, pos)
        if hit is None:
            break
        surface, entries = hit
        after = pos + len(surface)
        if not _apply(g, st, entries) and not _settle_by_what_follows(g, st, text, after):
            pos = after
            break
        pos = _skip_separators(text, after)
    if messy and st.district is None and st.province in ("810000", "820000"):
        pos = _cross_border_place(g, st, text, pos)
    # Repeats after the district ("渝北区 渝北区 …") and the filler 市辖区 are dropped too.
    while st.deepest is not None and pos < len(text) - 1:
        hit = _match_at(g, text, pos, st, free=False)
        if not hit or any(e.code != st.deepest and e.code not in g.chain[st.deepest] for e in hit[1]):
            break
        pos = _skip_separators(text, pos + len(hit[0]))
    return pos


def _settle_by_what_follows(g: Gazetteer, st: State, text: str, after: int) -> bool:
    """An ambiguous name settled by the names after it (朝阳 双塔区 → 朝阳市): exactly one candidate must be an
    ancestor or descendant of what follows."""
    probe = State()
    _scan(g, probe, text, _skip_separators(text, after))
    named = [probe.deepest] if probe.deepest else [e.code for e in probe.ambiguous]  # 西安 长安区: both shared
    fits = {e.code: e for e in st.ambiguous for code in named if e.code in g.chain[code] or code in g.chain[e.code]}
    if len(fits) != 1:
        return False
    st.ambiguous = ()
    return _apply(g, st, list(fits.values()))


def _typo(g: Gazetteer, st: State, text: str, pos: int) -> tuple[str, list[Entry]] | None:
    from yidi.address.messy import typo_at

    code = typo_at(st.deepest, text, pos)
    if code is None:
        return None
    name = g.name[code]
    written = text[pos : pos + len(name)]
    st.notes.append(f"{written} read as {name} (one character differs, the only such name in {g.name[st.deepest]})")
    return written, [Entry(code, g.level[code], "full", written)]


def _cross_border_place(g: Gazetteer, st: State, text: str, pos: int) -> int:
    """Hong Kong / Macao: the region words (九龙, 新界 …) name no district; a well-known locality does."""
    from yidi.address.messy import place_at

    start = pos
    moved = True
    while moved:
        moved = False
        for filler in CROSS_BORDER_FILLERS:
            if text.startswith(filler, pos):
                pos = _skip_separators(text, pos + len(filler))
                moved = True
    found = place_at(text, pos)
    if found is None or g.province_of(found[1]) != st.province:
        return start
    surface, code, note = found
    _apply(g, st, [Entry(code, 3, "full", surface)])
    if surface != g.name[code]:
        st.notes.append(f"{surface}{f' ({note})' if note else ''} is in {g.name[code]}")
    return _skip_separators(text, pos + len(surface)) if surface == g.name[code] else pos


def _apply_2025_towns(g: Gazetteer, st: State, written: str | None, text: str, pos: int) -> int:
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


def _written_cq_district(g: Gazetteer, text: str, start: int, end: int) -> str | None:
    """Which of 渝北区/北碚区 the customer wrote (for the 2025 town moves), if any."""
    window = text[start:end]
    for written in ("渝北", "北碚"):
        if written in window:
            return written + "区"
    return None


def _resolve_field(g: Gazetteer, st: State, raw: str, level: str) -> None:
    if not raw:
        return
    if not raw.isascii():
        from yidi.address.messy import simplified

        raw = simplified(raw)  # 重慶市 / 沙坪壩區 in a field (once per distinct set of fields)
    if level == "province":
        key = raw if not raw.isascii() else raw.lower()
        code = g.province_field.get(key)
        if code is not None:
            _apply(g, st, [Entry(code, 1, "full", raw)])
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
            e = Entry(code, g.level[code], "full", raw)
            if _consistent(g, e, st):
                _apply(g, st, [e])
                return
    if raw in PROVINCE_LEVEL_CITY_FILLERS:
        return
    before = (st.province, st.city, st.district, st.ambiguous)
    end = _scan(g, st, raw, 0)
    if (st.province, st.city, st.district, st.ambiguous) == before and end < len(raw):
        typo = _typo(g, st, raw, 0) if st.deepest and not st.ambiguous and level != "province" else None
        if typo is not None and len(typo[0]) == len(raw):  # a field that misspells one name of the province/city
            _apply(g, st, typo[1])
        elif st.deepest and not st.ambiguous:
            if typo is not None:
                st.notes.pop()  # the typo note of a name that is only part of the field
            st.notes.append(f"{level} {raw} not found in {g.name[st.deepest]}")
        elif not st.ambiguous:
            st.notes.append(f"unrecognised {level} {raw}")


def _latin(g: Gazetteer, st: State, text: str) -> None:
    # Latin-script addresses run from small to large ("…, Yuzhong District, Chongqing, China"): any foreign
    # country makes it cross-border; the provinces' and big cities' English names (names.PINYIN_PLACES) come
    # first, then the pinyin of every division (messy.py), largest first, each read only when exactly one
    # division of that spelling fits what is known.
    from yidi.address.messy import latin_places

    place = None
    for m in g.latin_pattern.finditer(text.lower()):
        kind, value = g.latin[m.group(1)]
        if kind == "country":
            st.foreign = value
            return
        place = value
    if place is not None:
        e = Entry(place, g.level[place], "full", place)
        if _consistent(g, e, st):
            _apply(g, st, [e])
    for part, old_notes in reversed(latin_places(text)):
        codes = tuple(old_notes)
        known = st.deepest
        fits = {c for c in codes if c != known and not (known and c in g.chain[known])
                and _consistent(g, Entry(c, g.level[c], "full", part), st)}
        if len(fits) == 1:
            code = fits.pop()
            _apply(g, st, [Entry(code, g.level[code], "full", part)])
            if old_notes[code]:
                st.notes.append(old_notes[code])


@dataclass(slots=True)
class Fields:
    """What the structured fields (and a country) say before any text is read."""

    state: State
    structured: bool
    written: str | None  # 渝北区 / 北碚区 as written in the district field (for the 2025 town moves)
    field_depth: int  # depth after the province and city fields
    empty: bool

    @property
    def known(self) -> bool:
        st = self.state
        return st.depth > 0 or bool(st.ambiguous) or st.foreign is not None


def resolve_fields(prov_raw: str, city_raw: str, dist_raw: str, country_raw: str) -> Fields:
    g = gazetteer()
    st = State()
    if country_raw:
        iso = country_raw.upper()
        if iso in ISO_COUNTRY_PROVINCE or country_raw in ("中国", "中华人民共和国") or iso in ("CHINA", "PRC"):
            code = ISO_COUNTRY_PROVINCE.get(iso)
            if code:
                _apply(g, st, [Entry(code, 1, "full", country_raw)])
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
    return Fields(st, structured, written, field_depth, empty=not (structured or country_raw))


Cut = tuple[int, int]  # the division names read from a text: text[:cut[0]] + text[cut[1]:] is the detail


def rest_of(text: str | None, cut: Cut) -> str | None:
    """The detail: what the division reading did not consume (text before names read from the middle, and the
    text after them), so nothing the customer wrote is lost; surrounding whitespace trimmed."""
    if not text:
        return None
    before, after = cut
    if before:
        return (text[:before] + text[after:]).strip() or None
    return text[after:] or None


def classify_text(fields: Fields, text: str | None, *, messy: bool = False) -> tuple[tuple, Cut]:
    """Classify with the fields' state plus ``text``; returns (result without detail, the admin part's span
    ``(begin, end)``: begin > 0 only when the names were found further on, see ``rest_of``).
    ``messy`` also reads typos and HK/MO localities (the slow path, see ``repair``)."""
    g = gazetteer()
    st = fields.state.copy()
    written = fields.written
    start = 0
    found_at: list[int] = []
    if text and st.foreign is None:
        m = LEADING_JUNK.match(text)
        start = m.end() if m else 0
        junk_end = start
        if st.depth == 0 and not st.ambiguous and start < len(text):
            foreign = _foreign_prefix(g, text, start)
            if foreign:
                st.foreign = foreign
        if st.ambiguous:
            # A field left an ambiguous name (district 朝阳区, no province): let the text decide.
            probe = State()
            end = _scan(g, probe, text, start)
            candidates = [e for e in st.ambiguous if probe.deepest and probe.deepest in g.chain[e.code]]
            if len(candidates) == 1:
                st.ambiguous = ()
                _apply(g, st, candidates)
                st.notes.extend(probe.notes)
                start = end
        if st.foreign is None:
            before_depth = st.depth
            end = _scan(g, st, text, start, messy=messy)
            if end == start and before_depth == 0 and not st.ambiguous:
                end = _scan(g, st, text, start, anywhere=True, messy=messy, found_at=found_at)
                if st.depth == 0:
                    end = start
                    found_at.clear()
            if written is None:
                written = _written_cq_district(g, text, start, end)
            end = _apply_2025_towns(g, st, written, text, _skip_separators(text, end))
            if fields.structured and fields.field_depth and st.depth == fields.field_depth and end == start:
                conflict = State()
                _scan(g, conflict, text, start)
                if conflict.province and conflict.province != st.province:
                    st.notes.append(f"text names {g.name[conflict.province]}, {g.name[st.province]} field wins")
            start = end
            if st.depth < 3 and not st.ambiguous and not HAS_CJK.search(text):
                before_latin = (st.depth, st.foreign)
                _latin(g, st, text)
                if (st.depth, st.foreign) != before_latin:
                    start = 0  # a Latin address stays whole in detail
                    found_at.clear()
        if start == junk_end and all(c in SEPARATORS for c in text[:junk_end]):
            # No division name after the leading punctuation: it belongs to the street part as written
            # (an address "-2+3 路1号" keeps its "-"); only surrounding whitespace is trimmed.
            start = len(text) - len(text.lstrip())
        else:
            while start > junk_end and text[start - 1] in STREET_START_MARKS:
                start -= 1  # "渝中区-2+3 路1号": the "-" begins the street part, it is not a separator here
    elif not text and written is not None:
        _apply_2025_towns(g, st, written, "", 0)
    # Names read from the middle ("收货：四川省成都市…"): the text before them is the customer's and stays.
    begin = found_at[0] if found_at and found_at[0] < start else 0
    return _finish(g, st, empty=fields.empty and not text), (begin, start)


def classify_one(
    province: object = None,
    city: object = None,
    district: object = None,
    detail: object = None,
    full_address: object = None,
    country: object = None,
) -> tuple:
    """Classify one address; returns the OUTPUT_COLUMNS values as a tuple (None for missing)."""
    fields = resolve_fields(_normalise(province), _normalise(city), _normalise(district), _normalise(country))
    detail_raw, full_raw = _normalise(detail), _normalise(full_address)
    text = detail_raw if (fields.structured and detail_raw) or not full_raw else full_raw
    result, cut = classify_text(fields, text or None)
    rest = rest_of(text, cut)
    if needs_repair(result, text, cut[1]):
        repaired = repair(fields, text, result)
        if repaired is not None:
            result, rest = repaired
    return (*result[:3], rest, *result[3:])


def _score(result: tuple) -> int:
    return sum(v is not None for v in result[:3]) + (result[4] != "unknown")


def repair(fields: Fields, text: str, fast: tuple, read=None) -> tuple[tuple, str | None] | None:
    """The slow reading of an address the fast one left without a district (``messy.needs_repair``): traditional
    characters simplified and spaced characters joined, read as usual (``read``: the caller's cached reading of
    clean text, by default ``classify_text``); if that finds no district, read again with typos and HK/MO
    localities. Kept only when it reads more: (result without detail, detail)."""
    from yidi.address.messy import simplified

    plain = simplified(text)
    result, cut = (None, (0, 0))
    if plain != text:
        result, cut = read(plain) if read is not None else classify_text(fields, plain)
    if result is None or result[2] is None:
        result, cut = classify_text(fields, plain, messy=True)
    if _score(result) <= _score(fast):
        return None
    # The rest of the address as the customer wrote it where the simplification kept its length (t2s does).
    rest = rest_of(text if len(plain) == len(text) else plain, cut)
    if plain != text:
        note = "read as " + ("simplified characters" if len(plain) == len(text) else "joined characters")
        result = (*result[:5], _note([n for n in (result[5], note) if n]))
    return result, rest


def _foreign_prefix(g: Gazetteer, text: str, pos: int) -> str | None:
    for surface in g.foreign_by_prefix.get(text[pos : pos + 2], ()):
        if text.startswith(surface, pos):
            return FOREIGN_COUNTRIES_ZH[surface]
    return None


def _finish(g: Gazetteer, st: State, *, empty: bool) -> tuple:
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
        return (None, None, None, None, region, _note(notes))
    if st.province is None:
        region = "unknown"
        if not notes:
            notes.append("empty address" if empty else "no recognisable province, city or district")
        return (None, None, None, None, region, _note(notes))
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
        _note(notes),
    )


def _note(notes: list[str]) -> str | None:
    """The notes as stored: orders.region_note keeps 200 characters (long candidate lists are cut, marked …)."""
    text = "; ".join(notes)
    return (text if len(text) <= 200 else text[:199] + "…") or None
