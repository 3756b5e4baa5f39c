"""Settlement commands (issue 7): ``yidi settlement reconcile FILE | --source S --period P [--no-prefect]``,
``yidi settlement cases`` (list, show, explain, resolve, reopen, assign) and ``yidi settlement templates`` (the
bank and carrier file layouts in the policy file, issue 12).

``yidi reconcile`` and ``yidi cases …`` are hidden aliases for one release. Registered on the main CLI by the one
import line in ``app/cli/main.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table as RichTable

from app.cli.common import (
    PREFECT_OPTION_HELP,
    cli,
    console,
    emit_json,
    engine_or_exit,
    fail,
    regular_file,
    shown_of_total,
    use_prefect,
)

RENAMED = "renamed to `yidi settlement {}`; this name goes in the next release"
settlement_app = typer.Typer(help="Settlement: reconcile payment files against orders, discrepancy cases.",
                             no_args_is_help=True)  # fmt: skip
cases_app = typer.Typer(help="Settlement discrepancy cases: list, show, explain, resolve, reopen, assign.",
                        no_args_is_help=True)  # fmt: skip
settlement_app.add_typer(cases_app, name="cases")
cli.add_typer(settlement_app, name="settlement")
cli.add_typer(cases_app, name="cases", hidden=True, help=RENAMED.format("cases …"))


@settlement_app.command("reconcile")
def reconcile(
    file: Annotated[
        Path | None, typer.Argument(help="One bill/statement/remittance file")
    ] = None,
    source: Annotated[
        str | None,
        typer.Option("--source", "-s", help="alipay | wechatpay | bank[:KEY] | cod[:CARRIER] (default: all)"),
    ] = None,
    period: Annotated[
        str | None,
        typer.Option("--period", "-p", help="YYYY-MM-DD, YYYY-MM, YYYY-Www or A..B (default: yesterday)"),
    ] = None,
    prefect: Annotated[bool | None, typer.Option("--prefect/--no-prefect", help=PREFECT_OPTION_HELP)] = None,
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="YYYY-MM-DD: states, ageing, cases and dunning as of the end of that day "
                     "(Asia/Shanghai), e.g. a month-end close; the same result whenever it is re-run"),
    ] = None,  # fmt: skip
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Reconcile payments against orders now (the `reconcile-settlements` flow).

    With FILE: that file only. Without: every new file in the settlement inbox ($YIDI_HOME/settlement/inbox,
    one folder per source: alipay/, wechatpay/, bank-icbc/, cod-shunfeng/ …). Re-running on the same files or
    period changes nothing. Exit code 1 when a file was rejected (the rest is still reconciled).
    """
    from tasks.settlement.files import unknown_source
    from tasks.settlement.rules import business_today, parse_as_of, period_bounds

    try:
        day = parse_as_of(as_of)
        if day and day > business_today():
            raise ValueError(f"--as-of {day} is in the future (today is {business_today()}, Asia/Shanghai)")
        period_bounds(period, day or business_today())
    except ValueError as exc:
        raise fail(str(exc)) from None
    if unknown_source(source):  # seen: `--source bogus` exited 0 with "files 0 ingested"
        raise fail(unknown_source(source))
    file_path = str(regular_file(file)) if file else None
    engine = engine_or_exit()
    if use_prefect(prefect):
        result, failed = _reconcile_in_a_flow_run(source, period, file_path, day)
    else:
        result, failed = _reconcile_in_process(engine, source, period, file_path, day)
    if isinstance(result, BaseException):
        if json_out:
            emit_json({"status": "failed", "error": str(result)})
        from tasks.settlement.files import ReconciliationFailed

        if isinstance(result, ReconciliationFailed):
            raise fail(str(result))
        raise fail(f"reconciliation failed: {type(result).__name__}: {result}")
    if json_out:
        emit_json({"status": "failed" if failed else "completed", **result})
        return
    report = result["report"]
    rate = report["match_rate"]
    console.print(
        f"[bold]reconciliation {report['period']}[/bold]: match rate "
        f"{'n/a' if rate is None else f'{rate:.1%}'}; files {report['files_ingested']} ingested, "
        f"{report['files_duplicate']} already known, {report['files_rejected']} rejected"
        f"{' (+' + str(report['files_rejected_before']) + ' refused earlier)' if report['files_rejected_before'] else ''}; "
        f"new lines {report['new_lines']}, matched {report['matched_lines']}",
        highlight=False,
    )
    console.print(
        f"payment states changed {report['payment_state_changes']}, settled {report['settled']}; cases opened "
        f"{report['cases']['opened']}, cleared {report['cases']['auto_resolved']}; dunning steps "
        f"{report['dunning']['actions']} ({report['dunning']['notices']} notices)",
        highlight=False,
    )
    if report.get("as_of"):
        skipped = "skipped" in result["cases"]
        console.print(f"as of {report['as_of']}" + ("; the store is reconciled to a later date and was left as it "
                      "is (the report and workbook are as of this day)" if skipped else ""), highlight=False)  # fmt: skip
    console.print(f"workbook: {report['workbook']}", highlight=False)


cli.command("reconcile", hidden=True, help=RENAMED.format("reconcile"))(reconcile)


def _template_summary(kind: str, key: str, template) -> dict:
    """One template as plain data: what a person checks against a real export."""
    if kind == "bank":
        cols = template.columns
        amounts = {
            "debit_credit_columns": f"{cols.debit[0]} / {cols.credit[0]}" if cols.debit else "",
            "signed_amount_with_flag": f"{(cols.amount or [''])[0]} + {(cols.direction or [''])[0]}",
            "signed_amount": f"{(cols.amount or [''])[0]} (signed)",
        }[template.amount_convention]
        totals = [t for t, p in (("debit", template.debit_total_pattern), ("credit", template.credit_total_pattern),
                                 ("count", template.count_pattern)) if p]  # fmt: skip
        return {
            "source": f"bank:{key}", "name": template.bank_name, "encoding": template.encoding,
            "delimiter": template.delimiter, "header_row": template.header_row, "date_column": cols.date[0],
            "amounts": amounts, "amount_convention": template.amount_convention,
            "totals_checked": totals + (["totals row"] if template.totals_row_markers else []),
            "detect_words": template.detect_words, "footer_markers": template.footer_markers,
            "account_in_file": template.account_in_file, "shape": template.source_note,
            "columns": template.columns.model_dump(),
        }  # fmt: skip
    cols = template.columns
    amounts = " / ".join(c[0] for c in (cols.collected, cols.fee, cols.remitted) if c)
    return {
        "source": f"cod:{key}", "name": template.carrier_name, "encoding": template.encoding,
        "delimiter": template.delimiter, "header_row": template.header_row, "date_column": (cols.remit_date or
        ["(title line)"])[0], "amounts": amounts, "fee_sign": template.fee_sign,
        "status_column": (cols.status or [None])[0], "remitted_statuses": template.remitted_statuses,
        "pending_statuses": template.pending_statuses,
        "totals_checked": ["totals row"] + (["count"] if template.count_pattern else []),
        "detect_words": template.detect_words or [template.carrier_name],
        "footer_markers": template.footer_markers + template.totals_row_markers, "shape": template.source_note,
        "columns": template.columns.model_dump(),
    }  # fmt: skip


@settlement_app.command("templates")
def templates(
    source: Annotated[
        str | None, typer.Argument(help="One template in full: bank:KEY or cod:CARRIER (default: list all)")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """The bank statement and carrier COD remittance layouts yidi reads ([settlement.bank_templates] and
    [settlement.cod_templates] of the policy file; a key in yidi.toml replaces the shipped template whole)."""
    from yidi.settings import get_settings

    policy = get_settings().settlement
    rows = [_template_summary("cod", k, t) for k, t in policy.cod_templates.items()]
    rows += [_template_summary("bank", k, t) for k, t in policy.bank_templates.items()]
    if source:
        rows = [r for r in rows if r["source"] == source]
        if not rows:
            raise fail(f"no template {source!r}; `yidi settlement templates` lists them")
    if json_out:
        emit_json(rows if not source else rows[0])
        return
    if source:
        row = rows[0]
        for name, value in row.items():
            if name == "columns":
                console.print("columns:", highlight=False)
                for field, names in value.items():
                    if names:
                        console.print(f"  {field}: {', '.join(names)}", highlight=False)
            else:
                console.print(f"{name}: {value}", highlight=False)
        return
    table = RichTable(title="payment file templates (a yidi.toml key replaces one whole)", title_justify="left")
    table.add_column("source", no_wrap=True)
    for column in ("name", "amount columns", "totals", "shape"):
        table.add_column(column, overflow="fold")
    for row in rows:
        shape = "public" if row["shape"].startswith("public") else "assumed"
        table.add_row(row["source"], row["name"], row["amounts"], ", ".join(row["totals_checked"]) or "-", shape)
    console.print(table)
    console.print("`yidi settlement templates SOURCE` shows one in full (columns, where its shape comes from).",
                  highlight=False)  # fmt: skip


def _reconcile_in_a_flow_run(source: str | None, period: str | None, file_path: str | None, as_of=None):
    """(result or the run's error, whether the run failed)."""
    from flows.settlement import reconcile_settlements

    state = reconcile_settlements(source=source, period=period, file_path=file_path,
                                  as_of=as_of.isoformat() if as_of else None, return_state=True)  # fmt: skip
    try:
        return state.result(raise_on_failure=False), state.is_failed()
    except Exception as exc:  # noqa: BLE001 - the run's own error is what the user needs
        return exc, True


def _reconcile_in_process(engine, source: str | None, period: str | None, file_path: str | None, as_of=None):
    """The flow's step list in this process (``flows.settlement.reconciliation`` with ``in_process``)."""
    from flows.compose import in_process
    from flows.settlement import reconciliation
    from tasks.settlement.files import files_to_reconcile, refused_files
    from yidi.settings import get_settings

    try:
        files = files_to_reconcile(get_settings(), source, file_path)
    except FileNotFoundError as exc:
        return exc, True
    result = reconciliation(in_process, files=files, source=source, period=period,
                            retry_rejected=bool(file_path), engine=engine, as_of=as_of)  # fmt: skip
    return (refused_files(result["files"]) or result), False


@cases_app.command("list")
def cases_list(
    status: Annotated[str, typer.Option(help="open | explained | resolved | all")] = "open",
    case_class: Annotated[str | None, typer.Option("--class", help="Only this discrepancy class")] = None,
    limit: Annotated[int, typer.Option(help="At most this many")] = 50,
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="YYYY-MM-DD: the cases that held at the end of that day (Asia/Shanghai)"),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List discrepancy cases (largest amounts first)."""
    from sqlalchemy import select

    from yidi.bulk import read_frame
    from yidi.money import yuan_text
    from yidi.schema_settlement import settlement_cases

    engine = engine_or_exit()
    if as_of:
        _cases_as_of(engine, as_of, status, case_class, limit, json_out)
        return
    stmt = select(
        settlement_cases.c.id, settlement_cases.c.case_class, settlement_cases.c.status, settlement_cases.c.owner,
        settlement_cases.c.amount_fen, settlement_cases.c.summary,
    ).order_by(settlement_cases.c.amount_fen.desc()).limit(limit)  # fmt: skip
    from sqlalchemy import func

    counted = select(func.count()).select_from(settlement_cases)
    if status != "all":
        stmt = stmt.where(settlement_cases.c.status == status)
        counted = counted.where(settlement_cases.c.status == status)
    if case_class:
        stmt = stmt.where(settlement_cases.c.case_class == case_class)
        counted = counted.where(settlement_cases.c.case_class == case_class)
    with engine.connect() as conn:
        frame = read_frame(conn, stmt)
        total = int(conn.execute(counted).scalar_one())
    if json_out:
        emit_json(frame.to_dict("records"))
        return
    table = RichTable(title=f"settlement cases ({status})", title_justify="left")
    for column in ("id", "class", "status", "owner", "amount (¥)", "summary"):
        table.add_column(column)
    for row in frame.itertuples(index=False):
        table.add_row(str(row.id), row.case_class, row.status, row.owner or "",
                      yuan_text(row.amount_fen, grouping=True), row.summary)  # fmt: skip
    console.print(table)
    console.print(shown_of_total(len(frame), total, "largest first"), highlight=False)


def _cases_as_of(engine, as_of: str, status: str, case_class: str | None, limit: int, json_out: bool) -> None:
    """The cases as they stood at the end of a day, computed from the facts dated up to then."""
    from tasks.settlement.report import case_list_as_of
    from tasks.settlement.rules import parse_as_of
    from yidi.money import yuan_text
    from yidi.settings import get_settings

    try:
        day = parse_as_of(as_of)
    except ValueError as exc:
        raise fail(str(exc)) from None
    with engine.connect() as conn:
        frame = case_list_as_of(conn, get_settings(), day)
    if status != "all":
        frame = frame[frame["status"] == status]
    if case_class:
        frame = frame[frame["case_class"] == case_class]
    frame = frame.sort_values("amount_fen", ascending=False, kind="stable").head(limit)
    if json_out:
        emit_json(frame.drop(columns=["opened_at", "updated_at"]).to_dict("records"))
        return
    table = RichTable(title=f"settlement cases ({status}) as of {day} 24:00 Asia/Shanghai", title_justify="left")
    for column in ("id", "class", "status", "amount", "summary"):
        table.add_column(column)
    for row in frame.itertuples(index=False):
        shown = "" if row.id is None or row.id != row.id else str(int(row.id))
        table.add_row(shown, row.case_class, row.status, yuan_text(row.amount_fen, grouping=True), row.summary)
    console.print(table)


@cases_app.command("show")
def cases_show(case_id: int, json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """A case with its full history."""
    from sqlalchemy import select

    from yidi.bulk import read_frame
    from yidi.schema_settlement import settlement_case_events, settlement_cases

    engine = engine_or_exit()
    with engine.connect() as conn:
        case = read_frame(conn, select(settlement_cases).where(settlement_cases.c.id == case_id))
        if case.empty:
            raise fail(f"no settlement case {case_id}")
        history = read_frame(
            conn,
            select(settlement_case_events)
            .where(settlement_case_events.c.case_id == case_id)
            .order_by(settlement_case_events.c.id),
        )
    if json_out:
        emit_json({"case": case.iloc[0].to_dict(), "history": history.to_dict("records")})
        return
    row = case.iloc[0]
    console.print(
        f"[bold]case {case_id}[/bold] {row.case_class} [{row.status}] owner {row.owner}", highlight=False
    )
    console.print(row.summary, highlight=False)
    table = RichTable(title="history", title_justify="left")
    for column in ("occurred_at", "actor", "action", "from", "to", "note"):
        table.add_column(column)
    for event in history.itertuples(index=False):
        table.add_row(str(event.occurred_at), event.actor, event.action, event.from_status or "",
                      event.to_status or "", event.note or "")  # fmt: skip
    console.print(table)


def _change(case_id: int, note: str, to_status: str | None = None, owner: str | None = None,
            who: str | None = None) -> None:
    from sqlalchemy import select

    from tasks.settlement.cases import change_case
    from yidi.schema_settlement import settlement_cases
    from yidi.settings import get_settings
    from yidi.staff import NotPermitted, act_as, approved_by, check_separation

    engine = engine_or_exit()
    try:
        with engine.begin() as conn:
            actor = None
            if to_status == "resolved":  # issue 20: finance resolves, and not the person who approved the order
                staff = get_settings().staff
                actor = act_as(staff, "resolve_case", who)
                order_id = conn.execute(select(settlement_cases.c.order_id)
                                        .where(settlement_cases.c.id == case_id)).scalar()  # fmt: skip
                if order_id is not None:
                    check_separation(staff, "approve_and_resolve", actor, approved_by(conn, order_id),
                                     f"approved the order of case {case_id} and may not resolve its payment case")
            result = change_case(conn, case_id, to_status=to_status, owner=owner, note=note,
                                 actor=actor.text if actor else None)  # fmt: skip
    except NotPermitted as exc:
        raise fail(f"{exc} (case {case_id} unchanged)") from None
    except (KeyError, ValueError) as exc:
        raise fail(str(exc).strip("'\"")) from None
    console.print(f"case {case_id}: {result['status']} (owner {result['owner']})", highlight=False)


@cases_app.command("explain")
def cases_explain(
    case_id: int, note: Annotated[str, typer.Option("--note", "-m", help="The explanation")]
) -> None:
    """Record why a discrepancy is what it is (status explained; it stays visible until resolved)."""
    _change(case_id, note, "explained")


@cases_app.command("resolve")
def cases_resolve(
    case_id: int, note: Annotated[str, typer.Option("--note", "-m", help="How it was resolved")],
    who: Annotated[str, typer.Option("--as", help="A listed finance person's name or login (default: your login)")]
    = "",
) -> None:
    """Resolve a case (finance role); reconciliations never reopen a case a person resolved."""
    _change(case_id, note, "resolved", who=who)


@cases_app.command("reopen")
def cases_reopen(case_id: int, note: Annotated[str, typer.Option("--note", "-m", help="Why")]) -> None:
    """Reopen a case."""
    _change(case_id, note, "open")


@cases_app.command("assign")
def cases_assign(
    case_id: int,
    owner: Annotated[str, typer.Argument(help="New owner")],
    note: Annotated[str, typer.Option("--note", "-m")] = "reassigned",
) -> None:
    """Give a case to someone else."""
    _change(case_id, note, owner=owner)


@settlement_app.command("invoice")
def invoice(
    order_no: Annotated[str, typer.Argument(help="Our order number (YD…)")],
    invoice_no: Annotated[str, typer.Argument(help="The invoice's number as issued (e-invoice or paper)")],
) -> None:
    """Record the invoice issued for an order (电子商务法 第十四条): its number on the order's receivables and an
    invoice event; the legal rule ECL14_INVOICE then counts the order as invoiced."""
    import pandas as pd

    from tasks.settlement.invoices import record_invoices
    from yidi.bulk import utc_now
    from yidi.lifecycle import current_actor

    engine = engine_or_exit()
    with engine.begin() as conn:
        result = record_invoices(conn, pd.DataFrame({"order_no": [order_no], "invoice_no": [invoice_no]}),
                                 now=utc_now(), actor=current_actor())  # fmt: skip
    if result["unknown"]:
        raise fail(f"no order {order_no}")
    said = "recorded" if result["recorded"] else "already recorded"
    console.print(f"order {order_no}: invoice {invoice_no} {said}", highlight=False)
