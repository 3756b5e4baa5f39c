"""Interception (拦截, issue 18, item 5): stopping a parcel whose order should no longer arrive.

Why tracking owns it: from the moment a waybill exists the parcel is tracking's (it holds the Kuaidi100 account,
polls the route and moves orders by it), and an interception's outcome is a change of route: the carrier
turns the parcel back (退回), the sender signs for it (退签), or it is delivered anyway (签收).

Three steps, each batch-wise:

1. ``find_interceptions`` (one transaction): a parcel with a waybill, not delivered or back yet, whose order was
   cancelled (``orders.state``, or the source's cancelled status), refunded before delivery (the source's
   refunded status, a refund request from after-sales, or the payment state) or changed at the source after the
   parcel left (a ``change`` event after ``shipped_at`` touching more than the platform's status) gets one
   ``carrier_interceptions`` row (unique per shipment: re-runs add nothing).
2. ``send_interceptions``: each pending row is asked of the carrier (``connectors.kuaidi100_intercept``) outside
   any transaction; answers are recorded per chunk in one transaction, only while the row is still pending.
   Accepted → ``requested`` and the customer is told; too late → ``too_late`` and the customer is told; refused →
   a person looks; a transient failure is asked again next run, up to ``max_attempts``.
3. ``settle_interceptions`` (one transaction): the shipment's tracked status gives the outcome — ``returning``
   (return in transit: an event), ``returned`` (back at the warehouse: fulfilment restocks the goods from
   ``carrier_interceptions``; a cancelled or refunded order is closed, a changed one waits for a person; the
   customer is told), ``delivered`` (delivered anyway: the order goes to after-sales).

The parcel's return is expected, so tracking opens no "returned" incident for an intercepted shipment
(``incidents.open_incidents``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime

import pandas as pd
from sqlalchemy import Connection, Engine, bindparam, exists, select, update

from connectors.kuaidi100_intercept import InterceptAnswer
from connectors.taobao import CANCELLED_STATUSES as TOP_CANCELLED
from yidi.bulk import chunked, insert_rows, json_text, read_frame, read_in, utc_now
from yidi.lifecycle import OrderState, current_actor, record_events, transition_orders
from yidi.outbox import enqueue_customer_notices
from yidi.schema import order_events, orders, shipments
from yidi.schema_aftersales import refund_requests
from yidi.schema_tracking import carrier_interceptions
from yidi.settings import Settings, get_settings

S = OrderState
CANCELLED_SOURCE = sorted(TOP_CANCELLED | {"cancelled", "trash"})  # TOP and WooCommerce statuses
REFUNDED_SOURCE = ["refunded"]  # WooCommerce (a TOP trade fully refunded is closed: cancelled above)
NOT_A_CHANGE = {"source_status", "source_extra", "source_modified_at", "content_hash"}  # the platform's progress
OPEN_STATUSES = ["info_received", "picked_up", "in_transit", "out_for_delivery", "delivery_failed", "exception"]
WHY = {"cancelled": "已取消", "refunded": "已退款", "changed": "信息已变更"}


@dataclass
class InterceptionResult:
    found: int = 0
    requested: int = 0
    too_late: int = 0
    refused: int = 0
    failed: int = 0  # asked again next run
    returning: int = 0
    returned: int = 0
    delivered: int = 0  # delivered anyway: after-sales
    rows: list[dict] = field(default_factory=list)  # for the artifact: order number, waybill, trigger, status

    def as_dict(self) -> dict:
        return asdict(self)


# --- 1. which parcels to stop ------------------------------------------------------------------------------------


def trigger_of(row: dict) -> str | None:
    """Pure: why a shipped parcel's order should not arrive (cancelled > refunded > changed), or None."""
    if row["state"] == S.CANCELLED or row["source_status"] in CANCELLED_SOURCE:
        return "cancelled"
    if row["source_status"] in REFUNDED_SOURCE or row["payment_state"] == "refunded" or row["refund_requested"]:
        return "refunded"
    for details in row.get("changes") or []:
        try:
            changed = set(json.loads(details) if isinstance(details, str) else details or {})
        except ValueError:
            changed = {"details"}
        if changed - NOT_A_CHANGE:
            return "changed"
    return None


def find_interceptions(engine: Engine, now: datetime | None = None) -> int:
    """Record an interception to ask for each parcel whose order should no longer arrive; returns how many new."""
    now = now or utc_now()
    s, o, ci, rr = shipments.c, orders.c, carrier_interceptions.c, refund_requests.c
    with engine.begin() as conn:
        cand = read_frame(conn, select(
            s.id.label("shipment_id"), s.order_id, s.carrier, s.waybill_no, s.shipped_at, o.order_no, o.state,
            o.source_status, o.payment_state,
            exists().where(rr.order_id == s.order_id).label("refund_requested"),
        ).join(orders, o.id == s.order_id)
         .where(s.waybill_no.is_not(None), s.status.in_(OPEN_STATUSES),
                ~exists().where(ci.shipment_id == s.id)))  # fmt: skip
        if cand.empty:
            return 0
        changes = read_in(conn, lambda ids: select(order_events.c.order_id, order_events.c.occurred_at,
                                                   order_events.c.details)
                          .where(order_events.c.order_id.in_(ids), order_events.c.kind == "change"),
                          sorted({int(i) for i in cand["order_id"]}))  # fmt: skip
        after = cand[["shipment_id", "order_id", "shipped_at"]].merge(changes, on="order_id")
        after = after[pd.to_datetime(after["occurred_at"], utc=True) > pd.to_datetime(after["shipped_at"], utc=True)]
        cand["changes"] = cand["shipment_id"].map(after.groupby("shipment_id")["details"].apply(list)).apply(
            lambda v: v if isinstance(v, list) else [])
        cand["trigger"] = [trigger_of(r) for r in cand.to_dict("records")]
        todo = cand[cand["trigger"].notna()]
        rows = pd.DataFrame({
            "shipment_id": todo["shipment_id"].astype(int), "order_id": todo["order_id"].astype(int),
            "carrier": todo["carrier"], "waybill_no": todo["waybill_no"], "trigger": todo["trigger"],
            "reason": [f"order {n} {t} after its waybill {w} existed" for n, t, w in
                       zip(todo["order_no"], todo["trigger"], todo["waybill_no"], strict=True)],
            "status": "pending", "created_at": now, "updated_at": now,
        })  # fmt: skip
        return insert_rows(conn, carrier_interceptions, rows, on_conflict=["shipment_id"])


# --- 2. asking the carrier -----------------------------------------------------------------------------------------


def _pending(conn: Connection, max_attempts: int) -> pd.DataFrame:
    ci, s = carrier_interceptions.c, shipments.c
    return read_frame(conn, select(ci.id, ci.shipment_id, ci.order_id, ci.carrier, ci.waybill_no, ci.trigger,
                                   ci.attempts, s.shipment_no)
                      .join(shipments, s.id == ci.shipment_id)
                      .where(ci.status == "pending", ci.attempts < max_attempts).order_by(ci.id))  # fmt: skip


def send_interceptions(engine: Engine, client, *, settings: Settings | None = None, now: datetime | None = None,
                       actor: str | None = None, chunk_size: int = 200) -> InterceptionResult:
    """Ask the carrier to stop every pending parcel; record each answer once (see the module docstring)."""
    settings = settings or get_settings()
    policy, now, actor = settings.tracking.interception, now or utc_now(), actor or current_actor()
    result = InterceptionResult()
    with engine.connect() as conn:
        pending = _pending(conn, policy.max_attempts)
    for chunk in chunked(pending.to_dict("records"), chunk_size):
        answers = [(r, client.request(r["carrier"], r["waybill_no"], intercept_type=policy.intercept_type,
                                      reason=f"订单{WHY[r['trigger']]}", order_ref=r["shipment_no"]))
                   for r in chunk]  # fmt: skip
        with engine.begin() as conn:
            _record_answers(conn, answers, settings, now, actor, result)
    return result


def _record_answers(conn: Connection, answers: list[tuple[dict, InterceptAnswer]], settings: Settings,
                    now: datetime, actor: str, result: InterceptionResult) -> None:
    policy = settings.tracking.interception
    ci = carrier_interceptions.c
    updates, events, notices = [], [], []
    for row, answer in answers:
        attempts = int(row["attempts"] or 0) + 1
        status = {"accepted": "requested", "too_late": "too_late", "refused": "refused"}.get(answer.status, "pending")
        error = None if answer.status == "accepted" else f"{answer.code or ''} {answer.message}".strip()
        if status == "pending" and attempts >= policy.max_attempts:
            status, error = "refused", f"gave up after {attempts} attempts: {error}"
        updates.append({"cid": int(row["id"]), "st": status, "att": attempts, "err": error, "task": answer.task_id,
                        "ans": json_text(answer.answer) if answer.answer else None,
                        "req": now if status == "requested" else None})  # fmt: skip
        counter = {"requested": "requested", "too_late": "too_late", "refused": "refused"}.get(status, "failed")
        setattr(result, counter, getattr(result, counter) + 1)
        result.rows.append({"waybill_no": row["waybill_no"], "shipment_no": row["shipment_no"],
                            "trigger": row["trigger"], "status": status})  # fmt: skip
        if status == "pending":
            continue
        said = {"requested": "the carrier accepted the interception (拦截已受理)",
                "too_late": "the carrier can no longer stop it (out for delivery or delivered)",
                "refused": f"the carrier refused the interception request: {error}"}[status]
        events.append({"order_id": int(row["order_id"]), "kind": "interception",
                       "reason": f"parcel {row['shipment_no']} waybill {row['waybill_no']}: {said}",
                       "details": {"trigger": row["trigger"], "task_id": answer.task_id, "code": answer.code}})
        if status in ("requested", "too_late"):
            notices.append({"order_id": int(row["order_id"]), "template": f"interception_{status}",
                            "dedupe": f"interception-{status}:{row['shipment_no']}",
                            "context": {"carrier_name": settings.channels.carrier_names.get(row["carrier"], row["carrier"]),
                                        "waybill_no": row["waybill_no"], "why": WHY[row["trigger"]]}})  # fmt: skip
    conn.execute(update(carrier_interceptions).where(ci.id == bindparam("cid"), ci.status == "pending").values(
        status=bindparam("st"), attempts=bindparam("att"), last_error=bindparam("err"), task_id=bindparam("task"),
        answer=bindparam("ans"), requested_at=bindparam("req"), updated_at=now), updates)  # fmt: skip
    if events:
        record_events(conn, pd.DataFrame(events).assign(occurred_at=now), actor=actor)
    enqueue_customer_notices(conn, notices, policy.notice_media, settings.general.company_name)


# --- 3. what became of the parcel ---------------------------------------------------------------------------------


def settle_interceptions(engine: Engine, *, settings: Settings | None = None, now: datetime | None = None,
                         actor: str | None = None) -> InterceptionResult:
    """Read each asked-for parcel's tracked status and move its order (see the module docstring)."""
    settings = settings or get_settings()
    now, actor = now or utc_now(), actor or current_actor()
    result = InterceptionResult()
    ci, s = carrier_interceptions.c, shipments.c
    with engine.begin() as conn:
        rows = read_frame(conn, select(ci.id, ci.order_id, ci.carrier, ci.waybill_no, ci.trigger, ci.status,
                                       ci.outcome, s.status.label("tracked"), s.shipment_no)
                          .join(shipments, s.id == ci.shipment_id)
                          .where(ci.status.in_(["requested", "too_late"]),
                                 (ci.outcome.is_(None)) | (ci.outcome == "returning"),
                                 s.status.in_(["returning", "returned", "delivered"])))  # fmt: skip
        rows = rows[rows["tracked"] != rows["outcome"].fillna("")]
        if rows.empty:
            return result
        conn.execute(update(carrier_interceptions).where(ci.id == bindparam("cid"))
                     .values(outcome=bindparam("out"), outcome_at=now, updated_at=now),
                     [{"cid": int(i), "out": t} for i, t in zip(rows["id"], rows["tracked"], strict=True)])  # fmt: skip
        said = {"returning": "intercepted: the parcel is on its way back (return in transit)",
                "returned": "intercepted: the parcel is back at the warehouse",
                "delivered": "delivered before the interception took effect: after-sales"}
        record_events(conn, pd.DataFrame({
            "order_id": rows["order_id"].astype(int), "kind": "interception", "occurred_at": now,
            "reason": [f"parcel {n} waybill {w}: {said[t]}" for n, w, t in
                       zip(rows["shipment_no"], rows["waybill_no"], rows["tracked"], strict=True)],
        }), actor=actor)  # fmt: skip
        for outcome in ("returning", "returned", "delivered"):
            setattr(result, outcome, int((rows["tracked"] == outcome).sum()))
        back = rows[rows["tracked"] == "returned"]
        home = _all_parcels_back(conn, back["order_id"].astype(int).tolist())
        if home:  # the lifecycle's way back: an exception (the interception), then returned
            for target in (S.EXCEPTION, S.RETURNED):
                transition_orders(conn, home, target, actor=actor, skip_illegal=True,
                                  reason="parcel intercepted and back at the warehouse")
        closing = sorted({int(o) for o, t in zip(back["order_id"], back["trigger"], strict=True)
                          if t != "changed" and int(o) in home})  # fmt: skip
        if closing:  # nothing is left to deliver or bill
            transition_orders(conn, closing, S.CLOSED, actor=actor, skip_illegal=True,
                              reason="cancelled or refunded before delivery: parcel intercepted, goods back in stock")
        delivered = sorted({int(o) for o in rows.loc[rows["tracked"] == "delivered", "order_id"]})
        if delivered:
            transition_orders(conn, delivered, S.AFTER_SALES, actor=actor, skip_illegal=True,
                              reason="delivered although the order was cancelled, refunded or changed: after-sales")
        names = settings.channels.carrier_names
        enqueue_customer_notices(conn, [
            {"order_id": int(r["order_id"]), "template": "interception_returned",
             "dedupe": f"interception-returned:{r['shipment_no']}",
             "context": {"carrier_name": names.get(r["carrier"], r["carrier"]), "waybill_no": r["waybill_no"],
                         "next_step": "我们将为您办理取消和退款。" if r["trigger"] != "changed"
                         else "我们将按您变更后的订单重新为您安排发货。"}}
            for r in back.to_dict("records")], settings.tracking.interception.notice_media,
            settings.general.company_name)  # fmt: skip
    return result


def _all_parcels_back(conn: Connection, order_ids: list[int]) -> list[int]:
    """Those of ``order_ids`` every parcel of which is back at the warehouse."""
    if not order_ids:
        return []
    s = shipments.c
    frame = read_in(conn, lambda ids: select(s.order_id, s.status).where(s.order_id.in_(ids)), sorted(set(order_ids)))
    back = frame.groupby("order_id")["status"].apply(lambda st: bool((st == "returned").all()))
    return sorted(int(o) for o, ok in back.items() if ok)


def intercepted_shipments(conn: Connection, shipment_ids: list[int]) -> set[int]:
    """Shipments whose return was asked for (their return is expected, not an incident)."""
    if not shipment_ids:
        return set()
    ci = carrier_interceptions.c
    frame = read_in(conn, lambda ids: select(ci.shipment_id).where(ci.shipment_id.in_(ids), ci.status == "requested"),
                    sorted({int(i) for i in shipment_ids}))  # fmt: skip
    return {int(i) for i in frame["shipment_id"]} if len(frame) else set()
