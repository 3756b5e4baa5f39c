"""The ``yidi`` command line: every command has ``--help``; ``--json`` where scripts read the output.

Exit codes: 0 done; 1 the thing asked for does not exist or was refused; 3 the policy file is invalid;
4 the database cannot be reached or is not initialised.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table as RichTable

import yidi  # noqa: F401  (Prefect offline defaults)
from app.cli.common import (
    EXIT_CONFIG,
    PREFECT_OPTION_HELP,
    UNMASKED_HELP,
    cli,
    console,
    emit_json,
    engine_or_exit,
    fail,
    personal_data_view,
    regular_file,
    safe_url,
    store_connection_or_exit,
)
from yidi.settings import SettingsError

config_app = typer.Typer(help="Inspect the policy file.", no_args_is_help=True)
order_app = typer.Typer(help="Look at orders.", no_args_is_help=True)
cli.add_typer(config_app, name="config")
cli.add_typer(order_app, name="order")


@cli.command()
def init(json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False) -> None:
    """Create or upgrade the order store's schema (all migrations)."""
    from yidi.db import database_url, get_engine, init_db

    engine = get_engine()
    store_connection_or_exit(engine).close()  # unreachable: exit 4 with the database's own reason, no traceback
    heads = init_db(engine)
    if json_out:
        emit_json({"database": safe_url(database_url()), "heads": heads})
    else:
        console.print(f"order store ready at {safe_url(database_url())} (migrations: {', '.join(heads)})")


@config_app.command("show")
def config_show(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Print the effective settings (defaults overridden by the policy file)."""
    from yidi.settings import get_settings, policy_file_path

    try:
        settings = get_settings()
        source = policy_file_path()
    except SettingsError as exc:
        raise fail(str(exc), EXIT_CONFIG) from None
    from yidi.db import database_url
    from yidi.redact import redacted

    data = redacted(settings.model_dump(mode="json"))
    if json_out:
        emit_json(data)
        return
    console.print(
        f"# effective policy: defaults + {source or 'no policy file'}", highlight=False, markup=False
    )
    console.print(f"# order store: {safe_url(database_url())}", highlight=False, markup=False)
    for section, values in data.items():
        console.print(f"\n[{section}]", highlight=False, markup=False)
        for key, value in values.items():
            console.print(f"{key} = {json.dumps(value, ensure_ascii=False)}", highlight=False, markup=False)


class ReferenceKind(StrEnum):
    catalog = "catalog"
    customers = "customers"
    stock = "stock"  # goods receipts (fulfilment: app/cli/fulfilment.py)
    supplier_prices = "supplier-prices"  # supplier price lists (fulfilment)
    orders = "orders"  # existing orders from the old system (onboarding: app/cli/onboarding.py)


@cli.command()
def load(
    kind: Annotated[ReferenceKind, typer.Argument(help="What the file holds")],
    path: Annotated[Path, typer.Argument(help="csv or xlsx, UTF-8 or GBK")],
    json_out: Annotated[bool, typer.Option("--json")] = False,
    prefect: Annotated[bool | None, typer.Option("--prefect/--no-prefect",
                                                 help="orders only: " + PREFECT_OPTION_HELP)] = None,
) -> None:
    """Load reference data (catalog or customers), stock, supplier prices or existing orders from a staff
    spreadsheet; re-loading is safe."""
    from yidi.reference import ReferenceFileError, load_reference_file
    from yidi.textfiles import UnreadableText

    regular_file(path)
    if kind is ReferenceKind.orders:
        from app.cli.onboarding import load_orders_file

        load_orders_file(path, json_out, prefect)
        return

    if kind in (ReferenceKind.stock, ReferenceKind.supplier_prices):
        from app.cli.fulfilment import load_fulfilment_file

        console.print(load_fulfilment_file(kind.value, path), highlight=False)
        return
    engine = engine_or_exit()
    try:
        with engine.begin() as conn:
            changed = load_reference_file(conn, kind.value, path)
    except (ReferenceFileError, UnreadableText) as exc:
        raise fail(f"{path}: {exc}") from None
    if json_out:
        emit_json({"kind": kind.value, "file": str(path), "inserted_or_changed": changed})
    else:
        console.print(f"{kind.value}: {changed} row(s) inserted or changed from {path}")


@order_app.command("show")
def order_show(
    ref: Annotated[str, typer.Argument(help="Order id, order number (YD…) or CHANNEL:CHANNEL_ORDER_ID")],
    json_out: Annotated[bool, typer.Option("--json")] = False,
    unmasked: Annotated[bool, typer.Option("--unmasked", help=UNMASKED_HELP)] = False,
    who: Annotated[str, typer.Option("--as", help="A listed person's name or login (default: your login)")] = "",
) -> None:
    """Print an order with its lines, shipments and full timeline. Personal fields are masked unless --unmasked
    (the operations, manager or auditor role; recorded in `yidi access log`)."""
    from yidi.access_log import personal_columns
    from yidi.masking import mask_value
    from yidi.orders_view import OrderNotFound, order_view

    engine = engine_or_exit()
    with engine.connect() as conn:
        try:
            view = order_view(conn, ref)
        except OrderNotFound as exc:
            raise fail(str(exc)) from None
    if personal_data_view(engine, unmasked, who, "order_show", str(view["order"]["order_no"])) is None:
        for column, kind in personal_columns(view["order"]).items():
            view["order"][column] = mask_value(kind, view["order"][column])
    if json_out:
        # machine output says its units: money in yuan (decimal strings), times ISO 8601 in UTC
        emit_json({**view, "units": {"money": "CNY yuan", "times": "UTC (ISO 8601)"}})
        return
    from app.cli.common import local_time

    for rows, columns in ((view["shipments"], ("expected_delivery_date", "delivered_at")),
                          (view["timeline"], ("occurred_at",))):  # fmt: skip
        for row in rows:
            for column in columns:
                if column in row and not isinstance(row[column], str) and hasattr(row[column], "tzinfo"):
                    row[column] = local_time(row[column])
    order = view["order"]
    console.print(
        f"[bold]{order['order_no']}[/bold]  {order['channel']}:{order['channel_order_id']}  "
        f"state [cyan]{order['state']}[/cyan]  payment {order['payment_state']}  region {order['region']}"
    )
    console.print(
        f"customer {order['customer_name'] or ''}  {order['customer_phone'] or ''}  ship to {order['ship_province'] or ''}"
        f"{order['ship_city'] or ''}{order['ship_district'] or ''}{order['ship_detail'] or ''}",
        highlight=False,
    )
    console.print(f"total ¥{order['order_total']}  payment method {order['payment_method']}  ordered "
                  f"{local_time(order.get('order_time'), '—')} (Asia/Shanghai)", highlight=False)
    _print_rows(
        "lines", view["lines"], ["line_no", "item_code", "item_name", "quantity", "unit_price", "line_total"]
    )
    if view["shipments"]:
        _print_rows(
            "shipments (times in Asia/Shanghai)",
            view["shipments"],
            ["shipment_no", "carrier", "waybill_no", "status", "expected_delivery_date", "delivered_at"],
        )
    _print_rows(
        "timeline (times in Asia/Shanghai)", view["timeline"],
        ["occurred_at", "actor", "kind", "from_state", "to_state", "reason"],
    )


def _print_rows(title: str, rows: list[dict], columns: list[str]) -> None:
    table = RichTable(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    console.print(table)


class ExportFormat(StrEnum):
    csv = "csv"
    xlsx = "xlsx"
    json = "json"


@cli.command()
def export(
    table: Annotated[str, typer.Argument(help="Table name, e.g. orders, order_lines, order_events")],
    fmt: Annotated[ExportFormat, typer.Option("--format", "-f")] = ExportFormat.csv,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File (default: TABLE.FORMAT)")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the output file when it exists")] = False,
    unmasked: Annotated[bool, typer.Option("--unmasked", help="Names, phones, addresses in full (needs the "
                                           "operations, manager or auditor role; recorded in `yidi access log`)")]
    = False,
    who: Annotated[str, typer.Option("--as", help="A listed person's name or login (default: your login)")] = "",
) -> None:
    """Export a table for staff (personal data masked unless --unmasked; csv is UTF-8 with BOM so Excel reads
    Chinese)."""
    from rich.progress import Progress

    from yidi.access_log import record_access
    from yidi.export import UnknownTable, count_rows, export_table
    from yidi.settings import get_settings
    from yidi.staff import NotPermitted, act_as

    actor = None
    if unmasked:
        try:
            actor = act_as(get_settings().staff, "unmasked", who)
        except NotPermitted as exc:
            raise fail(f"{exc} (nothing exported)") from None

    output = output or Path(f"{table}.{fmt.value}")
    if output.exists() or output.is_symlink():
        if not force:
            raise fail(f"{output} exists; give --force to replace it, or another -o")
        if not output.is_file():
            raise fail(f"{output} is not a regular file; not replacing it")
    engine = engine_or_exit()
    try:
        with engine.connect() as conn, Progress(console=Console(stderr=True), transient=True) as bar:
            job = bar.add_task(f"exporting {table}", total=count_rows(conn, table))
            stats: dict = {}
            rows = export_table(conn, table, fmt.value, output, progress=lambda n: bar.advance(job, n),
                                mask=not unmasked, stats=stats)  # fmt: skip
        if actor is not None and stats.get("people"):
            with engine.begin() as conn:
                record_access(conn, actor.text, "export_unmasked", f"{table} → {output.resolve()}", stats["people"],
                              rows=rows, format=fmt.value, listed=actor.listed)  # fmt: skip
    except UnknownTable as exc:
        raise fail(str(exc)) from None
    shown = f"UNMASKED, recorded as {actor.text}" if actor is not None else "personal data masked; --unmasked for full"
    console.print(f"{rows} row(s) of {table} written to {output} ({shown})")


# --- area commands: each area registers its commands here (one line each) ---
import app.cli.access  # noqa: E402, F401  (access log)
import app.cli.aftersales  # noqa: E402, F401  (aftersales request|list|show|assess|receive|schedule|resolve|run)
import app.cli.channels  # noqa: E402, F401  (channels confirm|sync)
import app.cli.demo  # noqa: E402, F401  (demo)
import app.cli.feedback  # noqa: E402, F401  (feedback add|list|show|reply|close)
import app.cli.fulfilment  # noqa: E402, F401  (fulfilment run|stock|decide|produce|qc|receive|report|stocktake)
import app.cli.intake  # noqa: E402, F401  (intake run, intake quarantine list|show|replay|discard)
import app.cli.review  # noqa: E402, F401  (review list|show|approve|reject|run|deadlines)
import app.cli.risk  # noqa: E402, F401  (risk run|credit|override|carriers, kpi, audit run|list|show|resolve|verify|close)
import app.cli.settlement  # noqa: E402, F401  (settlement reconcile|cases …)
import app.cli.tracking  # noqa: E402, F401  (tracking poll|callbacks|incidents|incident-resolve)


def main() -> None:  # pragma: no cover - console entry point
    try:
        cli()
    except SettingsError as exc:
        Console(stderr=True).print(f"[red]invalid policy:[/red] {exc}")
        raise SystemExit(EXIT_CONFIG) from None


if __name__ == "__main__":  # pragma: no cover
    main()
