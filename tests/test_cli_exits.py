"""The CLI on bad input and a bad environment (issue 16, "unclean exits"): the exit codes the README promises, the
right hint, special files refused, no overwriting without --force, no secret echoed, private files; and where flows
run (``--prefect`` / ``--no-prefect``, never a temporary Prefect server)."""

from __future__ import annotations

import json
import os
import stat

import pytest
from typer.testing import CliRunner

from app.cli import common
from app.cli.main import cli

runner = CliRunner()

# Every command that runs a flow, with the arguments it needs on an empty store.
FLOW_COMMANDS = [
    ["intake", "run", "--channel", "spreadsheet"],
    ["review", "run"],
    ["review", "deadlines"],
    ["fulfilment", "run"],
    ["tracking", "poll"],
    ["settlement", "reconcile"],
    ["risk", "run"],
    ["aftersales", "run"],
]


@pytest.fixture
def no_prefect_server(monkeypatch):
    """No Prefect server configured and none answering on the local stack's port (whatever runs on this machine)."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setattr(common, "_configured_api_url", lambda: None)
    monkeypatch.setattr(common, "_port_open", lambda host, port: False)


def use_store(monkeypatch, engine) -> None:
    monkeypatch.setenv("YIDI_DATABASE_URL", engine.url.render_as_string(hide_password=False))


# --- the store ------------------------------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def unreachable_url(request, tmp_path):
    if request.param == "sqlite":  # a directory that does not exist: SQLite cannot open the file
        return f"sqlite:///{tmp_path / 'missing-dir' / 'yidi.db'}"
    return "postgresql://yidi:hunter2@127.0.0.1:1/yidi"  # nothing listens on port 1


@pytest.mark.parametrize("command", [["init"], ["order", "show", "1"], ["settlement", "reconcile", "--no-prefect"],
                                     ["intake", "run", "--no-prefect"], ["export", "orders"]])
def test_an_unreachable_store_is_exit_4_with_a_database_hint_not_yidi_init(monkeypatch, unreachable_url, command,
                                                                           tmp_path):
    monkeypatch.setenv("YIDI_DATABASE_URL", unreachable_url)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(cli, command)
    assert result.exit_code == 4, result.output
    assert "cannot be reached" in result.output and "YIDI_DATABASE_URL" in result.output
    assert "yidi init" not in result.output
    assert "hunter2" not in result.output and "Traceback" not in result.output


def test_a_reachable_store_without_schema_says_run_yidi_init(monkeypatch, bare_engine):
    use_store(monkeypatch, bare_engine)
    result = runner.invoke(cli, ["order", "show", "1"])
    assert result.exit_code == 4 and "not initialised" in result.output and "run `yidi init`" in result.output
    assert runner.invoke(cli, ["init"]).exit_code == 0
    assert runner.invoke(cli, ["order", "show", "1"]).exit_code == 1  # initialised now: order 1 is not found


# --- the policy file --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["config", "show"], ["intake", "run", "--no-prefect"],
                                     ["settlement", "reconcile", "--no-prefect"], ["init"]])
def test_a_policy_file_that_is_not_utf8_is_exit_3(monkeypatch, tmp_path, command):
    policy = tmp_path / "yidi.toml"
    policy.write_bytes("[general]\ncompany_name = \"重庆示例\"\n".encode("gbk"))
    monkeypatch.setenv("YIDI_CONFIG", str(policy))
    result = runner.invoke(cli, command)
    assert result.exit_code == 3, result.output
    assert "not UTF-8" in result.output and "Traceback" not in result.output


def test_an_invalid_policy_stops_intake_run_no_prefect_with_exit_3(monkeypatch, tmp_path, engine):
    use_store(monkeypatch, engine)
    policy = tmp_path / "yidi.toml"
    policy.write_text("[intake]\nbatch_size = \"many\"\nno_such_key = 1\n", encoding="utf-8")
    monkeypatch.setenv("YIDI_CONFIG", str(policy))
    result = runner.invoke(cli, ["intake", "run", "--no-prefect"])
    assert result.exit_code == 3, result.output
    assert "intake.no_such_key" in result.output and "order intake" not in result.output  # no summary table


def test_a_secret_under_a_wrong_key_is_not_echoed(monkeypatch, tmp_path):
    policy = tmp_path / "yidi.toml"
    policy.write_text('[notifications]\nsmtp_pasword = "hunter2-secret"\n', encoding="utf-8")
    monkeypatch.setenv("YIDI_CONFIG", str(policy))
    result = runner.invoke(cli, ["config", "show"])
    assert result.exit_code == 3
    assert "notifications.smtp_pasword" in result.output and "unknown key" in result.output
    assert "hunter2" not in result.output


def test_config_show_masks_passwords_in_urls_and_the_database_url(monkeypatch, tmp_path):
    policy = tmp_path / "yidi.toml"
    policy.write_text('[intake.woocommerce]\nurl = "https://shop:hunter2@shop.example.com"\n', encoding="utf-8")
    monkeypatch.setenv("YIDI_CONFIG", str(policy))
    monkeypatch.setenv("YIDI_DATABASE_URL", "postgresql://yidi:s3cr3t-pw@db.internal:5432/yidi")
    shown = runner.invoke(cli, ["config", "show"])
    assert shown.exit_code == 0
    assert "hunter2" not in shown.output and "s3cr3t-pw" not in shown.output
    assert "https://shop:***@shop.example.com" in shown.output
    assert "# order store: postgresql+psycopg://yidi:***@db.internal:5432/yidi" in shown.output
    as_json = runner.invoke(cli, ["config", "show", "--json"])
    assert json.loads(as_json.stdout)["intake"]["woocommerce"]["url"] == "https://shop:***@shop.example.com"


# --- files given on the command line ----------------------------------------------------------------------------------


def special_files(tmp_path) -> dict[str, str]:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    return {"device": "/dev/zero", "fifo": str(fifo), "directory": str(tmp_path)}


@pytest.mark.parametrize("kind", ["device", "fifo", "directory"])
@pytest.mark.parametrize("command", [["settlement", "reconcile", "--no-prefect"], ["load", "catalog"],
                                     ["fulfilment", "stocktake", "--no-prefect"],
                                     ["intake", "run", "--no-prefect", "--file"]])
def test_special_files_are_refused_as_not_a_regular_file(sqlite_engine, monkeypatch, tmp_path, kind, command):
    use_store(monkeypatch, sqlite_engine)
    path = special_files(tmp_path)[kind]
    result = runner.invoke(cli, [*command, path])  # a FIFO opened for reading would block here forever
    assert result.exit_code == 1, result.output
    assert "is not a regular file" in result.output and "Traceback" not in result.output


def test_a_missing_file_is_refused_with_exit_1(sqlite_engine, monkeypatch, tmp_path):
    use_store(monkeypatch, sqlite_engine)
    result = runner.invoke(cli, ["settlement", "reconcile", "--no-prefect", str(tmp_path / "nope.csv")])
    assert result.exit_code == 1 and "no such file" in result.output


def test_export_refuses_an_existing_file_unless_force(engine, monkeypatch, tmp_path):
    use_store(monkeypatch, engine)
    target = tmp_path / "orders.csv"
    target.write_text("keep me", encoding="utf-8")
    refused = runner.invoke(cli, ["export", "orders", "-o", str(target)])
    assert refused.exit_code == 1 and "--force" in refused.output
    assert target.read_text(encoding="utf-8") == "keep me"
    monkeypatch.chdir(tmp_path)  # the default name TABLE.FORMAT is protected the same way
    assert runner.invoke(cli, ["export", "orders"]).exit_code == 1
    forced = runner.invoke(cli, ["export", "orders", "-o", str(target), "--force"])
    assert forced.exit_code == 0, forced.output
    assert target.read_text(encoding="utf-8-sig") != "keep me"


# --- private files --------------------------------------------------------------------------------------------------


def test_yidi_home_is_created_0700_and_the_store_and_exports_0600(monkeypatch, tmp_path):
    home = tmp_path / "fresh-home"
    monkeypatch.setenv("YIDI_HOME", str(home))
    os.umask(0o022)  # a usual login umask: yidi must still keep personal data private
    try:
        import importlib

        import yidi

        importlib.reload(yidi)  # what every yidi process does on start
        assert runner.invoke(cli, ["init"]).exit_code == 0
        export = tmp_path / "orders.xlsx"
        assert runner.invoke(cli, ["export", "orders", "-f", "xlsx", "-o", str(export)]).exit_code == 0
        reconciled = runner.invoke(cli, ["settlement", "reconcile", "--no-prefect", "--json"])
        assert reconciled.exit_code == 0, reconciled.output
        workbook = json.loads(reconciled.stdout)["report"]["workbook"]
    finally:
        os.umask(0o077)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    for path in (home / "yidi.db", export, workbook):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path


# --- where flows run ------------------------------------------------------------------------------------------------


def test_without_a_server_flow_commands_run_in_this_process(no_prefect_server, engine, monkeypatch):
    use_store(monkeypatch, engine)
    monkeypatch.setenv("YIDI_KUAIDI100_CUSTOMER", "test-customer")
    monkeypatch.setenv("YIDI_KUAIDI100_KEY", "test-key")
    assert common.use_prefect(None) is False
    for command in FLOW_COMMANDS:
        result = runner.invoke(cli, [*command, "--json"])
        assert result.exit_code == 0, (command, result.output)


@pytest.mark.parametrize("command", FLOW_COMMANDS)
def test_prefect_without_a_server_is_refused_not_a_temporary_server(no_prefect_server, sqlite_engine, monkeypatch,
                                                                     command):
    use_store(monkeypatch, sqlite_engine)
    result = runner.invoke(cli, [*command, "--prefect"])
    assert result.exit_code == 4 and "no Prefect server" in result.output and "make up" in result.output


def test_load_orders_with_prefect_but_no_server_is_refused(no_prefect_server, sqlite_engine, monkeypatch, tmp_path):
    use_store(monkeypatch, sqlite_engine)
    orders = tmp_path / "orders.csv"
    orders.write_text("订单号,客户\nYD1,张三\n", encoding="utf-8")
    result = runner.invoke(cli, ["load", "orders", str(orders), "--prefect"])
    assert result.exit_code == 4 and "no Prefect server" in result.output


def test_tracking_poll_without_the_carrier_account_is_a_clean_exit_3(no_prefect_server, sqlite_engine, monkeypatch):
    use_store(monkeypatch, sqlite_engine)
    monkeypatch.delenv("YIDI_KUAIDI100_CUSTOMER", raising=False)
    result = runner.invoke(cli, ["tracking", "poll"])
    assert result.exit_code == 3 and "YIDI_KUAIDI100_CUSTOMER" in result.output


def test_a_configured_server_that_does_not_answer_is_exit_4(monkeypatch, sqlite_engine):
    use_store(monkeypatch, sqlite_engine)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setattr(common, "_configured_api_url", lambda: "http://127.0.0.1:1/api")
    result = runner.invoke(cli, ["settlement", "reconcile"])
    assert result.exit_code == 4 and "does not answer" in result.output and "--no-prefect" in result.output
