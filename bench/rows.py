"""Parity helpers: compare the rows two sides stored, and say the first difference.

``landed_intake(db)`` reads what an intake put in a SQLite store (orders and their lines) in the columns that both
our intake and a plain load compute from the file; ``assert_same_rows`` raises ``AssertionError`` naming how many
rows differ and the first few of each side.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd

# What both sides take from the file. Left out because only ours does it (the plain load does not): channel names
# from 电话/传真, payment method codes from 支付宝/货到付款, the district's canonical name (酉阳县 ->
# 酉阳土家族苗族自治县), region and administrative code, buyer notes, raw records, content hashes, events. ``order_time`` is compared as an instant (ours stores UTC; the plain load stores the file's
# Asia/Shanghai text).
ORDER_COLUMNS = ["channel_order_id", "customer_name", "customer_phone", "ship_province", "ship_city",
                 "ship_detail", "goods_total_fen", "freight_fen", "order_total_fen", "order_time",
                 "state"]  # fmt: skip
LINE_COLUMNS = ["channel_order_id", "line_no", "item_code", "item_name", "spec", "model", "quantity",
                "unit_price_fen", "line_total_fen"]  # fmt: skip


def _instant(text: pd.Series) -> pd.Series:
    """Stored order times as UTC instants: timezone-less text with seconds is ours (UTC), without is local."""
    text = text.astype(str)
    local = text.str.len() == len("2026-11-20 08:00")
    out = pd.to_datetime(text.where(~local), format="mixed").dt.tz_localize("UTC")
    local_times = pd.to_datetime(text.where(local), format="%Y-%m-%d %H:%M", errors="coerce")
    out[local] = local_times[local].dt.tz_localize("Asia/Shanghai").dt.tz_convert("UTC")
    return out


def landed_intake(db: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(orders, lines) an intake stored in the SQLite file ``db``, keyed by the channel's order id."""
    with sqlite3.connect(db) as conn:
        orders = pd.read_sql(f"SELECT {', '.join(ORDER_COLUMNS)} FROM orders", conn)
        lines = pd.read_sql(
            "SELECT o.channel_order_id, l.line_no, l.item_code, l.item_name, l.spec, l.model, l.quantity, "
            "l.unit_price_fen, l.line_total_fen FROM order_lines l JOIN orders o ON o.id = l.order_id",
            conn,
        )
    orders["order_time"] = _instant(orders["order_time"])
    lines["quantity"] = lines["quantity"].astype("float64")
    return orders, lines


def assert_same_rows(ours: pd.DataFrame, theirs: pd.DataFrame, what: str, show: int = 3) -> None:
    """Both frames hold the same rows (as sets of tuples, order ignored); else the counts and examples differ."""
    a = set(ours.astype(object).where(ours.notna(), None).itertuples(index=False, name=None))
    b = set(theirs.astype(object).where(theirs.notna(), None).itertuples(index=False, name=None))
    assert len(ours) == len(theirs) and a == b, (
        f"{what}: ours {len(ours)} rows, the baseline {len(theirs)}; {len(a - b)} only ours "
        f"(e.g. {sorted(a - b, key=repr)[:show]}), {len(b - a)} only the baseline (e.g. {sorted(b - a, key=repr)[:show]})"
    )
