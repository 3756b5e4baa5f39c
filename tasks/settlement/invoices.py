"""Invoices issued for orders (《中华人民共和国电子商务法》第十四条: an invoice or other purchase voucher for every
sale). Invoices are issued outside yidi (the tax authority's e-invoice service or the platform); what yidi keeps is
which invoice an order got: the number on the order's receivables (settlement also looks memo tokens up as invoice
numbers) and an ``invoice`` event in its trail, which the legal rule ``ECL14_INVOICE`` reads.

One batch: unknown order numbers are returned, not written; an order that already has the number is left as it is
(recording the same invoice again adds nothing).
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd
from sqlalchemy import Connection, bindparam, select, update

from yidi.bulk import read_in
from yidi.lifecycle import record_events
from yidi.schema import order_events, orders
from yidi.schema_settlement import receivables


def record_invoices(conn: Connection, issued: pd.DataFrame, *, now: datetime, actor: str) -> dict:
    """``issued``: order_no, invoice_no, optional issued_at (aware; default ``now``). Returns recorded (orders
    given an invoice now), already (orders that had it) and unknown (order numbers not in the store)."""
    issued = issued.drop_duplicates("order_no", keep="last").reset_index(drop=True)
    if "issued_at" not in issued:
        issued = issued.assign(issued_at=now)
    known = read_in(conn, lambda k: select(orders.c.order_no, orders.c.id.label("order_id"))
                    .where(orders.c.order_no.in_(k)), issued["order_no"].tolist())  # fmt: skip
    issued = issued.merge(known, on="order_no", how="left")
    unknown = sorted(issued.loc[issued["order_id"].isna(), "order_no"].tolist())
    issued = issued.dropna(subset=["order_id"]).astype({"order_id": "int64"})
    had = read_in(conn, lambda k: select(order_events.c.order_id, order_events.c.reason)
                  .where(order_events.c.order_id.in_(k), order_events.c.kind == "invoice"),
                  issued["order_id"].tolist())  # fmt: skip
    seen = set(zip(had["order_id"], had["reason"], strict=True)) if len(had) else set()
    fresh = issued[[(o, f"invoice {n}") not in seen for o, n in zip(issued["order_id"], issued["invoice_no"],
                                                                    strict=True)]]  # fmt: skip
    if len(fresh):
        conn.execute(update(receivables).where(receivables.c.order_id == bindparam("o"))
                     .values(invoice_no=bindparam("n"), updated_at=now),
                     [{"o": int(o), "n": str(n)} for o, n in zip(fresh["order_id"], fresh["invoice_no"], strict=True)])
        record_events(conn, pd.DataFrame({"order_id": fresh["order_id"], "occurred_at": fresh["issued_at"],
                                          "kind": "invoice", "reason": "invoice " + fresh["invoice_no"].astype(str),
                                          "actor": actor}))  # fmt: skip
    return {"recorded": len(fresh), "already": len(issued) - len(fresh), "unknown": unknown}
