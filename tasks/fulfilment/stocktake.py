"""Stocktakes (F3): counted quantities correct the books; a report flags variances, slow-moving stock, expired
and soon-expiring batches and damaged goods.

A stocktake file (csv/xlsx, Chinese or English headers) has one row per warehouse + item (a total) or per
warehouse + item + batch: the physical count including damaged units, and optionally how many are damaged.
Counts are absolute, so importing the same file twice changes nothing the second time.

Bad rows are refused one by one with a reason (the rest of the count still corrects the books): unknown
warehouse or item, a count that is not a number or negative, damaged more than counted, conflicting duplicate
rows (identical duplicates count once), an item counted both per batch and as a total. Items not in the file
are not touched (cycle counts are normal).

When a count leaves less than is already promised to orders, the newest reservations are released, their
shipment requests cancelled and their orders moved back to backordered with the reason: the next allocation
run decides again from the true stock.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import Connection, bindparam, func, insert, select, update

from tasks.fulfilment.stock import (
    StockFileError,
    apply_movements,
    batch_balances,
    known_codes,
    stock_position,
)
from yidi.bulk import insert_rows, json_text, read_frame, utc_now
from yidi.lifecycle import OrderState, current_actor, record_events, transition_orders
from yidi.reference import ReferenceFileError, canonical_columns
from yidi.schema import catalog_items, orders
from yidi.schema_fulfilment import (
    QTY_EPSILON,
    allocations,
    shipment_requests,
    stock_movements,
    stocktake_lines,
    stocktakes,
    warehouses,
)
from yidi.settings import FulfilmentPolicy
from yidi.sheets import write_xlsx
from yidi.textfiles import read_table
from yidi.workdays import BUSINESS_TZ

STOCKTAKE_HEADERS = {
    "warehouse": ["warehouse", "仓库", "仓库编码", "仓库代码"],
    "item_code": ["item_code", "sku", "code", "商品编码", "物料编码", "货号", "编码"],
    "batch_no": ["batch_no", "batch", "批次", "批次号", "批号"],
    "counted_qty": ["counted_qty", "counted", "count", "quantity", "盘点数量", "实盘数量", "实盘数", "数量"],
    "damaged_qty": ["damaged_qty", "damaged", "损坏数量", "破损数量", "残损数量"],
    "note": ["note", "备注", "说明"],
}
PHYSICAL_KINDS = ("receipt", "issue", "qc_hold")  # what counts as "movement" for slow-moving stock


@dataclass
class StocktakeResult:
    stocktake_no: str
    rows_total: int
    applied: int
    unchanged: int
    rejected: int
    lines: pd.DataFrame
    released_orders: list[int] = field(default_factory=list)
    report: dict[str, pd.DataFrame] = field(default_factory=dict)
    report_path: str | None = None

    def as_dict(self) -> dict:
        return {
            "stocktake_no": self.stocktake_no, "rows_total": self.rows_total, "applied": self.applied,
            "unchanged": self.unchanged, "rejected": self.rejected, "released_orders": len(self.released_orders),
            "report": self.report_path,
            "report_counts": {name: len(frame) for name, frame in self.report.items()},
        }  # fmt: skip


def _number(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values.astype("string").str.replace(",", "", regex=False).str.strip(), errors="coerce")


def validate_rows(conn: Connection, frame: pd.DataFrame) -> pd.DataFrame:
    """Canonical columns plus ``row_no``, ``counted``, ``damaged`` and ``reason`` (NA: the row is good)."""
    frame = frame.reindex(columns=list(STOCKTAKE_HEADERS)).copy()
    frame["row_no"] = np.arange(len(frame)) + 2
    for column in ("warehouse", "item_code", "batch_no"):
        text = frame[column].astype("string").str.strip()
        frame[column] = text.where(text.str.len() > 0)
    frame["counted"] = _number(frame["counted_qty"])
    frame["damaged"] = _number(frame["damaged_qty"])
    reason = pd.Series(pd.NA, index=frame.index, dtype="string")

    def flag(mask, text) -> None:
        nonlocal reason
        mask = pd.Series(mask, index=frame.index).fillna(False).astype(bool) & reason.isna()
        reason = reason.mask(mask, text)

    flag(frame["warehouse"].isna() | frame["item_code"].isna(), "warehouse or item code is empty")
    known_wh = known_codes(conn, warehouses, warehouses.c.code, frame["warehouse"].dropna().tolist())
    flag(frame["warehouse"].notna() & ~frame["warehouse"].isin(known_wh), "unknown warehouse " + frame["warehouse"].fillna(""))
    known_items = known_codes(conn, catalog_items, catalog_items.c.code, frame["item_code"].dropna().tolist())
    flag(frame["item_code"].notna() & ~frame["item_code"].isin(known_items),
         "item " + frame["item_code"].fillna("") + " is not in the catalog")  # fmt: skip
    flag(frame["counted"].isna(), "counted quantity " + frame["counted_qty"].astype("string").fillna("(empty)") + " is not a number")
    flag(frame["counted"] < 0, "negative count " + frame["counted_qty"].astype("string").fillna(""))
    flag(frame["damaged_qty"].notna() & frame["damaged"].isna(), "damaged quantity is not a number")
    flag(frame["damaged"] < 0, "negative damaged quantity")
    flag(frame["damaged"] > frame["counted"] + QTY_EPSILON, "more damaged than counted")

    key = frame["warehouse"].fillna("") + "\x1f" + frame["item_code"].fillna("") + "\x1f" + frame["batch_no"].fillna("")
    values = pd.Series(
        [f"{c}/{d}" for c, d in zip(frame["counted"].astype("Float64").fillna(-1.0).tolist(),
                                     frame["damaged"].astype("Float64").fillna(-1.0).tolist(), strict=True)],
        index=frame.index,
    )  # fmt: skip
    good = reason.isna()
    # Every row naming the same warehouse/item/batch takes part, even a refused one: a second row next to a
    # typo makes the count ambiguous. Identical good rows count once.
    keyed = frame["warehouse"].notna() & frame["item_code"].notna()
    dup = key.duplicated(keep=False) & keyed
    for _, group in frame[dup].groupby(key[dup], sort=False):
        rows = group["row_no"].tolist()
        if values[group.index].nunique() == 1 and good[group.index].all():
            flag(frame.index.isin(group.index[1:]), f"duplicate of row {rows[0]} (same count): counted once")
        else:
            flag(frame.index.isin(group.index), f"conflicting counts for the same warehouse/item/batch in rows {rows}: recount")
    good = reason.isna()
    item_key = frame["warehouse"].fillna("") + "\x1f" + frame["item_code"].fillna("")
    batch_level = frame["batch_no"].notna()
    mixed_items = set(item_key[good & batch_level]) & set(item_key[good & ~batch_level])
    flag(item_key.isin(mixed_items) & good, "item counted both per batch and as a total: use one or the other")
    frame["reason"] = reason
    return frame


def import_stocktake(
    conn: Connection,
    path: Path | str,
    *,
    policy: FulfilmentPolicy,
    now: datetime | None = None,
    actor: str | None = None,
    write_report: bool = True,
) -> StocktakeResult:
    path = Path(path)
    data = path.read_bytes()
    now = now or utc_now()
    actor = actor or current_actor()
    try:
        raw = canonical_columns(read_table(data, name=path.name), STOCKTAKE_HEADERS, str(path)).reset_index(drop=True)
    except ReferenceFileError as exc:
        raise StockFileError(str(exc)) from None
    missing = [c for c in ("warehouse", "item_code", "counted_qty") if c not in raw]
    if missing:
        raise StockFileError(f"{path}: missing column(s) {missing}")
    number = f"ST-{now.astimezone(BUSINESS_TZ):%Y%m%d-%H%M%S}-{hashlib.sha256(data).hexdigest()[:6]}"
    same = conn.execute(
        select(func.count()).select_from(stocktakes).where(stocktakes.c.stocktake_no.like(f"{number}%"))
    ).scalar_one()
    if same:  # the same file imported again within the second: still its own record
        number = f"{number}-{same + 1}"
    rows = validate_rows(conn, raw)
    good = rows[rows["reason"].isna()].copy()

    # Book quantities: item totals from the balances, batch quantities from the ledger.
    position = stock_position(conn, item_codes=good["item_code"].unique().tolist())
    levels = position.set_index(["warehouse", "item_code"])
    batches = batch_balances(conn).set_index(["warehouse", "item_code", "batch_no"])["on_hand"] if len(good) else pd.Series(dtype=float)
    book = []
    for w, i, b in zip(good["warehouse"].tolist(), good["item_code"].tolist(), good["batch_no"].tolist(), strict=True):
        if isinstance(b, str):
            book.append(float(batches.get((w, i, b), 0.0)))
        else:
            book.append(float(levels["on_hand"].get((w, i), 0.0)))
    good["book"] = book
    good["variance"] = good["counted"] - good["book"]

    moves = good[good["variance"].abs() > QTY_EPSILON]
    adjustments = pd.DataFrame(
        {
            "warehouse": moves["warehouse"].to_numpy(),
            "item_code": moves["item_code"].to_numpy(),
            "batch_no": moves["batch_no"].astype(object).where(moves["batch_no"].notna(), None).to_numpy(),
            "kind": "adjustment",
            "on_hand_delta": moves["variance"].to_numpy(dtype=float),
            "reason": [
                f"stocktake {number}: counted {c:g}, book {b:g}" + (f" ({n})" if isinstance(n, str) and n else "")
                for c, b, n in zip(moves["counted"], moves["book"], moves["note"], strict=True)
            ],
            "reference": number,
        }
    )
    # Damaged units are counted per item (batch rows add up).
    damaged_given = good[good["damaged"].notna()]
    damaged_now = damaged_given.groupby(["warehouse", "item_code"])["damaged"].sum()
    damage_rows = []
    for (w, i), counted_damaged in damaged_now.items():
        delta = counted_damaged - float(levels["damaged"].get((w, i), 0.0))
        if abs(delta) > QTY_EPSILON:
            damage_rows.append({"warehouse": w, "item_code": i, "kind": "damage", "damaged_delta": delta,
                                "reason": f"stocktake {number}: {counted_damaged:g} damaged (book {counted_damaged - delta:g})",
                                "reference": number})  # fmt: skip
    damage = pd.DataFrame(damage_rows)
    movements = pd.concat([adjustments, damage], ignore_index=True)

    released = _release_what_the_count_does_not_cover(conn, movements, levels, number, actor, now)
    if len(movements):
        apply_movements(conn, movements, actor=actor, now=now)

    applied_mask = rows.index.isin(moves.index)
    rows["book"] = pd.Series(good["book"], index=good.index)
    rows["variance"] = pd.Series(good["variance"], index=good.index)
    rows["status"] = np.where(rows["reason"].notna(), "rejected", np.where(applied_mask, "applied", "unchanged"))
    stocktake_id = conn.execute(
        insert(stocktakes).values(
            stocktake_no=number, source_file=str(path), imported_at=now, actor=actor, rows_total=len(rows),
            rows_applied=int(applied_mask.sum()), rows_rejected=int(rows["reason"].notna().sum()),
        ).returning(stocktakes.c.id)
    ).scalar_one()  # fmt: skip
    insert_rows(
        conn,
        stocktake_lines,
        pd.DataFrame(
            {
                "stocktake_id": stocktake_id,
                "row_no": rows["row_no"].to_numpy(),
                "warehouse": rows["warehouse"].astype(object).to_numpy(),
                "item_code": rows["item_code"].astype(object).to_numpy(),
                "batch_no": rows["batch_no"].astype(object).to_numpy(),
                "counted_qty": rows["counted"].to_numpy(dtype=float),
                "damaged_qty": rows["damaged"].to_numpy(dtype=float),
                "book_qty": rows["book"].to_numpy(dtype=float),
                "variance": rows["variance"].to_numpy(dtype=float),
                "status": rows["status"].to_numpy(),
                "reason": rows["reason"].astype(object).to_numpy(),
            }
        ),
    )
    lines = rows[["row_no", "warehouse", "item_code", "batch_no", "counted", "damaged", "book", "variance", "status", "reason"]]
    report = stock_report(conn, now.astimezone(BUSINESS_TZ).date(), policy, variances=lines)
    result = StocktakeResult(
        stocktake_no=number,
        rows_total=len(rows),
        applied=int((rows["status"] == "applied").sum()),
        unchanged=int((rows["status"] == "unchanged").sum()),
        rejected=int((rows["status"] == "rejected").sum()),
        lines=lines,
        released_orders=released,
        report=report,
    )
    summary = result.as_dict()
    if write_report:
        result.report_path = str(write_stock_report(report, number))
        summary["report"] = result.report_path
    conn.execute(update(stocktakes).where(stocktakes.c.id == stocktake_id).values(summary=json_text(summary)))
    return result


def _release_what_the_count_does_not_cover(conn, movements, levels, number, actor, now) -> list[int]:
    """Reservations beyond the counted stock are released (newest first) before the books are corrected."""
    if movements.empty:
        return []
    frame = movements.reindex(columns=[*movements.columns.difference(["on_hand_delta", "damaged_delta"]),
                                       "on_hand_delta", "damaged_delta"])  # fmt: skip
    deltas = frame.groupby(["warehouse", "item_code"])[["on_hand_delta", "damaged_delta"]].sum().fillna(0.0)
    a = allocations.c
    released_orders: set[int] = set()
    release_moves, release_ids, cancel_requests = [], [], set()
    for (w, i), row in deltas.iterrows():
        on_hand = float(levels["on_hand"].get((w, i), 0.0)) + row["on_hand_delta"]
        blocked = float(levels["damaged"].get((w, i), 0.0)) + row["damaged_delta"] + float(levels["quarantined"].get((w, i), 0.0))
        excess = float(levels["reserved"].get((w, i), 0.0)) + blocked - on_hand
        if excess <= QTY_EPSILON:
            continue
        held = read_frame(
            conn,
            select(a.id, a.order_id, a.quantity, a.shipment_request_id)
            .where(a.warehouse == w, a.item_code == i, a.status == "reserved").order_by(a.id.desc()),
        )  # fmt: skip
        for aid, oid, qty, rid in zip(held["id"], held["order_id"], held["quantity"], held["shipment_request_id"], strict=True):
            if excess <= QTY_EPSILON:
                break
            release_ids.append(int(aid))
            released_orders.add(int(oid))
            if not pd.isna(rid):
                cancel_requests.add(int(rid))
            release_moves.append({"warehouse": w, "item_code": i, "kind": "release", "reserved_delta": -float(qty),
                                  "order_id": int(oid), "allocation_id": int(aid),
                                  "reason": f"stocktake {number} found less stock than was promised", "reference": number})  # fmt: skip
            excess -= float(qty)
    if not release_ids:
        return []
    # Whole shipment requests go back: their other allocations are released too (the order is planned again).
    sr = shipment_requests.c
    others = read_frame(
        conn,
        select(a.id, a.order_id, a.quantity, a.warehouse, a.item_code)
        .where(a.shipment_request_id.in_(sorted(cancel_requests)), a.status == "reserved", a.id.not_in(release_ids)),
    )  # fmt: skip
    for aid, oid, qty, w, i in zip(others["id"], others["order_id"], others["quantity"], others["warehouse"], others["item_code"], strict=True):
        release_ids.append(int(aid))
        release_moves.append({"warehouse": w, "item_code": i, "kind": "release", "reserved_delta": -float(qty),
                              "order_id": int(oid), "allocation_id": int(aid),
                              "reason": f"stocktake {number}: shipment re-planned", "reference": number})  # fmt: skip
    apply_movements(conn, pd.DataFrame(release_moves), actor=actor, now=now)
    conn.execute(update(allocations).where(a.id.in_(bindparam("ids", expanding=True))).values(status="released", updated_at=now),
                 {"ids": release_ids})  # fmt: skip
    conn.execute(update(shipment_requests).where(sr.id.in_(sorted(cancel_requests)), sr.status.in_(["pending", "rejected"]))
                 .values(status="cancelled", last_error=f"stocktake {number}: stock re-planned", updated_at=now))  # fmt: skip
    order_ids = sorted(released_orders)
    transition_orders(conn, order_ids, OrderState.BACKORDERED, actor=actor, skip_illegal=True,
                      reason=f"stocktake {number} found less stock than was allocated: allocation released")  # fmt: skip
    states = dict(conn.execute(select(orders.c.id, orders.c.state).where(orders.c.id.in_(order_ids))).all())
    still = [o for o in order_ids if states.get(o) != OrderState.BACKORDERED]
    if still:
        record_events(
            conn,
            pd.DataFrame({"order_id": still, "kind": "fulfilment",
                          "reason": f"stocktake {number}: follow-up allocation released"}),
            actor=actor,
        )  # fmt: skip
    return order_ids


def stock_report(
    conn: Connection, today: date, policy: FulfilmentPolicy, *, variances: pd.DataFrame | None = None
) -> dict[str, pd.DataFrame]:
    """F3 report: variances (when given), slow-moving items, expired and expiring batches, damaged stock."""
    position = stock_position(conn)
    sm = stock_movements.c
    last_moved = read_frame(
        conn,
        select(sm.warehouse, sm.item_code, func.max(sm.occurred_at).label("last_moved"))
        .where(sm.kind.in_(PHYSICAL_KINDS)).group_by(sm.warehouse, sm.item_code),
    )  # fmt: skip
    merged = position.merge(last_moved, on=["warehouse", "item_code"], how="left")
    cutoff = pd.Timestamp(today - timedelta(days=policy.slow_moving_days), tz="UTC")
    last = pd.to_datetime(merged["last_moved"], utc=True)
    slow = merged[(merged["on_hand"] > QTY_EPSILON) & (last.isna() | (last < cutoff))].copy()
    slow["days_without_movement"] = (pd.Timestamp(today, tz="UTC") - pd.to_datetime(slow["last_moved"], utc=True)).dt.days
    slow = slow[["warehouse", "item_code", "on_hand", "available", "last_moved", "days_without_movement"]]

    balances = batch_balances(conn)
    expiry = pd.to_datetime(balances["expiry_date"], errors="coerce")
    with_stock = balances["on_hand"] > QTY_EPSILON
    expired = balances[with_stock & expiry.notna() & (expiry < pd.Timestamp(today))][
        ["warehouse", "item_code", "batch_no", "expiry_date", "on_hand"]
    ]
    soon_limit = today + timedelta(days=policy.expiry_warning_days)
    expiring = balances[with_stock & (expiry >= pd.Timestamp(today)) & (expiry <= pd.Timestamp(soon_limit))][
        ["warehouse", "item_code", "batch_no", "expiry_date", "on_hand"]
    ]
    damaged = position[position["damaged"] > QTY_EPSILON][["warehouse", "item_code", "on_hand", "damaged"]]
    report = {"slow_moving": slow.reset_index(drop=True), "expired_batches": expired.reset_index(drop=True),
              "expiring_batches": expiring.reset_index(drop=True), "damaged": damaged.reset_index(drop=True)}  # fmt: skip
    if variances is not None:
        report = {"variances": variances[variances["status"] == "applied"].reset_index(drop=True),
                  "rejected_rows": variances[variances["status"] == "rejected"].reset_index(drop=True), **report}  # fmt: skip
    return report


SHEET_NAMES = {"variances": "盘点差异", "rejected_rows": "未采用行", "slow_moving": "呆滞库存",
               "expired_batches": "过期批次", "expiring_batches": "临期批次", "damaged": "残损库存"}  # fmt: skip


def write_stock_report(report: dict[str, pd.DataFrame], name: str) -> Path:
    """One xlsx with a sheet per section under ``$YIDI_HOME/documents/stocktakes``."""
    from tasks.fulfilment.documents import documents_dir

    folder = documents_dir("stocktakes")
    path = folder / f"{name}.xlsx"
    tmp = folder / f".{name}.xlsx.tmp"
    sheets = {SHEET_NAMES.get(key, key): frame for key, frame in report.items()}
    write_xlsx(sheets, tmp)  # Beijing times labelled, text cells typed as strings (never formulas)
    tmp.replace(path)
    return path


class StocktakeNotVerifiable(ValueError):
    """No such stocktake, or it is verified already."""


def verify_stocktake(conn: Connection, stocktake_no: str, actor, staff, now: datetime | None = None) -> dict:
    """Sign a stocktake off as ``actor`` (a listed manager or auditor, ``yidi.staff.Actor``). Refused
    (``NotPermitted``, nothing written) when ``staff`` separates ``adjust_and_verify`` and ``actor`` adjusted the
    stock it covers; a stocktake is verified once (a conditional UPDATE: two verifiers at once, one wins)."""
    from yidi.staff import check_separation, stock_adjusters

    row = conn.execute(select(stocktakes.c.id, stocktakes.c.verified_by).where(stocktakes.c.stocktake_no == stocktake_no)
                       ).first()  # fmt: skip
    if row is None:
        raise StocktakeNotVerifiable(f"no stocktake {stocktake_no}")
    if row.verified_by:
        raise StocktakeNotVerifiable(f"stocktake {stocktake_no} is verified already, by {row.verified_by}")
    for earlier, what in stock_adjusters(conn, [row.id])[["actor", "what"]].itertuples(index=False, name=None):
        check_separation(staff, "adjust_and_verify", actor, earlier, f"{what} and may not verify it")
    now = now or utc_now()
    done = conn.execute(update(stocktakes).where(stocktakes.c.id == row.id, stocktakes.c.verified_by.is_(None))
                        .values(verified_by=actor.text, verified_at=now)).rowcount  # fmt: skip
    if done != 1:
        raise StocktakeNotVerifiable(f"stocktake {stocktake_no} was verified by someone else meanwhile")
    return {"stocktake_no": stocktake_no, "verified_by": actor.text, "verified_at": now}
