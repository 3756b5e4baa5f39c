"""Customers write to the order mailbox too: a reply to an order confirmation with a complaint, a question about a
delivery, a survey answered from the wrong address. Intake keeps such a message (it holds no order) quarantined as
"no order found"; this step moves each one into the feedback queue (or, when it answers a survey, to that survey)
through the service mailbox's own path (``tasks.feedback.mail.land_mail``, the same Message-ID key, so a message
that reached both mailboxes is one item), and marks the intake record ``to_feedback`` so it leaves the quarantine
list. The raw record stays in ``intake_records``. Areas meet in the core's table, not in each other's tasks.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, select, update

from connectors.email_body import split_body_content
from connectors.email_orders import BODY_TYPE
from tasks.feedback.mail import land_mail
from yidi.bulk import read_frame
from yidi.schema import intake_records
from yidi.settings import Settings

NO_ORDER = "no order found:"  # how intake's email reader says a message holds no order (connectors.email_body)
ROUTED = "to_feedback"


def not_orders(conn: Connection, limit: int) -> list[tuple[int, tuple[str | None, dict]]]:
    """The order mailbox's quarantined messages without an order, as (intake record id, mail record)."""
    rows = read_frame(conn, select(intake_records.c.id, intake_records.c.content)
                      .where(intake_records.c.channel == "email", intake_records.c.status == "quarantined",
                             intake_records.c.content_type == BODY_TYPE,
                             intake_records.c.reason.like(f"{NO_ORDER}%"))
                      .order_by(intake_records.c.id).limit(limit))  # fmt: skip
    out = []
    for record_id, content in zip(rows["id"], rows["content"], strict=True):
        envelope, body = split_body_content(content)
        key = envelope.get("message_id") or None
        out.append((int(record_id), (key, {"contact": envelope.get("from"), "subject": envelope.get("subject"),
                                           "body": body.strip(), "text": body.strip(),
                                           "received_at": envelope.get("date")})))  # fmt: skip
    return out


def route_to_feedback(conn: Connection, settings: Settings, now: datetime, limit: int = 5000) -> dict:
    """Move the order mailbox's messages that hold no order into the feedback queue; returns the counts."""
    found = not_orders(conn, limit)
    if not found:
        return {"routed": 0}
    got = land_mail(conn, [record for _, record in found], settings, now)
    conn.execute(update(intake_records).where(intake_records.c.id.in_([i for i, _ in found]))
                 .values(status=ROUTED, updated_at=now,
                         reason=intake_records.c.reason + " | moved to the feedback queue"))  # fmt: skip
    return {"routed": len(found), **{f"{path}:{k}": v for path, counts in got.items() for k, v in counts.items()}}
