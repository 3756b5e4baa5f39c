"""KPI definitions (E2), each written once as a pure function over the period's facts (``kpi_store``).

An order-based KPI takes the facts of the orders received in the period and a grouping column (``None`` for the
total) and returns ``value``, ``numerator`` and ``denominator`` per group; the README's KPI table describes each.
Percentiles are pandas' linear interpolation (the same as DuckDB's ``quantile_cont``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tasks.risk.periods import business_days, rag

HOUR = 3600.0


@dataclass(frozen=True)
class Rate:
    """Per order: counted in the denominator (``base``) and in the numerator (``hit``, within base)."""

    hit: np.ndarray
    base: np.ndarray


@dataclass(frozen=True)
class Quantile:
    """Per order: a duration in hours (NaN: not applicable) and the quantile taken of it."""

    hours: np.ndarray
    q: float


@dataclass(frozen=True)
class Kpi:
    name: str
    label: str
    unit: str
    measure: Callable  # facts -> Rate, or per-order hours when ``q`` is set (computed once, grouped by each dimension)
    q: float | None = None  # the quantile of the hours taken per group; None: a rate
    by_dimension: bool = True  # False: only a total (money and feedback KPIs)

    def of(self, facts: pd.DataFrame) -> Rate | Quantile:
        """The per-order measure: a Rate, or the hours and the quantile to take of them."""
        return self.measure(facts) if self.q is None else Quantile(self.measure(facts), self.q)

    def compute(self, facts: pd.DataFrame, by: str | None) -> pd.DataFrame:
        """group, value, numerator, denominator for the total (``by`` None) or by a dimension."""
        return grouped(self.of(facts), *_groups(facts, by))


def _groups(facts: pd.DataFrame, by: str | None) -> tuple[np.ndarray, np.ndarray]:
    """(integer group code per order, group labels): the total is one group ``all``; a missing value is
    ``(none)``. Factorised once per dimension (``order_kpis`` keeps them in ``facts.attrs``)."""
    cached = facts.attrs.get("groups", {}).get(by)
    if cached is not None:
        return cached
    if by is None:
        return np.zeros(len(facts), dtype=np.int64), np.array(["all"], dtype=object)
    codes, labels = pd.factorize(facts[by], use_na_sentinel=True)
    labels = np.append(np.asarray(labels, dtype=object), "(none)")
    return np.where(codes < 0, len(labels) - 1, codes), labels


def grouped(measure: Rate | Quantile, codes: np.ndarray, labels: np.ndarray, ranked=None) -> pd.DataFrame:
    """A per-order measure summed (rates) or its quantile taken (durations) per group; ``ranked``: the durations
    already sorted by group (``_ranked``), shared by the quantiles of one measure."""
    if isinstance(measure, Quantile):
        return _quantile(ranked or _ranked(codes, labels, measure.hours), measure.q)
    numerator = np.bincount(codes[measure.hit & measure.base], minlength=len(labels)).astype(np.float64)
    denominator = np.bincount(codes[measure.base], minlength=len(labels)).astype(np.float64)
    present = np.bincount(codes, minlength=len(labels)) > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1) * 100, np.nan)
    out = pd.DataFrame({"group": labels, "numerator": numerator, "denominator": denominator, "value": value})
    return out[present].sort_values("group").reset_index(drop=True)


def by_value(hours: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The positions of the non-NaN hours in the order of their values, and those hours (one sort per measure)."""
    known = np.flatnonzero(~np.isnan(hours))
    order = known[np.argsort(hours[known])]
    return order, hours[order]


def _ranked(codes: np.ndarray, labels: np.ndarray, hours: np.ndarray, ordered: tuple | None = None) -> tuple:
    """The non-NaN hours sorted by (group, value) with each present group's label, size and first position: the
    hours in value order (``by_value``, shared by every dimension), then a stable (radix) sort of their small
    group codes (none for a single group)."""
    order, hours = by_value(hours) if ordered is None else ordered
    codes = codes[order]
    if len(labels) > 1:
        hours = hours[np.argsort(codes.astype(np.int16 if len(labels) < 2**15 else np.int64), kind="stable")]
    sizes = np.bincount(codes, minlength=len(labels))
    present = np.flatnonzero(sizes)
    sizes = sizes[present]
    return labels[present], sizes, np.cumsum(sizes) - sizes, hours


def _quantile(ranked: tuple, q: float) -> pd.DataFrame:
    """Per group, the ``q`` quantile of its hours, interpolated linearly between the two nearest ranks (pandas'
    and DuckDB's ``quantile_cont``)."""
    labels, sizes, starts, hours = ranked
    rank = q * (sizes - 1)
    low = np.floor(rank).astype(np.int64)
    fraction = rank - low
    below, above = hours[starts + low], hours[starts + np.minimum(low + 1, sizes - 1)]
    value = np.where(fraction == 0, below, below + (above - below) * fraction)
    out = pd.DataFrame({"group": labels, "value": value, "denominator": sizes, "numerator": np.nan})
    return out.sort_values("group").reset_index(drop=True)


def _flag(series: pd.Series) -> np.ndarray:
    return series.fillna(False).to_numpy(dtype=bool) if series.dtype == object else series.to_numpy(dtype=bool)


def _hours(later: pd.Series, earlier: pd.Series) -> np.ndarray:
    return ((later - earlier).dt.total_seconds() / HOUR).to_numpy(dtype="float64", na_value=np.nan)


def _decision_hours(facts):
    return _hours(facts["decided_at"], facts["received_at"])


def _ship_hours(facts):
    return _hours(facts["shipped_at"], facts["approved_at"])


def _review_on_time(facts):
    base = facts["manual_decided_at"].notna() & facts["review_due_at"].notna()
    return Rate(_flag(facts["manual_decided_at"] <= facts["review_due_at"]), base.to_numpy())


def _on_time_delivery(facts):
    due = facts["promised_date"].where(facts["promised_date"].notna(), facts["expected_date"])
    delivered_day = facts["delivered_day"] if "delivered_day" in facts else business_days(facts["delivered_at"])
    base = facts["delivered_at"].notna() & due.notna()
    return Rate(_flag(delivered_day <= due), base.to_numpy())


def _exception_rate(facts):
    hit = facts["exception"].to_numpy(dtype=bool) | facts["incident"].to_numpy(dtype=bool)
    return Rate(hit, facts["shipped_at"].notna().to_numpy())


def _return_rate(facts):
    return Rate(facts["returned"].to_numpy(dtype=bool), facts["delivered_at"].notna().to_numpy())


def _refund_rate(facts):
    return Rate(facts["refunded"].to_numpy(dtype=bool), np.ones(len(facts), dtype=bool))


ORDER_KPIS = [
    Kpi("decision_hours_p50", "受理→审核决定 中位数 (h)", "h", _decision_hours, q=0.5),
    Kpi("decision_hours_p90", "受理→审核决定 P90 (h)", "h", _decision_hours, q=0.9),
    Kpi("ship_hours_p50", "批准→发货 中位数 (h)", "h", _ship_hours, q=0.5),
    Kpi("ship_hours_p90", "批准→发货 P90 (h)", "h", _ship_hours, q=0.9),
    Kpi("review_on_time_pct", "审核按期率 %", "%", _review_on_time),
    Kpi("on_time_delivery_pct", "准时送达率 %", "%", _on_time_delivery),
    Kpi("exception_rate_pct", "异常率 %", "%", _exception_rate),
    Kpi("return_rate_pct", "退货率 %", "%", _return_rate),
    Kpi("refund_rate_pct", "退款率 %", "%", _refund_rate),
]


def order_kpis(facts: pd.DataFrame, incident_orders: set, dimensions: list[str]) -> pd.DataFrame:
    """Every order KPI for the total and by each dimension: kpi, dimension, dimension_value, value, numerator,
    denominator. Each KPI's per-order measure is computed once and grouped by every dimension."""
    columns = ["kpi", "dimension", "dimension_value", "value", "numerator", "denominator"]
    if facts.empty:
        return pd.DataFrame(columns=columns)
    facts = facts.assign(incident=facts["order_id"].isin(incident_orders))
    facts["delivered_day"] = business_days(facts["delivered_at"])
    groups = {d: _groups(facts, d) for d in [None, *dimensions]}
    measures: dict = {}  # per measure function: its per-order values (p50 and p90 share them)
    orders: dict = {}  # per duration measure: its orders by value
    ranked: dict = {}  # per (duration measure, dimension): its hours sorted by group
    pieces = []
    for kpi in ORDER_KPIS:
        if kpi.measure not in measures:
            measures[kpi.measure] = kpi.measure(facts)
        measure = measures[kpi.measure] if kpi.q is None else Quantile(measures[kpi.measure], kpi.q)
        for dimension in [None, *dimensions]:
            if kpi.q is not None and (kpi.measure, dimension) not in ranked:
                if kpi.measure not in orders:
                    orders[kpi.measure] = by_value(measure.hours)
                ranked[kpi.measure, dimension] = _ranked(*groups[dimension], measure.hours, orders[kpi.measure])
            out = grouped(measure, *groups[dimension], ranked.get((kpi.measure, dimension)))
            out = out.rename(columns={"group": "dimension_value"})
            if dimension is not None:  # a breakdown lists the groups the KPI has data for
                out = out[out["denominator"] > 0]
            out.insert(0, "dimension", dimension or "all")
            out.insert(0, "kpi", kpi.name)
            pieces.append(out)
    return pd.concat(pieces, ignore_index=True)[columns]


def exception_kinds(facts: pd.DataFrame, incidents: pd.DataFrame) -> pd.DataFrame:
    """Exception rate by incident kind: orders with an incident of the kind per 100 shipped orders."""
    shipped = set(facts.loc[facts["shipped_at"].notna(), "order_id"])
    if not shipped or incidents.empty:
        return pd.DataFrame(
            columns=["kpi", "dimension", "dimension_value", "value", "numerator", "denominator"]
        )
    hit = incidents[incidents["order_id"].isin(shipped)].drop_duplicates()
    counts = hit.groupby("incident_type")["order_id"].nunique()
    return pd.DataFrame({"kpi": "exception_rate_pct", "dimension": "kind", "dimension_value": counts.index,
                         "value": counts.to_numpy() / len(shipped) * 100, "numerator": counts.to_numpy(),
                         "denominator": len(shipped)})  # fmt: skip


def money_kpis(money: dict, period_days: int) -> pd.DataFrame:
    """Collection rate (paid share of what fell due in the period), DSO (outstanding at the end / the period's
    sales × its days) and the settlement match rate (matched payment lines of the period)."""
    rows = [
        ("collection_rate_pct", money["paid_fen"], money["due_fen"], 100),
        ("dso_days", money["outstanding_fen"], money["sales_fen"], period_days),
        ("settlement_match_pct", money["matched_lines"], money["payment_lines"], 100),
    ]
    return pd.DataFrame([{"kpi": k, "dimension": "all", "dimension_value": "all", "numerator": float(n),
                          "denominator": float(d), "value": n / d * scale if d else np.nan}
                         for k, n, d, scale in rows])  # fmt: skip


def feedback_kpis(feedback: dict, orders: int) -> pd.DataFrame:
    """Complaint rate per 100 orders, complaint response and resolution hours (median), satisfaction (mean 1-5)."""
    complaints = feedback["complaints"]
    rows = [{"kpi": "complaint_rate_pct", "numerator": float(len(complaints)), "denominator": float(orders),
             "value": len(complaints) / orders * 100 if orders else np.nan}]  # fmt: skip
    for kpi, column in (
        ("response_hours_p50", "first_responded_at"),
        ("resolution_hours_p50", "resolved_at"),
    ):
        if complaints.empty:
            hours = pd.Series(dtype="float64")
        else:
            hours = ((pd.to_datetime(complaints[column], utc=True) - pd.to_datetime(complaints["received_at"], utc=True))
                     .dt.total_seconds() / HOUR).dropna()  # fmt: skip
        rows.append({"kpi": kpi, "numerator": np.nan, "denominator": float(len(hours)),
                     "value": float(hours.median()) if len(hours) else np.nan})  # fmt: skip
    scores = feedback["scores"]
    rows.append({"kpi": "satisfaction_score", "numerator": float(scores.sum()), "denominator": float(len(scores)),
                 "value": float(scores.mean()) if len(scores) else np.nan})  # fmt: skip
    frame = pd.DataFrame(rows)
    frame.insert(1, "dimension", "all")
    frame.insert(2, "dimension_value", "all")
    return frame


def with_status(values: pd.DataFrame, targets: dict) -> pd.DataFrame:
    """``target`` and ``status`` (green/amber/red/none) from ``[kpi.targets]``."""
    values = values.copy()
    values["target"] = values["kpi"].map(lambda k: targets[k].target if k in targets else np.nan)
    values["status"] = [
        rag(v, targets[k].target, targets[k].amber, targets[k].higher_is_better) if k in targets else "none"
        for k, v in zip(values["kpi"], values["value"], strict=True)
    ]
    return values


KPI_NAMES = [k.name for k in ORDER_KPIS] + ["collection_rate_pct", "dso_days", "settlement_match_pct",
                                            "complaint_rate_pct", "response_hours_p50", "resolution_hours_p50",
                                            "satisfaction_score"]  # fmt: skip
