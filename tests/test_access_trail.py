"""Issue 20, build 4: the trail of personal-data access (append-only), masked exports by default."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from review_data import insert_order, load_reference, variant
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from app.cli.main import cli
from yidi.schema_access import personal_data_access

runner = CliRunner()


@pytest.fixture
def store(engine, monkeypatch):
    with engine.begin() as conn:
        ids = load_reference(conn)
        insert_order(conn, variant(customer_name="李娜", customer_phone="13800138000"), ids, no="YD-A-1")
        insert_order(conn, variant(customer_name="王芳", customer_phone="13900139000"), ids, no="YD-A-2")
    monkeypatch.setenv("YIDI_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    return engine


def _records(engine) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.DataFrame(conn.execute(select(personal_data_access)).mappings().all())


def test_a_masked_export_writes_no_record_and_an_unmasked_one_exactly_one(store, tmp_path):
    masked = tmp_path / "masked.csv"
    result = runner.invoke(cli, ["export", "orders", "-o", str(masked)])
    assert result.exit_code == 0 and "masked" in result.output
    assert set(pd.read_csv(masked, encoding="utf-8-sig")["customer_phone"]) == {"138****8000", "139****9000"}
    assert _records(store).empty
    full = tmp_path / "full.csv"
    result = runner.invoke(cli, ["export", "orders", "-o", str(full), "--unmasked", "--as", "auditor1"])
    assert result.exit_code == 0 and "UNMASKED" in result.output
    assert set(pd.read_csv(full, encoding="utf-8-sig")["customer_name"]) == {"李娜", "王芳"}
    records = _records(store)
    assert len(records) == 1
    record = records.iloc[0]
    assert record["action"] == "export_unmasked" and record["people"] == 2 and record["actor"] == "operations:auditor1"
    assert str(full.resolve()) in record["subject"]
    listed = json.loads(runner.invoke(cli, ["access", "log", "--json"]).output)
    assert [(r["action"], r["people"]) for r in listed] == [("export_unmasked", 2)]


def test_unmasked_needs_a_role(store, tmp_path, monkeypatch):
    policy = tmp_path / "yidi.toml"
    policy.write_text('[staff]\npeople = [{ name = "li.wei", login = "liwei", roles = ["reviewer"] }]\n',
                      encoding="utf-8")  # fmt: skip
    monkeypatch.setenv("YIDI_CONFIG", str(policy))
    out = tmp_path / "x.csv"
    refused = runner.invoke(cli, ["export", "orders", "-o", str(out), "--unmasked", "--as", "li.wei"])
    assert refused.exit_code == 1 and "operations or manager or auditor role" in refused.output
    assert not out.exists() and _records(store).empty
    shown = runner.invoke(cli, ["order", "show", "YD-A-1", "--as", "li.wei"])
    assert shown.exit_code == 0 and "李娜" not in shown.output and "138****8000" in shown.output
    refused = runner.invoke(cli, ["order", "show", "YD-A-1", "--unmasked", "--as", "li.wei"])
    assert refused.exit_code == 1 and "auditor role" in refused.output and "138" not in refused.stdout
    assert _records(store).empty


def test_order_show_of_personal_fields_is_recorded(store):
    masked = runner.invoke(cli, ["order", "show", "YD-A-1", "--as", "someone"])  # masked by default, not recorded
    assert masked.exit_code == 0 and "138****8000" in masked.output and "13800138000" not in masked.output
    assert _records(store).empty
    shown = runner.invoke(cli, ["order", "show", "YD-A-1", "--unmasked", "--as", "someone"])
    assert shown.exit_code == 0 and "13800138000" in shown.output and "UNMASKED" in shown.stderr
    records = _records(store)
    assert records[["action", "subject", "people"]].values.tolist() == [["order_show", "YD-A-1", 1]]


def test_the_access_trail_is_append_only(store):
    runner.invoke(cli, ["order", "show", "YD-A-1", "--unmasked"])
    for statement in ("UPDATE personal_data_access SET people = 0", "DELETE FROM personal_data_access"):
        with pytest.raises(DBAPIError, match="append-only"), store.begin() as conn:
            conn.execute(text(statement))
    with store.connect() as conn:
        assert conn.execute(select(func.count()).select_from(personal_data_access)).scalar_one() == 1
