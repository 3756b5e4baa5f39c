"""allocate: allocation plus carrier choice for approved orders (issue 5), ours vs hand-written pandas.

Data: ``n`` approved orders (1-3 lines) over 10,000 items in two warehouses, destinations in every province
(a few unserved), some cash on delivery, high declared values and risky routes (insurance), promised dates;
five carriers from the policy file's rate cards (shunfeng, jd, zhongtong, yuantong, yunda).

Ours: what the ``allocate-orders`` task computes between reading and writing the store —
``tasks.fulfilment.allocation.plan_allocation`` (ranking, in-stock-first pass, partial pass), ``plan_shipments``, the rate
table from the policy models and ``tasks.fulfilment.carrier_choice.choose_carriers`` (every option priced and ranked,
winner with its reason, exceptions).

Baseline: the same rules written directly in pandas/Python by hand: sort, the same two-pass loop over plain
dicts, groupby for shipments, a merge of shipments × zone prices for the carriers, sort + first per shipment
for the winner. No reasons or exception texts (the baseline only picks).
"""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

NAME = "allocate"
DEFAULT_N = 100_000
TARGET = 1.2
BASELINE = "hand-written pandas: same ranking, two-pass loop, shipments, carrier price merge + pick"
CARRIERS = ["shunfeng", "jd", "zhongtong", "yuantong", "yunda"]
N_ITEMS = 10_000
WAREHOUSES = ["CQ-XY", "CQ-LJ"]
DISPATCH = date(2026, 11, 27)
PROVINCES = [
    "重庆市", "四川省", "贵州省", "云南省", "湖北省", "湖南省", "陕西省", "甘肃省", "广西壮族自治区", "河南省", "山西省",
    "广东省", "江西省", "安徽省", "宁夏回族自治区", "青海省", "北京市", "天津市", "河北省", "山东省", "江苏省", "浙江省",
    "上海市", "福建省", "海南省", "辽宁省", "吉林省", "黑龙江省", "内蒙古自治区", "新疆维吾尔自治区", "西藏自治区",
    "台湾省",
]  # fmt: skip


def prepare(n: int, workdir: Path, case: str | None):
    from yidi.settings import load_settings

    rng = np.random.default_rng(5)
    policy = load_settings().fulfilment
    policy = policy.model_copy(update={"rate_cards": {c: policy.rate_cards[c] for c in CARRIERS}})
    items = pd.DataFrame(
        {
            "item_code": [f"SKU-{i:05d}" for i in range(N_ITEMS)],
            "weight_kg": np.round(rng.lognormal(0.3, 0.9, N_ITEMS), 2),
            "volume_m3": np.round(rng.lognormal(-5.0, 1.0, N_ITEMS), 4),
        }
    )
    per_order = rng.choice([1, 1, 1, 2, 2, 3], size=n)
    order_of_line = np.repeat(np.arange(n), per_order)
    n_lines = len(order_of_line)
    popular = rng.zipf(1.3, size=n_lines) % N_ITEMS  # a few items are in most orders
    order_ids = np.arange(1, n + 1)
    orders = pd.DataFrame(
        {
            "order_id": order_ids,
            "promised_date": np.where(
                rng.random(n) < 0.8,
                pd.to_datetime(DISPATCH) + pd.to_timedelta(rng.integers(1, 12, n), unit="D"),
                pd.NaT,
            ),
            "order_time": pd.Timestamp("2026-11-20", tz="UTC") + pd.to_timedelta(rng.integers(0, 7 * 86400, n), unit="s"),
            "allow_partial": rng.random(n) < 0.6,
            "ship_province": rng.choice(PROVINCES, size=n, p=_province_weights()),
            "payment_method": np.where(rng.random(n) < 0.07, "cod", "alipay"),
        }
    )
    quantity = rng.choice([1.0, 1.0, 1.0, 2.0, 3.0, 5.0], size=n_lines)
    price_fen = rng.integers(1_000, 600_000, size=N_ITEMS)
    item_index = popular.astype(np.int64)
    lines = pd.DataFrame(
        {
            "order_id": order_ids[order_of_line],
            "order_line_id": np.arange(1, n_lines + 1),
            "item_code": items["item_code"].to_numpy()[item_index],
            "quantity": quantity,
            "line_total_fen": price_fen[item_index] * quantity,
        }
    )
    goods = lines.groupby("order_id")["line_total_fen"].sum()
    orders["goods_total_fen"] = goods.reindex(orders["order_id"]).to_numpy().astype(np.int64)
    orders["order_total_fen"] = orders["goods_total_fen"]
    demand = lines.groupby("item_code")["quantity"].sum()
    stock_rows = []
    for w, share in zip(WAREHOUSES, (0.6, 0.3), strict=True):
        on_hand = np.floor(demand.to_numpy() * share * rng.uniform(0.5, 1.3, len(demand)))
        stock_rows.append(pd.DataFrame({"warehouse": w, "item_code": demand.index, "available": on_hand}))
    stock = pd.concat(stock_rows, ignore_index=True)
    return {"policy": policy, "orders": orders, "lines": lines, "stock": stock, "items": items,
            "baseline_rates": _baseline_rates(policy)}  # fmt: skip


def _province_weights() -> np.ndarray:
    weights = np.ones(len(PROVINCES))
    weights[0] = 6.0  # Chongqing itself
    weights[-1] = 0.05  # Taiwan: nobody serves it
    return weights / weights.sum()


def ours(ctx) -> None:
    from tasks.fulfilment.allocation import plan_allocation, plan_shipments
    from tasks.fulfilment.carrier_choice import choose_carriers
    from tasks.fulfilment.rate_cards import rate_table

    policy = ctx["policy"]
    plan = plan_allocation(ctx["orders"], ctx["lines"], ctx["stock"], WAREHOUSES)
    ships = plan_shipments(plan.allocations, ctx["orders"], ctx["lines"], ctx["items"])
    result = choose_carriers(
        ships,
        rate_table(policy),
        dispatch_day=DISPATCH,
        insurance_threshold_fen=int(policy.insurance_threshold_yuan * 100),
        insurance_provinces=policy.insurance_route_provinces,
    )
    ctx["result"] = (plan, ships, result)


# --- the baseline: the same rules, by hand -------------------------------------------------------------------

_SUFFIXES = ("壮族自治区", "回族自治区", "维吾尔自治区", "特别行政区", "自治区", "省", "市")


def _short(name: str) -> str:
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _baseline_rates(policy) -> pd.DataFrame:
    """Zone prices as a plain table: carrier, province, prices, transit, card terms (prepared outside timing)."""
    rows = []
    for code, card in policy.rate_cards.items():
        for zone in card.zones:
            for dest in zone.destinations:
                for province in policy.regions.get(dest, [dest]):
                    rows.append(
                        {"carrier": code, "province": _short(province), "first_kg": zone.first_weight_kg,
                         "first_fen": float(zone.first_weight_yuan) * 100, "add_fen": float(zone.additional_kg_yuan) * 100,
                         "transit": zone.transit_days, "divisor": card.volumetric_divisor, "step": card.weight_step_kg,
                         "max_kg": card.max_weight_kg, "cod": card.cod, "cod_pct": card.cod_fee_pct,
                         "cod_min": float(card.cod_min_yuan) * 100, "ins": card.insurance,
                         "ins_pct": card.insurance_rate_pct, "ins_min": float(card.insurance_min_yuan) * 100}
                    )  # fmt: skip
    return pd.DataFrame(rows)


def baseline(ctx) -> None:
    from yidi.workdays import add_working_days

    orders, lines, stock, items = ctx["orders"], ctx["lines"], ctx["stock"], ctx["items"]
    ranked = orders.sort_values(["promised_date", "order_time", "order_id"], na_position="last")
    partial = dict(zip(ranked["order_id"].tolist(), ranked["allow_partial"].tolist(), strict=True))
    wh = {w: i for i, w in enumerate(WAREHOUSES)}
    free: dict[str, list[float]] = {}
    for w, item, q in zip(stock["warehouse"].tolist(), stock["item_code"].tolist(), stock["available"].tolist(), strict=True):
        free.setdefault(item, [0.0] * len(WAREHOUSES))[wh[w]] += max(q, 0.0)
    by_order: dict[int, list[tuple]] = {}
    for o, lid, item, q in zip(lines["order_id"].tolist(), lines["order_line_id"].tolist(), lines["item_code"].tolist(),
                               lines["quantity"].tolist(), strict=True):  # fmt: skip
        by_order.setdefault(o, []).append((lid, item, q))
    out = []

    def take(o, lid, item, want):
        row = free.setdefault(item, [0.0] * len(WAREHOUSES))
        got = 0.0
        for w in range(len(WAREHOUSES)):
            use = min(row[w], want - got)
            if use > 1e-9:
                row[w] -= use
                got += use
                out.append((o, lid, item, WAREHOUSES[w], use))
        return got

    waiting = []
    for o in ranked["order_id"].tolist():
        order_lines = by_order.get(o, [])
        need: dict[str, float] = {}
        for _, item, q in order_lines:
            need[item] = need.get(item, 0.0) + q
        if all(sum(free.get(item, [0.0])) + 1e-9 >= q for item, q in need.items()):
            home = next((w for w in range(len(WAREHOUSES))
                         if all(free[item][w] + 1e-9 >= q for item, q in need.items())), None)  # fmt: skip
            for lid, item, q in order_lines:
                if home is not None:
                    free[item][home] -= q
                    out.append((o, lid, item, WAREHOUSES[home], q))
                else:
                    take(o, lid, item, q)
        else:
            waiting.append(o)
    for o in waiting:
        if partial[o]:
            for lid, item, q in by_order.get(o, []):
                take(o, lid, item, q)
    alloc = pd.DataFrame(out, columns=["order_id", "order_line_id", "item_code", "warehouse", "quantity"])

    # Shipments: one per order and warehouse.
    alloc = alloc.merge(items, on="item_code", how="left").merge(
        lines[["order_line_id", "quantity", "line_total_fen"]].rename(columns={"quantity": "ordered"}), on="order_line_id"
    )
    alloc["w"] = alloc["weight_kg"] * alloc["quantity"]
    alloc["v"] = alloc["volume_m3"] * alloc["quantity"]
    alloc["value"] = alloc["line_total_fen"] * alloc["quantity"] / alloc["ordered"]
    ships = alloc.groupby(["order_id", "warehouse"], as_index=False).agg(w=("w", "sum"), v=("v", "sum"), value=("value", "sum"))
    ships = ships.merge(orders[["order_id", "ship_province", "promised_date", "payment_method", "order_total_fen",
                                "goods_total_fen"]], on="order_id")  # fmt: skip
    ships["province"] = ships["ship_province"].map({p: _short(p) for p in PROVINCES})
    ships["cod_amount"] = np.where(ships["payment_method"] == "cod",
                                   np.round(ships["order_total_fen"] * ships["value"] / ships["goods_total_fen"]), 0)  # fmt: skip
    policy = ctx["policy"]
    risky = {_short(p) for p in policy.insurance_route_provinces}
    ships["insure"] = (ships["value"] >= float(policy.insurance_threshold_yuan) * 100) | ships["province"].isin(risky)

    # Carriers: every serving carrier priced, the cheapest meeting the promise, else the fastest.
    options = ships.merge(ctx["baseline_rates"], on="province")
    # Weights to the step as the card prints them (0.208 m³ / 8000 is 26 kg, not 26.000000000000004 -> 27), and
    # fees rounded half up to the fen as carriers bill them (numpy's round is half to even).
    chargeable = np.maximum(options["w"], options["v"] * 1_000_000 / options["divisor"])
    chargeable = np.ceil(np.round(chargeable / options["step"], 9)) * options["step"]
    extra = np.ceil(np.round(np.clip(chargeable - options["first_kg"], 0, None) / options["step"], 9)) * options["step"]

    def half_up(x):
        return np.floor(x + 0.5)

    options["cost"] = half_up(options["first_fen"] + extra * options["add_fen"])
    options["cost"] += np.where(options["insure"], np.maximum(options["ins_min"], half_up(options["value"] * options["ins_pct"] / 100)), 0)
    options["cost"] += np.where(options["cod_amount"] > 0, np.maximum(options["cod_min"], half_up(options["cod_amount"] * options["cod_pct"] / 100)), 0)
    ok = (chargeable <= options["max_kg"]) & (~options["insure"] | options["ins"]) & ((options["cod_amount"] == 0) | options["cod"])
    options = options[ok]
    eta = {t: add_working_days(DISPATCH, int(t)) for t in options["transit"].unique()}
    options["eta"] = pd.to_datetime(options["transit"].map(eta))
    options["meets"] = options["promised_date"].isna() | (options["eta"] <= options["promised_date"])
    any_meets = options.groupby(["order_id", "warehouse"])["meets"].transform("any")
    options["k1"] = np.where(any_meets, ~options["meets"], False)
    options["k2"] = np.where(any_meets, options["cost"], options["transit"])
    options["k3"] = np.where(any_meets, options["transit"], options["cost"])
    options["carrier_rank"] = options["carrier"].map({c: i for i, c in enumerate(CARRIERS)})  # ties: policy order
    winners = options.sort_values(["order_id", "warehouse", "k1", "k2", "k3", "carrier_rank"]).groupby(
        ["order_id", "warehouse"], as_index=False
    ).first()
    ctx["result"] = (alloc, ships, winners)


def extra(ctx) -> dict:
    ours(ctx)
    plan, ships, result = ctx["result"]
    counts = plan.outcomes["outcome"].value_counts().to_dict()
    return {
        "orders_full": int(counts.get("full", 0)),
        "orders_partial": int(counts.get("partial", 0)),
        "orders_short": int(counts.get("short", 0)),
        "shipments": len(ships),
        "shipments_without_carrier": int(result.choices["carrier"].isna().sum()),
        "lines": len(ctx["lines"]),
        "items": N_ITEMS,
        "carriers": len(CARRIERS),
        "mean_freight_yuan": round(float(result.choices["total_fen"].mean()) / 100, 2) if len(ships) else math.nan,
    }



def parity(ctx) -> None:
    """Same allocation (line, warehouse, quantity) and the same carrier and price per shipment on both sides."""
    ours(ctx)
    plan, ships, result = ctx["result"]
    baseline(ctx)
    alloc, _, winners = ctx["result"]
    key = ["order_line_id", "warehouse"]
    mine = plan.allocations.groupby(key)["quantity"].sum().round(6)
    theirs = alloc.groupby(key)["quantity"].sum().round(6)
    both = pd.concat({"ours": mine, "baseline": theirs}, axis=1)
    wrong = both[both["ours"].fillna(-1) != both["baseline"].fillna(-1)]
    assert wrong.empty, f"{len(wrong)} allocations differ, e.g.\n{wrong.head()}"
    chosen = result.choices.merge(ships[["shipment_key", "order_id", "warehouse"]], on="shipment_key")
    chosen = chosen[chosen["carrier"].notna()].set_index(["order_id", "warehouse"])[["carrier", "total_fen"]]
    picked = winners.set_index(["order_id", "warehouse"])[["carrier", "cost"]].rename(columns={"cost": "total_fen"})
    both = chosen.add_suffix("_ours").join(picked.add_suffix("_baseline"), how="outer")
    wrong = both[(both["carrier_ours"] != both["carrier_baseline"])
                 | (both["total_fen_ours"].astype(float) != both["total_fen_baseline"].astype(float))]  # fmt: skip
    assert wrong.empty, f"{len(wrong)} of {len(both)} shipments get another carrier or price, e.g.\n{wrong.head()}"
