"""Fulfilment commands (issue 5): the ``yidi fulfilment run|stock|decide|produce|qc|receive|report|stocktake|adjust|
verify-stocktake`` group, ``parcels`` and ``unmerge`` (issue 18: orders shipped together);
``yidi load stock`` and ``yidi load supplier-prices`` are kinds of the main ``load`` command (dispatched to
``load_fulfilment_file``). ``yidi fulfil …`` and ``yidi stocktake`` are hidden aliases for one release.

Registered on the main CLI by the one import line in ``app/cli/main.py``'s area block.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
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
    use_prefect,
)

RENAMED = "renamed to `yidi fulfilment {}`; this name goes in the next release"
fulfilment_app = typer.Typer(help="Fulfilment: allocation runs, stock, customer decisions, production and purchase.",
                             no_args_is_help=True)  # fmt: skip
cli.add_typer(fulfilment_app, name="fulfilment")
cli.add_typer(fulfilment_app, name="fulfil", hidden=True, help=RENAMED.format("…"))


def load_fulfilment_file(kind: str, path: Path) -> str:
    """``yidi load stock FILE`` (goods receipts, all rows or none) / ``yidi load supplier-prices FILE``."""
    from tasks.fulfilment.receipts import load_stock_file
    from tasks.fulfilment.stock import StockFileError, sync_warehouses
    from tasks.fulfilment.suppliers import load_supplier_prices_file
    from yidi.reference import ReferenceFileError
    from yidi.settings import get_settings
    from yidi.textfiles import UnreadableText

    engine = engine_or_exit()
    try:
        with engine.begin() as conn:
            if kind == "stock":
                sync_warehouses(conn, get_settings().fulfilment)
                result = load_stock_file(conn, path)
                return (f"stock: {result.rows} receipt row(s), {result.quantity:g} units into "
                        f"{', '.join(result.warehouses)} (reference {result.reference})")  # fmt: skip
            changed = load_supplier_prices_file(conn, path)
            return f"supplier prices: {changed} row(s) inserted or changed from {path}"
    except (StockFileError, ReferenceFileError, UnreadableText) as exc:
        raise fail(str(exc)) from None


@fulfilment_app.command("run")
def fulfilment_run(
    carrier_url: Annotated[str | None, typer.Option(help="Carrier e-waybill gateway (default: policy file)")] = None,
    supplier_url: Annotated[str | None, typer.Option(help="Supplier PO gateway (default: policy file)")] = None,
    as_of: Annotated[datetime | None, typer.Option(help="Act as if it were this time (UTC unless a zone is given)")] = None,
    prefect: Annotated[bool | None, typer.Option("--prefect/--no-prefect", help=PREFECT_OPTION_HELP)] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Run the `fulfilment-handoff` flow now: allocate, request, send purchase orders, create waybills."""
    from datetime import UTC

    engine_or_exit()
    if as_of is not None and as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=UTC)
    if not use_prefect(prefect):
        from flows.compose import in_process
        from flows.fulfilment import handoff

        summary = handoff(in_process, carrier_api_url=carrier_url, supplier_api_url=supplier_url, as_of=as_of)
    else:
        from flows.fulfilment import fulfilment_handoff

        summary = fulfilment_handoff(carrier_api_url=carrier_url, supplier_api_url=supplier_url, as_of=as_of)
    if json_out:
        emit_json(summary)
        return
    allocation, waybills, merged = summary["allocation"], summary["waybills"], summary["parcels"]
    console.print(
        f"{allocation['considered']} orders considered: {allocation['allocated']} allocated "
        f"({allocation['partial']} partial), {allocation['backordered']} short, {allocation['exceptions']} exceptions; "
        f"{waybills.get('created', 0)} waybills created, {waybills.get('failed', 0)} to retry",
        highlight=False,
    )
    console.print(f"parcels: {merged['parcels']} merged, carrying {merged['orders']} orders", highlight=False)
    for row in merged["rows"][:20]:
        console.print(f"  {row['parcel_no']}  {row['carrier']}: {', '.join(row['orders'])}"[:80], highlight=False)


@fulfilment_app.command("parcels")
def fulfilment_parcels(
    status: Annotated[str | None, typer.Option(help="planned, created, undone or rejected")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Parcels carrying several orders (newest first): their orders, carrier and waybill. A planned parcel
    without a waybill request yet can be split back with `yidi fulfilment unmerge PARCEL`."""
    import pandas as pd

    from tasks.fulfilment.parcels import parcels_frame
    from yidi.money import yuan_text
    from yidi.workdays import BUSINESS_TZ

    with engine_or_exit().connect() as conn:
        frame = parcels_frame(conn, status)
    if json_out:
        emit_json(frame.to_dict("records"))
        return
    if frame.empty:
        console.print("no merged parcels" + (f" {status}" if status else ""), highlight=False)
        return
    for r in frame.head(50).to_dict("records"):
        console.print(f"{r['parcel_no']}  {r['status']}  {r['warehouse']}  {r['carrier']}  "
                      f"{yuan_text(r['freight_fen'], symbol=True)}", highlight=False)
        console.print(f"  orders: {r['order_nos']}"[:80], highlight=False)
        if isinstance(r["waybill_no"], str):
            console.print(f"  waybill: {r['waybill_no']}", highlight=False)
        elif r["status"] == "planned" and pd.isna(r["requested_at"]) and pd.notna(r["hold_until"]):
            console.print(f"  held until {r['hold_until'].astimezone(BUSINESS_TZ):%m-%d %H:%M} (Asia/Shanghai); "
                          "can be undone", highlight=False)


@fulfilment_app.command("unmerge")
def fulfilment_unmerge(
    parcel_no: Annotated[str, typer.Argument(help="The parcel (P…) to split back into its orders' own shipments")],
    reason: Annotated[str, typer.Option(help="Why (kept in each order's timeline)")] = "",
) -> None:
    """Undo a merge before its waybill was asked for: each order ships on its own again (with its own carrier
    choice) and is never merged again."""
    from tasks.fulfilment.parcels import ParcelNotUndoable, undo_merge

    engine = engine_or_exit()
    try:
        shipments = undo_merge(engine, parcel_no, reason=reason)
    except ParcelNotUndoable as exc:
        raise fail(str(exc)) from None
    console.print(f"{parcel_no} split: {', '.join(shipments)} ship on their own", highlight=False)


@fulfilment_app.command("stock")
def fulfilment_stock(
    item: Annotated[list[str] | None, typer.Option("--item", "-i", help="Only these item codes")] = None,
    warehouse: Annotated[str | None, typer.Option("--warehouse", "-w")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Real-time stock: on hand, reserved, damaged, quarantined and available per warehouse and item."""
    from tasks.fulfilment.stock import stock_position

    engine = engine_or_exit()
    with engine.connect() as conn:
        frame = stock_position(conn, warehouse=warehouse, item_codes=item or None)
    columns = ["warehouse", "item_code", "on_hand", "reserved", "damaged", "quarantined", "available"]
    if json_out:
        emit_json([dict(zip(columns, row, strict=True)) for row in zip(*(frame[c].tolist() for c in columns), strict=True)])
        return
    table = RichTable(title="stock", title_justify="left")
    for column in columns:
        table.add_column(column, justify="left" if column in ("warehouse", "item_code") else "right")
    for row in zip(*(frame[c].tolist() for c in columns), strict=True):
        table.add_row(*(f"{v:g}" if isinstance(v, float) else str(v) for v in row))
    console.print(table)


class Choice(StrEnum):
    wait = "wait"
    partial = "partial"
    cancel = "cancel"


@fulfilment_app.command("decide")
def fulfilment_decide(
    order: Annotated[str, typer.Argument(help="Order id, order number or CHANNEL:ID")],
    choice: Annotated[Choice, typer.Option("--choice", "-c", help="The customer's answer")],
    note: Annotated[str | None, typer.Option(help="How the customer answered (phone, mail…)")] = None,
) -> None:
    """Record a customer's choice for short items: wait for everything, ship partially, or cancel."""
    from tasks.fulfilment.decisions import DecisionError, record_customer_decision
    from yidi.orders_view import OrderNotFound, find_order_id

    engine = engine_or_exit()
    try:
        with engine.begin() as conn:
            outcome = record_customer_decision(conn, find_order_id(conn, order), choice.value, note=note)
    except (OrderNotFound, DecisionError) as exc:
        raise fail(str(exc)) from None
    console.print(f"order {order}: customer chose {outcome['choice']} (decision {outcome['decision_id']})")


@fulfilment_app.command("produce")
def fulfilment_produce(
    request_no: Annotated[str, typer.Argument(help="Production request number (MO-…)")],
    quantity: Annotated[float, typer.Option("--qty", help="Units produced")],
) -> None:
    """Production finished: the goods enter stock quarantined until the quality check (F1)."""
    from tasks.fulfilment.receipts import RequestNotFound, RequestStateError, record_production_output

    engine = engine_or_exit()
    try:
        with engine.begin() as conn:
            outcome = record_production_output(conn, request_no, quantity)
    except (RequestNotFound, RequestStateError) as exc:
        raise fail(str(exc)) from None
    console.print(f"{request_no}: {quantity:g} produced, waiting for the quality check (batch {outcome['batch_no']})")


@fulfilment_app.command("qc")
def fulfilment_qc(
    request_no: Annotated[str, typer.Argument(help="Production request number (MO-…)")],
    passed: Annotated[float, typer.Option(help="Units that passed")],
    inspector: Annotated[str, typer.Option(help="Who inspected")],
    failed: Annotated[float, typer.Option(help="Units that failed")] = 0.0,
    note: Annotated[str, typer.Option()] = "",
) -> None:
    """Record the quality check: passed units become available stock, failed units leave the books."""
    from tasks.fulfilment.receipts import RequestNotFound, RequestStateError, record_quality_check

    engine = engine_or_exit()
    try:
        with engine.begin() as conn:
            outcome = record_quality_check(conn, request_no, passed, failed, inspector=inspector, note=note)
    except (RequestNotFound, RequestStateError) as exc:
        raise fail(str(exc)) from None
    console.print(f"{request_no}: {outcome['status']}")


@fulfilment_app.command("receive")
def fulfilment_receive(po_no: Annotated[str, typer.Argument(help="Purchase order number (PO-…)")]) -> None:
    """The supplier's goods arrived: receive the purchase order into stock (F2)."""
    from tasks.fulfilment.receipts import RequestNotFound, receive_purchase_order

    engine = engine_or_exit()
    try:
        with engine.begin() as conn:
            outcome = receive_purchase_order(conn, po_no)
    except RequestNotFound as exc:
        raise fail(str(exc)) from None
    console.print(f"{po_no}: {outcome['lines']} line(s), {outcome['quantity']:g} units received")


@fulfilment_app.command("report")
def fulfilment_report(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Stock report now: slow-moving items, expired and expiring batches, damaged stock (xlsx written too)."""
    from datetime import UTC

    from tasks.fulfilment.stocktake import stock_report, write_stock_report
    from yidi.settings import get_settings
    from yidi.workdays import BUSINESS_TZ

    engine = engine_or_exit()
    now = datetime.now(UTC)
    with engine.connect() as conn:
        report = stock_report(conn, now.astimezone(BUSINESS_TZ).date(), get_settings().fulfilment)
    path = write_stock_report(report, f"stock-report-{now.astimezone(BUSINESS_TZ):%Y%m%d-%H%M%S}")
    counts = {name: len(frame) for name, frame in report.items()}
    if json_out:
        emit_json({"report": str(path), "counts": counts})
    else:
        console.print(f"stock report {path}: {counts}", highlight=False)


@fulfilment_app.command("stocktake")
def fulfilment_stocktake(
    path: Annotated[Path, typer.Argument(help="Count sheet: csv or xlsx, UTF-8 or GBK")],
    prefect: Annotated[bool | None, typer.Option("--prefect/--no-prefect", help=PREFECT_OPTION_HELP)] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
    who: Annotated[str, typer.Option("--as", help="A listed operations person (default: your login)")] = "",
) -> None:
    """Import a stocktake (operations role): variances correct the books (adjustments with reasons); report of
    variances, slow-moving, expired and damaged stock. Refused rows are listed; exit code 1 when any was refused."""
    from tasks.fulfilment.stock import StockFileError
    from yidi.settings import get_settings
    from yidi.staff import NotPermitted, act_as
    from yidi.textfiles import UnreadableText

    regular_file(path)
    engine_or_exit()
    try:  # issue 20: a stocktake adjusts stock; only a listed person with the operations role
        actor = act_as(get_settings().staff, "stock_adjust", who)
    except NotPermitted as exc:
        raise fail(f"{exc} (stock unchanged)") from None
    try:
        if use_prefect(prefect):
            from flows.fulfilment import stocktake

            summary = stocktake(str(path), imported_by=actor.name)
        else:  # the flow's step list in this process, report file only
            from flows.compose import in_process
            from flows.fulfilment import stock_count

            summary = stock_count(in_process, str(path), actor=actor.text).as_dict()
    except (StockFileError, UnreadableText) as exc:
        raise fail(str(exc)) from None
    if json_out:
        emit_json(summary)
    else:
        console.print(
            f"stocktake {summary['stocktake_no']}: {summary['rows_total']} rows — {summary['applied']} corrected the "
            f"books, {summary['unchanged']} matched, {summary['rejected']} refused; "
            f"{summary['released_orders']} order(s) backordered again",
            highlight=False,
        )
        console.print(f"report: {summary['report']}  ({summary['report_counts']})", highlight=False)
    if summary["rejected"]:
        _print_rejected(summary["stocktake_no"])
        raise typer.Exit(1)


cli.command("stocktake", hidden=True, help=RENAMED.format("stocktake"))(fulfilment_stocktake)


@fulfilment_app.command("adjust")
def fulfilment_adjust(
    warehouse: Annotated[str, typer.Argument(help="Warehouse code")],
    item: Annotated[str, typer.Argument(help="Item code")],
    delta: Annotated[float, typer.Argument(help="Units to add (negative: to take off), e.g. -2")],
    reason: Annotated[str, typer.Option("--reason", "-m", help="Why (recorded with the movement)")],
    batch: Annotated[str | None, typer.Option("--batch", help="Batch number, when the item is kept by batch")] = None,
    who: Annotated[str, typer.Option("--as", help="A listed operations person (default: your login)")] = "",
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Adjust a stock balance by hand (operations role), recorded with you and the reason. Whoever adjusts a
    counted item may not verify the stocktake that covers it ([staff] separate = adjust_and_verify)."""
    from tasks.fulfilment.stock import InsufficientStock, StockFileError, adjust_stock
    from yidi.settings import get_settings
    from yidi.staff import NotPermitted, act_as

    engine = engine_or_exit()
    try:
        actor = act_as(get_settings().staff, "stock_adjust", who)
    except NotPermitted as exc:
        raise fail(f"{exc} (stock unchanged)") from None
    try:
        with engine.begin() as conn:
            reference = adjust_stock(conn, warehouse, item, delta, reason, actor=actor.text, batch_no=batch)
    except (StockFileError, InsufficientStock) as exc:
        raise fail(f"{exc} (stock unchanged)") from None
    if json_out:
        emit_json({"reference": reference, "warehouse": warehouse, "item_code": item, "delta": delta,
                   "actor": actor.text})  # fmt: skip
        return
    console.print(f"{reference}: {warehouse}/{item} {delta:+g} by {actor.text} ({reason})", highlight=False,
                  markup=False)  # fmt: skip


@fulfilment_app.command("verify-stocktake")
def fulfilment_verify_stocktake(
    stocktake_no: Annotated[str, typer.Argument(help="The stocktake's number (ST-…)")],
    who: Annotated[str, typer.Option("--as", help="A listed manager or auditor (default: your login)")] = "",
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Sign a stocktake off (manager or auditor role). Refused to whoever imported it or adjusted a counted item by
    hand since that item's previous count ([staff] separate = adjust_and_verify)."""
    from tasks.fulfilment.stocktake import StocktakeNotVerifiable, verify_stocktake
    from yidi.settings import get_settings
    from yidi.staff import NotPermitted, act_as

    engine = engine_or_exit()
    staff = get_settings().staff
    try:
        actor = act_as(staff, "stocktake_verify", who)
        with engine.begin() as conn:
            done = verify_stocktake(conn, stocktake_no, actor, staff)
    except (NotPermitted, StocktakeNotVerifiable) as exc:
        raise fail(f"{exc} (not verified)") from None
    if json_out:
        emit_json(done)
        return
    console.print(f"stocktake {stocktake_no} verified by {done['verified_by']}", highlight=False, markup=False)


def _print_rejected(number: str) -> None:
    from sqlalchemy import select

    from yidi.db import get_engine
    from yidi.schema_fulfilment import stocktake_lines, stocktakes

    with get_engine().connect() as conn:
        rows = conn.execute(
            select(stocktake_lines.c.row_no, stocktake_lines.c.item_code, stocktake_lines.c.reason)
            .join(stocktakes, stocktakes.c.id == stocktake_lines.c.stocktake_id)
            .where(stocktakes.c.stocktake_no == number, stocktake_lines.c.status == "rejected")
            .order_by(stocktake_lines.c.row_no)
        ).all()
    table = RichTable(title="refused rows (fix and import them again)", title_justify="left")
    for column in ("row", "item", "reason"):
        table.add_column(column)
    for row in rows:
        table.add_row(str(row.row_no), str(row.item_code or ""), str(row.reason))
    console.print(table)
