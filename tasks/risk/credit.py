"""Customer credit scoring (K1): pure rules over per-customer factor values, no store, no clock.

Score = ``credit.base_score`` + Σ weight × min(value, cap) over the factors in ``[credit.factors]``, clipped to
0–100; the grade is the best one whose ``min_score`` the score reaches (``yidi.credit.grade_of``). Every factor's
value and contribution is kept with the score, so a grade can be explained line by line.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from yidi.credit import grade_of
from yidi.risk_policy import CREDIT_FACTORS, GRADES, CreditPolicy

FACTOR_LABELS = {
    "days_past_due": "逾期天数 days past due",
    "overdue_yuan": "逾期金额 overdue (yuan)",
    "dunning_step": "催收步骤 dunning step reached",
    "payment_cases": "付款异常 short/unpaid/duplicate cases",
    "cod_refusals": "拒收货到付款 COD refusals",
    "return_rate_pct": "退货率 return rate %",
    "refund_rate_pct": "退款率 refund rate %",
    "rejection_rate_pct": "审核拒绝率 rejection rate %",
    "tenure_years": "合作年限 tenure (years)",
    "orders_last_year": "订单量 orders in history window",
}


def factor_values(raw: pd.DataFrame) -> pd.DataFrame:
    """Factor values per customer from the store's counts (``customer_id``, ``overdue_fen``, ``days_past_due``,
    ``dunning_step``, ``payment_cases``, ``cod_refusals``, ``orders``, ``rejected``, ``delivered``, ``returned``,
    ``refunded``, ``tenure_days``). Rates are percentages of the customer's own orders; no orders, no rate."""
    orders = raw["orders"].astype("float64")
    values = pd.DataFrame({"customer_id": raw["customer_id"].astype("int64")})
    values["days_past_due"] = raw["days_past_due"].astype("float64").clip(lower=0)
    values["overdue_yuan"] = raw["overdue_fen"].astype("float64") / 100
    values["dunning_step"] = raw["dunning_step"].astype("float64")
    values["payment_cases"] = raw["payment_cases"].astype("float64")
    values["cod_refusals"] = raw["cod_refusals"].astype("float64")
    delivered = raw["delivered"].astype("float64")
    values["return_rate_pct"] = np.where(
        delivered > 0, raw["returned"] / delivered.where(delivered > 0, 1) * 100, 0
    )
    values["refund_rate_pct"] = np.where(orders > 0, raw["refunded"] / orders.where(orders > 0, 1) * 100, 0)
    values["rejection_rate_pct"] = np.where(
        orders > 0, raw["rejected"] / orders.where(orders > 0, 1) * 100, 0
    )
    values["tenure_years"] = raw["tenure_days"].astype("float64").clip(lower=0) / 365
    values["orders_last_year"] = orders
    return values


def score_customers(values: pd.DataFrame, policy: CreditPolicy) -> pd.DataFrame:
    """``customer_id``, ``score``, ``grade`` and ``c_<factor>`` (its contribution) per customer."""
    out = pd.DataFrame({"customer_id": values["customer_id"].to_numpy()}, index=values.index)
    total = pd.Series(float(policy.base_score), index=values.index)
    for name in CREDIT_FACTORS:
        factor = policy.factors.get(name)
        value = values[name].fillna(0).astype("float64")
        contribution = value.clip(upper=factor.cap) * factor.weight if factor else value * 0
        out[f"v_{name}"] = value
        out[f"c_{name}"] = contribution.round(2)
        total = total + contribution
    out["score"] = total.clip(0, 100).round(1)
    out["grade"] = grade_of(out["score"], policy)
    return out


def factors_record(scored: pd.DataFrame) -> list[dict]:
    """Per customer, the JSON stored with the evaluation: factor -> {value, contribution}."""
    names = list(CREDIT_FACTORS)
    values = scored[[f"v_{n}" for n in names]].to_numpy()
    contributions = scored[[f"c_{n}" for n in names]].to_numpy()
    return [
        {
            n: {"value": round(float(v), 4), "contribution": float(c)}
            for n, v, c in zip(names, vrow, crow, strict=True)
        }
        for vrow, crow in zip(values, contributions, strict=True)
    ]


def grade_rank(grades: pd.Series) -> pd.Series:
    """A=0 … E=4 (missing stays missing): a larger rank is a worse grade."""
    return grades.map({g: i for i, g in enumerate(GRADES)})


def changes(scored: pd.DataFrame, previous: pd.Series) -> pd.DataFrame:
    """Customers whose grade differs from ``previous`` (customer_id -> grade), with ``direction`` up/down/new."""
    before = scored["customer_id"].map(previous).astype(object)
    changed = scored[(before != scored["grade"].astype(object)) | before.isna()].copy()
    changed["previous_grade"] = before[changed.index]
    worse = grade_rank(changed["grade"]) > grade_rank(changed["previous_grade"])
    changed["direction"] = np.where(changed["previous_grade"].isna(), "new", np.where(worse, "down", "up"))
    return changed


def explain(factors: dict) -> list[tuple[str, float, float]]:
    """(label, value, contribution) per factor with a non-zero contribution, largest effect first."""
    rows = [
        (FACTOR_LABELS.get(k, k), v["value"], v["contribution"])
        for k, v in factors.items()
        if v["contribution"]
    ]
    return sorted(rows, key=lambda r: -abs(r[2]))


def measures_text(grade: str, policy: CreditPolicy) -> str:
    """What a grade requires, in the words sales and finance read (the downgrade notice, the CLI)."""
    from yidi.money import decimal_to_fen, yuan_text

    m = policy.grades[grade]
    parts = [f"信用额度 {yuan_text(decimal_to_fen(m.credit_limit_yuan), grouping=True, symbol=True)}"]
    if m.prepayment_ratio > 0:
        parts.append(f"预付 {m.prepayment_ratio:.0%}")
    if m.guarantee_required:
        parts.append("须提供担保")
    if not m.cod_allowed:
        parts.append("不可货到付款")
    if not m.installments_allowed:
        parts.append("不可分期")
    if m.manual_review:
        parts.append("每单人工审核")
    return "，".join(parts)
