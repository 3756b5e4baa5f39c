"""Feedback commands (issue 14; T3): ``yidi feedback add|list|show|reply|close``. Times in Beijing time; contacts
masked in lists."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table as RichTable

from app.cli.common import (
    LIMIT_HELP,
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
)

feedback = typer.Typer(help="Customer feedback: one queue, answered within working hours.", no_args_is_help=True)
cli.add_typer(feedback, name="feedback")



def _mask_contact(contact) -> str:
    from yidi.masking import mask_phone

    if not contact:
        return ""
    if "@" in contact:
        name, _, domain = contact.partition("@")
        return f"{name[:1]}***@{domain}"
    return mask_phone(contact)


def _mask_mobiles(text):
    """Mobile numbers a customer wrote into the text (``13812348000`` -> ``138****8000``)."""
    import re

    from yidi.masking import mask_phone

    return re.sub(r"(?<!\d)1[3-9]\d{9}(?!\d)", lambda m: mask_phone(m.group()), text) if isinstance(text, str) else text


@feedback.command("add")
def add(
    body: str, contact: Annotated[str, typer.Option(help="Phone or email of the caller")],
    order: Annotated[str | None, typer.Option(help="Order number, when the caller gave one")] = None,
    channel: Annotated[str, typer.Option(help="phone|email|website|platform")] = "phone",
    as_of: AsOf = None, json_out: JsonOut = False,
) -> None:  # fmt: skip
    """Take feedback by phone (or key in a letter): it joins the one queue."""
    from tasks.feedback.queue import land_feedback
    from yidi.settings import get_settings

    now = aware_now(as_of)
    record = {"body": body, "contact": contact, "order_no": order, "received_at": now.isoformat()}
    try:
        with engine_or_exit().begin() as conn:
            counts = land_feedback(conn, channel, [(f"cli:{contact}:{now.isoformat()}", record)], get_settings(), now)
    except ValueError as exc:
        raise fail(str(exc)) from None
    if json_out:
        return emit_json(counts)
    console.print(f"feedback taken ({counts['landed']} new)")


@feedback.command("list")
def list_(
    status: Annotated[str | None, typer.Option(help="open|answered|closed")] = None,
    category: Annotated[str | None, typer.Option(help="inquiry|suggestion|complaint|praise")] = None,
    limit: Annotated[int, typer.Option(min=1, help=LIMIT_HELP)] = 50,
    json_out: JsonOut = False,
) -> None:  # fmt: skip
    """The queue, oldest first, with its limits in Beijing time."""
    from sqlalchemy import func, select

    from yidi.bulk import frame_records, read_frame
    from yidi.schema_aftersales import feedback_items

    stmt = select(feedback_items).order_by(feedback_items.c.received_at)
    counted = select(func.count()).select_from(feedback_items)
    if status:
        stmt, counted = stmt.where(feedback_items.c.status == status), counted.where(feedback_items.c.status == status)
    if category:
        stmt = stmt.where(feedback_items.c.category == category)
        counted = counted.where(feedback_items.c.category == category)
    with engine_or_exit().connect() as conn:
        rows = frame_records(read_frame(conn, stmt.limit(limit)))
        total = int(conn.execute(counted).scalar_one())
    for r in rows:
        r["contact"] = _mask_contact(r["contact"])
    if json_out:
        return emit_json(rows)
    from rich import box

    # fits 80 columns: the number whole, the due time as MM-DD HH:MM (labelled below), the text in `show`
    table = RichTable(box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)
    table.add_column("no", no_wrap=True)
    for name in ("class", "status", "contact"):
        table.add_column(name, overflow="fold")
    for name in ("respond by", "escalated"):
        table.add_column(name, no_wrap=True)
    for r in rows:
        table.add_row(r["feedback_no"], r["category"], r["status"], r["contact"] or "-",
                      local_time(r["first_response_due_at"])[5:], "yes" if local_time(r["escalated_at"]) else "")  # fmt: skip
    console.print(table)
    console.print(shown_of_total(len(rows), total, "oldest first"), highlight=False)
    console.print("[dim]respond by: Beijing time (Asia/Shanghai), MM-DD HH:MM[/dim]")


@feedback.command("show")
def show(
    feedback_no: str,
    json_out: JsonOut = False,
    unmasked: Annotated[bool, typer.Option("--unmasked", help=UNMASKED_HELP)] = False,
    who: Annotated[str, typer.Option("--as", help="A listed person's name or login (default: your login)")] = "",
) -> None:
    """One item with its investigation. The contact, wherever it appears, and mobile numbers in the text are masked
    unless --unmasked (a role; recorded in `yidi access log`)."""
    from sqlalchemy import select

    from yidi.bulk import frame_records, read_frame
    from yidi.schema_aftersales import feedback_items

    engine = engine_or_exit()
    with engine.connect() as conn:
        rows = frame_records(read_frame(conn, select(feedback_items).where(feedback_items.c.feedback_no == feedback_no)))
    if not rows:
        raise fail(f"no feedback {feedback_no}")
    item = rows[0]
    if personal_data_view(engine, unmasked, who, "feedback_show", feedback_no) is None:
        contact, masked = item["contact"], _mask_contact(item["contact"])  # it is in the dedupe key too
        item = {k: _mask_mobiles(v.replace(contact, masked) if contact and isinstance(v, str) else v)
                for k, v in item.items()}
    if json_out:
        return emit_json(item)
    from rich.markup import escape

    def say(text: str) -> None:  # our styling; what the customer wrote is escaped, never read as markup
        console.print(text, highlight=False)

    say(f"[bold]{escape(item['feedback_no'])}[/bold] " + escape(
        f"{item['category']} via {item['channel']}"
        f"{' from ' + item['contact'] if item['contact'] else ' (no contact)'}, {local_time(item['received_at'])} "
        f"Beijing time; status {item['status']}"))  # fmt: skip
    say(escape(str(item["body"])))
    say(escape(f"respond by {local_time(item['first_response_due_at'])}, resolve by "
               f"{local_time(item['resolution_due_at'])} (Beijing time)"))  # fmt: skip
    for key in ("owner", "cause_category", "findings", "resolution", "answer"):
        if item[key]:
            say(escape(f"{key}: {item[key]}"))


def _answer(feedback_no, answer, cause, findings, resolution, owner, close, as_of, json_out):
    from tasks.feedback.queue import reply
    from yidi.settings import get_settings

    try:
        with engine_or_exit().begin() as conn:
            outcome = reply(conn, feedback_no, answer, get_settings(), aware_now(as_of), cause=cause, findings=findings,
                            resolution=resolution, owner=owner, close=close)  # fmt: skip
    except ValueError as exc:
        raise fail(str(exc)) from None
    if json_out:
        return emit_json(outcome)
    console.print(f"{feedback_no}: {outcome['status']}; the customer is told")


Cause = Annotated[str | None, typer.Option(help="Complaint cause: product_quality|logistics|service|billing|other")]
Text = Annotated[str | None, typer.Option()]


@feedback.command("reply")
def reply_(feedback_no: str, answer: str, cause: Cause = None, findings: Text = None, resolution: Text = None,
           owner: Text = None, as_of: AsOf = None, json_out: JsonOut = False) -> None:  # fmt: skip
    """Answer the customer (first response); a complaint's investigation fields can be filled here too."""
    _answer(feedback_no, answer, cause, findings, resolution, owner, False, as_of, json_out)


@feedback.command("close")
def close(feedback_no: str, answer: str, cause: Cause = None, findings: Text = None, resolution: Text = None,
          owner: Text = None, as_of: AsOf = None, json_out: JsonOut = False) -> None:  # fmt: skip
    """Resolve and close with the final answer to the customer."""
    _answer(feedback_no, answer, cause, findings, resolution, owner, True, as_of, json_out)


@feedback.command("receive")
def receive(
    host: Annotated[str | None, typer.Option(help="Listen here (default: feedback.inbound_host)")] = None,
    port: Annotated[int | None, typer.Option(help="Listen on this port (default: feedback.inbound_port)")] = None,
) -> None:
    """Serve the inbound paths until stopped: customers' SMS replies pushed by Aliyun (POST /sms/up, 上行短信 HTTP
    批量推送) and the website's contact form (Contact Form 7 submissions to
    /wp-json/contact-form-7/v1/contact-forms/ID/feedback). Each lands once with its raw record; unreadable ones
    are quarantined (yidi aftersales list --quarantine)."""
    from flows.service_inbound import inbound_receiver

    engine = engine_or_exit()
    receiver = inbound_receiver(engine, host=host, port=port)
    console.print(f"receiving SMS replies at {receiver.url}/sms/up and contact forms at {receiver.url}"
                  "/wp-json/contact-form-7/v1/contact-forms/<id>/feedback; Ctrl-C stops")  # fmt: skip
    receiver.serve_forever()
