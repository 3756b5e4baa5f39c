"""The service inbox's HTTP paths over loopback (both databases): customers' SMS survey replies pushed as Aliyun's
上行短信 HTTP batch push, and the website's contact form submitted as Contact Form 7 does. Raw records kept, the
unreadable quarantined with the reason, a re-pushed or re-submitted message stored once; answers in each sender's
published shape."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode

import pytest
from aftersales_support import add_order, build_reference, local
from sqlalchemy import insert, select

from connectors.inbound_shapes import cf7_answer, feedback_record, form_fields, sms_up_records
from demo.standins.service_senders import push_sms_replies, sms_up_message, submit_contact_form
from flows.service_inbound import inbound_receiver
from yidi.bulk import read_frame
from yidi.schema import orders
from yidi.schema_aftersales import aftersales_inbox, feedback_items, surveys

FORMATS = Path(__file__).parent / "data" / "formats"
NOW = local(2026, 12, 7, 10)


def test_the_published_smsup_push_reads_to_one_keyed_message():
    body = (FORMATS / "aliyun_sms" / "smsup-http-batch-push.json").read_bytes()
    assert sms_up_records(body) == [("sms-up:1234567890", {
        "phone_number": "18612345678", "send_time": "2017-09-01 00:00:00", "content": "内容", "sign_name": "签名",
        "dest_code": "1234", "sequence_id": 1234567890})]  # fmt: skip
    assert sms_up_records(b"{not json") == [(None, "{not json")]
    answer = json.loads((FORMATS / "aliyun_sms" / "smsup-answer.json").read_text(encoding="utf-8"))
    assert answer == {"code": 0, "msg": "接收成功"}


def test_the_published_cf7_submission_and_answer_shapes():
    text = (FORMATS / "contact_form7" / "feedback-submission.txt").read_text(encoding="utf-8")
    body = urlencode([tuple(line.split("=", 1)) for line in text.splitlines() if line]).encode()
    fields = form_fields("application/x-www-form-urlencoded", body)
    assert feedback_record(fields) == {"body": "Hello, I would like to...", "name": "Ryan Mitchell",
                                       "contact": "ryan@example.com", "subject": "Question", "order_no": None}
    published = json.loads((FORMATS / "contact_form7" / "feedback-mail-sent.json").read_text(encoding="utf-8"))
    ours = cf7_answer(93, fields, accepted=True)
    assert sorted(ours) == sorted(published)
    assert (ours["status"], ours["message"], ours["into"], ours["invalid_fields"]) == (
        published["status"], published["message"], published["into"], [])


@pytest.fixture
def receiver(engine):
    build_reference(engine)
    with inbound_receiver(engine, host="127.0.0.1", port=0, clock=lambda: NOW) as server:
        yield engine, server


def _inbox(engine, kind):
    with engine.connect() as conn:
        return read_frame(conn, select(aftersales_inbox.c.channel, aftersales_inbox.c.source_key,
                                       aftersales_inbox.c.status, aftersales_inbox.c.reason,
                                       aftersales_inbox.c.content)
                          .where(aftersales_inbox.c.kind == kind).order_by(aftersales_inbox.c.id))  # fmt: skip


def test_sms_replies_pushed_twice_land_once_against_their_survey(receiver):
    engine, server = receiver
    oid = add_order(engine, "YD-SV1", {"SKU-0009": 1}, delivered=local(2026, 12, 5))
    with engine.begin() as conn:
        conn.execute(insert(surveys).values(survey_key=f"delivery:{oid}", code="K7Q2MX", trigger="delivery",
                                            order_id=oid, recipient="13900000000", medium="sms",
                                            sent_at=local(2026, 12, 6)))  # fmt: skip
    good = sms_up_message("13900000000", "K7Q2MX 5 送货很快", local(2026, 12, 7, 9), sequence_id=501)
    odd = sms_up_message("13900000000", "谢谢", local(2026, 12, 7, 9, 1), sequence_id=502)
    assert push_sms_replies(server.url, [good, odd]) == (200, {"code": 0, "msg": "接收成功"})
    assert push_sms_replies(server.url, [good]) == (200, {"code": 0, "msg": "接收成功"})  # Aliyun pushes again
    assert push_sms_replies(server.url, b"[{broken") == (200, {"code": 0, "msg": "接收成功"})  # kept, not retried
    with engine.connect() as conn:
        answered = conn.execute(select(surveys.c.score, surveys.c.reply_text, surveys.c.order_id)).one()
    assert tuple(answered) == (5, "送货很快", oid)
    inbox = _inbox(engine, "survey_reply")
    assert inbox[["channel", "source_key", "status", "reason"]].values.tolist() == [
        ["sms", "sms-up:501", "landed", None],
        ["sms", "sms-up:502", "quarantined", "no survey code and score 1-5 found"],
        ["sms", None, "quarantined", "no survey code and score 1-5 found"]]
    assert json.loads(inbox["content"][0]) == good  # the raw message as Aliyun sent it
    assert inbox["content"][2] == "[{broken"


def test_the_contact_form_lands_once_and_an_empty_message_is_quarantined(receiver):
    engine, server = receiver
    add_order(engine, "YD20261201-0042", {"SKU-0009": 1}, delivered=local(2026, 12, 5))
    fields = {"your-name": "李女士", "your-email": "li@example.com", "your-subject": "发货",
              "your-message": "请问订单 YD20261201-0042 什么时候发货？"}
    first = submit_contact_form(server.url, 7, fields)
    again = submit_contact_form(server.url, 7, fields)  # the visitor presses Send twice
    assert first[0] == again[0] == 200
    assert (first[1]["status"], first[1]["into"], first[1]["invalid_fields"]) == ("mail_sent", "#wpcf7-f7-o1", [])
    assert again[1] == first[1]
    empty = submit_contact_form(server.url, 7, {**fields, "your-message": "  "})
    assert (empty[1]["status"], [f["field"] for f in empty[1]["invalid_fields"]]) == (
        "validation_failed", ["your-message"])
    with engine.connect() as conn:
        items = read_frame(conn, select(feedback_items.c.channel, feedback_items.c.contact, feedback_items.c.subject,
                                        feedback_items.c.category, orders.c.order_no)
                           .outerjoin(orders, orders.c.id == feedback_items.c.order_id))  # fmt: skip
    assert items.values.tolist() == [["website", "li@example.com", "发货", "inquiry", "YD20261201-0042"]]
    inbox = _inbox(engine, "feedback")
    assert inbox[["channel", "status", "reason"]].values.tolist() == [
        ["website", "landed", None], ["website", "quarantined", "feedback without a message body"]]
    raw = json.loads(inbox["content"][0])
    assert (raw["_wpcf7"], raw["_wpcf7_unit_tag"], raw["your-message"]) == ("7", "wpcf7-f7-o1", fields["your-message"])
