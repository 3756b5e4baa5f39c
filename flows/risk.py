"""Risk, audit and KPI flows (issue 13; K1–K4, P1, P4, E1, E2).

``assess-risk-and-kpis`` (daily; on demand with a period): credit of every customer, KPIs of the period (the
current month by default; on Mondays the previous ISO week and on the 1st the previous month as well), the carrier
scorecard, anonymisation past the retention period, the legal rules, receivables risk, then the report (artifacts
and an xlsx workbook under ``$YIDI_HOME/reports/risk``). ``internal-audit`` (monthly; on demand with a period):
process compliance, the data-accuracy sample re-derived from raw intake records through intake's own parser, and
satisfaction, with findings re-checked.

The step lists ``assessment`` and ``audit`` (see ``flows.compose``) run with Prefect in the flows and in process
for ``yidi risk … --no-prefect`` and the tests. Transaction scope: each step in its own transaction (a step that
fails is retried on a database error and leaves the others' results in place); every step is idempotent.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
from sqlalchemy import Engine

from flows.compose import Run, require_store, retry_on_database_error, step_logger, with_prefect
from flows.naming import audit_name, risk_name
from flows.params import Month, Period
from tasks.risk import receivables, report
from tasks.risk.audit_steps import run_audit
from tasks.risk.carrier_steps import assess_carriers
from tasks.risk.credit_steps import evaluate_credit
from tasks.risk.kpi_run import compute_kpis
from tasks.risk.legal_steps import anonymise_expired, assess_legal
from tasks.risk.periods import parse_period, period_of
from yidi.bulk import utc_now
from yidi.db import for_writing, get_engine
from yidi.settings import get_settings, yidi_home
from yidi.steps import NO_CACHE, create_markdown_artifact, create_table_artifact, flow, task
from yidi.workdays import BUSINESS_TZ

STEP = {"cache_policy": NO_CACHE, "retries": 2, "retry_condition_fn": retry_on_database_error}


@task(name="evaluate-credit", **STEP)
def credit_task(now: datetime, engine: Engine | None = None) -> dict:
    result = evaluate_credit(for_writing(engine or get_engine()), get_settings(), now).as_dict()
    step_logger(__name__).info("credit: %s customers %s, %s downgraded", result["evaluated"], result["by_grade"],
                               result["downgrades"])  # fmt: skip
    return result


@task(name="compute-kpis", **STEP)
def kpi_task(period: str, now: datetime, engine: Engine | None = None):
    return compute_kpis(for_writing(engine or get_engine()), get_settings(), period, now)


@task(name="score-carriers", **STEP)
def carriers_task(month: str, now: datetime, engine: Engine | None = None) -> dict:
    return assess_carriers(for_writing(engine or get_engine()), get_settings(), month, now)


@task(name="anonymise-expired", **STEP)
def anonymise_task(now: datetime, engine: Engine | None = None) -> dict:
    return anonymise_expired(for_writing(engine or get_engine()), get_settings(), now)


@task(name="check-legal-rules", **STEP)
def legal_task(period: str, now: datetime, engine: Engine | None = None) -> dict:
    return assess_legal(for_writing(engine or get_engine()), get_settings(), period, now)


@task(name="assess-receivables", **STEP)
def receivables_task(now: datetime, period_ends: list, engine: Engine | None = None) -> dict:
    """Receivables risk; the ageing trend from the ledger as it stood at each period end (settlement's as-of
    ledger, composed here because areas do not import each other)."""
    from tasks.settlement.receivables import ledger_plan
    from tasks.settlement.rules import end_of_business_day

    settings = get_settings()
    with (engine or get_engine()).connect() as conn:
        items = receivables.load_open(conn)
        ledgers = {end: ledger_plan(conn, settings.settlement, at=end_of_business_day(end)) for end in period_ends}
    return receivables.assess(items, now.astimezone(BUSINESS_TZ).date(), settings.risk.top_customers, ledgers)


def periods_due(now: datetime) -> list[str]:
    """The daily run's periods: the current month; the previous ISO week on Mondays; the previous month on the 1st."""
    today = now.astimezone(BUSINESS_TZ).date()
    periods = [period_of(today, "month")]
    if today.weekday() == 0:
        periods.append(period_of(today - timedelta(days=7), "week"))
    if today.day == 1:
        periods.append(period_of(today - timedelta(days=1), "month"))
    return periods


def _month_of(period: str, now: datetime) -> str:
    start, _end, kind = parse_period(period)
    return period if kind == "month" else period_of(start, "month")


def assessment(
    run: Run,
    *,
    period: str | None = None,
    now: datetime | None = None,
    engine: Engine | None = None,
    workbook: bool = True,
) -> dict:
    """The assessment's steps, in order; returns the headline figures and the tables people read."""
    now = now or utc_now()
    settings = get_settings()
    periods = [period] if period else periods_due(now)
    credit = run(credit_task, now, engine)
    kpis = {p: run(kpi_task, p, now, engine) for p in periods}
    main = kpis[periods[0]]
    carriers = run(carriers_task, _month_of(periods[0], now), now, engine)
    anonymised = run(anonymise_task, now, engine)
    legal = run(legal_task, periods[0], now, engine)
    ends = [min(parse_period(p)[1] - timedelta(days=1), now.astimezone(BUSINESS_TZ).date())
            for p in main.trend.columns if p not in ("kpi", "sparkline")]  # fmt: skip
    recv = run(receivables_task, now, ends, engine)
    kpi_rows = report.kpi_table(main.totals(), main.trend)
    summary = {"period": periods[0], "periods": periods, "credit": credit, "carriers": carriers, "legal": legal,
               "anonymised": anonymised, "receivables": recv, "kpis": kpi_rows}  # fmt: skip
    if workbook:
        path = (
            yidi_home()
            / settings.risk.report_dir
            / f"risk-{periods[0]}-{now.astimezone(BUSINESS_TZ):%Y%m%d-%H%M}.xlsx"
        )
        top = report.masked_customers(recv["top"]).assign(overdue_yuan=lambda f: f["overdue_fen"] / 100)
        report.write_workbook(path, {
            "KPIs": kpi_rows, "KPI values": main.values, "KPI trend": main.trend,
            "Top overdue": top.drop(columns=["overdue_fen"]), "Forecast": recv["forecast"],
            "Ageing trend": (recv["ageing_trend"] / 100).rename_axis("yuan by age at each period end").reset_index(),
        }, main.trend, credit["by_grade"], recv["ageing"])  # fmt: skip
        summary["workbook"] = str(path)
    return summary


@flow(name="assess-risk-and-kpis", flow_run_name=risk_name, log_prints=True)
def assess_risk_and_kpis(period: Period = None) -> dict:
    """Credit, KPIs, carriers, legal rules and receivables (K1–K4, E2).

    Args:
        period: The KPIs' period: a month YYYY-MM, an ISO week YYYY-Www or a day YYYY-MM-DD. Empty: this month.
    """
    require_store()
    summary = assessment(with_prefect, period=period)
    create_markdown_artifact(report.markdown(summary, summary["kpis"]), key="risk-assessment",
                             description=f"risk and KPIs {summary['period']}")  # fmt: skip
    create_table_artifact(_records(summary["kpis"]), key="kpis", description=f"KPIs {summary['period']}")
    top = report.masked_customers(summary["receivables"]["top"])
    create_table_artifact(_records(top), key="overdue-concentration", description="top customers by overdue")
    return {k: v for k, v in summary.items() if k not in ("kpis", "receivables")}


def _records(frame: pd.DataFrame) -> list[dict]:
    return [{k: (None if isinstance(v, float) and pd.isna(v) else v) for k, v in row.items()}
            for row in frame.astype(object).to_dict("records")]  # fmt: skip


def rederive_orders(records: pd.DataFrame) -> pd.DataFrame:
    """The orders raw intake records give today, through each channel's own parser and intake's normaliser
    (the audit's data-accuracy check; composed here because areas do not import each other)."""
    from connectors.registry import build_connector
    from tasks.intake.normalise import normalise

    pieces = []
    for channel, group in records.groupby("channel"):
        try:
            connector = build_connector(str(channel))
            normal = normalise(connector.parse(group.reset_index(drop=True)))
        except Exception as exc:  # noqa: BLE001 - a channel that cannot re-read counts as "raw missing"
            step_logger(__name__).warning(
                "audit: channel %s records could not be re-derived: %s", channel, exc
            )
            continue
        orders = normal.orders  # carries the order's own channel (a phone order arrives as a spreadsheet)
        pieces.append(orders if "channel" in orders else orders.assign(channel=str(channel)))
    return (
        pd.concat(pieces, ignore_index=True)
        if pieces
        else pd.DataFrame(columns=["channel", "channel_order_id"])
    )


@task(name="run-internal-audit", **STEP)
def audit_task(period: str, now: datetime, engine: Engine | None = None) -> dict:
    return run_audit(for_writing(engine or get_engine()), get_settings(), period, now, rederive=rederive_orders)


def audit(
    run: Run, *, period: str | None = None, now: datetime | None = None, engine: Engine | None = None
) -> dict:
    """The audit's steps: one, over the period (default: the previous month)."""
    now = now or utc_now()
    if period is None:
        first = now.astimezone(BUSINESS_TZ).date().replace(day=1)
        period = period_of(first - timedelta(days=1), "month")
    return run(audit_task, period, now, engine)


@flow(name="internal-audit", flow_run_name=audit_name, log_prints=True)
def internal_audit(period: Month = None) -> dict:
    """Monthly internal audit (E1).

    Args:
        period: The month audited, YYYY-MM. Empty: the previous month (Asia/Shanghai).
    """
    require_store()
    result = audit(with_prefect, period=period)
    by_check = "\n".join(f"| {c} | {n} |" for c, n in result["by_check"].items())
    create_markdown_artifact(
        f"# Internal audit {result['period']}\n- orders checked {result['orders']}, sample {result['sample']}, "
        f"new findings **{result['findings']}**, re-checked {result['rechecked']}, satisfaction "
        f"{result['satisfaction']}\n\n| check | breaches |\n|---|---:|\n{by_check}\n",
        key="internal-audit", description=f"audit {result['period']}")  # fmt: skip
    return result
