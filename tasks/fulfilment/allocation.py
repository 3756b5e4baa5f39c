"""Allocation planning (F3), pure: which order gets which stock from which warehouse, and what is short.

Rules (issue 5):

1. Orders are ranked by promised date (none last), then order time, then id.
2. **In-stock orders first**: a first pass walks the ranking and allocates every order whose outstanding lines
   are all covered by the stock still free. It prefers one warehouse that holds the whole order (one parcel),
   else takes each line from the warehouses in priority order.
3. A second pass walks the orders that did not fit, in the same ranking: an order that may ship partially
   (customer's ``allow_partial_shipment`` or the customer chose "partial") takes what is there line by line;
   the rest is short. An order that may not ship partially reserves nothing (its stock stays free for orders
   that can ship now) and is short in full.

The walk is inherently sequential (each order changes what the next one finds), so it is one tight loop over
plain Python lists: about a microsecond per line, 100k orders in well under a second.

Before planning: only product lines with an outstanding quantity count (``product_lines``), and orders no carrier
could take whatever the stock (unknown or weightless items, unserved destinations) are set aside with a reason
(``precheck_exceptions``).

Shipments: an order's allocations from one warehouse form one shipment (weight, volume, declared value, COD
share), ready for ``carrier_choice.choose_carriers``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from yidi.money import yuan_text
from yidi.settings import province_short_name

EPS = 1e-9


@dataclass(frozen=True)
class AllocationPlan:
    allocations: pd.DataFrame  # order_id, order_line_id, item_code, warehouse, quantity
    outcomes: pd.DataFrame  # order_id, outcome (full | partial | short), could_ship_partially, rank
    short_lines: pd.DataFrame  # order_id, order_line_id, item_code, short_qty (in ranking order)
    free_after: dict  # item_code -> free quantity left over all warehouses after the plan


def product_lines(lines: pd.DataFrame, items: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """Lines that need goods: not service lines (by the line or the catalog), with an outstanding quantity above
    ``tolerance`` (the store's, ``yidi.schema_fulfilment.QTY_EPSILON``: this module stays free of the store)."""
    kind = items.set_index("item_code")["kind"].reindex(lines["item_code"]).to_numpy(dtype=object)
    service = (lines["item_kind"].to_numpy(dtype=object) == "service") | (kind == "service")
    return lines[~service & (lines["outstanding"].to_numpy(dtype=float) > tolerance)]


def precheck_exceptions(order_frame: pd.DataFrame, lines: pd.DataFrame, items: pd.DataFrame, served: set[str]) -> dict[int, str]:
    """Orders no carrier could take, whatever the stock: order_id -> readable reason."""
    reasons: dict[int, list[str]] = {}
    known = items.set_index("item_code")
    in_catalog = lines["item_code"].isin(known.index)
    for oid, code in zip(lines.loc[~in_catalog, "order_id"].tolist(), lines.loc[~in_catalog, "item_code"].tolist(), strict=True):
        reasons.setdefault(oid, []).append(f"item {code} is not in the catalog")
    weight = known["weight_kg"].reindex(lines["item_code"]).to_numpy(dtype=float)
    weightless = in_catalog.to_numpy() & np.isnan(weight)
    for oid, code in zip(lines.loc[weightless, "order_id"].tolist(), lines.loc[weightless, "item_code"].tolist(), strict=True):
        reasons.setdefault(oid, []).append(f"item {code} has no weight: no carrier can be priced")
    provinces = order_frame["ship_province"].map(lambda p: province_short_name(p) if isinstance(p, str) else None)
    unserved = ~provinces.isin(served)
    for oid, raw in zip(order_frame.loc[unserved, "order_id"].tolist(), order_frame.loc[unserved, "ship_province"].tolist(), strict=True):
        where = raw if isinstance(raw, str) and raw else "an empty province"
        reasons.setdefault(oid, []).append(f"no carrier serves {where}")
    return {oid: "; ".join(dict.fromkeys(parts)) for oid, parts in reasons.items()}


def priority_order(orders: pd.DataFrame) -> np.ndarray:
    """Positions of ``orders`` by promised date (none last), order time (none last), id."""
    promised = pd.to_datetime(orders["promised_date"], errors="coerce")
    order_time = pd.to_datetime(orders["order_time"], errors="coerce", utc=True)
    keys = pd.DataFrame(
        {
            "p_missing": promised.isna().to_numpy(),
            "p": promised.to_numpy(dtype="datetime64[ns]"),
            "t_missing": order_time.isna().to_numpy(),
            "t": order_time.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]"),
            "id": orders["order_id"].to_numpy(),
        }
    )
    return keys.sort_values(["p_missing", "p", "t_missing", "t", "id"], kind="stable").index.to_numpy()


def plan_allocation(
    orders: pd.DataFrame,
    lines: pd.DataFrame,
    stock: pd.DataFrame,
    warehouse_order: list[str],
) -> AllocationPlan:
    """Plan the allocation of free stock to orders (see module docstring).

    ``orders``: order_id, promised_date, order_time, allow_partial. ``lines``: order_id, order_line_id,
    item_code, quantity (outstanding). ``stock``: warehouse, item_code, available. Warehouses missing from
    ``warehouse_order`` come last.
    """
    rank = priority_order(orders)
    ordered = orders.iloc[rank]
    order_ids = ordered["order_id"].to_numpy()
    allow_partial = ordered["allow_partial"].fillna(False).astype(bool).tolist()
    position = pd.Series(np.arange(len(order_ids)), index=order_ids)

    lines = lines[lines["order_id"].isin(position.index)]
    line_pos = position.reindex(lines["order_id"].to_numpy()).to_numpy()
    sort = np.argsort(line_pos, kind="stable")
    line_pos = line_pos[sort]
    line_ids = lines["order_line_id"].to_numpy()[sort]
    line_qty = lines["quantity"].to_numpy(dtype=float)[sort]
    line_item_codes = lines["item_code"].to_numpy(dtype=object)[sort]

    codes, uniques = pd.factorize(pd.Series(line_item_codes, dtype=object))
    item_index = codes.tolist()
    items = {code: i for i, code in enumerate(uniques.tolist())}
    stock = stock[stock["item_code"].isin(items.keys())]
    whs = list(warehouse_order) + sorted(set(stock["warehouse"]) - set(warehouse_order))
    wh_index = {w: i for i, w in enumerate(whs)}
    n_wh = len(whs)
    avail = np.zeros((len(items), max(n_wh, 1)))
    if len(stock):
        np.add.at(
            avail,
            (stock["item_code"].map(items).to_numpy(dtype=np.int64), stock["warehouse"].map(wh_index).to_numpy(dtype=np.int64)),
            np.clip(stock["available"].to_numpy(dtype=float), 0, None),
        )
    avail_rows = avail.tolist()  # plain lists: scalar access in the loop is far cheaper than numpy's
    totals = avail.sum(axis=1).tolist()

    bounds = np.searchsorted(line_pos, np.arange(len(order_ids) + 1)).tolist()
    qty = line_qty.tolist()
    out_line, out_wh, out_qty = [], [], []
    outcome = ["short"] * len(order_ids)
    could_partial = [False] * len(order_ids)
    short_of_line = qty.copy()

    def take_line(j: int, item: int, wanted: float) -> float:
        row = avail_rows[item]
        got = 0.0
        for w in range(n_wh):
            if wanted - got <= EPS:
                break
            free = row[w]
            if free > EPS:
                use = free if free < wanted - got else wanted - got
                row[w] = free - use
                got += use
                out_line.append(j)
                out_wh.append(w)
                out_qty.append(use)
        totals[item] -= got
        return got

    deferred = []
    for o in range(len(order_ids)):
        start, end = bounds[o], bounds[o + 1]
        if start == end:
            continue
        if end - start == 1:  # most orders have one line: the same rules without the bookkeeping
            item, need = item_index[start], qty[start]
            if totals[item] + EPS >= need:
                row = avail_rows[item]
                for w in range(n_wh):
                    if row[w] + EPS >= need:
                        row[w] -= need
                        totals[item] -= need
                        out_line.append(start)
                        out_wh.append(w)
                        out_qty.append(need)
                        break
                else:
                    take_line(start, item, need)
                short_of_line[start] = 0.0
                outcome[o] = "full"
            else:
                deferred.append(o)
            continue
        demand: dict[int, float] = {}
        for j in range(start, end):
            item = item_index[j]
            demand[item] = demand.get(item, 0.0) + qty[j]
        if all(totals[item] + EPS >= need for item, need in demand.items()):
            single = -1
            for w in range(n_wh):
                if all(avail_rows[item][w] + EPS >= need for item, need in demand.items()):
                    single = w
                    break
            for j in range(start, end):
                item = item_index[j]
                if single >= 0:
                    avail_rows[item][single] -= qty[j]
                    totals[item] -= qty[j]
                    out_line.append(j)
                    out_wh.append(single)
                    out_qty.append(qty[j])
                else:
                    take_line(j, item, qty[j])
                short_of_line[j] = 0.0
            outcome[o] = "full"
        else:
            deferred.append(o)

    for o in deferred:
        start, end = bounds[o], bounds[o + 1]
        could_partial[o] = any(totals[item_index[j]] > EPS for j in range(start, end))
        if not allow_partial[o]:
            continue
        got_any = False
        for j in range(start, end):
            got = take_line(j, item_index[j], qty[j])
            short_of_line[j] = max(qty[j] - got, 0.0)
            got_any = got_any or got > EPS
        outcome[o] = "partial" if got_any else "short"

    out_line_arr = np.asarray(out_line, dtype=np.int64)
    allocations = pd.DataFrame(
        {
            "order_id": order_ids[line_pos[out_line_arr]] if len(out_line_arr) else np.zeros(0, dtype=np.int64),
            "order_line_id": line_ids[out_line_arr] if len(out_line_arr) else np.zeros(0, dtype=np.int64),
            "item_code": line_item_codes[out_line_arr] if len(out_line_arr) else np.zeros(0, dtype=object),
            "warehouse": np.asarray(whs + [None], dtype=object)[np.asarray(out_wh, dtype=np.int64)]
            if len(out_wh)
            else np.zeros(0, dtype=object),
            "quantity": np.asarray(out_qty, dtype=float),
        }
    )
    short = np.asarray(short_of_line, dtype=float)
    short_mask = short > EPS
    short_lines = pd.DataFrame(
        {
            "order_id": order_ids[line_pos[short_mask]],
            "order_line_id": line_ids[short_mask],
            "item_code": line_item_codes[short_mask],
            "short_qty": short[short_mask],
        }
    )
    outcomes = pd.DataFrame(
        {
            "order_id": order_ids,
            "outcome": outcome,
            "could_ship_partially": could_partial,
            "rank": np.arange(len(order_ids)),
        }
    )
    has_lines = np.diff(np.asarray(bounds)) > 0
    free_after = {code: max(totals[i], 0.0) for code, i in items.items()}
    return AllocationPlan(allocations, outcomes[has_lines].reset_index(drop=True), short_lines, free_after)


def plan_shipments(
    allocations: pd.DataFrame,
    orders: pd.DataFrame,
    lines: pd.DataFrame,
    items: pd.DataFrame,
) -> pd.DataFrame:
    """One shipment per (order, warehouse) from allocations, with the figures carrier choice needs.

    ``orders``: order_id, ship_province, promised_date, payment_method, order_total_fen, goods_total_fen.
    ``lines``: order_line_id, quantity (ordered), line_total_fen. ``items``: item_code, weight_kg, volume_m3.
    Returns shipment_key (0..n-1), order_id, warehouse and SHIPMENT_COLUMNS of ``carrier_choice``; the input
    allocations get a ``shipment_key`` column (returned as the second frame's column via ``allocations``).
    """
    if allocations.empty:
        return pd.DataFrame(
            columns=["shipment_key", "order_id", "warehouse", "province", "weight_kg", "volume_m3",
                     "declared_value_fen", "cod_amount_fen", "promised_date"]
        )  # fmt: skip
    weights = items.set_index("item_code")
    line_info = lines.set_index("order_line_id")
    a = allocations
    qty = a["quantity"].to_numpy(dtype=float)
    weight = weights["weight_kg"].reindex(a["item_code"]).to_numpy(dtype=float) * qty
    volume = np.nan_to_num(weights["volume_m3"].reindex(a["item_code"]).to_numpy(dtype=float)) * qty
    ordered = line_info["quantity"].reindex(a["order_line_id"]).to_numpy(dtype=float)
    line_total = line_info["line_total_fen"].reindex(a["order_line_id"]).to_numpy(dtype=float)
    value = np.where(ordered > 0, line_total * qty / np.where(ordered > 0, ordered, 1), 0.0)
    frame = pd.DataFrame(
        {"order_id": a["order_id"].to_numpy(), "warehouse": a["warehouse"].to_numpy(), "weight_kg": weight,
         "volume_m3": volume, "declared_value_fen": value, "weight_missing": np.isnan(weight)}
    )  # fmt: skip
    grouped = frame.groupby(["order_id", "warehouse"], sort=True).agg(
        weight_kg=("weight_kg", "sum"),
        volume_m3=("volume_m3", "sum"),
        declared_value_fen=("declared_value_fen", "sum"),
        weight_missing=("weight_missing", "any"),
    )
    grouped = grouped.reset_index()
    # An item without a weight makes the shipment's weight unknown: carrier choice reports it, never guesses.
    grouped.loc[grouped["weight_missing"], "weight_kg"] = np.nan
    grouped = grouped.drop(columns="weight_missing")
    grouped["declared_value_fen"] = np.floor(grouped["declared_value_fen"].to_numpy() + 0.5).astype(np.int64)
    info = orders.set_index("order_id")
    oid = grouped["order_id"].to_numpy()
    cod = info["payment_method"].reindex(oid).to_numpy(dtype=object) == "cod"
    goods_total = info["goods_total_fen"].reindex(oid).to_numpy(dtype=float)
    order_total = info["order_total_fen"].reindex(oid).to_numpy(dtype=float)
    share = np.where(goods_total > 0, grouped["declared_value_fen"].to_numpy() / np.where(goods_total > 0, goods_total, 1), 1.0)
    cod_amount = np.where(cod, np.minimum(np.floor(order_total * share + 0.5), order_total), 0).astype(np.int64)
    grouped["cod_amount_fen"] = cod_amount
    grouped["province"] = info["ship_province"].reindex(oid).to_numpy(dtype=object)
    grouped["promised_date"] = info["promised_date"].reindex(oid).to_numpy(dtype=object)
    grouped.insert(0, "shipment_key", np.arange(len(grouped)))
    return grouped


def shipment_keys_for(allocations: pd.DataFrame, shipments: pd.DataFrame) -> np.ndarray:
    """The ``shipment_key`` of each allocation row (by order and warehouse)."""
    index = pd.MultiIndex.from_arrays([shipments["order_id"].to_numpy(), shipments["warehouse"].to_numpy()])
    keys = pd.MultiIndex.from_arrays([allocations["order_id"].to_numpy(), allocations["warehouse"].to_numpy()])
    return shipments["shipment_key"].to_numpy()[index.get_indexer(keys)]


def choose_suppliers(
    needs: pd.DataFrame,
    prices: pd.DataFrame,
    *,
    premium_pct: float,
) -> pd.DataFrame:
    """F2: the supplier for each purchase need: lowest landed cost that meets the date, preferred supplier
    within ``premium_pct`` of it; when none meets the date, the earliest (then cheapest).

    ``needs``: need_id, item_code, quantity, latest_arrival (date or NA: no deadline), preferred_supplier.
    ``prices``: supplier_code, item_code, unit_price_fen, freight_per_order_fen, min_order_qty, arrival_date
    (date the goods would be sellable if ordered now). Returns need_id, supplier_code, order_qty,
    unit_price_fen, freight_fen, landed_cost_fen, expected_date, meets_date, reason, alternatives (list).
    Needs without any price come back with supplier_code NA.
    """
    columns = ["need_id", "supplier_code", "order_qty", "unit_price_fen", "freight_fen", "landed_cost_fen",
               "expected_date", "meets_date", "reason", "alternatives"]  # fmt: skip
    if needs.empty:
        return pd.DataFrame(columns=columns)
    options = needs.merge(prices, on="item_code", how="left")
    priced = options["supplier_code"].notna()
    options["order_qty"] = np.maximum(
        options["quantity"].to_numpy(dtype=float), options["min_order_qty"].fillna(0).to_numpy(dtype=float)
    )
    options["landed_cost_fen"] = (
        np.floor(options["order_qty"] * options["unit_price_fen"].fillna(0) + 0.5)
        + options["freight_per_order_fen"].fillna(0)
    ).astype(np.int64)
    arrival = pd.to_datetime(options["arrival_date"], errors="coerce")
    deadline = pd.to_datetime(options["latest_arrival"], errors="coerce")
    options["meets_date"] = priced & (deadline.isna() | (arrival <= deadline))
    options = options[priced].copy()
    options["arrival_ns"] = pd.to_datetime(options["arrival_date"]).to_numpy(dtype="datetime64[ns]").astype(np.int64)
    any_meets = options.groupby("need_id")["meets_date"].transform("any").to_numpy()
    meets = options["meets_date"].to_numpy()
    landed = options["landed_cost_fen"].to_numpy()
    arrival_ns = options["arrival_ns"].to_numpy()
    # Meeting the date first, then cheapest (then earliest); when none meets: earliest, then cheapest.
    options["k1"] = np.where(any_meets, ~meets, False)
    options["k2"] = np.where(any_meets, landed, arrival_ns)
    options["k3"] = np.where(any_meets, arrival_ns, landed)
    options = options.sort_values(["need_id", "k1", "k2", "k3", "supplier_code"], kind="stable")
    best = options.drop_duplicates("need_id")
    preferred = options[options["meets_date"] & (options["supplier_code"] == options["preferred_supplier"])]
    preferred = preferred.drop_duplicates("need_id").set_index("need_id")
    alternatives: dict = {}
    for need, supplier, cost, day, ok in zip(options["need_id"].tolist(), options["supplier_code"].tolist(),
                                             options["landed_cost_fen"].tolist(), options["arrival_date"].tolist(),
                                             options["meets_date"].tolist(), strict=True):  # fmt: skip
        alternatives.setdefault(need, []).append(
            {"supplier": supplier, "landed_cost_fen": int(cost), "expected_date": str(pd.Timestamp(day).date()),
             "meets_date": bool(ok)}
        )  # fmt: skip
    chosen, reasons = [], []
    for row in best.itertuples(index=False):
        winner, reason = row, None
        if row.meets_date:
            reason = f"lowest landed cost meeting the date: {yuan_text(row.landed_cost_fen, symbol=True)}"
            if row.need_id in preferred.index:
                pref = preferred.loc[row.need_id]
                if pref["supplier_code"] == row.supplier_code:
                    reason = "preferred supplier, " + reason
                elif pref["landed_cost_fen"] <= row.landed_cost_fen * (1 + premium_pct / 100.0):
                    winner = pref
                    reason = (
                        f"preferred supplier within {premium_pct:g}% of the cheapest "
                        f"({yuan_text(pref['landed_cost_fen'], symbol=True)} vs {yuan_text(row.landed_cost_fen, symbol=True)})"
                    )
        else:
            reason = f"no supplier meets the date; earliest arrival {pd.Timestamp(row.arrival_date).date()}"
        get = winner.__getitem__ if isinstance(winner, pd.Series) else lambda k, w=winner: getattr(w, k)
        chosen.append(
            {
                "need_id": row.need_id,
                "supplier_code": get("supplier_code"),
                "order_qty": float(get("order_qty")),
                "unit_price_fen": int(get("unit_price_fen")),
                "freight_fen": int(get("freight_per_order_fen")),
                "landed_cost_fen": int(get("landed_cost_fen")),
                "expected_date": pd.Timestamp(get("arrival_date")).date(),
                "meets_date": bool(get("meets_date")),
                "reason": reason,
                "alternatives": alternatives.get(row.need_id, []),
            }
        )
        reasons.append(reason)
    found = {c["need_id"] for c in chosen}
    for need in needs["need_id"].tolist():
        if need not in found:
            chosen.append({"need_id": need, "supplier_code": None, "reason": "no supplier price list for this item",
                           "alternatives": []})  # fmt: skip
    return pd.DataFrame(chosen).reindex(columns=columns).sort_values("need_id").reset_index(drop=True)
