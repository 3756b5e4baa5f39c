"""Allocation planning (pure): in-stock orders first, then promised date and order time; partial shipment only
where allowed; one warehouse per order when possible; supplier choice by landed cost and date (F2)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pandas as pd

from tasks.fulfilment.allocation import choose_suppliers, plan_allocation, plan_shipments


def orders(*rows):
    return pd.DataFrame(
        [{"order_id": i, "promised_date": p, "order_time": datetime(2026, 11, 1, h, tzinfo=UTC), "allow_partial": a}
         for i, p, h, a in rows]
    )  # fmt: skip


def lines(*rows):
    return pd.DataFrame([{"order_id": o, "order_line_id": lid, "item_code": c, "quantity": float(q)}
                         for o, lid, c, q in rows])  # fmt: skip


def stock(*rows):
    return pd.DataFrame([{"warehouse": w, "item_code": c, "available": float(q)} for w, c, q in rows])


def test_in_stock_orders_ship_first_then_by_promised_date_and_order_time():
    plan = plan_allocation(
        orders((1, date(2026, 12, 1), 9, False), (2, date(2026, 12, 5), 8, False), (3, None, 7, False),
               (4, date(2026, 12, 5), 7, False)),
        lines((1, 11, "A", 5), (1, 12, "B", 1), (2, 21, "A", 2), (3, 31, "A", 1), (4, 41, "A", 2)),
        stock(("W1", "A", 5)),
        ["W1"],
    )  # fmt: skip
    outcome = plan.outcomes.set_index("order_id")["outcome"]
    # Order 1 has the earliest promise but B is missing: it waits; 4 (earlier order time than 2), 2, 3 ship.
    assert outcome.to_dict() == {1: "short", 4: "full", 2: "full", 3: "full"}
    assert plan.outcomes["order_id"].tolist() == [1, 4, 2, 3]  # ranking
    assert plan.allocations.groupby("order_id")["quantity"].sum().to_dict() == {4: 2.0, 2: 2.0, 3: 1.0}
    # Not allowed to ship partially: nothing reserved, every line short.
    assert set(plan.short_lines["order_line_id"]) == {11, 12}


def test_partial_shipment_only_where_allowed():
    plan = plan_allocation(
        orders((1, None, 1, True), (2, None, 2, False)),
        lines((1, 11, "A", 3), (1, 12, "B", 2), (2, 21, "A", 1), (2, 22, "B", 5)),
        stock(("W1", "A", 3), ("W1", "B", 1)),
        ["W1"],
    )  # fmt: skip
    outcome = plan.outcomes.set_index("order_id")
    assert outcome.loc[1, "outcome"] == "partial"
    assert outcome.loc[2, "outcome"] == "short" and not outcome.loc[2, "could_ship_partially"]
    short = plan.short_lines.set_index("order_line_id")["short_qty"].to_dict()
    assert short == {12: 1.0, 21: 1.0, 22: 5.0}
    assert plan.allocations.set_index("order_line_id")["quantity"].to_dict() == {11: 3.0, 12: 1.0}


def test_one_warehouse_holds_the_whole_order_when_it_can():
    plan = plan_allocation(
        orders((1, None, 1, True), (2, None, 2, True)),
        lines((1, 11, "A", 2), (1, 12, "B", 2), (2, 21, "A", 4)),
        stock(("W1", "A", 3), ("W2", "A", 3), ("W2", "B", 2)),
        ["W1", "W2"],
    )  # fmt: skip
    by_order = plan.allocations.groupby("order_id")["warehouse"].apply(set).to_dict()
    assert by_order[1] == {"W2"}  # W2 holds A and B: one parcel instead of two
    assert plan.allocations[plan.allocations["order_id"] == 2]["quantity"].sum() == 4.0  # W1 3 + W2 1
    assert by_order[2] == {"W1", "W2"}


def test_shipments_sum_weight_value_and_cod_share():
    allocs = pd.DataFrame({"order_id": [1, 1], "order_line_id": [11, 12], "item_code": ["A", "B"],
                           "warehouse": ["W1", "W2"], "quantity": [2.0, 1.0]})  # fmt: skip
    ships = plan_shipments(
        allocs,
        pd.DataFrame({"order_id": [1], "ship_province": ["四川省"], "promised_date": [None], "payment_method": ["cod"],
                      "order_total_fen": [30_000], "goods_total_fen": [30_000]}),
        pd.DataFrame({"order_line_id": [11, 12], "quantity": [2.0, 1.0], "line_total_fen": [20_000, 10_000]}),
        pd.DataFrame({"item_code": ["A", "B"], "weight_kg": [1.5, None], "volume_m3": [0.01, 0.02]}),
    )  # fmt: skip
    by_wh = ships.set_index("warehouse")
    assert by_wh.loc["W1", "weight_kg"] == 3.0 and by_wh.loc["W1", "declared_value_fen"] == 20_000
    assert pd.isna(by_wh.loc["W2", "weight_kg"])  # unknown weight stays unknown
    assert by_wh["cod_amount_fen"].sum() == 30_000  # the COD amount is split by value, nothing lost


def test_supplier_choice_landed_cost_date_and_preferred_supplier():
    needs = pd.DataFrame({"need_id": [0, 1, 2], "item_code": ["P", "P", "Q"], "quantity": [2.0, 2.0, 1.0],
                          "latest_arrival": [date(2026, 12, 10), date(2026, 12, 1), None],
                          "preferred_supplier": ["S1", "S1", None]})  # fmt: skip
    prices = pd.DataFrame({"supplier_code": ["S1", "S2", "S3"], "item_code": ["P", "P", "P"],
                           "unit_price_fen": [10_200, 10_000, 9_000], "freight_per_order_fen": [0, 0, 0],
                           "min_order_qty": [1.0, 1.0, 1.0],
                           "arrival_date": [date(2026, 12, 4), date(2026, 12, 3), date(2026, 12, 20)]})  # fmt: skip
    chosen = choose_suppliers(needs, prices, premium_pct=3.0).set_index("need_id")
    # S3 is cheapest but too late; S1 (preferred) is within 3% of S2.
    assert chosen.loc[0, "supplier_code"] == "S1" and "preferred supplier within 3%" in chosen.loc[0, "reason"]
    # Nobody makes 12-01: the earliest arrival wins.
    assert chosen.loc[1, "supplier_code"] == "S2" and not chosen.loc[1, "meets_date"]
    assert pd.isna(chosen.loc[2, "supplier_code"]) and chosen.loc[2, "reason"] == "no supplier price list for this item"
    assert {a["supplier"] for a in chosen.loc[0, "alternatives"]} == {"S1", "S2", "S3"}
