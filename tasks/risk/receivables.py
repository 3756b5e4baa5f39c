"""Receivables risk (K2): exposure, concentration of the overdue amount in the top customers, ageing now and at
the end of each recent period, and a collection forecast from the due dates of what is still open.

One query reads the open items of the settlement ledger; the rest is pure arithmetic on frames. The ageing trend
is exact: the caller hands in the ledger as it stood at the end of each period (settlement computes it from the
store's history: orders placed, shipments and deliveries made and payments dated up to then), each aged at its
own period end.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
from sqlalchemy import Connection, select

from yidi.bulk import result_frame
from yidi.schema import customers
from yidi.schema_settlement import receivables

AGE_BUCKETS = ["not due", "1-30", "31-60", "61-90", "over 90"]


def load_open(conn: Connection) -> pd.DataFrame:
    return result_frame(conn.execute(
        select(receivables.c.customer_id, receivables.c.order_id, receivables.c.due_date, receivables.c.amount_fen,
               receivables.c.outstanding_fen, customers.c.code, customers.c.name)
        .outerjoin(customers, customers.c.id == receivables.c.customer_id)
        .where(receivables.c.status == "open", receivables.c.outstanding_fen > 0)))  # fmt: skip


def ageing(open_items: pd.DataFrame, today: date) -> pd.Series:
    """Outstanding fen per age bucket (days past due) at ``today``."""
    if open_items.empty:
        return pd.Series(0, index=AGE_BUCKETS, dtype="int64")
    due = pd.to_datetime(open_items["due_date"])
    days = (pd.Timestamp(today) - due).dt.days
    bucket = pd.cut(days.fillna(-1), [-np.inf, 0, 30, 60, 90, np.inf], labels=AGE_BUCKETS, right=True)
    return (
        open_items["outstanding_fen"].groupby(bucket, observed=False).sum().reindex(AGE_BUCKETS, fill_value=0)
    )


def open_at(ledger: pd.DataFrame) -> pd.DataFrame:
    """The open items of a ledger (what is still owed)."""
    if ledger.empty:
        return ledger
    return ledger[(ledger["status"] == "open") & (ledger["outstanding_fen"] > 0)]


def assess(open_items: pd.DataFrame, today: date, top_n: int, ledgers_at: dict[date, pd.DataFrame]) -> dict:
    """Headline figures, the top customers by overdue, ageing now and at each period end, the forecast.
    ``ledgers_at``: period end -> the ledger (``due_date``, ``outstanding_fen``, ``status``) as of that day's end."""
    due = (
        pd.to_datetime(open_items["due_date"]) if not open_items.empty else pd.Series(dtype="datetime64[ns]")
    )
    overdue_mask = (
        (due < pd.Timestamp(today)).fillna(False) if not open_items.empty else pd.Series(dtype=bool)
    )
    overdue = open_items[overdue_mask] if not open_items.empty else open_items
    exposure = int(open_items["outstanding_fen"].sum()) if not open_items.empty else 0
    overdue_fen = int(overdue["outstanding_fen"].sum()) if not overdue.empty else 0
    if overdue.empty:
        top = pd.DataFrame(columns=["code", "name", "overdue_fen", "share_pct"])
    else:
        by = overdue.groupby(["customer_id", "code", "name"], dropna=False)["outstanding_fen"].sum()
        top = (
            by.sort_values(ascending=False)
            .head(top_n)
            .reset_index()
            .rename(columns={"outstanding_fen": "overdue_fen"})
        )
        top["share_pct"] = (top["overdue_fen"] / overdue_fen * 100).round(1)
        top = top[["code", "name", "overdue_fen", "share_pct"]]
    trend = pd.DataFrame({str(end): ageing(open_at(ledger), end) for end, ledger in ledgers_at.items()},
                         index=AGE_BUCKETS)
    weeks = []
    for week in range(4):
        lo, hi = (
            pd.Timestamp(today + timedelta(days=7 * week)),
            pd.Timestamp(today + timedelta(days=7 * (week + 1))),
        )
        amount = (
            open_items.loc[((due >= lo) & (due < hi)).fillna(False), "outstanding_fen"].sum()
            if len(due)
            else 0
        )
        weeks.append({"week_from": lo.date().isoformat(), "due_fen": int(amount)})
    return {
        "exposure_fen": exposure,
        "overdue_fen": overdue_fen,
        "top_share_pct": float(top["share_pct"].sum()) if len(top) else 0.0,
        "top": top,
        "ageing": ageing(open_items, today),
        "ageing_trend": trend,
        "forecast": pd.DataFrame(weeks),
    }
