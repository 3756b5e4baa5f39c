"""The demo's history before today (issue 13): a lifecycle demo runs in one day, so nothing in it is years old or
long overdue. A few back-dated facts give the assessment every credit grade and a legal-rule breach to show:

- C00001 has been a customer for five years and ordered every month of the last year (tenure and volume → grade A
  whatever today's random orders bring); its first order, closed long ago, is past the personal-data retention
  period and gets anonymised;
- C00002 owes ¥30,000 for 60 days and reached the fourth dunning step (→ grade E);
- C00003 owes ¥3,000 for 25 days (→ grade C or D);
- C00004's order promised for yesterday is shipped but not delivered (《电子商务法》第二十条);
- one of today's delivered orders got ¥20 back as goodwill that nobody recorded as after-sales: the internal
  audit's deliberate REFUND_WITHOUT_CASE (refunds of orders turned down or cancelled need no case).
"""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
from sqlalchemy import select

from yidi.bulk import insert_rows, utc_now
from yidi.db import get_engine
from yidi.schema import customers, order_events, orders, shipments
from yidi.schema_aftersales import aftersales_cases
from yidi.schema_settlement import (
    dunning_actions,
    payment_lines,
    payment_matches,
    receivables,
    statement_files,
)
from yidi.workdays import BUSINESS_TZ


def _order(conn, customer_id: int, no: str, received, state: str, chain: list[str], **values) -> int:
    insert_rows(conn, orders, pd.DataFrame([{
        "order_no": no, "channel": "website", "channel_order_id": no, "customer_id": customer_id,
        "customer_name": "历史客户", "customer_phone": "13800000000", "ship_province": "四川省",
        "ship_city": "成都市", "ship_district": "武侯区", "ship_detail": "人民南路一段1号", "region": "remote",
        "payment_method": "bank_transfer", "goods_total_fen": 3_000_000, "order_total_fen": 3_000_000,
        "state": state, "payment_state": "unpaid", "order_time": received, "received_at": received, **values}]))  # fmt: skip
    oid = conn.execute(select(orders.c.id).where(orders.c.order_no == no)).scalar_one()
    states = ["received", *chain]
    insert_rows(conn, order_events, pd.DataFrame([
        {"order_id": oid, "occurred_at": received + timedelta(hours=i), "actor": "demo-history", "kind": "state",
         "from_state": None if i == 0 else states[i - 1], "to_state": s, "reason": "demo history"}
        for i, s in enumerate(states)]))  # fmt: skip
    return oid


def seed_history(engine=None) -> dict:
    """Idempotent: does nothing when the history is already there."""
    engine = engine or get_engine()
    now = utc_now()
    today = now.astimezone(BUSINESS_TZ).date()
    with engine.begin() as conn:
        ids = dict(conn.execute(select(customers.c.code, customers.c.id)
                                .where(customers.c.code.in_(["C00001", "C00002", "C00003", "C00004"]))).all())  # fmt: skip
        if len(ids) < 4 or conn.execute(select(orders.c.id).where(orders.c.order_no == "HIST-A-1")).first():
            return {"seeded": False}
        full = ["pending_review", "approved", "allocated", "shipped", "delivered", "settled", "closed"]
        _order(
            conn,
            ids["C00001"],
            "HIST-A-1",
            now - timedelta(days=5 * 365),
            "closed",
            full,
            payment_state="paid",
        )
        for month in range(1, 11):  # a regular customer: an order a month, delivered and closed
            _order(conn, ids["C00001"], f"HIST-A-{month + 1}", now - timedelta(days=30 * month + 5), "closed", full,
                   payment_state="paid")  # fmt: skip
        for code, no, days, amount, step in (
            ("C00002", "HIST-E-1", 60, 3_000_000, 4),
            ("C00003", "HIST-C-1", 25, 300_000, 0),
        ):
            oid = _order(conn, ids[code], no, now - timedelta(days=days + 30), "delivered", full[:5],
                         order_total_fen=amount, goods_total_fen=amount)  # fmt: skip
            insert_rows(conn, receivables, pd.DataFrame([{
                "order_id": oid, "customer_id": ids[code], "payment_terms": "net", "due_date": today - timedelta(days=days),
                "amount_fen": amount, "paid_fen": 0, "outstanding_fen": amount, "status": "open", "updated_at": now}]))  # fmt: skip
            if step:
                insert_rows(conn, dunning_actions, pd.DataFrame([{
                    "dedupe_key": f"demo-history:{code}", "party_key": f"customer:{ids[code]}",
                    "customer_id": ids[code], "order_id": oid, "step_no": step, "step_name": "legal",
                    "overdue_fen": amount, "days_overdue": days, "oldest_due_date": today - timedelta(days=days),
                    "taken_at": now - timedelta(days=2)}]))  # fmt: skip
        late = _order(conn, ids["C00004"], "HIST-L-1", now - timedelta(days=2), "shipped", full[:4],
                      promised_date=today - timedelta(days=1), payment_state="paid")  # fmt: skip
        insert_rows(conn, shipments, pd.DataFrame([{"shipment_no": "HIST-S-1", "order_id": late, "carrier": "zhongtong",
                                                    "idempotency_key": "HIST-S-1", "waybill_no": "HIST0001",
                                                    "shipped_at": now - timedelta(days=2), "status": "in_transit",
                                                    "expected_delivery_date": today - timedelta(days=2)}]))  # fmt: skip
        goodwill = conn.execute(
            select(orders.c.id).where(orders.c.state.in_(("delivered", "settled")),
                                      orders.c.payment_method.in_(("alipay", "wechatpay")),
                                      orders.c.id.not_in(select(aftersales_cases.c.order_id)),
                                      orders.c.id.not_in(select(payment_matches.c.order_id)
                                                         .where(payment_matches.c.amount_fen < 0)))
            .order_by(orders.c.id).limit(1)).scalar()  # fmt: skip
        if goodwill is not None:
            _goodwill_refund(conn, int(goodwill), 2_000, now)
    return {"seeded": True}


def _goodwill_refund(conn, order_id: int, fen: int, now) -> None:
    """A refund line of the provider's bill, matched to the order, with no after-sales case behind it."""
    insert_rows(conn, statement_files, pd.DataFrame([{"file_hash": "demo-history-goodwill", "status": "ingested",
                                                      "file_name": "goodwill-refund.csv", "received_at": now}]))  # fmt: skip
    file_id = conn.execute(select(statement_files.c.id)
                           .where(statement_files.c.file_hash == "demo-history-goodwill")).scalar_one()  # fmt: skip
    insert_rows(conn, payment_lines, pd.DataFrame([{"source": "alipay", "line_key": "demo-history-goodwill",
                                                    "file_id": file_id, "line_no": 1, "kind": "refund",
                                                    "amount_fen": -fen, "txn_time": now, "match_status": "matched",
                                                    "ingested_at": now}]))  # fmt: skip
    line_id = conn.execute(select(payment_lines.c.id)
                           .where(payment_lines.c.line_key == "demo-history-goodwill")).scalar_one()  # fmt: skip
    insert_rows(conn, payment_matches, pd.DataFrame([{"payment_line_id": line_id, "order_id": order_id,
                                                      "amount_fen": -fen, "rule": "demo-history", "score": 1.0,
                                                      "matched_at": now}]))  # fmt: skip
