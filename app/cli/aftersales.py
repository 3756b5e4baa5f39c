"""After-sales commands (issue 14): ``yidi aftersales request|list|show|assess|receive|schedule|service-result|
resolve|run``. Times are shown in Beijing time (Asia/Shanghai), money in yuan, names and phones masked in lists."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table as RichTable

from app.cli.common import (
    LIMIT_HELP,
    PREFECT_OPTION_HELP,
    UNMASKED_HELP,
    AsOf,
    JsonOut,
    aware_now,
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

aftersales = typer.Typer(help="After-sales: requests, decisions, returns, refunds, service jobs.",
                         no_args_is_help=True)  # fmt: skip
cli.add_typer(aftersales, name="aftersales")

Unmasked = Annotated[bool, typer.Option("--unmasked", help=UNMASKED_HELP)]
ActingAs = Annotated[str, typer.Option("--as", help="A listed person's name or login (default: your login)")]


@aftersales.command("request")
def request_(
    order_no: str, kind: Annotated[str, typer.Argument(help="return|exchange|repair|refund_only|installation_problem")],
    item: Annotated[list[str] | None, typer.Option(help="CODE or CODE:QTY (default: every goods line)")] = None,
    quality: Annotated[bool, typer.Option("--quality", help="The goods do not meet quality requirements")] = False,
    opened: Annotated[bool, typer.Option("--opened", help="Digital goods downloaded or unsealed")] = False,
    description: Annotated[str, typer.Option(help="What the customer said")] = "",
    as_of: AsOf = None, json_out: JsonOut = False,
) -> None:  # fmt: skip
    """Take an after-sales request by phone (the phone form's path): it lands like every other channel's."""
    from tasks.aftersales.landing import land_requests
    from yidi.settings import get_settings

    now = aware_now(as_of)
    items = [{"item_code": i.split(":")[0], "quantity": float(i.split(":")[1]) if ":" in i else None}
             for i in item or []]  # fmt: skip
    record = {"order_no": order_no, "kind": kind, "items": items, "quality_problem": quality, "goods_opened": opened,
              "description": description, "requested_at": now.isoformat()}  # fmt: skip
    with engine_or_exit().begin() as conn:
        counts = land_requests(conn, "form", [(f"cli:{order_no}:{kind}:{now.isoformat()}", record)], get_settings(),
                               now)  # fmt: skip
    if json_out:
        return emit_json(counts)
    if counts["quarantined"]:
        raise fail("the request could not be read; see `yidi aftersales list --quarantine`")
    console.print(f"request taken: {counts['landed']} case(s) opened; `yidi aftersales assess` decides them")


@aftersales.command("list")
def list_(
    status: Annotated[str | None, typer.Option(help="Only cases in this status")] = None,
    kind: Annotated[str | None, typer.Option("--type", help="Only cases of this type (return, exchange, …)")] = None,
    quarantine: Annotated[bool, typer.Option("--quarantine", help="Show inbound records that could not be read")] = False,
    limit: Annotated[int, typer.Option(min=1, help=LIMIT_HELP)] = 50,
    json_out: JsonOut = False,
) -> None:  # fmt: skip
    """Cases (the newest, oldest of them first), or the quarantined inbound records."""
    from sqlalchemy import select

    from tasks.aftersales.store import cases
    from yidi.bulk import frame_records, read_frame
    from yidi.schema_aftersales import aftersales_inbox

    with engine_or_exit().connect() as conn:
        if quarantine:
            rows = read_frame(conn, select(aftersales_inbox.c.id, aftersales_inbox.c.kind, aftersales_inbox.c.channel,
                                           aftersales_inbox.c.received_at, aftersales_inbox.c.reason)
                              .where(aftersales_inbox.c.status == "quarantined"))  # fmt: skip
            total, rows = len(rows), rows.tail(limit)
            if json_out:
                return emit_json(frame_records(rows))
            table = RichTable("id", "kind", "channel", "received (Beijing)", "reason")
            for r in frame_records(rows):
                table.add_row(str(r["id"]), r["kind"], r["channel"], local_time(r["received_at"]), r["reason"])
            console.print(table)
            return console.print(shown_of_total(len(rows), total, "newest"), highlight=False)
        found = cases(conn, status=status)
    if kind:
        found = found[found["kind"] == kind]
    total, found = len(found), found.tail(limit)
    if json_out:
        return emit_json(frame_records(found.drop(columns=["customer_phone"], errors="ignore")))
    from rich import box

    # fits 80 columns: the decision and the customer are in `show`
    table = RichTable(box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)
    for name in ("case", "order"):  # whole, to copy into `show`; type and status wrap instead
        table.add_column(name, no_wrap=True, min_width=len("YD26120500000006") if name == "order" else None)
    for name in ("type", "status"):
        table.add_column(name, overflow="fold")
    table.add_column("asked", no_wrap=True)
    for r in frame_records(found):
        table.add_row(r["case_no"], r["order_no"], r["kind"].replace("_", " "), r["status"].replace("_", " "),
                      local_time(r["requested_at"])[5:])  # fmt: skip
    console.print(table)
    console.print(shown_of_total(len(found), total, "the newest"), highlight=False)
    console.print("[dim]asked: Beijing time (Asia/Shanghai), MM-DD HH:MM[/dim]")


@aftersales.command("show")
def show(case_no: str, json_out: JsonOut = False, unmasked: Unmasked = False, who: ActingAs = "") -> None:
    """One case: the decision with its rule and citation, the return, the refund. The customer's name and phone are
    masked unless --unmasked (a role; recorded in `yidi access log`)."""
    from sqlalchemy import select

    from tasks.aftersales.store import case_lines, cases
    from yidi.bulk import frame_records, read_frame
    from yidi.masking import mask_name, mask_phone
    from yidi.money import yuan_text
    from yidi.schema_aftersales import refund_requests

    engine = engine_or_exit()
    with engine.connect() as conn:
        found = cases(conn, case_no=case_no)
        if found.empty:
            raise fail(f"no after-sales case {case_no}")
        case = frame_records(found)[0]
        lines = frame_records(case_lines(conn, [int(case["id"])]))
        refund = frame_records(read_frame(conn, select(refund_requests).where(refund_requests.c.case_id == case["id"])))
    if personal_data_view(engine, unmasked, who, "aftersales_show", case_no) is None:
        case = {**case, "customer_name": mask_name(case["customer_name"]), "customer_phone": mask_phone(case["customer_phone"])}
    if json_out:
        return emit_json({**case, "lines": lines, "refund": refund[0] if refund else None})
    from rich.markup import escape

    def say(text: str) -> None:  # our styling; what the data says is escaped, never read as markup
        console.print(text, highlight=False)

    say(f"[bold]{escape(case['case_no'])}[/bold]  order {escape(case['order_no'])}  "
        f"{escape(str(case['customer_name']))} {escape(str(case['customer_phone']))}")  # fmt: skip
    say(escape(f"type {case['kind']}{' (quality problem)' if case['quality_problem'] else ''}, asked "
               f"{local_time(case['requested_at'])} Beijing time, goods received {case['received_date'] or '-'}"))
    for line in lines:
        say(escape(f"  {line['item_code']} x {line['quantity']:g}  {yuan_text(line['amount_fen'])} 元"))
    say(f"status [bold]{escape(case['status'])}[/bold]; "
        + escape(f"decision {case['decision'] or '-'} ({case['decision_rule'] or 'not decided'})"))
    if case["decision_text"]:
        say(escape(f"  {case['decision_text']}"))
        say(f"  [dim]{escape(str(case['decision_citation']))}[/dim]")
    if case.get("return_waybill_no"):
        arrived = case.get("return_arrived_at")
        arrived = None if arrived is None or str(arrived) == "NaT" else arrived
        state = f"arrived {local_time(arrived)} Beijing time" if arrived is not None else (
            case.get("return_parcel_state") or "no scan yet")  # fmt: skip
        say(escape(f"return parcel {case['return_carrier'] or ''} {case['return_waybill_no']}: {state}"))
        if case.get("return_last_event"):
            say(f"  [dim]{escape(case['return_last_event'])}[/dim]")
        if arrived is not None and case["status"] == "return_arrived":
            say(escape(f"  to inspect: yidi aftersales receive {case_no} --inspection good|damaged"))
    if case["return_received_at"] is not None and str(case["return_received_at"]) != "NaT":
        say(escape(f"returned goods received {local_time(case['return_received_at'])}: {case['inspection']}"
                   f" {case['inspection_reason'] or ''}"))  # fmt: skip
    if refund:
        r = refund[0]
        say(escape(f"refund {yuan_text(r['amount_fen'])} 元 by {r['route']}: {r['status']}, due {r['due_date']}"
                   f" (key {r['idempotency_key']})"))  # fmt: skip


@aftersales.command("assess")
def assess(as_of: AsOf = None, json_out: JsonOut = False) -> None:
    """Decide every open case against the policy and the law (each decision names its rule and citation)."""
    from tasks.aftersales.assessment import assess_open_cases
    from yidi.settings import get_settings

    with engine_or_exit().begin() as conn:
        counts = assess_open_cases(conn, get_settings(), aware_now(as_of))
    if json_out:
        return emit_json(counts)
    console.print("decided: " + (", ".join(f"{k} {v}" for k, v in counts.items()) or "nothing open"))


@aftersales.command("receive")
def receive(
    case_no: str,
    inspection: Annotated[str, typer.Option(help="good (back to stock) or damaged")],
    reason: Annotated[str | None, typer.Option(help="What the inspection found")] = None,
    waybill: Annotated[str | None, typer.Option(help="The return shipment's waybill number")] = None,
    scrap: Annotated[bool, typer.Option("--scrap", help="Damaged goods are scrapped, not quarantined")] = False,
    as_of: AsOf = None, json_out: JsonOut = False,
) -> None:  # fmt: skip
    """Record returned goods received and inspected: refund or replacement follows."""
    import pandas as pd

    from tasks.aftersales.returns import ReturnError, receive_returns
    from tasks.fulfilment.returns import restock_returns
    from yidi.settings import get_settings

    receipt = pd.DataFrame([{"case_no": case_no, "inspection": inspection, "reason": reason, "waybill_no": waybill,
                             "disposition": "scrap" if scrap else None}])  # fmt: skip
    now = aware_now(as_of)
    try:
        with engine_or_exit().begin() as conn:
            counts = receive_returns(conn, receipt, get_settings(), now)
            counts["stock"] = restock_returns(conn, now)
    except ReturnError as exc:
        raise fail(str(exc)) from None
    if json_out:
        return emit_json(counts)
    console.print(", ".join(f"{k} {v}" for k, v in counts.items() if k != "stock"))


@aftersales.command("schedule")
def schedule(as_of: AsOf = None, json_out: JsonOut = False) -> None:
    """Create service jobs for approved orders' service lines and book them on working days."""
    from tasks.aftersales.service import create_jobs, schedule_jobs
    from yidi.settings import get_settings

    now = aware_now(as_of)
    with engine_or_exit().begin() as conn:
        counts = {"created": create_jobs(conn, get_settings(), now), "booked": schedule_jobs(conn, get_settings(), now)}
    if json_out:
        return emit_json(counts)
    console.print(f"service jobs created {counts['created']}, booked {counts['booked']}")


@aftersales.command("service-result")
def service_result(
    job_no: str, result: Annotated[str, typer.Argument(help="done|needs_parts|customer_absent|rescheduled")],
    note: Annotated[str | None, typer.Option(help="The technician's note")] = None,
    as_of: AsOf = None, json_out: JsonOut = False,
) -> None:  # fmt: skip
    """Record a technician's result for a service job."""
    from tasks.aftersales.service import record_result

    try:
        with engine_or_exit().begin() as conn:
            outcome = record_result(conn, job_no, result, aware_now(as_of), note=note)
    except ValueError as exc:
        raise fail(str(exc)) from None
    if json_out:
        return emit_json(outcome)
    console.print(f"{job_no}: {outcome['status']}; orders completed {outcome['orders_completed']}")


@aftersales.command("resolve")
def resolve(case_no: str, note: Annotated[str, typer.Option(help="How it was resolved")], json_out: JsonOut = False,
            as_of: AsOf = None) -> None:  # fmt: skip
    """Close a case by hand (a repair done, a failed inspection settled with the customer)."""
    from tasks.aftersales.assessment import restore_orders
    from tasks.aftersales.store import cases, update_cases

    now = aware_now(as_of)
    with engine_or_exit().begin() as conn:
        found = cases(conn, case_no=case_no)
        if found.empty:
            raise fail(f"no after-sales case {case_no}")
        case = found.iloc[0]
        if case["status"] in ("closed", "rejected"):
            raise fail(f"{case_no} is already {case['status']}")
        update_cases(conn, [{"id": int(case["id"]), "status": "closed", "closed_at": now,
                             "inspection_reason": note if case["status"] == "inspection_failed" else case[
                                 "inspection_reason"], "decision_text": f"{case['decision_text'] or ''} 处理结果：{note}"}],
                     ["status", "closed_at", "inspection_reason", "decision_text"], now)  # fmt: skip
        if case["decision"] in ("repair", "exchange"):
            restore_orders(conn, [int(case["order_id"])], actor=None, reason=f"售后单 {case_no} 已处理完毕")
    if json_out:
        return emit_json({"case_no": case_no, "status": "closed"})
    console.print(f"{case_no} closed")


@aftersales.command("run")
def run(
    prefect: Annotated[bool | None, typer.Option("--prefect/--no-prefect", help=PREFECT_OPTION_HELP)] = None,
    as_of: AsOf = None, json_out: JsonOut = False,
) -> None:  # fmt: skip
    """Run the after-sales cycle now (the `after-sales` flow)."""
    from flows.aftersales import after_sales, after_sales_cycle
    from flows.compose import in_process

    engine_or_exit()
    now = aware_now(as_of) if as_of else None
    result = after_sales(now=now) if use_prefect(prefect) else after_sales_cycle(in_process, now=now)
    if json_out:
        return emit_json(result)
    for step, value in result.items():
        console.print(f"{step}: {value}")
