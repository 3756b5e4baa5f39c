"""The KPIs' inputs (E2) in a few whole-store queries: one row of facts per order received in the window (its
milestones from the event log, its carrier and dates from the shipment), incidents, receivables, payment lines,
complaints and survey scores. The KPI definitions themselves are pure functions in ``tasks/risk/kpi.py``."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
from sqlalchemy import Connection, String, and_, case, func, select, type_coerce

from yidi.bulk import columns_frame, result_frame
from yidi.schema import order_events, orders, shipments
from yidi.schema_aftersales import feedback_items, surveys
from yidi.schema_settlement import payment_lines, payment_matches, receivables
from yidi.schema_tracking import tracking_incidents

FACT_COLUMNS = ["order_id", "channel", "province", "carrier", "received_at", "review_due_at", "order_total_fen",
                "decided_at", "manual_decided_at", "approved_at", "shipped_at", "delivered_at", "returned",
                "exception", "promised_date", "expected_date", "refunded"]  # fmt: skip


def _first(to_state, *, manual: bool = False):
    condition = order_events.c.to_state.in_(to_state) if isinstance(to_state, tuple) else (
        order_events.c.to_state == to_state)  # fmt: skip
    if manual:
        condition = and_(condition, order_events.c.from_state == "pending_review")
    return func.min(case((condition, order_events.c.occurred_at)))


MILESTONES = ["decided_at", "manual_decided_at", "approved_at", "shipped_at", "delivered_at"]


def load_facts(conn: Connection, start: datetime, end: datetime) -> pd.DataFrame:
    """``FACT_COLUMNS`` for every order received in [start, end).

    Four plain queries joined here on the order id, not one SQL join: SQLite would build a temporary index on each
    grouped subquery to join it, which cost more than the grouping itself. The events are read for the id range of
    the window's orders (ids grow with arrival, so the range is the window or little more; the left join below
    keeps only the window's orders), so the grouping does not look every event's order up."""
    window = and_(orders.c.received_at >= start, orders.c.received_at < end)
    # SQLite keeps times as text: read them as text and parse whole columns at once (not one value at a time)
    raw = (lambda c, name: type_coerce(c, String).label(name)) if conn.dialect.name == "sqlite" else (
        lambda c, name: c.label(name))  # fmt: skip
    facts = columns_frame(conn, select(
        orders.c.id.label("order_id"), orders.c.channel, orders.c.ship_province.label("province"),
        raw(orders.c.received_at, "received_at"), raw(orders.c.review_due_at, "review_due_at"),
        orders.c.order_total_fen, raw(orders.c.promised_date, "promised_date")).where(window).order_by(orders.c.id))
    if facts.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in FACT_COLUMNS})
    first, last = int(facts["order_id"].iloc[0]), int(facts["order_id"].iloc[-1])
    in_range = (lambda c: c.between(first, last))  # noqa: E731
    milestones = columns_frame(conn, select(
        order_events.c.order_id,
        raw(_first(("approved", "rejected", "auto_rejected")), "decided_at"),
        raw(_first(("approved", "rejected"), manual=True), "manual_decided_at"),
        raw(_first("approved"), "approved_at"),
        raw(_first("shipped"), "shipped_at"),
        raw(_first("delivered"), "delivered_at"),
        func.max(case((order_events.c.to_state == "returned", 1), else_=0)).label("returned"),
        func.max(case((order_events.c.to_state == "exception", 1), else_=0)).label("exception"),
    ).where(order_events.c.kind == "state", in_range(order_events.c.order_id)).group_by(order_events.c.order_id))
    shipped = columns_frame(conn, select(
        shipments.c.order_id, func.min(shipments.c.carrier).label("carrier"),
        raw(func.max(shipments.c.expected_delivery_date), "expected_date"),
    ).where(in_range(shipments.c.order_id)).group_by(shipments.c.order_id))
    refunded = columns_frame(conn, select(payment_matches.c.order_id).where(
        payment_matches.c.amount_fen < 0, in_range(payment_matches.c.order_id)).distinct())
    facts = facts.merge(milestones, on="order_id", how="left").merge(shipped, on="order_id", how="left")
    facts["returned"] = facts["returned"].fillna(0).astype("int64")
    facts["exception"] = facts["exception"].fillna(0).astype("int64")
    facts["refunded"] = facts["order_id"].isin(refunded["order_id"]).astype("int64")
    for column in ("received_at", "review_due_at", *MILESTONES):
        facts[column] = pd.to_datetime(facts[column], utc=True, format="ISO8601")
    for column in ("promised_date", "expected_date"):
        facts[column] = pd.to_datetime(facts[column])
    return facts[FACT_COLUMNS]


def load_incidents(conn: Connection, start: datetime, end: datetime) -> pd.DataFrame:
    """Incidents on orders received in the window: ``order_id``, ``incident_type``."""
    return result_frame(conn.execute(
        select(tracking_incidents.c.order_id, tracking_incidents.c.incident_type)
        .join(orders, orders.c.id == tracking_incidents.c.order_id)
        .where(orders.c.received_at >= start, orders.c.received_at < end).distinct()))  # fmt: skip


def load_money(conn: Connection, start_day, end_day, start: datetime, end: datetime) -> dict:
    """Receivables due in the period (collection rate), outstanding at its end (DSO) and payment lines in it."""
    due = conn.execute(select(func.coalesce(func.sum(receivables.c.amount_fen), 0),
                              func.coalesce(func.sum(receivables.c.paid_fen), 0))
                       .where(receivables.c.due_date >= start_day, receivables.c.due_date < end_day,
                              receivables.c.status != "void")).one()  # fmt: skip
    outstanding = conn.execute(select(func.coalesce(func.sum(receivables.c.outstanding_fen), 0))
                               .where(receivables.c.status == "open")).scalar_one()  # fmt: skip
    sales = conn.execute(select(func.coalesce(func.sum(orders.c.order_total_fen), 0))
                         .where(orders.c.received_at >= start, orders.c.received_at < end,
                                orders.c.state.not_in(("auto_rejected", "rejected", "cancelled")))).scalar_one()  # fmt: skip
    lines = conn.execute(select(func.count(), func.coalesce(func.sum(case((payment_lines.c.match_status == "matched", 1),
                                                                         else_=0)), 0))
                         .where(payment_lines.c.txn_time >= start, payment_lines.c.txn_time < end,
                                payment_lines.c.match_status != "ignored")).one()  # fmt: skip
    return {"due_fen": int(due[0]), "paid_fen": int(due[1]), "outstanding_fen": int(outstanding),
            "sales_fen": int(sales), "payment_lines": int(lines[0]), "matched_lines": int(lines[1])}  # fmt: skip


def load_feedback(conn: Connection, start: datetime, end: datetime) -> dict:
    """Complaints and their response/resolution hours, and survey scores, received in the window (after-sales)."""
    complaints = result_frame(conn.execute(
        select(feedback_items.c.received_at, feedback_items.c.first_responded_at, feedback_items.c.resolved_at)
        .where(feedback_items.c.category == "complaint", feedback_items.c.received_at >= start,
               feedback_items.c.received_at < end)))  # fmt: skip
    scores = result_frame(conn.execute(select(surveys.c.score).where(
        surveys.c.score.is_not(None), surveys.c.replied_at >= start, surveys.c.replied_at < end)))  # fmt: skip
    return {
        "complaints": complaints,
        "scores": scores["score"].astype("float64") if not scores.empty else pd.Series(dtype="float64"),
    }
