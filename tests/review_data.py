"""Test orders for the review: a clean order and one variant per reason code (each triggers its code)."""

from __future__ import annotations

import copy
import itertools
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy import select

from yidi.bulk import insert_rows, read_frame
from yidi.schema import catalog_items, customers, order_lines, orders

SH = ZoneInfo("Asia/Shanghai")
ORDER_TIME = datetime(2026, 11, 2, 10, 0, tzinfo=SH)
_serial = itertools.count(1)

POLICY = """
[limits]
purchase_limits = [{ item_code = "SKU-LIM", max_quantity = 5, window_days = 30 }]
[promotions]
active = [{ code = "DOUBLE11", item_codes = ["SKU-PROMO"], discount_pct = 20, starts = "2026-11-01", ends = "2026-11-11" }]
"""

CATALOG = pd.DataFrame([
    {"code": "SKU-A", "kind": "product", "name": "工业风扇", "spec": "500W", "model": "FS-500", "unit": "台",
     "list_price_fen": 10_000, "active": True, "min_order_qty": 1, "max_order_qty": 100},
    {"code": "SKU-OLD", "kind": "product", "name": "旧款风扇", "spec": "300W", "model": "FS-300", "unit": "台",
     "list_price_fen": 10_000, "active": False, "min_order_qty": 1, "max_order_qty": None},
    {"code": "SVC-INST", "kind": "service", "name": "上门安装服务", "spec": None, "model": None, "unit": "次",
     "list_price_fen": 5_000, "active": True, "min_order_qty": 1, "max_order_qty": None},
    {"code": "SKU-CABLE", "kind": "product", "name": "电缆", "spec": "3x2.5mm²", "model": "YJV", "unit": "米",
     "list_price_fen": 300, "active": True, "min_order_qty": 1, "max_order_qty": None},
    {"code": "SKU-LIM", "kind": "product", "name": "限量款风扇", "spec": "500W", "model": "LX-1", "unit": "台",
     "list_price_fen": 10_000, "active": True, "min_order_qty": 1, "max_order_qty": None},
    {"code": "SKU-PROMO", "kind": "product", "name": "促销风扇", "spec": "500W", "model": "PR-1", "unit": "台",
     "list_price_fen": 10_000, "active": True, "min_order_qty": 1, "max_order_qty": None},
])  # fmt: skip

CUSTOMERS = [
    {"code": "C-VIP", "name": "重庆大客户有限公司", "is_important": True, "credit_limit_fen": 30_000, "net_days": 30,
     "payment_terms": "net"},
    {"code": "C-OVERDUE", "name": "成都老客户有限公司", "is_important": True, "credit_limit_fen": 100_000_000,
     "net_days": 30, "payment_terms": "net"},
    {"code": "C-BLOCK", "name": "被冻结客户", "blocked": True},
    {"code": "C-PLAN", "name": "分期客户", "prepayment_ratio": 0.3},
    {"code": "C-GRADE-E", "name": "信用E级客户"},  # K1 graded by the risk area (store_history)
    {"code": "C-GRADE-C", "name": "信用C级客户"},
]  # fmt: skip

CLEAN_ORDER = {
    "channel": "website", "customer_name": "李明", "customer_phone": "13812348000",
    "customer_email": "liming@example.com", "ship_province": "四川省", "ship_city": "成都市", "ship_district": "武侯区",
    "ship_detail": "人民南路四段1号", "region": "remote", "payment_method": "alipay", "installments": 1,
    "currency": "CNY", "goods_total_fen": 20_000, "discount_fen": 0, "freight_fen": 1_000, "order_total_fen": 21_000,
    "state": "received", "payment_state": "paid", "order_time": ORDER_TIME,
}  # fmt: skip
CLEAN_LINE = {"line_no": 1, "item_code": "SKU-A", "item_kind": "product", "item_name": "工业风扇", "spec": "500W",
              "model": "FS-500", "quantity": 2.0, "unit_price_fen": 10_000, "discount_fen": 0,
              "line_total_fen": 20_000}  # fmt: skip


def one_line(**changes) -> list[dict]:
    line = {**CLEAN_LINE, **changes}
    if "line_total_fen" not in changes:
        line["line_total_fen"] = round(line["quantity"] * line["unit_price_fen"]) - line["discount_fen"]
    return [line]


def variant(lines: list[dict] | None = None, **changes) -> dict:
    """The clean order with changes; totals follow the lines unless given."""
    order = {**copy.deepcopy(CLEAN_ORDER), **changes}
    lines = copy.deepcopy(lines if lines is not None else [CLEAN_LINE])
    if "goods_total_fen" not in changes:
        order["goods_total_fen"] = sum(line["line_total_fen"] for line in lines)
    if "order_total_fen" not in changes:
        order["order_total_fen"] = order["goods_total_fen"] - order["discount_fen"] + order["freight_fen"]
    return {"order": order, "lines": lines}


# name -> (order spec, expected reason codes exactly)
CASES: dict[str, tuple[dict, set[str]]] = {
    "clean": (variant(), set()),
    "name_missing": (variant(customer_name=None), {"CUSTOMER_NAME_MISSING"}),
    "name_placeholder": (variant(customer_name="测试"), {"CUSTOMER_NAME_IMPLAUSIBLE"}),
    "phone_missing": (variant(customer_phone=None), {"PHONE_MISSING"}),
    "phone_invalid": (variant(customer_phone="12345"), {"PHONE_INVALID"}),
    "phone_service": (variant(customer_phone="4008001234"), {"PHONE_SERVICE_NUMBER"}),
    "landline_ok": (variant(customer_phone="023-63211234"), set()),
    "no_district": (variant(ship_district=None), {"ADDRESS_INCOMPLETE"}),
    "region_unknown": (variant(region="unknown"), {"REGION_UNKNOWN"}),
    "region_local": (variant(region="local", ship_province="重庆市", ship_city="重庆市", ship_district="渝中区"),
                     {"REGION_LOCAL"}),
    "credit_limit": (variant(customer="C-VIP", payment_state="unpaid"), {"CREDIT_LIMIT_EXCEEDED"}),
    "credit_overdue": (variant(customer="C-OVERDUE", payment_state="unpaid"), {"CREDIT_OVERDUE"}),
    "no_lines": (variant(lines=[]), {"ORDER_NO_LINES"}),
    "item_unknown": (variant(one_line(item_code="SKU-NOPE")), {"ITEM_UNKNOWN"}),
    "item_inactive": (variant(one_line(item_code="SKU-OLD", item_name="旧款风扇", spec="300W", model="FS-300")),
                      {"ITEM_INACTIVE"}),
    "kind_mismatch": (variant(one_line(item_kind="service")), {"ITEM_KIND_MISMATCH"}),
    "name_mismatch": (variant(one_line(item_name="液晶电视机")), {"ITEM_NAME_MISMATCH"}),
    "title_contains_name": (variant(one_line(item_name="【官方正品】工业风扇 大风量 落地扇")), set()),
    "spec_mismatch": (variant(one_line(spec="1000W")), {"ITEM_SPEC_MISMATCH"}),
    "model_mismatch": (variant(one_line(model="FS-900")), {"ITEM_MODEL_MISMATCH"}),
    "model_spelling_ok": (variant(one_line(model="fs500")), set()),
    "quantity_fraction": (variant(one_line(quantity=1.5)), {"QUANTITY_INVALID"}),
    "cable_by_metre_ok": (variant(one_line(item_code="SKU-CABLE", item_name="电缆", spec="3x2.5mm²", model="YJV",
                                           quantity=12.5, unit_price_fen=300)), set()),
    "quantity_over_max": (variant(one_line(quantity=200.0)), {"QUANTITY_OUT_OF_LIMITS"}),
    "price_low": (variant(one_line(unit_price_fen=7_000)), {"PRICE_OUT_OF_TOLERANCE"}),
    "price_within_tolerance": (variant(one_line(unit_price_fen=9_600)), set()),
    "line_total_wrong": (variant(one_line(line_total_fen=19_000)), {"LINE_TOTAL_MISMATCH"}),
    "order_total_wrong": (variant(order_total_fen=25_000), {"ORDER_TOTAL_MISMATCH"}),
    "currency_usd": (variant(currency="USD"), {"CURRENCY_UNSUPPORTED"}),
    "method_paypal": (variant(payment_method="paypal"), {"PAYMENT_METHOD_NOT_ALLOWED"}),
    "cod": (variant(payment_method="cod", payment_state="unpaid"), {"PAYMENT_SPECIAL_REVIEW"}),
    "cod_over_limit": (variant(one_line(quantity=60.0), payment_method="cod", payment_state="unpaid"),
                       {"PAYMENT_SPECIAL_REVIEW", "COD_OVER_LIMIT"}),
    "installments_24": (variant(payment_method="installment", installments=24, payment_state="unpaid"),
                        {"PAYMENT_SPECIAL_REVIEW", "INSTALLMENTS_OVER_MAX", "INSTALLMENT_FIRST_PAYMENT_LOW"}),
    "installments_10": (variant(payment_method="installment", installments=10, payment_state="unpaid"),
                        {"PAYMENT_SPECIAL_REVIEW", "INSTALLMENT_FIRST_PAYMENT_LOW"}),
    "installments_10_prepaid_share": (variant(customer="C-PLAN", payment_method="installment", installments=10,
                                              payment_state="unpaid"), {"PAYMENT_SPECIAL_REVIEW"}),
    "blocked": (variant(customer="C-BLOCK"), {"CUSTOMER_BLOCKED"}),
    "grade_e_cod": (variant(customer="C-GRADE-E", payment_method="cod", payment_state="unpaid"),
                    {"PAYMENT_SPECIAL_REVIEW", "CREDIT_GRADE_REVIEW", "CREDIT_GUARANTEE_REQUIRED",
                     "CREDIT_GRADE_COD_REFUSED", "CREDIT_PREPAYMENT_REQUIRED"}),
    "grade_c_installments": (variant(customer="C-GRADE-C", payment_method="installment", installments=3,
                                     payment_state="unpaid"),
                             {"PAYMENT_SPECIAL_REVIEW", "CREDIT_GRADE_INSTALLMENTS_REFUSED"}),
    "grade_c_paid_ok": (variant(customer="C-GRADE-C"), set()),
    "purchase_limit": (variant(one_line(item_code="SKU-LIM", item_name="限量款风扇", model="LX-1", quantity=2.0),
                               customer_phone="13900001111"), {"PURCHASE_LIMIT_EXCEEDED"}),
    "promo_in_window": (variant(one_line(item_code="SKU-PROMO", item_name="促销风扇", model="PR-1",
                                         unit_price_fen=8_000)), set()),
    "promo_outside_window": (variant(one_line(item_code="SKU-PROMO", item_name="促销风扇", model="PR-1",
                                              unit_price_fen=8_000), order_time=datetime(2026, 11, 20, 9, tzinfo=SH)),
                             {"PROMOTION_OUTSIDE_WINDOW"}),
    "formula_item_name": (variant(one_line(item_name='=HYPERLINK("http://evil.example","工业风扇")')),
                          {"TEXT_IS_FORMULA"}),
    "promo_ineligible": (variant(one_line(unit_price_fen=8_000), order_time=datetime(2026, 11, 5, 9, tzinfo=SH)),
                         {"PROMOTION_ITEM_INELIGIBLE"}),
}  # fmt: skip

SEVERAL = variant(one_line(item_code="SKU-NOPE"), customer_name=None, customer_phone="12345",
                  payment_method="paypal")
SEVERAL_CODES = {"CUSTOMER_NAME_MISSING", "PHONE_INVALID", "ITEM_UNKNOWN", "PAYMENT_METHOD_NOT_ALLOWED"}


CUSTOMER_DEFAULTS = {"is_important": False, "credit_limit_fen": 0, "net_days": 0, "payment_terms": "prepaid",
                     "blocked": False, "prepayment_ratio": 0.0}


def load_reference(conn) -> dict[str, int]:
    catalog = CATALOG.copy()
    catalog["max_order_qty"] = catalog["max_order_qty"].astype("float64")
    insert_rows(conn, catalog_items, catalog)
    frame = pd.DataFrame([{**CUSTOMER_DEFAULTS, **row} for row in CUSTOMERS])
    insert_rows(conn, customers, frame.astype({"credit_limit_fen": "int64", "net_days": "int64"}))
    rows = conn.execute(select(customers.c.code, customers.c.id)).all()
    return {code: cid for code, cid in rows}


def insert_order(conn, spec: dict, customer_ids: dict[str, int] | None = None, no: str | None = None) -> int:
    order = dict(spec["order"])
    serial = next(_serial)
    no = no or f"YD-R-{serial:05d}"
    customer = order.pop("customer", None)
    order.update({"order_no": no, "channel_order_id": no, "content_hash": f"hash-{no}-1"})
    if customer:
        order["customer_id"] = customer_ids[customer]
    insert_rows(conn, orders, pd.DataFrame([order]))
    order_id = conn.execute(select(orders.c.id).where(orders.c.order_no == no)).scalar_one()
    if spec["lines"]:
        insert_rows(conn, order_lines, pd.DataFrame([{**line, "order_id": order_id} for line in spec["lines"]]))
    return order_id


def store_history(conn, customer_ids: dict[str, int]) -> None:
    """Orders already in the store that the credit, overdue and purchase-limit rules must count, and the credit
    grades the risk area gave two customers (K1)."""
    from yidi.schema_risk import customer_credit

    insert_rows(conn, customer_credit, pd.DataFrame([
        {"customer_id": customer_ids[code], "score": score, "grade": code[-1], "evaluation_id": 0,
         "evaluated_at": ORDER_TIME - timedelta(days=1)} for code, score in (("C-GRADE-E", 20.0), ("C-GRADE-C", 60.0))
    ]))  # fmt: skip
    insert_order(conn, variant(customer="C-VIP", payment_state="unpaid", state="approved"), customer_ids,
                 no="YD-H-VIP-OPEN")
    insert_order(conn, variant(customer="C-OVERDUE", payment_state="unpaid", state="delivered",
                               order_time=ORDER_TIME - timedelta(days=60)), customer_ids, no="YD-H-OVERDUE")
    insert_order(conn, variant(one_line(item_code="SKU-LIM", item_name="限量款风扇", model="LX-1", quantity=4.0),
                               customer_phone="13900001111", state="pending_review",
                               order_time=ORDER_TIME - timedelta(days=10)), customer_ids, no="YD-H-LIMIT")


def build_store(conn) -> dict[str, int]:
    """Reference data, history, and one order per case; returns case name -> order id."""
    customer_ids = load_reference(conn)
    store_history(conn, customer_ids)
    ids = {name: insert_order(conn, spec, customer_ids) for name, (spec, _codes) in CASES.items()}
    ids["several"] = insert_order(conn, SEVERAL, customer_ids)
    return ids


def order_frame(conn, order_ids) -> pd.DataFrame:
    return read_frame(conn, select(orders).where(orders.c.id.in_(list(order_ids))))


def run_auto_review(engine, order_ids=None, *, settings=None, **options) -> dict:
    """The ``auto-review`` flow's step list run in this process, without Prefect (as ``yidi review run`` does)."""
    from flows.compose import in_process
    from flows.review import automated_review
    from yidi.settings import get_settings

    return automated_review(in_process, engine=engine, settings=settings or get_settings(), order_ids=order_ids,
                            **options)  # fmt: skip
