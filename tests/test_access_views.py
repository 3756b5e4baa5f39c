"""Issue 20: `review show`, `aftersales show` and `feedback show` mask the customer's name, phone and address by
default and record nothing; `--unmasked` needs the operations, manager or auditor role (refused otherwise, nothing
shown), says so, and writes exactly one access record; the after-sales artifacts hold no personal data."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from aftersales_support import add_order, build_reference, local, request
from sqlalchemy import select
from typer.testing import CliRunner

from app.cli.main import cli
from yidi.schema_access import personal_data_access

STAFF = """
[staff]
people = [
  { name = "li.wei", login = "liwei", roles = ["reviewer"] },
  { name = "chen.jie", login = "cjie", roles = ["auditor"] },
]
"""
NAME, PHONE, DETAIL = "张三", "13900000000", "金开大道 1 号"  # aftersales_support.add_order's customer
runner = CliRunner()


@pytest.fixture
def store(engine, tmp_path, monkeypatch):
    policy = tmp_path / "yidi.toml"
    policy.write_text(STAFF, encoding="utf-8")
    monkeypatch.setenv("YIDI_CONFIG", str(policy))
    monkeypatch.setenv("YIDI_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    build_reference(engine)
    add_order(engine, "YD-V", {"SKU-0009": 1}, delivered=local(2026, 12, 1))
    request(engine, "YD-V", "退货", local(2026, 12, 3))
    added = runner.invoke(cli, ["feedback", "add", f"请回电 {PHONE}，保温杯漏水", "--contact", PHONE, "--order", "YD-V",
                                "--as-of", "2026-12-03T10:00"])  # fmt: skip
    assert added.exit_code == 0, added.output
    case_no = json.loads(runner.invoke(cli, ["aftersales", "list", "--json"]).stdout)[0]["case_no"]
    return engine, case_no


def _records(engine) -> list[tuple]:
    with engine.connect() as conn:
        frame = pd.DataFrame(conn.execute(select(personal_data_access)).mappings().all())
    return [] if frame.empty else list(frame[["actor", "action", "subject", "people"]].itertuples(index=False,
                                                                                                 name=None))


def _views(case_no):
    return [(["review", "show", "YD-V"], "review_show", "YD-V", True),
            (["aftersales", "show", case_no], "aftersales_show", case_no, False),
            (["feedback", "show", "FB00000001"], "feedback_show", "FB00000001", False)]  # fmt: skip


def test_each_view_is_masked_by_default_and_records_nothing(store):
    engine, case_no = store
    for args, _action, _subject, has_address in _views(case_no):
        for extra in ([], ["--json"]):
            shown = runner.invoke(cli, [*args, *extra, "--as", "cjie"])  # even for a role holder: masked by default
            assert shown.exit_code == 0, shown.output
            assert PHONE not in shown.stdout and "139****0000" in shown.stdout, (args, shown.stdout)
            if args[0] != "feedback":
                assert NAME not in shown.stdout and "张*" in shown.stdout
            if has_address:
                assert DETAIL not in shown.stdout and "重庆市重庆市渝北区金开大道 1**" in shown.stdout
            assert "UNMASKED" not in shown.output
    assert _records(engine) == []


def test_unmasked_needs_a_role_and_writes_one_record_per_view(store):
    engine, case_no = store
    for args, action, subject, has_address in _views(case_no):
        refused = runner.invoke(cli, [*args, "--unmasked", "--as", "li.wei"])
        assert refused.exit_code == 1 and "operations or manager or auditor role" in refused.output
        assert "nothing shown" in refused.output and PHONE not in refused.stdout
        assert _records(engine) == [r for r in _records(engine) if r[1] != action]  # none for this view
        before = len(_records(engine))
        shown = runner.invoke(cli, [*args, "--unmasked", "--as", "cjie", "--json"])
        assert shown.exit_code == 0, shown.output
        assert "UNMASKED personal data, recorded as auditor:chen.jie" in shown.stderr
        view = json.loads(shown.stdout)
        assert PHONE in json.dumps(view, ensure_ascii=False)
        if args[0] != "feedback":
            assert NAME in json.dumps(view, ensure_ascii=False)
        else:
            assert view["contact"] == PHONE and view["body"] == f"请回电 {PHONE}，保温杯漏水"
        if has_address:
            assert view["address"] == f"重庆市重庆市渝北区{DETAIL}"
        records = _records(engine)
        assert len(records) == before + 1 and records[-1] == ("auditor:chen.jie", action, subject, 1)


def test_the_after_sales_artifacts_hold_no_personal_data(store):
    from flows.aftersales import report_tables

    engine, _case_no = store
    published = report_tables(engine, local(2026, 12, 3, 12))
    assert "feedback-sla" in published
    tables = json.dumps(published, ensure_ascii=False, default=str)
    for personal in (NAME, PHONE, "139****0000", DETAIL):
        assert personal not in tables
