"""address: remote/local/unknown classification of delivery addresses vs the plain parser it grew from.

Ours: ``yidi.address.classify.classify_addresses`` on a DataFrame (free text, or structured platform fields). Baseline:
``cpca_new.transform`` (the parser whose division table ``yidi/data/divisions.csv`` is built from; pyahocorasick
based, the fastest plain call of that family) on the same addresses as strings. The addresses are synthetic but
shaped like orders: every province, Chongqing with and without 重庆, old names, shared names, short forms, 5% messy
writing (traditional or spaced characters, one-character typos, 市辖区, pinyin/English, HK/MO), foreign and garbage
rows, and every text DISTINCT (a per-row room number), so the per-text cache never helps. ``extra`` reports ours in
addresses/s on those distinct texts (``per_s_distinct``) and on the same number of rows drawn from 1% as many
texts (``per_s_repeated``, what the cache gives), and the accuracy on tests/data/addresses_labelled.csv beside
cpca-new's.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
import pandas as pd

NAME = "address"
DEFAULT_N = 1_000_000
TARGET = 1.5
CASES = ["free_text", "structured"]
BASELINE = "cpca_new.transform on the same addresses as plain strings"
LABELLED = Path(__file__).resolve().parent.parent / "tests" / "data" / "addresses_labelled.csv"

_STREETS = ["人民路", "解放路", "中山路", "建设大道", "新华街", "长江路", "滨江路", "金龙路", "学府大道", "星光大道",
            "红旗路", "和平街", "迎宾大道", "工业园区", "科技园", "高新大道", "花园路", "东风路", "沿江路", "光明街"]
_BUILDINGS = ["号", "号院", "号楼", "号附", "号大厦"]
_OTHER = ["日本东京都新宿区西新宿2-8-{}", "{} Main St, Springfield, IL 62701, USA", "香港九龙弥敦道{}号",
          "澳门新马路{}号", "台湾省台北市信义区市府路{}号", "不详{}", "同上{}", "xx小区{}栋", "{}", "韩国首尔市江南区{}"]
_MESSY = ["traditional", "spaced", "typo", "city_districts", "latin", "hong_kong"]
_HK = ["尖沙咀", "旺角", "铜锣湾", "沙田区", "新界荃湾区", "中环"]


def make_addresses(n: int, seed: int = 7) -> pd.DataFrame:
    """``n`` synthetic order addresses with both a structured and a free-text form."""
    divisions = pd.read_csv(Path(__file__).resolve().parent.parent / "yidi" / "data" / "divisions.csv", dtype=str)
    name = dict(zip(divisions["code"], divisions["name"], strict=True))
    parent = dict(zip(divisions["code"], divisions["parent"].fillna(""), strict=True))
    districts = divisions[(divisions["level"] == "3") & ~divisions["code"].str.match(r"^(71|81|82)")]["code"].to_numpy()
    chongqing = np.array([c for c in districts if c.startswith("50")])
    rng = np.random.default_rng(seed)
    # A Chongqing seller: about a third of its orders are local.
    pick = np.where(rng.random(n) < 0.33, rng.choice(chongqing, n), rng.choice(districts, n))
    street = rng.choice(_STREETS, n)
    number = rng.integers(1, 2000, n).astype(str)
    building = rng.choice(_BUILDINGS, n)
    room = rng.integers(101, 3000, n).astype(str)
    form = rng.random(n)
    provinces, cities, dists, details, fulls = [], [], [], [], []
    for i, code in enumerate(pick.tolist()):
        d = name[code]
        up = parent[code]
        prov_code = code[:2] + "0000"
        prov = name[prov_code]
        city = name[up] if up and up != prov_code else prov if prov_code in ("110000", "120000", "310000", "500000") else ""
        detail = f"{street[i]}{number[i]}{building[i]}{room[i]}-{i}室"  # the row number makes every text distinct
        f = form[i]
        if f < 0.42:
            full = f"{prov}{city if city != prov else ''}{d}{detail}"
        elif f < 0.62:
            full = f"{city}{d}{detail}" if city and city != prov else f"{d}{detail}"
        elif f < 0.80:
            full = f"{d}{detail}"
        elif f < 0.88:
            full = f"{prov} {city} {d} {detail}"
        elif f < 0.92:
            full = f"{prov[:2]}{d[:-1] if len(d) > 2 else d}{detail}"
        elif f < 0.97:
            full = _messy(_MESSY[i % len(_MESSY)], prov, city if city != prov else "", d, detail, i)
        else:
            full = _OTHER[i % len(_OTHER)].format(i)
        provinces.append(prov)
        cities.append(city or None)
        dists.append(d)
        details.append(detail)
        fulls.append(full)
    frame = pd.DataFrame({"province": provinces, "city": cities, "district": dists, "detail": details,
                          "full_address": fulls})
    return frame.astype("str")


def _messy(kind: str, prov: str, city: str, district: str, detail: str, i: int) -> str:
    """One address written the way customers do when the fast path cannot read it."""
    if kind == "traditional":
        return _s2t().convert(f"{prov}{city}{district}{detail}")
    if kind == "spaced":
        return " ".join(f"{prov}{city}{district}") + " " + detail
    if kind == "typo" and len(district) > 3:
        return f"{prov}{city}{district[0]}{'霸' if district[1] != '霸' else '坝'}{district[2:]}{detail}"
    if kind == "city_districts":
        return f"{prov}{city}市辖区{district}{detail}"
    if kind == "latin":
        from pypinyin import lazy_pinyin

        base = district[:-1] if len(district) > 2 else district
        return f"No. {i} Renmin Road, {''.join(lazy_pinyin(base)).title()} District, {''.join(lazy_pinyin(prov[:2])).title()}"
    if kind == "hong_kong":
        return f"香港{_HK[i % len(_HK)]}弥敦道{detail}"
    return f"{prov}{city}{district}{detail}"


def _s2t():
    import opencc

    global _CONVERTER
    if _CONVERTER is None:
        _CONVERTER = opencc.OpenCC("s2t")
    return _CONVERTER


_CONVERTER = None


def repeated(frame: pd.DataFrame, share: float = 0.01, seed: int = 11) -> pd.DataFrame:
    """As many rows as ``frame``, drawn from its first ``share`` of rows (the repeated-texts figure)."""
    distinct = max(1, int(len(frame) * share))
    picks = np.random.default_rng(seed).integers(0, distinct, len(frame))
    return frame.iloc[picks].reset_index(drop=True)


def prepare(n: int, workdir: Path, case: str | None):
    try:
        import cpca_new  # noqa: F401
    except ImportError:
        from bench import Skip

        raise Skip("baseline needs cpca-new + pyahocorasick (pip install -e '.[dev]')") from None
    frame = make_addresses(n)
    if case == "structured":
        ours_input = frame[["province", "city", "district", "detail"]]
        strings = (frame["province"] + frame["city"].fillna("") + frame["district"] + frame["detail"]).tolist()
    else:
        ours_input = frame[["full_address"]]
        strings = frame["full_address"].tolist()
    if case == "free_text":
        assert ours_input["full_address"].nunique() == n, "the free-text addresses are meant to be distinct"
    # Load the division tables (and the slow path's converters) once in the parent, as importing cpca_new does
    # for the baseline: each timed child is forked with them in memory.
    from yidi.address.classify import classify_addresses

    classify_addresses(pd.DataFrame({"full_address": ["重慶市沙坪壩區", "Yuzhong District, Chongqing", "重庆市沙坪霸区"]}))
    return {"case": case, "frame": ours_input, "strings": strings}


def ours(ctx) -> None:
    from yidi.address.classify import classify_addresses

    classify_addresses(ctx["frame"])


def baseline(ctx) -> None:
    import cpca_new

    cpca_new.transform(ctx["strings"])


def labelled_accuracy() -> tuple[float, int]:
    """Share of the labelled addresses whose region and province both match the label."""
    from yidi.address.classify import classify_addresses

    with LABELLED.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    frame = pd.DataFrame(rows).replace({"": None})
    got = classify_addresses(frame)
    region_ok = got["region"].to_numpy() == frame["expected_region"].to_numpy()
    province_ok = got["province"].fillna("").to_numpy() == frame["expected_province"].fillna("").to_numpy()
    return float((region_ok & province_ok).mean()), len(rows)


def baseline_accuracy() -> float:
    """The same measure for the baseline parser (region from its province; it has no 'unknown' reasoning)."""
    import cpca_new

    frame = pd.read_csv(LABELLED, dtype=str, keep_default_na=False)
    strings = (frame["province"] + frame["city"] + frame["district"] + frame["detail"] + frame["full_address"]).tolist()
    province = cpca_new.transform(strings)["省"].fillna("").to_numpy()
    region = np.where(province == "", "unknown", np.where(province == "重庆市", "local", "remote"))
    ok = (region == frame["expected_region"].to_numpy()) & (province == frame["expected_province"].to_numpy())
    return float(ok.mean())


def extra(ctx) -> dict:
    from yidi.address.classify import classify_addresses

    def per_second(frame: pd.DataFrame) -> tuple[int, int]:
        """Addresses per second of wall time and of this process's CPU time (the CPU figure is what a shared
        machine's other load disturbs least); best of two runs each."""
        wall = cpu = float("inf")
        for _ in range(2):
            started, started_cpu = time.perf_counter(), time.process_time()
            classify_addresses(frame)
            wall = min(wall, time.perf_counter() - started)
            cpu = min(cpu, time.process_time() - started_cpu)
        return round(len(frame) / wall), round(len(frame) / cpu)

    frame = ctx["frame"]
    distinct, distinct_cpu = per_second(frame)
    again, again_cpu = per_second(repeated(frame))
    accuracy, labelled = labelled_accuracy()
    return {"per_s": distinct, "per_s_distinct": distinct, "per_s_repeated": again,
            "cpu_per_s_distinct": distinct_cpu, "cpu_per_s_repeated": again_cpu,
            "distinct_texts": len(frame.drop_duplicates()),
            "accuracy": round(accuracy, 4), "labelled_n": labelled, "baseline_accuracy": round(baseline_accuracy(), 4)}
