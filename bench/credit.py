"""Credit scoring of n/10 customers over n orders (issue 13, K1): ours is the production path
(``credit_store.load_raw_factors`` over the SQLite store, then the pure factor and score rules); the baseline is a
hand-written pandas version of the same factors and formula over the same tables (loaded as frames). Parity first:
every customer's score."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

NAME = "credit"
DEFAULT_N = 1_000_000
BASELINE = "hand-written pandas of the same factors and score over the same tables"
TARGET = 2.0


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
    from bench.risk_shapes import AS_OF

    f, policy = ctx["frames"], ctx["policy"]
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


def baseline(ctx: dict) -> None:
    _baseline(ctx)


def parity(ctx: dict) -> None:
    """Every customer gets the same score on both sides."""
    a = _ours(ctx).set_index("customer_id")["score"]
    b = _baseline(ctx).set_index("customer_id")["score"].reindex(a.index)
    differ = a[(a - b).abs() > 1e-9]
    assert differ.empty, (
        f"{len(differ)} scores differ, e.g. {[(int(i), a[i], b[i]) for i in differ.index[:3]]}"
    )


def extra(ctx: dict) -> dict:
    scored = _ours(ctx)
    return {"customers": len(scored), "orders": len(ctx["frames"]["orders"])}
