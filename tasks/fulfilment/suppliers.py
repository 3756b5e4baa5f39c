"""Suppliers and their price lists (F2): loaded from staff spreadsheets, re-loading is safe (upsert by code /
by supplier and item)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from sqlalchemy import Connection

from yidi.bulk import insert_rows, utc_now
from yidi.reference import ReferenceFileError, canonical_columns, yuan_column_to_fen
from yidi.schema_fulfilment import supplier_prices, suppliers
from yidi.textfiles import read_table

PRICE_HEADERS = {
    "supplier_code": ["supplier_code", "supplier", "供应商编码", "供应商"],
    "supplier_name": ["supplier_name", "供应商名称"],
    "item_code": ["item_code", "sku", "商品编码", "物料编码"],
    "unit_price": ["unit_price", "price", "单价", "采购单价"],
    "freight": ["freight", "freight_per_order", "运费", "每单运费"],
    "lead_time_days": ["lead_time_days", "lead_time", "交期", "交期(工作日)", "采购周期"],
    "min_order_qty": ["min_order_qty", "moq", "起订量", "最小起订量"],
    "valid_from": ["valid_from", "生效日期"],
    "valid_to": ["valid_to", "失效日期"],
    "contact": ["contact", "联系人"],
    "phone": ["phone", "电话"],
    "email": ["email", "邮箱"],
}


def prepare_prices(frame: pd.DataFrame, source: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = canonical_columns(frame, PRICE_HEADERS, source).reset_index(drop=True)
    missing = [c for c in ("supplier_code", "item_code", "unit_price", "lead_time_days") if c not in frame]
    if missing:
        raise ReferenceFileError(f"{source}: missing column(s) {missing}")
    frame = frame.reindex(columns=list(PRICE_HEADERS))
    lead = pd.to_numeric(frame["lead_time_days"], errors="coerce")
    if lead.isna().any() or (lead < 0).any():
        raise ReferenceFileError(f"{source}: lead_time_days must be a whole number of working days")
    prices = pd.DataFrame(
        {
            "supplier_code": frame["supplier_code"],
            "item_code": frame["item_code"],
            "unit_price_fen": yuan_column_to_fen(frame["unit_price"], "unit_price", source),
            "freight_per_order_fen": yuan_column_to_fen(frame["freight"], "freight", source).fillna(0),
            "lead_time_days": lead.astype(int),
            "min_order_qty": pd.to_numeric(frame["min_order_qty"], errors="coerce").fillna(1.0),
            "valid_from": pd.to_datetime(frame["valid_from"], errors="coerce").dt.date,
            "valid_to": pd.to_datetime(frame["valid_to"], errors="coerce").dt.date,
            "updated_at": utc_now(),
        }
    )
    if prices["unit_price_fen"].isna().any():
        raise ReferenceFileError(f"{source}: unit_price is empty in some rows")
    duplicated = prices.duplicated(["supplier_code", "item_code"])
    if duplicated.any():
        raise ReferenceFileError(f"{source}: the same supplier and item appear twice")
    people = frame.groupby("supplier_code", as_index=False).first()
    supplier_rows = pd.DataFrame(
        {
            "code": people["supplier_code"],
            "name": people["supplier_name"].fillna(people["supplier_code"]),
            "contact": people["contact"],
            "phone": people["phone"],
            "email": people["email"],
            "active": True,
            "updated_at": utc_now(),
        }
    )
    return supplier_rows, prices


def upsert_supplier_prices(conn: Connection, supplier_rows: pd.DataFrame, prices: pd.DataFrame) -> int:
    insert_rows(conn, suppliers, supplier_rows, on_conflict=["code"],
                update_columns=["name", "contact", "phone", "email", "active"])  # fmt: skip
    columns = ["unit_price_fen", "freight_per_order_fen", "lead_time_days", "min_order_qty", "valid_from", "valid_to"]
    return insert_rows(conn, supplier_prices, prices, on_conflict=["supplier_code", "item_code"], update_columns=columns)


def load_supplier_prices_file(conn: Connection, path: Path | str) -> int:
    path = Path(path)
    supplier_rows, prices = prepare_prices(read_table(path), str(path))
    return upsert_supplier_prices(conn, supplier_rows, prices)
