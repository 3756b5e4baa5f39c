"""A small store for after-sales tests: catalog, warehouses, a consumer and a business customer, orders delivered
on chosen days (Asia/Shanghai), and helpers that run the area's steps on a simulated clock."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pandas as pd
from sqlalchemy import select

from tasks.aftersales.assessment import assess_open_cases
from tasks.aftersales.landing import land_requests
from tasks.fulfilment.stock import sync_warehouses
from yidi.bulk import insert_rows, read_frame
from yidi.schema import catalog_items, customers, order_lines, orders, shipments
from yidi.schema_aftersales import aftersales_cases
from yidi.settings import get_settings
from yidi.workdays import BUSINESS_TZ

ITEMS = [  # code, kind, name, price fen
    ("SKU-0001", "product", "摩托车发动机", 328000),
    ("SKU-0004", "product", "火锅底料", 3990),
    ("SKU-0009", "product", "不锈钢保温杯", 7900),
    ("SKU-0012", "product", "实木办公桌", 188000),
    ("SV-INSTALL", "service", "设备上门安装", 30000),
    ("SV-REPAIR", "service", "上门维修", 20000),
]
PRICES = {c: p for c, _, _, p in ITEMS}
KINDS = {c: k for c, k, _, _ in ITEMS}


def local(y, m, d, hh=10, mm=0) -> datetime:
    """A moment in Asia/Shanghai, as the aware UTC datetime the store keeps."""
    return datetime(y, m, d, hh, mm, tzinfo=BUSINESS_TZ).astimezone(UTC)


def build_reference(engine) -> None:
    with engine.begin() as conn:
        insert_rows(conn, catalog_items, pd.DataFrame({
            "code": [i[0] for i in ITEMS], "kind": [i[1] for i in ITEMS], "name": [i[2] for i in ITEMS],
            "list_price_fen": [i[3] for i in ITEMS]}))
        insert_rows(conn, customers, pd.DataFrame({
            "code": ["C1", "C2"], "name": ["张三", "重庆两江机电有限公司"], "kind": ["consumer", "business"],
            "phone": ["13800000001", "13800000002"], "email": ["c1@example.com", "c2@example.com"]}))
        sync_warehouses(conn, get_settings().fulfilment)


def add_order(engine, order_no: str, items: dict[str, float], *, state="delivered", delivered: datetime | None,
              customer: int = 1, channel="website", method="alipay", city="重庆市") -> int:  # fmt: skip
    """One order with ``items`` (code -> quantity); a delivered shipment when ``delivered`` is given."""
    total = int(sum(PRICES[c] * q for c, q in items.items()))
    with engine.begin() as conn:
        insert_rows(conn, orders, pd.DataFrame([{
            "order_no": order_no, "channel": channel, "channel_order_id": f"W-{order_no}", "customer_id": customer,
            "customer_name": "张三" if customer == 1 else "两江机电", "customer_phone": "13900000000",
            "customer_email": "buyer@example.com", "payment_method": method, "order_total_fen": total,
            "goods_total_fen": total, "state": state, "ship_province": "重庆市" if city == "重庆市" else "四川省",
            "ship_city": city, "ship_district": "渝北区", "ship_detail": "金开大道 1 号",
            "order_time": (delivered or local(2026, 11, 2)) - timedelta(days=3)}]))
        oid = conn.execute(select(orders.c.id).where(orders.c.order_no == order_no)).scalar_one()
        insert_rows(conn, order_lines, pd.DataFrame([
            {"order_id": oid, "line_no": n, "item_code": c, "item_kind": KINDS[c], "item_name": c, "quantity": q,
             "unit_price_fen": PRICES[c], "line_total_fen": int(PRICES[c] * q)}
            for n, (c, q) in enumerate(items.items(), start=1)]))
        if delivered is not None:
            insert_rows(conn, shipments, pd.DataFrame([{
                "shipment_no": f"S-{order_no}", "order_id": oid, "carrier": "shunfeng", "waybill_no": f"SF{oid}",
                "idempotency_key": f"k-{order_no}", "status": "delivered", "shipped_at": delivered - timedelta(days=2),
                "delivered_at": delivered}]))
    return oid


def request(engine, order_no: str, kind: str, asked: datetime, *, channel="form", source_id=None, **fields) -> dict:
    record = {"order_no": order_no, "kind": kind, "requested_at": asked.isoformat(), **fields}
    with engine.begin() as conn:
        return land_requests(conn, channel, [(source_id or f"{order_no}:{kind}:{asked.isoformat()}", record)],
                             get_settings(), asked)  # fmt: skip


def assess(engine, now: datetime, settings=None) -> dict:
    with engine.begin() as conn:
        return assess_open_cases(conn, settings or get_settings(), now, actor="test")


def case_of(engine, order_no: str) -> dict:
    with engine.connect() as conn:
        frame = read_frame(conn, select(aftersales_cases).join(orders, orders.c.id == aftersales_cases.c.order_id)
                           .where(orders.c.order_no == order_no).order_by(aftersales_cases.c.id))  # fmt: skip
    return frame.iloc[-1].to_dict()


def order_state(engine, order_no: str) -> str:
    with engine.connect() as conn:
        return conn.execute(select(orders.c.state).where(orders.c.order_no == order_no)).scalar_one()


def day(d: date, hh: int, mm: int = 0) -> datetime:
    return datetime.combine(d, time(hh, mm), tzinfo=BUSINESS_TZ).astimezone(UTC)


def signed_refund_policy(provider, folder, **urls):
    """The ``[aftersales]`` policy pointing at a refund stand-in (``urls``: alipay_url/wechatpay_url) with its
    test-only signing keys written under ``folder``."""
    return get_settings().aftersales.model_copy(update={**urls, **provider.keys.write(folder)})
