"""Issue 20, separated duties: the same person may not adjust stock and verify the stocktake that covers it.
Manual adjustments and verifications are recorded with the listed person; a breach is refused at the time, and the
internal audit flags one that got through (the policy switched the separation off at the time)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from fulfilment_data import NOW, add_stock, seed_reference
from sqlalchemy import select
from typer.testing import CliRunner

from app.cli.main import cli
from tasks.fulfilment.stocktake import import_stocktake, verify_stocktake
from tasks.risk.audit_steps import run_audit
from yidi.schema_fulfilment import stock_levels, stock_movements, stocktakes
from yidi.schema_risk import risk_findings
from yidi.settings import load_settings
from yidi.staff import Actor, NotPermitted

STAFF = """
[staff]
people = [
  { name = "zhao.li", login = "zli", roles = ["operations"] },
  { name = "qian.yu", login = "qyu", roles = ["operations", "manager"] },
  { name = "sun.hao", login = "shao", roles = ["auditor"] },
  { name = "li.wei", login = "liwei", roles = ["reviewer"] },
]
"""
runner = CliRunner()


@pytest.fixture
def store(engine, tmp_path, monkeypatch):
    policy = tmp_path / "yidi.toml"
    policy.write_text(STAFF, encoding="utf-8")
    monkeypatch.setenv("YIDI_CONFIG", str(policy))
    monkeypatch.setenv("YIDI_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("YIDI_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        seed_reference(conn)
        add_stock(conn, [("CQ-XY", "A-STOCK", 10)])
    return engine


def _on_hand(engine) -> float:
    with engine.connect() as conn:
        return conn.execute(select(stock_levels.c.on_hand).where(stock_levels.c.warehouse == "CQ-XY",
                                                                 stock_levels.c.item_code == "A-STOCK")).scalar_one()


def _count(tmp_path, name: str, counted: int):
    path = tmp_path / name
    path.write_text(f"warehouse,item_code,counted\nCQ-XY,A-STOCK,{counted}\n", encoding="utf-8")
    result = runner.invoke(cli, ["fulfilment", "stocktake", str(path), "--no-prefect", "--json", "--as", "zli"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)["stocktake_no"]


def _verified_by(engine, number):
    with engine.connect() as conn:
        return conn.execute(select(stocktakes.c.verified_by).where(stocktakes.c.stocktake_no == number)).scalar_one()


def test_adjusting_by_hand_needs_operations_and_is_recorded_with_the_person(store):
    refused = runner.invoke(cli, ["fulfilment", "adjust", "CQ-XY", "A-STOCK", "-m", "two broken", "--as", "li.wei",
                                  "--", "-2"])  # fmt: skip
    assert refused.exit_code == 1 and "operations role" in refused.output and "stock unchanged" in refused.output
    assert _on_hand(store) == 10
    done = runner.invoke(cli, ["fulfilment", "adjust", "CQ-XY", "A-STOCK", "-m", "two broken", "--as", "qyu",
                               "--json", "--", "-2"])  # fmt: skip
    assert done.exit_code == 0, done.output
    assert _on_hand(store) == 8
    with store.connect() as conn:
        move = conn.execute(select(stock_movements).where(stock_movements.c.kind == "adjustment")).one()
    assert (move.actor, move.reason, move.on_hand_delta) == ("operations:qian.yu", "two broken", -2)
    assert move.reference == json.loads(done.output)["reference"] and move.reference.startswith("ADJ-")


def test_whoever_adjusted_the_counted_stock_may_not_verify_the_stocktake(store, tmp_path):
    assert runner.invoke(cli, ["fulfilment", "adjust", "CQ-XY", "A-STOCK", "-m", "two broken", "--as", "qyu",
                               "--", "-2"]).exit_code == 0  # fmt: skip
    first = _count(tmp_path, "first.csv", 7)  # zhao.li counts 7: the books go from 8 to 7
    assert _on_hand(store) == 7
    verify = ["fulfilment", "verify-stocktake", first]
    breach = runner.invoke(cli, [*verify, "--as", "qian.yu"])
    assert breach.exit_code == 1 and "adjust_and_verify" in breach.output and "by hand" in breach.output
    assert "not verified" in breach.output and _verified_by(store, first) is None
    wrong_role = runner.invoke(cli, [*verify, "--as", "zhao.li"])
    assert wrong_role.exit_code == 1 and "manager or auditor role" in wrong_role.output
    assert _verified_by(store, first) is None
    done = runner.invoke(cli, [*verify, "--as", "shao"])
    assert done.exit_code == 0, done.output
    assert _verified_by(store, first) == "auditor:sun.hao"
    again = runner.invoke(cli, [*verify, "--as", "shao"])
    assert again.exit_code == 1 and "verified already, by auditor:sun.hao" in again.output
    # The next count of the item: qian.yu's adjustment came before the previous count, so he may verify this one.
    second = _count(tmp_path, "second.csv", 7)
    assert runner.invoke(cli, ["fulfilment", "verify-stocktake", second, "--as", "qyu"]).exit_code == 0
    assert _verified_by(store, second) == "manager:qian.yu"


def test_the_person_who_imported_the_count_may_not_verify_it(store, tmp_path):
    path = tmp_path / "count.csv"
    path.write_text("warehouse,item_code,counted\nCQ-XY,A-STOCK,10\n", encoding="utf-8")
    imported = runner.invoke(cli, ["fulfilment", "stocktake", str(path), "--no-prefect", "--json", "--as", "qyu"])
    number = json.loads(imported.output)["stocktake_no"]
    with store.connect() as conn:
        assert conn.execute(select(stocktakes.c.actor).where(stocktakes.c.stocktake_no == number)
                            ).scalar_one() == "operations:qian.yu"  # fmt: skip
    breach = runner.invoke(cli, ["fulfilment", "verify-stocktake", number, "--as", "qyu"])
    assert breach.exit_code == 1 and f"imported the count {number}" in breach.output
    assert _verified_by(store, number) is None


def test_a_breach_that_got_through_is_an_audit_finding(store, tmp_path):
    """The separation switched off when the stocktake was verified; the audit (policy separating again) flags it."""
    on = load_settings()
    off = on.model_copy(update={"staff": on.staff.model_copy(update={"separate": ["key_and_approve"]})})
    path = tmp_path / "count.csv"
    path.write_text("warehouse,item_code,counted\nCQ-XY,A-STOCK,9\n", encoding="utf-8")
    qian = Actor("qian.yu", "manager", True)
    with store.begin() as conn:
        number = import_stocktake(conn, path, policy=on.fulfilment, now=NOW, actor="operations:qian.yu",
                                  write_report=False).stocktake_no  # fmt: skip
        with pytest.raises(NotPermitted, match="adjust_and_verify"):
            verify_stocktake(conn, number, qian, on.staff, now=NOW)
        verify_stocktake(conn, number, qian, off.staff, now=NOW + timedelta(hours=1))
    assert run_audit(store, off, "2026-11", NOW + timedelta(days=1))["by_check"]["STOCKTAKE_SELF_VERIFIED"] == 0
    result = run_audit(store, on, "2026-11", NOW + timedelta(days=1))
    assert result["by_check"]["STOCKTAKE_SELF_VERIFIED"] == 1
    with store.connect() as conn:
        finding = conn.execute(select(risk_findings).where(risk_findings.c.check_code == "STOCKTAKE_SELF_VERIFIED")
                               ).one()  # fmt: skip
    assert finding.finding_key == f"audit:STOCKTAKE_SELF_VERIFIED:{number}" and finding.severity == "high"
    assert finding.summary == f"{number} verified by manager:qian.yu, who imported the count {number}"
    assert finding.order_id is None and finding.state == "open"
