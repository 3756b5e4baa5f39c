"""The legal rules' inputs (K4) in grouped whole-store queries, and the scheduled anonymisation of personal
fields past the retention period (PIPL art. 19), which keeps the event trail and records an event per order."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
from sqlalchemy import Connection, and_, case, exists, func, or_, select, update

from yidi.bulk import chunked, result_frame
from yidi.lifecycle import record_events
from yidi.schema import order_events, orders, shipments
from yidi.schema_aftersales import aftersales_cases, refund_requests, returned_goods
from yidi.schema_settlement import receivables
from yidi.schema_tracking import liability_claims, tracking_incidents

PERSONAL_FIELDS = ("customer_name", "customer_phone", "customer_email", "ship_detail", "buyer_note")
ANONYMISED = {"customer_name": "（已匿名）", "customer_phone": None, "customer_email": None, "ship_detail": None,
              "buyer_note": None}  # fmt: skip
FINISHED_STATES = ("closed", "settled", "cancelled", "rejected", "auto_rejected")


def load_returns(conn: Connection, start: datetime, end: datetime) -> pd.DataFrame:
    back = select(returned_goods.c.order_id, func.min(returned_goods.c.inspected_at).label("goods_back_at")) \
        .group_by(returned_goods.c.order_id).subquery()  # fmt: skip
    refunded = select(refund_requests.c.order_id,
                      func.min(func.coalesce(refund_requests.c.sent_at, refund_requests.c.created_at)).label("refunded_at")) \
        .where(refund_requests.c.status.in_(("succeeded", "instructed"))).group_by(refund_requests.c.order_id).subquery()  # fmt: skip
    return result_frame(conn.execute(
        select(back.c.order_id, back.c.goods_back_at, refunded.c.refunded_at)
        .select_from(back.outerjoin(refunded, refunded.c.order_id == back.c.order_id))
        .where(back.c.goods_back_at >= start, back.c.goods_back_at < end)))  # fmt: skip


def load_deliveries(conn: Connection, start: datetime, end: datetime) -> pd.DataFrame:
    """Orders received in the window with a promised date: promised_date, delivered_at, shipped."""
    shipped = select(shipments.c.order_id, func.min(shipments.c.delivered_at).label("delivered_at")) \
        .group_by(shipments.c.order_id).subquery()  # fmt: skip
    # delivered: the order's first move to delivered (as the KPIs count it), else the shipment's own record
    moved = select(order_events.c.order_id, func.min(order_events.c.occurred_at).label("at")) \
        .where(order_events.c.kind == "state", order_events.c.to_state == "delivered") \
        .group_by(order_events.c.order_id).subquery()  # fmt: skip
    return result_frame(conn.execute(
        select(orders.c.id.label("order_id"), orders.c.promised_date,
               func.coalesce(moved.c.at, shipped.c.delivered_at).label("delivered_at"),
               case((shipped.c.order_id.is_not(None), 1), else_=0).label("shipped"))
        .select_from(orders.outerjoin(shipped, shipped.c.order_id == orders.c.id)
                     .outerjoin(moved, moved.c.order_id == orders.c.id))
        .where(orders.c.received_at >= start, orders.c.received_at < end, orders.c.promised_date.is_not(None),
               orders.c.state.not_in(("cancelled", "rejected", "auto_rejected")))))  # fmt: skip


def load_transit_incidents(conn: Connection, start: datetime, end: datetime) -> pd.DataFrame:
    """Lost and damaged incidents opened in the window, with whether a case and a claim exist."""
    has_case = exists().where(aftersales_cases.c.order_id == tracking_incidents.c.order_id)
    has_claim = exists().where(liability_claims.c.incident_id == tracking_incidents.c.id)
    return result_frame(conn.execute(
        select(tracking_incidents.c.order_id, tracking_incidents.c.incident_type, tracking_incidents.c.opened_at,
               case((has_case, 1), else_=0).label("has_case"), case((has_claim, 1), else_=0).label("has_claim"))
        .where(tracking_incidents.c.incident_type.in_(("lost", "damaged")), tracking_incidents.c.opened_at >= start,
               tracking_incidents.c.opened_at < end)))  # fmt: skip


def load_paid(conn: Connection, start: datetime, end: datetime) -> pd.DataFrame:
    """Paid or delivered orders received in the window: paid_since (delivery, else receipt) and has_invoice
    (an invoice number on its receivable, or an ``invoice`` event)."""
    delivered = select(order_events.c.order_id, func.min(order_events.c.occurred_at).label("at")) \
        .where(order_events.c.kind == "state", order_events.c.to_state == "delivered") \
        .group_by(order_events.c.order_id).subquery()  # fmt: skip
    invoiced = or_(
        exists().where(receivables.c.order_id == orders.c.id, receivables.c.invoice_no.is_not(None)),
        exists().where(order_events.c.order_id == orders.c.id, order_events.c.kind == "invoice"),
    )
    return result_frame(conn.execute(
        select(orders.c.id.label("order_id"), func.coalesce(delivered.c.at, orders.c.received_at).label("paid_since"),
               case((invoiced, 1), else_=0).label("has_invoice"))
        .select_from(orders.outerjoin(delivered, delivered.c.order_id == orders.c.id))
        .where(orders.c.received_at >= start, orders.c.received_at < end,
               or_(orders.c.payment_state == "paid", delivered.c.at.is_not(None)))))  # fmt: skip


def _finished() -> tuple:
    last = select(order_events.c.order_id, func.max(order_events.c.occurred_at).label("at")) \
        .group_by(order_events.c.order_id).subquery()  # fmt: skip
    personal = or_(
        and_(orders.c.customer_name.is_not(None), orders.c.customer_name != ANONYMISED["customer_name"]),
        *[orders.c[f].is_not(None) for f in PERSONAL_FIELDS if ANONYMISED[f] is None],
    )
    finished_at = func.coalesce(last.c.at, orders.c.updated_at, orders.c.received_at)
    return last, personal, finished_at


def load_finished(conn: Connection, before: datetime) -> pd.DataFrame:
    """Finished orders whose last event is older than ``before`` and that still hold personal fields."""
    last, personal, finished_at = _finished()
    return result_frame(conn.execute(
        select(orders.c.id.label("order_id"), finished_at.label("finished_at"),
               case((personal, 1), else_=0).label("has_personal"))
        .select_from(orders.outerjoin(last, last.c.order_id == orders.c.id))
        .where(orders.c.state.in_(FINISHED_STATES), finished_at < before, personal)))  # fmt: skip


def anonymise(conn: Connection, now: datetime, retention_days: int, actor: str) -> list[int]:
    """Blank the personal fields of finished orders past the retention period; one event per order (the event
    trail itself is kept: it holds no personal fields)."""
    due = load_finished(conn, now - timedelta(days=retention_days))
    ids = [int(i) for i in due["order_id"]]
    for chunk in chunked(ids):
        conn.execute(update(orders).where(orders.c.id.in_(chunk)).values(**ANONYMISED, updated_at=now))
    if ids:
        record_events(conn, pd.DataFrame({"order_id": ids, "kind": "anonymised", "occurred_at": now,
                                          "reason": f"PIPL art. 19: personal fields removed after {retention_days} days",
                                          "details": [{"fields": list(PERSONAL_FIELDS)}] * len(ids)}), actor=actor)  # fmt: skip
    return ids
