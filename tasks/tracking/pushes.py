"""Kuaidi100 pushes (T2): subscribing shipments, landing verified pushes, applying them like polls.

A verified push is landed first (``tracking_push_receipts``, once per identical payload) in one short transaction,
retried while the database is busy (SQLite "database is locked", a PostgreSQL serialization failure), and only
then answered with success, so an acknowledged push is never lost. Landed pushes are applied afterwards in
batches (``apply_landed_batch``: the receiver calls it while pushes arrive) through the same path as polling;
whatever is still ``landed`` is applied by the next ``poll-carriers`` run. A push that fails to apply
``APPLY_ATTEMPTS`` times is marked ``failed`` with its reason and no longer holds up the pushes after it (kept for a
person: ``yidi tracking callbacks`` lists them when it starts).
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

import pandas as pd
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError

from connectors.kuaidi100 import PHONE_REQUIRED, ErrorKind, Kuaidi100Client, Kuaidi100Error, parse_result
from connectors.kuaidi100_push import Push
from tasks.tracking import store
from tasks.tracking.applying import BatchSummary, apply_outcomes
from tasks.tracking.polling import PollOutcome, destination
from yidi.bulk import frame_records
from yidi.tracking_policy import TrackingPolicy

log = logging.getLogger(__name__)
T = TypeVar("T")
SUBSCRIPTION_AFTER_PUSH = {
    "polling": "active",
    "updateall": "active",
    "shutdown": "ended",
    "abort": "aborted",
}


LAND_ATTEMPTS = 8  # a busy database is retried this often (about 5 s in all) before the push is answered "failed"
APPLY_BATCH = 500  # landed pushes applied per transaction
APPLY_ATTEMPTS = 3  # a push that fails to apply this often is marked failed (it would block those after it)


def _busy(exc: OperationalError) -> bool:
    """A database that is busy right now (worth another try), not one that is broken."""
    text = str(exc.orig).lower()
    code = getattr(exc.orig, "sqlstate", None)
    return "locked" in text or "busy" in text or code in {"40001", "40P01", "55P03"}


def with_busy_retry(work: Callable[[], T], attempts: int = LAND_ATTEMPTS, pause: Callable[[float], None] = time.sleep
                    ) -> T:
    """``work()`` (one transaction), again after a short growing pause while the database reports itself busy."""
    for attempt in range(attempts):
        try:
            return work()
        except OperationalError as exc:
            if attempt == attempts - 1 or not _busy(exc):
                raise
            pause(min(0.02 * 2**attempt, 1.0) * (0.5 + random.random()))  # noqa: S311 - jitter, not security
    raise AssertionError("unreachable")


def receive_push(engine: Engine, policy: TrackingPolicy, push: Push) -> str:
    """What the push receiver calls for each verified push: land it in one short transaction (retried while the
    database is busy; an error after that makes the receiver answer "failed", so Kuaidi100 pushes again).
    Returns ``landed`` (kept; ``apply_landed_batch`` applies it) or ``duplicate``."""

    def land() -> int | None:
        with engine.begin() as conn:
            return store.insert_push_receipt(conn, push.param, push.notice, push.received_at)

    return "duplicate" if with_busy_retry(land) is None else "landed"


def apply_landed_batch(engine: Engine, policy: TrackingPolicy, now: datetime, limit: int = APPLY_BATCH) -> int:
    """Apply up to ``limit`` landed pushes (oldest first) in one transaction; returns how many were handled
    (applied, unmatched or given up on). If the batch fails, its pushes are applied one by one so the one that
    fails is found, counted against ``APPLY_ATTEMPTS`` and does not hold up the others."""

    def apply(receipt_ids: list[int] | None = None) -> int:
        with engine.begin() as conn:
            summary = apply_landed_pushes(conn, now, policy, receipt_ids=receipt_ids, limit=limit)
        return sum(summary.outcomes[k] for k in ("applied", "unmatched", "failed"))

    try:
        return with_busy_retry(apply)
    except Exception:  # noqa: BLE001 - any failure: find the push that causes it
        log.warning("a batch of landed pushes failed to apply; applying them one by one", exc_info=True)
    with engine.connect() as conn:
        ids = [int(i) for i in store.landed_pushes(conn, limit=limit)["id"]]
    handled = 0
    for receipt_id in ids:
        try:
            handled += with_busy_retry(lambda rid=receipt_id: apply([rid]))
        except Exception as exc:  # noqa: BLE001 - kept with its reason, tried again up to APPLY_ATTEMPTS
            handled += _failed_try(engine, receipt_id, f"{type(exc).__name__}: {exc}", now) == "failed"
    return handled


def _failed_try(engine: Engine, receipt_id: int, error: str, now: datetime) -> str:
    with engine.begin() as conn:
        status = store.record_push_failure(conn, receipt_id, error, APPLY_ATTEMPTS, now)
    if status == "failed":
        log.warning("push receipt %s failed to apply %d times, marked failed: %s", receipt_id, APPLY_ATTEMPTS, error)
    return status


def apply_landed_pushes(
    conn: Connection,
    now: datetime,
    policy: TrackingPolicy,
    *,
    receipt_ids: list[int] | None = None,
    actor: str = "carrier:kuaidi100-push",
    limit: int | None = None,
) -> BatchSummary:
    """Apply landed pushes (oldest first, at most ``limit``) through the same path as polls, as one batch: one
    ``apply_outcomes`` for all of them. A second push for a shipment already in this batch waits for the next."""
    summary = BatchSummary()
    ship_frames, outcomes, state_rows, marks, seen = [], [], [], [], set()
    landed = []
    for rec in frame_records(store.landed_pushes(conn, receipt_ids, limit=limit)):
        try:  # a push that cannot be read is counted against APPLY_ATTEMPTS here, not failing the batch
            body = json.loads(rec["content"])
            last = body.get("lastResult") or {}
            subscription = SUBSCRIPTION_AFTER_PUSH[body.get("status")]
        except Exception as exc:  # noqa: BLE001 - kept with its reason for a person
            status = store.record_push_failure(conn, int(rec["id"]), f"unreadable push: {type(exc).__name__}: {exc}",
                                               APPLY_ATTEMPTS, now)  # fmt: skip
            summary.outcomes["failed"] += status == "failed"
            continue
        landed.append((rec, body, last, subscription))
    # One shipment lookup for the whole batch (not one query per push).
    by_waybill = {num: group for num, group in
                  store.shipments_for_waybills(conn, [rec["waybill_no"] for rec, *_ in landed]).groupby("waybill_no")}
    for rec, body, last, subscription in landed:
        try:
            result = parse_result(
                last, com_old=body.get("comOld") or None, com_new=body.get("comNew") or None
            )
        except Exception:  # noqa: BLE001 - an abort may carry no readable result
            result = None
        coms = [c for c in {rec["carrier"], body.get("comOld") or None, last.get("com")} if c]
        ship = by_waybill.get(rec["waybill_no"])
        ship = ship[ship["carrier"].isin(coms)] if ship is not None else None
        if ship is None or ship.empty:
            marks.append({"receipt_id": int(rec["id"]), "status": "unmatched", "shipment_id": None,
                          "error": "no shipment with this waybill and carrier"})  # fmt: skip
            summary.outcomes["unmatched"] += 1
            continue
        sid = int(ship["shipment_id"].iloc[0])
        if sid in seen:
            continue
        seen.add(sid)
        ship_frames.append(ship.iloc[:1].reset_index(drop=True))
        if result is not None and result.checkpoints:
            outcomes.append(PollOutcome(sid, "ok", result=result))
        state_rows.append({"shipment_id": sid, "last_push_at": now, "subscription_status": subscription,
                           "updated_at": now})  # fmt: skip
        marks.append({"receipt_id": int(rec["id"]), "status": "applied", "shipment_id": sid, "error": None})
        summary.outcomes["applied"] += 1
    if outcomes:
        frame = pd.concat(ship_frames, ignore_index=True)
        summary.merge(apply_outcomes(conn, frame, outcomes, now, policy, source="push", actor=actor))
    if state_rows:
        store.upsert_shipment_state(conn, pd.DataFrame(state_rows))
    store.mark_pushes(conn, marks, now)
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
