"""Credit scoring of n/10 customers over n orders (issue 13, K1).

Ours is the production path: ``credit_store.load_raw_factors`` over the SQLite store, then the pure factor and score
rules. Two hand-written pandas versions of the same factors and formula are timed beside it, paired run by run:

- the **whole job** (``baseline``, what the target is judged on): the same tables read from the same SQLite store
  with the fastest plain reader we have (the raw ``sqlite3`` cursor, only the columns the pandas uses, each table's
  own constant filters pushed into its ``WHERE`` as a columnar reader's predicate pushdown would, rows to
  ``DataFrame.from_records``, stored times parsed with their one format), then the pandas;
- the **pandas on frames** already in memory (``frames_baseline``; ``ratio_frames`` in the result), the same pandas
  without the reading: what SQLite's grouping costs against pandas' own.

Both start from the same data and end with every customer's score; parity first: every score on all three sides.
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path

import numpy as np
import pandas as pd

NAME = "credit"
DEFAULT_N = 1_000_000
BASELINE = ("hand-written pandas of the same factors and score, reading the same tables from the same SQLite store "
            "(raw sqlite3 cursor, the columns it uses, each table's own filters pushed down); `frames` ratio: the "
            "same pandas over the tables already in memory")  # fmt: skip
TARGET = 2.0
STORED_TIME = "%Y-%m-%d %H:%M:%S.%f"  # SQLAlchemy's SQLite DATETIME text (naive UTC), as yidi.bulk writes it


def prepare(n: int, workdir: Path, case=None) -> dict:
    from bench.risk_shapes import make_store
    from yidi.settings import load_settings

    ctx = make_store(n, workdir)
    ctx["policy"] = load_settings().credit
    return ctx


def _ours(ctx: dict) -> pd.DataFrame:
    from bench.risk_shapes import AS_OF
    from tasks.risk import credit, credit_store
    from yidi.db import make_engine

    engine = make_engine(f"sqlite:///{ctx['db']}")
    with engine.connect() as conn:
        raw = credit_store.load_raw_factors(conn, AS_OF, ctx["policy"])
    engine.dispose()
    return credit.score_customers(credit.factor_values(raw), ctx["policy"])[["customer_id", "score"]]


def ours(ctx: dict) -> None:
    _ours(ctx)


def _baseline(ctx: dict) -> pd.DataFrame:
    """The pandas over the frames already in memory."""
    return _pandas_scores(ctx["frames"], ctx["policy"])


def _pandas_scores(f: dict, policy) -> pd.DataFrame:
    """Every customer's score from the tables as frames, in plain pandas."""
    from bench.risk_shapes import AS_OF

    today = pd.Timestamp(AS_OF.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Shanghai")).date())
    since = pd.Timestamp(AS_OF) - pd.Timedelta(days=policy.history_days)
    ids = f["customers"]["id"].to_numpy()
    out = pd.DataFrame(index=pd.Index(ids, name="customer_id"))
    r = f["receivables"]
    due = pd.to_datetime(r["due_date"])
    late = r[(r["status"] == "open") & (due < today) & (r["outstanding_fen"] > 0)]
    out["overdue_yuan"] = late.groupby("customer_id")["outstanding_fen"].sum() / 100
    out["days_past_due"] = (
        today - pd.to_datetime(late["due_date"]).groupby(late["customer_id"]).min()
    ).dt.days
    d = f["dunning_actions"]
    d = d[(d["taken_at"] >= since) & (d["taken_at"] <= pd.Timestamp(AS_OF))]
    out["dunning_step"] = d.groupby("customer_id")["step_no"].max()
    o = f["orders"].set_index("id")
    c = f["settlement_cases"]
    c = c[
        c["case_class"].isin(["short_paid", "unpaid_past_terms", "duplicate_payment"])
        & (c["opened_at"] >= since)
        & (c["opened_at"] <= pd.Timestamp(AS_OF))
    ]
    out["payment_cases"] = c.groupby(
        c["customer_id"].fillna(c["order_id"].map(o["customer_id"])).astype("int64")
    ).size()
    i = f["tracking_incidents"]
    i = i[
        (i["incident_type"] == "refused")
        & (i["order_id"].map(o["payment_method"]) == "cod")
        & (i["opened_at"] >= since)
        & (i["opened_at"] <= pd.Timestamp(AS_OF))
    ]
    out["cod_refusals"] = i.groupby(i["order_id"].map(o["customer_id"]))["order_id"].nunique()
    recent = o[(o["received_at"] >= since) & (o["received_at"] <= pd.Timestamp(AS_OF))]
    out["orders"] = recent.groupby("customer_id").size()
    out["rejected"] = (
        recent[recent["state"].isin(["auto_rejected", "rejected"])].groupby("customer_id").size()
    )
    first = o["order_time"].fillna(o["received_at"]).groupby(o["customer_id"]).min()
    out["tenure_years"] = (pd.Timestamp(AS_OF) - first).dt.days.clip(lower=0) / 365
    e = f["order_events"]
    e = e[
        e["to_state"].isin(["delivered", "returned"])
        & e["order_id"].isin(recent.index)
        & (e["occurred_at"] <= pd.Timestamp(AS_OF))
    ]
    e = e.assign(customer_id=e["order_id"].map(o["customer_id"]))
    delivered = e[e["to_state"] == "delivered"].groupby("customer_id")["order_id"].nunique()
    returned = e[e["to_state"] == "returned"].groupby("customer_id")["order_id"].nunique()
    m = f["payment_matches"]
    m = m[(m["amount_fen"] < 0) & m["order_id"].isin(recent.index) & (m["matched_at"] <= pd.Timestamp(AS_OF))]
    refunded = m.groupby(m["order_id"].map(o["customer_id"]))["order_id"].nunique()
    out = out.fillna(0)
    n = out["orders"]
    out["return_rate_pct"] = (returned.reindex(out.index).fillna(0) / delivered.reindex(out.index).where(lambda s: s > 0)
                              * 100).fillna(0)  # fmt: skip
    out["refund_rate_pct"] = (refunded.reindex(out.index).fillna(0) / n.where(n > 0) * 100).fillna(0)
    out["rejection_rate_pct"] = (out["rejected"] / n.where(n > 0) * 100).fillna(0)
    out["orders_last_year"] = n
    score = np.full(len(out), float(policy.base_score))
    for name, factor in policy.factors.items():
        score += np.minimum(out[name].to_numpy(dtype="float64"), factor.cap) * factor.weight
    return pd.DataFrame({"customer_id": out.index, "score": np.clip(score, 0, 100).round(1)})


def read_tables(db: str, policy) -> dict[str, pd.DataFrame]:
    """The tables ``_pandas_scores`` uses, read from the SQLite store by the plain fastest route: the raw sqlite3
    cursor, the columns the pandas uses, each table's own constant filters (the same ones the pandas applies again)
    in its ``WHERE``, ``DataFrame.from_records``, then the stored times parsed with their one format (UTC)."""
    import sqlite3
    import zoneinfo

    from bench.risk_shapes import AS_OF

    as_of = AS_OF.astimezone(zoneinfo.ZoneInfo("UTC")).strftime(STORED_TIME)
    since = (pd.Timestamp(AS_OF) - pd.Timedelta(days=policy.history_days)).strftime(STORED_TIME)
    today = AS_OF.astimezone(zoneinfo.ZoneInfo("Asia/Shanghai")).date().isoformat()
    reads = {  # table: (columns, filter, time columns)
        "customers": ("id", "1", ()),
        "receivables": ("customer_id, status, due_date, outstanding_fen",
                        f"status = 'open' AND due_date < '{today}' AND outstanding_fen > 0", ()),
        "dunning_actions": ("customer_id, step_no, taken_at", f"taken_at >= '{since}' AND taken_at <= '{as_of}'",
                            ("taken_at",)),
        "orders": ("id, customer_id, payment_method, state, received_at, order_time", "1",
                   ("received_at", "order_time")),
        "settlement_cases": ("customer_id, order_id, case_class, opened_at",
                             "case_class IN ('short_paid', 'unpaid_past_terms', 'duplicate_payment') "
                             f"AND opened_at >= '{since}' AND opened_at <= '{as_of}'", ("opened_at",)),
        "tracking_incidents": ("order_id, incident_type, opened_at",
                               f"incident_type = 'refused' AND opened_at >= '{since}' AND opened_at <= '{as_of}'",
                               ("opened_at",)),
        "order_events": ("order_id, to_state, occurred_at",
                         f"to_state IN ('delivered', 'returned') AND occurred_at <= '{as_of}'", ("occurred_at",)),
        "payment_matches": ("order_id, amount_fen, matched_at", f"amount_fen < 0 AND matched_at <= '{as_of}'",
                            ("matched_at",)),
    }  # fmt: skip
    frames = {}
    conn = sqlite3.connect(db)
    try:
        for table, (columns, where, times) in reads.items():
            cursor = conn.execute(f"SELECT {columns} FROM {table} WHERE {where}")
            names = [d[0] for d in cursor.description]
            frame = pd.DataFrame.from_records(cursor.fetchall(), columns=names, coerce_float=False)
            for column in times:
                frame[column] = pd.to_datetime(frame[column], format=STORED_TIME, utc=True)
            frames[table] = frame
    finally:
        conn.close()
    return frames


def _whole_job(ctx: dict) -> pd.DataFrame:
    """The pandas with its reading: the same tables from the same store, then the same scores."""
    return _pandas_scores(read_tables(ctx["db"], ctx["policy"]), ctx["policy"])


def baseline(ctx: dict) -> None:
    _whole_job(ctx)


def frames_baseline(ctx: dict) -> None:
    _baseline(ctx)


def _differ(a: pd.DataFrame, b: pd.DataFrame, side: str) -> None:
    a, b = a.set_index("customer_id")["score"], b.set_index("customer_id")["score"].reindex(a.index)
    differ = a[(a - b).abs() > 1e-9]
    assert differ.empty, (
        f"{len(differ)} scores differ{side}, e.g. {[(int(i), a[i], b[i]) for i in differ.index[:3]]}"
    )


def parity(ctx: dict) -> None:
    """Every customer gets the same score on all three sides (ours, the pandas on frames, the pandas whole job)."""
    ours = _ours(ctx)
    _differ(ours, _baseline(ctx), "")
    _differ(ours, _whole_job(ctx), " (whole-job baseline)")


def extra(ctx: dict) -> dict:
    """The pandas on frames already in memory, timed in pairs with ours like the whole-job baseline: ``ratio_frames``
    (median of the pairs), its spread, and its seconds."""
    from bench.__main__ import spread, timed_in_child

    ours_s, frames_s = [], []
    for _ in range(int(os.environ.get("BENCH_RUNS", "5"))):
        ours_s.append(timed_in_child(ours, ctx)[0])
        frames_s.append(timed_in_child(frames_baseline, ctx)[0])
    ratios = [a / b for a, b in zip(ours_s, frames_s, strict=True)]
    scored = _ours(ctx)
    return {"customers": len(scored), "orders": len(ctx["frames"]["orders"]),
            "ratio_frames": round(statistics.median(ratios), 3), "frames_ratio_spread": spread(ratios),
            "frames_baseline_s": round(statistics.median(frames_s), 4),
            "frames_ours_s": round(statistics.median(ours_s), 4)}  # fmt: skip
