"""Tracking the return parcel (A3): every case waiting for its goods whose return waybill the carrier issued is
asked about on Kuaidi100 (the same 实时快递查询 the outbound tracking uses, ``connectors.kuaidi100``), at most every
``[aftersales] return_tracking_interval_minutes``. The parcel's state and newest event are kept on the case; when
the carrier reports it signed for (state 3 签收) at the return warehouse the case moves to ``return_arrived``: the
warehouse's inspection list (``yidi aftersales list --status return_arrived``, then ``yidi aftersales receive``).

The client is passed in (built by the flow from ``[tracking]``, the one Kuaidi100 account). One answer per
waybill, each failure that waybill's own; a refused account (signature, key) stops the round at once.

Pushes: with ``[tracking] push_enabled`` a return waybill is subscribed when it is asked about, with the tracking
area's callback URL, until Kuaidi100 accepts (``return_subscribed_at``; its 501 重复订阅 counts as accepted): a
subscription that failed (Kuaidi100 down, refused) is asked for again on the next due cycle, and an accepted
one never again. Kuaidi100 then pushes it to ``yidi tracking callbacks``, which lands every push in
``tracking_push_receipts`` (verified, kept raw) and marks one that is no outbound shipment ``unmatched``;
``apply_return_pushes`` reads the pushes of open return waybills from there (the newest since the case was last
updated) and applies them exactly as a poll's answer.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pandas as pd
from sqlalchemy import Connection, or_, select

from connectors.kuaidi100 import PHONE_REQUIRED, ErrorKind, Kuaidi100Error, TrackingResult, parse_result
from tasks.aftersales import store
from yidi.bulk import read_frame
from yidi.schema import orders
from yidi.schema_aftersales import aftersales_cases
from yidi.schema_tracking import tracking_push_receipts
from yidi.settings import Settings

# Kuaidi100 ``state`` (resultv2): 0 在途 1 揽收 2 疑难 3 签收 4 退签 5 派件 6 退回 7 转投 14 拒签.
PARCEL_STATE = {0: "in_transit", 1: "collected", 2: "exception", 3: "arrived", 4: "exception", 5: "in_transit",
                6: "exception", 7: "in_transit", 14: "exception"}  # fmt: skip


def parcel_state(result: TrackingResult) -> str:
    """Our word for the carrier's state (unknown states count as in transit: the parcel is somewhere)."""
    if result.state is None:
        return "in_transit"
    return PARCEL_STATE.get(int(result.state), PARCEL_STATE.get(int(str(result.state)[:1]), "in_transit"))


def track_returns(conn: Connection, client, settings: Settings, now: datetime) -> dict:
    """Ask about each due return parcel; returns counts (asked, arrived, no_scan_yet, failed)."""
    policy = settings.aftersales
    due_before = now - timedelta(minutes=policy.return_tracking_interval_minutes)
    due = read_frame(conn, select(
        aftersales_cases.c.id, aftersales_cases.c.case_no, aftersales_cases.c.return_carrier,
        aftersales_cases.c.return_waybill_no, aftersales_cases.c.return_tracked_at,
        aftersales_cases.c.return_subscribed_at, orders.c.customer_phone)
        .join(orders, orders.c.id == aftersales_cases.c.order_id)
        .where(aftersales_cases.c.status == "awaiting_return", aftersales_cases.c.return_waybill_no.is_not(None),
               or_(aftersales_cases.c.return_tracked_at.is_(None), aftersales_cases.c.return_tracked_at <= due_before))
        .order_by(aftersales_cases.c.id))  # fmt: skip
    counts = {"asked": 0, "arrived": 0, "no_scan_yet": 0, "failed": 0}
    pushes = settings.tracking.push_enabled
    if pushes:
        counts["subscribed"] = 0
    updates, tried, subscribed = [], [], []  # answered parcels; asked without an answer; subscriptions accepted
    for case in due.to_dict("records"):
        carrier = case["return_carrier"] or policy.return_carrier
        # The customer sends the parcel: their number is the one the carrier checks (SF, ZTO).
        phone = case["customer_phone"] if carrier in PHONE_REQUIRED else None
        counts["asked"] += 1
        if pushes and _missing(case.get("return_subscribed_at")):
            try:  # not accepted: polling goes on all the same, and the next due cycle asks again
                if client.subscribe(carrier, case["return_waybill_no"], settings.tracking.callback_url,
                                    phone=phone).accepted:  # fmt: skip
                    counts["subscribed"] += 1
                    subscribed.append({"id": int(case["id"]), "return_subscribed_at": now})
            except Kuaidi100Error as exc:
                if exc.kind == ErrorKind.AUTH:
                    counts["failed"] += len(due) - counts["asked"] + 1
                    break  # every further request would be refused the same way
        try:
            result = client.query(carrier, case["return_waybill_no"], phone)
        except Kuaidi100Error as exc:
            if exc.kind == ErrorKind.AUTH:
                counts["failed"] += len(due) - counts["asked"] + 1
                break  # every further request would be refused the same way
            counts["no_scan_yet" if exc.kind == ErrorKind.NO_RESULT else "failed"] += 1
            tried.append({"id": int(case["id"]), "return_tracked_at": now})
            continue
        updates.append(_case_update(int(case["id"]), result, now))
        counts["arrived"] += updates[-1]["status"] == "return_arrived"
    store.update_cases(conn, subscribed, ["return_subscribed_at"], now)
    store.update_cases(conn, tried, ["return_tracked_at"], now)
    store.update_cases(conn, updates, UPDATED, now)
    return counts


UPDATED = ["status", "return_tracked_at", "return_parcel_state", "return_last_event", "return_arrived_at"]


def _missing(value) -> bool:
    return value is None or pd.isna(value)


def _case_update(case_id: int, result: TrackingResult, now: datetime) -> dict:
    """The case's columns after an answer (a poll's or a push's): state, newest event, arrival."""
    newest = result.newest()
    state = parcel_state(result)
    arrived = state == "arrived"
    return {"id": case_id, "status": "return_arrived" if arrived else "awaiting_return", "return_tracked_at": now,
            "return_parcel_state": state,
            "return_last_event": f"{newest.time_text} {newest.context}"[:500] if newest else None,
            "return_arrived_at": (newest.time if newest else now) if arrived else None}  # fmt: skip


def apply_return_pushes(conn: Connection, now: datetime) -> dict:
    """Apply the newest Kuaidi100 push of each open return waybill received since its case was last updated;
    returns counts (applied, arrived). The pushes stay in ``tracking_push_receipts`` as the tracking area left
    them (read, never changed here)."""
    found = read_frame(conn, select(
        aftersales_cases.c.id, aftersales_cases.c.return_waybill_no, tracking_push_receipts.c.content,
        tracking_push_receipts.c.received_at)
        .join(tracking_push_receipts, tracking_push_receipts.c.waybill_no == aftersales_cases.c.return_waybill_no)
        .where(aftersales_cases.c.status == "awaiting_return",
               or_(aftersales_cases.c.return_tracked_at.is_(None),
                   tracking_push_receipts.c.received_at > aftersales_cases.c.return_tracked_at))
        .order_by(aftersales_cases.c.id, tracking_push_receipts.c.received_at, tracking_push_receipts.c.id))  # fmt: skip
    counts = {"applied": 0, "arrived": 0}
    updates = []
    for push in found.groupby("id").tail(1).to_dict("records"):  # the newest push says where the parcel is now
        try:
            body = json.loads(push["content"])
            result = parse_result(body.get("lastResult") or {}, com_old=body.get("comOld") or None,
                                  com_new=body.get("comNew") or None)  # fmt: skip
        except Exception:  # noqa: BLE001 - an unreadable push is the tracking area's to report; polling goes on
            continue
        if not result.checkpoints:
            continue
        updates.append(_case_update(int(push["id"]), result, now))
        counts["applied"] += 1
        counts["arrived"] += updates[-1]["status"] == "return_arrived"
    store.update_cases(conn, updates, UPDATED, now)
    return counts
