"""The fulfilment stage of ``make demo``: demo stock receipts, supplier prices and a count sheet, loaded; then the
``fulfilment-handoff`` flow against the carrier and supplier stand-ins (with faults on), then a stocktake."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd

from demo.data import demo_catalog, demo_staff_login
from demo.standins import carrier_shipping, supplier
from flows.fulfilment import fulfilment_handoff, stocktake
from tasks.fulfilment.receipts import load_stock_file
from tasks.fulfilment.stock import StockFileError, sync_warehouses
from tasks.fulfilment.suppliers import load_supplier_prices_file
from yidi.db import get_engine
from yidi.settings import get_settings


def write_demo_fulfilment_files(folder: Path, today=None) -> tuple[Path, Path, Path]:
    """The demo's stock receipts (GBK csv, Chinese headers), supplier price list and a stocktake count sheet.

    Stock: every stocked product in both warehouses (batches with expiry dates for food, one batch already
    expired); make-to-order items have none (production requests); bought-in items a little (purchases).
    """
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
    """`make demo` stage: load demo stock and supplier prices, run ``fulfilment-handoff`` (a subflow when called
    inside the demo's parent flow) against the carrier and supplier stand-ins with faults on (and once more after
    the merge hold, so merged parcels ship), then a stocktake.
    Call it after review has approved orders."""
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
        summary = fulfilment_handoff(carrier_api_url=carrier.url, supplier_api_url=sup.url)
        if summary["parcels"]["parcels"]:
            # Orders of one customer to one address were merged (issue 18); their parcels wait out the time an
            # operator has to undo a merge (counted from the run's moment). The demo does not wait: the next run,
            # as of then, ships them.
            hold = timedelta(minutes=get_settings().fulfilment.parcels.hold_minutes)
            summary["after_hold"] = fulfilment_handoff(carrier_api_url=carrier.url, supplier_api_url=sup.url,
                                                       as_of=datetime.fromisoformat(summary["as_of"]) + hold)
    summary["stocktake"] = demo_stocktake(count_path)
    return summary


def demo_stocktake(count_path: str | Path) -> dict:
    """The demo's count imported by its operations person, then verified by its auditor (issue 20: not the same
    person); both through the staff list's checks."""
    from tasks.fulfilment.stocktake import verify_stocktake
    from yidi.staff import act_as

    summary = stocktake(str(count_path), imported_by=demo_staff_login("operations"))
    staff = get_settings().staff
    with get_engine().begin() as conn:
        summary["verified"] = verify_stocktake(conn, summary["stocktake_no"],
                                               act_as(staff, "stocktake_verify", demo_staff_login("auditor")), staff)
    return summary
