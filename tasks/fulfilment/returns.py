"""Returned goods into the stock ledger (A3, F3): after-sales records what came back in ``returned_goods`` (the
core table where the two areas meet); this step moves it into stock once. Good goods become sellable again;
damaged goods come in quarantined (counted on hand, never available); scrapped goods never enter stock. Each row
is stamped ``applied_at`` in the same transaction as its movement, so a re-run moves nothing twice.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd
from sqlalchemy import Connection, select, update

from tasks.fulfilment.stock import apply_movements
from yidi.bulk import read_frame
from yidi.schema_aftersales import returned_goods


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
