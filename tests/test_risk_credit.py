"""K1 credit evaluation: each factor moves the score the right way (hand-computed), history and grade-change
events, downgrade notices, expiring overrides, and review applying the grade's measures to the next order."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pandas as pd
import pytest
from risk_data import (
    AS_OF,
    add_case,
    add_customer,
    add_dunning,
    add_incident,
    add_order,
    add_receivable,
    add_refund,
    add_shipment,
)
from sqlalchemy import func, select

from tasks.risk.credit_steps import OverrideError, evaluate_credit, override_grade
from yidi.bulk import insert_rows
from yidi.credit import effective_credit
from yidi.schema import notification_outbox, order_events
from yidi.schema_risk import credit_evaluations, customer_credit
from yidi.settings import load_settings

SETTINGS = load_settings()
DAY = timedelta(days=1)


def _baseline_orders(conn, cid, n=4, **values):
    """n settled orders received 100 days before AS_OF, each delivered: tenure 100 days, n orders."""
    start = AS_OF - 100 * DAY
    return [add_order(conn, cid, received_at=start, events=[("pending_review", start), ("approved", start),
                                                            ("delivered", start + 3 * DAY)], **values)
            for _ in range(n)]  # fmt: skip


def _build(conn) -> dict[str, int]:
    ids = {}
    for code in ("BASE", "DPD", "OVERDUE", "DUNNING", "CASES", "COD", "RETURNS", "REFUNDS", "REJECTED", "TENURE",
                 "VOLUME"):  # fmt: skip
        ids[code] = add_customer(conn, code)
    orders = {code: _baseline_orders(conn, cid, 8 if code == "VOLUME" else 4) for code, cid in ids.items()
              if code not in ("REJECTED", "COD")}  # fmt: skip
    add_receivable(conn, orders["DPD"][0], ids["DPD"], 10_000, 1_000, date(2026, 11, 10))  # 20 days, ¥10
    add_receivable(conn, orders["OVERDUE"][0], ids["OVERDUE"], 500_000, 500_000, date(2026, 11, 29))  # 1 day, ¥5000
    add_dunning(conn, ids["DUNNING"], orders["DUNNING"][0], 3, AS_OF - 10 * DAY)
    for _ in range(2):
        add_case(conn, ids["CASES"], orders["CASES"][0], "short_paid", AS_OF - 20 * DAY)
    cod = _baseline_orders(conn, ids["COD"], 3) + _baseline_orders(conn, ids["COD"], 1, payment_method="cod")
    shipment = add_shipment(conn, cod[-1])
    add_incident(conn, shipment, cod[-1], "refused", AS_OF - 90 * DAY)
    # RETURNS: one of its 4 delivered orders came back (1 of 4 = 25 %)
    insert_rows(conn, order_events, pd.DataFrame([{
        "order_id": orders["RETURNS"][0], "occurred_at": AS_OF - 80 * DAY, "actor": "t", "kind": "state",
        "from_state": "delivered", "to_state": "returned", "reason": "t"}]))  # fmt: skip
    add_refund(conn, orders["REFUNDS"][0], 10_000, AS_OF - 50 * DAY)
    _baseline_orders(conn, ids["REJECTED"], 3)
    add_order(conn, ids["REJECTED"], received_at=AS_OF - 100 * DAY, state="rejected",
              events=[("pending_review", AS_OF - 100 * DAY), ("rejected", AS_OF - 99 * DAY)])
    add_order(conn, ids["TENURE"], received_at=AS_OF - 3 * 365 * DAY, events=[])
    return ids


def _scores(engine) -> dict[int, tuple[float, str, dict]]:
    with engine.connect() as conn:
        rows = conn.execute(select(credit_evaluations.c.customer_id, credit_evaluations.c.score,
                                   credit_evaluations.c.grade, credit_evaluations.c.factors)).all()
    return {r.customer_id: (r.score, r.grade, json.loads(r.factors)) for r in rows}


def test_each_credit_factor_moves_the_score_the_right_way(engine):
    with engine.begin() as conn:
        ids = _build(conn)
    run = evaluate_credit(engine, SETTINGS, AS_OF, run_key="t1")
    scores = _scores(engine)
    by_code = {code: scores[cid] for code, cid in ids.items()}
    # 70 base + 100/365 years x 3 + 4 orders x 0.5
    assert by_code["BASE"][0] == 72.8 and by_code["BASE"][1] == "B"
    expected = {
        "DPD": ("days_past_due", 62.8),  # 20 days x -0.5 and ¥10 x -0.002
        "OVERDUE": ("overdue_yuan", 62.3),  # ¥5000 x -0.002 and 1 day x -0.5
        "DUNNING": ("dunning_step", 57.8),  # step 3 x -5
        "CASES": ("payment_cases", 62.8),  # 2 cases x -5
        "COD": ("cod_refusals", 64.8),  # 1 refusal x -8
        "RETURNS": ("return_rate_pct", 65.3),  # 25 % x -0.3
        "REFUNDS": ("refund_rate_pct", 67.8),  # 25 % x -0.2
        "REJECTED": ("rejection_rate_pct", 67.8),  # 25 % x -0.2
        "TENURE": ("tenure_years", 81.0),  # 3 years x 3
        "VOLUME": ("orders_last_year", 74.8),  # 8 orders x 0.5
    }
    for code, (factor, score) in expected.items():
        got, _grade, factors = by_code[code]
        assert got == score, code
        contribution = factors[factor]["contribution"]
        if factor in ("tenure_years", "orders_last_year"):
            assert contribution > by_code["BASE"][2][factor]["contribution"] and got > by_code["BASE"][0], code
        else:
            assert contribution < 0 and got < by_code["BASE"][0], code
    assert by_code["DUNNING"][1] == "C" and run.evaluated == len(ids)


def test_history_is_kept_and_a_downgrade_is_an_event_told_to_sales_and_finance(engine):
    with engine.begin() as conn:
        cid = add_customer(conn, "H")
        order_ids = _baseline_orders(conn, cid)
    first = evaluate_credit(engine, SETTINGS, AS_OF, run_key="r1")
    assert first.new_rows == 1 and first.downgrades == 0
    assert evaluate_credit(engine, SETTINGS, AS_OF, run_key="r1").new_rows == 0  # a re-run adds nothing
    with engine.begin() as conn:
        add_receivable(conn, order_ids[0], cid, 2_000_000, 2_000_000, date(2026, 10, 31))  # 40 days, ¥20,000
    second = evaluate_credit(engine, SETTINGS, AS_OF + DAY, run_key="r2")
    assert second.downgrades == 1
    with engine.connect() as conn:
        rows = conn.execute(select(credit_evaluations.c.grade, credit_evaluations.c.previous_grade)
                            .order_by(credit_evaluations.c.evaluated_at)).all()  # fmt: skip
        assert [tuple(r) for r in rows] == [("B", None), ("E", "B")]
        assert conn.execute(select(customer_credit.c.grade)).scalar_one() == "E"
        notices = conn.execute(select(notification_outbox.c.recipient, notification_outbox.c.template)).all()
    assert sorted(notices) == [("finance@example.com", "credit_downgrade"), ("sales@example.com", "credit_downgrade")]


def test_a_manager_override_applies_until_it_expires(engine):
    with engine.begin() as conn:
        cid = add_customer(conn, "OV")
        _baseline_orders(conn, cid)
    evaluate_credit(engine, SETTINGS, AS_OF, run_key="r1")
    with pytest.raises(OverrideError):
        override_grade(engine, SETTINGS, "OV", "A", "", "manager", 30, AS_OF)
    with pytest.raises(OverrideError):
        override_grade(engine, SETTINGS, "OV", "A", "long-standing partner", "manager", 400, AS_OF)
    override_grade(engine, SETTINGS, "OV", "A", "long-standing partner", "manager", 30, AS_OF)
    with engine.connect() as conn:
        during = effective_credit(conn, [cid], AS_OF + 29 * DAY, SETTINGS.credit)
        after = effective_credit(conn, [cid], AS_OF + 31 * DAY, SETTINGS.credit)
    assert during.iloc[0]["grade"] == "A" and during.iloc[0]["scored_grade"] == "B"
    assert after.iloc[0]["grade"] == "B"


def _review_findings(engine, order_id, settings):
    from review_data import run_auto_review

    from yidi.schema_review import review_findings

    run_auto_review(engine, [order_id], settings=settings, now=AS_OF + 2 * DAY, build_docs=False, keep_results=False)
    with engine.connect() as conn:
        return set(conn.execute(select(review_findings.c.reason_code)
                                .where(review_findings.c.order_id == order_id)).scalars())  # fmt: skip


def test_a_grade_change_changes_what_review_requires_of_the_next_order(engine):
    from review_data import insert_order, load_reference, variant

    with engine.begin() as conn:
        load_reference(conn)
        cid = add_customer(conn, "G")
        order_ids = _baseline_orders(conn, cid)
        first = insert_order(conn, variant(customer="G", payment_method="cod", payment_state="unpaid"), {"G": cid})
    evaluate_credit(engine, SETTINGS, AS_OF, run_key="r1")  # grade B: no measures beyond the usual
    assert _review_findings(engine, first, SETTINGS) == {"PAYMENT_SPECIAL_REVIEW"}
    with engine.begin() as conn:
        add_receivable(conn, order_ids[0], cid, 2_000_000, 2_000_000, date(2026, 10, 31))
        second = insert_order(conn, variant(customer="G", payment_method="cod", payment_state="unpaid"), {"G": cid})
    evaluate_credit(engine, SETTINGS, AS_OF + DAY, run_key="r2")  # grade E
    assert _review_findings(engine, second, SETTINGS) == {
        "PAYMENT_SPECIAL_REVIEW", "CREDIT_GRADE_REVIEW", "CREDIT_GUARANTEE_REQUIRED", "CREDIT_GRADE_COD_REFUSED",
        "CREDIT_PREPAYMENT_REQUIRED"}  # fmt: skip
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(credit_evaluations)
                            .where(credit_evaluations.c.customer_id == cid)).scalar_one() == 2  # fmt: skip
