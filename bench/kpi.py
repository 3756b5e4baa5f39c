"""KPIs over n orders and their events (issue 13, E2): ours is the production path (``kpi_store.load_facts``
over the SQLite store, then ``kpi.order_kpis`` by total, channel, province and carrier); the baseline is the same
KPIs as plain DuckDB SQL over the same tables (loaded as frames). Parity first: every KPI value of every group."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

NAME = "kpi"
DEFAULT_N = 1_000_000
BASELINE = "the same KPIs as plain DuckDB SQL over the same tables"
TARGET = 2.0
DIMENSIONS = ["channel", "province", "carrier"]


def prepare(n: int, workdir: Path, case=None) -> dict:
    from bench.risk_shapes import make_store

    ctx = make_store(n, workdir)
    naive = {}
    for name in ("orders", "order_events", "shipments", "payment_matches", "tracking_incidents"):
        frame = ctx["frames"][name].copy()
        for column in frame.columns:
            if isinstance(frame[column].dtype, pd.DatetimeTZDtype):
                frame[column] = frame[column].dt.tz_convert("UTC").dt.tz_localize(None)
        naive[name] = frame
    naive["shipments"]["expected_delivery_date"] = pd.to_datetime(
        naive["shipments"]["expected_delivery_date"]
    )
    naive["orders"]["promised_date"] = pd.to_datetime(naive["orders"]["promised_date"])
    ctx["naive"] = naive
    return ctx


def _ours(ctx: dict) -> pd.DataFrame:
    from bench.risk_shapes import START
    from tasks.risk import kpi, kpi_store
    from yidi.db import make_engine

    engine = make_engine(f"sqlite:///{ctx['db']}")
    with engine.connect() as conn:
        facts = kpi_store.load_facts(conn, START - pd.Timedelta(days=1), START + pd.Timedelta(days=31))
        incidents = kpi_store.load_incidents(
            conn, START - pd.Timedelta(days=1), START + pd.Timedelta(days=31)
        )
    engine.dispose()
    return kpi.order_kpis(facts, set(incidents["order_id"]), DIMENSIONS)


def ours(ctx: dict) -> None:
    _ours(ctx)


SQL = """
WITH m AS (
  SELECT order_id,
    min(CASE WHEN to_state IN ('approved','rejected','auto_rejected') THEN occurred_at END) AS decided_at,
    min(CASE WHEN to_state IN ('approved','rejected') AND from_state = 'pending_review' THEN occurred_at END) AS manual_at,
    min(CASE WHEN to_state = 'approved' THEN occurred_at END) AS approved_at,
    min(CASE WHEN to_state = 'shipped' THEN occurred_at END) AS shipped_at,
    min(CASE WHEN to_state = 'delivered' THEN occurred_at END) AS delivered_at,
    max(CASE WHEN to_state = 'returned' THEN 1 ELSE 0 END) AS returned,
    max(CASE WHEN to_state = 'exception' THEN 1 ELSE 0 END) AS exception
  FROM order_events WHERE kind = 'state' GROUP BY order_id),
s AS (SELECT order_id, min(carrier) AS carrier, max(expected_delivery_date) AS expected FROM shipments GROUP BY order_id),
r AS (SELECT DISTINCT order_id FROM payment_matches WHERE amount_fen < 0),
i AS (SELECT DISTINCT order_id FROM tracking_incidents),
f AS (
  SELECT o.channel, o.ship_province AS province, coalesce(s.carrier, '(none)') AS carrier, o.received_at,
    o.review_due_at, m.*, coalesce(o.promised_date, s.expected) AS due_day,
    CAST(m.delivered_at + INTERVAL 8 HOUR AS DATE) AS delivered_day,
    (r.order_id IS NOT NULL) AS refunded, (i.order_id IS NOT NULL) AS incident
  FROM orders o LEFT JOIN m ON m.order_id = o.id LEFT JOIN s ON s.order_id = o.id
  LEFT JOIN r ON r.order_id = o.id LEFT JOIN i ON i.order_id = o.id)
SELECT {group} AS dimension_value,
  quantile_cont(epoch(decided_at - received_at) / 3600, 0.5) AS decision_hours_p50,
  quantile_cont(epoch(decided_at - received_at) / 3600, 0.9) AS decision_hours_p90,
  count(decided_at) AS decision_n,
  quantile_cont(epoch(shipped_at - approved_at) / 3600, 0.5) AS ship_hours_p50,
  quantile_cont(epoch(shipped_at - approved_at) / 3600, 0.9) AS ship_hours_p90,
  count(epoch(shipped_at - approved_at)) AS ship_n,
  100.0 * sum(CASE WHEN manual_at <= review_due_at THEN 1 ELSE 0 END)
    / nullif(sum(CASE WHEN manual_at IS NOT NULL AND review_due_at IS NOT NULL THEN 1 ELSE 0 END), 0) AS review_on_time_pct,
  sum(CASE WHEN manual_at IS NOT NULL AND review_due_at IS NOT NULL THEN 1 ELSE 0 END) AS review_n,
  100.0 * sum(CASE WHEN delivered_at IS NOT NULL AND due_day IS NOT NULL AND delivered_day <= due_day THEN 1 ELSE 0 END)
    / nullif(sum(CASE WHEN delivered_at IS NOT NULL AND due_day IS NOT NULL THEN 1 ELSE 0 END), 0) AS on_time_delivery_pct,
  sum(CASE WHEN delivered_at IS NOT NULL AND due_day IS NOT NULL THEN 1 ELSE 0 END) AS delivery_n,
  100.0 * sum(CASE WHEN shipped_at IS NOT NULL AND (exception = 1 OR incident) THEN 1 ELSE 0 END)
    / nullif(count(shipped_at), 0) AS exception_rate_pct,
  count(shipped_at) AS shipped_n,
  100.0 * sum(CASE WHEN delivered_at IS NOT NULL AND returned = 1 THEN 1 ELSE 0 END)
    / nullif(count(delivered_at), 0) AS return_rate_pct,
  count(delivered_at) AS delivered_n,
  100.0 * sum(CASE WHEN refunded THEN 1 ELSE 0 END) / count(*) AS refund_rate_pct,
  count(*) AS orders_n
FROM f GROUP BY {group}
"""
COUNTS = {"decision_hours_p50": "decision_n", "decision_hours_p90": "decision_n", "ship_hours_p50": "ship_n",
          "ship_hours_p90": "ship_n", "review_on_time_pct": "review_n", "on_time_delivery_pct": "delivery_n",
          "exception_rate_pct": "shipped_n", "return_rate_pct": "delivered_n", "refund_rate_pct": "orders_n"}  # fmt: skip


def _baseline(ctx: dict) -> pd.DataFrame:
    import duckdb

    con = duckdb.connect()
    for name, frame in ctx["naive"].items():
        con.register(name, frame)
    pieces = []
    for dimension in [None, *DIMENSIONS]:
        wide = con.execute(SQL.format(group=f"{dimension}" if dimension else "'all'")).df()
        for kpi, count in COUNTS.items():
            part = wide[["dimension_value", kpi, count]].rename(columns={kpi: "value", count: "denominator"})
            if dimension is not None:
                part = part[part["denominator"] > 0]
            pieces.append(part.assign(kpi=kpi, dimension=dimension or "all"))
    con.close()
    return pd.concat(pieces, ignore_index=True)


def baseline(ctx: dict) -> None:
    _baseline(ctx)


def parity(ctx: dict) -> None:
    """Every KPI of every group has the same value on both sides (to 1e-6)."""

    def as_map(frame):
        return {(r.kpi, r.dimension, str(r.dimension_value)): (None if pd.isna(r.value) else round(float(r.value), 6))
                for r in frame.itertuples(index=False)}  # fmt: skip

    a, b = as_map(_ours(ctx)), as_map(_baseline(ctx))
    diff = sorted(k for k in set(a) | set(b) if a.get(k, "missing") != b.get(k, "missing"))
    assert not diff, (
        f"{len(diff)} KPI values differ, e.g. {[(k, a.get(k, 'missing'), b.get(k, 'missing')) for k in diff[:3]]}"
    )


def store_floor_s(ctx: dict) -> float:
    """What SQLite alone takes to group the events into each order's milestones (counted, nothing fetched): a
    floor under any KPI path that reads this store, beside the baseline that starts from frames in memory."""
    import sqlite3
    import time

    milestones = ", ".join(f"min(CASE WHEN to_state IN ({states}) THEN occurred_at END)" for states in (
        "'approved','rejected','auto_rejected'", "'approved'", "'shipped'", "'delivered'"))  # fmt: skip
    con = sqlite3.connect(ctx["db"])
    started = time.perf_counter()
    con.execute(f"SELECT count(*) FROM (SELECT order_id, {milestones} FROM order_events WHERE kind = 'state' "
                "GROUP BY order_id)").fetchall()  # fmt: skip
    elapsed = time.perf_counter() - started
    con.close()
    return round(elapsed, 4)


def extra(ctx: dict) -> dict:
    frames = ctx["frames"]
    return {"orders": len(frames["orders"]), "events": len(frames["order_events"]),
            "shipments": len(frames["shipments"]), "kpi_values": int(np.int64(len(_baseline(ctx)))),
            "sqlite_event_grouping_only_s": store_floor_s(ctx)}  # fmt: skip
