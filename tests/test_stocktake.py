"""Stocktakes (F3): bad rows refused one by one with a reason, variances as adjustments with reasons, promised
stock the count no longer covers released, and the report: slow-moving, expired, expiring, damaged."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pandas as pd
from fulfilment_data import NOW, add_orders, add_stock, seed_reference
from sqlalchemy import select

from tasks.fulfilment.allocation_run import allocate_orders
from tasks.fulfilment.stock import (
    apply_movements,
    ledger_mismatches,
    quarantine_expired_batches,
    stock_position,
)
from tasks.fulfilment.stocktake import import_stocktake
from yidi.bulk import insert_rows, read_frame
from yidi.schema import orders
from yidi.schema_fulfilment import allocations, shipment_requests, stock_batches, stock_movements
from yidi.settings import get_settings


def write(tmp_path, text: str, encoding: str = "utf-8"):
    path = tmp_path / "count.csv"
    path.write_text(text, encoding=encoding)
    return path


def run(engine, path):
    with engine.begin() as conn:
        return import_stocktake(conn, path, policy=get_settings().fulfilment, now=NOW, actor="user:盘点员")


def test_bad_rows_are_refused_with_reasons_and_good_rows_still_count(sqlite_engine, tmp_path):
    with sqlite_engine.begin() as conn:
        seed_reference(conn)
        add_stock(conn, [("CQ-XY", "A-STOCK", 10), ("CQ-XY", "B-STOCK", 5, "L1"), ("CQ-XY", "B-STOCK", 5, "L2")])
    path = write(
        tmp_path,
        "仓库,商品编码,批次,实盘数量,损坏数量\n"
        "CQ-XY,A-STOCK,,8,1\n"  # 2 missing, 1 damaged
        "CQ-XY,GHOST,,3,\n"  # unknown item
        "CQ-XY,B-STOCK,L1,-1,\n"  # negative
        "CQ-XY,B-STOCK,L2,4,\n"
        "CQ-XY,B-STOCK,L2,4,\n"  # identical duplicate: counted once
        "CQ-LJ,H-HEAVY,,2,\n"
        "CQ-LJ,H-HEAVY,,3,\n"  # conflicting duplicate
        "CQ-XY,A-STOCK,L9,1,\n"  # A-STOCK counted per batch and as a total
        "CQ-NOPE,A-STOCK,,1,\n"  # unknown warehouse
        "CQ-XY,B-STOCK,,十,\n"  # not a number
        "CQ-LJ,B-STOCK,,1,3\n",  # more damaged than counted
        encoding="gbk",
    )
    result = run(sqlite_engine, path)
    lines = result.lines.set_index("row_no")
    reasons = lines["reason"].to_dict()
    assert "GHOST is not in the catalog" in reasons[3]
    assert reasons[4] == "negative count -1"
    assert pd.isna(reasons[5]) and reasons[6] == "duplicate of row 5 (same count): counted once"
    assert "conflicting counts" in reasons[7] and "conflicting counts" in reasons[8]
    assert "both per batch and as a total" in reasons[2] and "both per batch and as a total" in reasons[9]
    assert reasons[10] == "unknown warehouse CQ-NOPE"
    assert "is not a number" in reasons[11]
    assert reasons[12] == "more damaged than counted"
    assert (result.applied, result.rejected) == (1, 10)
    with sqlite_engine.connect() as conn:
        position = stock_position(conn).set_index(["warehouse", "item_code"])
        assert position.loc[("CQ-XY", "B-STOCK"), "on_hand"] == 9.0  # L2 counted 4 of 5
        adjustments = read_frame(conn, select(stock_movements).where(stock_movements.c.kind == "adjustment"))
        assert adjustments["reason"].iloc[0].startswith(f"stocktake {result.stocktake_no}: counted 4, book 5")
        assert adjustments["batch_no"].tolist() == ["L2"]
        assert ledger_mismatches(conn).empty
    # The same file again changes nothing (counts are absolute).
    again = run(sqlite_engine, path)
    assert again.applied == 0 and again.unchanged == 1


def test_a_count_below_what_is_promised_releases_the_newest_allocations(sqlite_engine, tmp_path):
    with sqlite_engine.begin() as conn:
        seed_reference(conn)
        add_stock(conn, [("CQ-XY", "A-STOCK", 10)])
        first, second = add_orders(conn, [{"lines": [("A-STOCK", 4)]}, {"lines": [("A-STOCK", 5)]}])
    allocate_orders(sqlite_engine, now=NOW)
    result = run(sqlite_engine, write(tmp_path, "warehouse,item_code,counted_qty,damaged_qty\nCQ-XY,A-STOCK,6,1\n"))
    assert result.released_orders == [second]
    with sqlite_engine.connect() as conn:
        states = dict(conn.execute(select(orders.c.id, orders.c.state)).all())
        assert states == {first: "allocated", second: "backordered"}
        assert read_frame(conn, select(allocations.c.order_id, allocations.c.status)).set_index("order_id")[
            "status"
        ].to_dict() == {first: "reserved", second: "released"}
        assert read_frame(conn, select(shipment_requests.c.order_id, shipment_requests.c.status)).set_index(
            "order_id"
        )["status"].to_dict() == {first: "pending", second: "cancelled"}
        position = stock_position(conn).iloc[0]
        assert (position["on_hand"], position["reserved"], position["damaged"], position["available"]) == (6, 4, 1, 1)
        assert ledger_mismatches(conn).empty
    assert result.report["damaged"]["damaged"].tolist() == [1.0]


def test_report_flags_slow_moving_expired_and_expiring_stock(sqlite_engine, tmp_path):
    long_ago = datetime(2026, 6, 1, tzinfo=UTC)
    with sqlite_engine.begin() as conn:
        seed_reference(conn)
        apply_movements(
            conn,
            pd.DataFrame([
                {"warehouse": "CQ-XY", "item_code": "B-STOCK", "batch_no": "OLD", "kind": "receipt", "on_hand_delta": 4.0},
                {"warehouse": "CQ-XY", "item_code": "B-STOCK", "batch_no": "SOON", "kind": "receipt", "on_hand_delta": 6.0},
                {"warehouse": "CQ-XY", "item_code": "H-HEAVY", "kind": "receipt", "on_hand_delta": 2.0},
            ]),
            now=long_ago,
        )  # fmt: skip
        add_stock(conn, [("CQ-XY", "A-STOCK", 3)])
        insert_rows(conn, stock_batches, pd.DataFrame(
            [{"warehouse": "CQ-XY", "item_code": "B-STOCK", "batch_no": "OLD", "expiry_date": date(2026, 11, 1)},
             {"warehouse": "CQ-XY", "item_code": "B-STOCK", "batch_no": "SOON", "expiry_date": date(2026, 12, 10)}]))  # fmt: skip
    result = run(sqlite_engine, write(tmp_path, "warehouse,item_code,counted_qty\nCQ-XY,A-STOCK,3\n"))
    report = result.report
    assert set(report["slow_moving"]["item_code"]) == {"B-STOCK", "H-HEAVY"}  # A-STOCK moved today
    assert report["expired_batches"]["batch_no"].tolist() == ["OLD"]
    assert report["expiring_batches"]["batch_no"].tolist() == ["SOON"]
    assert result.report_path and result.report_path.endswith(".xlsx")
    sheets = pd.read_excel(result.report_path, sheet_name=None)
    assert {"呆滞库存", "过期批次", "临期批次"} <= set(sheets)
    # Expired goods leave availability once; the FEFO pick would skip them.
    with sqlite_engine.begin() as conn:
        first = quarantine_expired_batches(conn, date(2026, 11, 27))
        second = quarantine_expired_batches(conn, date(2026, 11, 27))
        assert first["batch_no"].tolist() == ["OLD"] and second.empty
        b = stock_position(conn, item_codes=["B-STOCK"]).iloc[0]
        assert (b["on_hand"], b["quarantined"], b["available"]) == (10, 4, 6)
