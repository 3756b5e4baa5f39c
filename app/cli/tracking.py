"""Tracking commands (issue 6): ``yidi tracking poll``, ``yidi tracking callbacks``, ``yidi tracking incidents``,
``yidi tracking incident-resolve``, ``yidi tracking intercept`` (issue 18: 拦截).

Registered on the main CLI by the one import line in ``app/cli/main.py``'s area block. The old top-level names
(``track``, ``callbacks``, ``incidents``, ``incident-resolve``) stay as hidden aliases for one release.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table as RichTable

from app.cli.common import (
    EXIT_CONFIG,
    LIMIT_HELP,
    PREFECT_OPTION_HELP,
    cli,
    console,
    emit_json,
    engine_or_exit,
    fail,
    local_time,
    shown_of_total,
    use_prefect,
)

tracking = typer.Typer(help="Carrier tracking: polling, push callbacks, incidents.", no_args_is_help=True)
cli.add_typer(tracking, name="tracking")


def _renamed(new: str) -> str:
    return f"renamed to `yidi tracking {new}`; this name goes in the next release"


@tracking.command("poll")
def poll(
    waybill: Annotated[str | None, typer.Option("--waybill", "-w", help="Poll only this waybill")] = None,
    as_of: Annotated[
        datetime | None,
        typer.Option(help="Act as if it were this time (Beijing time unless a zone is given)"),
    ] = None,
    query_url: Annotated[
        str | None, typer.Option(help="Kuaidi100 query URL (default: the policy file)")
    ] = None,
    prefect: Annotated[bool | None, typer.Option("--prefect/--no-prefect", help=PREFECT_OPTION_HELP
                                                 + " In this process the request rate is not shared.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Poll carriers now (the `poll-carriers` flow): every due shipment, or one waybill.

    A waybill queried less than `tracking.min_poll_interval_minutes` ago is not queried again (Kuaidi100 locks
    faster polling); its stored status is shown instead.
    """
    from sqlalchemy import select

    from yidi.schema import shipments

    engine = engine_or_exit()
    if waybill:
        with engine.connect() as conn:
            found = conn.execute(select(shipments.c.id).where(shipments.c.waybill_no == waybill)).first()
        if found is None:
            raise fail(f"no shipment with waybill {waybill}")
    from connectors.kuaidi100 import MissingCredentials

    try:
        if not use_prefect(prefect):
            summary = _poll_here(engine, waybill, as_of, query_url)
        else:
            from flows.tracking import poll_carriers

            summary = poll_carriers(waybill=waybill, as_of=as_of, query_url=query_url)
    except MissingCredentials as exc:  # the account's secrets live in the environment: a configuration problem
        raise fail(str(exc), EXIT_CONFIG) from None
    summary.pop("incident_ids", None)
    if json_out:
        emit_json(summary)
        return
    console.print(
        f"polled {summary['due']} due shipment(s) in {summary['seconds']:.1f}s: {summary['outcomes'] or 'none due'}",
        highlight=False,
    )
    if summary.get("breaker"):
        console.print(f"[yellow]polling stopped early:[/yellow] {summary['breaker']}", highlight=False)
    console.print(
        f"new checkpoints {summary['new_events']}; exceptions {summary['exceptions'] or 'none'}; "
        f"orders moved {summary['orders_moved'] or 'none'}; notices queued {summary['notices']}",
        highlight=False,
    )
    if waybill:
        _show_waybill(engine, waybill)


cli.command("track", hidden=True, help=_renamed("poll"))(poll)


@tracking.command("intercept")
def intercept(
    as_of: Annotated[datetime | None, typer.Option(help="Act as if it were this time (Beijing time unless a zone "
                                                        "is given)")] = None,
    url: Annotated[str | None, typer.Option(help="Kuaidi100 interceptOrder URL (default: the policy file)")] = None,
    prefect: Annotated[bool | None, typer.Option("--prefect/--no-prefect", help=PREFECT_OPTION_HELP)] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Stop parcels whose order was cancelled, refunded or changed after the waybill existed (the
    `intercept-parcels` flow), and act on what became of the parcels asked for before."""
    engine = engine_or_exit()
    if use_prefect(prefect):
        from flows.tracking import intercept_parcels

        summary = intercept_parcels(as_of=as_of, url=url)
    else:
        from flows.compose import in_process
        from flows.tracking import aware, interception_cycle, make_intercept_client
        from yidi.lifecycle import current_actor
        from yidi.settings import get_settings

        settings = get_settings()
        client = make_intercept_client(settings, url) if settings.tracking.interception.enabled else None
        summary = interception_cycle(in_process, engine=engine, client=client, now=aware(as_of),
                                     actor=current_actor())  # fmt: skip
    if json_out:
        emit_json(summary)
        return
    if summary["skipped"]:
        console.print("kuaidi100 interception: not configured, skipped (parcels found, none asked)",
                      highlight=False)
    console.print(f"interceptions: {summary['found']} new; asked: {summary['requested']} intercepted, "
                  f"{summary['too_late']} too late, {summary['refused']} refused, {summary['failed']} to ask "
                  "again", highlight=False)
    console.print(f"outcomes: {summary['returning']} returning, {summary['returned']} back in stock "
                  f"({summary['restocked']['units']:g} units), {summary['delivered']} delivered anyway "
                  "(after-sales)", highlight=False)
    for row in summary["asked"][:20]:
        console.print(f"  {row['shipment_no']}  {row['waybill_no']}  {row['trigger']}: {row['status']}",
                      highlight=False)


def _poll_here(engine, waybill: str | None, as_of: datetime | None, query_url: str | None) -> dict:
    """The `poll-carriers` step list in this process (``flows.compose.in_process``)."""
    from flows.compose import in_process
    from flows.tracking import aware, poll_cycle, run_policy
    from tasks.tracking.polling import make_client, make_pacer
    from yidi.lifecycle import current_actor

    policy = run_policy()
    with make_client(policy, pacer=make_pacer(policy, shared_limit=False), query_url=query_url) as client:
        return poll_cycle(in_process, engine=engine, client=client, policy=policy, now=aware(as_of),
                          actor=current_actor(), waybill=waybill)  # fmt: skip


def _show_waybill(engine, waybill: str) -> None:
    from sqlalchemy import select

    from yidi.bulk import read_frame
    from yidi.schema import shipments
    from yidi.schema_tracking import tracking_events

    with engine.connect() as conn:
        ship = conn.execute(select(shipments).where(shipments.c.waybill_no == waybill)).mappings().first()
        events = read_frame(
            conn,
            select(tracking_events.c.occurred_at, tracking_events.c.status, tracking_events.c.reason,
                   tracking_events.c.context, tracking_events.c.source)
            .where(tracking_events.c.shipment_id == ship["id"])
            .order_by(tracking_events.c.occurred_at),
        )  # fmt: skip
    console.print(
        f"{ship['shipment_no']}  {ship['carrier']} {waybill}  status [cyan]{ship['status']}[/cyan]  "
        f"last polled {local_time(ship['last_polled_at']) or 'never'}",
        highlight=False,
    )
    table = RichTable(title="checkpoints (Beijing time)", title_justify="left")
    for column in ("time", "status", "reason", "source", "checkpoint"):
        table.add_column(column)
    for at, status, reason, context, source in zip(
        *(events[c].tolist() for c in events.columns), strict=True
    ):
        table.add_row(local_time(at), status, reason or "", source, context)
    console.print(table)


@tracking.command("callbacks")
def callbacks(
    host: Annotated[str | None, typer.Option(help="Listen address (default tracking.callback_host)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default tracking.callback_port)")] = None,
) -> None:
    """Serve the Kuaidi100 push callback URL: verify signatures, land and apply pushes, answer as published."""
    from app.callbacks import push_receiver, serve_until_stopped
    from yidi.settings import get_settings

    policy = get_settings().tracking
    salt = os.environ.get(policy.salt_env, "")
    if not salt:
        raise fail(f"set {policy.salt_env} (the push signature salt given at subscription)")
    engine = engine_or_exit()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _show_failed_pushes(engine)
    receiver = push_receiver(engine, policy, salt, host=host, port=port)
    console.print(f"Kuaidi100 push receiver on {receiver.url} (Ctrl-C or SIGTERM stops)", highlight=False)
    serve_until_stopped(receiver)


cli.command("callbacks", hidden=True, help=_renamed("callbacks"))(callbacks)


def _show_failed_pushes(engine) -> None:
    """Pushes given up on after failing to apply (kept with their reason for a person), shown at start."""
    from tasks.tracking.store import failed_pushes

    with engine.connect() as conn:
        failed = failed_pushes(conn)
    if failed.empty:
        return
    console.print(f"{len(failed)} landed push(es) failed to apply, kept as status failed (received at, "
                  "Asia/Shanghai):", highlight=False)
    for rec in failed.head(20).itertuples():
        console.print(f"  #{rec.id} {local_time(rec.received_at)} {rec.carrier} {rec.waybill_no}: {rec.error}",
                      highlight=False, soft_wrap=True)


@tracking.command("incidents")
def incidents(
    status: Annotated[str, typer.Option(help="open, resolved or all")] = "open",
    incident_type: Annotated[str | None, typer.Option("--type", help="delay, damaged, lost, …")] = None,
    limit: Annotated[int, typer.Option(min=1, help=LIMIT_HELP)] = 100,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Tracking incidents (F6) with owner, due date and claim (phones in carrier text masked)."""
    from sqlalchemy import func, select

    from tasks.tracking.report import mask_text
    from yidi.bulk import frame_records, read_frame
    from yidi.money import fen_to_yuan
    from yidi.schema import orders
    from yidi.schema_tracking import liability_claims, tracking_incidents

    engine = engine_or_exit()
    ti, lc = tracking_incidents, liability_claims
    stmt = (
        select(
            ti.c.id, orders.c.order_no, ti.c.incident_type, ti.c.status, ti.c.carrier, ti.c.waybill_no, ti.c.owner,
            ti.c.opened_at, ti.c.due_at, ti.c.evidence, ti.c.resolution, lc.c.claim_type, lc.c.claim_amount_fen,
            lc.c.status.label("claim_status"),
        )
        .join(orders, orders.c.id == ti.c.order_id)
        .outerjoin(lc, lc.c.incident_id == ti.c.id)
        .order_by(ti.c.id.desc())
        .limit(limit)
    )  # fmt: skip
    counted = select(func.count()).select_from(ti)
    if status != "all":
        stmt, counted = stmt.where(ti.c.status == status), counted.where(ti.c.status == status)
    if incident_type:
        stmt = stmt.where(ti.c.incident_type == incident_type)
        counted = counted.where(ti.c.incident_type == incident_type)
    with engine.connect() as conn:
        frame = read_frame(conn, stmt)
        total = int(conn.execute(counted).scalar_one())
    rows = frame_records(frame)
    for row in rows:
        row["evidence"] = mask_text(row["evidence"])
        row["claim_amount"] = fen_to_yuan(row.pop("claim_amount_fen"))
    if json_out:
        emit_json(rows)
        return
    table = RichTable(title=f"{status} incidents", title_justify="left")
    for column in (
        "id",
        "order",
        "type",
        "status",
        "carrier",
        "waybill",
        "owner",
        "due",
        "claim",
        "evidence",
    ):
        table.add_column(column)
    for r in rows:
        claim = f"{r['claim_type']} ¥{r['claim_amount']} {r['claim_status']}" if r["claim_type"] else ""
        table.add_row(
            str(r["id"]), r["order_no"], r["incident_type"], r["status"], r["carrier"], r["waybill_no"] or "",
            r["owner"], local_time(r["due_at"]), claim, (r["evidence"] or "")[:60],
        )  # fmt: skip
    console.print(table)
    console.print(shown_of_total(len(rows), total, "newest first"), highlight=False)


cli.command("incidents", hidden=True, help=_renamed("incidents"))(incidents)


@tracking.command("incident-resolve")
def incident_resolve(
    incident_id: Annotated[int, typer.Argument(help="Incident id (see `yidi tracking incidents`)")],
    note: Annotated[str, typer.Option("--note", help="What was done (the customer is told)")],
    claim: Annotated[str | None, typer.Option(help="Claim status now: filed, settled or rejected")] = None,
    settled_yuan: Annotated[str | None, typer.Option(help="Amount the carrier paid (yuan)")] = None,
) -> None:
    """Close an incident (and record its claim's outcome); the customer is notified and the order follows."""
    from tasks.tracking.incidents import IncidentNotFound, resolve_incident
    from yidi.money import BadAmount, yuan_to_fen

    if claim not in (None, "filed", "settled", "rejected"):
        raise fail("--claim must be filed, settled or rejected")
    try:
        settled_fen = yuan_to_fen(settled_yuan, "--settled-yuan") if settled_yuan else None
    except BadAmount as exc:
        raise fail(str(exc)) from None
    engine = engine_or_exit()
    try:
        with engine.begin() as conn:
            row = resolve_incident(
                conn, incident_id, note, claim_status=claim, settled_amount_fen=settled_fen
            )
    except IncidentNotFound as exc:
        raise fail(str(exc)) from None
    console.print(f"incident {incident_id} ({row['incident_type']}) resolved: {note}", highlight=False)


cli.command("incident-resolve", hidden=True, help=_renamed("incident-resolve"))(incident_resolve)
