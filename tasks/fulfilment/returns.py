"""Returned goods into the stock ledger (A3, F3): after-sales records what came back in ``returned_goods`` (the
core table where the two areas meet); this step moves it into stock once. Good goods become sellable again;
damaged goods come in quarantined (counted on hand, never available); scrapped goods never enter stock. Each row
is stamped ``applied_at`` in the same transaction as its movement, so a re-run moves nothing twice.

``restock_intercepted`` does the same for intercepted parcels back at the warehouse (issue 18): tracking records
the outcome in ``carrier_interceptions``, the table where the two areas meet.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd
from sqlalchemy import Connection, select, update

from tasks.fulfilment.stock import apply_movements
from yidi.bulk import read_frame
from yidi.schema_aftersales import returned_goods
from yidi.schema_fulfilment import allocations, shipment_requests
from yidi.schema_tracking import carrier_interceptions


def restock_returns(conn: Connection, now: datetime, *, actor: str | None = None) -> dict:
    """Apply every returned-goods row not yet applied; returns how many units went where."""
    todo = read_frame(conn, select(returned_goods).where(returned_goods.c.applied_at.is_(None)))
    if todo.empty:
        return {"restocked": 0, "quarantined": 0, "scrapped": 0}
    moving = todo[todo["disposition"] != "scrap"]
    quarantine = (moving["disposition"] == "quarantine").to_numpy()
    movements = pd.DataFrame({
        "warehouse": moving["warehouse"], "item_code": moving["item_code"], "kind": "return",
        "on_hand_delta": moving["quantity"].astype(float),
        "quarantined_delta": moving["quantity"].astype(float).where(quarantine, 0.0),
        "reason": [f"售后退回{'（隔离：' + (r or '损坏') + '）' if q else ''}"
                   for r, q in zip(moving["reason"], quarantine, strict=True)],
        "order_id": moving["order_id"], "reference": [f"return:{c}" for c in moving["case_id"]],
    })  # fmt: skip
    apply_movements(conn, movements, actor=actor, now=now)
    conn.execute(update(returned_goods).where(returned_goods.c.id.in_(todo["id"].astype(int).tolist()))
                 .values(applied_at=now))  # fmt: skip
    by = todo.groupby("disposition")["quantity"].sum()
    return {"restocked": float(by.get("restock", 0)), "quarantined": float(by.get("quarantine", 0)),
            "scrapped": float(by.get("scrap", 0))}  # fmt: skip


def restock_intercepted(conn: Connection, now: datetime, *, actor: str | None = None) -> dict:
    """Goods of intercepted parcels back at the warehouse (issue 18: tracking records ``outcome = 'returned'`` in
    ``carrier_interceptions``) go back into stock once: what the parcel's shipment request issued, to the
    warehouse it left from, sellable again. Each interception is stamped ``restocked_at`` in the same transaction."""
    ci, sr, a = carrier_interceptions.c, shipment_requests.c, allocations.c
    todo = read_frame(conn, select(ci.id, ci.waybill_no, a.order_id, a.warehouse, a.item_code, a.quantity)
                      .join(shipment_requests, sr.shipment_id == ci.shipment_id)
                      .join(allocations, a.shipment_request_id == sr.id)
                      .where(ci.outcome == "returned", ci.restocked_at.is_(None), a.status == "shipped"))  # fmt: skip
    if todo.empty:
        return {"parcels": 0, "units": 0.0}
    apply_movements(conn, pd.DataFrame({
        "warehouse": todo["warehouse"], "item_code": todo["item_code"], "kind": "return",
        "on_hand_delta": todo["quantity"].astype(float), "reason": "拦截退回（包裹未送达，原包装退回）",
        "order_id": todo["order_id"], "reference": [f"intercept:{w}" for w in todo["waybill_no"]],
    }), actor=actor, now=now)  # fmt: skip
    ids = sorted({int(i) for i in todo["id"]})
    conn.execute(update(carrier_interceptions).where(ci.id.in_(ids)).values(restocked_at=now, updated_at=now))
    return {"parcels": len(ids), "units": float(todo["quantity"].sum())}
