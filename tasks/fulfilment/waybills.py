"""Waybills (F4, F5, P2): every pending shipment request handed to its carrier exactly once, the reserved stock
issued, the order shipped, the customer told, and the warehouse's papers written.

Calls go to the carrier outside any transaction (a pool of ``carrier_api_concurrency`` threads), each with the
request's idempotency key; each chunk of answers is recorded in one transaction, and only the first recording of
a request (still ``pending``) writes anything, so a lost answer, a crash before recording or two runs at once
never make a second shipment.

A parcel carrying several orders (``parcels``, issue 18) is one carrier call with the parcel's key, figures and
combined goods, asked once its hold is over; the waybill is recorded on every member request (each order its own
``shipments`` row with its share of the freight) and one shipping document covers the parcel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd
from sqlalchemy import Connection, Engine, bindparam, select, update

from connectors.carrier_shipping import CarrierRejected, CarrierUnavailable
from tasks.fulfilment.documents import write_pick_lists, write_shipping_document
from tasks.fulfilment.parcels import claim_parcels_for_waybills, mark_parcels, member_rows, parcel_request_row
from tasks.fulfilment.stock import apply_movements, fefo_issue_plan
from yidi.access_log import record_access
from yidi.bulk import chunked, frame_records, read_frame, upsert_returning_ids, utc_now
from yidi.lifecycle import OrderState, current_actor, record_events, transition_orders
from yidi.masking import mask_name, mask_phone
from yidi.money import yuan_text
from yidi.outbox import enqueue_customer_notices
from yidi.schema import catalog_items, order_lines, orders, shipments
from yidi.schema_fulfilment import (
    allocations,
    backorders,
    parcels,
    shipment_requests,
    stock_batches,
    warehouses,
)
from yidi.settings import Settings, get_settings
from yidi.workdays import BUSINESS_TZ

S = OrderState


@dataclass
class WaybillResult:
    created: int = 0
    replayed: int = 0  # the carrier had it already (a lost answer, or another run): same waybill, no duplicate
    failed: int = 0  # transient: retried next run with the same key
    rejected: int = 0  # the carrier refused the request: a person looks
    documents: list[str] = field(default_factory=list)
    pick_lists: list[str] = field(default_factory=list)
    shipments: list[dict] = field(default_factory=list)  # created this run (for artifacts)
    problems: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("shipments", "problems", "documents")} | {
            "documents": len(self.documents)
        }


def pending_shipment_requests(conn: Connection, limit: int | None = None) -> pd.DataFrame:
    sr, o, w = shipment_requests.c, orders.c, warehouses.c
    stmt = (
        select(
            sr.id, sr.shipment_no, sr.idempotency_key, sr.order_id, sr.warehouse, sr.carrier, sr.service,
            sr.weight_kg, sr.chargeable_weight_kg, sr.volume_m3, sr.declared_value_fen, sr.insured,
            sr.insurance_fee_fen, sr.cod_amount_fen, sr.freight_fen, sr.expected_delivery_date, sr.choice_reason,
            sr.attempts, sr.last_error, sr.parcel_no,
            o.order_no, o.customer_name, o.customer_phone, o.ship_province, o.ship_city, o.ship_district,
            o.ship_detail, o.ship_postcode, o.buyer_note,
            w.name.label("wh_name"), w.province.label("wh_province"), w.city.label("wh_city"),
            w.district.label("wh_district"), w.address.label("wh_address"), w.contact.label("wh_contact"),
            w.phone.label("wh_phone"),
        )
        .join(orders, o.id == sr.order_id)
        .outerjoin(warehouses, w.code == sr.warehouse)
        .where(sr.status == "pending")
        .order_by(sr.id)
    )  # fmt: skip
    if limit:
        stmt = stmt.limit(limit)
    return read_frame(conn, stmt)


def shipment_goods(conn: Connection, request_ids: Sequence[int]) -> pd.DataFrame:
    a, ol, ci = allocations.c, order_lines.c, catalog_items.c
    frames = [
        read_frame(
            conn,
            select(a.id.label("allocation_id"), a.shipment_request_id, a.order_id, a.warehouse, a.item_code, a.quantity,
                   ol.item_name, ol.spec, ci.unit, ci.weight_kg, ci.name.label("catalog_name"))
            .join(order_lines, ol.id == a.order_line_id)
            .outerjoin(catalog_items, ci.code == a.item_code)
            .where(a.shipment_request_id.in_(chunk), a.status == "reserved")
            .order_by(a.id),
        )  # fmt: skip
        for chunk in chunked([int(i) for i in request_ids])
    ]
    if not frames:
        return pd.DataFrame(columns=["allocation_id", "shipment_request_id", "item_code", "quantity"])
    goods = pd.concat(frames, ignore_index=True)
    goods["name"] = goods["item_name"].fillna(goods["catalog_name"]).fillna(goods["item_code"])
    return goods


def waybill_request_body(row: dict, goods: list[dict]) -> dict:
    """The carrier gateway's JSON (``connectors/carrier_shipping.py``): full contact data, yuan strings."""
    # Missing values read back from the store as NaN (pandas 3): make them None so `or ""` defaults apply.
    row = {key: None if isinstance(value, float) and math.isnan(value) else value for key, value in row.items()}
    return {
        "carrier": row["carrier"],
        "service": row["service"],
        "order_ref": row["shipment_no"],
        "sender": {"name": row["wh_contact"] or row["wh_name"] or "", "phone": row["wh_phone"] or "",
                   "province": row["wh_province"] or "", "city": row["wh_city"] or "",
                   "district": row["wh_district"] or "", "address": row["wh_address"] or ""},
        "recipient": {"name": row["customer_name"] or "", "phone": row["customer_phone"] or "",
                      "province": row["ship_province"] or "", "city": row["ship_city"] or "",
                      "district": row["ship_district"] or "", "address": row["ship_detail"] or "",
                      "postcode": row["ship_postcode"] or ""},
        "parcel": {"weight_kg": round(float(row["weight_kg"] or 0), 3), "volume_m3": round(float(row["volume_m3"] or 0), 6),
                   "pieces": 1},
        "goods": [{"name": g["name"], "quantity": g["quantity"], "unit": g.get("unit") or "件"} for g in goods],
        "declared_value": yuan_text(row["declared_value_fen"]),
        "insured": bool(row["insured"]),
        "cod_amount": yuan_text(row["cod_amount_fen"]),
        "remark": (row.get("buyer_note") or "")[:100],
    }  # fmt: skip


def create_waybills(
    engine: Engine,
    client,
    *,
    settings: Settings | None = None,
    now: datetime | None = None,
    actor: str | None = None,
    limit: int | None = None,
    chunk_size: int = 200,
    write_documents: bool = True,
) -> WaybillResult:
    """Ask the carrier for a waybill for every pending shipment request, and record each answer exactly once.

    Each call carries the request's idempotency key: a retry after a lost answer, a crash between the call and
    the commit, or two runs at once all get the same waybill back, and only the first recording (``status =
    'pending'`` still) writes the shipment, issues the stock and moves the order to shipped.
    """
    settings = settings or get_settings()
    actor = actor or current_actor()
    result = WaybillResult()
    with engine.connect() as conn:
        pending = pending_shipment_requests(conn, limit)
        goods = shipment_goods(conn, pending["id"].tolist()) if len(pending) else pd.DataFrame()
    if pending.empty:
        return result
    goods_by_request = {k: frame_records(g) for k, g in goods.groupby("shipment_request_id")} if len(goods) else {}
    created_rows: list[dict] = []
    moment = now or utc_now()

    def call(unit: tuple[dict | None, list[dict]]) -> list[tuple]:
        parcel, rows = unit
        if parcel is None:
            row, key = rows[0], rows[0]["idempotency_key"]
            body = waybill_request_body(row, goods_by_request.get(row["id"], []))
        else:  # one call for the parcel; its answer is every member's
            key, rows = parcel["idempotency_key"], member_rows(parcel, rows)
            body = waybill_request_body(parcel_request_row(parcel, rows),
                                        [g for r in rows for g in goods_by_request.get(r["id"], [])])
        try:
            waybill = client.create_waybill(body, key)
            return [(row, waybill, None, False) for row in rows]
        except CarrierRejected as exc:
            return [(row, None, f"rejected by carrier: {exc}", True) for row in rows]
        except CarrierUnavailable as exc:
            return [(row, None, f"carrier unavailable: {exc}", False) for row in rows]

    workers = max(1, settings.fulfilment.carrier_api_concurrency)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="waybills") as pool:
        for chunk in _call_units(engine, frame_records(pending), chunk_size, moment):
            outcomes = [o for unit in pool.map(call, chunk) for o in unit]
            answers = [(row, waybill) for row, waybill, _, _ in outcomes if waybill is not None]
            failures = [(row, error, rejected, client.attempts) for row, waybill, error, rejected in outcomes
                        if waybill is None]  # fmt: skip
            created_rows.extend(_record_chunk(engine, answers, failures, goods_by_request, settings, now, actor, result))
    # For the UI and logs: personal data masked (documents for the warehouse keep it whole).
    result.shipments = [
        {k: r[k] for k in ("shipment_no", "order_no", "carrier", "waybill_no", "expected_delivery_date", "warehouse")}
        | {"recipient": mask_name(r["customer_name"]), "phone": mask_phone(r["customer_phone"]),
           "destination": f"{r['ship_province'] or ''}{r['ship_city'] or ''}"}
        for r in created_rows
    ]  # fmt: skip
    if write_documents and created_rows:
        docs, picks = _write_documents(engine, created_rows, goods_by_request, settings, now or utc_now())
        result.documents, result.pick_lists = docs, picks
    return result


def _call_units(engine, rows: list[dict], chunk_size: int, now: datetime):
    """Chunks of carrier calls: a request on its own, or a parcel (its members together) whose hold is over and
    that is now stamped as asked for; members of a parcel still on hold (or undone meanwhile) wait."""
    parcel_nos = sorted({r["parcel_no"] for r in rows if isinstance(r.get("parcel_no"), str)})
    with engine.begin() as conn:
        ready = claim_parcels_for_waybills(conn, parcel_nos, now)
    units: list[tuple[dict | None, list[dict]]] = []
    members: dict[str, list[dict]] = {}
    for r in rows:
        if not isinstance(r.get("parcel_no"), str):
            units.append((None, [r]))
        elif r["parcel_no"] in ready:
            members.setdefault(r["parcel_no"], []).append(r)
    units.extend((ready[k], v) for k, v in members.items())
    yield from chunked(units, chunk_size)


def _record_chunk(engine, answers, failures, goods_by_request, settings, now, actor, result) -> list[dict]:
    """One transaction per chunk of answers: shipments, stock issues, states, notices (or the failures)."""
    with engine.begin() as conn:
        recorded = _record_waybills(conn, answers, goods_by_request, settings, now or utc_now(), actor)
        _record_failures(conn, failures, actor)
        mark_parcels(conn, {r["parcel_no"]: r["waybill_no"] for r in recorded if isinstance(r.get("parcel_no"), str)},
                     {r["parcel_no"] for r, _, rejected, _ in failures if rejected and isinstance(r.get("parcel_no"), str)},
                     now or utc_now())  # fmt: skip
    result.created += len(recorded)
    result.replayed += sum(1 for _, w in answers if w.replayed)
    result.failed += sum(1 for f in failures if not f[2])
    result.rejected += sum(1 for f in failures if f[2])
    result.problems.extend({"shipment_no": r["shipment_no"], "order_no": r["order_no"], "error": e} for r, e, _, _ in failures)
    return recorded


def _record_waybills(conn, answers, goods_by_request, settings, now, actor) -> list[dict]:
    sr = shipment_requests.c
    claim = (
        update(shipment_requests)
        .where(sr.id == bindparam("rid"), sr.status == "pending")
        .values(status="created", waybill_no=bindparam("wb"), attempts=sr.attempts + bindparam("n"),
                last_error=None, updated_at=now)
    )  # fmt: skip
    claimed: list[dict] = []
    for row, waybill in answers:
        if conn.execute(claim, {"rid": row["id"], "wb": waybill.waybill_no, "n": waybill.attempts}).rowcount == 1:
            claimed.append(row | {"waybill_no": waybill.waybill_no, "sort_code": waybill.sort_code,
                                  "replayed": waybill.replayed, "attempts_used": waybill.attempts})  # fmt: skip
    if not claimed:
        return []
    frame = pd.DataFrame(
        {
            "shipment_no": [r["shipment_no"] for r in claimed],
            "order_id": [r["order_id"] for r in claimed],
            "warehouse": [r["warehouse"] for r in claimed],
            "carrier": [r["carrier"] for r in claimed],
            "service": [r["service"] for r in claimed],
            "waybill_no": [r["waybill_no"] for r in claimed],
            "idempotency_key": [r["idempotency_key"] for r in claimed],
            "status": "info_received",
            "weight_kg": [r["weight_kg"] for r in claimed],
            "chargeable_weight_kg": [r["chargeable_weight_kg"] for r in claimed],
            "volume_m3": [r["volume_m3"] for r in claimed],
            "declared_value_fen": [r["declared_value_fen"] for r in claimed],
            "insured": [bool(r["insured"]) for r in claimed],
            "insurance_fee_fen": [r["insurance_fee_fen"] for r in claimed],
            "cod_amount_fen": [r["cod_amount_fen"] for r in claimed],
            "freight_fen": [r["freight_fen"] for r in claimed],
            "expected_delivery_date": [r["expected_delivery_date"] for r in claimed],
            "created_at": now,
            "shipped_at": now,
            "updated_at": now,
        }
    )
    ids = upsert_returning_ids(conn, shipments, frame, ["shipment_no"]).set_index("shipment_no")["id"]
    conn.execute(
        update(shipment_requests).where(sr.id == bindparam("rid")).values(shipment_id=bindparam("sid")),
        [{"rid": r["id"], "sid": int(ids[r["shipment_no"]])} for r in claimed],
    )
    # Issue the reserved stock, batch by batch (first expiry first out).
    request_ids = [r["id"] for r in claimed]
    goods = pd.DataFrame([g for rid in request_ids for g in goods_by_request.get(rid, [])])
    if len(goods):
        plan = fefo_issue_plan(
            conn, goods.rename(columns={"allocation_id": "pick_id"})[["pick_id", "warehouse", "item_code", "quantity"]]
        )
        order_of = dict(zip(goods["allocation_id"].tolist(), goods["order_id"].tolist(), strict=True))
        apply_movements(
            conn,
            plan.assign(
                kind="issue",
                on_hand_delta=-plan["quantity"],
                reserved_delta=-plan["quantity"],
                allocation_id=plan["pick_id"],
                order_id=plan["pick_id"].map(order_of),
                reason="shipped",
                reference=plan["pick_id"].map(dict(zip(goods["allocation_id"].tolist(),
                                                       goods["shipment_request_id"].tolist(), strict=True))).map(
                    {r["id"]: r["shipment_no"] for r in claimed}),
            ).drop(columns=["pick_id", "quantity"]),
            actor=actor,
            now=now,
        )  # fmt: skip
        batches = plan.groupby("pick_id")["batch_no"].apply(lambda b: ",".join(x for x in b if isinstance(x, str)))
        for rid in request_ids:
            for g in goods_by_request.get(rid, []):
                g["batch_no"] = batches.get(g["allocation_id"], "") or None
        a = allocations.c
        for chunk in chunked(request_ids):
            conn.execute(
                update(allocations).where(a.shipment_request_id.in_(chunk), a.status == "reserved")
                .values(status="shipped", updated_at=now)
            )  # fmt: skip
    carrier_names = {code: card.name for code, card in settings.fulfilment.rate_cards.items()}
    details = [
        {"shipment_no": r["shipment_no"], "carrier": r["carrier"], "waybill_no": r["waybill_no"],
         "expected_delivery_date": str(r["expected_delivery_date"])}
        for r in claimed
    ]  # fmt: skip
    first_per_order: dict[int, dict] = {}
    for r, d in zip(claimed, details, strict=True):
        first_per_order.setdefault(r["order_id"], d)
    transition_orders(
        conn, sorted(first_per_order), S.SHIPPED, reason="handed to the carrier with a waybill",
        actor=actor, details=[first_per_order[o] for o in sorted(first_per_order)], skip_illegal=True,
    )  # fmt: skip
    record_events(
        conn,
        pd.DataFrame({"order_id": [r["order_id"] for r in claimed], "kind": "fulfilment",
                      "reason": [f"waybill {r['waybill_no']} issued by {r['carrier']} for shipment {r['shipment_no']}"
                                 + (" (answer had been lost: same waybill returned)" if r["replayed"] else "")
                                 for r in claimed],
                      "details": details, "occurred_at": now}),
        actor=actor,
    )  # fmt: skip
    open_backorder = _orders_with_open_backorders(conn, list(first_per_order))
    notices = [
        {
            "order_id": r["order_id"],
            "template": "fulfilment_shipped",
            "dedupe": f"fulfil-shipped:{r['shipment_no']}",
            "context": {
                "carrier_name": carrier_names.get(r["carrier"], r["carrier"]),
                "waybill_no": r["waybill_no"],
                "expected_delivery_date": str(r["expected_delivery_date"]),
                "items": "、".join(f"{g['name']}×{g['quantity']:g}" for g in goods_by_request.get(r["id"], [])),
                "remainder_note": "其余商品到货后将另行发出。" if r["order_id"] in open_backorder else "",
            },
        }
        for r in claimed
    ]
    enqueue_customer_notices(conn, notices, settings.fulfilment.notice_media, settings.general.company_name)
    return claimed


def _orders_with_open_backorders(conn: Connection, order_ids: list[int]) -> set[int]:
    found: set[int] = set()
    for chunk in chunked(sorted(order_ids)):
        rows = conn.execute(
            select(backorders.c.order_id).where(backorders.c.order_id.in_(chunk), backorders.c.status == "open")
        )
        found.update(r.order_id for r in rows)
    return found


def _record_failures(conn, failures, actor) -> None:
    if not failures:
        return
    sr = shipment_requests.c
    conn.execute(
        update(shipment_requests)
        .where(sr.id == bindparam("rid"), sr.status == "pending")
        .values(attempts=sr.attempts + bindparam("n"), last_error=bindparam("err"), status=bindparam("st"),
                updated_at=utc_now()),
        [{"rid": r["id"], "n": n, "err": e[:2000], "st": "rejected" if rejected else "pending"}
         for r, e, rejected, n in failures],
    )  # fmt: skip
    first_time = [(r, e) for r, e, rejected, _ in failures if rejected or not r["last_error"]]
    if first_time:
        record_events(
            conn,
            pd.DataFrame({"order_id": [r["order_id"] for r, _ in first_time], "kind": "fulfilment",
                          "reason": [f"waybill for {r['shipment_no']} not created yet: {e[:300]}" for r, e in first_time]}),
            actor=actor,
        )  # fmt: skip


def _document_groups(created: list[dict]) -> list[list[dict]]:
    """One shipping document per parcel: the members of a merged parcel together, every other shipment alone."""
    groups: dict[object, list[dict]] = {}
    for r in created:
        groups.setdefault(r["parcel_no"] if isinstance(r.get("parcel_no"), str) else ("alone", r["id"]), []).append(r)
    return list(groups.values())


def _write_documents(engine, created, goods_by_request, settings, now) -> tuple[list[str], list[str]]:
    cards = settings.fulfilment.rate_cards
    ship_date = now.astimezone(BUSINESS_TZ).date()
    docs, picks, paths = [], [], {}
    for group in _document_groups(created):
        r = group[0]
        goods = [g | {"order_no": m["order_no"]} for m in group for g in goods_by_request.get(m["id"], [])]
        total = {k: sum(float(m[k] or 0) for m in group) for k in
                 ("weight_kg", "chargeable_weight_kg", "volume_m3", "declared_value_fen", "insurance_fee_fen",
                  "cod_amount_fen", "freight_fen")}  # fmt: skip
        doc = {
            "shipment_no": r.get("parcel_no") if len(group) > 1 else r["shipment_no"],
            "order_no": "、".join(m["order_no"] for m in group), "waybill_no": r["waybill_no"],
            "carrier": r["carrier"], "carrier_name": cards[r["carrier"]].name if r["carrier"] in cards else r["carrier"],
            "service": r["service"], "sort_code": r.get("sort_code"), "ship_date": ship_date,
            "expected_delivery_date": r["expected_delivery_date"],
            "sender": {"warehouse": r["warehouse"], "name": r["wh_contact"] or r["wh_name"], "phone": r["wh_phone"],
                       "province": r["wh_province"], "city": r["wh_city"], "district": r["wh_district"],
                       "address": r["wh_address"]},
            "recipient": {"name": r["customer_name"], "phone": r["customer_phone"], "province": r["ship_province"],
                          "city": r["ship_city"], "district": r["ship_district"], "address": r["ship_detail"],
                          "postcode": r["ship_postcode"]},
            "goods": [{"item_code": g["item_code"], "name": g["name"], "spec": g.get("spec"), "unit": g.get("unit"),
                       "quantity": g["quantity"], "batch_no": g.get("batch_no"), "order_no": g["order_no"],
                       "weight_kg": (g.get("weight_kg") or 0) * g["quantity"]} for g in goods],
            "weight_kg": total["weight_kg"], "chargeable_weight_kg": total["chargeable_weight_kg"],
            "volume_m3": total["volume_m3"], "declared_value_fen": int(total["declared_value_fen"]),
            "insured": bool(r["insured"]), "insurance_fee_fen": int(total["insurance_fee_fen"]),
            "cod_amount_fen": int(total["cod_amount_fen"]), "freight_fen": int(total["freight_fen"]),
            "liability": cards[r["carrier"]].liability if r["carrier"] in cards else "",
            "choice_reason": r["choice_reason"],
        }  # fmt: skip
        path = write_shipping_document(doc)
        for m in group:
            paths[m["id"]] = str(path)
        docs.append(str(path))
        for m in group:
            for g in goods_by_request.get(m["id"], []):
                picks.append({"warehouse": m["warehouse"], "item_code": g["item_code"], "item_name": g["name"],
                              "spec": g.get("spec"), "batch_no": g.get("batch_no"), "expiry_date": None,
                              "quantity": g["quantity"], "unit": g.get("unit"), "shipment_no": m["shipment_no"],
                              "order_no": m["order_no"], "carrier": m["carrier"], "waybill_no": m["waybill_no"]})  # fmt: skip
    with engine.begin() as conn:
        conn.execute(
            update(shipment_requests).where(shipment_requests.c.id == bindparam("rid"))
            .values(document_path=bindparam("path")),
            [{"rid": rid, "path": p} for rid, p in paths.items()],
        )  # fmt: skip
        parcel_docs = {r["parcel_no"]: paths[r["id"]] for r in created if isinstance(r.get("parcel_no"), str)}
        if parcel_docs:
            conn.execute(update(parcels).where(parcels.c.parcel_no == bindparam("pno")).values(document_path=bindparam("path")),
                         [{"pno": k, "path": v} for k, v in parcel_docs.items()])  # fmt: skip
        if docs:  # shipping documents carry full names, phones and addresses: the access trail (issue 20)
            people = {(r["customer_name"], r["customer_phone"], r["ship_detail"]) for r in created}
            record_access(conn, current_actor(), "document",
                          f"{len(docs)} shipping document(s) under {Path(docs[0]).parent}", len(people),
                          shipments=[r["shipment_no"] for r in created][:1000])  # fmt: skip
        pick_frame = pd.DataFrame(picks)
        if len(pick_frame):
            expiry = read_frame(conn, select(stock_batches.c.warehouse, stock_batches.c.item_code,
                                             stock_batches.c.batch_no, stock_batches.c.expiry_date))  # fmt: skip
            lookup = {(w, i, b): e for w, i, b, e in zip(expiry["warehouse"], expiry["item_code"], expiry["batch_no"],
                                                          expiry["expiry_date"], strict=True)}  # fmt: skip
            pick_frame["expiry_date"] = [
                lookup.get((w, i, b)) if isinstance(b, str) and "," not in b else None
                for w, i, b in zip(pick_frame["warehouse"], pick_frame["item_code"], pick_frame["batch_no"], strict=True)
            ]
    label = now.astimezone(BUSINESS_TZ).strftime("%Y%m%d-%H%M%S")
    pick_paths = [str(p) for p in write_pick_lists(pick_frame, label)] if picks else []
    return docs, pick_paths
