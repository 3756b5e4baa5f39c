"""Goods in (F1, F2, F3): receipts from staff files (``yidi load stock``: all rows or none), production output held
in quarantine until its quality check, purchase orders received from the supplier. Each lands as one batch of
movements on the ledger (``stock.apply_movements``) in the caller's transaction.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from sqlalchemy import Connection, func, select, update

from tasks.fulfilment.stock import StockFileError, apply_movements, known_codes
from yidi.bulk import insert_rows, read_frame, utc_now
from yidi.reference import ReferenceFileError, canonical_columns
from yidi.schema import catalog_items
from yidi.schema_fulfilment import (
    QTY_EPSILON,
    production_requests,
    purchase_requests,
    stock_batches,
    stock_movements,
    warehouses,
)
from yidi.textfiles import read_table

STOCK_HEADERS = {
    "warehouse": ["warehouse", "仓库", "仓库编码", "仓库代码"],
    "item_code": ["item_code", "sku", "code", "商品编码", "物料编码", "货号", "编码"],
    "quantity": ["quantity", "qty", "数量", "入库数量"],
    "batch_no": ["batch_no", "batch", "批次", "批次号", "批号"],
    "expiry_date": ["expiry_date", "expiry", "有效期至", "失效日期", "到期日期", "到期日"],
    "produced_on": ["produced_on", "生产日期"],
    "note": ["note", "reason", "备注", "说明"],
}


@dataclass
class StockLoadResult:
    reference: str
    rows: int
    quantity: float
    warehouses: list[str] = field(default_factory=list)



def _rows(index: pd.Index) -> str:
    return ", ".join(str(i + 2) for i in list(index)[:8]) + (" …" if len(index) > 8 else "")


def _dates(values: pd.Series, column: str, source: str) -> pd.Series:
    parsed = pd.to_datetime(values.astype("string").str.replace("/", "-"), errors="coerce", format="mixed")
    bad = values.notna() & (values.astype("string").str.len() > 0) & parsed.isna()
    if bad.any():
        raise StockFileError(f"{source}: column {column} is not a date (like 2027-06-30) in row(s) {_rows(values.index[bad])}")
    return parsed.dt.date.astype(object).where(parsed.notna(), None)


def load_stock_file(
    conn: Connection, path: Path | str, *, actor: str | None = None, force: bool = False
) -> StockLoadResult:
    """Goods receipts (or opening balances) from a csv/xlsx file; all rows or none.

    Refused with the row numbers: unknown warehouses or items, quantities that are not positive numbers, bad
    dates. The file's content hash is the receipt reference: loading the same file twice is refused (unless
    ``force``), so a repeated command never doubles stock.
    """
    path = Path(path)
    data = path.read_bytes()
    reference = "LOAD-" + hashlib.sha256(data).hexdigest()[:12]
    source = str(path)
    if not force:
        already = conn.execute(
            select(func.count()).select_from(stock_movements).where(stock_movements.c.reference == reference)
        ).scalar_one()
        if already:
            raise StockFileError(f"{source} was loaded already (reference {reference}); use --force to load it again")
    try:
        frame = canonical_columns(read_table(data, name=path.name), STOCK_HEADERS, source).reset_index(drop=True)
    except ReferenceFileError as exc:
        raise StockFileError(str(exc)) from None
    missing = [c for c in ("warehouse", "item_code", "quantity") if c not in frame]
    if missing:
        raise StockFileError(f"{source}: missing column(s) {missing}")
    frame = frame.reindex(columns=list(STOCK_HEADERS))
    quantity = pd.to_numeric(frame["quantity"], errors="coerce")
    bad = quantity.isna() | (quantity <= 0)
    if bad.any():
        raise StockFileError(f"{source}: quantity must be a positive number in row(s) {_rows(frame.index[bad])}")
    for column in ("warehouse", "item_code"):
        empty = frame[column].isna() | (frame[column].astype("string").str.len() == 0)
        if empty.any():
            raise StockFileError(f"{source}: column {column} is empty in row(s) {_rows(frame.index[empty])}")
    unknown_wh = ~frame["warehouse"].isin(known_codes(conn, warehouses, warehouses.c.code, frame["warehouse"].tolist()))
    if unknown_wh.any():
        names = sorted(set(frame.loc[unknown_wh, "warehouse"]))[:5]
        raise StockFileError(f"{source}: unknown warehouse(s) {names} in row(s) {_rows(frame.index[unknown_wh])}")
    known_items = known_codes(conn, catalog_items, catalog_items.c.code, frame["item_code"].tolist())
    unknown_items = ~frame["item_code"].isin(known_items)
    if unknown_items.any():
        names = sorted(set(frame.loc[unknown_items, "item_code"]))[:5]
        raise StockFileError(f"{source}: item(s) {names} are not in the catalog, row(s) {_rows(frame.index[unknown_items])}")
    expiry = _dates(frame["expiry_date"], "expiry_date", source)
    produced = _dates(frame["produced_on"], "produced_on", source)
    now = utc_now()
    batches = pd.DataFrame(
        {
            "warehouse": frame["warehouse"],
            "item_code": frame["item_code"],
            "batch_no": frame["batch_no"],
            "expiry_date": expiry,
            "produced_on": produced,
            "received_at": now,
        }
    )
    batches = batches[batches["batch_no"].notna() & (batches["batch_no"].astype("string").str.len() > 0)]
    if not batches.empty:
        insert_rows(
            conn,
            stock_batches,
            batches.drop_duplicates(["warehouse", "item_code", "batch_no"], keep="last"),
            on_conflict=["warehouse", "item_code", "batch_no"],
            update_columns=["expiry_date", "produced_on"],
        )
    movements = pd.DataFrame(
        {
            "warehouse": frame["warehouse"],
            "item_code": frame["item_code"],
            "batch_no": frame["batch_no"].where(frame["batch_no"].astype("string").str.len() > 0, None),
            "kind": "receipt",
            "on_hand_delta": quantity.astype(float),
            "reason": [f"goods receipt from {path.name}" + (f": {n}" if isinstance(n, str) and n else "")
                       for n in frame["note"].tolist()],
            "reference": reference,
        }
    )
    apply_movements(conn, movements, actor=actor, now=now)
    return StockLoadResult(reference, len(frame), float(quantity.sum()), sorted(set(frame["warehouse"])))



class RequestNotFound(LookupError):
    pass


class RequestStateError(ValueError):
    pass


def _production_request(conn: Connection, request_no: str, status: str, otherwise: str):
    """The production request's row, when it is in ``status`` (else ``RequestStateError`` saying ``otherwise``)."""
    pr = production_requests.c
    row = conn.execute(select(production_requests).where(pr.request_no == request_no)).mappings().first()
    if row is None:
        raise RequestNotFound(f"no production request {request_no}")
    if row["status"] != status:
        raise RequestStateError(f"{request_no} is {row['status']}, {otherwise}")
    return row


def record_production_output(
    conn: Connection, request_no: str, produced_qty: float, *, batch_no: str | None = None, actor: str | None = None
) -> dict:
    """Production finished: the goods enter the warehouse quarantined until they pass the quality check."""
    row = _production_request(conn, request_no, "planned", "not planned")
    if produced_qty <= 0:
        raise RequestStateError("produced quantity must be positive")
    batch = batch_no or request_no
    insert_rows(
        conn,
        stock_batches,
        pd.DataFrame([{"warehouse": row["warehouse"], "item_code": row["item_code"], "batch_no": batch,
                       "produced_on": utc_now().date(), "received_at": utc_now()}]),
        on_conflict=["warehouse", "item_code", "batch_no"],
    )  # fmt: skip
    apply_movements(
        conn,
        pd.DataFrame([{"warehouse": row["warehouse"], "item_code": row["item_code"], "batch_no": batch,
                       "kind": "qc_hold", "on_hand_delta": produced_qty, "quarantined_delta": produced_qty,
                       "reason": "production output awaiting quality check", "reference": request_no,
                       "order_id": row["order_id"]}]),
        actor=actor,
    )  # fmt: skip
    conn.execute(
        update(production_requests)
        .where(production_requests.c.id == row["id"])
        .values(status="qc_pending", produced_qty=produced_qty, updated_at=utc_now())
    )
    return {"request_no": request_no, "status": "qc_pending", "batch_no": batch}


def record_quality_check(
    conn: Connection,
    request_no: str,
    passed_qty: float,
    failed_qty: float = 0.0,
    *,
    inspector: str,
    note: str = "",
    actor: str | None = None,
) -> dict:
    """QC result: passed goods become available stock, failed goods leave the books (scrapped/reworked)."""
    row = _production_request(conn, request_no, "qc_pending", "not waiting for its quality check")
    produced = float(row["produced_qty"] or 0)
    if passed_qty < 0 or failed_qty < 0 or abs(passed_qty + failed_qty - produced) > QTY_EPSILON:
        raise RequestStateError(f"passed + failed must equal the produced quantity {produced:g}")
    moves = []
    base = {"warehouse": row["warehouse"], "item_code": row["item_code"], "batch_no": request_no,
            "reference": request_no, "order_id": row["order_id"]}  # fmt: skip
    if passed_qty > 0:
        moves.append(base | {"kind": "qc_pass", "quarantined_delta": -passed_qty,
                             "reason": f"quality check passed ({inspector})"})  # fmt: skip
    if failed_qty > 0:
        moves.append(base | {"kind": "qc_fail", "quarantined_delta": -failed_qty, "on_hand_delta": -failed_qty,
                             "reason": f"quality check failed ({inspector}): {note}"})  # fmt: skip
    apply_movements(conn, pd.DataFrame(moves), actor=actor)
    status = "stocked" if passed_qty > 0 else "qc_failed"
    conn.execute(
        update(production_requests)
        .where(production_requests.c.id == row["id"])
        .values(status=status, qc_passed_qty=passed_qty, qc_failed_qty=failed_qty, qc_by=inspector,
                qc_at=utc_now(), qc_note=note or None, updated_at=utc_now())
    )  # fmt: skip
    return {"request_no": request_no, "status": status}


def receive_purchase_order(conn: Connection, po_no: str, *, actor: str | None = None) -> dict:
    """The supplier's goods arrived in full: receipts into the warehouse named on each request."""
    pq = purchase_requests.c
    rows = read_frame(conn, select(purchase_requests).where(pq.po_no == po_no, pq.status.in_(["sent", "draft"])))
    if rows.empty:
        raise RequestNotFound(f"no open purchase order {po_no}")
    movements = pd.DataFrame(
        {
            "warehouse": rows["warehouse"],
            "item_code": rows["item_code"],
            "batch_no": po_no,
            "kind": "receipt",
            "on_hand_delta": rows["quantity"].astype(float),
            "reason": "purchase receipt from " + rows["supplier_code"],
            "reference": po_no,
            "order_id": rows["order_id"],
        }
    )
    insert_rows(
        conn,
        stock_batches,
        movements[["warehouse", "item_code", "batch_no"]].drop_duplicates().assign(received_at=utc_now()),
        on_conflict=["warehouse", "item_code", "batch_no"],
    )
    apply_movements(conn, movements, actor=actor)
    conn.execute(
        update(purchase_requests).where(pq.po_no == po_no, pq.status.in_(["sent", "draft"]))
        .values(status="received", updated_at=utc_now())
    )  # fmt: skip
    return {"po_no": po_no, "lines": len(rows), "quantity": float(rows["quantity"].sum())}
