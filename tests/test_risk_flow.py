"""The assessment and audit step lists run in process: every step runs, the workbook has native charts and no
personal data, the daily run computes the week on Mondays and the month on the 1st."""

from __future__ import annotations

from datetime import UTC, datetime

import openpyxl
from risk_data import AS_OF
from test_risk_kpi import build

from flows.compose import in_process
from flows.risk import assessment, audit, periods_due
from tasks.risk.report import markdown


def test_the_assessment_runs_every_step_and_writes_a_workbook_with_charts(engine):
    with engine.begin() as conn:
        build(conn)
    summary = assessment(in_process, period="2026-11", now=AS_OF, engine=engine)
    assert summary["credit"]["evaluated"] == 1 and summary["carriers"]["month"] == "2026-11"
    assert summary["receivables"]["overdue_fen"] == 5_000  # o2's half, due 11-20, open on 11-30
    assert summary["legal"]["violations"]["ECL20_DELIVERY_PROMISED"] == 1  # o2 delivered after its promise
    text = markdown(summary, summary["kpis"])
    assert "| review_on_time_pct | 66.67 | 95.0 | ○ 红 |" in text
    book = openpyxl.load_workbook(summary["workbook"])
    charts = {name: len(book[name]._charts) for name in book.sheetnames}
    assert charts["KPI trend chart"] == 1 and charts["Credit grades"] == 1 and charts["Ageing"] == 1
    cells = {
        str(c.value) for ws in book.worksheets for row in ws.iter_rows() for c in row if c.value is not None
    }
    assert "13912345678" not in cells and "王小明" not in cells

    result = audit(in_process, period="2026-11", now=AS_OF, engine=engine)
    assert (
        result["orders"] == 4 and result["by_check"]["OUTCOME_WITHOUT_NOTICE"] == 4
    )  # no notices in the fixture


def test_the_daily_run_adds_the_week_on_mondays_and_the_month_on_the_first():
    assert periods_due(datetime(2026, 11, 30, 1, tzinfo=UTC)) == ["2026-11", "2026-W48"]  # Monday
    assert periods_due(datetime(2026, 12, 1, 1, tzinfo=UTC)) == ["2026-12", "2026-11"]
    assert periods_due(datetime(2026, 12, 2, 1, tzinfo=UTC)) == ["2026-12"]


def test_the_commands_print_the_same_figures_within_80_columns(sqlite_engine, monkeypatch):
    import json

    from typer.testing import CliRunner

    from app.cli.main import cli
    from yidi.db import init_db

    init_db(sqlite_engine)
    monkeypatch.setenv("YIDI_DATABASE_URL", sqlite_engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("COLUMNS", "80")
    with sqlite_engine.begin() as conn:
        build(conn)
    runner = CliRunner()
    at = ["--as-of", "2026-11-30T12:00:00"]

    def run(*args):
        result = runner.invoke(cli, list(args))
        assert result.exit_code == 0, result.output
        return result.stdout

    text = run("risk", "run", "--no-prefect", "--period", "2026-11", *at)
    assert "Risk and KPIs 2026-11" in text and "review_on_time_pct" in text
    assert max(len(line) for line in text.splitlines() if "workbook" not in line) <= 80
    kpis = {r["kpi"]: r for r in json.loads(run("kpi", "--period", "2026-11", "--json", *at))["kpis"]}
    assert kpis["refund_rate_pct"]["value"] == 25.0 and kpis["dso_days"]["value"] == 5.0
    assert "K" in run("risk", "credit") and "score" in run("risk", "credit", "K")  # one customer: factors
    assert "grade A until" in run(
        "risk", "override", "K", "A", "--reason", "strategic partner", "--days", "10", *at
    )
    run("audit", "run", "--period", "2026-11", *at)
    findings = json.loads(run("audit", "list", "--json"))
    first = findings[0]["id"]
    refused = runner.invoke(cli, ["audit", "verify", str(first)])
    assert refused.exit_code == 2 and "cannot become verified" in refused.output
    assert "open → rectifying" in run("audit", "resolve", str(first), "--note", "notice sent", *at)
    assert "rectifying" in run("audit", "show", str(first))
    assert run("risk", "carriers").strip() != ""
