"""Tracking the return parcel (A3): every case waiting for its goods whose return waybill the carrier issued is
asked about on Kuaidi100 (the same 实时快递查询 the outbound tracking uses, ``connectors.kuaidi100``), at most every
``[aftersales] return_tracking_interval_minutes``. The parcel's state and newest event are kept on the case; when
the carrier reports it signed for (state 3 签收) at the return warehouse the case moves to ``return_arrived``: the
warehouse's inspection list (``yidi aftersales list --status return_arrived``, then ``yidi aftersales receive``).

The client is passed in (built by the flow from ``[tracking]``, the one Kuaidi100 account). One answer per
waybill, each failure that waybill's own; a refused account (signature, key) stops the round at once.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, or_, select

from connectors.kuaidi100 import PHONE_REQUIRED, ErrorKind, Kuaidi100Error, TrackingResult
from tasks.aftersales import store
from yidi.bulk import read_frame
from yidi.schema import orders
from yidi.schema_aftersales import aftersales_cases
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
        aftersales_cases.c.return_waybill_no, orders.c.customer_phone)
        .join(orders, orders.c.id == aftersales_cases.c.order_id)
        .where(aftersales_cases.c.status == "awaiting_return", aftersales_cases.c.return_waybill_no.is_not(None),
               or_(aftersales_cases.c.return_tracked_at.is_(None), aftersales_cases.c.return_tracked_at <= due_before))
        .order_by(aftersales_cases.c.id))  # fmt: skip
    counts = {"asked": 0, "arrived": 0, "no_scan_yet": 0, "failed": 0}
    updates, tried = [], []  # answered parcels; parcels asked without an answer (their last state stays)
    for case in due.to_dict("records"):
        carrier = case["return_carrier"] or policy.return_carrier
        # The customer sends the parcel: their number is the one the carrier checks (SF, ZTO).
        phone = case["customer_phone"] if carrier in PHONE_REQUIRED else None
        counts["asked"] += 1
        row = {"id": int(case["id"]), "status": "awaiting_return", "return_tracked_at": now,
               "return_parcel_state": None, "return_last_event": None, "return_arrived_at": None}  # fmt: skip
        try:
            result = client.query(carrier, case["return_waybill_no"], phone)
        except Kuaidi100Error as exc:
            if exc.kind == ErrorKind.AUTH:
                counts["failed"] += len(due) - counts["asked"] + 1
                break  # every further request would be refused the same way
            counts["no_scan_yet" if exc.kind == ErrorKind.NO_RESULT else "failed"] += 1
            tried.append({"id": row["id"], "return_tracked_at": now})
            continue
        newest = result.newest()
        row["return_parcel_state"] = parcel_state(result)
        row["return_last_event"] = f"{newest.time_text} {newest.context}"[:500] if newest else None
        if row["return_parcel_state"] == "arrived":
            counts["arrived"] += 1
            row["status"], row["return_arrived_at"] = "return_arrived", newest.time if newest else now
        updates.append(row)
    store.update_cases(conn, tried, ["return_tracked_at"], now)
    store.update_cases(conn, updates, ["status", "return_tracked_at", "return_parcel_state", "return_last_event",
                                       "return_arrived_at"], now)  # fmt: skip
    return counts
