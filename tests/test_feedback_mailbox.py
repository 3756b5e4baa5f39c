"""The service mailbox (issue 14 items 5 and 6) over loopback IMAP on both databases: a complaint and replies to
survey emails delivered to the IMAP stand-in land as one feedback item (a complaint) and one reply per survey,
against the survey each answers; the same message delivered twice is one item; a message that is not RFC 822 is
quarantined with its raw bytes; a re-run lands nothing new, and a crash before marking re-reads harmlessly."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import pytest
from aftersales_support import add_order, build_reference, local
from sqlalchemy import select
from tests_feedback_mail import COMPLAINT_MAIL

from connectors.service_inbox_files import mail_record
from connectors.smtp_mail import message_id_for
from demo.standins.imap import ImapStandin
from flows.aftersales import after_sales_cycle, service_mailbox_task
from flows.compose import in_process
from tasks.feedback.rules import own_words, survey_code_of_mail
from tasks.feedback.surveys import send_surveys
from yidi.bulk import read_frame
from yidi.schema import orders
from yidi.schema_aftersales import aftersales_inbox, feedback_items, surveys
from yidi.settings import get_settings, reload_settings


def _reply(to_survey: str, subject: str, body: str, message_id: str) -> bytes:
    """A reply as a mail client sends it: In-Reply-To the survey email, the survey quoted below the answer."""
    headers = f"In-Reply-To: {to_survey}\r\nReferences: {to_survey}\r\n" if to_survey else ""
    return (f"From: buyer@example.com\r\nTo: service@example.com\r\nSubject: {subject}\r\n{headers}"
            f"Message-ID: {message_id}\r\nDate: Sun, 06 Dec 2026 20:00:00 +0800\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{body}").encode()


NOT_A_MAIL = "扫描件见附件，谢谢\r\n".encode("gb18030")  # no header block, and not UTF-8: kept as base64


def test_reading_a_reply_to_a_survey_email():
    codes = {"K7Q2MX", "ABCDE2"}
    assert survey_code_of_mail("Re: 请为我们的服务打分（K7Q2MX）", "", [], {}, codes) == "K7Q2MX"
    assert survey_code_of_mail("Re: 打分", "<f00@shop.example.com>", [], {"f00": "ABCDE2"}, codes) == "ABCDE2"
    assert survey_code_of_mail("回复：订单 YD000001 ZZZZZZ", "<other@x>", ["<x@y>"], {"f00": "ABCDE2"}, codes) is None
    assert own_words("4 安装及时\r\n\r\n在 2026年12月6日，售后 写道：\r\n> 请回复“K7Q2MX 分数”") == "4 安装及时"


def test_a_real_bottom_posted_reply_is_read_by_its_headers_and_own_words():
    """tests/data/formats/email/reply-bottom-posted.eml: a published mailing-list reply (In-Reply-To and
    References, "On … wrote:" attribution, "> " quote, the answer below it)."""
    raw = (Path(__file__).parent / "data" / "formats" / "email" / "reply-bottom-posted.eml").read_bytes()
    key, record = mail_record(raw)
    assert key == "<2024110903-previous-sequel-5a74@gregkh>"
    assert (record["in_reply_to"], record["references"]) == (
        "<478eac36-fc71-4564-959c-422da304f139@kernel.org>", ["<478eac36-fc71-4564-959c-422da304f139@kernel.org>"])
    assert survey_code_of_mail(record["subject"], record["in_reply_to"], record["references"],
                               {"478eac36-fc71-4564-959c-422da304f139": "K7Q2MX"}, {"K7Q2MX"}) == "K7Q2MX"
    assert own_words(record["body"]) == (
        "I would be glad to, but it does not apply cleanly, are you sure you\ntried this?\n\nthanks,\n\ngreg k-h")
    assert record["rfc822"].encode() == raw


@pytest.fixture
def mailbox(engine, tmp_path, monkeypatch):
    build_reference(engine)
    with ImapStandin(user="service@example.com", password="pw") as imap:
        policy = tmp_path / "yidi.toml"
        policy.write_text(f'[feedback.mailbox]\nhost = "127.0.0.1"\nport = {imap.port}\nmax_message_mb = 0.01\n', encoding="utf-8")
        monkeypatch.setenv("YIDI_CONFIG", str(policy))
        monkeypatch.setenv("YIDI_SERVICE_MAIL_USER", "service@example.com")
        monkeypatch.setenv("YIDI_SERVICE_MAIL_PASSWORD", "pw")
        reload_settings()
        yield imap


def test_complaints_and_survey_replies_land_from_the_service_mailbox_once(engine, mailbox):
    for no in ("YD-000001", "YD-M2"):
        add_order(engine, no, {"SKU-0009": 1}, delivered=local(2026, 12, 2))
    by_email = get_settings().model_copy(update={"service": get_settings().service.model_copy(
        update={"survey_after": ["delivery"], "survey_medium": "email"})})  # fmt: skip
    with engine.begin() as conn:
        assert send_surveys(conn, by_email, local(2026, 12, 6, 12)) == 2
        sent = read_frame(conn, select(surveys.c.survey_key, surveys.c.code, orders.c.order_no)
                          .join(orders, orders.c.id == surveys.c.order_id))  # fmt: skip
    key = dict(zip(sent["order_no"], sent["survey_key"], strict=True))
    code = dict(zip(sent["order_no"], sent["code"], strict=True))
    # The first survey is answered by a reply to its email (the notifier's Message-ID for outbox key survey:<key>),
    # with the other survey's code nowhere; the second by its code in the subject.
    survey_mail_id = message_id_for(f"survey:{key['YD-000001']}", "shop@example.com")
    first_reply = _reply(survey_mail_id, "Re: 请为我们的服务打分", "4 送货快，包装可以更好\r\n\r\n"
                         f"在 2026年12月6日 12:00，售后 写道：\r\n> 请回复“{code['YD-000001']} 分数”为本次服务打分\r\n",
                         "<r1@mail.example.com>")  # fmt: skip
    second_reply = _reply("", f"回复：请为我们的服务打分（{code['YD-M2']}）", "2分 等了很久", "<r2@mail.example.com>")
    too_big = _reply("", "投诉附图", "照片见附件\r\n" + "图" * 8000, "<big@mail.example.com>")  # 24 kB > 0.01 MB
    for message in (COMPLAINT_MAIL, first_reply, COMPLAINT_MAIL, second_reply, NOT_A_MAIL, too_big):
        mailbox.add_message(message)
    cycle = after_sales_cycle(in_process, engine=engine, now=local(2026, 12, 7, 9))
    assert cycle["service_mailbox"] == {
        "messages": 6, "feedback:landed": 1, "feedback:duplicates": 1, "feedback:quarantined": 2,
        "survey_replies:landed": 2, "survey_replies:duplicates": 0, "survey_replies:quarantined": 0}  # fmt: skip
    assert all(mailbox.flags(uid) == {"\\Seen"} for uid in range(101, 107))  # marked after the commit
    with engine.connect() as conn:
        items = read_frame(conn, select(feedback_items.c.channel, feedback_items.c.category, orders.c.order_no)
                           .outerjoin(orders, orders.c.id == feedback_items.c.order_id))  # fmt: skip
        scores = read_frame(conn, select(orders.c.order_no, surveys.c.score, surveys.c.reply_text)
                            .join(orders, orders.c.id == surveys.c.order_id).order_by(orders.c.order_no))  # fmt: skip
        raw = read_frame(conn, select(aftersales_inbox).order_by(aftersales_inbox.c.id))
    assert items.to_dict("records") == [{"channel": "email", "category": "complaint", "order_no": "YD-000001"}]
    assert scores.to_dict("records") == [{"order_no": "YD-000001", "score": 4, "reply_text": "送货快，包装可以更好"},
                                         {"order_no": "YD-M2", "score": 2, "reply_text": "等了很久"}]
    assert sorted(zip(raw["kind"], raw["status"], strict=True)) == [
        ("feedback", "landed"), ("feedback", "quarantined"), ("feedback", "quarantined"), ("survey_reply", "landed"),
        ("survey_reply", "landed")]
    complaint = json.loads(raw[raw["kind"].eq("feedback") & raw["status"].eq("landed")]["content"].iloc[0])
    assert complaint["rfc822"].encode() == COMPLAINT_MAIL  # the message as the server delivered it
    broken, big = raw[raw["status"] == "quarantined"].itertuples()
    assert broken.reason == "not an RFC 822 message: no header block"
    assert base64.b64decode(json.loads(broken.content)["rfc822_base64"]) == NOT_A_MAIL
    assert big.source_key == "<big@mail.example.com>" and big.reason == (
        f"the message is {len(too_big):,} bytes, over the 0.01 MB limit ([feedback.mailbox] max_message_mb); not "
        "downloaded, its "
        "headers kept, left in the mailbox")  # fmt: skip
    assert "Subject: 投诉附图" in json.loads(big.content)["rfc822_headers"]

    again = after_sales_cycle(in_process, engine=engine, now=local(2026, 12, 7, 9, 15))
    assert again["service_mailbox"] == {"messages": 0}
    for message in mailbox.messages:  # a crash after the commit, before the marks: all read again, nothing new
        message.flags.clear()
    with_crash = service_mailbox_task.fn if hasattr(service_mailbox_task, "fn") else service_mailbox_task
    assert with_crash(engine, None, local(2026, 12, 7, 9, 30)) == {
        "messages": 6, "feedback:landed": 0, "feedback:duplicates": 4, "feedback:quarantined": 0,
        "survey_replies:landed": 0, "survey_replies:duplicates": 2, "survey_replies:quarantined": 0}  # fmt: skip
    with engine.connect() as conn:
        assert conn.execute(select(aftersales_inbox.c.id)).all().__len__() == 5
        assert len(conn.execute(select(feedback_items.c.id)).all()) == 1


def test_without_a_configured_service_mailbox_the_cycle_skips_it_with_a_log_line(engine, caplog):
    task = service_mailbox_task.fn if hasattr(service_mailbox_task, "fn") else service_mailbox_task
    with caplog.at_level(logging.INFO):
        assert task(engine, None, local(2026, 12, 7, 9)) == {"skipped": "[feedback.mailbox] host is not set"}
    assert "service mailbox: skipped, [feedback.mailbox] host is not set" in caplog.text


def test_a_customer_writing_to_the_order_mailbox_reaches_the_feedback_queue(engine, tmp_path, monkeypatch):
    """The issue allows "the order mailbox or a service mailbox": a complaint sent to the order mailbox was left
    in the intake quarantine as "no order found". It moves to the feedback queue, once, and leaves the quarantine
    list; an order email that only lacks its item lines stays quarantined for intake to fix."""
    from email.message import EmailMessage

    from connectors.email_orders import EmailConnector
    from demo.standins.mail import write_maildir
    from tasks.feedback.order_mailbox import route_to_feedback
    from tasks.intake.landing import run_channel
    from yidi.db import for_writing
    from yidi.schema import intake_records

    monkeypatch.setenv("YIDI_HOME", str(tmp_path / "home"))
    build_reference(engine)
    order_id = add_order(engine, "YD2026112000042", {"SKU-0009": 1}, delivered=local(2026, 11, 19, 15))
    complaint = EmailMessage()
    complaint["From"], complaint["Subject"] = "buyer@example.com", "Re: 您的订单 YD2026112000042 已发货"
    complaint["Message-ID"] = "<reply-42@example.com>"
    complaint.set_content("保温杯收到时外壳破损了，请尽快处理。")
    no_items = EmailMessage()
    no_items["From"], no_items["Subject"] = "buyer2@example.com", "订货"
    no_items.set_content("客户: 李四\n电话: 13900000002\n地址: 四川省成都市武侯区人民南路四段1号\n")
    maildir = tmp_path / "Maildir"
    write_maildir(maildir, [complaint, no_items])
    intake = run_channel(engine, EmailConnector("email", {"source": "maildir", "maildir": str(maildir)}))
    assert (intake.new, intake.quarantined) == (0, 2)

    now = local(2026, 11, 20, 10)
    with for_writing(engine).begin() as conn:
        routed = route_to_feedback(conn, get_settings(), now)
    assert routed["routed"] == 1 and routed["feedback:landed"] == 1
    with engine.connect() as conn:
        item = read_frame(conn, select(feedback_items)).iloc[0]
        records = read_frame(conn, select(intake_records.c.status, intake_records.c.reason)
                             .where(intake_records.c.channel == "email").order_by(intake_records.c.id))
    assert (item["channel"], item["contact"], int(item["order_id"])) == ("email", "buyer@example.com", order_id)
    assert item["category"] == "complaint" and "外壳破损" in item["body"]
    assert list(records["status"]) == ["to_feedback", "quarantined"]
    assert "item lines" in records["reason"].iloc[1]  # an order to fix, not a message for customer service

    with for_writing(engine).begin() as conn:
        assert route_to_feedback(conn, get_settings(), now) == {"routed": 0}  # a re-run moves nothing twice
    with engine.connect() as conn:
        assert len(read_frame(conn, select(feedback_items.c.id))) == 1
