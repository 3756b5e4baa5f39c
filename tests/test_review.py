"""Automated review (V1–V5), reviewer decisions (V6) and deadlines, against the real store on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from review_data import (
    CASES,
    POLICY,
    SEVERAL_CODES,
    SH,
    build_store,
    insert_order,
    load_reference,
    run_auto_review,
    variant,
)
from sqlalchemy import func, select, update

from expectations.reasons import REASONS
from tasks.notifications import render
from tasks.review.deadlines import check_deadlines
from tasks.review.decisions import apply_decision
from tasks.review.rules import InvalidDecision, review_deadline
from tasks.review.store import current_findings
from yidi.bulk import read_frame
from yidi.schema import notification_outbox, order_events, orders
from yidi.schema_review import review_checks, review_decisions, review_findings
from yidi.settings import SettingsError, load_settings

NOW = datetime(2026, 11, 3, 9, 0, tzinfo=SH)


@pytest.fixture
def policy(tmp_path, monkeypatch):
    path = tmp_path / "yidi.toml"
    path.write_text(POLICY, encoding="utf-8")
    monkeypatch.setenv("YIDI_CONFIG", str(path))
    from yidi.settings import get_settings

    get_settings.cache_clear()
    return load_settings(path)


def _shared_engine(kind: str, folder):
    """A store for the whole module (building and reviewing ~45 orders once, not per test)."""
    import uuid

    from conftest import POSTGRES_URL, REQUIRE_POSTGRES, postgres_problem
    from sqlalchemy import text

    from yidi.db import init_db, make_engine

    if kind == "sqlite":
        engine = make_engine(f"sqlite:///{folder / 'review.db'}")
        init_db(engine)
        return engine, None
    problem = postgres_problem()
    if problem:
        if REQUIRE_POSTGRES:
            pytest.fail(problem)
        pytest.skip(problem)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    engine = make_engine(f"{POSTGRES_URL}?options=-csearch_path%3D{schema}")
    init_db(engine)
    return engine, (admin, schema)


@contextmanager
def _reviewed_store(kind: str, folder: Path):
    """Every case order in a fresh store, reviewed once: (engine, case -> order id, run result, states after review)."""
    (folder / "yidi.toml").write_text(POLICY, encoding="utf-8")
    settings = load_settings(folder / "yidi.toml")
    engine, cleanup = _shared_engine(kind, folder)
    try:
        with engine.begin() as conn:
            ids = build_store(conn)
        result = run_auto_review(engine, list(ids.values()), settings=settings, now=NOW, build_docs=False,
                             keep_results=False)  # fmt: skip
        with engine.connect() as conn:
            states = dict(conn.execute(select(orders.c.id, orders.c.state)).all())
        yield engine, ids, result, states
    finally:
        engine.dispose()
        if cleanup:
            from sqlalchemy import text

            admin, schema = cleanup
            with admin.begin() as conn:
                conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
            admin.dispose()


DATABASES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(scope="module", params=DATABASES)
def reviewed(request, tmp_path_factory):
    """The reviewed store shared by the tests that only read it (built once per database)."""
    with _reviewed_store(request.param, tmp_path_factory.mktemp("review")) as store:
        yield store


@pytest.fixture(params=DATABASES)
def reviewed_to_change(request, tmp_path_factory):
    """A reviewed store of its own, for a test that changes orders (so tests pass in any order)."""
    with _reviewed_store(request.param, tmp_path_factory.mktemp("review")) as store:
        yield store


def findings_by_order(conn) -> dict[int, set[str]]:
    frame = read_frame(conn, select(review_findings.c.order_id, review_findings.c.reason_code))
    return frame.groupby("order_id")["reason_code"].agg(set).to_dict()


def test_every_reason_code_fires_and_the_clean_order_has_none(reviewed):
    engine, ids, result, states = reviewed
    with engine.connect() as conn:
        found = findings_by_order(conn)
    wrong = {name: (codes, found.get(ids[name], set())) for name, (_, codes) in CASES.items()
             if found.get(ids[name], set()) != codes}  # fmt: skip
    assert not wrong, f"expected vs found: {wrong}"
    fired = set().union(*found.values())
    assert fired == set(REASONS), f"never triggered: {set(REASONS) - fired}"
    assert result["checked"] == len(ids) and result["unchanged"] == 0
    # V5: a reject-severity finding rejects automatically, anything else waits for a person.
    for name, (_, codes) in CASES.items():
        rejects = any(REASONS[c].default_severity == "reject" for c in codes)
        assert states[ids[name]] == ("auto_rejected" if rejects else "pending_review"), name


def test_several_failures_give_every_reason_to_the_customer(reviewed, policy):
    engine, ids, _, _ = reviewed
    with engine.connect() as conn:
        found = findings_by_order(conn)[ids["several"]]
        notices = read_frame(conn, select(notification_outbox).where(notification_outbox.c.order_id == ids["several"]))
    assert found == SEVERAL_CODES
    # No valid mobile: the customer is told by email, with every reject reason.
    assert list(notices["medium"]) == ["email"]
    context = json.loads(notices["context"].iloc[0])
    assert len(context["reasons"]) == len(SEVERAL_CODES)
    _subject, body = render("order_auto_rejected", context, policy)
    for code in SEVERAL_CODES:
        assert REASONS[code].zh.split("（")[0] in body


def test_auto_rejection_records_reasons_and_queues_notices(reviewed):
    engine, ids, _, _ = reviewed
    oid = ids["method_paypal"]
    with engine.connect() as conn:
        events = read_frame(conn, select(order_events).where(order_events.c.order_id == oid))
        notices = read_frame(conn, select(notification_outbox).where(notification_outbox.c.order_id == oid))
        findings = current_findings(conn, [oid])
    state_event = events[events["kind"] == "state"].iloc[-1]
    assert state_event["to_state"] == "auto_rejected"
    assert json.loads(state_event["details"])["reasons"] == ["PAYMENT_METHOD_NOT_ALLOWED"]
    assert sorted(notices["medium"]) == ["email", "sms"]
    assert notices["dedupe_key"].str.startswith(f"review:auto_rejected:{oid}:").all()
    assert findings.iloc[0]["message_zh"] == REASONS["PAYMENT_METHOD_NOT_ALLOWED"].zh


def test_line_and_credit_findings_say_which_lines_and_figures(reviewed):
    engine, ids, _, _ = reviewed
    with engine.connect() as conn:
        unknown = current_findings(conn, [ids["item_unknown"]]).iloc[0]
        credit = current_findings(conn, [ids["credit_limit"]]).iloc[0]
    assert json.loads(unknown["details"]) == {"lines": [1]}
    figures = json.loads(credit["details"])
    # Open unpaid order already in the store (21,000) + this one (21,000) against a 30,000 limit.
    assert figures["exposure_fen"] == 42_000 and figures["limit_fen"] == 30_000


def test_pending_orders_get_a_working_day_deadline(reviewed, policy):
    engine, ids, _, _ = reviewed
    with engine.connect() as conn:
        due = conn.execute(select(orders.c.review_due_at).where(orders.c.id == ids["clean"])).scalar_one()
    assert due == review_deadline(NOW, policy) == datetime(2026, 11, 5, 9, 0, tzinfo=SH)


def test_rerunning_the_review_changes_nothing(reviewed, policy):
    engine, ids, _, _ = reviewed

    def snapshot():
        with engine.connect() as conn:
            return {table.name: conn.execute(select(func.count()).select_from(table)).scalar_one()
                    for table in (review_checks, review_findings, order_events, notification_outbox)} | {
                "states": sorted(conn.execute(select(orders.c.id, orders.c.state, orders.c.version)).all())}

    before = snapshot()
    again = run_auto_review(engine, list(ids.values()), settings=policy, now=NOW + timedelta(hours=1),
                        keep_results=False)
    assert again["checked"] == 0 and again["candidates"] == 0
    assert snapshot() == before


def test_an_order_changed_at_the_source_is_checked_again(reviewed_to_change, policy):
    engine, ids, _, _ = reviewed_to_change
    oid = ids["method_paypal"]
    with engine.begin() as conn:
        conn.execute(update(orders).where(orders.c.id == oid).values(payment_method="alipay", content_hash="fixed"))
    result = run_auto_review(engine, [oid], settings=policy, now=NOW, keep_results=False)
    assert result["checked"] == 1 and result["pending_review"] == 1
    with engine.connect() as conn:
        assert conn.execute(select(orders.c.state).where(orders.c.id == oid)).scalar_one() == "pending_review"
        assert current_findings(conn, [oid]).empty  # the latest check is clean; the old one stays as history
        assert conn.execute(select(func.count()).select_from(review_checks)
                            .where(review_checks.c.order_id == oid)).scalar_one() == 2  # fmt: skip


def test_severity_comes_from_the_policy_file(sqlite_engine, tmp_path):
    engine = sqlite_engine
    path = tmp_path / "strict.toml"
    path.write_text(POLICY + '\n[review.severity]\nREGION_UNKNOWN = "reject"\n', encoding="utf-8")
    settings = load_settings(path)
    with engine.begin() as conn:
        ids = load_reference(conn)
        oid = insert_order(conn, variant(region="unknown"), ids)
    run_auto_review(engine, [oid], settings=settings, now=NOW, keep_results=False)
    with engine.connect() as conn:
        assert conn.execute(select(orders.c.state).where(orders.c.id == oid)).scalar_one() == "auto_rejected"
    path.write_text('[review.severity]\nNO_SUCH_CODE = "reject"\n', encoding="utf-8")
    from expectations.engine import ReviewValidator

    with pytest.raises(SettingsError, match="NO_SUCH_CODE"):
        ReviewValidator(load_settings(path))


def test_a_policy_that_approves_clean_orders_approves_them_and_leaves_the_rest_to_people(engine, tmp_path):
    """``[review] auto_approve_clean`` (off by default: V5 sends every order that passes to a person): an order that
    passed every check (a note is no finding for a person) is approved in the same run, after its pending_review
    event, by the automated review, and the customer is told as for a reviewer's approval; an order with a
    needs_review finding still waits with a deadline; one with a reject finding is still auto-rejected."""
    path = tmp_path / "approve-clean.toml"
    path.write_text(POLICY + "\n[review]\nauto_approve_clean = true\n", encoding="utf-8")
    settings = load_settings(path)
    assert load_settings(None).review.auto_approve_clean is False  # the shipped default: V5 as specified
    with engine.begin() as conn:
        ids = load_reference(conn)
        clean = insert_order(conn, variant(), ids)
        local = insert_order(conn, CASES["region_local"][0], ids)  # REGION_LOCAL is a note
        cod = insert_order(conn, CASES["cod"][0], ids)  # PAYMENT_SPECIAL_REVIEW: a person looks
        blocked = insert_order(conn, CASES["blocked"][0], ids)  # CUSTOMER_BLOCKED: rejected
    result = run_auto_review(engine, [clean, local, cod, blocked], settings=settings, now=NOW, keep_results=False)
    assert (result["checked"], result["auto_approved"], result["pending_review"], result["auto_rejected"]) == (
        4, 2, 1, 1)
    with engine.connect() as conn:
        states = dict(conn.execute(select(orders.c.id, orders.c.state).where(
            orders.c.id.in_([clean, local, cod, blocked]))).all())  # fmt: skip
        due = dict(conn.execute(select(orders.c.id, orders.c.review_due_at).where(
            orders.c.id.in_([clean, cod])).order_by(orders.c.id)).all())  # fmt: skip
        moves = conn.execute(select(order_events.c.from_state, order_events.c.to_state, order_events.c.actor,
                                    order_events.c.reason).where(order_events.c.order_id == clean,
                                                                 order_events.c.kind == "state")
                             .order_by(order_events.c.id)).all()  # fmt: skip
        notices = conn.execute(select(notification_outbox.c.order_id, notification_outbox.c.template,
                                      notification_outbox.c.medium).where(
            notification_outbox.c.template.in_(["order_approved", "order_auto_rejected"]))
            .order_by(notification_outbox.c.order_id, notification_outbox.c.medium)).all()  # fmt: skip
    assert states == {clean: "approved", local: "approved", cod: "pending_review", blocked: "auto_rejected"}
    assert due[clean] is None and due[cod] is not None  # only an order waiting for a person has a deadline
    assert [(m.from_state, m.to_state) for m in moves] == [("received", "pending_review"),
                                                           ("pending_review", "approved")]
    assert "auto_approve_clean" in moves[1].reason and moves[1].actor == moves[0].actor
    # each approved customer hears it on both media (mobile and email), the rejected one why
    assert [(n.order_id, n.template, n.medium) for n in notices] == [
        (clean, "order_approved", "email"), (clean, "order_approved", "sms"),
        (local, "order_approved", "email"), (local, "order_approved", "sms"),
        (blocked, "order_auto_rejected", "email"), (blocked, "order_auto_rejected", "sms")]
    again = run_auto_review(engine, [clean, local, cod, blocked], settings=settings, now=NOW, keep_results=False)
    assert (again["checked"], again["auto_approved"]) == (0, 0)  # checked once per content


# --- reviewer decisions ---------------------------------------------------------------------------------------------


def state_of(engine, oid):
    with engine.connect() as conn:
        return conn.execute(select(orders.c.state).where(orders.c.id == oid)).scalar_one()


def test_approve_and_reject_with_reason_and_solution(reviewed_to_change, policy):
    engine, ids, _, _ = reviewed_to_change
    ok = apply_decision(engine, ids["clean"], "approve", "alice", settings=policy)
    assert ok.applied and state_of(engine, ids["clean"]) == "approved"
    no = apply_decision(engine, ids["price_low"], "reject", "bob", reason="单价低于价格政策",
                        proposed_solution="按目录价 100 元重新下单", settings=policy)  # fmt: skip
    assert no.applied and state_of(engine, ids["price_low"]) == "rejected"
    with engine.connect() as conn:
        notice = read_frame(conn, select(notification_outbox).where(
            notification_outbox.c.order_id == ids["price_low"], notification_outbox.c.template == "order_review_rejected"))
        decision = conn.execute(select(review_decisions).where(review_decisions.c.order_id == ids["price_low"])).one()
    _subject, body = render("order_review_rejected", notice["context"].iloc[0], policy)
    assert "单价低于价格政策" in body and "按目录价 100 元重新下单" in body
    assert decision.reviewer == "bob" and decision.source == "cli"


@pytest.mark.parametrize("decision,reviewer,reason,solution,message", [
    ("reject", "bob", "", "重新下单", "reason"),
    ("reject", "bob", "价格不符", "", "proposed solution"),
    ("approve", " ", None, None, "reviewer"),
    ("maybe", "bob", None, None, "approve or reject"),
])  # fmt: skip
def test_invalid_reviewer_input_is_refused_and_the_order_stays_pending(
    sqlite_engine, policy, decision, reviewer, reason, solution, message
):
    with sqlite_engine.begin() as conn:
        oid = insert_order(conn, variant(state="pending_review"), load_reference(conn))
    with pytest.raises(InvalidDecision, match=message):
        apply_decision(sqlite_engine, oid, decision, reviewer, reason=reason, proposed_solution=solution,
                       settings=policy)  # fmt: skip
    assert state_of(sqlite_engine, oid) == "pending_review"
    with sqlite_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(review_decisions)).scalar_one() == 0


def test_two_reviewers_on_the_same_order_one_wins(reviewed_to_change, policy):
    engine, ids, _, _ = reviewed_to_change
    oid = ids["cod"]  # pending review (cash on delivery always goes to a person)
    with engine.connect() as conn:
        version = conn.execute(select(orders.c.version).where(orders.c.id == oid)).scalar_one()
    first = apply_decision(engine, oid, "approve", "alice", source="ui", seen_version=version, settings=policy)
    second = apply_decision(engine, oid, "reject", "bob", reason="价格不符", proposed_solution="重新报价",
                            seen_version=version, settings=policy)  # fmt: skip
    assert first.applied and not second.applied
    assert "already approved by alice" in second.message and "not applied" in second.message
    assert state_of(engine, oid) == "approved"
    with engine.connect() as conn:
        decisions = conn.execute(select(review_decisions.c.reviewer).where(review_decisions.c.order_id == oid)).all()
    assert [d.reviewer for d in decisions] == ["alice"]


def test_a_decision_on_a_changed_order_is_refused(sqlite_engine, policy):
    with sqlite_engine.begin() as conn:
        oid = insert_order(conn, variant(state="pending_review"), load_reference(conn))
        conn.execute(update(orders).where(orders.c.id == oid).values(version=orders.c.version + 1))
    result = apply_decision(sqlite_engine, oid, "approve", "alice", seen_version=1, settings=policy)
    assert not result.applied and "changed since it was shown" in result.message
    assert state_of(sqlite_engine, oid) == "pending_review"


# --- deadlines on the official calendar --------------------------------------------------------------------------------


@pytest.mark.parametrize("became_pending,expected", [
    # Spring Festival 2026: Sat 14 Feb is a make-up working day; 15-23 Feb are holidays.
    (datetime(2026, 2, 13, 15, 0, tzinfo=SH), datetime(2026, 2, 24, 15, 0, tzinfo=SH)),
    (datetime(2026, 2, 14, 10, 0, tzinfo=SH), datetime(2026, 2, 25, 10, 0, tzinfo=SH)),
    # ... and Sat 28 Feb is a make-up working day too.
    (datetime(2026, 2, 26, 9, 30, tzinfo=SH), datetime(2026, 2, 28, 9, 30, tzinfo=SH)),
    # National Day 2026: Sun 20 Sep is a make-up working day (Mid-autumn 25-27 Sep off), 1-7 Oct off, Sat 10 Oct works.
    (datetime(2026, 9, 19, 11, 0, tzinfo=SH), datetime(2026, 9, 21, 11, 0, tzinfo=SH)),
    (datetime(2026, 9, 30, 16, 0, tzinfo=SH), datetime(2026, 10, 9, 16, 0, tzinfo=SH)),
    (datetime(2026, 10, 9, 8, 0, tzinfo=SH), datetime(2026, 10, 12, 8, 0, tzinfo=SH)),
])  # fmt: skip
def test_review_deadline_follows_the_official_calendar(policy, became_pending, expected):
    assert review_deadline(became_pending.astimezone(UTC), policy) == expected


def test_reminder_before_and_escalation_after_the_deadline_once_each(sqlite_engine, policy):
    engine = sqlite_engine
    # Both became pending on Wed 30 Sep 2026, before National Day: due Fri 9 Oct at 16:00 and at 10:00.
    soon_due = review_deadline(datetime(2026, 9, 30, 16, 0, tzinfo=SH), policy)
    late_due = review_deadline(datetime(2026, 9, 30, 10, 0, tzinfo=SH), policy)
    assert (soon_due, late_due) == (datetime(2026, 10, 9, 16, 0, tzinfo=SH), datetime(2026, 10, 9, 10, 0, tzinfo=SH))
    with engine.begin() as conn:
        ids = load_reference(conn)
        soon = insert_order(conn, variant(state="pending_review", review_due_at=soon_due), ids)
        late = insert_order(conn, variant(state="pending_review", review_due_at=late_due), ids)
    check_at = datetime(2026, 10, 9, 13, 0, tzinfo=SH)  # 3 h before one deadline, 3 h after the other
    report = check_deadlines(engine, now=check_at, settings=policy)
    with engine.connect() as conn:
        numbers = dict(conn.execute(select(orders.c.id, orders.c.order_no)).all())
    assert report.reminded == [numbers[soon]] and report.escalated == [numbers[late]]
    assert dict(zip(report.backlog["bucket"], report.backlog["orders"], strict=True))["overdue < 1 day"] == 1
    again = check_deadlines(engine, now=check_at + timedelta(hours=1), settings=policy)
    assert again.reminded == [] and again.escalated == []
    with engine.connect() as conn:
        outbox = read_frame(conn, select(notification_outbox).where(notification_outbox.c.template.like("review_%")))
        escalations = read_frame(conn, select(order_events).where(order_events.c.kind == "review",
                                                                  order_events.c.order_id == late))  # fmt: skip
    assert sorted(outbox["template"]) == ["review_escalation", "review_reminder"]
    assert set(outbox["recipient"]) == {policy.review.escalation_contact, *policy.review.reviewer_contacts}
    assert len(escalations) == 1 and "escalated" in escalations["reason"].iloc[0]
    escalation = outbox[outbox["template"] == "review_escalation"].iloc[0]
    _subject, body = render("review_escalation", escalation["context"], policy)
    assert "李*" in body and "李明" not in body  # masked in staff mail too
    # Days later: the other order is overdue now and escalated; each order once only.
    assert check_deadlines(engine, now=check_at + timedelta(days=3), settings=policy).escalated == [numbers[soon]]
    assert check_deadlines(engine, now=check_at + timedelta(days=4), settings=policy).escalated == []


def test_pending_orders_moved_back_by_another_area_get_a_deadline(sqlite_engine, policy):
    from yidi.lifecycle import transition_orders

    with sqlite_engine.begin() as conn:
        oid = insert_order(conn, variant(state="approved"), load_reference(conn))
        transition_orders(conn, [oid], "pending_review", reason="changed at the source", actor="intake")
    check_deadlines(sqlite_engine, now=NOW, settings=policy)
    with sqlite_engine.connect() as conn:
        due = conn.execute(select(orders.c.review_due_at).where(orders.c.id == oid)).scalar_one()
    assert due is not None and due > datetime.now(UTC)


def test_long_id_lists_go_through_a_temporary_table(engine):
    """Chunks of 200k orders are read with one query each (a temporary id table), on both databases."""
    import pandas as pd

    from yidi.bulk import IN_LIST_SIZE, insert_rows, read_in

    count = IN_LIST_SIZE * 2 + 17
    with engine.begin() as conn:
        insert_rows(conn, orders, pd.DataFrame({"order_no": [f"T{i}" for i in range(count)], "channel": "t",
                                                "channel_order_id": [f"T{i}" for i in range(count)]}))  # fmt: skip
        ids = [i for (i,) in conn.execute(select(orders.c.id)).all()]
        numbers = read_in(conn, lambda chosen: select(orders.c.id, orders.c.order_no)
                           .where(orders.c.id.in_(chosen)), ids[:-5] + ids[:3])  # fmt: skip
        by_text = read_in(conn, lambda chosen: select(orders.c.id).where(orders.c.order_no.in_(chosen)),
                           [f"T{i}" for i in range(count)])  # fmt: skip
    assert sorted(numbers["id"]) == sorted(ids[:-5]) and len(by_text) == count
