"""Generator of phone/fax order templates as staff fill them: csv (UTF-8, UTF-8 with BOM, GBK) and xlsx, Chinese or
English headers, one row per order line; optionally with a title row, merged order cells, formulas, empty rows."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from connectors.base import SHANGHAI

ZH = {
    "order_id": "订单号", "channel": "渠道", "order_time": "下单时间", "customer_name": "客户名称",
    "customer_phone": "联系电话", "province": "省", "city": "市", "district": "区县", "detail": "详细地址",
    "item_code": "商品编码", "item_name": "商品名称", "spec": "规格", "model": "型号", "quantity": "数量",
    "unit_price": "单价（元）", "freight": "运费", "payment_method": "付款方式", "note": "备注",
}  # fmt: skip
EN = {
    "order_id": "Order No", "channel": "Channel", "order_time": "Order Time", "customer_name": "Customer",
    "customer_phone": "Phone", "province": "Province", "city": "City", "district": "District",
    "detail": "Address", "item_code": "SKU", "item_name": "Item Name", "spec": "Spec", "model": "Model",
    "quantity": "Qty", "unit_price": "Unit Price", "freight": "Freight", "payment_method": "Payment",
    "note": "Note",
}  # fmt: skip
PAYMENT_ZH = {"alipay": "支付宝", "wechatpay": "微信", "bank_transfer": "银行转账", "cod": "货到付款",
              "installment": "分期"}
CHANNEL_ZH = {"phone": "电话", "fax": "传真", "email": "邮件"}


def template_frame(orders: list[dict], *, headers: str = "zh", channel: str = "phone",
                   prefix: str = "PH") -> pd.DataFrame:
    """One row per order line; order cells repeated on every row (as most staff fill it)."""
    names = ZH if headers == "zh" else EN
    rows = []
    for order in orders:
        for line in order["lines"]:
            rows.append(
                {
                    "order_id": f"{prefix}{order['ref']}",
                    "channel": CHANNEL_ZH[channel] if headers == "zh" else channel,
                    "order_time": order["order_time"].astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M"),
                    "customer_name": order["customer_name"],
                    "customer_phone": order["phone"],
                    "province": order["province"],
                    "city": order["city"],
                    "district": order["district"],
                    "detail": order["detail"],
                    "item_code": line["code"],
                    "item_name": line["name"],
                    "spec": line.get("spec") or "",
                    "model": line.get("model") or "",
                    "quantity": line["qty"],
                    "unit_price": f"{line['price_fen'] / 100:.2f}",
                    "freight": f"{order['freight_fen'] / 100:.2f}",
                    "payment_method": PAYMENT_ZH.get(order["payment_method"], order["payment_method"])
                    if headers == "zh" else order["payment_method"],
                    "note": order.get("note") or "",
                }
            )
    return pd.DataFrame(rows).rename(columns=names)


def write_csv(frame: pd.DataFrame, path: Path, encoding: str = "utf-8") -> Path:
    """encoding: utf-8, utf-8-sig (BOM) or gbk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, encoding=encoding)
    return path


def write_xlsx(frame: pd.DataFrame, path: Path, *, title: str | None = None, merge_orders: bool = False,
               empty_rows: bool = False) -> Path:
    """An xlsx as staff make it: optional title row, order cells merged down an order's rows, blank rows between
    orders. (openpyxl saves formulas without results, as a script-made file would; tests add them directly.)"""
    from openpyxl import Workbook

    path.parent.mkdir(parents=True, exist_ok=True)
    book = Workbook()
    sheet = book.active
    sheet.title = "订单"
    offset = 1
    if title:
        sheet.cell(row=1, column=1, value=title)
        sheet.merge_cells(start_row=1, start_column=1, end_row=1, end_column=len(frame.columns))
        offset = 2
    for c, name in enumerate(frame.columns, start=1):
        sheet.cell(row=offset, column=c, value=name)
    order_col = frame.columns[0]
    order_cells = [c for c in frame.columns if c not in _line_columns(frame.columns)]
    row = offset + 1
    previous_id, group_start, row_end = None, None, offset
    groups: list[tuple[int, int]] = []
    for values in frame.itertuples(index=False):
        record = dict(zip(frame.columns, values, strict=True))
        if empty_rows and previous_id is not None and record[order_col] != previous_id:
            row += 1
        if record[order_col] != previous_id:
            if group_start is not None:
                groups.append((group_start, row_end))
            group_start = row
        for c, name in enumerate(frame.columns, start=1):
            sheet.cell(row=row, column=c, value=_typed(record[name]))
        previous_id, row_end = record[order_col], row
        row += 1
    if group_start is not None:
        groups.append((group_start, row_end))
    if merge_orders:
        for start, end in groups:
            if end > start:
                for name in order_cells:
                    c = list(frame.columns).index(name) + 1
                    sheet.merge_cells(start_row=start, start_column=c, end_row=end, end_column=c)
    book.save(path)
    return path


def _line_columns(columns) -> set[str]:
    line_keys = ("item_code", "item_name", "spec", "model", "quantity", "unit_price")
    return {ZH[k] for k in line_keys} | {EN[k] for k in line_keys} & set(columns)


def _typed(value):
    if isinstance(value, str):
        try:
            if value.strip() and not value.startswith("0") and value.replace(".", "", 1).isdigit():
                return float(value) if "." in value else int(value)
        except ValueError:
            return value
    return value
