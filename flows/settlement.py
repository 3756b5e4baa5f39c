"""Settlement flows (A1, A2, K2).

``reconcile_settlements(source=None, period=None, file_path=None)``: daily after the providers publish their
bills (deployment ``reconcile-settlements-daily``, Asia/Shanghai), and on demand from the UI's Run form,
``prefect deployment run 'reconcile-settlements/reconcile-settlements-on-demand' -p file_path=…`` or
``yidi reconcile FILE | --source S --period P``. It ingests the files (one given file, or every new file in the
inbox, optionally of one source), matches payment lines to orders, advances payment states, settles delivered and
paid orders, refreshes the receivables ledger, tracks discrepancy cases, takes dunning steps, and publishes
artifacts and an xlsx workbook for the period. Files that are refused are recorded and listed; the run then
ends Failed, after the rest of the work, so nobody mistakes a partial day for a clean one.

``settlement_analysis(weeks=None)``: the weekly settlement analysis with trends (A2).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from tasks.settlement.report import (
    masked_dunning,
    reconciliation_report,
    report_path,
    weekly_trends,
    write_workbook,
)
from tasks.settlement.rules import period_bounds, yuan
from tasks.settlement.steps import (
    ReconciliationFailed,
    business_today,
    current_conditions,
    inbox_files,
    ingest_payment_file,
    new_line_ids_since,
    refresh_payment_states,
    refresh_receivables,
    run_matching,
    settle_paid_orders,
    sync_cases,
    take_dunning_steps,
)
from yidi.bulk import insert_rows, utc_now
from yidi.db import get_engine
from yidi.lifecycle import current_actor
from yidi.schema_settlement import settlement_runs
from yidi.settings import get_settings


def _records(frame: pd.DataFrame) -> list[dict]:
    return json.loads(frame.to_json(orient="records", force_ascii=False, date_format="iso"))


@task(name="ingest-payment-file", cache_policy=NO_CACHE)
def ingest_file_task(path: str, source: str | None, now: datetime, actor: str, retry_rejected: bool) -> dict:
    result = ingest_payment_file(
        get_engine(),
        path,
        source=source,
        settings=get_settings(),
        actor=actor,
        now=now,
        retry_rejected=retry_rejected,
    )
    logger = get_run_logger()
    if result["status"] == "rejected":
        logger.error("%s", result["error"])
    else:
        logger.info("%s: %s (%s new lines)", result["file"], result["status"], result.get("new_lines", 0))
    return result


@task(name="match-payments", cache_policy=NO_CACHE)
def match_task(now: datetime, actor: str) -> dict:
    """Match unmatched lines and advance the orders' payment states, in one transaction."""
    policy = get_settings().settlement
    with get_engine().begin() as conn:
        matching = run_matching(conn, policy, actor=actor, now=now)
        new_matches = matching.pop("new_matches", None)
        matching.pop("order_ids", None)
        matching["payment_states"] = refresh_payment_states(
            conn, policy, actor=actor, now=now, new_matches=new_matches
        )
    return matching


@task(name="settle-paid-orders", cache_policy=NO_CACHE)
def settle_task(actor: str) -> dict:
    with get_engine().begin() as conn:
        return settle_paid_orders(conn, actor=actor)


@task(name="refresh-receivables", cache_policy=NO_CACHE)
def receivables_task(now: datetime) -> dict:
    with get_engine().begin() as conn:
        return refresh_receivables(conn, get_settings().settlement, now=now)


@task(name="track-discrepancies", cache_policy=NO_CACHE)
def cases_task(now: datetime, actor: str) -> dict:
    settings = get_settings()
    with get_engine().begin() as conn:
        conditions, scopes = current_conditions(
            conn, settings, today=business_today(now), now=now, new_line_ids=new_line_ids_since(conn, now)
        )
        return sync_cases(conn, conditions, scopes, settings.settlement, now=now, actor=actor)


@task(name="dunning", cache_policy=NO_CACHE)
def dunning_task(now: datetime, actor: str) -> dict:
    with get_engine().begin() as conn:
        return take_dunning_steps(conn, get_settings(), today=business_today(now), now=now, actor=actor)


@task(name="settlement-report", cache_policy=NO_CACHE)
def report_task(period: str | None, now: datetime, run: dict) -> dict:
    """Artifacts for the UI (names and phones masked) and the finance workbook (full values)."""
    settings = get_settings()
    today = business_today(now)
    start, end, label = period_bounds(period, today)
    with get_engine().connect() as conn:
        report = reconciliation_report(conn, settings, start=start, end=end, today=today)
    rates = report["match_rates"]
    overall = rates[rates["source"] == "all"]["match_rate"]
    match_rate = float(overall.iloc[0]) if len(overall) else None
    overdue_fen = int(report["ageing"].loc[report["ageing"]["bucket"] != "current", "outstanding_fen"].sum())
    files = run["files"]
    summary = {
        "period": label, "match_rate": match_rate, "files_ingested": sum(f["status"] == "ingested" for f in files),
        "files_duplicate": sum(f["status"] == "duplicate" for f in files),
        "files_rejected": sum(f["status"] == "rejected" for f in files),
        "files_rejected_before": sum(f["status"] == "rejected_before" for f in files),
        "new_lines": sum(int(f.get("new_lines") or 0) for f in files),
        "matched_lines": run["matching"]["matched_lines"], "by_rule": run["matching"]["by_rule"],
        "payment_state_changes": run["matching"]["payment_states"]["changed"],
        "settled": run["settled"]["settled"], "cases": run["cases"], "dunning": run["dunning"],
        "open_cases_fen": int(report["cases_by_class"][["open_fen", "explained_fen"]].sum().sum()),
        "overdue_fen": overdue_fen,
    }  # fmt: skip
    workbook = write_workbook(
        {"summary": pd.DataFrame([{"key": k, "value": json.dumps(v, ensure_ascii=False)} for k, v in summary.items()]),
         **report},
        report_path(settings, f"settlement-{label}.xlsx"),
    )  # fmt: skip
    summary["workbook"] = str(workbook)
    rejected = [f for f in files if f["status"] == "rejected"]
    rate_text = f"{match_rate:.1%}" if match_rate is not None else "n/a (no payment lines in the period)"
    markdown = [
        f"# Settlement reconciliation {label}",
        f"- match rate: **{rate_text}**; new lines {summary['new_lines']}, matched {summary['matched_lines']} "
        f"({', '.join(f'{k} {v}' for k, v in summary['by_rule'].items()) or 'none'})",
        f"- files: {summary['files_ingested']} ingested, {summary['files_duplicate']} already known, "
        f"**{summary['files_rejected']} rejected**"
        + (
            f" ({summary['files_rejected_before']} more refused earlier, still in the inbox)"
            if summary["files_rejected_before"]
            else ""
        ),
        *[f"  - `{f['file']}`: {f['error']}" for f in rejected],
        f"- payment states changed: {summary['payment_state_changes']}; orders settled: {summary['settled']}",
        f"- cases: {run['cases']['opened']} opened, {run['cases']['auto_resolved']} cleared, "
        f"{run['cases']['reopened']} reopened; open amount {yuan(summary['open_cases_fen'])} 元",
        f"- overdue receivables: {yuan(overdue_fen)} 元; dunning steps taken: {run['dunning']['actions']} "
        f"({run['dunning']['notices']} notices queued)",
        f"- finance workbook: `{workbook}`",
    ]
    create_markdown_artifact(
        "\n".join(markdown), key="settlement-summary", description=f"Reconciliation {label}"
    )
    create_table_artifact(
        _records(rates), key="settlement-match-rate", description=f"Match rate by source, {label}"
    )
    by_class = report["cases_by_class"][["case_class", "open", "explained", "open_amount_yuan", "opened_in_period",
                                          "resolved_in_period"]]  # fmt: skip
    create_table_artifact(
        _records(by_class), key="settlement-discrepancies", description="Discrepancies by class"
    )
    create_table_artifact(
        _records(report["ageing"][["bucket", "receivables", "outstanding_yuan"]]),
        key="settlement-ageing",
        description=f"Receivables ageing as of {today}",
    )
    dunning = masked_dunning(report["dunning"])
    if len(dunning):
        create_table_artifact(
            _records(dunning.head(200)), key="settlement-dunning", description="Dunning list (masked)"
        )
    return summary


@task(name="record-settlement-run", cache_policy=NO_CACHE)
def record_run_task(
    started: datetime, actor: str, source: str | None, period: str | None, summary: dict
) -> None:
    with get_engine().begin() as conn:
        insert_rows(
            conn, settlement_runs,
            pd.DataFrame([{"started_at": started, "finished_at": utc_now(), "actor": actor, "source": source,
                           "period": summary.get("period") or period, "summary": json.dumps(summary, ensure_ascii=False,
                                                                                             default=str)}]),
        )  # fmt: skip


@flow(name="reconcile-settlements", log_prints=True)
def reconcile_settlements(
    source: str | None = None, period: str | None = None, file_path: str | None = None
) -> dict:
    """Reconcile payment files against orders.

    source: alipay | wechatpay | bank | bank:<template> | cod | cod:<carrier> (default: every source).
    period: YYYY-MM-DD, YYYY-MM, YYYY-Www or A..B for the report (default: yesterday, Asia/Shanghai).
    file_path: one file to reconcile instead of the inbox.
    """
    settings = get_settings()
    period_bounds(period, business_today())  # a bad period fails before any work
    now = utc_now()
    actor = current_actor()
    if file_path:
        path = Path(file_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{file_path}: no such file")
        files = [path]
    else:
        files = inbox_files(settings, source)
    # a file named explicitly is always parsed again; an inbox file refused before is only listed
    ingested = [ingest_file_task(str(f), source, now, actor, bool(file_path)) for f in files]
    matching = match_task(now, actor)
    settled = settle_task(actor)
    receivables = receivables_task(now)
    cases = cases_task(now, actor)
    dunning = dunning_task(now, actor)
    run = {"files": ingested, "matching": matching, "settled": settled, "receivables": receivables, "cases": cases,
           "dunning": dunning}  # fmt: skip
    summary = report_task(period, now, run)
    record_run_task(now, actor, source, period, summary)
    rejected = [f for f in ingested if f["status"] == "rejected"]
    if rejected:
        raise ReconciliationFailed(
            f"{len(rejected)} of {len(files)} file(s) rejected (the rest was reconciled):\n"
            + "\n".join(f"  {f['error']}" for f in rejected)
        )
    return {**run, "report": summary}


@flow(name="settlement-analysis", log_prints=True)
def settlement_analysis(weeks: int | None = None) -> dict:
    """Weekly settlement analysis (A2): trends of money in, match rate, discrepancies and overdue receivables."""
    settings = get_settings()
    today = business_today()
    with get_engine().connect() as conn:
        trends = weekly_trends(conn, settings, today, weeks)
        from tasks.settlement.report import ageing_report, cases_by_class, utc_bounds

        start, end = utc_bounds(trends["week_start"].iloc[0], today)
        classes = cases_by_class(conn, start, end)
        ageing, per_customer = ageing_report(conn, settings, today)
    label = f"{trends['week'].iloc[0]}..{trends['week'].iloc[-1]}"
    workbook = write_workbook(
        {"trends": trends, "cases_by_class": classes, "ageing": ageing, "ageing_by_customer": per_customer},
        report_path(settings, f"settlement-analysis-{today:%Y%m%d}.xlsx"),
    )
    shown = trends[["week", "lines", "match_rate", "received_yuan", "refunded_yuan", "cases_opened", "cases_resolved",
                    "cases_open_at_week_end", "overdue_fen"]]  # fmt: skip
    create_table_artifact(
        _records(shown), key="settlement-weekly-trends", description=f"Settlement trends {label}"
    )
    last = trends.iloc[-1]
    previous = trends.iloc[-2] if len(trends) > 1 else last
    rate = "n/a" if pd.isna(last["match_rate"]) else f"{last['match_rate']:.1%}"
    markdown = (
        f"# Settlement analysis {label}\n"
        f"- this week: {int(last['lines'])} payment lines, match rate {rate}, received {last['received_yuan']} 元\n"
        f"- cases: {int(last['cases_opened'])} opened, {int(last['cases_resolved'])} resolved, "
        f"{int(last['cases_open_at_week_end'])} open (last week {int(previous['cases_open_at_week_end'])})\n"
        f"- open discrepancies by class: "
        + ", ".join(
            f"{r.case_class} {r.open + r.explained}" for r in classes.itertuples() if r.open + r.explained
        )
        + f"\n- workbook: `{workbook}`"
    )
    create_markdown_artifact(markdown, key="settlement-analysis", description=label)
    return {"weeks": len(trends), "workbook": str(workbook), "trends": _records(shown)}


@flow(name="settlement-demo", log_prints=True)
def settlement_demo(seed: int = 7) -> dict:
    """`make demo`: the stand-ins deliver the bills, statements and COD remittances for the orders in the store
    (with the usual troubles mixed in) into the settlement inbox; then the reconciliation and the weekly analysis
    run as subflows."""
    from sqlalchemy import select

    from demo.standins.payment_files import demo_payments, write_demo_files
    from tasks.settlement.steps import inbox_dir
    from yidi.bulk import read_frame
    from yidi.schema import orders, shipments

    with get_engine().connect() as conn:
        order_frame = read_frame(
            conn,
            select(
                orders.c.id, orders.c.order_no, orders.c.channel_order_id, orders.c.customer_name,
                orders.c.payment_method, orders.c.order_total_fen, orders.c.order_time, orders.c.state,
                orders.c.installments,
            ),
        )  # fmt: skip
        shipment_frame = read_frame(
            conn,
            select(shipments.c.order_id, shipments.c.carrier, shipments.c.waybill_no, shipments.c.cod_amount_fen,
                   shipments.c.delivered_at).where(shipments.c.waybill_no.is_not(None)),
        )  # fmt: skip
    frames = demo_payments(order_frame, shipment_frame, seed=seed)
    written = write_demo_files(frames, inbox_dir())
    print(f"stand-ins delivered {len(written)} payment files into {inbox_dir()}")
    days = pd.concat([pd.to_datetime(f["txn_time"], utc=True) for f in frames.values() if len(f)])
    local = days.dt.tz_convert("Asia/Shanghai").dt.date
    period = f"{local.min()}..{local.max()}" if len(local) else None
    reconciliation = reconcile_settlements(period=period)
    analysis = settlement_analysis()
    return {"files": len(written), "period": period, "report": reconciliation["report"],
            "analysis_workbook": analysis["workbook"]}  # fmt: skip
