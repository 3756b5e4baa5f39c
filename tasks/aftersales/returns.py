"""Returned goods received and inspected (A3): good goods go back to stock, damaged goods are quarantined or
scrapped with the reason, both through ``returned_goods`` (fulfilment's ``restock_returns`` moves the stock ledger:
the areas meet in that table). Then the money or the replacement: a return queues its refund, due within
seven days of the receipt (第二十五条); an exchange becomes a replacement order that fulfilment ships like any
approved order, once per case.

A no-reason return that comes back damaged is not refunded automatically (第二十五条: goods returned in good
condition): the case waits for a person (``inspection_failed``).
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd
from sqlalchemy import Connection, select

from tasks.aftersales import store
from tasks.aftersales.refunds import queue_refunds
from tasks.aftersales.rules import refund_due_date, refund_route
from yidi.bulk import insert_rows, read_frame, reserve_ids
from yidi.lifecycle import transition_orders
from yidi.outbox import enqueue_customer_notices
from yidi.schema import order_lines, orders
from yidi.schema_aftersales import returned_goods
from yidi.settings import Settings
from yidi.workdays import BUSINESS_TZ

INSPECTIONS = ("good", "damaged")
DAMAGED_DISPOSITIONS = ("quarantine", "scrap")


class ReturnError(ValueError):
    """A receipt that cannot be recorded (unknown case, case not awaiting goods, bad inspection)."""


def receive_returns(conn: Connection, receipts: pd.DataFrame, settings: Settings, now: datetime,
                    *, actor: str | None = None) -> dict:  # fmt: skip
    """Record receipts (columns: case_no, inspection good|damaged, reason, waybill_no, disposition for damaged
    goods quarantine|scrap); returns counts. Raises ``ReturnError`` naming the bad rows (nothing recorded)."""
    policy = settings.aftersales
    all_cases = store.cases(conn, status=("awaiting_return", "return_arrived"))  # arrived or not: it is here
    merged = receipts.merge(all_cases, on="case_no", how="left", suffixes=("", "_case"))
    problems = [f"{c}: not awaiting returned goods" for c in merged.loc[merged["id"].isna(), "case_no"]]
    problems += [f"{c}: inspection {i!r} is not good or damaged"
                 for c, i in zip(merged["case_no"], merged["inspection"], strict=True) if i not in INSPECTIONS]
    if problems:
        raise ReturnError("; ".join(problems))
    for column in ("disposition", "reason", "waybill_no"):  # optional columns; blanks are None, never NaN
        merged[column] = [v if isinstance(v, str) and v.strip() else None
                          for v in merged.get(column, pd.Series(None, index=merged.index, dtype=object))]
    lines = store.case_lines(conn, merged["id"].astype(int).tolist())
    today = now.astimezone(BUSINESS_TZ).date()
    goods, refunds, updates, replacements, notices = [], [], [], [], []
    counts = {"restocked": 0, "quarantined": 0, "scrapped": 0, "refunds": 0, "replacements": 0, "held": 0}
    for case in merged.to_dict("records"):
        cid = int(case["id"])
        damaged = case["inspection"] == "damaged"
        disposition = "restock" if not damaged else (case["disposition"] or "quarantine")
        if disposition not in ("restock", *DAMAGED_DISPOSITIONS):
            raise ReturnError(f"{case['case_no']}: disposition {disposition!r} is not quarantine or scrap")
        counts[{"restock": "restocked", "quarantine": "quarantined", "scrap": "scrapped"}[disposition]] += 1
        for line in lines[lines["case_id"] == cid].to_dict("records"):
            goods.append({"case_id": cid, "order_id": int(case["order_id"]), "warehouse": policy.return_warehouse,
                          "item_code": line["item_code"], "quantity": float(line["quantity"]),
                          "disposition": disposition, "reason": case["reason"], "inspected_at": now})
        held = damaged and case["decision_rule"] == "NO_REASON_RETURN_7D"
        status = "inspection_failed" if held else ("refund_pending" if case["decision"] == "return" else "replaced")
        counts["held"] += int(held)
        updates.append({"id": cid, "status": status, "return_received_at": now, "inspection": case["inspection"],
                        "inspection_reason": case["reason"],
                        "return_waybill_no": case["waybill_no"] or case["return_waybill_no"],
                        "refund_due_date": refund_due_date(today, policy) if status == "refund_pending" else None})
        if status == "refund_pending":
            refunds.append({"case_id": cid, "order_id": int(case["order_id"]), "amount_fen": int(case["refund_fen"]),
                            "route": refund_route(_payment_method(conn, int(case["order_id"])), policy),
                            "due_date": refund_due_date(today, policy)})  # fmt: skip
        if status == "replaced":
            replacements.append(case)
        notices.append({"order_id": int(case["order_id"]), "template": "aftersales_goods_received",
                        "dedupe": f"aftersales:received_back:{cid}",
                        "context": {"case_no": case["case_no"], "inspection_text": INSPECTION_TEXT[status]}})
    insert_rows(conn, returned_goods, pd.DataFrame(goods), on_conflict=["case_id", "item_code"])
    store.update_cases(conn, updates, ["status", "return_received_at", "inspection", "inspection_reason",
                                       "return_waybill_no", "refund_due_date"], now)  # fmt: skip
    counts["refunds"] = queue_refunds(conn, refunds)
    counts["replacements"] = create_replacements(conn, replacements, lines, now, actor=actor)
    returned_orders = sorted({r["order_id"] for r in refunds})
    transition_orders(conn, returned_orders, "returned", reason="退货已收到并验收", actor=actor, skip_illegal=True)
    enqueue_customer_notices(conn, notices, policy.notice_media, settings.general.company_name)
    return counts


INSPECTION_TEXT = {
    "refund_pending": "商品已收到并验收，退款将在 7 日内原路退回。",
    "replaced": "商品已收到，换货商品将尽快发出，发货后通知您运单号。",
    "inspection_failed": "商品已收到，但验收发现商品不完好，客服将与您联系确认处理方式。",
}


def _payment_method(conn: Connection, order_id: int) -> str | None:
    return conn.execute(select(orders.c.payment_method).where(orders.c.id == order_id)).scalar()


def create_replacements(conn: Connection, cases: list[dict], lines: pd.DataFrame, now: datetime,
                        *, actor: str | None = None) -> int:  # fmt: skip
    """One approved replacement order per exchange case (channel ``aftersales``, the case number as its channel
    order id: a re-run finds it and makes none), at no charge, for fulfilment to allocate and ship."""
    if not cases:
        return 0
    originals = read_frame(conn, select(orders).where(orders.c.id.in_([int(c["order_id"]) for c in cases])))
    known = read_frame(conn, select(orders.c.channel_order_id).where(
        orders.c.channel == "aftersales", orders.c.channel_order_id.in_([c["case_no"] for c in cases])))
    todo = [c for c in cases if c["case_no"] not in set(known["channel_order_id"])]
    if not todo:
        return 0
    ids = reserve_ids(conn, orders, len(todo)).tolist()
    by_id = {int(o["id"]): o for o in originals.to_dict("records")}
    copied = ["customer_id", "customer_name", "customer_phone", "customer_email", "ship_province", "ship_city",
              "ship_district", "ship_detail", "ship_admin_code", "ship_postcode", "region"]
    new_orders, new_lines = [], []
    for oid, case in zip(ids, todo, strict=True):
        original = by_id[int(case["order_id"])]
        new_orders.append({"id": oid, "order_no": f"{original['order_no']}-X{int(case['id'])}", "channel": "aftersales",
                           "channel_order_id": case["case_no"], **{c: original[c] for c in copied},
                           "payment_method": "exchange", "payment_state": "paid", "order_time": now,
                           "received_at": now, "buyer_note": f"售后单 {case['case_no']} 换货", "state": "received"})
        for n, line in enumerate(lines[lines["case_id"] == int(case["id"])].to_dict("records"), start=1):
            new_lines.append({"order_id": oid, "line_no": n, "item_code": line["item_code"], "item_kind": "product",
                              "quantity": float(line["quantity"]), "unit_price_fen": 0, "line_total_fen": 0})
    insert_rows(conn, orders, pd.DataFrame(new_orders))
    insert_rows(conn, order_lines, pd.DataFrame(new_lines))
    store.update_cases(conn, [{"id": int(c["id"]), "replacement_order_id": oid} for oid, c in zip(ids, todo, strict=True)],
                       ["replacement_order_id"], now)  # fmt: skip
    transition_orders(conn, ids, "pending_review", reason="换货补发单", actor=actor)
    transition_orders(conn, ids, "approved", reason="售后换货补发，免审", actor=actor)
    return len(ids)
