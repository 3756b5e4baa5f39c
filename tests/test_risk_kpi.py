"""E2 KPIs: each equals the value computed by hand on four orders of November 2026, by total and by channel,
with its target status and trend."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest
from risk_data import AS_OF, add_customer, add_incident, add_order, add_receivable, add_refund, add_shipment
from sqlalchemy import select

from tasks.risk import kpi_store
from tasks.risk.kpi_run import compute_kpis
from tasks.risk.periods import PeriodError, parse_period, previous_periods, rag, sparkline
from yidi.bulk import insert_rows
from yidi.db import for_writing
from yidi.schema import order_events, orders
from yidi.schema_aftersales import feedback_items, surveys
from yidi.schema_risk import kpi_values
from yidi.schema_settlement import payment_lines, statement_files
from yidi.settings import load_settings

SETTINGS = load_settings()
H = timedelta(hours=1)


def at(day: int, hour: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=UTC)


def build(conn) -> dict:
    cid = add_customer(conn, "K")
    t1, t2, t3, t4 = at(2, 2), at(3), at(4), at(5)
    o1 = add_order(conn, cid, received_at=t1, channel="website", ship_province="四川省", review_due_at=t1 + 24 * H,
                   promised_date=date(2026, 11, 6),
                   events=[("pending_review", t1), ("approved", t1 + 10 * H), ("allocated", t1 + 11 * H),
                           ("shipped", t1 + 30 * H), ("delivered", at(5, 6))])  # fmt: skip
    o2 = add_order(conn, cid, received_at=t2, channel="taobao", ship_province="四川省", review_due_at=t2 + 24 * H,
                   promised_date=date(2026, 11, 8),
                   events=[("pending_review", t2), ("approved", t2 + 30 * H), ("allocated", t2 + 31 * H),
                           ("shipped", t2 + 70 * H), ("delivered", at(10, 4)), ("returned", at(12))])  # fmt: skip
    o3 = add_order(
        conn,
        cid,
        received_at=t3,
        channel="website",
        ship_province="贵州省",
        state="auto_rejected",
        events=[("auto_rejected", t3 + H)],
    )
    o4 = add_order(conn, cid, received_at=t4, channel="taobao", ship_province="贵州省", review_due_at=t4 + 24 * H,
                   events=[("pending_review", t4), ("approved", t4 + 2 * H), ("allocated", t4 + 3 * H),
                           ("shipped", t4 + 32 * H), ("exception", t4 + 50 * H)])  # fmt: skip
    add_shipment(conn, o1, "zhongtong")
    s2 = add_shipment(conn, o2, "shunfeng")
    add_incident(conn, s2, o2, "damaged", at(9), carrier="shunfeng")
    add_shipment(conn, o4, "zhongtong")
    add_refund(conn, o4, 10_000, at(20))  # one matched payment line in November
    file_id = conn.execute(select(statement_files.c.id)).scalars().first()
    insert_rows(
        conn,
        payment_lines,
        pd.DataFrame(
            [
                {
                    "source": "bank",
                    "line_key": "U1",
                    "file_id": file_id,
                    "line_no": 2,
                    "kind": "payment",
                    "amount_fen": 777,
                    "txn_time": at(21),
                    "ingested_at": at(21),
                }
            ]
        ),
    )  # unmatched
    add_receivable(conn, o1, cid, 10_000, 0, date(2026, 11, 10))
    add_receivable(conn, o2, cid, 10_000, 5_000, date(2026, 11, 20))
    insert_rows(conn, feedback_items, pd.DataFrame([{
        "feedback_no": "F1", "dedupe_key": "F1", "channel": "phone", "received_at": at(6), "body": "破损",
        "order_id": o1, "category": "complaint", "first_response_due_at": at(6, 4), "resolution_due_at": at(8),
        "first_responded_at": at(6, 2), "resolved_at": at(8, 2)}]))  # fmt: skip
    insert_rows(
        conn,
        surveys,
        pd.DataFrame(
            [
                {
                    "survey_key": f"s{i}",
                    "code": f"S{i}",
                    "trigger": "delivery",
                    "order_id": o1,
                    "recipient": "x",
                    "medium": "sms",
                    "sent_at": at(7),
                    "score": score,
                    "replied_at": at(8),
                }
                for i, score in ((1, 4), (2, 5))
            ]
        ),
    )
    return {"o1": o1, "o2": o2, "o3": o3, "o4": o4}


EXPECTED = {
    "decision_hours_p50": 6.0,  # decisions after 10, 30, 1, 2 hours: median of [1, 2, 10, 30]
    "decision_hours_p90": 24.0,  # position 2.7: 10 + 0.7 x (30 - 10)
    "ship_hours_p50": 30.0,  # approved -> shipped 20, 40, 30 hours
    "ship_hours_p90": 38.0,  # position 1.8: 30 + 0.8 x 10
    "review_on_time_pct": 200 / 3,  # 2 of 3 manual decisions by the deadline (o2 took 30 h of 24)
    "on_time_delivery_pct": 50.0,  # o1 on 11-05 for 11-06; o2 on 11-10 for 11-08
    "exception_rate_pct": 200 / 3,  # of 3 shipped: o2 (damaged) and o4 (exception)
    "return_rate_pct": 50.0,  # of 2 delivered, o2 came back
    "refund_rate_pct": 25.0,  # o4 of 4 orders
    "collection_rate_pct": 75.0,  # 150.00 paid of 200.00 due in November
    "dso_days": 5.0,  # 50.00 outstanding / 300.00 sales (o3 rejected) x 30 days
    "settlement_match_pct": 50.0,  # 1 of 2 payment lines matched
    "complaint_rate_pct": 25.0,  # 1 complaint / 4 orders
    "response_hours_p50": 2.0,
    "resolution_hours_p50": 50.0,
    "satisfaction_score": 4.5,  # surveys 4 and 5
}


def test_each_kpi_equals_its_hand_computed_value(engine):
    with engine.begin() as conn:
        build(conn)
    report = compute_kpis(engine, SETTINGS, "2026-11", AS_OF)
    totals = report.totals().set_index("kpi")
    for name, value in EXPECTED.items():
        assert totals.at[name, "value"] == pytest.approx(value), name
    status = totals["status"].to_dict()
    assert (status["decision_hours_p50"], status["review_on_time_pct"], status["collection_rate_pct"],
            status["satisfaction_score"]) == ("green", "red", "red", "green")  # fmt: skip
    by_channel = report.values[
        (report.values["dimension"] == "channel") & (report.values["kpi"] == "decision_hours_p50")
    ].set_index("dimension_value")["value"]
    assert by_channel.to_dict() == {"taobao": 16.0, "website": 5.5}
    by_carrier = report.values[
        (report.values["dimension"] == "carrier") & (report.values["kpi"] == "on_time_delivery_pct")
    ].set_index("dimension_value")["value"]
    assert by_carrier.to_dict() == {"shunfeng": 0.0, "zhongtong": 100.0}
    kinds = report.values[report.values["dimension"] == "kind"].set_index("dimension_value")["value"]
    assert kinds.to_dict() == pytest.approx({"damaged": 100 / 3})
    trend = report.trend.set_index("kpi")
    assert list(trend.columns[:-1]) == previous_periods("2026-11", 6)
    assert trend.at["refund_rate_pct", "2026-11"] == 25.0 and pd.isna(trend.at["refund_rate_pct", "2026-10"])
    # stored once per period, kpi and dimension; a re-run updates in place
    compute_kpis(engine, SETTINGS, "2026-11", AS_OF + H)
    with engine.connect() as conn:
        stored = pd.read_sql(
            select(kpi_values.c.kpi).where(kpi_values.c.period == "2026-11", kpi_values.c.dimension == "all"),
            conn,
        )
    assert sorted(stored["kpi"]) == sorted(EXPECTED)


def test_periods_status_and_sparklines():
    assert parse_period("2026-12") == (date(2026, 12, 1), date(2027, 1, 1), "month")
    assert parse_period("2026-W48")[0] == date(2026, 11, 23)
    with pytest.raises(PeriodError):
        parse_period("Nov 2026")
    assert previous_periods("2027-01", 3) == ["2026-11", "2026-12", "2027-01"]
    assert rag(96, 95, 85) == "green" and rag(90, 95, 85) == "amber" and rag(80, 95, 85) == "red"
    assert rag(20, 8, 24, higher_is_better=False) == "amber"
    assert sparkline([0, 50, 100, None]) == "▁▅█ "


def _facts_store(conn) -> dict:
    """Orders whose facts test the event-log reading: repeated, out-of-order and non-state events, an order
    outside the window between two inside it, an order with two shipments, one with no events at all."""
    cid = add_customer(conn, "F")
    o1 = add_order(conn, cid, received_at=at(2), channel="taobao", ship_province="四川省",
                   events=[("pending_review", at(2, 1)), ("approved", at(2, 5)), ("shipped", at(4)),
                           ("shipped", at(3, 6)), ("delivered", at(6))])  # fmt: skip
    insert_rows(conn, order_events, pd.DataFrame([  # not a state event: ignored
        {"order_id": o1, "occurred_at": at(5), "actor": "t", "kind": "note", "from_state": "shipped",
         "to_state": "delivered"}]))  # fmt: skip
    o2 = add_order(conn, cid, received_at=at(3), review_due_at=at(4),
                   events=[("pending_review", at(3, 1)), ("rejected", at(3, 9))])  # fmt: skip
    o3 = add_order(conn, cid, received_at=at(3, 5), events=[("auto_rejected", at(3, 6))])
    outside = add_order(conn, cid, received_at=at(1), events=[("pending_review", at(1, 1)), ("approved", at(2, 1))])
    o5 = add_order(conn, cid, received_at=at(4), promised_date=date(2026, 11, 9),
                   events=[("pending_review", at(4, 1)), ("approved", at(4, 2)), ("shipped", at(5)),
                           ("exception", at(6)), ("delivered", at(8)), ("returned", at(9))])  # fmt: skip
    o6 = add_order(conn, cid, received_at=at(5))
    add_shipment(conn, o1, "zhongtong", expected_delivery_date=date(2026, 11, 7))
    add_shipment(conn, o5, "zhongtong", expected_delivery_date=date(2026, 11, 10))
    add_shipment(conn, o5, "shunfeng", expected_delivery_date=date(2026, 11, 8))
    add_shipment(conn, outside, "ems")
    add_refund(conn, o5, 500, at(20))
    add_refund(conn, outside, 500, at(20))
    return {"o1": o1, "o2": o2, "o3": o3, "outside": outside, "o5": o5, "o6": o6}


def test_facts_read_from_the_event_log_by_hand_on_both_databases(engine, monkeypatch):
    """Each milestone is the earliest state event into it (a manual decision: from pending_review); non-state
    events and orders received outside the window are left out; several shipments give the first carrier and
    the latest expected date. On SQLite every way of reading the events (exported in chunks by a table scan or
    through the index, in a second thread or on the same connection) gives these facts, and so does the query
    that groups them in the database (PostgreSQL's)."""
    with engine.begin() as conn:
        ids = _facts_store(conn)
    with engine.connect() as conn:
        facts = kpi_store.load_facts(conn, at(2), at(10)).set_index("order_id")
    assert list(facts.index) == [ids[k] for k in ("o1", "o2", "o3", "o5", "o6")]
    o1, o2, o3, o5, o6 = (facts.loc[ids[k]] for k in ("o1", "o2", "o3", "o5", "o6"))
    assert (o1["approved_at"], o1["manual_decided_at"], o1["shipped_at"], o1["delivered_at"]) == (
        pd.Timestamp(at(2, 5)), pd.Timestamp(at(2, 5)), pd.Timestamp(at(3, 6)), pd.Timestamp(at(6)))
    assert (o1["carrier"], o1["expected_date"], o1["channel"], o1["province"]) == (
        "zhongtong", pd.Timestamp(2026, 11, 7), "taobao", "四川省")
    assert (o2["decided_at"], o2["manual_decided_at"], o2["review_due_at"]) == (
        pd.Timestamp(at(3, 9)), pd.Timestamp(at(3, 9)), pd.Timestamp(at(4)))
    assert pd.isna(o2["approved_at"]) and pd.isna(o2["carrier"]) and pd.isna(o2["expected_date"])
    assert o3["decided_at"] == pd.Timestamp(at(3, 6)) and pd.isna(o3["manual_decided_at"])
    assert (o5["carrier"], o5["expected_date"], o5["promised_date"]) == (
        "shunfeng", pd.Timestamp(2026, 11, 10), pd.Timestamp(2026, 11, 9))
    assert (o5["returned"], o5["exception"], o5["refunded"], o1["returned"], o1["refunded"]) == (1, 1, 1, 0, 0)
    assert o6[kpi_store.MILESTONES].isna().all() and (o6["returned"], o6["exception"]) == (0, 0)
    if engine.dialect.name != "sqlite":
        return
    whole = kpi_store.load_facts  # the same facts by every SQLite way, in chunks of 3 events or 2 orders
    monkeypatch.setattr(kpi_store, "EVENT_CHUNK", 3)
    monkeypatch.setattr(kpi_store, "ORDER_CHUNK", 2)
    expected = facts.reset_index()
    for share in (0.0, 10.0):  # table scan, index
        monkeypatch.setattr(kpi_store, "SCAN_SHARE", share)
        for apart in (True, False):
            monkeypatch.setattr(kpi_store, "_file_database", lambda conn, apart=apart: apart)
            with engine.connect() as conn:
                pd.testing.assert_frame_equal(whole(conn, at(2), at(10)), expected)
    monkeypatch.setattr(kpi_store, "_file_database", lambda conn: True)
    with for_writing(engine).connect() as conn:  # holding the write lock: the second thread's reads do not wait
        conn.execute(select(orders.c.id)).all()
        pd.testing.assert_frame_equal(whole(conn, at(2), at(10)), expected)
    with engine.connect() as conn:
        grouped = kpi_store._milestones_grouped(conn, expected["order_id"].to_numpy())
    for name in kpi_store.MILESTONES:
        pd.testing.assert_series_equal(kpi_store._utc(grouped[name], True), expected[name], check_names=False)
    for name in kpi_store.FLAG_EVENTS:
        assert list(grouped[name]) == list(expected[name])
