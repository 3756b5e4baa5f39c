"""Customer decisions for short items (F3): wait for everything, ship what is there, or cancel.

The allocation run offers the choice (``offer_decisions``, inside its transaction) when an order cannot reach the
customer by the promised date; staff record the answer (``record_customer_decision``, ``yidi fulfilment
decide``); a cancel releases everything fulfilment holds for the order (``cancel_fulfilment``).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
from sqlalchemy import Connection, insert, select, update

from tasks.fulfilment.stock import apply_movements
from yidi.bulk import insert_rows, json_text, read_frame, utc_now
from yidi.lifecycle import OrderState, current_actor, record_events, transition_orders
from yidi.outbox import enqueue_customer_notices
from yidi.schema import orders
from yidi.schema_fulfilment import (
    allocations,
    backorders,
    customer_decisions,
    production_requests,
    purchase_requests,
    shipment_requests,
)
from yidi.settings import Settings, get_settings, province_short_name
from yidi.workdays import BUSINESS_TZ

DECISION_OPTIONS = {
    "wait": "等待全部到货后一次发货",
    "partial": "先发有货部分，其余到货后再发",
    "cancel": "取消订单（已付款项按原路退回）",
}


WAITING_FOR = {"production": "安排生产", "purchase": "向供应商采购"}


def queue_waiting_notices(conn: Connection, waiting: dict[int, str], ready_of: dict, settings: Settings) -> int:
    """P2/T2 'waiting for production or procurement': the customer hears why the order waits and the date its goods
    are expected ready, once per order and kind (``waiting``: order id -> 'production' | 'purchase'). An order asked
    to choose (its promise cannot be kept) already heard the earliest date in that notice: not told twice."""
    if not waiting:
        return 0
    cd = customer_decisions.c
    asked = set(conn.execute(select(cd.order_id).where(cd.order_id.in_(list(waiting)), cd.choice.is_(None))).scalars())
    notices = []
    for oid, kind in sorted(waiting.items()):
        if oid in asked:
            continue
        ready = ready_of.get(oid)
        notices.append({"order_id": int(oid), "template": "fulfilment_waiting", "dedupe": f"fulfil-waiting:{oid}:{kind}",
                        "context": {"waiting_for": WAITING_FOR[kind],
                                    "ready_date": "待定（正在确认货源）" if ready is None or pd.isna(ready) else str(ready)}})
    return enqueue_customer_notices(conn, notices, settings.fulfilment.notice_media, settings.general.company_name)


def offer_decisions(conn, short, ready, info, outcomes, cand, lines, transit, calendar, policy, settings, now) -> int:
    """Orders that cannot be delivered by their promised date get a notice with options (once per order)."""
    if not short:
        return 0
    decided = set(cand.decisions["order_id"].tolist())
    could = dict(zip(outcomes["order_id"].tolist(), outcomes["could_ship_partially"].tolist(), strict=True))
    promised_of = dict(zip(info.index.tolist(), info["promised_date"].tolist(), strict=True))
    province_of = dict(zip(info.index.tolist(), info["ship_province"].tolist(), strict=True))
    ready_of = dict(zip(ready.index.tolist(), ready["ready"].tolist(), strict=True)) if len(ready) else {}
    rows, notices = [], []
    reply_due = datetime.combine(
        calendar.add(now.astimezone(BUSINESS_TZ).date(), policy.decision_reply_working_days)[0], datetime.min.time(), tzinfo=BUSINESS_TZ
    ).replace(hour=18)
    names = dict(zip(cand.items["item_code"].tolist(), cand.items["name"].tolist(), strict=True))
    short_items = lines[lines["order_id"].isin(short)].groupby("order_id")["item_code"].apply(list).to_dict()
    for oid in short:
        promised = promised_of.get(oid)
        if oid in decided or pd.isna(promised):
            continue
        ready_date = ready_of.get(oid)
        province = province_short_name(province_of.get(oid))
        earliest = None
        if not pd.isna(ready_date) and province in transit:
            earliest = calendar.add(ready_date, transit[province])[0]
        if earliest is not None and earliest <= promised:
            continue
        partial_possible = bool(could.get(oid, False))
        options = [{"choice": c, "meaning": m} for c, m in DECISION_OPTIONS.items() if c != "partial" or partial_possible]
        rows.append({"order_id": oid, "offered_at": now, "reply_due_at": reply_due.astimezone(UTC),
                     "promised_date": promised, "earliest_date": earliest, "partial_possible": partial_possible,
                     "options": json_text(options)})  # fmt: skip
        notices.append(
            {
                "order_id": oid,
                "template": "fulfilment_delay_options",
                "dedupe": f"fulfil-options:{oid}",
                "context": {
                    "promised_date": str(promised),
                    "earliest_date": str(earliest) if earliest else "待定（正在确认货源）",
                    "items": "、".join(str(names.get(c, c)) for c in short_items.get(oid, [])),
                    "options": "；".join(f"回复“{o['choice']}”：{o['meaning']}" for o in options),
                    "reply_due": reply_due.strftime("%Y-%m-%d %H:%M"),
                },
            }
        )
    if not rows:
        return 0
    insert_rows(conn, customer_decisions, pd.DataFrame(rows))
    record_events(
        conn,
        pd.DataFrame({"order_id": [r["order_id"] for r in rows], "kind": "fulfilment",
                      "reason": "cannot meet the promised date: customer asked to choose wait / partial / cancel",
                      "details": [{"promised_date": str(r["promised_date"]), "earliest_date": str(r["earliest_date"])}
                                  for r in rows]}),
    )  # fmt: skip
    enqueue_customer_notices(conn, notices, policy.notice_media, settings.general.company_name)
    return len(rows)


CHOICES = ("wait", "partial", "cancel")


class DecisionError(ValueError):
    pass


def record_customer_decision(
    conn: Connection,
    order_id: int,
    choice: str,
    *,
    actor: str | None = None,
    note: str | None = None,
    settings: Settings | None = None,
) -> dict:
    """Record the customer's answer on the order; 'cancel' cancels it (reservations and open requests
    released), 'partial' lets the next run ship what is in stock, 'wait' keeps it waiting for all goods."""
    if choice not in CHOICES:
        raise DecisionError(f"choice must be one of {CHOICES}")
    settings = settings or get_settings()
    actor = actor or current_actor()
    now = utc_now()
    state = conn.execute(select(orders.c.state).where(orders.c.id == order_id)).scalar_one_or_none()
    if state is None:
        raise DecisionError(f"no order {order_id}")
    cd = customer_decisions.c
    open_id = conn.execute(
        select(cd.id).where(cd.order_id == order_id, cd.choice.is_(None)).order_by(cd.id.desc()).limit(1)
    ).scalar_one_or_none()
    if open_id is None:
        # The same answer recorded again (a retried command, a second clerk) is the decision already made: no new
        # decision row and no second notice. A different answer is a change of mind and is recorded as such.
        last = conn.execute(
            select(cd.id, cd.choice).where(cd.order_id == order_id).order_by(cd.id.desc()).limit(1)
        ).first()
        if last is not None and last.choice == choice:
            return {"order_id": order_id, "decision_id": int(last.id), "choice": choice, "repeated": True}
        open_id = conn.execute(
            insert(customer_decisions).values(order_id=order_id, offered_at=now, options=json_text(list(CHOICES)))
            .returning(cd.id)
        ).scalar_one()  # fmt: skip
    conn.execute(
        update(customer_decisions).where(cd.id == open_id)
        .values(choice=choice, decided_at=now, decided_by=actor, note=note)
    )  # fmt: skip
    record_events(
        conn,
        pd.DataFrame([{"order_id": order_id, "kind": "fulfilment", "reason": f"customer chose: {choice}",
                       "details": {"decision": open_id, "note": note}}]),
        actor=actor,
    )  # fmt: skip
    if choice == "cancel":
        cancel_fulfilment(conn, order_id, reason="customer chose to cancel (short items)", actor=actor, now=now)
    enqueue_customer_notices(
        conn,
        [{"order_id": order_id, "template": "fulfilment_decision", "dedupe": f"fulfil-decision:{open_id}",
          "context": {"choice": {"wait": "等待全部到货后发货", "partial": "先发有货部分",
                                 "cancel": "取消订单"}[choice]}}],
        settings.fulfilment.notice_media,
        settings.general.company_name,
    )  # fmt: skip
    return {"order_id": order_id, "decision_id": open_id, "choice": choice}


def cancel_fulfilment(conn: Connection, order_id: int, *, reason: str, actor: str, now: datetime) -> None:
    """Release everything fulfilment holds for an order and cancel it (shipped goods are not recalled)."""
    a = allocations.c
    held = read_frame(
        conn, select(a.id, a.warehouse, a.item_code, a.quantity).where(a.order_id == order_id, a.status == "reserved")
    )
    if len(held):
        apply_movements(
            conn,
            held.rename(columns={"id": "allocation_id"}).assign(
                kind="release", reserved_delta=-held["quantity"], order_id=order_id, reason=reason
            ).drop(columns="quantity"),
            actor=actor,
            now=now,
        )  # fmt: skip
        conn.execute(update(allocations).where(a.order_id == order_id, a.status == "reserved")
                     .values(status="released", updated_at=now))  # fmt: skip
    conn.execute(update(shipment_requests).where(shipment_requests.c.order_id == order_id,
                                                 shipment_requests.c.status.in_(["pending", "rejected"]))
                 .values(status="cancelled", updated_at=now))  # fmt: skip
    conn.execute(update(backorders).where(backorders.c.order_id == order_id, backorders.c.status == "open")
                 .values(status="cancelled", updated_at=now))  # fmt: skip
    conn.execute(update(purchase_requests).where(purchase_requests.c.order_id == order_id,
                                                 purchase_requests.c.status == "draft")
                 .values(status="cancelled", updated_at=now))  # fmt: skip
    conn.execute(update(production_requests).where(production_requests.c.order_id == order_id,
                                                   production_requests.c.status == "planned")
                 .values(status="cancelled", updated_at=now))  # fmt: skip
    transition_orders(conn, [order_id], OrderState.CANCELLED, reason=reason, actor=actor)
