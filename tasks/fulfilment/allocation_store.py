"""The allocation run's store (F3, F4): what it reads (candidate orders, their outstanding lines, open requests
and decisions) and what it writes besides stock movements (the run row, shipment requests with the carrier
choice, backorders, carrier and exception events). SQL in and out; the decisions are made in
``tasks.fulfilment.allocation`` and ``tasks.fulfilment.carrier_choice``, the sequence in ``allocation_run``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from sqlalchemy import Connection, and_, bindparam, func, or_, select, update

from tasks.fulfilment.carrier_choice import options_as_records
from yidi.bulk import chunked, insert_rows, json_text, read_frame, upsert_returning_ids, utc_now
from yidi.lifecycle import OrderState, record_events
from yidi.money import decimal_to_fen, yuan_text
from yidi.schema import catalog_items, customers, order_events, order_lines, orders
from yidi.schema_fulfilment import (
    allocation_runs,
    allocations,
    backorders,
    customer_decisions,
    production_requests,
    purchase_requests,
    shipment_requests,
)

S = OrderState
FULFIL_STATES = (S.APPROVED, S.BACKORDERED, S.IN_PRODUCTION, S.IN_PROCUREMENT)
# Orders that shipped part already and still have open backorders get follow-up shipments (no state change).
FOLLOW_UP_STATES = (S.ALLOCATED, S.SHIPPED, S.IN_TRANSIT, S.DELIVERED)
OPEN_PRODUCTION = ("planned", "qc_pending")
OPEN_PURCHASE = ("draft", "sent")


@dataclass
class Candidates:
    orders: pd.DataFrame
    lines: pd.DataFrame  # product lines with ``outstanding``
    items: pd.DataFrame
    requested: pd.DataFrame  # order_line_id -> requested_qty, ready_date, kinds
    decisions: pd.DataFrame  # latest decision per order
    shipment_counts: dict[int, int]


def _candidate_condition():
    open_backorders = select(backorders.c.order_id).where(backorders.c.status == "open")
    return or_(
        orders.c.state.in_([s.value for s in FULFIL_STATES]),
        and_(orders.c.state.in_([s.value for s in FOLLOW_UP_STATES]), orders.c.id.in_(open_backorders)),
    )


def load_candidates(conn: Connection) -> Candidates:
    condition = _candidate_condition()
    o, c = orders.c, customers.c
    order_frame = read_frame(
        conn,
        select(
            o.id.label("order_id"), o.order_no, o.state, o.promised_date, o.order_time, o.ship_province,
            o.payment_method, o.order_total_fen, o.goods_total_fen,
            c.allow_partial_shipment,
        )
        .select_from(orders.outerjoin(customers, customers.c.id == o.customer_id))
        .where(condition),
    )  # fmt: skip
    ol = order_lines.c
    line_frame = read_frame(
        conn,
        select(
            ol.id.label("order_line_id"), ol.order_id, ol.line_no, ol.item_code, ol.item_kind, ol.quantity,
            ol.line_total_fen,
        )
        .join(orders, orders.c.id == ol.order_id)
        .where(condition),
    )  # fmt: skip
    a = allocations.c
    allocated = read_frame(
        conn,
        select(a.order_line_id, func.sum(a.quantity).label("allocated"))
        .join(orders, orders.c.id == a.order_id)
        .where(condition, a.status.in_(["reserved", "shipped"]))
        .group_by(a.order_line_id),
    )
    pr, pq = production_requests.c, purchase_requests.c
    produced = read_frame(
        conn,
        select(pr.order_line_id, func.sum(pr.quantity).label("qty"), func.max(pr.available_date).label("ready"))
        .where(pr.status.in_(OPEN_PRODUCTION), pr.order_line_id.is_not(None))
        .group_by(pr.order_line_id),
    ).assign(kind="production")
    bought = read_frame(
        conn,
        select(pq.order_line_id, func.sum(pq.quantity).label("qty"), func.max(pq.expected_date).label("ready"))
        .where(pq.status.in_(OPEN_PURCHASE), pq.order_line_id.is_not(None))
        .group_by(pq.order_line_id),
    ).assign(kind="purchase")
    requested = pd.concat([produced, bought], ignore_index=True)
    cd = customer_decisions.c
    latest = select(cd.order_id, func.max(cd.id).label("id")).group_by(cd.order_id).subquery()
    decisions = read_frame(
        conn,
        select(cd.id, cd.order_id, cd.choice, cd.decided_at).join(latest, latest.c.id == cd.id),
    )
    counts = read_frame(
        conn,
        select(shipment_requests.c.order_id, func.count().label("n")).group_by(shipment_requests.c.order_id),
    )
    items = read_frame(
        conn,
        select(
            catalog_items.c.code.label("item_code"), catalog_items.c.kind, catalog_items.c.name, catalog_items.c.unit,
            catalog_items.c.weight_kg, catalog_items.c.volume_m3, catalog_items.c.sourcing,
            catalog_items.c.lead_time_days, catalog_items.c.preferred_supplier,
        ),
    )  # fmt: skip
    done = allocated.set_index("order_line_id")["allocated"] if len(allocated) else pd.Series(dtype=float)
    line_frame["allocated"] = done.reindex(line_frame["order_line_id"]).fillna(0.0).to_numpy()
    line_frame["outstanding"] = (line_frame["quantity"].astype(float) - line_frame["allocated"]).clip(lower=0)
    return Candidates(
        orders=order_frame,
        lines=line_frame,
        items=items,
        requested=requested,
        decisions=decisions,
        shipment_counts=dict(zip(counts["order_id"].tolist(), counts["n"].tolist(), strict=True)),
    )


def finish_run(conn: Connection, run_id: int, summary: dict) -> None:
    conn.execute(
        update(allocation_runs).where(allocation_runs.c.id == run_id)
        .values(status="done", finished_at=utc_now(), summary=json_text(summary))
    )  # fmt: skip


def write_shipment_requests(conn, ships, choices, options, info, counts, run_id, now, policy) -> list[int]:
    if ships.empty:
        return []
    order_ids = ships["order_id"].tolist()
    seq: dict[int, int] = {}
    numbers = []
    for oid in order_ids:
        seq[oid] = seq.get(oid, counts.get(oid, 0)) + 1
        numbers.append(f"{info.loc[oid, 'order_no']}-{seq[oid]}")
    threshold = decimal_to_fen(policy.insurance_threshold_yuan)
    declared = ships["declared_value_fen"].tolist()
    provinces = choices["province"].tolist()
    insured = choices["insured"].tolist()
    insurance_reason = [
        None if not ins else (
            f"declared value {yuan_text(d, symbol=True)} ≥ {yuan_text(threshold, symbol=True)}" if d >= threshold
            else f"route to {p} is insured by policy"
        )
        for ins, d, p in zip(insured, declared, provinces, strict=True)
    ]  # fmt: skip
    alternatives = options_as_records(options) if len(options) < 200_000 else {}
    frame = pd.DataFrame(
        {
            "shipment_no": numbers,
            "idempotency_key": [f"yidi-shipment-{n}" for n in numbers],
            "order_id": order_ids,
            "warehouse": ships["warehouse"].tolist(),
            "carrier": choices["carrier"].astype(object).tolist(),
            "service": choices["service"].tolist(),
            "weight_kg": ships["weight_kg"].round(3).tolist(),
            "chargeable_weight_kg": choices["chargeable_weight_kg"].tolist(),
            "volume_m3": ships["volume_m3"].round(6).tolist(),
            "declared_value_fen": declared,
            "insured": insured,
            "insurance_fee_fen": choices["insurance_fee_fen"].tolist(),
            "cod_amount_fen": ships["cod_amount_fen"].tolist(),
            "cod_fee_fen": choices["cod_fee_fen"].tolist(),
            "freight_fen": choices["freight_fen"].tolist(),
            "expected_delivery_date": pd.to_datetime(choices["expected_delivery_date"]).dt.date.tolist(),
            "eta_estimated": choices["eta_estimated"].tolist(),
            "choice_reason": choices["reason"].tolist(),
            "alternatives": [json_text(alternatives.get(k, [])) for k in choices["shipment_key"].tolist()],
            "insurance_reason": insurance_reason,
            "status": "pending",
            "run_id": run_id,
            "created_at": now,
            "updated_at": now,
        }
    )
    ids = upsert_returning_ids(conn, shipment_requests, frame, ["shipment_no"])
    return ids.set_index("shipment_no")["id"].reindex(numbers).astype(int).tolist()


def update_backorders(conn, lines, allocs, short_lines, now) -> None:
    """Short lines open (or update) a backorder; lines now covered close theirs."""
    if len(short_lines):
        frame = pd.DataFrame(
            {
                "order_id": short_lines["order_id"].to_numpy(),
                "order_line_id": short_lines["order_line_id"].to_numpy(),
                "item_code": short_lines["item_code"].to_numpy(),
                "quantity": short_lines["short_qty"].to_numpy(dtype=float),
                "status": "open",
                "updated_at": now,
                "created_at": now,
            }
        )
        insert_rows(conn, backorders, frame, on_conflict=["order_line_id"], update_columns=["quantity", "status", "updated_at"])
    short_ids = set(short_lines["order_line_id"].tolist())
    filled = [int(i) for i in allocs["order_line_id"].unique().tolist() if i not in short_ids]
    stmt = (
        update(backorders)
        .where(backorders.c.order_line_id.in_(bindparam("ids", expanding=True)), backorders.c.status == "open")
        .values(status="filled", filled_at=now, updated_at=now, quantity=0.0)
    )
    for chunk in chunked(filled):
        conn.execute(stmt, {"ids": chunk})


def record_carrier_events(conn, ships, choices, request_ids, actor, now) -> None:
    if ships.empty:
        return
    record_events(
        conn,
        pd.DataFrame(
            {
                "order_id": ships["order_id"].to_numpy(),
                "kind": "fulfilment",
                "reason": ("carrier chosen: " + choices["carrier"].astype(str) + " — " + choices["reason"].astype(str)).to_numpy(),
                "details": [
                    {"shipment_request": rid, "warehouse": w, "carrier": c, "eta": str(pd.Timestamp(e).date()),
                     "insured": bool(i)}
                    for rid, w, c, e, i in zip(request_ids, ships["warehouse"].tolist(), choices["carrier"].astype(object).tolist(),
                                               choices["expected_delivery_date"].tolist(), choices["insured"].tolist(), strict=True)
                ],
                "occurred_at": now,
            }
        ),
        actor=actor,
    )  # fmt: skip


def record_exception_events(conn, exceptions: dict[int, str], info: pd.DataFrame, actor: str) -> list[dict]:
    """One 'fulfilment' event per order and distinct reason (re-runs do not repeat it)."""
    if not exceptions:
        return []
    oe = order_events.c
    seen = set()
    ids = sorted(exceptions)
    for chunk in chunked(ids):
        rows = conn.execute(
            select(oe.order_id, oe.reason).where(oe.order_id.in_(chunk), oe.kind == "fulfilment",
                                                 oe.reason.like("exception:%"))
        )  # fmt: skip
        seen.update((r.order_id, r.reason) for r in rows)
    fresh = [(o, f"exception: {why}") for o, why in exceptions.items() if (o, f"exception: {why}") not in seen]
    if fresh:
        record_events(
            conn,
            pd.DataFrame({"order_id": [o for o, _ in fresh], "kind": "fulfilment", "reason": [r for _, r in fresh],
                          "details": [{"state_kept": str(info.loc[o, "state"]) if o in info.index else None} for o, _ in fresh]}),
            actor=actor,
        )  # fmt: skip
    return [{"order_id": o, "order_no": info.loc[o, "order_no"] if o in info.index else None, "exception": why}
            for o, why in exceptions.items()]  # fmt: skip
