"""Small hand-made stores for the risk, KPI and audit tests: customers, orders with their events, receivables,
dunning steps, cases, shipments and incidents, written straight into the tables (values chosen by hand)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pandas as pd
from sqlalchemy import select

from yidi.bulk import insert_rows
from yidi.schema import customers, order_events, order_lines, orders, shipments
from yidi.schema_settlement import (
    dunning_actions,
    payment_lines,
    payment_matches,
    receivables,
    settlement_cases,
    statement_files,
)
from yidi.schema_tracking import liability_claims, tracking_incidents

AS_OF = datetime(2026, 11, 30, 4, 0, tzinfo=UTC)  # 2026-11-30 12:00 in Chongqing
_serial = itertools.count(1)


def add_customer(conn, code: str, **values) -> int:
    row = {"code": code, "name": f"客户{code}", "phone": "13800000000", **values}
    insert_rows(conn, customers, pd.DataFrame([row]))
    return conn.execute(select(customers.c.id).where(customers.c.code == code)).scalar_one()


def add_order(conn, customer_id: int | None, *, received_at: datetime, state: str = "settled",
              events: list[tuple[str, datetime]] = (), **values) -> int:
    """An order and its state events ``(to_state, when)``, in the given order."""
    no = f"YD-K-{next(_serial):05d}"
    row = {"order_no": no, "channel": "website", "channel_order_id": no, "customer_id": customer_id,
           "customer_name": "王小明", "customer_phone": "13912345678", "customer_email": "wxm@example.com",
           "ship_province": "四川省", "ship_city": "成都市", "ship_district": "武侯区", "ship_detail": "人民南路1号",
           "region": "remote", "payment_method": "alipay", "goods_total_fen": 10_000, "order_total_fen": 10_000,
           "state": state, "payment_state": "paid", "order_time": received_at, "received_at": received_at,
           **values}  # fmt: skip
    insert_rows(conn, orders, pd.DataFrame([row]))
    oid = conn.execute(select(orders.c.id).where(orders.c.order_no == no)).scalar_one()
    insert_rows(conn, order_lines, pd.DataFrame([{"order_id": oid, "line_no": 1, "item_code": "SKU-A",
                                                  "item_name": "工业风扇", "quantity": 1.0,
                                                  "unit_price_fen": row["goods_total_fen"],
                                                  "line_total_fen": row["goods_total_fen"]}]))  # fmt: skip
    previous = "received"
    rows = []
    for to_state, when in events:
        rows.append({"order_id": oid, "occurred_at": when, "actor": "test", "kind": "state",
                     "from_state": previous, "to_state": to_state, "reason": "test"})  # fmt: skip
        previous = to_state
    if rows:
        insert_rows(conn, order_events, pd.DataFrame(rows))
    return oid


def add_receivable(conn, order_id: int, customer_id: int, amount_fen: int, outstanding_fen: int, due) -> None:
    insert_rows(conn, receivables, pd.DataFrame([{
        "order_id": order_id, "customer_id": customer_id, "payment_terms": "net", "due_date": due,
        "amount_fen": amount_fen, "paid_fen": amount_fen - outstanding_fen, "outstanding_fen": outstanding_fen,
        "status": "open" if outstanding_fen else "paid", "updated_at": AS_OF}]))  # fmt: skip


def add_dunning(conn, customer_id: int, order_id: int, step_no: int, when: datetime) -> None:
    insert_rows(conn, dunning_actions, pd.DataFrame([{
        "dedupe_key": f"d-{customer_id}-{step_no}-{next(_serial)}", "party_key": f"customer:{customer_id}",
        "customer_id": customer_id, "order_id": order_id, "step_no": step_no, "step_name": f"step{step_no}",
        "overdue_fen": 100, "days_overdue": 10, "oldest_due_date": when.date(), "taken_at": when}]))  # fmt: skip


def add_case(conn, customer_id: int, order_id: int, case_class: str, when: datetime) -> None:
    insert_rows(conn, settlement_cases, pd.DataFrame([{
        "case_key": f"{case_class}:{order_id}:{next(_serial)}", "case_class": case_class, "order_id": order_id,
        "customer_id": customer_id, "summary": case_class, "opened_at": when, "updated_at": when}]))  # fmt: skip


def add_shipment(conn, order_id: int, carrier: str = "zhongtong", **values) -> int:
    no = f"SH-{next(_serial):05d}"
    insert_rows(conn, shipments, pd.DataFrame([{"shipment_no": no, "order_id": order_id, "carrier": carrier,
                                                "idempotency_key": no, "waybill_no": f"W{no}", **values}]))
    return conn.execute(select(shipments.c.id).where(shipments.c.shipment_no == no)).scalar_one()


def add_incident(conn, shipment_id: int, order_id: int, kind: str, when: datetime, carrier: str = "zhongtong") -> int:
    insert_rows(conn, tracking_incidents, pd.DataFrame([{
        "shipment_id": shipment_id, "order_id": order_id, "incident_type": kind, "carrier": carrier,
        "owner": "ops", "opened_at": when, "due_at": when + timedelta(days=2)}]))  # fmt: skip
    return conn.execute(select(tracking_incidents.c.id).where(tracking_incidents.c.shipment_id == shipment_id,
                                                              tracking_incidents.c.incident_type == kind)).scalar_one()


def add_claim(conn, incident_id: int, shipment_id: int, order_id: int, status: str, when: datetime,
              due: datetime, carrier: str = "zhongtong") -> None:
    insert_rows(conn, liability_claims, pd.DataFrame([{
        "incident_id": incident_id, "shipment_id": shipment_id, "order_id": order_id, "carrier": carrier,
        "claim_type": "damage", "status": status, "opened_at": when, "due_at": due}]))  # fmt: skip


def add_refund(conn, order_id: int, amount_fen: int, when: datetime) -> None:
    add_payment(conn, order_id, -amount_fen, when)


def add_payment(conn, order_id: int, amount_fen: int, when: datetime) -> None:
    """A statement line of ``amount_fen`` (negative: a refund) dated ``when``, matched to the order."""
    key = next(_serial)
    insert_rows(conn, statement_files, pd.DataFrame([{"file_hash": f"h{key}", "file_name": f"f{key}.csv",
                                                      "status": "ingested", "received_at": when}]))
    file_id = conn.execute(select(statement_files.c.id).where(statement_files.c.file_hash == f"h{key}")).scalar_one()
    insert_rows(conn, payment_lines, pd.DataFrame([{"source": "alipay", "line_key": f"L{key}", "file_id": file_id,
                                                    "line_no": 1, "kind": "refund" if amount_fen < 0 else "payment",
                                                    "amount_fen": amount_fen,
                                                    "txn_time": when, "match_status": "matched",
                                                    "ingested_at": when}]))  # fmt: skip
    line_id = conn.execute(select(payment_lines.c.id).where(payment_lines.c.line_key == f"L{key}")).scalar_one()
    insert_rows(conn, payment_matches, pd.DataFrame([{"payment_line_id": line_id, "order_id": order_id,
                                                      "amount_fen": amount_fen, "rule": "test", "score": 1.0,
                                                      "matched_at": when}]))  # fmt: skip
