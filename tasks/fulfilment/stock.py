"""Stock as a ledger (F3): movements in, balances and availability out.

Every change of stock is a batch of ``stock_movements`` (signed deltas of on hand / reserved / damaged /
quarantined) applied together with a conditional UPDATE of the ``stock_levels`` balances in the caller's
transaction. The UPDATE only touches a balance when the result stays valid (nothing negative, reserved plus
blocked never above on hand); if any row would break that, ``InsufficientStock`` is raised and the caller's
transaction rolls back, so a batch lands whole or not at all. The CHECK constraint on ``stock_levels`` backs this
up at the database level.

Also here: warehouses from the policy file, batch balances and FEFO issue plans, expired batches. Goods coming in
(receipt files, production output, purchase receipts) are in ``receipts``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

import numpy as np
import pandas as pd
from sqlalchemy import Connection, and_, bindparam, func, select, update

from yidi.bulk import chunked, insert_rows, read_frame, utc_now
from yidi.lifecycle import current_actor
from yidi.schema_fulfilment import (
    QTY_EPSILON,
    stock_batches,
    stock_levels,
    stock_movements,
    warehouses,
)
from yidi.settings import FulfilmentPolicy

DELTAS = ["on_hand_delta", "reserved_delta", "damaged_delta", "quarantined_delta"]
MOVEMENT_KINDS = frozenset(
    {"receipt", "reservation", "release", "issue", "adjustment", "damage", "write_off", "expiry",
     "qc_hold", "qc_pass", "qc_fail", "return"}
)  # fmt: skip


class InsufficientStock(RuntimeError):
    """A batch of movements would make a balance invalid (e.g. reserve more than is available)."""

    def __init__(self, problems: pd.DataFrame):
        self.problems = problems
        shown = "; ".join(
            f"{w}/{i}: available {a:g}, asked {r:g}"
            for w, i, a, r in zip(
                problems["warehouse"].tolist(),
                problems["item_code"].tolist(),
                problems["available"].tolist(),
                problems["reserved_delta"].tolist(),
                strict=True,
            )
        )
        super().__init__(f"stock changed underneath or is insufficient: {shown[:500]}")


class StockFileError(ValueError):
    """A stock file that cannot be loaded; the message names the rows and the problem."""


# --- warehouses ----------------------------------------------------------------------------------------------


def sync_warehouses(conn: Connection, policy: FulfilmentPolicy) -> int:
    """Write the policy's warehouses into the ``warehouses`` table (insert new, update changed)."""
    frame = pd.DataFrame([w.model_dump() for w in policy.warehouses])
    frame["active"] = True
    frame["updated_at"] = utc_now()
    columns = ["name", "province", "city", "district", "address", "contact", "phone", "priority", "active"]
    return insert_rows(conn, warehouses, frame, on_conflict=["code"], update_columns=columns)


def warehouse_order(conn: Connection) -> list[str]:
    rows = conn.execute(
        select(warehouses.c.code).where(warehouses.c.active).order_by(warehouses.c.priority, warehouses.c.code)
    )
    return [r.code for r in rows]


# --- the ledger ----------------------------------------------------------------------------------------------


def apply_movements(
    conn: Connection, movements: pd.DataFrame, *, actor: str | None = None, now: datetime | None = None
) -> int:
    """Append movements and move the balances with them, all or nothing (raises ``InsufficientStock``).

    Columns: ``warehouse``, ``item_code``, ``kind`` and any of the four deltas; optional ``batch_no``,
    ``reason``, ``order_id``, ``allocation_id``, ``reference``.
    """
    if movements.empty:
        return 0
    now = now or utc_now()
    frame = movements.copy()
    for column in DELTAS:
        frame[column] = frame[column].astype(float).fillna(0.0) if column in frame else 0.0
    unknown = set(frame["kind"].unique()) - MOVEMENT_KINDS
    if unknown:
        raise ValueError(f"unknown movement kinds {sorted(unknown)}")
    sums = frame.groupby(["warehouse", "item_code"], sort=True, as_index=False)[DELTAS].sum()
    insert_rows(conn, stock_levels, sums[["warehouse", "item_code"]], on_conflict=["warehouse", "item_code"])
    sl = stock_levels.c
    eps = QTY_EPSILON
    new_on_hand = sl.on_hand + bindparam("dh")
    new_reserved = sl.reserved + bindparam("dr")
    new_damaged = sl.damaged + bindparam("dd")
    new_quarantined = sl.quarantined + bindparam("dq")
    stmt = (
        update(stock_levels)
        .where(
            sl.warehouse == bindparam("w"),
            sl.item_code == bindparam("i"),
            new_on_hand >= -eps,
            new_reserved >= -eps,
            new_damaged >= -eps,
            new_quarantined >= -eps,
            new_reserved + new_damaged + new_quarantined <= new_on_hand + eps,
        )
        .values(
            on_hand=new_on_hand,
            reserved=new_reserved,
            damaged=new_damaged,
            quarantined=new_quarantined,
            last_movement_at=bindparam("now", type_=stock_levels.c.updated_at.type),
            updated_at=bindparam("now", type_=stock_levels.c.updated_at.type),
        )
    )
    params = [
        {"w": w, "i": i, "dh": dh, "dr": dr, "dd": dd, "dq": dq, "now": now}
        for w, i, dh, dr, dd, dq in zip(
            sums["warehouse"].tolist(),
            sums["item_code"].tolist(),
            *(sums[c].tolist() for c in DELTAS),
            strict=True,
        )
    ]
    updated = conn.execute(stmt, params).rowcount
    if updated != len(params):
        raise InsufficientStock(_invalid_results(conn, sums))
    frame["occurred_at"] = now
    frame["actor"] = actor or current_actor()
    columns = [c for c in stock_movements.c.keys() if c in frame.columns and c != "id"]
    insert_rows(conn, stock_movements, frame[columns])
    return len(frame)


def _invalid_results(conn: Connection, sums: pd.DataFrame) -> pd.DataFrame:
    current = stock_position(conn, item_codes=sums["item_code"].unique().tolist())
    merged = sums.merge(current, on=["warehouse", "item_code"], how="left").fillna(0.0)
    after_on_hand = merged["on_hand"] + merged["on_hand_delta"]
    after_blocked = (
        merged["reserved"] + merged["reserved_delta"] + merged["damaged"] + merged["damaged_delta"]
        + merged["quarantined"] + merged["quarantined_delta"]
    )  # fmt: skip
    bad = (after_blocked > after_on_hand + QTY_EPSILON) | (after_on_hand < -QTY_EPSILON)
    return merged.loc[bad, ["warehouse", "item_code", "available", "reserved_delta", "on_hand_delta"]]


def stock_position(
    conn: Connection, *, warehouse: str | None = None, item_codes: Sequence[str] | None = None
) -> pd.DataFrame:
    """Balances with ``available = on_hand - reserved - damaged - quarantined`` (real time)."""
    sl = stock_levels.c
    stmt = select(
        sl.warehouse,
        sl.item_code,
        sl.on_hand,
        sl.reserved,
        sl.damaged,
        sl.quarantined,
        (sl.on_hand - sl.reserved - sl.damaged - sl.quarantined).label("available"),
        sl.last_movement_at,
    ).order_by(sl.warehouse, sl.item_code)
    if warehouse:
        stmt = stmt.where(sl.warehouse == warehouse)
    if item_codes is not None:
        frames = []
        codes = list(item_codes)
        for start in range(0, max(len(codes), 1), 900):
            frames.append(read_frame(conn, stmt.where(sl.item_code.in_(codes[start : start + 900]))))
        return pd.concat(frames, ignore_index=True) if frames else read_frame(conn, stmt.where(False))
    return read_frame(conn, stmt)


def ledger_mismatches(conn: Connection) -> pd.DataFrame:
    """Balances that differ from the sum of their movements (should always be empty)."""
    sm = stock_movements.c
    sums = read_frame(
        conn,
        select(
            sm.warehouse,
            sm.item_code,
            func.sum(sm.on_hand_delta).label("on_hand_l"),
            func.sum(sm.reserved_delta).label("reserved_l"),
            func.sum(sm.damaged_delta).label("damaged_l"),
            func.sum(sm.quarantined_delta).label("quarantined_l"),
        ).group_by(sm.warehouse, sm.item_code),
    )
    levels = stock_position(conn)
    merged = levels.merge(sums, on=["warehouse", "item_code"], how="outer").fillna(0.0)
    bad = np.zeros(len(merged), dtype=bool)
    for column in ("on_hand", "reserved", "damaged", "quarantined"):
        bad |= (merged[column] - merged[f"{column}_l"]).abs().to_numpy() > 1e-6
    return merged[bad]


def batch_balances(conn: Connection, warehouse: str | None = None) -> pd.DataFrame:
    """On-hand quantity per batch (``batch_no`` NA: stock received without a batch), with expiry dates."""
    sm, sb = stock_movements.c, stock_batches.c
    stmt = select(
        sm.warehouse, sm.item_code, sm.batch_no, func.sum(sm.on_hand_delta).label("on_hand")
    ).group_by(sm.warehouse, sm.item_code, sm.batch_no)
    if warehouse:
        stmt = stmt.where(sm.warehouse == warehouse)
    balances = read_frame(conn, stmt)
    batches = read_frame(
        conn,
        select(sb.warehouse, sb.item_code, sb.batch_no, sb.expiry_date, sb.produced_on, sb.expired_handled_at),
    )
    return balances.merge(batches, on=["warehouse", "item_code", "batch_no"], how="left")


def fefo_issue_plan(conn: Connection, picks: pd.DataFrame) -> pd.DataFrame:
    """Which batches to pick: first-expiry-first-out over batches with stock, expired batches skipped.

    ``picks``: ``pick_id``, ``warehouse``, ``item_code``, ``quantity``. Returns one row per (pick, batch) with
    ``batch_no`` (NA for unbatched stock) and ``quantity``. Quantity no batch covers comes back with
    ``batch_no`` NA (books kept at item level).
    """
    if picks.empty:
        return picks.assign(batch_no=pd.Series(dtype=object))
    balances = batch_balances(conn)
    keys = picks[["warehouse", "item_code"]].drop_duplicates()
    balances = balances.merge(keys, on=["warehouse", "item_code"])
    balances = balances[(balances["on_hand"] > QTY_EPSILON) & balances["expired_handled_at"].isna()]
    balances = balances.assign(
        _no_batch=balances["batch_no"].isna(),
        _expiry=pd.to_datetime(balances["expiry_date"], errors="coerce"),
    ).sort_values(["warehouse", "item_code", "_no_batch", "_expiry", "batch_no"], na_position="last")
    pools: dict[tuple[str, str], list[list]] = {}
    for w, i, b, q in zip(
        balances["warehouse"].tolist(),
        balances["item_code"].tolist(),
        balances["batch_no"].tolist(),
        balances["on_hand"].tolist(),
        strict=True,
    ):
        if isinstance(b, str):
            pools.setdefault((w, i), []).append([b, q])
    rows = []
    for pick_id, w, i, q in zip(
        picks["pick_id"].tolist(),
        picks["warehouse"].tolist(),
        picks["item_code"].tolist(),
        picks["quantity"].tolist(),
        strict=True,
    ):
        remaining = q
        for entry in pools.get((w, i), []):
            if remaining <= QTY_EPSILON:
                break
            take = min(entry[1], remaining)
            if take > QTY_EPSILON:
                rows.append((pick_id, w, i, entry[0], take))
                entry[1] -= take
                remaining -= take
        if remaining > QTY_EPSILON:
            rows.append((pick_id, w, i, None, remaining))
    return pd.DataFrame(rows, columns=["pick_id", "warehouse", "item_code", "batch_no", "quantity"])



# --- expiry --------------------------------------------------------------------------------------------------


def quarantine_expired_batches(conn: Connection, today: date, *, actor: str | None = None) -> pd.DataFrame:
    """Move the remaining quantity of batches past their expiry date out of availability (once per batch)."""
    balances = batch_balances(conn)
    if balances.empty:
        return balances
    expiry = pd.to_datetime(balances["expiry_date"], errors="coerce")
    due = balances[
        balances["batch_no"].notna()
        & expiry.notna()
        & (expiry < pd.Timestamp(today))
        & balances["expired_handled_at"].isna()
    ]
    if due.empty:
        return due
    positive = due[due["on_hand"] > QTY_EPSILON]
    # Only what is not already promised can be quarantined; the rest stays reserved for its order and is
    # reported, so a person decides (the CHECK would refuse it anyway).
    position = stock_position(conn, item_codes=positive["item_code"].unique().tolist())
    free = position.set_index(["warehouse", "item_code"])["available"].to_dict()
    quantities = []
    for w, i, q in zip(positive["warehouse"].tolist(), positive["item_code"].tolist(), positive["on_hand"].tolist(), strict=True):
        take = max(min(q, free.get((w, i), 0.0)), 0.0)
        free[(w, i)] = free.get((w, i), 0.0) - take
        quantities.append(take)
    movements = positive.assign(quarantined_delta=quantities)[["warehouse", "item_code", "batch_no", "quarantined_delta"]]
    movements = movements[movements["quarantined_delta"] > QTY_EPSILON].assign(
        kind="expiry", reason="batch expired: quarantined", reference="EXPIRY"
    )
    apply_movements(conn, movements, actor=actor)
    sb = stock_batches.c
    conn.execute(
        update(stock_batches)
        .where(and_(sb.warehouse == bindparam("w"), sb.item_code == bindparam("i"), sb.batch_no == bindparam("b")))
        .values(expired_handled_at=bindparam("now", type_=sb.expired_handled_at.type)),
        [
            {"w": w, "i": i, "b": b, "now": utc_now()}
            for w, i, b in zip(due["warehouse"].tolist(), due["item_code"].tolist(), due["batch_no"].tolist(), strict=True)
        ],
    )
    return due.assign(quarantined=due.merge(movements, how="left", on=["warehouse", "item_code", "batch_no"])["quarantined_delta"].fillna(0.0).to_numpy())


def known_codes(conn: Connection, table, column: str, values: Sequence[str]) -> set[str]:
    """Which of ``values`` exist in ``column`` (warehouse or item codes named in a staff file)."""
    known: set[str] = set()
    values = list(dict.fromkeys(v for v in values if isinstance(v, str)))
    for chunk in chunked(values):
        known.update(r[0] for r in conn.execute(select(column).where(column.in_(chunk))))
    return known


# --- adjustments by hand (issue 20: recorded with the listed person who made them) -----------------------------


def adjust_stock(conn: Connection, warehouse: str, item_code: str, delta: float, reason: str, *, actor: str,
                 now: datetime | None = None, batch_no: str | None = None) -> str:  # fmt: skip
    """Correct a balance by hand (found, lost, miscounted): one ``adjustment`` movement with its reason, referenced
    ``ADJ-…`` and recorded as ``actor`` (``role:name`` of a listed operations person). Returns the reference.
    A stocktake covering the item may then not be verified by the same person (``[staff] separate``)."""
    from yidi.schema import catalog_items

    now = now or utc_now()
    if not reason or len(reason.strip()) < 4:
        raise StockFileError("say why the stock is adjusted (a reason of at least 4 characters)")
    if abs(float(delta)) <= QTY_EPSILON:
        raise StockFileError("an adjustment of 0 changes nothing")
    if warehouse not in known_codes(conn, warehouses, warehouses.c.code, [warehouse]):
        raise StockFileError(f"unknown warehouse {warehouse}")
    if item_code not in known_codes(conn, catalog_items, catalog_items.c.code, [item_code]):
        raise StockFileError(f"item {item_code} is not in the catalog")
    reference = f"ADJ-{now:%Y%m%d%H%M%S%f}"
    apply_movements(conn, pd.DataFrame([{
        "warehouse": warehouse, "item_code": item_code, "batch_no": batch_no or None, "kind": "adjustment",
        "on_hand_delta": float(delta), "reason": reason.strip(), "reference": reference}]), actor=actor, now=now)  # fmt: skip
    return reference
