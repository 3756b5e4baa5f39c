"""``fulfill-orders``: every 15 minutes (prefect.yaml) and on demand (``yidi fulfil run``); ``stocktake`` on demand
(``yidi stocktake FILE``).

Thin composition of ``tasks/fulfil.py``: warehouses from the policy and expired batches quarantined, then one
allocation run over every approved order (in-stock orders first), then the purchase orders it raised go to the
suppliers and the shipments it planned get their waybills from the carrier, with shipping documents and pick
lists written under ``$YIDI_HOME/documents``. Each step is a task over whole batches (never one task per order);
allocation retries its own conflicts, the network steps are idempotent, so a task retry after a database error
is safe. Artifacts in the UI summarise the run without personal data.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from sqlalchemy.exc import DBAPIError

from yidi.settings import get_settings


def _database_failed(_task, _task_run, state) -> bool:
    try:
        state.result()
    except DBAPIError:
        return True
    except Exception:  # noqa: BLE001 - anything else is not a reason to run the step again
        return False
    return False


@task(name="prepare-stock", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2, retry_condition_fn=_database_failed)
def prepare_stock_task(as_of: datetime) -> int:
    """Warehouses from the policy file; batches past their expiry date leave availability."""
    from tasks.fulfilment.stock import quarantine_expired_batches, sync_warehouses
    from yidi.db import get_engine
    from yidi.workdays import BUSINESS_TZ

    with get_engine().begin() as conn:
        sync_warehouses(conn, get_settings().fulfilment)
        expired = quarantine_expired_batches(conn, as_of.astimezone(BUSINESS_TZ).date())
    return len(expired)


@task(name="allocate-orders", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=3, retry_condition_fn=_database_failed)
def allocate_task(as_of: datetime | None) -> dict:
    from tasks.fulfilment.steps import allocate_orders
    from yidi.db import get_engine

    result = allocate_orders(get_engine(), now=as_of)
    return result.as_dict() | {"exception_rows": result.exception_rows}


@task(name="send-purchase-orders", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5, retry_condition_fn=_database_failed)
def purchase_orders_task(supplier_api_url: str | None) -> dict:
    from connectors.supplier import SupplierClient
    from tasks.fulfilment.steps import send_purchase_orders
    from yidi.db import get_engine

    policy = get_settings().fulfilment
    with SupplierClient(
        supplier_api_url or policy.supplier_api_url,
        timeout=policy.supplier_api_timeout_seconds,
        attempts=policy.supplier_api_attempts,
    ) as client:
        result = send_purchase_orders(get_engine(), client)
    return {"sent": result.sent, "failed": result.failed, "rejected": result.rejected, "orders": result.orders}


@task(name="create-waybills", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5, retry_condition_fn=_database_failed)
def waybills_task(carrier_api_url: str | None, as_of: datetime | None) -> dict:
    from connectors.carrier_shipping import CarrierShippingClient
    from tasks.fulfilment.steps import create_waybills
    from yidi.db import get_engine

    policy = get_settings().fulfilment
    with CarrierShippingClient(
        carrier_api_url or policy.carrier_api_url,
        timeout=policy.carrier_api_timeout_seconds,
        attempts=policy.carrier_api_attempts,
    ) as client:
        result = create_waybills(get_engine(), client, now=as_of)
    return result.as_dict() | {"shipments": result.shipments, "problems": result.problems}


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
            table=[{k: str(v) for k, v in s.items()} for s in shipments[:1000]],
            description=f"Shipments handed to carriers ({len(shipments)}; first 1000 shown)",
        )
    exceptions = allocation.get("exception_rows") or []
    problems = waybills.get("problems") or []
    if exceptions or problems:
        rows = [{"order_no": str(e["order_no"]), "problem": e["exception"]} for e in exceptions]
        rows += [{"order_no": str(p["order_no"]), "problem": f"{p['shipment_no']}: {p['error']}"} for p in problems]
        create_table_artifact(key="fulfilment-exceptions", table=rows[:1000],
                              description="Orders that need a person (they keep their state)")  # fmt: skip


@flow(name="fulfill-orders", log_prints=True)
def fulfill_orders(
    carrier_api_url: str | None = None,
    supplier_api_url: str | None = None,
    as_of: datetime | None = None,
    create_shipments: bool = True,
    send_purchase_orders: bool = True,
) -> dict:
    """Allocate every approved order, raise and send purchase/production requests, create waybills and
    documents, notify customers. URLs default to the policy file (``fulfilment.carrier_api_url`` …)."""
    logger = get_run_logger()
    moment = as_of or datetime.now(UTC)
    expired = prepare_stock_task(moment)
    allocation = allocate_task(as_of)
    logger.info("allocation: %s", {k: v for k, v in allocation.items() if k != "exception_rows"})
    purchases = purchase_orders_task(supplier_api_url) if send_purchase_orders else {}
    waybills = waybills_task(carrier_api_url, as_of) if create_shipments else {}
    summary = {"as_of": moment.isoformat(), "expired_batches": expired, "allocation": allocation,
               "purchases": purchases, "waybills": waybills}  # fmt: skip
    _publish(summary)
    print(
        f"fulfilment: {allocation['allocated']} allocated, {allocation['backordered']} short, "
        f"{allocation['exceptions']} exceptions; waybills {waybills.get('created', 0)} created, "
        f"{waybills.get('failed', 0)} to retry"
    )
    return summary


@flow(name="stocktake", log_prints=True)
def stocktake(path: str, as_of: datetime | None = None) -> dict:
    """Import a stocktake file: variances become adjustments with reasons; the report goes to the UI and to
    ``$YIDI_HOME/documents/stocktakes``."""
    from tasks.fulfilment.stocktake import import_stocktake
    from yidi.db import get_engine

    with get_engine().begin() as conn:
        result = import_stocktake(conn, path, policy=get_settings().fulfilment, now=as_of)
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


# --- demo: what `make demo` calls after review has approved orders -------------------------------------------


def write_demo_fulfilment_files(folder: Path, today=None) -> tuple[Path, Path, Path]:
    """The demo's stock receipts (GBK csv, Chinese headers), supplier price list and a stocktake count sheet.

    Stock: every stocked product in both warehouses (batches with expiry dates for food, one batch already
    expired); make-to-order items have none (production requests); bought-in items a little (purchases).
    """
    from datetime import date, timedelta

    import pandas as pd

    from demo.data import demo_catalog

    today = today or date.today()
    folder.mkdir(parents=True, exist_ok=True)
    catalog = demo_catalog()
    products = catalog[catalog["kind"] == "product"]
    rows = []
    for i, (code, sourcing) in enumerate(zip(products["code"], products["sourcing"], strict=True)):
        if sourcing == "make_to_order":
            continue
        base = 15 if sourcing == "buy" else 500 + 40 * i
        food = code in ("SKU-0004", "SKU-0005")
        if food:
            rows.append(("CQ-XY", code, base // 2, f"{code[-2:]}A{today:%y%m}", str(today + timedelta(days=180)), "新批次"))
            rows.append(("CQ-XY", code, 60, f"{code[-2:]}X{today:%y%m}", str(today - timedelta(days=3)), "过期批次（演示）"))
            rows.append(("CQ-LJ", code, base // 3, f"{code[-2:]}B{today:%y%m}", str(today + timedelta(days=20)), "临期批次"))
        else:
            rows.append(("CQ-XY", code, base, "", "", "期初库存"))
            rows.append(("CQ-LJ", code, base // 3, "", "", "期初库存"))
    stock = pd.DataFrame(rows, columns=["仓库", "商品编码", "数量", "批次号", "有效期至", "备注"])
    stock_path = folder / "stock-receipts.csv"
    stock.to_csv(stock_path, index=False, encoding="gbk")
    bought = products[products["sourcing"] != "make_to_order"]["code"].tolist()
    prices = []
    for code, price in zip(products["code"], products["list_price"], strict=True):
        if code not in bought:
            continue
        cost = float(price) * 0.62
        prices.append(("SUP-01", "渝新供应链有限公司", code, f"{cost:.2f}", "30.00", 5, 1))
        prices.append(("SUP-02", "成都汇通贸易有限公司", code, f"{cost * 0.96:.2f}", "80.00", 3, 5))
    prices_path = folder / "supplier-prices.csv"
    pd.DataFrame(prices, columns=["供应商编码", "供应商名称", "商品编码", "采购单价", "每单运费", "交期", "起订量"]).to_csv(
        prices_path, index=False, encoding="utf-8"
    )
    count = pd.DataFrame(
        [("CQ-XY", "SKU-0002", "", 500, 3, "抽盘：3 顶破损"), ("CQ-LJ", "SKU-0003", "", 150, 0, ""),
         ("CQ-XY", "SKU-9999", "", 5, 0, "编码写错（演示：会被拒收）"), ("CQ-LJ", "SKU-0009", "", -2, 0, "负数（演示：会被拒收）")],
        columns=["仓库", "商品编码", "批次号", "实盘数量", "损坏数量", "备注"],
    )  # fmt: skip
    count_path = folder / "stocktake.csv"
    count.to_csv(count_path, index=False, encoding="gbk")
    return stock_path, prices_path, count_path


def fulfilment_demo(folder: str | Path) -> dict:
    """`make demo` stage: load demo stock and supplier prices, run ``fulfill-orders`` (a subflow when called
    inside the demo's parent flow) against the carrier and supplier stand-ins with faults on, then a stocktake.
    Call it after review has approved orders."""
    from demo.standins import carrier_shipping, supplier
    from tasks.fulfilment.stock import StockFileError, load_stock_file, sync_warehouses
    from tasks.fulfilment.suppliers import load_supplier_prices_file
    from yidi.db import get_engine

    stock_path, prices_path, count_path = write_demo_fulfilment_files(Path(folder))
    engine = get_engine()
    with engine.begin() as conn:
        sync_warehouses(conn, get_settings().fulfilment)
        try:
            load_stock_file(conn, stock_path, actor="demo")
        except StockFileError:  # loaded by an earlier demo run in the same home
            pass
        load_supplier_prices_file(conn, prices_path)
    with carrier_shipping.start() as carrier, supplier.start() as sup:
        carrier.fail_next("lost")  # the first waybill's answer is lost: recovered with the same key
        carrier.fail_next("5xx", times=2)  # a short outage: retried
        summary = fulfill_orders(carrier_api_url=carrier.url, supplier_api_url=sup.url)
    summary["stocktake"] = stocktake(str(count_path))
    return summary
