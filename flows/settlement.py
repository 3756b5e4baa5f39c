"""Settlement flows (A1, A2, K2).

``reconcile_settlements(source=None, period=None, file_path=None)``: daily after the providers publish their
bills (deployment ``reconcile-settlements-daily``, Asia/Shanghai), and on demand from the UI's Run form,
``prefect deployment run 'reconcile-settlements/reconcile-settlements-on-demand' -p file_path=…`` or
``yidi settlement reconcile FILE | --source S --period P``. It ingests the files (one given file, or every new
file in the inbox, optionally of one source), matches payment lines to orders, advances payment states, settles
delivered and paid orders, refreshes the receivables ledger, tracks discrepancy cases, takes dunning steps, and
publishes artifacts and an xlsx workbook for the period. Files that are refused are recorded and listed; the run
then ends Failed, after the rest of the work, so nobody mistakes a partial day for a clean one.

The step list is ``reconciliation`` (see ``flows.compose``): the flow runs it with ``with_prefect``; the CLI's
``--no-prefect`` and the tests with ``in_process``. Transaction scope: one transaction per step (per file for
the files, side by side on PostgreSQL inside a flow run; matching and the payment states it changes together; then settling, the receivables ledger, the
discrepancy cases, dunning and the run's record each on their own). A step that fails leaves the steps before it
committed, and every step is idempotent, so the next run picks up where this one stopped. The steps after the files
stay serial across overlapping runs and workers: each takes the advisory lock ``serial_transaction`` names first.

``settlement_analysis(weeks=None)``: the weekly settlement analysis with trends (A2).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

import pandas as pd
from pydantic import Field
from sqlalchemy import Connection, Engine

from flows.compose import (
    Run,
    all_settled,
    require_store,
    side_by_side,
    step_logger,
    store_for_steps,
    submitted,
    with_prefect,
)
from flows.naming import reconcile_name, run_name
from tasks.settlement.cases import current_conditions, sync_cases
from tasks.settlement.files import files_to_reconcile, ingest_payment_file, known_sources, refused_files
from tasks.settlement.payments import refresh_payment_states, run_matching, settle_paid_orders
from tasks.settlement.receivables import ledger_plan, refresh_receivables, take_dunning_steps
from tasks.settlement.report import (
    ageing_report,
    cases_by_class,
    masked_dunning,
    reconciliation_report,
    record_run,
    report_path,
    run_summary,
    summary_sheet,
    utc_bounds,
    weekly_trends,
    write_workbook,
)
from tasks.settlement.rules import business_today, end_of_business_day, parse_as_of, period_bounds
from tasks.settlement.store import fee_case_line_ids, latest_as_of, new_line_ids_since
from yidi.bulk import utc_now
from yidi.db import StoreAddress, engine_of, for_writing, get_engine, serial_section
from yidi.lifecycle import current_actor
from yidi.money import yuan_text
from yidi.settings import Settings, get_settings
from yidi.steps import NO_CACHE, create_markdown_artifact, create_table_artifact, flow, task


def _records(frame: pd.DataFrame) -> list[dict]:
    """JSON-safe rows for a table artifact (NaN as null, timestamps as ISO text)."""
    return json.loads(frame.to_json(orient="records", force_ascii=False, date_format="iso"))


@task(name="ingest-payment-file", cache_policy=NO_CACHE)
def ingest_file_task(
    path: str,
    source: str | None,
    now: datetime,
    actor: str,
    retry_rejected: bool,
    store: Engine | StoreAddress | None = None,
    settings: Settings | None = None,
) -> dict:
    """One file, whole or not at all, in one transaction. ``store`` and ``settings`` are the flow run's: in a Dask
    worker process (``[runtime] task_runner = "dask"``) the store arrives as its address, opened once per process
    (``engine_of``), and the policy as the flow run read it, not the worker's own environment."""
    with for_writing(engine_of(store) if store is not None else get_engine()).begin() as conn:
        result = ingest_payment_file(
            conn,
            path,
            source=source,
            settings=settings or get_settings(),
            actor=actor,
            now=now,
            retry_rejected=retry_rejected,
        )
    if result["status"] == "rejected":
        step_logger(__name__).error("%s", result["error"])
    else:
        step_logger(__name__).info("%s: %s (%s new lines)", result["file"], result["status"], result.get("new_lines", 0))
    return result


@contextmanager
def serial_transaction(engine: Engine | None) -> Iterator[Connection]:
    """A step's transaction that overlapping runs take in turns (``yidi.db.serial_section``): matching reads every
    unmatched line and writes its matches and payment events, so two runs matching the same lines at once would
    both record the same payment; settling, the ledger, the cases and dunning read what matching wrote. The steps
    stay one pass each (the matcher compares every line with every candidate order at once, so a line and its
    order could fall into different chunks); side by side are only the files."""
    with for_writing(engine or get_engine()).begin() as conn:
        serial_section(conn, "settlement")
        yield conn


@task(name="match-payments", cache_policy=NO_CACHE)
def match_task(now: datetime, actor: str, engine: Engine | None = None, at: datetime | None = None,
               write_states: bool = True) -> dict:  # fmt: skip
    """Match unmatched lines (dated up to ``at``) and advance the orders' payment states, in one transaction."""
    policy = get_settings().settlement
    with serial_transaction(engine) as conn:
        matching = run_matching(conn, policy, actor=actor, now=now, at=at)
        new_matches = matching.pop("new_matches", None)
        matching.pop("order_ids", None)
        matching["payment_states"] = (
            refresh_payment_states(conn, policy, actor=actor, now=now, new_matches=new_matches, at=at)
            if write_states else {"changed": 0, "events": 0, "by_state": {}, "skipped": "store is at a later date"}
        )  # fmt: skip
    return matching


@task(name="settle-paid-orders", cache_policy=NO_CACHE)
def settle_task(actor: str, engine: Engine | None = None) -> dict:
    with serial_transaction(engine) as conn:
        return settle_paid_orders(conn, actor=actor)


@task(name="refresh-receivables", cache_policy=NO_CACHE)
def receivables_task(now: datetime, engine: Engine | None = None, at: datetime | None = None) -> dict:
    with serial_transaction(engine) as conn:
        return refresh_receivables(conn, get_settings().settlement, now=now, at=at)


@task(name="sync-discrepancy-cases", cache_policy=NO_CACHE)
def cases_task(now: datetime, actor: str, engine: Engine | None = None, at: datetime | None = None) -> dict:
    """Cases as of ``at`` (default ``now``) opened, updated and cleared; the case history is stamped ``now``."""
    settings = get_settings()
    at = at or now
    with serial_transaction(engine) as conn:
        conditions, scopes = current_conditions(
            conn, settings, today=business_today(at), now=at, new_line_ids=new_line_ids_since(conn, now), at=at
        )
        return sync_cases(conn, conditions, scopes, settings.settlement, now=now, actor=actor)


@task(name="dunning", cache_policy=NO_CACHE)
def dunning_task(now: datetime, actor: str, engine: Engine | None = None, at: datetime | None = None) -> dict:
    with serial_transaction(engine) as conn:
        return take_dunning_steps(conn, get_settings(), today=business_today(at or now), now=now, actor=actor)


@task(name="settlement-report", cache_policy=NO_CACHE)
def report_task(
    period: str | None, now: datetime, run: dict, engine: Engine | None = None, as_of: date | None = None
) -> tuple[dict, dict]:
    """The run's summary and the period's report tables; the finance workbook (full values) is written.

    As of a day, the ledger, cases and dunning list are computed for the end of that day from the facts dated
    up to then (not read from the store, which a later run may have moved on), so a close re-run gives the same
    report; the default period is then that day."""
    settings = get_settings()
    today = as_of + timedelta(days=1) if as_of else business_today(now)
    start, end, label = period_bounds(period, today)
    with (engine or get_engine()).connect() as conn:
        view = None
        if as_of:
            at = end_of_business_day(as_of)
            plan = ledger_plan(conn, settings.settlement, at=at)
            conditions, _ = current_conditions(conn, settings, today=as_of, now=at, plan=plan, at=at,
                                               new_line_ids=fee_case_line_ids(conn, at))  # fmt: skip
            view = {"plan": plan, "conditions": conditions}
        report = reconciliation_report(conn, settings, start=start, end=end, today=as_of or today, view=view)
    summary = run_summary(report, run, label)
    if as_of:
        summary["as_of"] = f"{as_of.isoformat()} 24:00 Asia/Shanghai"
    name = f"settlement-{label}" + (f"-as-of-{as_of:%Y%m%d}" if as_of else "")
    workbook = write_workbook({"summary": summary_sheet(summary), **report}, report_path(settings, f"{name}.xlsx"))
    summary["workbook"] = str(workbook)
    return summary, report


@task(name="publish-settlement-report", cache_policy=NO_CACHE)
def publish_task(summary: dict, report: dict, run: dict, now: datetime) -> None:
    """Artifacts for the Prefect UI: the summary, match rates, discrepancies, ageing, the dunning list (masked)."""
    label, files, today = summary["period"], run["files"], business_today(now)
    rejected = [f for f in files if f["status"] == "rejected"]
    match_rate = summary["match_rate"]
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
        f"{run['cases']['reopened']} reopened; open amount {yuan_text(summary['open_cases_fen'], grouping=True)} 元",
        f"- overdue receivables: {yuan_text(summary['overdue_fen'], grouping=True)} 元; dunning steps taken: {run['dunning']['actions']} "
        f"({run['dunning']['notices']} notices queued)",
        f"- finance workbook: `{summary['workbook']}`",
    ]
    create_markdown_artifact(
        "\n".join(markdown), key="settlement-summary", description=f"Reconciliation {label}"
    )
    create_table_artifact(
        _records(report["match_rates"]),
        key="settlement-match-rate",
        description=f"Match rate by source, {label}",
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


@task(name="record-settlement-run", cache_policy=NO_CACHE)
def record_run_task(
    started: datetime,
    actor: str,
    source: str | None,
    period: str | None,
    summary: dict,
    engine: Engine | None = None,
    at: datetime | None = None,
) -> None:
    with for_writing(engine or get_engine()).begin() as conn:
        record_run(conn, started=started, actor=actor, source=source, period=period, summary=summary, as_of=at)


@task(name="check-as-of", cache_policy=NO_CACHE)
def store_date_task(engine: Engine | None = None) -> datetime | None:
    """The moment the store's states, ledger and cases were last brought to."""
    with (engine or get_engine()).connect() as conn:
        return latest_as_of(conn)


SKIPPED = {"skipped": "the store is reconciled to a later date; this run reports as of its date"}


def reconciliation(
    run: Run,
    *,
    files: list[Path],
    source: str | None = None,
    period: str | None = None,
    now: datetime | None = None,
    actor: str | None = None,
    retry_rejected: bool = False,
    publish: bool = False,
    engine: Engine | None = None,
    as_of: date | None = None,
) -> dict:
    """The reconciliation's steps, in order, one transaction each: take in ``files``, match and advance payment
    states, settle, refresh receivables, sync discrepancy cases, dunning, report, record the run.

    ``retry_rejected``: parse files refused before again (a file named explicitly) instead of only listing them
    (inbox runs). ``publish``: the report's Prefect artifacts too (flow runs; there is no UI in process).
    ``as_of``: compute states, ageing, cases and dunning as of the end of that business day (Asia/Shanghai), from
    the facts dated up to then; when a later run has already brought the store past that moment, the store's
    states, ledger, cases and dunning are left as they are and only the report is computed as of the day (a
    month-end close re-run later gives the same result and disturbs nothing).
    Returns the steps' results and the report's summary; refused files are in ``files``, not raised.
    """
    now = now or utc_now()
    actor = actor or current_actor()
    if as_of and as_of > business_today(now):
        raise ValueError(f"as-of date {as_of} is in the future (today is {business_today(now)}, Asia/Shanghai)")
    at = end_of_business_day(as_of) if as_of else now
    # Files side by side (issue 17): each is one transaction of its own, unique by content, so two files (or two
    # runs taking the same file) never write the same payment line; on SQLite and in process one after another.
    file_run = side_by_side(run, engine or get_engine())
    store = store_for_steps(engine or get_engine()) if file_run is submitted else engine
    settings = get_settings()
    ingested = all_settled([file_run(ingest_file_task, str(f), source, now, actor, retry_rejected, store, settings)
                            for f in files])
    reached = run(store_date_task, engine)
    current = reached is None or at >= reached
    result = {
        "files": ingested,
        "matching": run(match_task, now, actor, engine, at, current),
        "settled": run(settle_task, actor, engine) if current else {"settled": 0, **SKIPPED},
        "receivables": run(receivables_task, now, engine, at) if current else SKIPPED,
        "cases": run(cases_task, now, actor, engine, at) if current else {
            "opened": 0, "updated": 0, "auto_resolved": 0, "reopened": 0, **SKIPPED},
        "dunning": run(dunning_task, now, actor, engine, at) if current else {
            "overdue_parties": 0, "actions": 0, "notices": 0, **SKIPPED},
    }  # fmt: skip
    summary, report = run(report_task, period, now, result, engine, as_of)
    if publish:
        run(publish_task, summary, report, result, now)
    run(record_run_task, now, actor, source, period, summary, engine, at if current else reached)
    return {**result, "report": summary}


def _source_choices() -> tuple[str, ...]:
    """The sources the Run form offers (the policy at deploy/import time; the defaults if it cannot be read)."""
    try:
        return tuple(known_sources(get_settings()))
    except Exception:  # noqa: BLE001 - a broken policy file is reported by the run itself, not at import
        from yidi.settings import Settings

        return tuple(known_sources(Settings()))


# The Run form's choices and hints (issue 15): an enumeration of sources, the period's formats with examples. The
# descriptions come from the flow's docstring (its Args section: Prefect reads them from there).
Source = Literal[_source_choices()]  # type: ignore[valid-type]
SourceParam = Annotated[Source | None, Field(examples=["wechatpay", "bank:icbc"])]
PeriodParam = Annotated[str | None, Field(examples=["2026-11-30", "2026-11", "2026-W48", "2026-11-01..2026-11-15"])]
FileParam = Annotated[str | None, Field(examples=["/srv/yidi/settlement/inbox/alipay/20881234_20261130.csv"])]
AsOfParam = Annotated[str | None, Field(examples=["2026-11-30"])]


@flow(name="reconcile-settlements", log_prints=True, flow_run_name=reconcile_name)
def reconcile_settlements(
    source: SourceParam = None, period: PeriodParam = None, file_path: FileParam = None,
    as_of: AsOfParam = None,
) -> dict:
    """Reconcile payment files against orders.

    Args:
        source: Which payment files: one provider (alipay, wechatpay), every bank (bank) or one bank template
            (bank:icbc), every COD carrier (cod) or one (cod:shunfeng). Empty: every source.
        period: The report's period: a day YYYY-MM-DD, a month YYYY-MM, an ISO week YYYY-Www, or a range A..B.
            Empty: yesterday (Asia/Shanghai).
        file_path: One file to reconcile instead of the inbox (a path the worker can read).
        as_of: A day YYYY-MM-DD: states, ageing, cases and dunning as of the end of that day (Asia/Shanghai),
            e.g. a month-end close; re-running it later gives the same result. Empty: now.
    """
    require_store()
    day = parse_as_of(as_of)  # a bad date or period fails before any work
    period_bounds(period, day or business_today())
    files = files_to_reconcile(get_settings(), source, file_path)
    # a file named explicitly is always parsed again; an inbox file refused before is only listed
    result = reconciliation(with_prefect, files=files, source=source, period=period,
                            retry_rejected=bool(file_path), publish=True, as_of=day)  # fmt: skip
    report = result["report"]
    rate = report.get("match_rate")
    step_logger(__name__).info(
        "reconciled %s: files %s ingested, %s already known, %s rejected; new lines %s, matched %s (match rate %s); "
        "settled %s; workbook %s", report.get("period"), report.get("files_ingested"), report.get("files_duplicate"),
        report.get("files_rejected"), report.get("new_lines"), report.get("matched_lines"),
        "n/a" if rate is None else f"{rate:.1%}", report.get("settled"), report.get("workbook"))  # fmt: skip
    failure = refused_files(result["files"])
    if failure:
        raise failure
    return result


@flow(name="settlement-analysis", log_prints=True, flow_run_name=run_name("settlement analysis", "weeks", when="%Y-%m-%d"))
def settlement_analysis(weeks: Annotated[int | None, Field(ge=1, le=104, examples=[8])] = None) -> dict:
    """Weekly settlement analysis (A2): trends of money in, match rate, discrepancies and overdue receivables.

    Args:
        weeks: How many ISO weeks back, up to the current one. Empty: the policy's.
    """
    require_store()
    settings = get_settings()
    today = business_today()
    with get_engine().connect() as conn:
        trends = weekly_trends(conn, settings, today, weeks)
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
