"""Test data for the channels tests: channel orders with their landed records, parcels with waybills."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime

import pandas as pd
from sqlalchemy import Connection

from yidi.bulk import ids_for_keys, insert_rows
from yidi.schema import intake_records, order_lines, orders, shipments
from yidi.schema_fulfilment import allocations, shipment_requests

_n = itertools.count(1)
PAID = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)


def add_channel_order(conn: Connection, channel: str, channel_order_id: str, lines: list[tuple[str, int]], *,
                      raw: dict | None = None, state: str = "shipped", paid_at: datetime = PAID,
                      phone: str = "13812348000") -> int:
    """One paid order of ``channel`` with its lines (item_code, qty) and, when given, its landed record."""
    raw_id = None
    if raw is not None:
        content = json.dumps(raw, ensure_ascii=False)
        insert_rows(conn, intake_records, pd.DataFrame([{"channel": channel, "source_key": channel_order_id,
                                                         "content_hash": f"h{next(_n)}", "content": content}]))
        raw_id = int(conn.exec_driver_sql("SELECT max(id) FROM intake_records").scalar())
    number = f"YDC{next(_n):08d}"
    insert_rows(conn, orders, pd.DataFrame([{
        "order_no": number, "channel": channel, "channel_order_id": channel_order_id, "customer_name": "张三",
        "customer_phone": phone, "ship_province": "重庆市", "ship_city": "重庆市", "ship_district": "渝中区",
        "ship_detail": "解放碑1号", "state": state, "payment_state": "paid", "order_time": paid_at,
        "goods_total_fen": 10000, "order_total_fen": 10000, "raw_record_id": raw_id}]))  # fmt: skip
    order_id = int(ids_for_keys(conn, orders, pd.DataFrame({"order_no": [number]}))["id"].iloc[0])
    insert_rows(conn, order_lines, pd.DataFrame([
        {"order_id": order_id, "line_no": n, "item_code": code, "quantity": float(qty), "unit_price_fen": 5000,
         "line_total_fen": 5000 * qty} for n, (code, qty) in enumerate(lines, start=1)]))  # fmt: skip
    return order_id


def add_parcel(conn: Connection, order_id: int, line_nos: list[int], *, carrier: str = "zhongtong",
               waybill_no: str | None = None, warehouse: str = "CQ") -> str:
    """A planned parcel (shipment request) carrying the given lines; with a waybill, its shipment too."""
    n = next(_n)
    shipment_no = f"SH{n:08d}"
    request = {"shipment_no": shipment_no, "idempotency_key": f"key-{shipment_no}", "order_id": order_id,
               "warehouse": warehouse, "carrier": carrier, "status": "created" if waybill_no else "pending",
               "waybill_no": waybill_no}  # fmt: skip
    if waybill_no:
        insert_rows(conn, shipments, pd.DataFrame([{"shipment_no": shipment_no, "order_id": order_id,
                                                    "warehouse": warehouse, "carrier": carrier,
                                                    "waybill_no": waybill_no, "idempotency_key": f"key-{shipment_no}",
                                                    "shipped_at": PAID}]))  # fmt: skip
        request["shipment_id"] = int(ids_for_keys(conn, shipments, pd.DataFrame({"shipment_no": [shipment_no]}))
                                     ["id"].iloc[0])
    insert_rows(conn, shipment_requests, pd.DataFrame([request]))
    rid = int(ids_for_keys(conn, shipment_requests, pd.DataFrame({"shipment_no": [shipment_no]}))["id"].iloc[0])
    line_ids = dict(conn.exec_driver_sql(f"SELECT line_no, id FROM order_lines WHERE order_id = {order_id}").all())
    codes = dict(conn.exec_driver_sql(f"SELECT line_no, item_code FROM order_lines WHERE order_id = {order_id}").all())
    insert_rows(conn, allocations, pd.DataFrame([
        {"order_id": order_id, "order_line_id": line_ids[n], "item_code": codes[n], "warehouse": warehouse,
         "quantity": 1.0, "status": "shipped" if waybill_no else "reserved", "shipment_request_id": rid}
        for n in line_nos]))  # fmt: skip
    return shipment_no


def give_waybill(conn: Connection, shipment_no: str, order_id: int, waybill_no: str, carrier: str = "zhongtong") -> None:
    """What fulfilment's waybill step does to a pending parcel (the parts the channels area reads)."""
    insert_rows(conn, shipments, pd.DataFrame([{"shipment_no": shipment_no, "order_id": order_id, "warehouse": "CQ",
                                                "carrier": carrier, "waybill_no": waybill_no,
                                                "idempotency_key": f"key-{shipment_no}", "shipped_at": PAID}]))
    sid = int(ids_for_keys(conn, shipments, pd.DataFrame({"shipment_no": [shipment_no]}))["id"].iloc[0])
    conn.exec_driver_sql(f"UPDATE shipment_requests SET status = 'created', shipment_id = {sid}, "
                         f"waybill_no = '{waybill_no}' WHERE shipment_no = '{shipment_no}'")


def top_trade(tid: int, oids: list[int]) -> dict:
    """A trade as the TOP stand-in serves it (the landed record's shape)."""
    return {"tid": tid, "status": "WAIT_SELLER_SEND_GOODS", "payment": "100.00", "created": "2026-12-01 10:00:00",
            "modified": "2026-12-01 10:00:00", "receiver_name": "张三",
            "orders": {"order": [{"oid": oid, "num": 1, "price": "50.00", "payment": "50.00",
                                  "outer_sku_id": f"SKU-{i}", "title": f"商品{i}"}
                                 for i, oid in enumerate(oids, start=1)]}}  # fmt: skip
