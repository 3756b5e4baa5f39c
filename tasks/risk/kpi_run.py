"""The KPI step (E2): facts for the period and the trend window loaded once, every KPI computed, stored per period
and dimension with its target and status, and the trend of the totals over the last periods."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd
from sqlalchemy import Engine, select

from tasks.risk import kpi, kpi_store
from tasks.risk.periods import (
    business_dates,
    parse_period,
    period_of,
    previous_periods,
    sparkline,
    utc_bounds,
)
from yidi.bulk import insert_rows, read_frame
from yidi.schema_risk import kpi_values
from yidi.settings import Settings

VALUE_COLUMNS = ["period", "kpi", "dimension", "dimension_value", "value", "numerator", "denominator", "target",
                 "status"]  # fmt: skip


@dataclass
class KpiReport:
    period: str
    values: pd.DataFrame  # VALUE_COLUMNS for the period, every dimension
    trend: pd.DataFrame  # kpi, one column per period (totals), sparkline

    def totals(self) -> pd.DataFrame:
        return (
            self.values[self.values["dimension"] == "all"]
            .set_index("kpi")
            .reindex(kpi.KPI_NAMES)
            .reset_index()
        )


def period_values(
    conn, period: str, dimensions: list[str], facts: pd.DataFrame, incidents: pd.DataFrame, settings: Settings
) -> pd.DataFrame:
    start, end, _kind = parse_period(period)
    lo, hi = utc_bounds(start, end)
    mine = facts[facts["period"] == period]
    incident_orders = set(incidents.loc[incidents["order_id"].isin(mine["order_id"]), "order_id"])
    pieces = [kpi.order_kpis(mine, incident_orders, dimensions)]
    if dimensions:
        pieces.append(kpi.exception_kinds(mine, incidents))
    pieces.append(kpi.money_kpis(kpi_store.load_money(conn, start, end, lo, hi), (end - start).days))
    pieces.append(kpi.feedback_kpis(kpi_store.load_feedback(conn, lo, hi), len(mine)))
    values = pd.concat([p for p in pieces if not p.empty], ignore_index=True)
    values = kpi.with_status(values, settings.kpi.targets)
    values.insert(0, "period", period)
    return values[VALUE_COLUMNS]


def compute_kpis(
    engine: Engine, settings: Settings, period: str, as_of: datetime, store: bool = True
) -> KpiReport:
    """KPIs of ``period`` by every dimension, and the totals of the ``risk.trend_periods`` periods up to it."""
    periods = previous_periods(period, settings.risk.trend_periods)
    first, _e, kind = parse_period(periods[0])
    _s, last, _k = parse_period(period)
    lo, hi = utc_bounds(first, last)
    with engine.connect() as conn:
        facts = kpi_store.load_facts(conn, lo, hi)
        facts["period"] = (
            [period_of(d, kind) for d in business_dates(facts["received_at"])] if len(facts) else []
        )
        incidents = kpi_store.load_incidents(conn, lo, hi)
        current = period_values(conn, period, settings.kpi.dimensions, facts, incidents, settings)
        past = [period_values(conn, p, [], facts, incidents, settings) for p in periods[:-1]]
    everything = pd.concat([*past, current], ignore_index=True)
    if store:
        with engine.begin() as conn:
            rows = everything.assign(computed_at=as_of)
            insert_rows(
                conn,
                kpi_values,
                rows,
                on_conflict=["period", "kpi", "dimension", "dimension_value"],
                update_columns=["value", "numerator", "denominator", "target", "status", "computed_at"],
            )
    totals = everything[everything["dimension"] == "all"]
    trend = totals.pivot_table(index="kpi", columns="period", values="value", aggfunc="first", dropna=False)
    trend = trend.reindex(index=kpi.KPI_NAMES, columns=periods)
    trend["sparkline"] = [sparkline(list(row)) for row in trend[periods].itertuples(index=False)]
    return KpiReport(period, current, trend.reset_index())


def stored_values(engine: Engine, period: str) -> pd.DataFrame:
    with engine.connect() as conn:
        return read_frame(
            conn, select(*[kpi_values.c[c] for c in VALUE_COLUMNS]).where(kpi_values.c.period == period)
        )
