"""Refunds (A3, 第二十五条): queued with their idempotency key in the same transaction as the decision or the
receipt that causes them, sent later through the payment provider (Alipay, WeChat Pay) or written as a bank
transfer instruction for finance. The key is the provider's request number (``out_request_no`` /
``out_refund_no``), so a refund whose answer was lost is sent again with the same number and the provider
refunds once. Clients are passed in (``clients[route]``); tasks never build them.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
from sqlalchemy import Connection, bindparam, select, update

from connectors.alipay_refund import AlipayRefundClient
from connectors.provider_signing import load_private_key, load_public_key
from connectors.refund_api import RefundRejected, RefundUnavailable
from connectors.wechatpay_refund import WechatPayRefundClient
from yidi.bulk import insert_rows, json_text, read_frame
from yidi.lifecycle import record_events
from yidi.money import yuan_text
from yidi.outbox import enqueue_customer_notices
from yidi.schema import orders
from yidi.schema_aftersales import aftersales_cases, refund_requests
from yidi.settings import Settings, yidi_home


def make_refund_clients(policy) -> dict:
    """The refund clients from the policy (``[aftersales]`` URLs, ids and key files): the one place they are
    built. A key file not configured leaves that client unable to sign (its refunds stay pending, saying why)."""
    return {"alipay": AlipayRefundClient(policy.alipay_url, app_id=policy.alipay_app_id,
                                         private_key=_key(policy.alipay_private_key_path, load_private_key),
                                         alipay_public_key=_key(policy.alipay_public_key_path, load_public_key),
                                         timeout=policy.refund_timeout_seconds),
            "wechatpay": WechatPayRefundClient(
                policy.wechatpay_url, mchid=policy.wechatpay_mchid, serial_no=policy.wechatpay_serial_no,
                private_key=_key(policy.wechatpay_private_key_path, load_private_key),
                platform_public_key=_key(policy.wechatpay_platform_public_key_path, load_public_key),
                timeout=policy.refund_timeout_seconds)}  # fmt: skip


def _key(path: str, loader):
    if not path:
        return None
    file = Path(path) if Path(path).is_absolute() else yidi_home() / path
    return loader(file)  # a configured file that is missing or wrong fails loudly (SigningKeyError)


def refund_key(case_id: int) -> str:
    return f"YDRF{int(case_id):010d}"


def queue_refunds(conn: Connection, refunds: list[dict]) -> int:
    """Queue refunds (dicts: case_id, order_id, amount_fen, route, due_date); one per case, whatever re-runs do."""
    if not refunds:
        return 0
    frame = pd.DataFrame(refunds)[["case_id", "order_id", "amount_fen", "route", "due_date"]]
    frame["idempotency_key"] = [refund_key(c) for c in frame["case_id"]]
    frame["status"] = "pending"
    return insert_rows(conn, refund_requests, frame, on_conflict=["case_id"])


def send_refunds(conn: Connection, clients: dict, settings: Settings, now: datetime) -> dict:
    """Send every pending refund once; returns counts by outcome. A transient failure leaves it pending (same
    key next time); a refusal marks it failed for a person; a bank transfer becomes an instruction."""
    pending = read_frame(
        conn,
        select(refund_requests, orders.c.order_no, orders.c.order_total_fen, aftersales_cases.c.case_no)
        .join(orders, orders.c.id == refund_requests.c.order_id)
        .join(aftersales_cases, aftersales_cases.c.id == refund_requests.c.case_id)
        .where(refund_requests.c.status == "pending").order_by(refund_requests.c.id),
    )  # fmt: skip
    counts = {"succeeded": 0, "instructed": 0, "pending": 0, "failed": 0}
    updates, done_cases, notices, events = [], [], [], []
    for r in pending.to_dict("records"):
        state, refund_id, error, answer = "pending", None, None, None
        reason = f"售后单 {r['case_no']} 退款"
        try:
            if r["route"] == "bank_transfer":
                state = "instructed"
            elif r["route"] not in clients:
                raise RefundUnavailable(f"no client for {r['route']} refunds in this run")
            elif r["route"] == "alipay":
                answer = clients["alipay"].refund(order_no=r["order_no"], request_no=r["idempotency_key"],
                                                  amount_fen=int(r["amount_fen"]), reason=reason, now=now)  # fmt: skip
            else:
                answer = clients["wechatpay"].refund(order_no=r["order_no"], request_no=r["idempotency_key"],
                                                     amount_fen=int(r["amount_fen"]),
                                                     total_fen=int(r["order_total_fen"]), reason=reason)  # fmt: skip
            if answer is not None:
                state, refund_id = answer.status if answer.status == "succeeded" else "pending", answer.provider_refund_id
        except RefundUnavailable as exc:
            error = str(exc)
        except RefundRejected as exc:
            state, error = "failed", str(exc)
        counts[state] += 1
        updates.append({"rid": int(r["id"]), "st": state, "pid": refund_id, "err": error,
                        "resp": json_text(answer.raw) if answer else None,
                        "sent": now if state in ("succeeded", "instructed") else None})  # fmt: skip
        if state in ("succeeded", "instructed"):
            done_cases.append(int(r["case_id"]))
            notices.append({"order_id": int(r["order_id"]), "template": "aftersales_refunded",
                            "dedupe": f"aftersales:refund:{r['case_id']}",
                            "context": {"case_no": r["case_no"], "amount_yuan": yuan_text(int(r["amount_fen"])),
                                        "route_text": ROUTE_TEXT[r["route"]]}})  # fmt: skip
            events.append({"order_id": int(r["order_id"]), "kind": "refund",
                           "reason": f"售后单 {r['case_no']} 退款 {yuan_text(int(r['amount_fen']))} 元（{ROUTE_TEXT[r['route']]}）",
                           "details": {"case_id": int(r["case_id"]), "key": r["idempotency_key"],
                                       "provider_refund_id": refund_id, "route": r["route"]}})  # fmt: skip
    if updates:
        conn.execute(
            update(refund_requests).where(refund_requests.c.id == bindparam("rid")).values(
                status=bindparam("st"), provider_refund_id=bindparam("pid"), last_error=bindparam("err"),
                response=bindparam("resp"), sent_at=bindparam("sent", type_=refund_requests.c.sent_at.type),
                attempts=refund_requests.c.attempts + 1),
            updates,
        )  # fmt: skip
    if done_cases:
        conn.execute(update(aftersales_cases).where(aftersales_cases.c.id.in_(done_cases))
                     .values(status="closed", closed_at=now, updated_at=now))  # fmt: skip
        enqueue_customer_notices(conn, notices, settings.aftersales.notice_media, settings.general.company_name)
        record_events(conn, pd.DataFrame(events))
    return counts


ROUTE_TEXT = {"alipay": "原路退回支付宝", "wechatpay": "原路退回微信支付", "bank_transfer": "银行转账"}
