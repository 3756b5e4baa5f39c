"""Rebuild ``division_history.csv`` (old county- and city-level names → today's division) from the change list
published by the **areacodes** project (github.com/yescallop/areacodes, CC0 1.0; its ``result.csv`` collects
every county-level-and-above code since 1981 with the codes each old one became, from the Ministry of Civil
Affairs' 县级以上行政区划代码 and 县级以上行政区划变更情况 and the State Council gazette).

Run by hand with a downloaded copy of that file (nothing here reaches the internet):

    python yidi/data/build_history.py PATH/TO/result.csv

An old name is kept only when everything it became is ONE division of today's ``divisions.csv`` (铜梁县 →
铜梁区, 万盛区 → 綦江区, 襄樊市 → 襄阳市); a name split between several (江干区 → 上城区 + 钱塘区) is left to the
hand-curated ``division_aliases.csv`` or stays unread, so the classifier never guesses.
"""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Names that were once a division in many places and say nothing on their own (郊区 of a dozen cities).
GENERIC = {"郊区", "城区", "市区", "矿区", "市中区", "城关区", "新市区", "新城区", "老城区", "东区", "西区", "南区",
           "北区", "中区", "县", "市辖区", "工农区", "向阳区", "红旗区", "前进区", "东风区", "胜利区"}


def main(source: str) -> None:
    with (HERE / "divisions.csv").open(encoding="utf-8") as fh:
        current = {row["code"]: (row["name"], int(row["level"])) for row in csv.DictReader(fh)}
    with open(source, encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    retired: dict[str, list[dict]] = {}
    in_use_since: dict[str, int] = {}
    for row in rows:
        if row["状态"] in ("弃用", "变更"):
            retired.setdefault(row["代码"], []).append(row)
        elif row["状态"] == "在用":
            in_use_since[row["代码"]] = int(row["启用时间"])

    def successors(row: dict) -> set[str]:
        return {re.sub(r"\[\d+\]$", "", t) for t in row["新代码"].split(";") if t}

    def today(code: str, year: int, depth: int = 0) -> set[str]:
        """The divisions of today that ``code``, as it stood in ``year``, became. Codes are reused (511421 was
        垫江县 until 1997 and is 仁寿县 since 2000), so a code counts as today's only if it was in use then."""
        if code in current and in_use_since.get(code, 0) <= year:
            return {code}
        if depth > 8:
            return set()
        out: set[str] = set()
        for row in retired.get(code, ()):
            start, end = int(row["启用时间"]), int(row["变更/弃用时间"])
            if start <= year <= end:
                for target in successors(row) - {code}:
                    out |= today(target, end, depth + 1)
                if code in successors(row) and code in current:
                    out.add(code)
        return out

    history: dict[tuple[str, str], str] = {}
    for row in rows:
        name, code, level = row["名称"].strip(), row["代码"], row["级别"]
        if row["状态"] == "在用" or level not in ("县级", "地级") or name in GENERIC:
            continue
        year = int(row["变更/弃用时间"])
        targets = set()
        if code in current and current[code][0] != name and in_use_since.get(code, 0) <= year:
            targets = {code}  # renamed in place (襄樊市 → 襄阳市 kept 420600)
        for target in successors(row) if not targets else ():
            targets |= {target} if target == code and target in current else today(target, year)
        if len(targets) != 1:
            continue
        (target,) = targets
        if current[target][0] == name or (level == "县级") != (current[target][1] == 3):
            continue  # the same name today, or a county that became a whole city (kept to its own level)
        if (name, target) not in history or year > history[(name, target)]:
            history[(name, target)] = year
    with (HERE / "division_history.csv").open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["alias", "code", "year"])
        for (name, target), year in sorted(history.items(), key=lambda item: (item[0][1], item[0][0])):
            writer.writerow([name, target, year])
    print(f"wrote {len(history)} old names to {HERE / 'division_history.csv'}")


if __name__ == "__main__":
    main(sys.argv[1])
