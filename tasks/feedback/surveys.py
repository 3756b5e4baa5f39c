"""Satisfaction surveys (T3, KPI): after a delivery, a finished service job, a closed after-sales case or a closed
complaint, the customer gets one short survey (SMS or email) with a six-character code; the reply ("code score
comment") lands through the SMS gateway's or the mailbox's inbound path, raw first, and is stored against the
survey's order and case. Unreadable replies and unknown codes are quarantined with the reason.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from datetime import datetime, timedelta

import pandas as pd
from sqlalchemy import Connection, bindparam, select, update

from connectors.inbound_shapes import sms_reply_text
from tasks.feedback.rules import read_survey_reply
from yidi.bulk import insert_rows, read_frame
from yidi.outbox import enqueue
from yidi.schema import orders, shipments
from yidi.schema_aftersales import aftersales_cases, feedback_items, service_jobs, surveys
from yidi.service_inbox import land_raw, settle_records
from yidi.settings import Settings

WHAT_TEXT = {"delivery": "您的订单 {order_no} 已签收", "service": "订单 {order_no} 的上门服务",
             "case": "订单 {order_no} 的售后处理", "complaint": "您反映的问题的处理"}  # fmt: skip


def survey_code(key: str) -> str:
    return base64.b32encode(hashlib.sha256(key.encode()).digest()).decode()[:6]


def _candidates(conn: Connection, after: list[str], since: datetime) -> pd.DataFrame:
    """What finished since ``since`` and may be surveyed: deliveries, done jobs, closed cases, closed complaints."""
    parts = []
    if "delivery" in after:
        parts.append(read_frame(conn, select(orders.c.id.label("order_id")).where(
            orders.c.state == "delivered", orders.c.id.in_(select(shipments.c.order_id).where(
                shipments.c.delivered_at >= since))))
                     .assign(trigger="delivery", case_id=None, feedback_id=None, service_job_id=None))  # fmt: skip
    if "service" in after:
        parts.append(read_frame(conn, select(service_jobs.c.order_id, service_jobs.c.id.label("service_job_id"))
                                .where(service_jobs.c.status == "done", service_jobs.c.done_at >= since))
                     .assign(trigger="service", case_id=None, feedback_id=None))  # fmt: skip
    if "case" in after:
        parts.append(read_frame(conn, select(aftersales_cases.c.order_id, aftersales_cases.c.id.label("case_id"))
                                .where(aftersales_cases.c.status == "closed", aftersales_cases.c.closed_at >= since))
                     .assign(trigger="case", feedback_id=None, service_job_id=None))  # fmt: skip
    if "complaint" in after:
        parts.append(read_frame(conn, select(feedback_items.c.order_id, feedback_items.c.id.label("feedback_id"),
                                             feedback_items.c.contact)
                                .where(feedback_items.c.status == "closed", feedback_items.c.category == "complaint",
                                       feedback_items.c.resolved_at >= since))
                     .assign(trigger="complaint", case_id=None, service_job_id=None))  # fmt: skip
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def send_surveys(conn: Connection, settings: Settings, now: datetime) -> int:
    """Queue one survey per delivery, service job, case and complaint finished within ``survey_within_days`` and
    not surveyed yet; returns how many."""
    policy = settings.service
    found = _candidates(conn, policy.survey_after, now - timedelta(days=policy.survey_within_days))
    if found.empty:
        return 0
    subject = {"delivery": "order_id", "service": "service_job_id", "case": "case_id", "complaint": "feedback_id"}
    found["survey_key"] = [f"{t}:{int(r[subject[t]])}" for t, r in zip(found["trigger"], found.to_dict("records"),
                                                                          strict=True)]  # fmt: skip
    known = read_frame(conn, select(surveys.c.survey_key).where(surveys.c.survey_key.in_(found["survey_key"].tolist())))
    found = found[~found["survey_key"].isin(set(known["survey_key"]))]
    if found.empty:
        return 0
    ids = [int(o) for o in found["order_id"].dropna().unique()]
    contacts = read_frame(conn, select(orders.c.id, orders.c.order_no, orders.c.customer_name, orders.c.customer_phone,
                                       orders.c.customer_email).where(orders.c.id.in_(ids))) if ids else pd.DataFrame(
        columns=["id", "order_no", "customer_name", "customer_phone", "customer_email"])  # fmt: skip
    by_order = {int(r["id"]): r for r in contacts.to_dict("records")}
    rows, notices = [], []
    for r in found.to_dict("records"):
        contact = by_order.get(int(r["order_id"])) if pd.notna(r["order_id"]) else None
        phone = contact["customer_phone"] if contact else (r.get("contact") if str(r.get("contact") or "").isdigit() else None)
        email = contact["customer_email"] if contact else (r.get("contact") if "@" in str(r.get("contact") or "") else None)
        medium = policy.survey_medium if (phone if policy.survey_medium == "sms" else email) else (
            "email" if email else "sms")  # fmt: skip
        recipient = phone if medium == "sms" else email
        if not recipient:
            continue
        code = survey_code(r["survey_key"])
        rows.append({"survey_key": r["survey_key"], "code": code, "trigger": r["trigger"],
                     "order_id": None if pd.isna(r["order_id"]) else int(r["order_id"]),
                     **{k: None if r.get(k) is None or pd.isna(r.get(k)) else int(r[k])
                        for k in ("case_id", "feedback_id", "service_job_id")},
                     "recipient": recipient, "medium": medium, "sent_at": now})  # fmt: skip
        order_no = contact["order_no"] if contact else ""
        notices.append({"order_id": rows[-1]["order_id"], "medium": medium, "recipient": recipient,
                        "template": "satisfaction_survey", "dedupe_key": f"survey:{r['survey_key']}",
                        "context": {"survey_code": code, "order_no": order_no, "company_name": settings.general.company_name,
                                    "customer_name": (contact["customer_name"] if contact else None) or "客户",
                                    "what_text": WHAT_TEXT[r["trigger"]].format(order_no=order_no)}})  # fmt: skip
    insert_rows(conn, surveys, pd.DataFrame(rows), on_conflict=["survey_key"])
    enqueue(conn, pd.DataFrame(notices))
    return len(rows)


def sms_reply_record(body: dict) -> tuple[str | None, dict]:
    """An inbound SMS as the gateway delivers it (``from``, ``text``, ``message_id``, ``received_at``)."""
    return body.get("message_id"), body


def land_survey_replies(conn: Connection, channel: str, records: Sequence[tuple[str | None, object]],
                        now: datetime) -> dict:  # fmt: skip
    """Land survey replies from ``sms`` or ``email``: each stored against its survey (the first reply counts)."""
    fresh = land_raw(conn, "survey_reply", channel, records, now)
    outcomes, answers = [], []
    codes = read_frame(conn, select(surveys.c.id, surveys.c.code, surveys.c.replied_at))
    by_code = {c: (int(i), r) for i, c, r in zip(codes["id"], codes["code"], codes["replied_at"], strict=True)}
    for rid, content in zip(fresh["id"], fresh["content"], strict=True):
        try:
            body = json.loads(content)
            text = sms_reply_text(body)  # Aliyun SmsUp ``content``, our gateway's ``text``, a mail's ``body``
        except (ValueError, AttributeError):
            text = ""
        reply = read_survey_reply(text)
        if reply is None:
            outcomes.append({"id": int(rid), "status": "quarantined", "reason": "no survey code and score 1-5 found",
                             "subject_id": None})  # fmt: skip
            continue
        code, score, comment = reply
        if code not in by_code:
            outcomes.append({"id": int(rid), "status": "quarantined", "reason": f"unknown survey code {code}",
                             "subject_id": None})  # fmt: skip
            continue
        survey_id, replied = by_code[code]
        outcomes.append({"id": int(rid), "status": "landed", "reason": None, "subject_id": survey_id})
        if replied is None or pd.isna(replied):
            answers.append({"sid": survey_id, "score": score, "text": comment or None, "at": now})
            by_code[code] = (survey_id, now)
    if answers:
        conn.execute(update(surveys).where(surveys.c.id == bindparam("sid"), surveys.c.replied_at.is_(None)).values(
            score=bindparam("score"), reply_text=bindparam("text"),
            replied_at=bindparam("at", type_=surveys.c.replied_at.type)), answers)  # fmt: skip
    settle_records(conn, pd.DataFrame(outcomes, columns=["id", "status", "reason", "subject_id"]))
    return {"landed": len(answers), "duplicates": len(records) - len(fresh),
            "quarantined": sum(o["status"] == "quarantined" for o in outcomes)}  # fmt: skip
