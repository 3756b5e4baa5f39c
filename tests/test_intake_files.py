"""Offline channels: the phone/fax order template (csv/xlsx inbox), order emails (Maildir, IMAP), the phone form,
quarantine and replay (CLI included)."""

from __future__ import annotations

import json
from email.message import EmailMessage
from pathlib import Path

import pytest
from intake_support import count, frame, neutral, store
from openpyxl import Workbook
from typer.testing import CliRunner

from connectors.base import ChannelError
from connectors.email_orders import EmailConnector, safe_filename
from connectors.phone_form import FormConnector, PhoneOrder, form_record
from connectors.spreadsheet_orders import SpreadsheetConnector
from demo.standins.imap import ImapStandin
from demo.standins.mail import attachment_email, body_email, large_attachment_message, write_maildir
from demo.standins.spreadsheets import template_frame, write_csv, write_xlsx
from tasks.intake.landing import replay_record, run_channel
from yidi.schema import intake_records, orders


def inbox_connector(inbox: Path, **options) -> SpreadsheetConnector:
    return SpreadsheetConnector("spreadsheet", {"inbox_dir": str(inbox), "settle_seconds": 0, **options})


def names_of(engine, channel_order_ids: list[str]) -> dict[str, str]:
    rows = frame(engine, "SELECT channel_order_id, customer_name FROM orders")
    return {k: v for k, v in zip(rows["channel_order_id"], rows["customer_name"], strict=True)
            if k in channel_order_ids}


def test_gbk_bom_and_english_xlsx_templates_are_read_exactly(sqlite_engine, tmp_path):
    inbox = tmp_path / "inbox"
    sample = neutral(30)
    write_csv(template_frame(sample[:10], prefix="G"), inbox / "电话订单_gbk.csv", "gbk")
    write_csv(template_frame(sample[10:20], prefix="B", headers="en"), inbox / "orders_bom.csv", "utf-8-sig")
    write_xlsx(template_frame(sample[20:], prefix="X", channel="fax"), inbox / "fax.xlsx")
    summary = run_channel(sqlite_engine, inbox_connector(inbox))
    assert (summary.new, summary.quarantined) == (30, 0)
    expected = {f"G{o['ref']}": o["customer_name"] for o in sample[:10]}
    expected |= {f"B{o['ref']}": o["customer_name"] for o in sample[10:20]}
    assert names_of(sqlite_engine, list(expected)) == expected  # GBK and BOM decoded, never mojibake
    channels = frame(sqlite_engine, "SELECT channel, count(*) n FROM orders GROUP BY 1").set_index("channel")["n"]
    assert channels.to_dict() == {"phone": 20, "fax": 10}
    lines = frame(sqlite_engine, "SELECT count(*) n FROM order_lines")["n"][0]
    assert lines == sum(len(o["lines"]) for o in sample)
    assert sorted(p.name for p in (inbox / "processed").rglob("*.*")) == ["fax.xlsx", "orders_bom.csv",
                                                                          "电话订单_gbk.csv"]
    # The same file dropped again: nothing new, nothing duplicated.
    write_csv(template_frame(sample[:10], prefix="G"), inbox / "again.csv", "gbk")
    again = run_channel(sqlite_engine, inbox_connector(inbox))
    assert (again.read, again.new, again.unchanged) == (10, 0, 10)
    assert count(sqlite_engine, orders) == 30


def _messy_workbook(path: Path) -> None:
    """Title row, merged order cells, an empty row, a wrong type, a formula without a saved result."""
    book = Workbook()
    sheet = book.active
    sheet["A1"] = "电话订单登记表（2026年11月）"
    sheet.merge_cells("A1:J1")
    header = ["订单号", "下单时间", "客户名称", "联系电话", "收货地址", "商品编码", "商品名称", "数量", "单价（元）",
              "备注"]
    sheet.append(header)
    rows = [
        ["T-1", "2026-11-26 09:30", "张三", "138 1234 5678", "四川省成都市武侯区人民南路四段1号", "SKU-0002", "摩托车头盔",
         2, 189, "合并单元格"],
        [None, None, None, None, None, "SV-INSTALL", "设备上门安装", 1, 300, None],
        [None] * 10,
        ["T-2", "2026-11-26 10:00", "李四", "023-6888 1234", "重庆市渝中区解放碑步行街88号", "SKU-0004", "火锅底料",
         "两箱", 39.9, None],
        ["T-3", "2026-11-26 11:00", "王五", "13900001111", "万州区高笋塘商圈5号", "SKU-0005", "重庆小面调料", 3,
         "=25.8*1", None],
        ["T-4", "2026-11-26 12:00", "赵六", "13900002222", "广东省深圳市南山区科技园南区10号", "SKU-0009", "不锈钢保温杯",
         1, 79, None],
    ]
    for row in rows:
        sheet.append(row)
    for column in "ABCDE":  # order T-1's cells merged down its two lines
        sheet.merge_cells(f"{column}3:{column}4")
    book.save(path)


def test_messy_spreadsheet_quarantines_only_the_bad_orders_with_actionable_reasons(sqlite_engine, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    _messy_workbook(inbox / "messy.xlsx")
    summary = run_channel(sqlite_engine, inbox_connector(inbox))
    assert (summary.new, summary.quarantined) == (2, 2)
    stored = frame(sqlite_engine, "SELECT o.channel_order_id, o.region, count(l.id) lines FROM orders o "
                                  "JOIN order_lines l ON l.order_id = o.id GROUP BY 1, 2").set_index("channel_order_id")
    assert stored.loc["T-1", "lines"] == 2 and stored.loc["T-1", "region"] == "remote"  # merged cells filled down
    assert stored.loc["T-4", "region"] == "remote"
    reasons = frame(sqlite_engine, "SELECT source_key, reason FROM intake_records WHERE status = 'quarantined'")
    reasons = dict(zip(reasons["source_key"], reasons["reason"], strict=True))
    assert "row 6: 数量 is '两箱', expected a positive number" in reasons["T-2"]
    assert "row 7: 单价（元） is '=25.8*1'" in reasons["T-3"]  # a formula without a saved result, shown as such


def test_missing_columns_and_undecodable_files_are_quarantined_whole(sqlite_engine, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "no_qty.csv").write_text("订单号,客户名称,联系电话,详细地址,商品编码,单价\nA1,张三,13800000000,某地,SKU-1,10\n",
                                      encoding="utf-8")
    (inbox / "binary.csv").write_bytes(b"\xff\xfe\xfa\x00\x81\x00garbage")
    (inbox / "scan.pdf").write_bytes(b"%PDF-1.4")
    summary = run_channel(sqlite_engine, inbox_connector(inbox))
    assert (summary.new, summary.quarantined) == (0, 3)
    reasons = " | ".join(frame(sqlite_engine, "SELECT reason FROM intake_records")["reason"])
    assert "missing column(s): 数量 (quantity)" in reasons
    assert "not UTF-8 and not GBK/GB18030" in reasons and "unsupported file type .pdf" in reasons
    assert sorted(p.name for p in (inbox / "failed").rglob("*.*")) == ["binary.csv", "scan.pdf"]


def test_rows_of_one_order_split_across_chunks_are_caught(sqlite_engine, tmp_path):
    inbox = tmp_path / "inbox"
    rows = template_frame(neutral(6), prefix="S")
    moved = rows.iloc[[0]]  # the first order's first line again, at the end of the file
    write_csv(__import__("pandas").concat([rows, moved]), inbox / "split.csv")
    summary = run_channel(sqlite_engine, inbox_connector(inbox, chunk_rows=100))
    assert summary.quarantined == 0  # same chunk: the rows are simply grouped
    write_csv(__import__("pandas").concat([rows, moved]).assign(订单号=lambda f: f["订单号"] + "b"),
              inbox / "split2.csv")
    summary = run_channel(sqlite_engine, inbox_connector(inbox, chunk_rows=4))
    assert summary.quarantined == 1
    assert "also appears earlier in this file" in summary.reasons[0]


def test_replay_after_fixing_a_quarantined_record_goes_through_the_same_path(sqlite_engine, tmp_path,
                                                                          monkeypatch):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    _messy_workbook(inbox / "messy.xlsx")
    run_channel(sqlite_engine, inbox_connector(inbox))
    bad = frame(sqlite_engine, "SELECT id, content FROM intake_records WHERE source_key = 'T-2'").iloc[0]
    monkeypatch.setenv("YIDI_DATABASE_URL", str(sqlite_engine.url))
    monkeypatch.setenv("YIDI_CONFIG", str(_policy(tmp_path, f'[intake.spreadsheet]\ninbox_dir = "{inbox}"\n')))
    from app.cli.main import cli

    runner = CliRunner()
    listed = runner.invoke(cli, ["intake", "quarantine", "list", "--json"])
    assert listed.exit_code == 0 and json.loads(listed.stdout)["total"] == 2
    shown = runner.invoke(cli, ["intake", "quarantine", "show", str(bad["id"])])
    assert "两箱" in shown.stdout and "expected a positive number" in shown.stdout
    # Replayed as it is: still wrong, stays quarantined (the original too).
    same = runner.invoke(cli, ["intake", "quarantine", "replay", str(bad["id"]), "--json"])
    assert same.exit_code == 1 and json.loads(same.stdout)["status"] == "quarantined"
    fixed = tmp_path / "fixed.csv"
    fixed.write_text(bad["content"].replace("两箱", "2"), encoding="utf-8")
    result = runner.invoke(cli, ["intake", "quarantine", "replay", str(bad["id"]), "--content-file", str(fixed),
                                 "--json"])
    assert result.exit_code == 0, result.stdout
    outcome = json.loads(result.stdout)
    assert outcome["status"] == "accepted" and outcome["new"] == 1
    statuses = frame(sqlite_engine, "SELECT id, status, replay_of FROM intake_records WHERE source_key = 'T-2' "
                                    "ORDER BY id")
    assert statuses["status"].tolist() == ["replayed", "quarantined", "accepted"]
    assert statuses["replay_of"].iloc[1:].tolist() == [bad["id"], bad["id"]]
    qty = frame(sqlite_engine, "SELECT l.quantity FROM order_lines l JOIN orders o ON o.id = l.order_id "
                               "WHERE o.channel_order_id = 'T-2'")["quantity"].tolist()
    assert qty == [2.0]
    with pytest.raises(ValueError, match="only quarantined records"):
        from connectors.registry import build_connector

        replay_record(sqlite_engine, build_connector("spreadsheet"), int(bad["id"]))


def _policy(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "yidi.toml"
    path.write_text(text, encoding="utf-8")
    from yidi.settings import get_settings

    get_settings.cache_clear()
    return path


def test_cli_intake_run_file_without_prefect(sqlite_engine, tmp_path, monkeypatch):
    path = write_csv(template_frame(neutral(5), prefix="C"), tmp_path / "drop.csv", "gbk")
    monkeypatch.setenv("YIDI_DATABASE_URL", str(sqlite_engine.url))
    from app.cli.main import cli

    result = CliRunner().invoke(cli, ["intake", "run", "--file", str(path), "--no-prefect", "--json"])
    assert result.exit_code == 0, result.stdout
    summary = json.loads(result.stdout)[f"file:{path.resolve()}"]
    assert summary["new"] == 5 and path.exists()  # a file named on the command line is not moved


def test_old_command_names_still_work_for_one_release_hidden_from_help(sqlite_engine, tmp_path, monkeypatch):
    path = write_csv(template_frame(neutral(3), prefix="O"), tmp_path / "old.csv", "gbk")
    monkeypatch.setenv("YIDI_DATABASE_URL", str(sqlite_engine.url))
    from app.cli.main import cli

    runner = CliRunner()
    result = runner.invoke(cli, ["ingest", "--file", str(path), "--no-prefect", "--json"])
    assert result.exit_code == 0, result.stdout
    assert json.loads(result.stdout)[f"file:{path.resolve()}"]["new"] == 3
    listed = runner.invoke(cli, ["quarantine", "list", "--json"])
    assert listed.exit_code == 0 and json.loads(listed.stdout)["total"] == 0
    shown = runner.invoke(cli, ["--help"]).stdout
    assert "intake" in shown and " ingest " not in shown and " quarantine " not in shown
    assert "renamed to `yidi intake run`" in runner.invoke(cli, ["ingest", "--help"]).stdout


# --- email ----------------------------------------------------------------------------------------------------------


def email_connector(maildir: Path, **options) -> EmailConnector:
    return EmailConnector("email", {"source": "maildir", "maildir": str(maildir), "processed_flag": "S",
                                    **options})


def test_order_emails_from_a_maildir_are_read_once(sqlite_engine, tmp_path, monkeypatch):
    monkeypatch.setenv("YIDI_HOME", str(tmp_path / "home"))
    sample = neutral(12)
    hello = EmailMessage()
    hello["From"], hello["Subject"] = "someone@example.com", "你好"
    hello.set_content("请问你们周末发货吗？")
    messages = [
        body_email(sample[0], order_id="E-0001"),
        body_email(sample[1], charset="gbk"),  # no order number: the Message-ID keys it
        attachment_email(sample[2:7], encoding="gbk", filename="../../etc/订单.csv"),
        attachment_email(sample[7:10], fmt="xlsx", filename="C:\\Users\\采购\\本周订单.xlsx"),
        hello,
    ]
    maildir = tmp_path / "Maildir"
    write_maildir(maildir, messages)
    summary = run_channel(sqlite_engine, email_connector(maildir))
    assert (summary.new, summary.quarantined) == (10, 1)
    assert "no order found" in summary.reasons[0]
    row = frame(sqlite_engine, "SELECT * FROM orders WHERE channel_order_id = 'E-0001'").iloc[0]
    assert row["channel"] == "email" and row["customer_name"] == sample[0]["customer_name"]
    assert row["customer_email"] == sample[0]["email"]  # the sender, when the body gives none
    # Attachments are archived under YIDI_HOME with their names made safe.
    archived = sorted(p.name for p in (tmp_path / "home" / "intake" / "mail").rglob("*") if p.is_file())
    assert archived == ["本周订单.xlsx", "订单.csv"]
    assert not (tmp_path / "etc").exists()
    # Processed messages are marked; a second run reads nothing.
    assert all(p.name.endswith(":2,S") for p in (maildir / "cur").iterdir())
    assert run_channel(sqlite_engine, email_connector(maildir)).read == 0


def test_safe_filename():
    assert safe_filename("../../etc/passwd") == "passwd"
    assert safe_filename("C:\\Windows\\system32\\x.csv") == "x.csv"
    assert safe_filename("..") == "attachment"
    assert safe_filename("a\x00b<>.csv") == "a_b__.csv"


def test_a_50_mb_attachment_is_refused_without_loading_it_and_others_go_through(sqlite_engine, tmp_path):
    big = large_attachment_message(50 * 2**20)
    maildir = tmp_path / "Maildir"
    write_maildir(maildir, [big, body_email(neutral(1)[0], order_id="E-small")])
    summary = run_channel(sqlite_engine, email_connector(maildir, max_message_mb=30, archive=False))
    assert (summary.new, summary.quarantined) == (1, 1)
    record = frame(sqlite_engine, "SELECT content, reason FROM intake_records WHERE status = 'quarantined'").iloc[0]
    assert "over the 30 MB limit" in record["reason"] and "left in the mailbox" in record["reason"]
    assert len(record["content"]) < 10_000  # headers only: the 68 MB message was never loaded
    assert run_channel(sqlite_engine, email_connector(maildir)).read == 0


def test_imap_orders_are_marked_seen_after_commit_and_a_wrong_password_stores_nothing(sqlite_engine, monkeypatch):
    monkeypatch.setenv("T_MAIL_USER", "orders@example.com")
    monkeypatch.setenv("T_MAIL_PASSWORD", "imap-pass")
    sample = neutral(6)
    with ImapStandin(user="orders@example.com", password="imap-pass") as imap:
        uids = [imap.add_message(body_email(sample[0], order_id="I-1").as_bytes()),
                imap.add_message(attachment_email(sample[1:5], encoding="utf-8-sig").as_bytes()),
                imap.add_message(b"From: big@example.com\r\nSubject: big\r\n\r\n" + b"x" * (3 * 2**20))]
        options = {"source": "imap", "host": imap.host, "port": imap.port, "user_env": "T_MAIL_USER",
                   "password_env": "T_MAIL_PASSWORD", "archive": False}
        monkeypatch.setenv("T_MAIL_PASSWORD", "wrong")
        with pytest.raises(ChannelError, match="IMAP login refused for orders@example.com"):
            run_channel(sqlite_engine, EmailConnector("email", dict(options)))
        assert store(sqlite_engine) == dict.fromkeys(store(sqlite_engine), 0)
        assert all(imap.flags(uid) == set() for uid in uids)
        monkeypatch.setenv("T_MAIL_PASSWORD", "imap-pass")
        summary = run_channel(sqlite_engine, EmailConnector("email", {**options, "max_message_mb": 2}))
        assert (summary.new, summary.quarantined) == (5, 1)
        assert all(imap.flags(uid) == {"\\Seen"} for uid in uids)
        assert run_channel(sqlite_engine, EmailConnector("email", dict(options))).read == 0


# --- phone form ------------------------------------------------------------------------------------------------------


def test_phone_form_record_becomes_an_order(sqlite_engine):
    order = PhoneOrder(customer_name="陈静", phone="+86 139-0000-1234", address="重庆市江北区观音桥步行街9号",
                       lines=[{"item_code": "SKU-0001", "quantity": 1, "unit_price_yuan": "3280.00"},
                              {"item_name": "设备上门安装", "quantity": 1, "unit_price_yuan": "300", "kind": "服务"}])
    records = form_record(order, entered_by="user:test")
    summary = run_channel(sqlite_engine, FormConnector("form", {"records": records}))
    assert summary.new == 1
    row = frame(sqlite_engine, "SELECT * FROM orders").iloc[0]
    assert row["channel"] == "phone" and row["channel_order_id"].startswith("PH")
    assert row["region"] == "local" and row["ship_district"] == "两江新区"  # old name, 2025 reform
    assert row["order_total_fen"] == 358000
    kinds = frame(sqlite_engine, "SELECT item_kind FROM order_lines ORDER BY line_no")["item_kind"].tolist()
    assert kinds == ["product", "service"]
    assert count(sqlite_engine, intake_records, intake_records.c.channel == "form") == 1
