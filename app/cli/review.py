"""Review commands (issue 4): ``yidi review list|show|approve|reject|run|deadlines``.

``approve``/``reject`` go through the same function as the Prefect UI form (``tasks.review.decisions.apply_decision``):
the same validation, the same "one reviewer wins" rule, the same customer notices. ``run`` runs the ``auto-review``
flow's step list (``flows.review.automated_review``) in this process, without a Prefect server. Registered on the
main CLI by its import in ``app/cli/main.py``. Exit codes: 0 done; 1 refused (invalid input, unknown order,
another reviewer decided first, the order changed).
"""

from __future__ import annotations

import getpass
import json
from typing import Annotated

import pandas as pd
import typer
from rich.table import Table as RichTable

from app.cli.common import (
    LIMIT_HELP,
    PREFECT_OPTION_HELP,
    UNMASKED_HELP,
    cli,
    console,
    emit_json,
    engine_or_exit,
    fail,
    local_time,
    personal_data_view,
    shown_of_total,
    use_prefect,
)

review_app = typer.Typer(help="Order review: pending orders, findings, decisions, deadlines.", no_args_is_help=True)
cli.add_typer(review_app, name="review")


def _login() -> str:
    try:
        return getpass.getuser()
    except OSError:  # pragma: no cover - no login name in some containers
        return ""


@review_app.command("list")
def review_list(
    overdue: Annotated[bool, typer.Option("--overdue", help="Only orders past their review deadline")] = False,
    channel: Annotated[str | None, typer.Option("--channel", "-c", help="Only orders of this channel")] = None,
    reason_code: Annotated[str | None, typer.Option("--reason", help="Only orders with this finding")] = None,
    limit: Annotated[int, typer.Option(min=1, help=LIMIT_HELP)] = 50,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Orders waiting for manual review, earliest deadline first (names and phones masked)."""
    from tasks.review.rules import masked_pending
    from tasks.review.store import current_findings, pending_orders
    from yidi.bulk import utc_now
    from yidi.money import yuan_text

    engine = engine_or_exit()
    with engine.connect() as conn:
        pending = pending_orders(conn, overdue_at=utc_now() if overdue else None)
        if channel:
            pending = pending[pending["channel"] == channel]
        if reason_code:
            flagged = current_findings(conn, pending["id"].tolist())
            pending = pending[pending["id"].isin(flagged.loc[flagged["reason_code"] == reason_code, "order_id"])]
        total, pending = len(pending), pending.head(limit)
        findings = current_findings(conn, pending["id"].tolist())
    codes = findings.groupby("order_id")["reason_code"].agg(lambda s: ",".join(sorted(set(s)))) \
        if not findings.empty else pd.Series(dtype=str)  # fmt: skip
    shown = masked_pending(pending)
    rows = [{"order_no": r.order_no, "customer": r.customer_name, "phone": r.customer_phone,
             "total": yuan_text(r.order_total_fen), "payment": r.payment_method, "due": local_time(r.review_due_at, "—"),
             "version": int(r.version), "findings": codes.get(r.id, "")} for r in shown.itertuples(index=False)]  # fmt: skip
    if json_out:
        emit_json(rows)
        return
    from rich import box

    # Fits 80 columns with the order number whole (seen: `YD261205…`); the customer is in `yidi review show`.
    table = RichTable(title=f"pending review ({total})", title_justify="left", box=box.SIMPLE, padding=(0, 1))
    table.add_column("order_no", no_wrap=True)
    table.add_column("total ¥", justify="right", no_wrap=True)
    table.add_column("payment", no_wrap=True)
    table.add_column("due", no_wrap=True)
    table.add_column("findings", overflow="fold")
    for row in rows:
        table.add_row(row["order_no"], row["total"], row["payment"] or "", row["due"][5:] if row["due"] != "—" else "—",
                      row["findings"] or "—")  # fmt: skip
    console.print(table)
    console.print(shown_of_total(len(rows), total, "earliest deadline first"), highlight=False)
    console.print("[dim]due: Beijing time (Asia/Shanghai), MM-DD HH:MM; `yidi review show ORDER` for the customer "
                  "and every finding[/dim]")


@review_app.command("show")
def review_show(
    ref: Annotated[str, typer.Argument(help="Order id or order number")],
    json_out: Annotated[bool, typer.Option("--json")] = False,
    unmasked: Annotated[bool, typer.Option("--unmasked", help=UNMASKED_HELP)] = False,
    who: Annotated[str, typer.Option("--as", help="A listed person's name or login (default: your login)")] = "",
) -> None:
    """An order's review: state, deadline, current findings (with lines / credit figures), decisions. The customer's
    name, phone and address are masked unless --unmasked (a role; recorded in `yidi access log`)."""
    from tasks.review.rules import credit_summary
    from tasks.review.store import current_findings, decisions_of, latest_checks, order_by_ref
    from yidi.masking import mask_address, mask_name, mask_phone
    from yidi.money import yuan_text

    engine = engine_or_exit()
    with engine.connect() as conn:
        order = order_by_ref(conn, ref)
        if order is None:
            raise fail(f"no order {ref!r}")
        findings = current_findings(conn, [order["id"]])
        checks = latest_checks(conn, [order["id"]])
        decisions = decisions_of(conn, order["id"])
    full = personal_data_view(engine, unmasked, who, "review_show", str(order["order_no"])) is not None
    view = {
        "order_no": order["order_no"], "state": order["state"], "version": order["version"],
        "customer": order["customer_name"] if full else mask_name(order["customer_name"]),
        "phone": order["customer_phone"] if full else mask_phone(order["customer_phone"]),
        "address": f"{order['ship_province'] or ''}{order['ship_city'] or ''}{order['ship_district'] or ''}"
                   f"{(order['ship_detail'] or '') if full else mask_address(order['ship_detail'])}",
        "total": yuan_text(order["order_total_fen"]), "payment_method": order["payment_method"],
        "review_due_at": local_time(order["review_due_at"], "—"),
        "credit_check": credit_summary(checks["credit"].iloc[0]) if len(checks) else None,
        "findings": [{"reason_code": f.reason_code, "severity": f.severity, "message_zh": f.message_zh,
                      "message_en": f.message_en,
                      "details": json.loads(f.details) if isinstance(f.details, str) and f.details else None}
                     for f in findings.itertuples(index=False)],
        "decisions": [{"decision": d.decision, "reviewer": d.reviewer, "reason": d.reason,
                       "proposed_solution": d.proposed_solution, "source": d.source, "at": local_time(d.decided_at, "—")}
                      for d in decisions.itertuples(index=False)],
    }  # fmt: skip
    if json_out:
        emit_json(view)
        return
    console.print(f"[bold]{view['order_no']}[/bold]  state [cyan]{view['state']}[/cyan]  version {view['version']}  "
                  f"due {view['review_due_at']}", highlight=False)  # fmt: skip
    console.print(f"{view['customer']}  {view['phone']}  {view['address']}  ¥{view['total']}  {view['payment_method']}",
                  highlight=False, markup=False)  # fmt: skip
    if view["credit_check"]:
        console.print(f"  {view['credit_check']}", highlight=False, markup=False)
    if not view["findings"]:
        console.print("no findings: passed every automated check")
    for item in view["findings"]:
        extra = f"  {item['details']}" if item["details"] else ""
        console.print(f"  {item['reason_code']} [{item['severity']}] {item['message_zh']} / {item['message_en']}{extra}",
                      highlight=False, markup=False)  # fmt: skip
    for item in view["decisions"]:
        console.print(f"  decided: {item['decision']} by {item['reviewer']} at {item['at']} ({item['source']})"
                      + (f": {item['reason']} → {item['proposed_solution']}" if item["reason"] else ""),
                      highlight=False, markup=False)  # fmt: skip


def _decide(ref: str, decision: str, reviewer: str, reason: str | None, solution: str | None,
            version: int | None, json_out: bool) -> None:
    from tasks.review.decisions import apply_decision
    from tasks.review.rules import InvalidDecision

    engine = engine_or_exit()
    try:
        result = apply_decision(engine, ref, decision, reviewer, reason=reason, proposed_solution=solution,
                                source="cli", seen_version=version)  # fmt: skip
    except InvalidDecision as exc:
        raise fail(f"refused: {exc} (the order stays pending)") from None
    if json_out:
        emit_json({"order_no": result.order_no, "applied": result.applied, "state": result.state,
                   "message": result.message})  # fmt: skip
    if not result.applied:
        raise fail(result.message)
    if not json_out:
        console.print(result.message, highlight=False)


@review_app.command("approve")
def review_approve(
    ref: Annotated[str, typer.Argument(help="Order id or order number")],
    reviewer: Annotated[str, typer.Option("--reviewer", "--as", help="A listed reviewer's name or login "
                                          "(default: your login; see [staff] in the policy file)")] = "",
    version: Annotated[int | None, typer.Option(help="The order version you reviewed (refused if it changed)")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Approve a pending order: it moves on to fulfilment and the customer is told."""
    _decide(ref, "approve", reviewer or _login() or "-", None, None, version, json_out)


@review_app.command("reject")
def review_reject(
    ref: Annotated[str, typer.Argument(help="Order id or order number")],
    reason: Annotated[str, typer.Option(help="Why (told to the customer)")],
    solution: Annotated[str, typer.Option("--solution", help="Proposed solution for the customer")],
    reviewer: Annotated[str, typer.Option("--reviewer", "--as", help="A listed reviewer's name or login "
                                          "(default: your login; see [staff] in the policy file)")] = "",
    version: Annotated[int | None, typer.Option(help="The order version you reviewed")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Reject a pending order with a reason and a proposed solution; the customer receives both."""
    _decide(ref, "reject", reviewer or _login() or "-", reason, solution, version, json_out)


@review_app.command("run")
def review_run(
    order: Annotated[list[int] | None, typer.Option("--order", help="Only these order ids (repeatable)")] = None,
    prefect: Annotated[bool | None, typer.Option("--prefect/--no-prefect", help=PREFECT_OPTION_HELP)] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Run the automated review now (received orders, and orders changed since their last check): the
    `auto-review` flow's steps; customer notices are queued (the `send-notifications` flow sends them)."""
    engine = engine_or_exit()
    if use_prefect(prefect):
        from flows.review import auto_review

        result = auto_review(order_ids=order or None, send=False)
    else:
        from flows.compose import in_process
        from flows.review import automated_review
        from yidi.settings import get_settings

        result = automated_review(in_process, engine=engine, settings=get_settings(), order_ids=order or None)
    if json_out:
        emit_json(result)
        return
    console.print(f"checked {result['checked']}: {result['auto_rejected']} auto-rejected, "
                  f"{result['pending_review']} pending review"
                  + (f", {result['auto_approved']} approved by policy" if result.get("auto_approved") else "")
                  + f"; {result['notices']} notice(s) queued"
                  + (f"; Data Docs {result['data_docs']}" if result.get("data_docs") else ""), highlight=False)


@review_app.command("deadlines")
def review_deadlines(
    prefect: Annotated[bool | None, typer.Option("--prefect/--no-prefect", help=PREFECT_OPTION_HELP)] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Send due reminders and escalations now (the hourly `check-review-deadlines` flow); print the backlog by age."""
    engine = engine_or_exit()
    if use_prefect(prefect):
        from flows.review import check_review_deadlines

        outcome = check_review_deadlines(send=False)
    else:
        from tasks.review.deadlines import check_deadlines

        report = check_deadlines(engine)
        outcome = {"reminded": report.reminded, "escalated": report.escalated,
                   "backlog": report.backlog.to_dict("records")}  # fmt: skip
    if json_out:
        emit_json({key: outcome[key] for key in ("reminded", "escalated", "backlog")})
        return
    console.print(f"reminded {len(outcome['reminded'])}, escalated {len(outcome['escalated'])}")
    for row in outcome["backlog"]:
        console.print(f"  {row['bucket']}: {row['orders']}")
