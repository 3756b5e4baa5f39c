"""Test data for the fulfilment tests: a small catalog, customers, approved orders, stock, supplier prices."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta

import pandas as pd
from sqlalchemy import Connection

from tasks.fulfilment.stock import apply_movements, sync_warehouses
from tasks.fulfilment.suppliers import upsert_supplier_prices
from yidi.bulk import ids_for_keys, insert_rows
from yidi.schema import catalog_items, customers, order_lines, orders
from yidi.settings import get_settings

ITEMS = [
    # code, kind, name, weight, volume, sourcing, lead, preferred supplier, price yuan
    ("A-STOCK", "product", "摩托车头盔", 1.4, 0.02, "stock", 0, None, 189),
    ("B-STOCK", "product", "火锅底料", 0.55, 0.001, "stock", 0, None, 40),
    ("H-HEAVY", "product", "实木办公桌", 58.0, 0.45, "stock", 0, None, 1880),
    ("M-MADE", "product", "工业变频器", 6.5, 0.02, "make_to_order", 10, None, 4150),
    ("P-BUY", "product", "笔记本电脑", 1.6, 0.008, "buy", 5, "SUP-1", 5699),
    ("N-NOWEIGHT", "product", "未称重商品", None, None, "stock", 0, None, 50),
    ("SV-INSTALL", "service", "设备上门安装", None, None, "stock", 0, None, 300),
]

_counter = itertools.count(1)


def seed_reference(conn: Connection) -> None:
    sync_warehouses(conn, get_settings().fulfilment)
    insert_rows(
        conn,
        catalog_items,
        pd.DataFrame(
            [{"code": c, "kind": k, "name": n, "weight_kg": w, "volume_m3": v, "sourcing": s, "lead_time_days": lt,
              "preferred_supplier": ps, "list_price_fen": p * 100, "unit": "件"}
             for c, k, n, w, v, s, lt, ps, p in ITEMS]
        ),
        on_conflict=["code"],
    )  # fmt: skip
    insert_rows(
        conn,
        customers,
        pd.DataFrame(
            [
                {"code": "C-PARTIAL", "name": "张三", "phone": "13812348000", "allow_partial_shipment": True},
                {"code": "C-WHOLE", "name": "重庆宏达机电设备有限公司", "phone": "13912345678",
                 "email": "buyer@example.com", "allow_partial_shipment": False},
            ]
        ),
        on_conflict=["code"],
    )  # fmt: skip


def add_orders(conn: Connection, specs: list[dict]) -> list[int]:
    """Approved orders. Spec keys: lines [(item_code, qty)], province, customer ('C-PARTIAL'|'C-WHOLE'),
    promised_date, order_time, payment_method, state."""
    customer_ids = dict(
        conn.exec_driver_sql("SELECT code, id FROM customers WHERE code IN ('C-PARTIAL', 'C-WHOLE')").all()
    )
    prices = {c: p * 100 for c, *_, p in ITEMS}
    base = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    rows, line_rows = [], []
    for spec in specs:
        n = next(_counter)
        number = spec.get("order_no") or f"YDT{n:08d}"
        goods = sum(prices.get(code, 10000) * qty for code, qty in spec["lines"])
        customer = spec.get("customer", "C-PARTIAL")
        rows.append(
            {
                "order_no": number,
                "channel": "phone",
                "channel_order_id": number,
                "customer_id": customer_ids[customer],
                "customer_name": "张三" if customer == "C-PARTIAL" else "重庆宏达机电设备有限公司",
                "customer_phone": "13812348000",
                "customer_email": "buyer@example.com" if customer == "C-WHOLE" else None,
                "ship_province": spec.get("province", "四川省"),
                "ship_city": spec.get("city", "成都市"),
                "ship_district": "武侯区",
                "ship_detail": "人民南路四段1号",
                "region": "remote",
                "payment_method": spec.get("payment_method", "alipay"),
                "goods_total_fen": int(goods),
                "order_total_fen": int(goods),
                "state": spec.get("state", "approved"),
                "payment_state": "paid",
                "order_time": spec.get("order_time", base + timedelta(minutes=n)),
                "promised_date": spec.get("promised_date"),
            }
        )
        for line_no, (code, qty) in enumerate(spec["lines"], start=1):
            line_rows.append((number, line_no, code, qty, prices.get(code, 10000)))
    insert_rows(conn, orders, pd.DataFrame(rows))
    ids = ids_for_keys(conn, orders, pd.DataFrame({"order_no": [r["order_no"] for r in rows]}))
    id_of = dict(zip(ids["order_no"], ids["id"], strict=True))
    kinds = {c: k for c, k, *_ in ITEMS}
    insert_rows(
        conn,
        order_lines,
        pd.DataFrame(
            [{"order_id": id_of[o], "line_no": ln, "item_code": c, "item_kind": kinds.get(c, "product"),
              "item_name": c, "quantity": float(q), "unit_price_fen": p, "line_total_fen": int(p * q)}
             for o, ln, c, q, p in line_rows]
        ),
    )  # fmt: skip
    return [int(id_of[r["order_no"]]) for r in rows]


def add_stock(conn: Connection, rows: list[tuple]) -> None:
    """rows: (warehouse, item_code, quantity[, batch_no])."""
    frame = pd.DataFrame(
        [{"warehouse": r[0], "item_code": r[1], "on_hand_delta": float(r[2]), "batch_no": r[3] if len(r) > 3 else None,
          "kind": "receipt", "reason": "test receipt", "reference": "TEST"} for r in rows]
    )  # fmt: skip
    apply_movements(conn, frame, actor="test")


def add_supplier_prices(conn: Connection, rows: list[tuple]) -> None:
    """rows: (supplier, item_code, unit_price_yuan, lead_time_days[, freight_yuan])."""
    prices = pd.DataFrame(
        [{"supplier_code": r[0], "item_code": r[1], "unit_price_fen": int(r[2] * 100), "lead_time_days": r[3],
          "freight_per_order_fen": int((r[4] if len(r) > 4 else 0) * 100), "min_order_qty": 1.0} for r in rows]
    )  # fmt: skip
    people = pd.DataFrame({"code": sorted(set(prices["supplier_code"]))})
    people["name"] = people["code"]
    people["active"] = True
    upsert_supplier_prices(conn, people, prices)


# A fixed moment: Friday 2026-11-27 10:00 in Chongqing (before the 16:00 cut-off: dispatch today).
NOW = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)
TODAY = date(2026, 11, 27)
