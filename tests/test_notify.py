"""Notification outbox sending: real SMTP (aiosmtpd stand-in) and a real HTTP SMS gateway stand-in over loopback."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from sqlalchemy import select

from demo.standins.sms import SmsGatewayStandIn
from demo.standins.smtp import SmtpStandIn
from flows.compose import in_process
from flows.notifications import notification_pass
from tasks.notifications import TemplateError, claim_due, render, send_batch, sms_number
from yidi.bulk import insert_rows, read_frame
from yidi.outbox import enqueue
from yidi.schema import notification_outbox, order_events, orders
from yidi.settings import load_settings

NOW = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)


@pytest.fixture
def relays(tmp_path, monkeypatch):
    """SMTP and SMS stand-ins, and a policy file pointing at them."""
    smtp = SmtpStandIn().start()
    sms = SmsGatewayStandIn(token="s3cret").start()
    policy = tmp_path / "yidi.toml"
    policy.write_text(
        f'[notifications]\nsmtp_port = {smtp.port}\nsms_gateway_url = "{sms.url}"\n'
        "retry_base_seconds = 60\nmax_attempts = 3\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("YIDI_CONFIG", str(policy))
    monkeypatch.setenv("YIDI_SMS_TOKEN", "s3cret")
    from yidi.settings import get_settings

    get_settings.cache_clear()
    yield smtp, sms, load_settings(policy)
    smtp.stop()
    sms.stop()


def make_order(conn, no: str = "YD-N-1") -> int:
    insert_rows(conn, orders, pd.DataFrame({"order_no": [no], "channel": ["test"], "channel_order_id": [no]}))
    return conn.execute(select(orders.c.id).where(orders.c.order_no == no)).scalar_one()


def notice(order_id, medium, recipient, key, template="order_auto_rejected", **context):
    ctx = {"order_no": "YD-N-1", "customer_name": "张三", "order_time": "2026-11-27 10:00",
           "reasons": ["联系电话无效", "收货地址不完整"], **context}  # fmt: skip
    return {"order_id": order_id, "medium": medium, "recipient": recipient, "template": template,
            "context": ctx, "dedupe_key": key}  # fmt: skip


def outbox_rows(engine) -> pd.DataFrame:
    with engine.connect() as conn:
        return read_frame(conn, select(notification_outbox).order_by(notification_outbox.c.id))


def test_render_lists_every_reason_and_refuses_missing_values():
    settings = load_settings()
    subject, body = render("order_auto_rejected", notice(1, "email", "a@b.c", "k")["context"], settings)
    assert "YD-N-1" in subject
    assert "1. 联系电话无效" in body and "2. 收货地址不完整" in body
    assert settings.general.company_name in body
    with pytest.raises(TemplateError, match="reasons"):
        render("order_auto_rejected", {"order_no": "YD1", "customer_name": "x", "order_time": "t"}, settings)
    with pytest.raises(TemplateError):
        render("../etc/passwd", {}, settings)


def test_sms_numbers_are_normalised_and_landlines_refused():
    assert sms_number("+86 138-1234-8000") == "13812348000"
    assert sms_number("0086 13812348000") == "13812348000"
    assert sms_number("023-6123 4567") is None


def test_a_column_of_numbers_is_read_for_sms_like_one_at_a_time():
    from tasks.notifications import sms_numbers

    column = pd.Series(["13812348000", "008613812348000", "+86 138-1234-8000", "02361234567", None, "1381234800",
                        "23812348000", "", "138\u300012348000", "１３８12348000"], dtype=object)
    assert sms_numbers(column).tolist() == ["13812348000", "13812348000", "13812348000", None, None, None, None,
                                            None, "13812348000", None]


def test_each_notice_sent_once_and_failures_stay_visible(engine, relays):
    smtp, sms, settings = relays
    with engine.begin() as conn:
        oid = make_order(conn)
        enqueue(conn, pd.DataFrame([
            notice(oid, "email", "zhang@example.com", "k:email"),
            notice(oid, "sms", "+86 138 1234 8000", "k:sms"),
            notice(oid, "sms", "023-61234567", "k:landline"),
        ]))  # fmt: skip
    report = notification_pass(in_process, engine=engine, now=NOW, settings=settings)
    assert (report.sent, report.gave_up, report.failed) == (2, 1, 0)
    again = notification_pass(in_process, engine=engine, now=NOW + timedelta(hours=2), settings=settings)
    assert again.claimed == 0
    assert len(smtp.received()) == 1 and len(sms.messages) == 1
    mail = smtp.received()[0]
    assert "YD-N-1" in mail["Subject"] and "联系电话无效" in mail.get_content()
    assert sms.messages[0]["to"] == "13812348000" and sms.messages[0]["text"].startswith("【")
    rows = outbox_rows(engine).set_index("dedupe_key")
    assert rows.loc["k:email", "status"] == "sent" and rows.loc["k:sms", "status"] == "sent"
    landline = rows.loc["k:landline"]
    assert landline["status"] == "failed" and landline["attempts"] == 1
    assert "mobile" in landline["last_error"] and pd.isna(landline["next_attempt_at"])
    with engine.connect() as conn:
        events = read_frame(conn, select(order_events).where(order_events.c.kind == "notification"))
    assert len(events) == 2
    assert "138****8000" in " ".join(events["details"]) and "13812348000" not in " ".join(events["details"])


def test_smtp_down_for_a_while_then_mail_goes_out_once(engine, relays):
    smtp, _sms, settings = relays
    with engine.begin() as conn:
        oid = make_order(conn)
        enqueue(conn, pd.DataFrame([notice(oid, "email", f"c{i}@example.com", f"down:{i}") for i in range(3)]))
    smtp.stop()
    first = notification_pass(in_process, engine=engine, now=NOW, settings=settings)
    assert (first.sent, first.failed) == (0, 3)
    rows = outbox_rows(engine)
    assert set(rows["status"]) == {"failed"} and set(rows["attempts"]) == {1}
    assert rows["last_error"].str.contains("unreachable").all()
    assert (rows["next_attempt_at"] == NOW + timedelta(seconds=60)).all()
    # Not due yet: nothing is tried.
    assert notification_pass(in_process, engine=engine, now=NOW + timedelta(seconds=30), settings=settings).claimed == 0
    # Still down at the first retry: the delay doubles.
    assert notification_pass(in_process, engine=engine, now=NOW + timedelta(seconds=61), settings=settings).failed == 3
    rows = outbox_rows(engine)
    assert (rows["next_attempt_at"] == NOW + timedelta(seconds=61 + 120)).all()
    smtp.start()
    back = notification_pass(in_process, engine=engine, now=NOW + timedelta(seconds=200), settings=settings)
    assert back.sent == 3
    assert notification_pass(in_process, engine=engine, now=NOW + timedelta(hours=5), settings=settings).claimed == 0
    assert sorted(m["To"] for m in smtp.received()) == ["c0@example.com", "c1@example.com", "c2@example.com"]
    assert set(outbox_rows(engine)["status"]) == {"sent"}


def test_gives_up_after_max_attempts(sqlite_engine, relays):
    _smtp, sms, settings = relays
    with sqlite_engine.begin() as conn:
        oid = make_order(conn)
        enqueue(conn, pd.DataFrame([notice(oid, "sms", "13812348000", "busy")]))
    sms.fail_all(True)
    when = NOW
    for _attempt in range(1, 4):
        report = send_batch(sqlite_engine, now=when, settings=settings)
        assert report.claimed == 1
        when += timedelta(hours=2)
    row = outbox_rows(sqlite_engine).iloc[0]
    assert row["status"] == "failed" and row["attempts"] == 3 and pd.isna(row["next_attempt_at"])
    assert "503" in row["last_error"]
    assert send_batch(sqlite_engine, now=when + timedelta(days=1), settings=settings).claimed == 0
    assert sms.messages == []


def test_crash_after_sending_resends_with_the_same_reference(sqlite_engine, relays):
    """The lease expires, the row is claimed again; the gateway recognises the reference: one SMS."""
    _smtp, sms, settings = relays
    with sqlite_engine.begin() as conn:
        oid = make_order(conn)
        enqueue(conn, pd.DataFrame([notice(oid, "sms", "13812348000", "crash")]))
    claimed = claim_due(sqlite_engine, NOW, 10, lease_seconds=600)
    assert len(claimed) == 1
    # The sender sends, then dies before marking.
    from connectors.sms_gateway import SmsGateway

    SmsGateway(sms.url, token="s3cret").send("13812348000", "x", claimed["dedupe_key"].iloc[0])
    assert claim_due(sqlite_engine, NOW + timedelta(seconds=10), 10, 600).empty  # still leased
    report = send_batch(sqlite_engine, now=NOW + timedelta(seconds=601), settings=settings)
    assert report.sent == 1
    assert len(sms.messages) == 1
    row = outbox_rows(sqlite_engine).iloc[0]
    assert row["status"] == "sent" and row["attempts"] == 2


def test_two_senders_never_claim_the_same_notice(engine):
    with engine.begin() as conn:
        oid = make_order(conn)
        enqueue(conn, pd.DataFrame([notice(oid, "email", f"x{i}@example.com", f"two:{i}") for i in range(10)]))
    first = claim_due(engine, NOW, 6, 600)
    second = claim_due(engine, NOW, 6, 600)
    assert len(first) == 6 and len(second) == 4
    assert not set(first["id"]) & set(second["id"])


def test_senders_racing_in_threads_claim_each_notice_once(engine):
    """Eight senders released together, each claiming until nothing is left: every notice exactly once."""
    import threading

    with engine.begin() as conn:
        oid = make_order(conn)
        enqueue(conn, pd.DataFrame([notice(oid, "email", f"r{i}@example.com", f"race:{i}") for i in range(40)]))
    gate = threading.Barrier(8, timeout=30)
    claimed: list[int] = []
    errors: list[Exception] = []

    def sender():
        try:
            gate.wait()
            while not (batch := claim_due(engine, NOW, 3, 600)).empty:
                claimed.extend(batch["id"].tolist())
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=sender) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(claimed) == 40 and len(set(claimed)) == 40


def test_send_notifications_flow(prefect_server, tmp_path, monkeypatch, relays):
    from flows.notifications import send_notifications
    from yidi.db import get_engine, init_db

    smtp, _sms, _settings = relays
    monkeypatch.setenv("YIDI_DATABASE_URL", f"sqlite:///{tmp_path / 'flow.db'}")
    engine = get_engine()
    init_db(engine)
    with engine.begin() as conn:
        oid = make_order(conn)
        enqueue(conn, pd.DataFrame([notice(oid, "email", "flow@example.com", "flow:1")]))
    result = send_notifications()
    assert result["sent"] == 1 and len(smtp.received()) == 1
    assert send_notifications()["claimed"] == 0
    assert json.loads(outbox_rows(engine)["context"].iloc[0])["order_no"] == "YD-N-1"


def test_send_notifications_ends_failed_naming_the_unreachable_relay_and_gateway(prefect_server, tmp_path,
                                                                                 monkeypatch, relays):
    """Seen (issue 15): send-notifications stayed green while the relay and gateway were down; the failure was
    only inside its artifact."""
    from flows.notifications import RelayUnreachable, send_notifications
    from yidi.db import get_engine, init_db

    smtp, sms, _settings = relays
    monkeypatch.setenv("YIDI_DATABASE_URL", f"sqlite:///{tmp_path / 'down.db'}")
    engine = get_engine()
    init_db(engine)
    with engine.begin() as conn:
        oid = make_order(conn)
        enqueue(conn, pd.DataFrame([notice(oid, "email", "down@example.com", "down:mail"),
                                    notice(oid, "sms", "13812348000", "down:sms")]))  # fmt: skip
    relay, gateway = f"127.0.0.1:{smtp.port}", sms.url
    smtp.stop()
    sms.stop()
    state = send_notifications(return_state=True)
    assert state.is_failed()
    with pytest.raises(RelayUnreachable) as failure:
        state.result()
    said = str(failure.value)
    assert f"SMTP relay {relay} unreachable" in said
    assert f"SMS gateway unreachable: ConnectionError at {gateway}" in said
    assert "2 notice(s) wait for the next pass" in said
    assert set(outbox_rows(engine)["status"]) == {"failed"}  # kept for the next pass, not lost
    smtp.start()  # the fixture stops them
    sms.start()
