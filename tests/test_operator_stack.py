"""The operator's day (issue 15): a stack that starts green, run names that say what ran, a foreign server on the
port refused, the Prefect CLI told where the server is."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
import time

import pytest

from yidi.db import STORE_NOT_READY, init_db, store_problem


def test_an_empty_store_is_named_not_initialised_in_one_line(bare_engine):
    problem = store_problem(bare_engine)
    assert problem is not None and STORE_NOT_READY in problem and "\n" not in problem
    assert "run `yidi init`" in problem
    init_db(bare_engine)
    assert store_problem(bare_engine) is None


def test_a_store_behind_the_code_is_not_ready(sqlite_engine):
    from sqlalchemy import text

    with sqlite_engine.begin() as conn:  # as a store last migrated by the previous release would say
        conn.execute(text("UPDATE alembic_version SET version_num = '0006_settlement'"))
    problem = store_problem(sqlite_engine)
    assert problem is not None and "code expects" in problem and "upgrade" in problem


def test_make_up_initialises_the_store_first(tmp_path, monkeypatch):
    monkeypatch.setenv("YIDI_HOME", str(tmp_path / "fresh"))
    from app.local_stack import init_store
    from yidi.db import get_engine

    assert store_problem(get_engine()) is not None
    line = init_store()
    assert line.startswith("order store ready: sqlite:///") and "fresh" in line
    assert store_problem(get_engine()) is None


@pytest.mark.prefect
def test_a_flow_on_an_uninitialised_store_fails_at_once_with_the_one_line(prefect_server, tmp_path, monkeypatch):
    """Seen: every scheduled run failed with `no such table: notification_outbox` tracebacks."""
    from flows.compose import StoreNotReady
    from flows.notifications import send_notifications

    monkeypatch.setenv("YIDI_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    state = send_notifications(return_state=True)
    assert state.is_failed()
    with pytest.raises(StoreNotReady, match=STORE_NOT_READY):
        state.result()
    assert "no such table" not in state.message


@pytest.mark.prefect
def test_runs_are_named_after_what_ran(prefect_server, sqlite_engine, monkeypatch):
    """Seen: random names (`sweet-dogfish`); wanted `reconcile wechatpay 2026-11-30`, `intake 10:05`."""
    import re

    from prefect.client.orchestration import get_client

    from flows.notifications import send_notifications
    from flows.settlement import reconcile_settlements

    monkeypatch.setenv("YIDI_DATABASE_URL", str(sqlite_engine.url))
    states = [reconcile_settlements(source="wechatpay", period="2026-11-30", return_state=True),
              send_notifications(return_state=True)]  # fmt: skip
    with get_client(sync_client=True) as client:
        names = [client.read_flow_run(s.state_details.flow_run_id).name for s in states]
    assert names[0] == "reconcile wechatpay 2026-11-30"
    assert re.fullmatch(r"notify \d\d:\d\d", names[1])


def test_risk_and_audit_runs_are_named_after_their_period(monkeypatch):
    """Seen: `assess-risk-and-kpis` and `internal-audit` runs had random names; wanted `risk 2026-12-04`,
    `audit 2026-11` (the period asked for, else the day the run started / the month before it)."""
    from datetime import datetime

    from prefect.runtime import flow_run

    from flows import naming

    start = datetime.fromisoformat("2026-12-01T01:30:00+08:00")  # just after midnight in Shanghai, Nov 30 in UTC
    monkeypatch.setattr(flow_run, "scheduled_start_time", start, raising=False)
    monkeypatch.setattr(naming, "_parameters", lambda: {})
    assert (naming.risk_name(), naming.audit_name()) == ("risk 2026-12-01", "audit 2026-11")
    monkeypatch.setattr(naming, "_parameters", lambda: {"period": "2026-W48"})
    assert naming.risk_name() == "risk 2026-W48"
    monkeypatch.setattr(naming, "_parameters", lambda: {"period": "2026-10"})
    assert naming.audit_name() == "audit 2026-10"


def _answering(port_holder: list) -> http.server.HTTPServer:
    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's spelling
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"true")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port_holder.append(server.server_address[1])
    return server


def test_a_server_this_project_did_not_start_is_refused_and_ours_is_reused(monkeypatch):
    """Seen: `make demo` and `make up` reused any server on 127.0.0.1:4200, whoever started it."""
    from app import local_stack

    ports: list[int] = []
    server = _answering(ports)
    try:
        monkeypatch.setenv("YIDI_PREFECT_PORT", str(ports[0]))
        with pytest.raises(local_stack.ForeignServer, match=f"127.0.0.1:{ports[0]}.*PREFECT_PORT={ports[0] + 1}"):
            local_stack.start_server(timeout=5)
        (local_stack.run_dir() / "server.pid").write_text(str(os.getpid()))  # a live process of ours
        assert local_stack.start_server(timeout=5) is False
    finally:
        server.shutdown()


def test_the_stack_runs_on_the_configured_port_with_info_logs(monkeypatch):
    from app import local_stack

    monkeypatch.setenv("YIDI_PREFECT_PORT", "4231")
    monkeypatch.delenv("PREFECT_LOGGING_LEVEL", raising=False)
    env = local_stack.prefect_env()
    assert env["PREFECT_API_URL"] == "http://127.0.0.1:4231/api"
    assert env["PREFECT_LOGGING_LEVEL"] == "INFO"  # seen: worker runs had no INFO logs in the UI


def test_the_line_make_up_prints_points_the_prefect_cli_at_the_server(prefect_server, monkeypatch, tmp_path):
    """Seen: `prefect deployment ls` in the repository listed nothing (it started a temporary server). The export
    line `make up` prints, applied in a shell, makes the Prefect CLI list the running server's deployments."""
    from urllib.parse import urlparse

    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    from app import local_stack

    server = urlparse(PREFECT_API_URL.value())
    monkeypatch.setenv("YIDI_PREFECT_PORT", str(server.port))
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name("cli-pointer-check")
        client.create_deployment(flow_id, "seen-by-the-cli", entrypoint="flows/review.py:review_orders")
    line = local_stack.cli_pointer().splitlines()[-1].strip()
    assert line.startswith("export PREFECT_API_URL=")
    # A shell as the operator has it (our offline settings kept), with only that line applied.
    env = {**os.environ, "PREFECT_HOME": str(tmp_path), "PREFECT_API_URL": line.split("=", 1)[1], "COLUMNS": "200"}
    listed = subprocess.run([sys.executable, "-m", "prefect", "deployment", "ls"], env=env, capture_output=True,
                            text=True, timeout=120, cwd=tmp_path)  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert "cli-pointer-check/seen-by-the-cli" in listed.stdout
    assert "temporary server" not in listed.stdout + listed.stderr


# --- parameters with choices (Build 4) -------------------------------------------------------------------------------


def test_the_cli_refuses_an_unknown_source_listing_the_valid_ones(tmp_path, monkeypatch):
    """Seen: `yidi reconcile --source bogus` exited 0 with "files 0 ingested"."""
    from typer.testing import CliRunner

    from app.cli.main import cli

    for command in (["settlement", "reconcile"], ["reconcile"]):
        result = CliRunner().invoke(cli, [*command, "--source", "bogus"])
        assert result.exit_code == 1
        said = " ".join(result.output.split())
        assert "unknown source 'bogus'" in said
        assert said.startswith("error: unknown source 'bogus'; valid: alipay, wechatpay, bank, bank:")
        assert {"bank:icbc", "bank:cmb", "bank:cqrcb", "cod", "cod:shunfeng"} <= set(said.split("valid: ")[1].split(", "))


def test_the_reconcile_run_form_offers_the_sources_and_explains_period_and_file():
    """Seen: the Run form showed `source`, `period`, `file_path` as bare `str | None` toggles."""
    from prefect.utilities.callables import parameter_schema

    from flows.settlement import reconcile_settlements

    properties = parameter_schema(reconcile_settlements).model_dump()["properties"]
    choices = properties["source"]["anyOf"][0]["enum"]
    assert {"alipay", "wechatpay", "bank", "bank:icbc", "bank:cmb", "bank:cqrcb", "cod", "cod:shunfeng"} <= set(choices)
    assert "YYYY-MM" in properties["period"]["description"] and "2026-W48" in properties["period"]["examples"]
    assert properties["file_path"]["description"]
    assert all(properties[name].get("description") for name in properties)


def test_the_reconcile_flow_refuses_an_unknown_source_before_any_work():
    from prefect.exceptions import ParameterTypeError

    from flows.settlement import reconcile_settlements

    with pytest.raises(ParameterTypeError):
        reconcile_settlements.validate_parameters({"source": "bogus"})


# --- the demo's summary (Build 7) ------------------------------------------------------------------------------------


def _store_needing_action(engine):
    import pandas as pd

    from yidi.bulk import insert_rows
    from yidi.schema import intake_records, orders

    with engine.begin() as conn:
        insert_rows(conn, orders, pd.DataFrame({
            "order_no": [f"YD-S-{i}" for i in range(3)], "channel": ["taobao", "website", "fax"],
            "channel_order_id": ["a", "b", "c"], "state": ["pending_review", "approved", "pending_review"]}))
        insert_rows(conn, intake_records, pd.DataFrame({
            "channel": ["email"], "content_hash": ["h1"], "status": ["quarantined"], "content": ["?"],
            "reason": ["unreadable"]}))  # fmt: skip


def test_the_demo_summary_lists_what_needs_action_with_runnable_commands_in_80_columns(sqlite_engine, tmp_path,
                                                                                          monkeypatch):
    """Seen: the summary wrapped badly at 80 columns, suggested `yidi order show 1` with yidi not on PATH, and
    left out quarantined records, open cases and incidents."""
    import sys

    from demo.summary import counts, needs_action, summary_markdown, terminal_lines, yidi_command

    _store_needing_action(sqlite_engine)
    venv_bin = tmp_path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "yidi").write_text("#!/bin/sh\n")
    monkeypatch.setattr(sys, "executable", str(venv_bin / "python"))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # yidi is not on PATH
    monkeypatch.chdir(tmp_path)
    command = yidi_command(tmp_path / ".yidi" / "demo")
    assert command == "YIDI_HOME=.yidi/demo .venv/bin/yidi"
    actions = needs_action(sqlite_engine, command)
    assert [(a["what"].split(" (")[0], a["count"], a["command"]) for a in actions] == [
        ("intake records quarantined", 1, "YIDI_HOME=.yidi/demo .venv/bin/yidi intake quarantine list"),
        ("orders waiting for manual review", 2, "YIDI_HOME=.yidi/demo .venv/bin/yidi review list"),
    ]
    tallies = counts(sqlite_engine)
    lines = terminal_lines(tallies, actions, command=command)
    assert max(map(len, lines)) <= 80
    assert lines[lines.index("Needs action:") - 1] == "    export YIDI_HOME=.yidi/demo"
    assert "    .venv/bin/yidi review list" in lines
    # the demo's own policy file (its staff list) too: the settings once, each command still one line of 80
    (tmp_path / ".yidi" / "demo").mkdir(parents=True)
    (tmp_path / ".yidi" / "demo" / "yidi.toml").write_text("", encoding="utf-8")
    with_policy = yidi_command(tmp_path / ".yidi" / "demo")
    assert with_policy == "YIDI_HOME=.yidi/demo YIDI_CONFIG=.yidi/demo/yidi.toml .venv/bin/yidi"
    lines = terminal_lines(tallies, needs_action(sqlite_engine, with_policy), command=with_policy)
    assert max(map(len, lines)) <= 80
    assert "    export YIDI_HOME=.yidi/demo YIDI_CONFIG=.yidi/demo/yidi.toml" in lines
    assert "    .venv/bin/yidi intake quarantine list" in lines
    markdown = summary_markdown(tallies, actions, "http://127.0.0.1:4200/runs")
    assert "| orders waiting for manual review | 2 | `.venv/bin/yidi review list` |" in markdown
    assert "first: `export YIDI_HOME=.yidi/demo`" in markdown
    assert "pending_review 2" in markdown and "# Demo: 3 orders" in markdown


def test_yidi_on_path_from_this_environment_is_called_by_its_name(tmp_path, monkeypatch):
    import sys

    from demo.summary import yidi_command

    venv_bin = tmp_path / "bin"
    venv_bin.mkdir()
    (venv_bin / "yidi").write_text("#!/bin/sh\n")
    (venv_bin / "yidi").chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(venv_bin / "python"))
    monkeypatch.setenv("PATH", f"{venv_bin}:/usr/bin:/bin")
    assert yidi_command() == "yidi"


# --- README matches prefect.yaml (Build 10) ----------------------------------------------------------------------------


def test_the_readme_flow_table_lists_exactly_the_deployments_of_prefect_yaml():
    """Seen: the README's flow table listed deployments prefect.yaml does not have (`intake-demo`, `tracking-demo`)."""
    import re
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parent.parent
    deployed = {d["name"] for d in yaml.safe_load((root / "prefect.yaml").read_text(encoding="utf-8"))["deployments"]}
    renamed = {"ingest-orders", "enter-phone-order", "fulfill-orders"}  # the 0.2 aliases, in their own section
    readme = (root / "README.md").read_text(encoding="utf-8")
    table = readme.split("## The flows", 1)[1].split("\n## ", 1)[0]
    named, subflows = set(), set()
    for row in (line for line in table.splitlines() if line.startswith("| `")):
        first, schedule = row.split(" | ")[0:2]
        tokens = re.findall(r"`([^`]+)`", first)
        names = {tokens[0]} | {tokens[0] + t if t.startswith("-") else t for t in tokens[1:]}
        (subflows if "no deployment" in schedule else named).update(names)
    assert deployed - renamed <= named, "deployments missing from the README's table"
    flows_only = {"import-orders", "reconcile-settlements"}  # a flow named beside its deployments
    assert named - flows_only <= deployed, "README rows that are no deployment"
    assert subflows == {"intake-demo", "tracking-demo"} and not subflows & deployed


def test_every_deployments_parameters_are_valid_for_its_flow(monkeypatch):
    """`prefect deploy` sends them with enforce_parameter_schema: a value the flow's schema refuses (a null for a
    required file_path) makes the server refuse the deployment, and `make up` stops there."""
    from pathlib import Path

    import jsonschema
    import yaml
    from prefect.utilities.callables import parameter_schema
    from test_deployments import load as load_deployed

    root = Path(__file__).resolve().parent.parent
    monkeypatch.chdir(root)
    for deployment in yaml.safe_load((root / "prefect.yaml").read_text(encoding="utf-8"))["deployments"]:
        flow = load_deployed(deployment)
        schema = parameter_schema(flow).model_dump_for_openapi()
        params = deployment.get("parameters") or {}
        given = {k: v for k, v in params.items() if v is not None}
        jsonschema.validate(given, {**schema, "required": []})
        for name, value in params.items():
            if value is None:
                assert name not in schema.get("required", []), f"{deployment['name']}: {name} is required"


# --- times and money for people (Build 5) ----------------------------------------------------------------------------


def _order_with_late_recorded_event(engine):
    from datetime import UTC, datetime

    import pandas as pd
    from sqlalchemy import insert, select

    from yidi.lifecycle import record_events
    from yidi.schema import orders

    with engine.begin() as conn:
        conn.execute(insert(orders), [{"order_no": "YD-T-1", "channel": "website", "channel_order_id": "t1",
                                       "order_total_fen": 5190, "order_time": datetime(2026, 11, 26, 1, 5, tzinfo=UTC)}])
        oid = conn.execute(select(orders.c.id)).scalar_one()
        # a carrier checkpoint of the 27th recorded after a note of the 28th
        record_events(conn, pd.DataFrame([
            {"order_id": oid, "kind": "note", "reason": "second", "occurred_at": datetime(2026, 11, 28, 2, 0, tzinfo=UTC)},
            {"order_id": oid, "kind": "tracking", "reason": "first", "occurred_at": datetime(2026, 11, 27, 2, 0, tzinfo=UTC)},
        ]), actor="test")  # fmt: skip
    return oid


def test_an_orders_timeline_is_in_time_order(engine):
    """Seen: an order's timeline was in the order events were recorded, not when they happened."""
    from yidi.lifecycle import timeline

    oid = _order_with_late_recorded_event(engine)
    with engine.connect() as conn:
        assert timeline(conn, oid)["reason"].tolist() == ["first", "second"]


def test_order_show_prints_shanghai_times_labelled_and_json_says_its_units(sqlite_engine, monkeypatch):
    """Seen: `order show` printed UTC, unlabelled."""
    import json

    from typer.testing import CliRunner

    from app.cli.main import cli

    monkeypatch.setenv("YIDI_DATABASE_URL", str(sqlite_engine.url))
    _order_with_late_recorded_event(sqlite_engine)
    result = CliRunner().invoke(cli, ["order", "show", "YD-T-1"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    assert "ordered 2026-11-26 09:05 (Asia/Shanghai)" in result.output
    assert "timeline (times in Asia/Shanghai)" in result.output
    assert "2026-11-27 10:00" in result.output and "2026-11-28 10:00" in result.output
    assert result.output.index("2026-11-27 10:00") < result.output.index("2026-11-28 10:00")
    as_json = json.loads(CliRunner().invoke(cli, ["order", "show", "YD-T-1", "--json"]).output)
    assert as_json["units"] == {"money": "CNY yuan", "times": "UTC (ISO 8601)"}
    assert str(as_json["order"]["order_total"]) == "51.90"


def test_the_xlsx_export_shows_yuan_numbers_with_a_currency_format_and_shanghai_times(sqlite_engine, tmp_path):
    """Seen: the xlsx export had `order_total_fen 5190` for ¥51.90 and UTC datetimes without a zone."""
    from datetime import datetime

    from openpyxl import load_workbook

    from yidi.export import export_table

    _order_with_late_recorded_event(sqlite_engine)
    with sqlite_engine.connect() as conn:
        export_table(conn, "orders", "xlsx", tmp_path / "orders.xlsx")
    sheet = load_workbook(tmp_path / "orders.xlsx").active
    header = [c.value for c in sheet[1]]
    assert "order_total_fen" not in header and "order_time" not in header
    total = sheet.cell(row=2, column=header.index("order_total_yuan") + 1)
    assert (total.value, total.data_type, total.number_format) == (51.9, "n", '"¥"#,##0.00')
    when = sheet.cell(row=2, column=header.index("order_time (Asia/Shanghai)") + 1)
    assert when.value == datetime(2026, 11, 26, 9, 5) and when.is_date


def test_quarantine_list_labels_its_times_and_cases_list_says_how_many(sqlite_engine, monkeypatch):
    """Seen: `quarantine list` printed Shanghai time unlabelled; `cases list` printed ~100 rows with no count."""
    from datetime import UTC, datetime

    import pandas as pd
    from typer.testing import CliRunner

    from app.cli.main import cli
    from yidi.bulk import insert_rows
    from yidi.schema import intake_records
    from yidi.schema_settlement import settlement_cases

    monkeypatch.setenv("YIDI_DATABASE_URL", str(sqlite_engine.url))
    with sqlite_engine.begin() as conn:
        insert_rows(conn, intake_records, pd.DataFrame({
            "channel": ["email"], "content_hash": ["h"], "status": ["quarantined"], "content": ["?"],
            "reason": ["unreadable"], "received_at": [datetime(2026, 11, 26, 1, 5, tzinfo=UTC)]}))
        columns = {c.name for c in settlement_cases.columns}
        base = {"case_class": "short_paid", "status": "open", "amount_fen": 100, "summary": "s", "case_key": "k",
                "opened_at": datetime(2026, 11, 26, tzinfo=UTC), "updated_at": datetime(2026, 11, 26, tzinfo=UTC)}
        rows = [{k: (f"k{i}" if k == "case_key" else v) for k, v in base.items() if k in columns} for i in range(7)]
        insert_rows(conn, settlement_cases, pd.DataFrame(rows))  # fmt: skip
    runner = CliRunner()
    listed = runner.invoke(cli, ["intake", "quarantine", "list"], env={"COLUMNS": "120"})
    assert listed.exit_code == 0, listed.output
    assert "(Asia/Shanghai)" in listed.output and "2026-11-26 09:05" in listed.output
    cases = runner.invoke(cli, ["settlement", "cases", "list", "--limit", "3"], env={"COLUMNS": "120"})
    assert cases.exit_code == 0, cases.output
    assert "3 of 7, largest first; --limit 7 for all" in cases.output


def test_the_intake_run_form_offers_the_channels():
    from prefect.utilities.callables import parameter_schema

    from flows.intake import intake_orders

    properties = parameter_schema(intake_orders).model_dump()["properties"]
    assert properties["channels"]["anyOf"][0]["items"]["enum"] == ["taobao", "woocommerce", "email", "spreadsheet"]
    assert all(properties[name].get("description") for name in ("channels", "files", "options"))


# --- every deployment's parameters typed (Build 4) -------------------------------------------------------------------


def _deployed_flows():
    from pathlib import Path

    import yaml
    from test_deployments import load as load_deployed

    root = Path(__file__).resolve().parent.parent
    for deployment in yaml.safe_load((root / "prefect.yaml").read_text(encoding="utf-8"))["deployments"]:
        yield deployment["name"], load_deployed(deployment)


def test_every_deployments_run_form_explains_each_parameter_and_offers_choices(monkeypatch):
    """Seen: the Run form showed bare `str | None` toggles with no choices, hints or examples. Every parameter of
    every deployment has a description; every free-text one (no choices, not a flag) shows an example."""
    from pathlib import Path

    from prefect.utilities.callables import parameter_schema

    monkeypatch.chdir(Path(__file__).resolve().parent.parent)
    bare = []
    for name, flow in _deployed_flows():
        for param, spec in parameter_schema(flow).model_dump_for_openapi()["properties"].items():
            text = str(spec)
            free_text = "'enum'" not in text and "'boolean'" not in text and "'object'" not in text
            if not spec.get("description") or (free_text and not spec.get("examples") and "array" not in text):
                bare.append(f"{name}.{param}")
    assert bare == []
    schemas = {name: parameter_schema(flow).model_dump_for_openapi()["properties"] for name, flow in _deployed_flows()}
    channels = ["taobao", "website", "email", "phone", "fax"]  # orders.channel, as staff see it
    for name in ("confirm-shipments", "sync-channel-stock", "review-orders"):
        assert schemas[name]["channel"]["anyOf"][0]["enum"] == channels
    assert schemas["assess-risk-and-kpis"]["period"]["examples"] == ["2026-11", "2026-W48", "2026-12-04"]


@pytest.mark.parametrize(("flow_path", "parameters"), [
    ("flows.risk:assess_risk_and_kpis", {"period": "2026-13"}),
    ("flows.risk:assess_risk_and_kpis", {"period": "last month"}),
    ("flows.risk:internal_audit", {"period": "2026-W48"}),  # the audit is of a month
    ("flows.channels:confirm_shipments", {"channel": "woocommerce"}),  # the connector's name, not the channel's
    ("flows.channels:sync_channel_stock", {"channel": "bogus"}),
    ("flows.aftersales:record_service_results", {"day": "tomorrow"}),
    ("flows.tracking:poll_carriers", {"query_url": "poll.kuaidi100.com"}),
    ("flows.notifications:send_notifications", {"max_batches": 0}),
    ("flows.review:review_orders", {"page_size": 500}),
    ("flows.settlement:settlement_analysis", {"weeks": 0}),
    ("flows.onboarding:import_orders", {"file_path": ""}),
])  # fmt: skip
def test_a_flow_refuses_a_value_outside_its_choices_before_any_work(flow_path, parameters):
    import importlib

    from prefect.exceptions import ParameterTypeError

    module, name = flow_path.split(":")
    with pytest.raises(ParameterTypeError):
        getattr(importlib.import_module(module), name).validate_parameters(parameters)


def test_the_risk_flow_takes_each_period_format():
    from flows.risk import assess_risk_and_kpis

    for period in ("2026-11", "2026-W48", "2026-12-04"):
        assert assess_risk_and_kpis.validate_parameters({"period": period}) == {"period": period}


@pytest.mark.parametrize(("command", "said"), [
    (["channels", "confirm", "--channel", "bogus"], "error: unknown channel 'bogus'; valid: taobao, website, email, "
                                                    "phone, fax"),
    (["channels", "sync", "-c", "woocommerce"], "error: unknown channel 'woocommerce'; valid: taobao, website, "
                                                "email, phone, fax"),
    (["risk", "run", "--period", "2026-13"], "error: period '2026-13' is not in the calendar: use YYYY-MM (month), "
                                             "YYYY-Www (ISO week) or YYYY-MM-DD (day)"),
    (["kpi", "--period", "2026-02-30"], "error: period '2026-02-30' is not in the calendar"),
    (["audit", "run", "--period", "bogus"], "error: period 'bogus': use YYYY-MM (month), YYYY-Www (ISO week)"),
    (["intake", "run", "--channel", "bogus"], "error: unknown channel 'bogus'; channels: taobao, woocommerce, "
                                              "email, spreadsheet"),
])  # fmt: skip
def test_the_cli_refuses_an_unknown_value_with_the_valid_ones(command, said, sqlite_engine, monkeypatch):
    """Seen: an unknown value ran as a filter matching nothing and exited 0; a period outside the calendar was a
    traceback."""
    from typer.testing import CliRunner

    from app.cli.main import cli

    monkeypatch.setenv("YIDI_DATABASE_URL", str(sqlite_engine.url))
    result = CliRunner().invoke(cli, command)
    assert result.exit_code == 1, result.output
    assert " ".join(result.output.split()).startswith(said)


def test_long_lists_say_how_many_there_are_take_filters_and_a_limit(sqlite_engine, monkeypatch):
    """Seen: `cases list` printed ~100 rows with no count or paging; the other long lists the same. Each says
    `shown of total` (with the --limit that shows all) and takes filters."""
    from datetime import UTC, datetime

    import pandas as pd
    from typer.testing import CliRunner

    from app.cli.main import cli
    from yidi.bulk import insert_rows
    from yidi.schema import intake_records, orders
    from yidi.schema_aftersales import feedback_items

    monkeypatch.setenv("YIDI_DATABASE_URL", str(sqlite_engine.url))
    at = datetime(2026, 11, 26, 1, 5, tzinfo=UTC)
    with sqlite_engine.begin() as conn:
        insert_rows(conn, intake_records, pd.DataFrame({  # 3 email + 2 taobao quarantined records
            "channel": ["email"] * 3 + ["taobao"] * 2, "content_hash": [f"h{i}" for i in range(5)],
            "status": ["quarantined"] * 5, "content": ["?"] * 5, "reason": ["unreadable"] * 5, "received_at": [at] * 5}))
        insert_rows(conn, orders, pd.DataFrame({  # 4 platform + 2 website orders waiting for review
            "order_no": [f"YD2612050000000{i}" for i in range(6)], "channel": ["taobao"] * 4 + ["website"] * 2,
            "channel_order_id": [str(i) for i in range(6)], "state": ["pending_review"] * 6,
            "order_total_fen": [1000] * 6, "order_time": [at] * 6}))
        insert_rows(conn, feedback_items, pd.DataFrame({  # 3 complaints, 1 inquiry
            "feedback_no": [f"FB-{i}" for i in range(4)], "dedupe_key": [f"d{i}" for i in range(4)],
            "channel": ["phone"] * 4, "received_at": [at] * 4, "body": ["慢"] * 4,
            "category": ["complaint"] * 3 + ["inquiry"], "first_response_due_at": [at] * 4,
            "resolution_due_at": [at] * 4}))  # fmt: skip
    runner = CliRunner()

    def said(*command: str) -> str:
        result = runner.invoke(cli, list(command), env={"COLUMNS": "120"})
        assert result.exit_code == 0, result.output
        return " ".join(result.output.split())

    assert "2 of 5, newest first; --limit 5 for all" in said("intake", "quarantine", "list", "--limit", "2")
    assert "2 of 3, newest first; --limit 3 for all" in said("intake", "quarantine", "list", "-c", "email",
                                                             "--limit", "2")  # fmt: skip
    assert "6 of 6, earliest deadline first" in said("review", "list")
    narrow = runner.invoke(cli, ["review", "list"], env={"COLUMNS": "80"}).output  # seen: `YD261205…` at 80
    assert "YD26120500000003" in narrow and max(map(len, narrow.splitlines())) <= 80
    assert "1 of 2, earliest deadline first; --limit 2 for all" in said("review", "list", "--channel", "website",
                                                                         "--limit", "1")  # fmt: skip
    assert "2 of 3, oldest first; --limit 3 for all" in said("feedback", "list", "--category", "complaint",
                                                             "--limit", "2")  # fmt: skip
    assert "0 of 0, newest first" in said("tracking", "incidents")
    assert "0 of 0, earliest due first" in said("audit", "list")
    assert "0 of 0, the newest" in said("aftersales", "list", "--type", "return")


def test_the_intake_summary_names_the_channels_as_staff_know_them():
    """Seen: the ingest summary artifact said "spreadsheet" for what staff know as phone and fax orders."""
    from flows.intake import _summary_rows

    rows = _summary_rows({"taobao": {}, "woocommerce": {}, "email": {}, "spreadsheet": {}, "form": {}})
    assert [r["channel"] for r in rows] == ["taobao (platform)", "website (WooCommerce)", "email",
                                            "phone/fax (order templates)", "phone/fax (UI form)"]  # fmt: skip
    # and every column shows in the UI's artifact view (seen: `batches` and `error` cut off on the right)
    assert list(rows[0]) == ["channel", "read", "new", "updated", "unchanged", "quarantined", "cancelled", "rereview",
                             "remote", "local", "unknown"]  # fmt: skip
    failed = _summary_rows({"taobao": {"new": 1}, "woocommerce": {"error": "HTTPError: 401"}})
    assert [r["error"] for r in failed] == ["", "HTTPError: 401"]


def test_the_shipments_artifact_has_short_columns_that_all_show():
    """Seen: the fulfilment-shipments table was wider than the UI's artifact view (`phone`, `destination` cut off)."""
    from flows.fulfilment import shipment_row

    row = shipment_row({"shipment_no": "YD26120500000001-1", "order_no": "YD26120500000001", "carrier": "zhongtong",
                        "waybill_no": "72026112700002", "expected_delivery_date": "2026-12-08", "warehouse": "CQ-XY",
                        "recipient": "蔡*", "phone": "186****8394", "destination": "重庆市重庆市"})  # fmt: skip
    assert row == {"shipment": "YD26120500000001-1", "carrier": "zhongtong", "waybill": "72026112700002",
                   "due": "2026-12-08", "from": "CQ-XY", "recipient": "蔡*", "phone": "186****8394",
                   "to": "重庆市重庆市"}  # fmt: skip


def test_the_failures_by_reason_artifact_lists_only_codes_that_failed():
    """Seen: 38 rows, most of them 0 orders, the few codes that failed lost among them."""
    import pandas as pd

    from flows.review import failures_by_reason

    stats = pd.DataFrame({"reason_code": ["REGION_LOCAL", "ADDRESS_INCOMPLETE", "COD_OVER_LIMIT", "ADDRESS_INCOMPLETE"],
                          "severity": ["note", "reject", "reject", "reject"], "unexpected_count": [13, 2, 0, 1]})
    rows = failures_by_reason(stats)
    assert [(r["reason_code"], r["orders"]) for r in rows] == [("REGION_LOCAL", 13), ("ADDRESS_INCOMPLETE", 3)]
    assert rows[1]["message"] == "收货地址不完整（须包含省、市、区县和详细地址）" and rows[1]["area"] == "V1"


def _reaped(args: list[str]) -> subprocess.Popen:
    """A process of the test's own (reaped as soon as it ends, so a stopped one does not linger as a zombie)."""
    proc = subprocess.Popen(args, start_new_session=True)
    threading.Thread(target=proc.wait, daemon=True).start()
    return proc


def test_make_down_stops_the_flow_runs_in_progress_before_the_server(tmp_path, monkeypatch):
    """Seen: the process worker starts each flow run in a session of its own; `make down` stopped the worker's group
    and then the server, the run lived on without a server and stayed Running for ever, holding its deployment's
    concurrency slot (every later run AwaitingConcurrencySlot after the next `make up`)."""
    from app import local_stack

    monkeypatch.setattr(local_stack, "RUN_GRACE_SECONDS", 0.5, raising=False)
    server = _reaped([sys.executable, "-c", "import time; time.sleep(60)"])
    flow_run_pid, seen = tmp_path / "run.pid", tmp_path / "server-alive-when-run-stopped"
    flow_run = (
        "import os, signal, sys, time\n"
        f"open({str(flow_run_pid)!r}, 'w').write(str(os.getpid()))\n"
        "def stop(*_):\n"
        "    try:\n"
        f"        os.kill({server.pid}, 0); alive = 'yes'\n"
        "    except OSError:\n"
        "        alive = 'no'\n"
        f"    open({str(seen)!r}, 'w').write(alive); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "time.sleep(60)\n"
    )
    worker = _reaped([sys.executable, "-c", (
        "import subprocess, sys, time\n"
        f"subprocess.Popen([sys.executable, '-c', {flow_run!r}], start_new_session=True)\n"
        "time.sleep(60)\n"
    )])
    deadline = time.monotonic() + 10
    while not flow_run_pid.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    run_pid = int(flow_run_pid.read_text())
    assert os.getpgid(run_pid) != worker.pid  # out of reach of the worker's process group
    (local_stack.run_dir() / "worker.pid").write_text(str(worker.pid))
    (local_stack.run_dir() / "server.pid").write_text(str(server.pid))
    try:
        local_stack.down()
        deadline = time.monotonic() + 10
        while not seen.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert seen.exists(), "the flow run outlived make down"
        assert seen.read_text() == "yes"  # stopped while the server could still record how the run ended
        assert worker.wait(timeout=5) is not None and server.wait(timeout=5) is not None
        assert sorted(path.name for path in local_stack.run_dir().glob("*.pid")) == []
    finally:
        for pid in (run_pid, worker.pid, server.pid):
            try:
                os.kill(pid, 9)
            except OSError:
                pass


def test_make_up_runs_only_the_latest_slot_a_deployment_missed_while_down(prefect_server):
    """Seen: after `make down` overnight, `make up` ran every missed slot of each schedule back to back (a page of
    Late runs). The latest missed slot of each deployment catches up; the older ones are dropped; a run scheduled
    for the future and a deployment that missed one slot are left alone."""
    from datetime import UTC, datetime, timedelta

    from prefect.client.orchestration import get_client
    from prefect.states import Scheduled

    from app import local_stack

    now = datetime.now(UTC)
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name("missed-while-down")
        hourly = client.create_deployment(flow_id, "hourly", entrypoint="flows/review.py:review_orders")
        daily = client.create_deployment(flow_id, "daily", entrypoint="flows/review.py:review_orders")
        missed = [client.create_flow_run_from_deployment(hourly, state=Scheduled(scheduled_time=now - timedelta(hours=h)))
                  for h in (5, 4, 3, 2)]  # fmt: skip
        future = client.create_flow_run_from_deployment(hourly, state=Scheduled(scheduled_time=now + timedelta(hours=1)))
        once = client.create_flow_run_from_deployment(daily, state=Scheduled(scheduled_time=now - timedelta(hours=3)))

        assert local_stack.collapse_missed_runs() == {"missed-while-down/hourly": 3}

        left = {run.id for run in client.read_flow_runs(limit=200)}
        assert missed[-1].id in left and future.id in left and once.id in left
        assert not {run.id for run in missed[:-1]} & left
        assert local_stack.collapse_missed_runs() == {}  # a second make up finds nothing more to drop
