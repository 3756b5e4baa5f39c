"""Review deadlines (V6): every pending order has one; reviewers are reminded before it and the escalation contact
is told after it, each once per order and deadline (the ``review_deadline_alerts`` table remembers what was sent).

``check_deadlines`` is one step in one transaction: deadlines for orders another area moved back to review, the
reminders and escalations (outbox notices, an event on each escalated order), and the backlog by age.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pandas as pd
from sqlalchemy import Connection, Engine, bindparam, func, select, update

from tasks.review.rules import backlog_by_age, deadline_listing, review_deadline
from tasks.review.store import pending_orders
from yidi.bulk import insert_rows, read_frame, read_in, utc_now
from yidi.lifecycle import OrderState, record_events
from yidi.outbox import enqueue
from yidi.schema import order_events, orders
from yidi.schema_review import review_deadline_alerts
from yidi.settings import Settings, get_settings


def ensure_review_deadlines(conn: Connection, settings: Settings) -> int:
    """Pending orders without a deadline (moved back to review by another area) get one, counted from the moment
    they last became pending."""
    missing = read_frame(conn, select(orders.c.id).where(orders.c.state == OrderState.PENDING_REVIEW.value,
                                                         orders.c.review_due_at.is_(None)))  # fmt: skip
    if missing.empty:
        return 0
    became = read_in(conn, lambda ids: select(order_events.c.order_id, func.max(order_events.c.occurred_at)
                                              .label("since"))
                     .where(order_events.c.order_id.in_(ids), order_events.c.kind == "state",
                            order_events.c.to_state == OrderState.PENDING_REVIEW.value)
                     .group_by(order_events.c.order_id), missing["id"].tolist())  # fmt: skip
    since = dict(zip(became["order_id"].astype(int), became["since"], strict=True))
    now = utc_now()
    params = [{"oid": int(oid), "due": review_deadline(since.get(int(oid), now), settings)} for oid in missing["id"]]
    conn.execute(update(orders).where(orders.c.id == bindparam("oid"), orders.c.review_due_at.is_(None))
                 .values(review_due_at=bindparam("due")), params)  # fmt: skip
    return len(params)


@dataclass
class DeadlineReport:
    reminded: list[str] = field(default_factory=list)
    escalated: list[str] = field(default_factory=list)
    backlog: pd.DataFrame | None = None


def check_deadlines(engine: Engine, *, now: datetime | None = None, settings: Settings | None = None) -> DeadlineReport:
    """Remind reviewers before the deadline, escalate after it; each order once per deadline (alerts table)."""
    settings = settings or get_settings()
    now = now or utc_now()
    policy = settings.review
    report = DeadlineReport()
    with engine.begin() as conn:
        ensure_review_deadlines(conn, settings)
        pending = pending_orders(conn)
        if pending.empty:
            report.backlog = backlog_by_age(pending, now)
            return report
        due = pd.to_datetime(pending["review_due_at"], utc=True)
        soon = pending[(due > now) & (due <= now + timedelta(hours=policy.reminder_hours_before))]
        late = pending[due <= now]
        sent = read_frame(conn, select(review_deadline_alerts.c.order_id, review_deadline_alerts.c.kind,
                                       review_deadline_alerts.c.due_at))  # fmt: skip
        done = {(int(o), k, pd.Timestamp(d).tz_convert("UTC")) for o, k, d in
                zip(sent["order_id"], sent["kind"], sent["due_at"], strict=True)} if not sent.empty else set()  # fmt: skip
        for kind, frame, recipients, template in (
            ("reminder", soon, policy.reviewer_contacts, "review_reminder"),
            ("escalation", late, [policy.escalation_contact], "review_escalation"),
        ):
            fresh = frame[[(int(o), kind, pd.Timestamp(d).tz_convert("UTC")) not in done
                           for o, d in zip(frame["id"], frame["review_due_at"], strict=True)]]  # fmt: skip
            if fresh.empty:
                continue
            insert_rows(conn, review_deadline_alerts, pd.DataFrame({
                "order_id": fresh["id"].astype(int).to_numpy(), "kind": kind, "due_at": fresh["review_due_at"].to_numpy(),
                "created_at": now,
            }), on_conflict=["order_id", "kind", "due_at"])  # fmt: skip
            listing = deadline_listing(fresh)
            digest = hashlib.sha256("-".join(str(int(i)) for i in sorted(fresh["id"])).encode()).hexdigest()[:20]
            notices = []
            for recipient in recipients:
                medium = "email" if "@" in recipient else "sms"
                notices.append({"order_id": None, "medium": medium, "recipient": recipient, "template": template,
                                "context": {"count": len(fresh), "orders": listing},
                                "dedupe_key": f"review:{kind}:{digest}:{recipient}"})  # fmt: skip
            enqueue(conn, pd.DataFrame(notices))
            if kind == "escalation":
                record_events(conn, pd.DataFrame({
                    "order_id": fresh["id"].astype(int).to_numpy(), "kind": "review",
                    "reason": "人工审核超期，已上报 / review deadline passed: escalated",
                    "details": [{"due_at": str(d), "escalated_to": policy.escalation_contact}
                                for d in fresh["review_due_at"]],
                }), actor="review-deadlines")  # fmt: skip
                report.escalated = fresh["order_no"].tolist()
            else:
                report.reminded = fresh["order_no"].tolist()
        report.backlog = backlog_by_age(pending, now)
    return report
