"""Issue 16: an order is accepted whole or quarantined whole, and text arrives as it was written (on both
databases): hostile text round-trips through every intake channel, an unreadable row holds its whole order."""

from __future__ import annotations

import pytest
from intake_support import TB, WC, frame, neutral, set_secrets, taobao_connector, woo_connector

from connectors.email_orders import EmailConnector
from connectors.phone_form import FormConnector, PhoneOrder, form_record
from connectors.spreadsheet_orders import SpreadsheetConnector
from demo.standins.mail import attachment_email, body_email, write_maildir
from demo.standins.spreadsheets import template_frame, write_csv, write_xlsx
from demo.standins.taobao import TaobaoStandin
from demo.standins.woocommerce import WooCommerceStandin
from tasks.intake.landing import run_channel

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

# What an attacker or a clumsy user types: formula starters, quotes, a tab, emoji, rare CJK (Extension B).
NAME = '=HYPERLINK("http://evil.example/?q=1","点我")'
ITEM = "+cmd|' /C calc'!A0 \"引号\"\t制表 🍲 𠀀𪚥"
DETAIL = "-2+3 路1号 @楼下 'B座'"
NOTE = "第一行\n第二行\t制表 =SUM(A1:A9) 😀 𫝀"


def hostile(ref: str) -> dict:
    order = neutral(1)[0]
    order.update(ref=ref, customer_name=NAME, province="重庆市", city="重庆市", district="渝中区", detail=DETAIL,
                 note=NOTE)
    order["lines"] = [dict(order["lines"][0], name=ITEM, spec="", model="")]
    return order


def inbox_connector(inbox) -> SpreadsheetConnector:
    return SpreadsheetConnector("spreadsheet", {"inbox_dir": str(inbox), "settle_seconds": 0})


def stored(engine) -> list[dict]:
    rows = frame(engine, "SELECT o.channel, o.customer_name, o.ship_detail, o.buyer_note, l.item_name "
                         "FROM orders o JOIN order_lines l ON l.order_id = o.id ORDER BY o.id")
    return rows.to_dict("records")


def test_hostile_text_round_trips_through_the_template_csv_and_xlsx(engine, tmp_path):
    inbox = tmp_path / "inbox"
    write_csv(template_frame([hostile("1")], prefix="C"), inbox / "订单.csv", "utf-8")
    write_csv(template_frame([hostile("2")], prefix="G"), inbox / "订单_gbk.csv", "gb18030")
    write_xlsx(template_frame([hostile("3")], prefix="X"), inbox / "订单.xlsx")
    summary = run_channel(engine, inbox_connector(inbox))
    assert (summary.new, summary.quarantined) == (3, 0), summary.reasons
    for row in stored(engine):
        assert (row["customer_name"], row["ship_detail"], row["item_name"], row["buyer_note"]) == (
            NAME, DETAIL, ITEM, NOTE)


def test_hostile_text_round_trips_through_order_emails(engine, tmp_path, monkeypatch):
    monkeypatch.setenv("YIDI_HOME", str(tmp_path / "home"))
    maildir = tmp_path / "Maildir"
    write_maildir(maildir, [attachment_email([hostile("4")], encoding="utf-8"),
                            attachment_email([hostile("5")], fmt="xlsx")])
    connector = EmailConnector("email", {"source": "maildir", "maildir": str(maildir), "processed_flag": "S"})
    summary = run_channel(engine, connector)
    assert (summary.new, summary.quarantined) == (2, 0), summary.reasons
    for row in stored(engine):
        assert (row["customer_name"], row["ship_detail"], row["item_name"], row["buyer_note"]) == (
            NAME, DETAIL, ITEM, NOTE)


def test_hostile_text_in_an_email_body_keeps_what_one_line_can_hold(engine, tmp_path, monkeypatch):
    """The body format is one ``key: value`` line per field, so a note's newline ends the note there."""
    monkeypatch.setenv("YIDI_HOME", str(tmp_path / "home"))
    maildir = tmp_path / "Maildir"
    order = hostile("6")
    order["note"] = NOTE.replace("\n", " ")
    write_maildir(maildir, [body_email(order, order_id="E-6")])
    connector = EmailConnector("email", {"source": "maildir", "maildir": str(maildir), "processed_flag": "S"})
    summary = run_channel(engine, connector)
    assert (summary.new, summary.quarantined) == (1, 0), summary.reasons
    row = stored(engine)[0]
    assert (row["customer_name"], row["item_name"], row["buyer_note"]) == (NAME, ITEM, order["note"])
    assert row["ship_detail"].endswith(DETAIL)


def test_hostile_text_round_trips_through_the_phone_form(engine):
    record = form_record(PhoneOrder(**{"customer_name": NAME, "phone": "13900001111", "province": "重庆市", "city": "重庆市",
                          "district": "渝中区", "address": DETAIL, "note": NOTE,
                          "lines": [{"item_code": "SKU-1", "item_name": ITEM, "quantity": 1,
                                     "unit_price_yuan": "10"}]}), entered_by="user:test")
    summary = run_channel(engine, FormConnector("form", {"records": record}))
    assert (summary.new, summary.quarantined) == (1, 0), summary.reasons
    row = stored(engine)[0]
    assert (row["customer_name"], row["ship_detail"], row["item_name"], row["buyer_note"]) == (
        NAME, DETAIL, ITEM, NOTE)


def test_hostile_text_round_trips_through_the_platform_and_the_website(engine, monkeypatch):
    set_secrets(monkeypatch)
    with TaobaoStandin(**TB, orders=[hostile("7")]) as top:
        summary = run_channel(engine, taobao_connector(top.url))
    assert (summary.new, summary.quarantined) == (1, 0), summary.reasons
    with WooCommerceStandin(**WC, orders=[hostile("8")]) as shop:
        summary = run_channel(engine, woo_connector(shop.url))
    assert (summary.new, summary.quarantined) == (1, 0), summary.reasons
    rows = stored(engine)
    assert [r["channel"] for r in rows] == ["taobao", "website"]
    for row in rows:
        assert (row["customer_name"], row["ship_detail"], row["item_name"], row["buyer_note"]) == (
            NAME, DETAIL, ITEM, NOTE), row


def test_an_unreadable_row_holds_its_whole_order_with_the_row_named(engine, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "o.csv").write_text(
        "订单号,下单时间,客户名称,联系电话,收货地址,商品编码,商品名称,数量,单价（元）,备注\n"
        "A1,2026-11-26 09:30,张三,13812345678,重庆市渝中区解放碑1号,SKU-1,杯子,2,10,\n"
        "A1,2026-11-26 09:30,张三,13812345678,重庆市渝中区解放碑1号,SKU-2,碗,1,5,,多了一列\n"
        "A2,2026-11-26 09:30,李四,13812345679,重庆市渝中区解放碑2号,SKU-2,碗,1,5,\n", encoding="utf-8")
    summary = run_channel(engine, inbox_connector(inbox))
    assert (summary.new, summary.quarantined) == (1, 1)
    assert frame(engine, "SELECT channel_order_id FROM orders")["channel_order_id"].tolist() == ["A2"]
    held = frame(engine, "SELECT reason, content, source_ref FROM intake_records WHERE status = 'quarantined'")
    assert len(held) == 1
    assert held["reason"][0].startswith("order A1 is held whole: row 3 has 11 values")
    assert held["source_ref"][0].endswith("#rows=2-3")
    assert held["content"][0].count("\n") == 2  # header and both rows of A1, to fix and replay together


def test_a_street_part_beginning_with_a_dash_keeps_it(engine):
    record = form_record(PhoneOrder(**{"customer_name": "王五", "phone": "13900001111", "province": "重庆市", "city": "重庆市",
                          "district": "渝中区", "address": "-2+3 路1号",
                          "lines": [{"item_code": "SKU-1", "quantity": 1, "unit_price_yuan": "10"}]}))
    run_channel(engine, FormConnector("form", {"records": record}))
    assert frame(engine, "SELECT ship_detail FROM orders")["ship_detail"].tolist() == ["-2+3 路1号"]


# Free-text addresses whose division names come after other text: the text before them stays in the detail.
FREE_TEXT = [("=A1 重庆市渝中区解放碑1号", "渝中区", "=A1 解放碑1号"),
             ("收货：四川省成都市武侯区人民南路4段1号", "武侯区", "收货:人民南路4段1号"),
             ("收件人张三 重庆市渝北区龙溪街道1号", "两江新区", "收件人张三 龙溪街道1号")]


def free_text_orders(start: int) -> list[dict]:
    orders = []
    for i, (address, _, _) in enumerate(FREE_TEXT):
        order = neutral(1)[0]
        order.update(ref=str(start + i), province="", city="", district="", detail=address)
        orders.append(order)
    return orders


def addresses(engine) -> list[tuple]:
    rows = frame(engine, "SELECT ship_district, ship_detail FROM orders ORDER BY channel_order_id")
    return list(rows.itertuples(index=False, name=None))


def test_text_before_the_division_names_is_kept_through_the_template_csv(engine, tmp_path):
    inbox = tmp_path / "inbox"
    write_csv(template_frame(free_text_orders(10), prefix="C"), inbox / "订单.csv", "utf-8")
    summary = run_channel(engine, inbox_connector(inbox))
    assert (summary.new, summary.quarantined) == (3, 0), summary.reasons
    assert addresses(engine) == [(district, detail) for _, district, detail in FREE_TEXT]


def test_text_before_the_division_names_is_kept_through_order_emails(engine, tmp_path, monkeypatch):
    monkeypatch.setenv("YIDI_HOME", str(tmp_path / "home"))
    maildir = tmp_path / "Maildir"
    write_maildir(maildir, [attachment_email(free_text_orders(20), encoding="utf-8")])
    connector = EmailConnector("email", {"source": "maildir", "maildir": str(maildir), "processed_flag": "S"})
    summary = run_channel(engine, connector)
    assert (summary.new, summary.quarantined) == (3, 0), summary.reasons
    assert addresses(engine) == [(district, detail) for _, district, detail in FREE_TEXT]
