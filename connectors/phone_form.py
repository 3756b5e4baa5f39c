"""Phone orders keyed into a form (the Prefect UI form of the ``intake-phone-order`` flow, or any program).

The form's answer is the raw record: its JSON lands in ``intake_records`` like every other channel's record and is
parsed here into the canonical order, so validation, quarantine and replay are the same as for the other channels.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pandas as pd
from pydantic import BaseModel, Field

from connectors.base import (
    LINE_COLUMNS,
    ORDER_COLUMNS,
    BadValue,
    Batch,
    Connector,
    Parsed,
    clean_text,
    frame_from_rows,
    make_records,
    parse_local_time,
    parse_quantity,
    problem_rows,
)
from connectors.template.headers import KIND_VALUES, PAYMENT_VALUES
from yidi.bulk import json_text
from yidi.money import yuan_to_fen

CONTENT_TYPE = "application/json; phone-order-form"


class FormLine(BaseModel):
    item_code: str = Field("", description="SKU or service code (商品/服务编码)")
    item_name: str = Field("", description="Name as the customer said it (品名)")
    quantity: float = Field(1, gt=0, description="数量")
    unit_price_yuan: str = Field(..., description="单价（元）, e.g. 189.00")
    kind: str = Field("", description="商品 / 服务 (product / service); empty = from the catalog")


class PhoneOrder(BaseModel):
    """One phone (or fax) order as staff key it in."""

    channel: str = Field("phone", description="phone or fax")
    order_no: str = Field("", description="Order number; empty = generated")
    order_time: str = Field("", description="When the customer ordered (China time); empty = now")
    customer_name: str = Field(..., description="客户名称")
    phone: str = Field(..., description="联系电话")
    email: str = Field("", description="邮箱")
    province: str = Field("", description="省")
    city: str = Field("", description="市")
    district: str = Field("", description="区/县")
    address: str = Field(..., description="详细地址 (or the whole address when province/city are empty)")
    payment_method: str = Field("bank_transfer", description="alipay, wechatpay, bank_transfer, cod, installment")
    installments: int = Field(1, ge=1)
    freight_yuan: str = Field("0", description="运费（元）")
    note: str = Field("", description="备注")
    lines: list[FormLine] = Field(..., min_length=1, description="One entry per product or service")


def form_record(order: PhoneOrder | dict, *, entered_by: str = "") -> pd.DataFrame:
    """The raw record for a keyed-in order (an order number is generated when none was given)."""
    data = order.model_dump() if isinstance(order, BaseModel) else dict(order)
    if not data.get("order_no"):
        now = datetime.now(UTC)
        data["order_no"] = f"PH{now:%Y%m%d%H%M%S%f}"
    data.setdefault("entered_at", datetime.now(UTC).isoformat())
    if entered_by:
        data["entered_by"] = entered_by
    content = json_text(data)
    return make_records([content], f"form:{entered_by or 'staff'}", content_type=CONTENT_TYPE,
                        source_keys=[data["order_no"]])


class FormConnector(Connector):
    """Records are handed in by the phone-order flow (``records`` option); there is nothing to pull."""

    def fetch(self, cursor: str | None) -> Iterator[Batch]:
        records = self.options.get("records")
        if records is not None and len(records):
            yield Batch(records, label="phone-order form")

    def parse(self, records: pd.DataFrame) -> Parsed:
        orders, lines, problems = [], [], []
        for idx, content in enumerate(records["content"].tolist()):
            try:
                data = json.loads(content)
                order, order_lines = _parse(idx, data)
            except ValueError as exc:
                problems.append((idx, f"phone order form: {exc}"))
                continue
            orders.append(order)
            lines.extend(order_lines)
        return Parsed(frame_from_rows(orders, ORDER_COLUMNS), frame_from_rows(lines, LINE_COLUMNS),
                      problem_rows(problems))


def _parse(idx: int, data: dict) -> tuple[dict, list[dict]]:
    if not isinstance(data, dict):
        raise BadValue("the record is not a form object")
    channel = {"电话": "phone", "传真": "fax"}.get(str(data.get("channel", "phone")), str(data.get("channel")))
    if channel not in ("phone", "fax"):
        raise BadValue(f"channel {data.get('channel')!r} is not phone or fax")
    lines = []
    for n, line in enumerate(data.get("lines") or [], start=1):
        code, name = clean_text(line.get("item_code")), clean_text(line.get("item_name"))
        if not code and not name:
            raise BadValue(f"line {n}: give an item code or name")
        kind = KIND_VALUES.get(str(line.get("kind") or "").strip().lower())
        lines.append({
            "record_idx": idx,
            "line_no": n,
            "item_code": code,
            "item_name": name,
            "item_kind": kind,
            "quantity": parse_quantity(line.get("quantity"), f"line {n} quantity"),
            "unit_price_fen": yuan_to_fen(line.get("unit_price_yuan"), f"line {n} unit price"),
        })
        if lines[-1]["unit_price_fen"] is None:
            raise BadValue(f"line {n}: unit price is empty")
    method = str(data.get("payment_method") or "").strip()
    province, city = clean_text(data.get("province")), clean_text(data.get("city"))
    address = clean_text(data.get("address"))
    order = {
        "record_idx": idx,
        "channel": channel,
        "channel_order_id": clean_text(data.get("order_no")),
        "customer_name": clean_text(data.get("customer_name")),
        "customer_phone": clean_text(data.get("phone")),
        "customer_email": clean_text(data.get("email")),
        "ship_country": "CN",
        "ship_province": province,
        "ship_city": city,
        "ship_district": clean_text(data.get("district")),
        "ship_detail": address,
        "payment_method": PAYMENT_VALUES.get(method.lower().replace(" ", ""), method or None),
        "installments": int(data.get("installments") or 1),
        "currency": "CNY",
        "freight_fen": yuan_to_fen(data.get("freight_yuan"), "freight") or 0,
        "discount_fen": 0,
        "order_time": parse_local_time(data.get("order_time")) or parse_local_time(data.get("entered_at"))
        or datetime.now(UTC),
        "buyer_note": clean_text(data.get("note")),
        "source_cancelled": False,
    }
    return order, lines
