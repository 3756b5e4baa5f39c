"""Issue 20: who may decide what — listed staff with roles, separated duties, refusals that leave orders as they were."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from review_data import insert_order, load_reference, variant
from sqlalchemy import func, select
from typer.testing import CliRunner

from app.cli.main import cli
from tasks.review.decisions import apply_decision
from tasks.review.rules import InvalidDecision
from yidi.bulk import insert_rows, utc_now
from yidi.schema import intake_records, order_events, orders
from yidi.schema_settlement import settlement_case_events, settlement_cases
from yidi.settings import load_settings
from yidi.staff import NotPermitted, StaffPolicy, act_as

STAFF = """
[staff]
people = [
  { name = "li.wei", login = "liwei", roles = ["reviewer"] },
  { name = "zhang.min", login = "zmin", roles = ["finance"] },
  { name = "wang.fang", login = "wfang", roles = ["reviewer", "finance"] },
  { name = "chen.jie", login = "cjie", roles = ["manager", "auditor"] },
]
"""
runner = CliRunner()


@pytest.fixture
def staffed(tmp_path, monkeypatch):
    path = tmp_path / "yidi.toml"
    path.write_text(STAFF, encoding="utf-8")
    monkeypatch.setenv("YIDI_CONFIG", str(path))
    return load_settings(path)


def _pending(engine) -> int:
    with engine.begin() as conn:
        return insert_order(conn, variant(state="pending_review"), load_reference(conn))


def _state(engine, oid) -> str:
    with engine.connect() as conn:
        return conn.execute(select(orders.c.state).where(orders.c.id == oid)).scalar_one()


def _events(engine, oid) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(order_events).where(order_events.c.order_id == oid)
                            ).scalar_one()  # fmt: skip


@pytest.mark.parametrize("who,needed", [("somebody", "not listed staff"), ("zhang.min", "lacks the reviewer role")])
def test_unknown_person_or_wrong_role_is_refused_and_the_order_stays_pending(engine, staffed, who, needed):
    oid = _pending(engine)
    before = _events(engine, oid)
    with pytest.raises(InvalidDecision, match=needed) as refused:
        apply_decision(engine, oid, "approve", who, settings=staffed)
    assert "reviewer role" in str(refused.value)
    assert _state(engine, oid) == "pending_review" and _events(engine, oid) == before


def test_a_listed_reviewer_by_login_is_recorded_as_person_and_role(engine, staffed):
    oid = _pending(engine)
    result = apply_decision(engine, oid, "approve", "LIWEI", settings=staffed)
    assert result.applied and _state(engine, oid) == "approved"
    with engine.connect() as conn:
        event = conn.execute(select(order_events).where(order_events.c.order_id == oid, order_events.c.to_state ==
                                                        "approved")).one()  # fmt: skip
    assert event.actor == "reviewer:li.wei"
    details = json.loads(event.details) if isinstance(event.details, str) else event.details
    assert details["person"] == "li.wei" and details["role"] == "reviewer" and details["listed"] is True


def test_cli_refuses_an_unlisted_reviewer_with_exit_1(engine, staffed, monkeypatch):
    oid = _pending(engine)
    monkeypatch.setenv("YIDI_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    refused = runner.invoke(cli, ["review", "approve", str(oid), "--as", "mallory"])
    assert refused.exit_code == 1 and "reviewer role" in refused.output
    assert _state(engine, oid) == "pending_review"
    done = runner.invoke(cli, ["review", "approve", str(oid), "--as", "wang.fang"])
    assert done.exit_code == 0, done.output
    assert _state(engine, oid) == "approved"


def test_keying_in_an_order_and_approving_it_are_separate_duties(engine, staffed):
    oid = _pending(engine)
    with engine.begin() as conn:
        insert_rows(conn, intake_records, pd.DataFrame([{
            "channel": "phone", "source_ref": "form:liwei", "content_hash": f"h-{oid}", "content": "{}",
            "order_id": oid}]))  # fmt: skip
    with pytest.raises(InvalidDecision, match="key_and_approve"):
        apply_decision(engine, oid, "approve", "li.wei", settings=staffed)
    assert _state(engine, oid) == "pending_review"
    assert apply_decision(engine, oid, "approve", "wang.fang", settings=staffed).applied


def _case(engine, oid) -> int:
    now = utc_now()
    with engine.begin() as conn:
        insert_rows(conn, settlement_cases, pd.DataFrame([{
            "case_key": f"unpaid:{oid}", "case_class": "unpaid", "order_id": oid, "amount_fen": 100,
            "summary": "no payment", "opened_at": now, "updated_at": now}]))  # fmt: skip
        return conn.execute(select(settlement_cases.c.id).where(settlement_cases.c.order_id == oid)).scalar_one()


def test_approving_an_order_and_resolving_its_payment_case_are_separate_duties(engine, staffed, monkeypatch):
    oid = _pending(engine)
    assert apply_decision(engine, oid, "approve", "wang.fang", settings=staffed).applied
    case_id = _case(engine, oid)
    monkeypatch.setenv("YIDI_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    resolve = ["settlement", "cases", "resolve", str(case_id), "-m", "paid in cash"]
    breach = runner.invoke(cli, [*resolve, "--as", "wfang"])
    assert breach.exit_code == 1 and "approve_and_resolve" in breach.output
    wrong_role = runner.invoke(cli, [*resolve, "--as", "li.wei"])
    assert wrong_role.exit_code == 1 and "finance role" in wrong_role.output
    with engine.connect() as conn:
        assert conn.execute(select(settlement_cases.c.status).where(settlement_cases.c.id == case_id)
                            ).scalar_one() == "open"  # fmt: skip
    done = runner.invoke(cli, [*resolve, "--as", "zhang.min"])
    assert done.exit_code == 0, done.output
    with engine.connect() as conn:
        actor = conn.execute(select(settlement_case_events.c.actor).where(
            settlement_case_events.c.case_id == case_id, settlement_case_events.c.action == "resolved")).scalar_one()
    assert actor == "finance:zhang.min"


def test_override_and_audit_need_manager_and_auditor(staffed):
    assert "manager role" in runner.invoke(cli, ["risk", "override", "K", "A", "--reason", "x", "--as", "li.wei"]
                                           ).output  # fmt: skip
    refused = runner.invoke(cli, ["audit", "verify", "1", "--as", "zhang.min"])
    assert refused.exit_code == 1 and "auditor role" in refused.output


def test_bootstrap_and_its_end():
    open_install = StaffPolicy()
    assert act_as(open_install, "review", "anyone").text == "reviewer:anyone"
    with pytest.raises(NotPermitted, match="no staff are listed"):
        act_as(StaffPolicy(allow_unlisted=False), "review", "anyone")
    listed = StaffPolicy(people=[{"name": "li.wei", "login": "liwei", "roles": ["reviewer"]}])
    with pytest.raises(NotPermitted, match="not listed"):
        act_as(listed, "review", "anyone")
    with pytest.raises(ValueError, match="listed twice"):
        StaffPolicy(people=[{"name": "a", "login": "x", "roles": ["finance"]},
                            {"name": "x", "roles": ["auditor"]}])  # fmt: skip


def test_a_stocktake_needs_the_operations_role(staffed, tmp_path, sqlite_engine, monkeypatch):
    monkeypatch.setenv("YIDI_DATABASE_URL", sqlite_engine.url.render_as_string(hide_password=False))
    sheet = tmp_path / "count.csv"
    sheet.write_text("warehouse,item_code,counted\nCQ-XY,A-1,3\n", encoding="utf-8")
    refused = runner.invoke(cli, ["fulfilment", "stocktake", str(sheet), "--no-prefect", "--as", "li.wei"])
    assert refused.exit_code == 1 and "operations role" in refused.output and "stock unchanged" in refused.output


def test_breaches_of_the_order_duties_that_got_through_are_audit_findings(engine, staffed):
    """With the separations switched off at the time, one person keyed in, approved and resolved the payment case;
    the audit, with the policy separating them again, flags both (issue 20)."""
    from tasks.risk.audit_steps import run_audit
    from yidi.schema_risk import risk_findings
    from yidi.workdays import BUSINESS_TZ

    off = staffed.model_copy(update={"staff": staffed.staff.model_copy(update={"separate": []})})
    oid = _pending(engine)
    with engine.begin() as conn:
        insert_rows(conn, intake_records, pd.DataFrame([{
            "channel": "phone", "source_ref": "form:wfang", "content_hash": f"h-{oid}", "content": "{}",
            "order_id": oid}]))  # fmt: skip
        received = conn.execute(select(orders.c.received_at).where(orders.c.id == oid)).scalar_one()
    assert apply_decision(engine, oid, "approve", "wang.fang", settings=off).applied
    case_id = _case(engine, oid)
    with engine.begin() as conn:
        insert_rows(conn, settlement_case_events, pd.DataFrame([{
            "case_id": case_id, "occurred_at": utc_now(), "actor": "finance:wang.fang", "action": "resolved"}]))
    period = f"{pd.Timestamp(received).tz_convert(BUSINESS_TZ):%Y-%m}"
    assert run_audit(engine, off, period, utc_now())["by_check"]["KEYED_AND_APPROVED"] == 0
    by_check = run_audit(engine, staffed, period, utc_now())["by_check"]
    assert (by_check["KEYED_AND_APPROVED"], by_check["APPROVED_AND_RESOLVED"]) == (1, 1)
    with engine.connect() as conn:
        found = dict(conn.execute(select(risk_findings.c.check_code, risk_findings.c.summary).where(
            risk_findings.c.order_id == oid, risk_findings.c.check_code.in_(["KEYED_AND_APPROVED",
                                                                              "APPROVED_AND_RESOLVED"]))).all())
    assert found == {"KEYED_AND_APPROVED": "wang.fang approved it; wfang keyed it in",
                     "APPROVED_AND_RESOLVED": "wang.fang approved it; finance:wang.fang resolved its payment case"}  # fmt: skip
