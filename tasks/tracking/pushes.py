"""Kuaidi100 pushes (T2): subscribing shipments, landing verified pushes, applying them like polls.

A verified push is landed first (``tracking_push_receipts``, once per identical payload) and only then answered
with success, so an accepted push is never lost; it is applied at once through the same path as polling, and if
that fails the receipt stays ``landed`` and the next ``poll-carriers`` run applies it.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from datetime import datetime

import pandas as pd
from sqlalchemy import Connection, Engine

from connectors.kuaidi100 import PHONE_REQUIRED, ErrorKind, Kuaidi100Client, Kuaidi100Error, parse_result
from connectors.kuaidi100_push import Push
from tasks.tracking import store
from tasks.tracking.applying import BatchSummary, apply_outcomes
from tasks.tracking.polling import PollOutcome, destination
from yidi.bulk import frame_records
from yidi.settings import TrackingPolicy

log = logging.getLogger(__name__)
SUBSCRIPTION_AFTER_PUSH = {
    "polling": "active",
    "updateall": "active",
    "shutdown": "ended",
    "abort": "aborted",
}


def receive_push(engine: Engine, policy: TrackingPolicy, push: Push) -> str:
    """What the push receiver calls for each verified push: land it (its own transaction; an error here makes the
    receiver answer "failed", so Kuaidi100 pushes again), then apply it. Returns ``duplicate``, ``landed`` (kept,
    applied by the next polling run) or ``applied``."""
    with engine.begin() as conn:
        receipt = store.insert_push_receipt(conn, push.param, push.notice, push.received_at)
    if receipt is None:
        return "duplicate"
    try:
        with engine.begin() as conn:
            apply_landed_pushes(conn, push.received_at, policy, receipt_ids=[receipt])
    except Exception:  # noqa: BLE001 - landed; the next polling run applies it
        log.exception("push receipt %s landed but not applied yet", receipt)
        return "landed"
    return "applied"


def apply_landed_pushes(
    conn: Connection,
    now: datetime,
    policy: TrackingPolicy,
    *,
    receipt_ids: list[int] | None = None,
    actor: str = "carrier:kuaidi100-push",
) -> BatchSummary:
    """Apply landed pushes (oldest first) through the same path as polls."""
    summary = BatchSummary()
    for rec in frame_records(store.landed_pushes(conn, receipt_ids)):
        body = json.loads(rec["content"])
        last = body.get("lastResult") or {}
        try:
            result = parse_result(
                last, com_old=body.get("comOld") or None, com_new=body.get("comNew") or None
            )
        except Exception:  # noqa: BLE001 - an abort may carry no readable result
            result = None
        coms = [c for c in {rec["carrier"], body.get("comOld") or None, last.get("com")} if c]
        ship = store.shipment_for_waybill(conn, rec["waybill_no"], coms)
        if ship.empty:
            store.mark_push(
                conn, rec["id"], now, status="unmatched", error="no shipment with this waybill and carrier"
            )
            summary.outcomes["unmatched"] += 1
            continue
        sid = int(ship["shipment_id"].iloc[0])
        if result is not None and result.checkpoints:
            outcome = PollOutcome(sid, "ok", result=result)
            summary.merge(apply_outcomes(conn, ship, [outcome], now, policy, source="push", actor=actor))
        store.upsert_shipment_state(
            conn,
            pd.DataFrame([{"shipment_id": sid, "last_push_at": now,
                           "subscription_status": SUBSCRIPTION_AFTER_PUSH[body.get("status")], "updated_at": now}]),
        )  # fmt: skip
        store.mark_push(conn, rec["id"], now, status="applied", shipment_id=sid)
        summary.outcomes["applied"] += 1
    return summary


def subscribe_shipments(
    conn: Connection, client: Kuaidi100Client, policy: TrackingPolicy, now: datetime, *, limit: int = 1000
) -> Counter:
    """Ask Kuaidi100 to push updates for active shipments not subscribed yet."""
    counts: Counter = Counter()
    rows = []
    for rec in frame_records(store.unsubscribed_shipments(conn, limit)):
        phone = rec["phone"] if rec["carrier"] in PHONE_REQUIRED else None
        try:
            outcome = client.subscribe(rec["carrier"], rec["waybill_no"], policy.callback_url, phone=phone,
                                       to=destination(rec))  # fmt: skip
            status = "active" if outcome.accepted else "refused"
        except Kuaidi100Error as exc:
            if exc.kind is ErrorKind.AUTH:
                counts["auth_failed"] += 1
                break
            status = None  # try again next cycle
        counts[status or "failed"] += 1
        if status:
            rows.append({"shipment_id": int(rec["shipment_id"]), "subscription_status": status, "subscribed_at": now,
                         "updated_at": now})  # fmt: skip
    if rows:
        store.upsert_shipment_state(conn, pd.DataFrame(rows))
    return counts
