"""The carrier scorecard's SQL (K3): shipments of a window with their incident and claim counts in one grouped
query each, and the scorecard rows written per (carrier, province, month) for fulfilment's carrier choice."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
from sqlalchemy import Connection, and_, case, func, select

from tasks.risk.carriers import SHIPMENT_COLUMNS
from tasks.risk.periods import business_dates
from yidi.bulk import insert_rows, read_frame, result_frame
from yidi.schema import orders, shipments
from yidi.schema_risk import carrier_route_scores
from yidi.schema_tracking import liability_claims, tracking_incidents

SCORE_COLUMNS = ["carrier", "province", "month", "shipments", "delivered", "on_time_rate", "damage_rate", "loss_rate",
                 "refusal_rate", "return_rate", "claims_filed", "claims_paid", "claims_overdue", "avg_transit_days",
                 "avg_quoted_days", "uninsured_high_value", "status", "reasons"]  # fmt: skip


def load_shipments(conn: Connection, start: datetime, end: datetime, as_of: datetime) -> pd.DataFrame:
    """``SHIPMENT_COLUMNS`` for shipments that left in [start, end)."""
    kinds = select(
        tracking_incidents.c.shipment_id,
        *[func.max(case((tracking_incidents.c.incident_type == kind, 1), else_=0)).label(kind)
          for kind in ("damaged", "lost", "refused", "returned")],
    ).group_by(tracking_incidents.c.shipment_id).subquery()  # fmt: skip
    claims = select(
        liability_claims.c.shipment_id,
        func.count().label("claims_filed"),
        func.sum(case((liability_claims.c.status == "settled", 1), else_=0)).label("claims_paid"),
        func.sum(case((and_(liability_claims.c.status.in_(("open", "filed")), liability_claims.c.due_at < as_of), 1),
                      else_=0)).label("claims_overdue"),
    ).group_by(liability_claims.c.shipment_id).subquery()  # fmt: skip
    stmt = (
        select(shipments.c.id.label("shipment_id"), shipments.c.order_id, shipments.c.carrier,
               orders.c.ship_province.label("province"), shipments.c.shipped_at, shipments.c.delivered_at,
               shipments.c.expected_delivery_date.label("expected_date"), shipments.c.declared_value_fen,
               shipments.c.insured,
               *[func.coalesce(kinds.c[k], 0).label(k) for k in ("damaged", "lost", "refused", "returned")],
               *[func.coalesce(claims.c[k], 0).label(k) for k in ("claims_filed", "claims_paid", "claims_overdue")])
        .select_from(shipments.join(orders, orders.c.id == shipments.c.order_id)
                     .outerjoin(kinds, kinds.c.shipment_id == shipments.c.id)
                     .outerjoin(claims, claims.c.shipment_id == shipments.c.id))
        .where(shipments.c.shipped_at >= start, shipments.c.shipped_at < end)
    )  # fmt: skip
    frame = result_frame(conn.execute(stmt))
    if frame.empty:
        return pd.DataFrame(columns=SHIPMENT_COLUMNS)
    shipped_day = business_dates(frame["shipped_at"])
    frame["month"] = [f"{d:%Y-%m}" for d in shipped_day]
    frame["shipped_day"] = pd.to_datetime(shipped_day)
    delivered = frame["delivered_at"].notna()
    frame["delivered_day"] = pd.NaT
    if delivered.any():
        frame.loc[delivered, "delivered_day"] = pd.to_datetime(
            business_dates(frame.loc[delivered, "delivered_at"])
        )
    frame["delivered_day"] = pd.to_datetime(frame["delivered_day"])
    frame["expected_date"] = pd.to_datetime(frame["expected_date"])
    frame["province"] = frame["province"].fillna("(unknown)")
    return frame[SHIPMENT_COLUMNS]


def write_scores(conn: Connection, scores: pd.DataFrame, now: datetime) -> int:
    if scores.empty:
        return 0
    rows = scores[SCORE_COLUMNS].assign(computed_at=now)
    return insert_rows(conn, carrier_route_scores, rows, on_conflict=["carrier", "province", "month"],
                       update_columns=[c for c in SCORE_COLUMNS if c not in ("carrier", "province", "month")]
                       + ["computed_at"])  # fmt: skip


def stored_scores(conn: Connection, month: str | None = None) -> pd.DataFrame:
    stmt = select(*[carrier_route_scores.c[c] for c in SCORE_COLUMNS]).order_by(
        carrier_route_scores.c.month, carrier_route_scores.c.carrier, carrier_route_scores.c.province
    )
    if month:
        stmt = stmt.where(carrier_route_scores.c.month == month)
    return read_frame(conn, stmt)
