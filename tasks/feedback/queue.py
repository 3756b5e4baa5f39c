"""The feedback queue (T3): feedback from the phone form and CLI, email (the order or service mailbox) and online
(website contact form, platform messages) lands once in ``feedback_items``, linked to the customer and order where
the contact or an order number says so, classified by the policy's keywords, with its response and resolution
deadlines in working hours. Reminders before and escalations after the limits are sent once each (outbox).
A complaint is investigated (cause, owner, findings, resolution) and answered; the answer is a customer notice.

A record is a mapping: ``body`` (required), ``contact`` (phone or email), ``name``, ``subject``, ``order_no``,
``received_at`` (ISO time), ``source_id`` (the channel's own id: an email's Message-ID). Emails arrive as the raw
message (``from_email``); the website's contact form as Contact Form 7's submitted fields
(``connectors.inbound_shapes.feedback_record`` reads them).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from datetime import datetime

import pandas as pd
from sqlalchemy import Connection, or_, select, update

from connectors.inbound_shapes import feedback_record
from connectors.service_inbox_files import email_record
from connectors.taobao_rates import is_rate, rate_feedback_record
from tasks.feedback.rules import classify, deadlines, due_alerts
from yidi.bulk import insert_rows, read_frame, reserve_ids
from yidi.outbox import enqueue, enqueue_customer_notices
from yidi.schema import customers, orders
from yidi.schema_aftersales import feedback_alerts, feedback_items
from yidi.service_inbox import land_raw, settle_records
from yidi.settings import Settings
from yidi.workdays import BUSINESS_TZ

CHANNELS = ("phone", "email", "website", "platform")
ORDER_NO = re.compile(r"\bYD[0-9A-Z-]{6,}\b")


def from_email(raw: bytes) -> tuple[str | None, dict]:
    """A raw RFC 822 message as (Message-ID, feedback record)."""
    return email_record(raw)


def _parse(content: str, landed_at: datetime) -> dict:
    try:
        body = json.loads(content)
    except ValueError:
        raise ValueError("not a feedback record") from None
    if isinstance(body, dict) and body.get("unreadable"):
        raise ValueError(str(body["unreadable"]))  # a mailbox message that is not RFC 822 (kept raw)
    if isinstance(body, dict) and ("contact_form_id" in body or "_wpcf7" in body):
        body = {**feedback_record(body), "received_at": body.get("received_at")}  # the website's contact form
    elif isinstance(body, dict) and is_rate(body):
        body = rate_feedback_record(body)  # a buyer's rating on the platform (taobao.traderates.get)
    if not isinstance(body, dict) or not str(body.get("body") or "").strip():
        raise ValueError("feedback without a message body")
    when = body.get("received_at")
    try:
        received = pd.Timestamp(when).to_pydatetime() if when else landed_at
    except ValueError:
        raise ValueError(f"received_at {when!r} is not a time") from None
    if received.tzinfo is None:
        received = received.replace(tzinfo=BUSINESS_TZ)
    text = f"{body.get('subject') or ''}\n{body['body']}"
    found = ORDER_NO.search(text)
    return {"contact": str(body.get("contact") or "").strip() or None, "subject": body.get("subject"),
            "body": str(body["body"]).strip(), "received_at": received,
            "order_no": body.get("order_no") or (found.group(0) if found else None),
            "channel_order_id": body.get("channel_order_id")}  # fmt: skip


def land_feedback(conn: Connection, channel: str, records: Sequence[tuple[str | None, object]], settings: Settings,
                  now: datetime) -> dict:  # fmt: skip
    """Land feedback from ``channel``; returns counts (landed, duplicates, quarantined)."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown feedback channel {channel!r}: {', '.join(CHANNELS)}")
    policy = settings.feedback
    fresh = land_raw(conn, "feedback", channel, records, now)
    outcomes, items = [], []
    for rid, key, content in zip(fresh["id"], fresh["source_key"], fresh["content"], strict=True):
        try:
            items.append({"inbox_id": int(rid), "dedupe_key": f"{channel}:{key or rid}", **_parse(content, now)})
        except ValueError as exc:
            outcomes.append({"id": int(rid), "status": "quarantined", "reason": str(exc), "subject_id": None})
    if items:
        frame = _linked(conn, pd.DataFrame(items))
        frame["category"] = [classify(f"{s or ''} {b}", policy) for s, b in zip(frame["subject"], frame["body"],
                                                                               strict=True)]  # fmt: skip
        due = [deadlines(r, c, policy) for r, c in zip(frame["received_at"], frame["category"], strict=True)]
        frame["first_response_due_at"] = [d[0] for d in due]
        frame["resolution_due_at"] = [d[1] for d in due]
        frame["id"] = reserve_ids(conn, feedback_items, len(frame))
        frame["feedback_no"] = [f"FB{int(i):08d}" for i in frame["id"]]
        frame = frame.assign(channel=channel, status="open", owner=policy.default_owner)
        columns = [c for c in feedback_items.c.keys() if c in frame.columns]
        insert_rows(conn, feedback_items, frame[columns], on_conflict=["dedupe_key"])
        outcomes += [{"id": i, "status": "landed", "reason": None, "subject_id": int(f)}
                     for i, f in zip(frame["inbox_id"], frame["id"], strict=True)]  # fmt: skip
    settle_records(conn, pd.DataFrame(outcomes, columns=["id", "status", "reason", "subject_id"]))
    return {"landed": len(items), "duplicates": len(records) - len(fresh),
            "quarantined": sum(o["status"] == "quarantined" for o in outcomes)}  # fmt: skip


def _linked(conn: Connection, frame: pd.DataFrame) -> pd.DataFrame:
    """Customer and order: the order number given or quoted, else the customer whose phone or email wrote."""
    nos = [n for n in frame["order_no"].dropna().unique()]
    by_no = read_frame(conn, select(orders.c.order_no, orders.c.id, orders.c.customer_id)
                       .where(orders.c.order_no.in_(nos))) if nos else pd.DataFrame(columns=["order_no", "id", "customer_id"])  # fmt: skip
    contacts = [c for c in frame["contact"].dropna().unique()]
    by_contact = read_frame(conn, select(customers.c.id, customers.c.phone, customers.c.email).where(
        or_(customers.c.phone.in_(contacts), customers.c.email.in_(contacts)))) if contacts else pd.DataFrame(
        columns=["id", "phone", "email"])  # fmt: skip
    trades = [t for t in frame["channel_order_id"].dropna().unique()] if "channel_order_id" in frame else []
    if trades:  # the platform names its trade: our order on channel taobao
        by_trade = read_frame(conn, select(orders.c.order_no, orders.c.channel_order_id).where(
            orders.c.channel == "taobao", orders.c.channel_order_id.in_(trades)))  # fmt: skip
        order_no_of = dict(zip(by_trade["channel_order_id"], by_trade["order_no"], strict=True))
        frame["order_no"] = [n if isinstance(n, str) else order_no_of.get(t)
                             for n, t in zip(frame["order_no"], frame["channel_order_id"], strict=True)]  # fmt: skip
        more = read_frame(conn, select(orders.c.order_no, orders.c.id, orders.c.customer_id).where(
            orders.c.order_no.in_(list(order_no_of.values()))))  # fmt: skip
        by_no = pd.concat([by_no, more], ignore_index=True).drop_duplicates("order_no")
    order_of = dict(zip(by_no["order_no"], by_no["id"], strict=True))
    customer_of_order = dict(zip(by_no["order_no"], by_no["customer_id"], strict=True))
    customer_of = {**dict(zip(by_contact["phone"], by_contact["id"], strict=True)),
                   **dict(zip(by_contact["email"], by_contact["id"], strict=True))}  # fmt: skip
    frame["order_id"] = [order_of.get(n) for n in frame["order_no"]]
    frame["customer_id"] = [customer_of_order.get(n) or customer_of.get(c)
                            for n, c in zip(frame["order_no"], frame["contact"], strict=True)]  # fmt: skip
    for column in ("order_id", "customer_id"):
        frame[column] = pd.array([None if v is None or pd.isna(v) else int(v) for v in frame[column]], dtype="Int64")
    return frame


def raise_alerts(conn: Connection, settings: Settings, now: datetime) -> dict:
    """Reminders and escalations due now for open feedback, each sent once; returns counts by kind."""
    open_items = read_frame(conn, select(feedback_items).where(feedback_items.c.status != "closed"))
    alerts = due_alerts(open_items, now, settings.feedback)
    if alerts.empty:
        return {}
    new = insert_rows(conn, feedback_alerts, alerts, on_conflict=["feedback_id", "kind", "due_at"])
    escalated = alerts[alerts["kind"].str.endswith("escalation")]["feedback_id"].unique().tolist()
    if escalated:
        conn.execute(update(feedback_items).where(feedback_items.c.id.in_(escalated),
                                                  feedback_items.c.escalated_at.is_(None)).values(escalated_at=now))  # fmt: skip
    nos = dict(zip(open_items["id"], open_items["feedback_no"], strict=True))
    enqueue(conn, pd.DataFrame([{
        "order_id": None, "medium": "sms" if str(r["recipient"]).isdigit() else "email", "recipient": r["recipient"],
        "template": "feedback_" + r["kind"].split("_")[1],
        "context": {"feedback_no": nos[r["feedback_id"]], "stage": STAGE_TEXT[r["kind"].split("_")[0]],
                    "due_at": pd.Timestamp(r["due_at"]).tz_convert(BUSINESS_TZ).strftime("%Y-%m-%d %H:%M")},
        "dedupe_key": f"feedback:{r['kind']}:{r['feedback_id']}:{pd.Timestamp(r['due_at']).isoformat()}",
    } for r in alerts.to_dict("records")]))  # fmt: skip
    return {**alerts["kind"].value_counts().to_dict(), "new": new}


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


STAGE_TEXT = {"response": "首次响应", "resolution": "处理完结"}


def reply(conn: Connection, feedback_no: str, answer: str, settings: Settings, now: datetime, *,
          cause: str | None = None, findings: str | None = None, resolution: str | None = None,
          owner: str | None = None, close: bool = False) -> dict:  # fmt: skip
    """Record an answer (and for a complaint the investigation); the customer gets the answer once per text."""
    item = read_frame(conn, select(feedback_items).where(feedback_items.c.feedback_no == feedback_no))
    if item.empty:
        raise ValueError(f"no feedback {feedback_no}")
    row = item.iloc[0]
    if cause is not None and cause not in settings.feedback.cause_categories:
        raise ValueError(f"cause {cause!r} is not one of {settings.feedback.cause_categories}")
    values = {"answer": answer, "status": "closed" if close else "answered",
              "first_responded_at": row["first_responded_at"] if pd.notna(row["first_responded_at"]) else now}
    values.update({k: v for k, v in {"cause_category": cause, "findings": findings, "resolution": resolution,
                                     "owner": owner}.items() if v is not None})  # fmt: skip
    if close:
        values["resolved_at"] = now
    conn.execute(update(feedback_items).where(feedback_items.c.id == int(row["id"])).values(**values))
    notice = {"feedback_no": feedback_no, "answer": answer}
    contact = row["contact"] or ""
    if pd.notna(row["order_id"]):
        enqueue_customer_notices(conn, [{"order_id": int(row["order_id"]), "template": "feedback_answer",
                                         "dedupe": f"feedback:answer:{row['id']}:{_digest(answer)}",
                                         "context": notice}], settings.aftersales.notice_media,
                                 settings.general.company_name)  # fmt: skip
    elif contact:
        enqueue(conn, pd.DataFrame([{"order_id": None, "medium": "email" if "@" in contact else "sms",
                                     "recipient": contact, "template": "feedback_answer",
                                     "context": {**notice, "customer_name": "客户",
                                                 "company_name": settings.general.company_name},
                                     "dedupe_key": f"feedback:answer:{row['id']}:{_digest(answer)}"}]))  # fmt: skip
    return {"feedback_no": feedback_no, **{k: v for k, v in values.items() if k != "first_responded_at"}}
