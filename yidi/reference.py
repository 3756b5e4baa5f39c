"""Reference data: the catalog (products and service items) and customers, loaded from staff spreadsheets.

Files are csv or xlsx, UTF-8 or GBK, with Chinese or English headers (the header maps below). Loading is an
upsert by code: re-loading the same file changes nothing; a changed row updates the item.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from sqlalchemy import Connection

from yidi.bulk import insert_rows, utc_now
from yidi.money import yuan_series_to_fen
from yidi.schema import catalog_items, customers
from yidi.textfiles import read_table


class ReferenceFileError(ValueError):
    """A reference file that cannot be loaded; the message names the file, rows and columns."""


CATALOG_HEADERS = {
    "code": ["code", "sku", "item_code", "编码", "商品编码", "物料编码", "货号"],
    "kind": ["kind", "type", "类型", "类别"],
    "name": ["name", "名称", "商品名称", "品名"],
    "spec": ["spec", "specification", "规格"],
    "model": ["model", "型号"],
    "unit": ["unit", "单位"],
    "list_price": ["list_price", "price", "单价", "价格", "标准价", "目录价"],
    "weight_kg": ["weight_kg", "weight", "重量", "重量(kg)", "重量（kg）"],
    "volume_m3": ["volume_m3", "volume", "体积", "体积(m3)", "体积（m3）"],
    "active": ["active", "在售", "是否在售", "状态"],
    "min_order_qty": ["min_order_qty", "最小起订量", "起订量"],
    "max_order_qty": ["max_order_qty", "最大订购量", "限购量"],
    "sourcing": ["sourcing", "供应方式", "来源"],
    "lead_time_days": ["lead_time_days", "lead_time", "交期", "交期(天)", "提前期"],
    "preferred_supplier": ["preferred_supplier", "supplier", "首选供应商", "供应商"],
}

CUSTOMER_HEADERS = {
    "code": ["code", "customer_code", "客户编码", "客户编号"],
    "name": ["name", "customer_name", "客户名称", "名称", "姓名"],
    "phone": ["phone", "mobile", "电话", "手机", "联系电话"],
    "email": ["email", "邮箱", "电子邮件"],
    "province": ["province", "省", "省份"],
    "city": ["city", "市", "城市"],
    "district": ["district", "区县", "区", "县"],
    "address": ["address", "地址", "详细地址"],
    "kind": ["kind", "type", "客户类型"],
    "is_important": ["is_important", "important", "重要客户"],
    "credit_limit": ["credit_limit", "信用额度"],
    "credit_rating": ["credit_rating", "信用等级"],
    "prepayment_ratio": ["prepayment_ratio", "预付比例"],
    "payment_terms": ["payment_terms", "付款条件", "结算方式"],
    "net_days": ["net_days", "账期", "账期(天)"],
    "blocked": ["blocked", "停用", "黑名单"],
    "allow_partial_shipment": ["allow_partial_shipment", "允许分批发货"],
}

KIND_WORDS = {
    "product": "product",
    "商品": "product",
    "产品": "product",
    "service": "service",
    "服务": "service",
}
SOURCING_WORDS = {
    "stock": "stock", "库存": "stock", "现货": "stock",
    "make_to_order": "make_to_order", "生产": "make_to_order", "订单生产": "make_to_order",
    "buy": "buy", "采购": "buy", "外购": "buy",
}  # fmt: skip
TRUE_WORDS = {"1", "true", "yes", "y", "是", "在售", "启用", "有效"}
FALSE_WORDS = {"0", "false", "no", "n", "否", "停售", "停用", "无效"}


def canonical_columns(frame: pd.DataFrame, headers: dict[str, list[str]], source: str) -> pd.DataFrame:
    """Rename Chinese/English headers to canonical names; unknown headers are ignored, duplicates refused."""
    lookup = {alias.lower(): canonical for canonical, aliases in headers.items() for alias in aliases}
    renamed: dict[str, str] = {}
    for column in frame.columns:
        canonical = lookup.get(str(column).strip().lower())
        if canonical is None:
            continue
        if canonical in renamed.values():
            raise ReferenceFileError(f"{source}: two columns mean {canonical!r}")
        renamed[column] = canonical
    return frame[list(renamed)].rename(columns=renamed)


def yuan_column_to_fen(values: pd.Series, column: str, source: str) -> pd.Series:
    """A spreadsheet column of yuan (``1,234.50``, ``￥12``) as integer fen (``yidi.money``: exact, never rounded);
    values that are not amounts name their rows (header = row 1)."""
    fen, bad = yuan_series_to_fen(values.astype("string").fillna(""))
    if bad.any():
        rows = ", ".join(str(i + 2) for i in values.index[bad.to_numpy()][:5])
        raise ReferenceFileError(f"{source}: column {column} is not a number in row(s) {rows}")
    return fen


def _flags(values: pd.Series, column: str, source: str, default: bool) -> pd.Series:
    lowered = values.astype("string").str.strip().str.lower()
    result = pd.Series(default, index=values.index, dtype="boolean")
    result[lowered.isin(TRUE_WORDS)] = True
    result[lowered.isin(FALSE_WORDS)] = False
    unknown = lowered.notna() & ~lowered.isin(TRUE_WORDS | FALSE_WORDS)
    if unknown.any():
        raise ReferenceFileError(
            f"{source}: column {column} has values that are not yes/no: {sorted(set(values[unknown]))[:5]}"
        )
    return result


def _numbers(values: pd.Series, column: str, source: str) -> pd.Series:
    numbers = pd.to_numeric(values, errors="coerce")
    bad = values.notna() & numbers.isna()
    if bad.any():
        rows = ", ".join(str(i + 2) for i in values.index[bad][:5])
        raise ReferenceFileError(f"{source}: column {column} is not a number in row(s) {rows}")
    return numbers


def _require(frame: pd.DataFrame, required: list[str], source: str) -> None:
    missing = [c for c in required if c not in frame]
    if missing:
        raise ReferenceFileError(f"{source}: missing column(s) {missing}")
    for column in required:
        empty = frame[column].isna() | (frame[column].astype("string").str.len() == 0)
        if empty.any():
            rows = ", ".join(str(i + 2) for i in frame.index[empty][:5])
            raise ReferenceFileError(f"{source}: column {column} is empty in row(s) {rows}")
    duplicated = frame["code"][frame["code"].duplicated()]
    if not duplicated.empty:
        raise ReferenceFileError(f"{source}: duplicate code(s) {sorted(set(duplicated))[:5]}")


def _mapped(values: pd.Series, words: dict[str, str], column: str, source: str, default: str) -> pd.Series:
    lowered = values.astype("string").str.strip().str.lower()
    mapped = lowered.map(lambda v: words.get(v) if isinstance(v, str) else default)
    bad = lowered.notna() & mapped.isna()
    if bad.any():
        raise ReferenceFileError(
            f"{source}: column {column} has unknown values {sorted(set(values[bad]))[:5]}"
        )
    return mapped.fillna(default)


def prepare_catalog(frame: pd.DataFrame, source: str = "catalog") -> pd.DataFrame:
    frame = canonical_columns(frame, CATALOG_HEADERS, source).reset_index(drop=True)
    _require(frame, ["code", "name", "list_price"], source)
    frame = frame.reindex(columns=list(CATALOG_HEADERS)).astype("string")  # absent optional columns -> NA
    out = frame[["code", "name", "spec", "model", "preferred_supplier"]].copy()
    out["kind"] = _mapped(frame["kind"], KIND_WORDS, "kind", source, "product")
    out["unit"] = frame["unit"].fillna("件")
    out["list_price_fen"] = yuan_column_to_fen(frame["list_price"], "list_price", source)
    for column in ("weight_kg", "volume_m3", "max_order_qty"):
        out[column] = _numbers(frame[column], column, source)
    out["min_order_qty"] = _numbers(frame["min_order_qty"], "min_order_qty", source).fillna(1)
    out["lead_time_days"] = _numbers(frame["lead_time_days"], "lead_time_days", source).fillna(0).astype(int)
    out["active"] = _flags(frame["active"], "active", source, True)
    out["sourcing"] = _mapped(frame["sourcing"], SOURCING_WORDS, "sourcing", source, "stock")
    out["updated_at"] = utc_now()
    return out


def prepare_customers(frame: pd.DataFrame, source: str = "customers") -> pd.DataFrame:
    frame = canonical_columns(frame, CUSTOMER_HEADERS, source).reset_index(drop=True)
    _require(frame, ["code", "name"], source)
    frame = frame.reindex(columns=list(CUSTOMER_HEADERS)).astype("string")
    out = frame[
        ["code", "name", "phone", "email", "province", "city", "district", "address", "credit_rating"]
    ]
    out = out.copy()
    out["kind"] = frame["kind"].fillna("consumer")
    out["credit_limit_fen"] = yuan_column_to_fen(frame["credit_limit"], "credit_limit", source).fillna(0)
    out["prepayment_ratio"] = _numbers(frame["prepayment_ratio"], "prepayment_ratio", source).fillna(0)
    out["payment_terms"] = frame["payment_terms"].fillna("prepaid")
    out["net_days"] = _numbers(frame["net_days"], "net_days", source).fillna(0).astype(int)
    for column, default in (("is_important", False), ("blocked", False), ("allow_partial_shipment", True)):
        out[column] = _flags(frame[column], column, source, default)
    out["updated_at"] = utc_now()
    return out


def upsert_catalog(conn: Connection, prepared: pd.DataFrame) -> int:
    columns = [c for c in prepared.columns if c not in ("code", "updated_at")]
    return insert_rows(conn, catalog_items, prepared, on_conflict=["code"], update_columns=columns)


def upsert_customers(conn: Connection, prepared: pd.DataFrame) -> int:
    columns = [c for c in prepared.columns if c not in ("code", "updated_at")]
    return insert_rows(conn, customers, prepared, on_conflict=["code"], update_columns=columns)


def load_reference_file(conn: Connection, kind: str, path: Path) -> int:
    """Load ``catalog`` or ``customers`` from a csv/xlsx file; returns rows inserted or changed."""
    frame = read_table(path)
    if kind == "catalog":
        return upsert_catalog(conn, prepare_catalog(frame, str(path)))
    if kind == "customers":
        return upsert_customers(conn, prepare_customers(frame, str(path)))
    raise ValueError(f"unknown reference kind {kind!r} (catalog or customers)")
