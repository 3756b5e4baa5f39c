"""Risk, KPI and audit commands (issue 13): ``yidi risk run|credit|override|carriers``, ``yidi kpi``,
``yidi audit run|list|show|resolve|verify|close``.

Registered on the main CLI by the one import line in ``app/cli/main.py``'s area block. Money in yuan, times in
Beijing time (labelled), customer names masked in listings.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table as RichTable

from app.cli.common import (
    LIMIT_HELP,
    JsonOut,
    PrefectChoice,
    aware_now,
    cli,
    console,
    emit_json,
    engine_or_exit,
    fail,
    local_time,
    shown_of_total,
    use_prefect,
)

risk = typer.Typer(
    help="Risk assessment: credit grades, carriers, legal rules, receivables.", no_args_is_help=True
)
audit_app = typer.Typer(help="Internal audit (E1) and its findings.", no_args_is_help=True)
cli.add_typer(risk, name="risk")
cli.add_typer(audit_app, name="audit")

AS_OF = Annotated[datetime | None, typer.Option("--as-of", help="Act as if it were this time (Beijing time)")]
PERIOD = Annotated[str | None, typer.Option("--period", "-p", help="YYYY-MM, YYYY-Www or YYYY-MM-DD")]


def _period_or_exit(period: str | None) -> None:
    from tasks.risk.periods import PeriodError, parse_period

    if period:
        try:
            parse_period(period)
        except PeriodError as exc:
            raise fail(str(exc)) from None  # exit 1, as every refused value (issue 15)


def _yuan(fen) -> str:
    from yidi.money import yuan_text

    return yuan_text(int(fen), grouping=True, symbol=True)


@risk.command("run")
def run_assessment(
    period: PERIOD = None, as_of: AS_OF = None, prefect: PrefectChoice = None, json_out: JsonOut = False
) -> None:
    """Run the assessment now (the `assess-risk-and-kpis` flow) and print its headline figures."""
    _period_or_exit(period)
    if use_prefect(prefect):
        from flows.risk import assess_risk_and_kpis

        summary = assess_risk_and_kpis(period=period)
        if json_out:
            emit_json(summary)
        else:
            console.print(f"assessment {summary['period']} done; workbook {summary.get('workbook')}")
        return
    from flows.compose import in_process
    from flows.risk import assessment

    summary = assessment(in_process, period=period, now=aware_now(as_of), engine=engine_or_exit())
    if json_out:
        out = {k: v for k, v in summary.items() if k not in ("kpis", "receivables")}
        recv = summary["receivables"]
        out["receivables"] = {"exposure_fen": recv["exposure_fen"], "overdue_fen": recv["overdue_fen"],
                              "top_share_pct": recv["top_share_pct"]}  # fmt: skip
        out["kpis"] = summary["kpis"].to_dict("records")
        emit_json(out)
        return
    print_headlines(summary)


def print_headlines(summary: dict) -> None:
    """The assessment's headline figures at 80 columns (also printed by `make demo`)."""
    credit, carriers, recv = summary["credit"], summary["carriers"], summary["receivables"]
    grades = " ".join(f"{g}:{n}" for g, n in credit["by_grade"].items())
    console.print(f"[bold]Risk and KPIs {summary['period']}[/bold]")
    console.print(f"  credit       {credit['evaluated']} customers ({grades}), {credit['downgrades']} down")
    console.print(f"  carriers     {carriers['month']}: {carriers['routes']} routes, {carriers['penalised']} penalised, "
                  f"{carriers['excluded']} excluded")  # fmt: skip
    console.print(f"  uninsured    {carriers['uninsured']} high-value shipments")
    for code, count in summary["legal"]["violations"].items():
        if count:
            console.print(f"  legal        {code}: {count} orders")
    console.print(
        f"  receivables  exposure {_yuan(recv['exposure_fen'])}, overdue {_yuan(recv['overdue_fen'])}"
    )
    console.print(f"  overdue top  {recv['top_share_pct']:.1f} % owed by the top customers")
    print_kpis(summary["kpis"])
    if summary.get("workbook"):
        console.print(f"  workbook    {summary['workbook']}", soft_wrap=True)


def print_kpis(kpis) -> None:
    table = RichTable(show_edge=False, pad_edge=False)
    for column, justify in (("KPI", "left"), ("value", "right"), ("target", "right"), ("status", "left"),
                            ("trend", "left")):  # fmt: skip
        table.add_column(column, justify=justify)
    for r in kpis.itertuples(index=False):
        table.add_row(r.kpi, "—" if r.value is None else f"{r.value:g}", "—" if r.target is None else f"{r.target:g}",
                      r.status, r.trend)  # fmt: skip
    console.print(table)


@cli.command("kpi")
def kpi(period: PERIOD = None, as_of: AS_OF = None, json_out: JsonOut = False) -> None:
    """KPIs of a period (default: this month) against their targets, with the trend."""
    from tasks.risk.kpi_run import compute_kpis
    from tasks.risk.periods import default_period
    from tasks.risk.report import kpi_table
    from yidi.settings import get_settings

    _period_or_exit(period)
    now = aware_now(as_of)
    result = compute_kpis(engine_or_exit(), get_settings(), period or default_period(now), now)
    rows = kpi_table(result.totals(), result.trend)
    if json_out:
        values = result.values.astype(object).where(result.values.notna(), None)
        emit_json(
            {"period": result.period, "kpis": rows.to_dict("records"), "values": values.to_dict("records")}
        )
        return
    console.print(f"[bold]KPIs {result.period}[/bold] (trend: last {len(result.trend.columns) - 2} periods)")
    print_kpis(rows)


@risk.command("credit")
def credit(
    customer: Annotated[str | None, typer.Argument(help="Customer code or id: its history")] = None,
    json_out: JsonOut = False,
) -> None:
    """Current credit grades (worst first), or one customer's evaluations, factors and overrides."""
    from tasks.risk import credit_store
    from tasks.risk.credit import explain
    from yidi.masking import mask_name

    engine = engine_or_exit()
    with engine.connect() as conn:
        if customer is None:
            grades = credit_store.grade_table(conn)
            if json_out:
                emit_json(grades.to_dict("records"))
                return
            table = RichTable(show_edge=False, pad_edge=False)
            for column in ("customer", "name", "score", "grade", "evaluated (Beijing)"):
                table.add_column(column)
            for r in grades.itertuples(index=False):
                table.add_row(
                    r.code, mask_name(r.name), f"{r.score:.1f}", r.grade, local_time(r.evaluated_at)
                )
            console.print(table)
            return
        row = credit_store.customer_by_ref(conn, customer)
        if row is None:
            raise fail(f"no customer {customer!r}")
        history = credit_store.history_of(conn, int(row["id"]))
        overrides = credit_store.overrides_of(conn, int(row["id"]))
    if json_out:
        emit_json({"customer": row["code"], "history": history.to_dict("records"),
                   "overrides": overrides.to_dict("records")})  # fmt: skip
        return
    console.print(f"[bold]{row['code']}[/bold] {mask_name(row['name'])}")
    for r in history.head(5).itertuples(index=False):
        console.print(f"  {local_time(r.evaluated_at)} (Beijing)  score {r.score:.1f}  grade {r.grade}"
                      f"{'' if not r.previous_grade else f'  (was {r.previous_grade})'}")  # fmt: skip
    if len(history):
        for label, value, contribution in explain(json.loads(history.iloc[0]["factors"])):
            console.print(f"    {contribution:+7.2f}  {label} = {value:g}")
    for r in overrides.itertuples(index=False):
        console.print(
            f"  override → {r.grade} by {r.actor} until {local_time(r.expires_at)} (Beijing): {r.reason}"
        )


@risk.command("override")
def override(
    customer: str,
    grade: str,
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded)")],
    days: Annotated[int, typer.Option("--days", help="Expires after this many days")] = 30,
    by: Annotated[str, typer.Option("--as", "--by", help="A listed manager's name or login (default: your login)")]
    = "",
    as_of: AS_OF = None,
) -> None:
    """A manager's grade override for a customer, with a reason; it expires by itself."""
    from tasks.risk.credit_steps import OverrideError, override_grade
    from yidi.settings import get_settings

    actor = _staff_or_exit("override_grade", by, f"the grade of {customer} is unchanged")
    try:
        result = override_grade(engine_or_exit(), get_settings(), customer, grade.upper(), reason, actor, days,
                                aware_now(as_of))  # fmt: skip
    except OverrideError as exc:
        raise fail(str(exc), 2) from None
    console.print(
        f"{result['customer']}: grade {result['grade']} until {local_time(result['expires_at'])} (Beijing)"
    )


@risk.command("carriers")
def carriers(
    month: Annotated[str | None, typer.Option("--month", help="YYYY-MM")] = None, json_out: JsonOut = False
) -> None:
    """The carrier scorecard: routes (carrier → province) with their on-time and damage rates and status."""
    from tasks.risk.carriers_store import stored_scores

    with engine_or_exit().connect() as conn:
        scores = stored_scores(conn, month)
    if json_out:
        emit_json(scores.astype(object).where(scores.notna(), None).to_dict("records"))
        return
    table = RichTable(show_edge=False, pad_edge=False)
    for column in ("month", "carrier", "province", "ships", "on-time", "dmg+loss", "status"):
        table.add_column(column)
    for r in scores.itertuples(index=False):
        on_time = (
            "—" if r.on_time_rate is None or r.on_time_rate != r.on_time_rate else f"{r.on_time_rate:.0%}"
        )
        table.add_row(r.month, r.carrier, r.province, str(r.shipments), on_time,
                      f"{r.damage_rate + r.loss_rate:.1%}", r.status)  # fmt: skip
    console.print(table)


@audit_app.command("run")
def audit_run(period: PERIOD = None, as_of: AS_OF = None, json_out: JsonOut = False) -> None:
    """Run the internal audit now (default: the previous month) in this process."""
    from flows.compose import in_process
    from flows.risk import audit

    _period_or_exit(period)
    result = audit(in_process, period=period, now=aware_now(as_of), engine=engine_or_exit())
    if json_out:
        emit_json(result)
        return
    again = result["rechecked"]
    console.print(f"[bold]Internal audit {result['period']}[/bold]: {result['orders']} orders, sample "
                  f"{result['sample']}, {result['findings']} new findings")  # fmt: skip
    console.print(f"  re-checked: {again['verified']} verified, {again['still_failing']} still failing "
                  f"({again['reopened']} back to open)")  # fmt: skip
    for check, count in result["by_check"].items():
        if count:
            console.print(f"  {check:<26} {count}")


@audit_app.command("list")
def audit_list(
    state: Annotated[
        list[str] | None, typer.Option("--state", help="open, rectifying, verified, closed")
    ] = None,
    source: Annotated[str | None, typer.Option("--source", help="audit, legal, carrier")] = None,
    limit: Annotated[int, typer.Option(min=1, help=LIMIT_HELP)] = 50,
    json_out: JsonOut = False,
) -> None:
    """Findings (default: open and rectifying), earliest due first."""
    from tasks.risk.findings import listing

    with engine_or_exit().connect() as conn:
        rows = listing(conn, state or ["open", "rectifying"], source)
    total, rows = len(rows), rows.head(limit)
    if json_out:
        emit_json(rows.to_dict("records"))
        return
    table = RichTable(show_edge=False, pad_edge=False)
    for column in ("id", "check", "sev", "state", "due"):
        table.add_column(column, no_wrap=True)
    for r in rows.itertuples(index=False):
        table.add_row(str(r.id), r.check_code, r.severity, r.state, str(r.due_date))
    console.print(table)
    console.print(shown_of_total(len(rows), total, "earliest due first"), highlight=False)
    console.print("`yidi audit show ID` for what, where and the history", style="dim")


@audit_app.command("show")
def audit_show(finding_id: int, json_out: JsonOut = False) -> None:
    """One finding with its history."""
    import pandas as pd

    from tasks.risk.findings import history, listing

    with engine_or_exit().connect() as conn:
        rows = listing(conn)
        found = rows[rows["id"] == finding_id]
        if found.empty:
            raise fail(f"no finding {finding_id}")
        events = history(conn, finding_id)
    row = found.iloc[0]
    if json_out:
        emit_json({"finding": row.to_dict(), "history": events.to_dict("records")})
        return
    console.print(
        f"[bold]#{finding_id} {row['check_code']}[/bold] ({row['source']}, {row['severity']}) {row['state']}"
    )
    console.print(f"  {row['summary']}", soft_wrap=True)
    console.print(f"  owner {row['owner']}, due {row['due_date']}, period {row['period']}")
    if pd.notna(row["order_id"]):
        console.print(f"  order {int(row['order_id'])} (`yidi order show {int(row['order_id'])}`)")
    details = json.loads(row["details"]) if isinstance(row["details"], str) else {}
    if details.get("order_ids"):
        console.print(f"  orders ({details.get('orders')}): {', '.join(map(str, details['order_ids'][:20]))}",
                      soft_wrap=True)  # fmt: skip
    for example in details.get("examples", []):
        console.print(f"    {example}", soft_wrap=True)
    if row["recheck_result"]:
        console.print(f"  last re-check {local_time(row['rechecked_at'])} (Beijing): {row['recheck_result']}")
    for e in events.itertuples(index=False):
        console.print(f"  {local_time(e.occurred_at)} {e.actor}: {e.action} {e.note or ''}")


def _staff_or_exit(action: str, who: str, unchanged: str) -> str:
    """The acting listed person as the log records them (``role:name``), or exit 1 naming the role needed."""
    from yidi.settings import get_settings
    from yidi.staff import NotPermitted, act_as

    try:
        return act_as(get_settings().staff, action, who).text
    except NotPermitted as exc:
        raise fail(f"{exc} ({unchanged})") from None


def _move(finding_id: int, to_state: str, by: str, note: str | None, as_of) -> None:
    from tasks.risk.findings import FindingError, move

    action = "audit_resolve" if to_state == "rectifying" else "audit_verify"
    actor = _staff_or_exit(action, by, f"finding #{finding_id} unchanged")
    try:
        with engine_or_exit().begin() as conn:
            result = move(conn, finding_id, to_state, actor, note, aware_now(as_of))
    except FindingError as exc:
        raise fail(str(exc), 2) from None
    console.print(f"finding #{finding_id}: {result['from']} → {result['to']}")


NOTE = Annotated[str | None, typer.Option("--note", help="What was done")]
BY = Annotated[str, typer.Option("--as", "--by", help="A listed person's name or login (default: your login)")]


@audit_app.command("resolve")
def audit_resolve(finding_id: int, note: NOTE = None, by: BY = "", as_of: AS_OF = None) -> None:
    """The fix is in: open → rectifying (the next run re-checks it)."""
    _move(finding_id, "rectifying", by, note, as_of)


@audit_app.command("verify")
def audit_verify(finding_id: int, note: NOTE = None, by: BY = "", as_of: AS_OF = None) -> None:
    """An auditor confirms the fix: rectifying → verified."""
    _move(finding_id, "verified", by, note, as_of)


@audit_app.command("close")
def audit_close(finding_id: int, note: NOTE = None, by: BY = "", as_of: AS_OF = None) -> None:
    """Close a finding without verification (accepted risk, false positive): a note is required."""
    _move(finding_id, "closed", by, note, as_of)
