"""The review's pure rules without a database (verdicts, deadlines' backlog, the reviewer's input, the texts people
read), and the credit check counting the settlement ledger through its table definition."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest
from review_data import insert_order, load_reference, variant
from sqlalchemy import select

from tasks.review.rules import (
    ChunkSummary,
    InvalidDecision,
    backlog_by_age,
    credit_summary,
    decide,
    validate_decision,
)

NOW = datetime(2026, 11, 3, 1, 0, tzinfo=UTC)


def test_a_reject_finding_rejects_and_anything_else_waits_for_a_person():
    failures = pd.DataFrame({"order_id": [1, 1, 2, 9], "severity": ["reject", "note", "needs_review", "reject"]})
    decided = decide(pd.Index([1, 2, 3]), failures)
    assert decided["outcome"].tolist() == ["auto_rejected", "pending_review", "pending_review"]
    assert decided[["reject_count", "review_count", "note_count"]].values.tolist() == [[1, 0, 1], [0, 1, 0], [0, 0, 0]]


def test_backlog_counts_pending_orders_by_their_deadline():
    due = [NOW + timedelta(hours=10), NOW + timedelta(hours=2), NOW - timedelta(hours=5), NOW - timedelta(days=2),
           NOW - timedelta(days=5)]  # fmt: skip
    backlog = backlog_by_age(pd.DataFrame({"review_due_at": due}), NOW)
    assert backlog["orders"].tolist() == [1, 1, 1, 1, 1]
    assert backlog_by_age(pd.DataFrame(), NOW)["orders"].sum() == 0


@pytest.mark.parametrize(("decision", "reviewer", "reason", "solution", "message"), [
    ("maybe", "li", None, None, "approve or reject"),
    ("approve", " ", None, None, "reviewer name"),
    ("reject", "li", "x", "请重新下单", "reason"),
    ("reject", "li", "价格不符", "", "proposed solution"),
])  # fmt: skip
def test_a_decision_needs_a_reviewer_and_a_rejection_a_reason_and_a_solution(decision, reviewer, reason, solution,
                                                                               message):
    with pytest.raises(InvalidDecision, match=message):
        validate_decision(decision, reviewer, reason, solution)
    validate_decision("reject", "li", "价格不符", "请重新下单")


def test_credit_summary_names_exposure_limit_and_overdue_in_yuan():
    credit = json.dumps({"exposure_fen": 123_456_78, "limit_fen": 100_000_00, "overdue_fen": 0, "important": True})
    assert credit_summary(credit) == ("credit check (important customer): NOT OK: exposure ¥123,456.78 of limit "
                                      "¥100,000.00, overdue ¥0.00")  # fmt: skip
    assert credit_summary(None) is None and credit_summary(float("nan")) is None


def test_chunk_summaries_survive_a_task_result():
    one = ChunkSummary(checked=3, auto_rejected=1, pending_review=2, notices=1)
    one.by_reason.update({"PHONE_INVALID": 1})
    back = ChunkSummary.from_dict({**one.as_dict(), "run_key": "k", "candidates": 3})
    assert back == one


def test_open_ledger_items_count_towards_credit_with_their_due_dates(sqlite_engine):
    """The settlement ledger is read through ``yidi.schema_settlement.receivables`` (no reflection at run time)."""
    from tasks.review.store import receivables_by_customer
    from yidi.bulk import insert_rows
    from yidi.schema import customers
    from yidi.schema_settlement import receivables
    from yidi.settings import Settings

    with sqlite_engine.begin() as conn:
        load_reference(conn)
        customer = conn.execute(select(customers.c.id, customers.c.net_days).limit(1)).first()
        first = insert_order(conn, variant(state="delivered"))
        second = insert_order(conn, variant(state="delivered"))
        insert_rows(conn, receivables, pd.DataFrame({
            "order_id": [first, second], "installment_no": 1, "customer_id": customer.id, "payment_terms": "net",
            "due_date": [date(2026, 10, 1), date(2026, 12, 1)], "amount_fen": [5_000, 7_000], "paid_fen": 0,
            "outstanding_fen": [5_000, 7_000], "status": "open", "updated_at": NOW,
        }))  # fmt: skip
        frame = receivables_by_customer(conn, [customer.id], pd.DataFrame({"id": [customer.id], "net_days": [0]}),
                                        Settings(), NOW)  # fmt: skip
    assert frame[["receivable_fen", "overdue_fen"]].values.tolist() == [[12_000, 5_000]]
    assert frame.attrs["ledger_order_ids"] == {first, second}
