"""Fulfilment flows (issue 5; F1-F5, K3, P2).

``fulfilment-handoff`` (renamed from ``fulfill-orders``): every 15 minutes (prefect.yaml) and on demand (``yidi
fulfilment run``). Its step list, ``handoff``: warehouses from the policy and expired batches quarantined, then one
allocation run over every approved order (in-stock orders first), then shipments of one customer to one address
from one warehouse are merged into parcels (issue 18; ``tasks.fulfilment.parcels``), then the purchase orders it
raised go to the suppliers and the shipments it planned get their waybills from the carrier (one per parcel), with shipping documents and pick lists
written under ``$YIDI_HOME/documents``. Each step is a task over whole batches (never one task per order).

Transaction scope: one transaction per step, never one around the run, and no network call inside a
transaction. prepare-stock is one transaction; merge-parcels is one; allocate-orders is one transaction per attempt (a conflict with
another run rolls the attempt back whole and it is planned again, ``tasks.fulfilment.allocation_run``);
send-purchase-orders records each supplier's answer in its own transaction after the call; create-waybills records
each chunk of carrier answers in one transaction after the calls. The network steps carry idempotency keys (PO
number, shipment number), so a task retry after a database error, or a rerun after a crash, never orders or ships
twice. Artifacts in the UI summarise the run without personal data.

Serial on purpose (issue 17): allocation is one task per run, not chunks side by side, because it decides who gets
an item's scarce stock in priority order across every order. Two overlapping runs (more workers, a manual run
during the scheduled one) are kept apart by the database, not by luck: stock is claimed by conditional UPDATEs
that refuse to reserve beyond on hand (and a CHECK constraint), and the losing attempt is rolled back and
planned again from the stock that is left.

``stocktake``: on demand (``yidi fulfilment stocktake FILE``); one import, one transaction (all variances or none).

The CLI's ``--no-prefect`` path and the tests run the same step lists with ``flows.compose.in_process``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

from pydantic import Field

from flows.compose import Run, require_store, retry_on_database_error, with_prefect
from flows.naming import run_name
from flows.params import Moment, ServerFile, Url
from yidi.settings import get_settings
from yidi.steps import NO_CACHE, create_markdown_artifact, create_table_artifact, flow, get_run_logger, task


@task(name="prepare-stock", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2, retry_condition_fn=retry_on_database_error)
def prepare_stock_task(as_of: datetime) -> int:
    """Warehouses from the policy file; batches past their expiry date leave availability."""
    from tasks.fulfilment.stock import quarantine_expired_batches, sync_warehouses
    from yidi.db import for_writing, get_engine
    from yidi.workdays import BUSINESS_TZ

    with for_writing(get_engine()).begin() as conn:
        sync_warehouses(conn, get_settings().fulfilment)
        expired = quarantine_expired_batches(conn, as_of.astimezone(BUSINESS_TZ).date())
    return len(expired)


@task(name="allocate-orders", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=3, retry_condition_fn=retry_on_database_error)
def allocate_task(as_of: datetime | None) -> dict:
    from tasks.fulfilment.allocation_run import allocate_orders
    from yidi.db import for_writing, get_engine

    result = allocate_orders(for_writing(get_engine()), now=as_of)
    return result.as_dict() | {"exception_rows": result.exception_rows}


@task(name="merge-parcels", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2, retry_condition_fn=retry_on_database_error)
def merge_parcels_task(as_of: datetime | None) -> dict:
    from tasks.fulfilment.parcels import merge_parcels
    from yidi.db import for_writing, get_engine

    return merge_parcels(for_writing(get_engine()), now=as_of).as_dict()


@task(name="send-purchase-orders", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5, retry_condition_fn=retry_on_database_error)
def purchase_orders_task(supplier_api_url: str | None) -> dict:
    from connectors.supplier import SupplierClient
    from tasks.fulfilment.purchasing import send_purchase_orders
    from yidi.db import for_writing, get_engine

    policy = get_settings().fulfilment
    with SupplierClient(
        supplier_api_url or policy.supplier_api_url,
        timeout=policy.supplier_api_timeout_seconds,
        attempts=policy.supplier_api_attempts,
    ) as client:
        result = send_purchase_orders(for_writing(get_engine()), client)
    return {"sent": result.sent, "failed": result.failed, "rejected": result.rejected, "orders": result.orders}


@task(name="create-waybills", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5, retry_condition_fn=retry_on_database_error)
def waybills_task(carrier_api_url: str | None, as_of: datetime | None) -> dict:
    from connectors.carrier_shipping import CarrierShippingClient
    from tasks.fulfilment.waybills import create_waybills
    from yidi.db import for_writing, get_engine

    policy = get_settings().fulfilment
    with CarrierShippingClient(
        carrier_api_url or policy.carrier_api_url,
        timeout=policy.carrier_api_timeout_seconds,
        attempts=policy.carrier_api_attempts,
    ) as client:
        result = create_waybills(for_writing(get_engine()), client, now=as_of)
    return result.as_dict() | {"shipments": result.shipments, "problems": result.problems}


def handoff(
    run: Run,
    *,
    carrier_api_url: str | None = None,
    supplier_api_url: str | None = None,
    as_of: datetime | None = None,
    create_shipments: bool = True,
    send_purchase_orders: bool = True,
) -> dict:
    """The step list: prepare stock, allocate, send purchase orders, create waybills (see the module docstring
    for the transaction scope). Returns the run's summary: figures per step, no personal data."""
    moment = as_of or datetime.now(UTC)
    expired = run(prepare_stock_task, moment)
    allocation = run(allocate_task, as_of)
    merged = run(merge_parcels_task, moment)  # the hold counts from the run's moment
    purchases = run(purchase_orders_task, supplier_api_url) if send_purchase_orders else {}
    waybills = run(waybills_task, carrier_api_url, as_of) if create_shipments else {}
    return {"as_of": moment.isoformat(), "expired_batches": expired, "allocation": allocation, "parcels": merged,
            "purchases": purchases, "waybills": waybills}  # fmt: skip


def _publish(summary: dict) -> None:
    """UI artifacts: order numbers, carriers, waybills and reasons only (no names, phones or addresses)."""
    allocation, waybills, purchases = summary["allocation"], summary.get("waybills") or {}, summary.get("purchases") or {}
    lines = [
        f"# Fulfilment run {summary['as_of']}",
        "",
        "| step | figures |",
        "| --- | --- |",
        f"| allocation | {allocation['considered']} orders considered, {allocation['allocated']} allocated "
        f"({allocation['partial']} partial), {allocation['backordered']} short, {allocation['exceptions']} exceptions |",
        f"| requests | {allocation['production_requests']} production, {allocation['purchase_requests']} purchase; "
        f"{allocation['decisions_offered']} customers asked to choose wait/partial/cancel |",
        f"| parcels | {summary['parcels']['parcels']} merged parcels carrying {summary['parcels']['orders']} orders "
        f"({summary['parcels']['no_carrier']} groups no carrier takes together ship apart) |",
        f"| purchase orders | {purchases.get('sent', 0)} sent, {purchases.get('failed', 0)} to retry, "
        f"{purchases.get('rejected', 0)} refused |",
        f"| waybills | {waybills.get('created', 0)} created ({waybills.get('replayed', 0)} recovered after a lost answer), "
        f"{waybills.get('failed', 0)} to retry, {waybills.get('rejected', 0)} refused |",
        f"| documents | {waybills.get('documents', 0)} shipping documents, pick lists: "
        f"{', '.join(Path(p).name for p in waybills.get('pick_lists', []) if p.endswith('.xlsx')) or 'none'} |",
        f"| expired batches quarantined | {summary['expired_batches']} |",
    ]
    create_markdown_artifact(key="fulfilment-summary", markdown="\n".join(lines), description="Fulfilment run")
    shipments = waybills.get("shipments") or []
    if shipments:
        create_table_artifact(
            key="fulfilment-shipments",
            table=[shipment_row(s) for s in shipments[:1000]],
            description=f"Shipments handed to carriers ({len(shipments)}; first 1000 shown)",
        )
    exceptions = allocation.get("exception_rows") or []
    problems = waybills.get("problems") or []
    if exceptions or problems:
        rows = [{"order_no": str(e["order_no"]), "problem": e["exception"]} for e in exceptions]
        rows += [{"order_no": str(p["order_no"]), "problem": f"{p['shipment_no']}: {p['error']}"} for p in problems]
        shown = f"{len(rows)}" if len(rows) <= 1000 else f"{len(rows)}; the first 1000 shown"
        create_table_artifact(key="fulfilment-exceptions", table=rows[:1000],
                              description=f"Orders that need a person ({shown}; they keep their state)")  # fmt: skip


# The artifact's columns, short enough that every one shows in the UI's table at 1600 px (seen: `phone` and
# `destination` cut off on the right); the order number is the shipment number without its `-n`.
SHIPMENT_COLUMNS = {"shipment_no": "shipment", "carrier": "carrier", "waybill_no": "waybill",
                    "expected_delivery_date": "due", "warehouse": "from", "recipient": "recipient",
                    "phone": "phone", "destination": "to"}  # fmt: skip


def shipment_row(shipment: dict) -> dict:
    return {label: "" if shipment.get(key) is None else str(shipment[key]) for key, label in SHIPMENT_COLUMNS.items()}


@flow(name="fulfilment-handoff", log_prints=True, flow_run_name=run_name("handoff"))
def fulfilment_handoff(
    carrier_api_url: Url = None,
    supplier_api_url: Url = None,
    as_of: Moment = None,
    create_shipments: bool = True,
    send_purchase_orders: bool = True,
) -> dict:
    """Allocate every approved order, raise and send purchase/production requests, create waybills and
    documents, notify customers.

    Args:
        carrier_api_url: The carrier's shipping API. Empty: the policy's [fulfilment].carrier_api_url.
        supplier_api_url: The suppliers' purchase-order API. Empty: the policy's [fulfilment].supplier_api_url.
        as_of: Act as if it were this time (replays). Empty: now.
        create_shipments: Create waybills with the carrier (off: allocate and write documents only).
        send_purchase_orders: Send purchase orders to suppliers (off: raise them, send later).
    """
    require_store()
    summary = handoff(
        with_prefect,
        carrier_api_url=carrier_api_url,
        supplier_api_url=supplier_api_url,
        as_of=as_of,
        create_shipments=create_shipments,
        send_purchase_orders=send_purchase_orders,
    )
    get_run_logger().info("allocation: %s", {k: v for k, v in summary["allocation"].items() if k != "exception_rows"})
    _publish(summary)
    allocation, waybills = summary["allocation"], summary["waybills"]
    print(
        f"fulfilment: {allocation['allocated']} allocated, {allocation['backordered']} short, "
        f"{allocation['exceptions']} exceptions; {summary['parcels']['parcels']} parcels merged; waybills {waybills.get('created', 0)} created, "
        f"{waybills.get('failed', 0)} to retry"
    )
    return summary


@task(name="import-stocktake", cache_policy=NO_CACHE)
def import_stocktake_task(path: str, as_of: datetime | None, actor: str | None = None):
    """One transaction: every variance of the count sheet corrects the books, or none does."""
    from tasks.fulfilment.stocktake import import_stocktake
    from yidi.db import get_engine

    with get_engine().begin() as conn:
        return import_stocktake(conn, path, policy=get_settings().fulfilment, now=as_of, actor=actor)


def stock_count(run: Run, path: str, *, as_of: datetime | None = None, actor: str | None = None):
    """The step list of ``stocktake``: import the count sheet (returns the ``StocktakeResult``); ``actor`` is the
    listed operations person (``role:name``) the adjustments are recorded with."""
    return run(import_stocktake_task, path, as_of, actor)


@flow(name="stocktake", log_prints=True, flow_run_name=run_name("stocktake", "path", when="%Y-%m-%d %H:%M"))
def stocktake(path: ServerFile, as_of: Moment = None,
              imported_by: Annotated[str, Field(max_length=100, examples=["ops:王芳"])] = "") -> dict:
    """Import a stocktake file: variances become adjustments with reasons; the report goes to the UI and to
    ``$YIDI_HOME/documents/stocktakes``.

    Args:
        path: The count sheet (csv/xlsx: warehouse, item, lot, counted), a path the worker can read.
        as_of: When the count was taken. Empty: now.
        imported_by: Your name or login as listed in [staff] (operations role); the adjustments are recorded with it.
    """
    from yidi.staff import act_as

    require_store()
    actor = act_as(get_settings().staff, "stock_adjust", imported_by)  # NotPermitted fails the run, stock unchanged
    result = stock_count(with_prefect, path, as_of=as_of, actor=actor.text)
    summary = result.as_dict()
    create_markdown_artifact(
        key="stocktake-summary",
        markdown=(
            f"# Stocktake {result.stocktake_no}\n\nFile `{Path(path).name}`: {result.rows_total} rows, "
            f"{result.applied} corrected the books, {result.unchanged} matched, {result.rejected} refused. "
            f"{len(result.released_orders)} order(s) lost their allocation and are backordered again.\n\n"
            + "\n".join(f"- {name.replace('_', ' ')}: {len(frame)}" for name, frame in result.report.items())
            + f"\n\nReport: `{result.report_path}`"
        ),
    )
    for name, frame in result.report.items():
        if len(frame):
            create_table_artifact(
                key=f"stocktake-{name.replace('_', '-')}",
                table=[{k: ("" if v is None or v != v else str(v)) for k, v in row.items()}
                       for row in frame.head(500).to_dict("records")],
                description=f"{name.replace('_', ' ')} ({len(frame)})",
            )  # fmt: skip
    print(f"stocktake {result.stocktake_no}: {summary}")
    return summary
