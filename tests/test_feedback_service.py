"""Feedback queue, satisfaction surveys and service jobs on both databases: the same email twice is one item, a
complaint past its response limit is escalated on the working-day calendar, a service-only order is scheduled and
completes, survey replies land against the right case."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest
from aftersales_support import add_order, assess, build_reference, case_of, local, order_state, request
from sqlalchemy import select

from tasks.aftersales.service import create_jobs, plan_appointments, record_result, schedule_jobs
from tasks.feedback.queue import from_email, land_feedback, raise_alerts, reply
from tasks.feedback.rules import classify, deadlines
from tasks.feedback.surveys import land_survey_replies, send_surveys
from yidi.bulk import read_frame
from yidi.schema import notification_outbox, shipments
from yidi.schema_aftersales import aftersales_inbox, feedback_alerts, feedback_items, service_jobs, surveys
from yidi.settings import get_settings
from yidi.workdays import BUSINESS_TZ

COMPLAINT_MAIL = (
    "From: =?utf-8?b?5byg5LiJ?= <c1@example.com>\r\nTo: service@example.com\r\n"
    "Subject: =?utf-8?b?5oqV6K+J77ya6K6i5Y2VIFlELTAwMDAwMQ==?=\r\n"  # 投诉：订单 YD-000001
    "Message-ID: <20261204160000.A1@mail.example.com>\r\nDate: Fri, 04 Dec 2026 16:00:00 +0800\r\n"
    "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    "收到的保温杯外包装破损，杯盖坏了，很不满意。\r\n"
).encode()


@pytest.fixture
def store(engine):
    build_reference(engine)
    return engine


def test_keywords_classify_and_limits_count_working_hours():
    policy = get_settings().feedback
    assert [classify(t, policy) for t in ["杯盖坏了，要投诉", "师傅很专业，谢谢", "建议增加发票抬头", "请问几时发货"]] == [
        "complaint", "praise", "suggestion", "inquiry"]
    # Friday 16:00 + 4 working hours (09:00-18:00) = Monday 11:00; resolution 16 h = Tuesday 14:00
    first, resolved = deadlines(local(2026, 12, 4, 16), "complaint", policy)
    assert (first.isoformat(), resolved.isoformat()) == ("2026-12-07T11:00:00+08:00", "2026-12-08T14:00:00+08:00")
    # over National Day (1-7 Oct 2026 off on the official calendar): 30 Sep 16:00 + 4 h = 8 Oct 11:00
    assert deadlines(local(2026, 9, 30, 16), "complaint", policy)[0].isoformat() == "2026-10-08T11:00:00+08:00"


def test_the_same_email_twice_is_one_feedback_item_linked_to_customer_and_order(store):
    add_order(store, "YD-000001", {"SKU-0009": 1}, delivered=local(2026, 12, 2))
    with store.begin() as conn:
        first = land_feedback(conn, "email", [from_email(COMPLAINT_MAIL)], get_settings(), local(2026, 12, 4, 16, 5))
    with store.begin() as conn:
        again = land_feedback(conn, "email", [from_email(COMPLAINT_MAIL)], get_settings(), local(2026, 12, 4, 17))
    assert (first["landed"], again["landed"], again["duplicates"]) == (1, 0, 1)
    with store.connect() as conn:
        items = read_frame(conn, select(feedback_items))
        raw = read_frame(conn, select(aftersales_inbox.c.kind, aftersales_inbox.c.status))
    assert len(items) == 1 and raw.to_dict("records") == [{"kind": "feedback", "status": "landed"}]
    item = items.iloc[0]
    assert (item["category"], item["contact"], int(item["customer_id"])) == ("complaint", "c1@example.com", 1)
    assert pd.notna(item["order_id"])
    assert pd.Timestamp(item["first_response_due_at"]).tz_convert(BUSINESS_TZ).isoformat() == (
        "2026-12-07T11:00:00+08:00")


def test_a_complaint_past_its_response_limit_is_escalated_once_on_the_working_day_calendar(store):
    with store.begin() as conn:
        land_feedback(conn, "email", [from_email(COMPLAINT_MAIL)], get_settings(), local(2026, 12, 4, 16, 5))
    seen = {}
    for label, when in [("saturday", local(2026, 12, 5, 12)), ("monday 10:30", local(2026, 12, 7, 10, 30)),
                        ("monday 11:05", local(2026, 12, 7, 11, 5)), ("again", local(2026, 12, 7, 11, 30))]:
        with store.begin() as conn:
            seen[label] = raise_alerts(conn, get_settings(), when)
    assert seen["saturday"] == {}  # the weekend does not count
    assert seen["monday 10:30"] == {"response_reminder": 1, "new": 1}
    assert seen["monday 11:05"] == {"response_escalation": 1, "new": 1}
    assert seen["again"]["new"] == 0  # each alert once
    with store.connect() as conn:
        alerts = read_frame(conn, select(feedback_alerts.c.kind, feedback_alerts.c.recipient))
        outbox = read_frame(conn, select(notification_outbox.c.template, notification_outbox.c.recipient))
        escalated = conn.execute(select(feedback_items.c.escalated_at)).scalar_one()
    assert alerts.to_dict("records") == [
        {"kind": "response_reminder", "recipient": "service@example.com"},
        {"kind": "response_escalation", "recipient": "ops-lead@example.com"}]
    assert sorted(outbox["template"]) == ["feedback_escalation", "feedback_reminder"]
    assert escalated is not None
    with store.begin() as conn:  # answered: the investigation is recorded and the customer told
        reply(conn, "FB00000001", "已为您补发杯盖，给您带来不便深表歉意。", get_settings(), local(2026, 12, 7, 14),
              cause="logistics", findings="运输途中挤压", resolution="补发杯盖", close=True)
        assert raise_alerts(conn, get_settings(), local(2026, 12, 10, 9)) == {}  # closed: nothing more


def test_a_service_only_order_is_scheduled_and_completes(store):
    add_order(store, "YD-SVC", {"SV-REPAIR": 1}, state="approved", delivered=None)
    add_order(store, "YD-MIX", {"SKU-0001": 1, "SV-INSTALL": 1}, state="shipped", delivered=None)
    add_order(store, "YD-FAR", {"SV-REPAIR": 1}, state="approved", delivered=None, city="拉萨市")
    friday = local(2026, 12, 4, 15)
    with store.begin() as conn:
        assert create_jobs(conn, get_settings(), friday) == 3
        assert create_jobs(conn, get_settings(), friday) == 0
        assert schedule_jobs(conn, get_settings(), friday) == 1
    with store.connect() as conn:
        jobs = read_frame(conn, select(service_jobs.c.job_no, service_jobs.c.order_id, service_jobs.c.status,
                                       service_jobs.c.scheduled_date, service_jobs.c.technician)
                          .order_by(service_jobs.c.id))  # fmt: skip
    assert jobs["status"].tolist() == ["scheduled", "waiting_goods", "no_region"]
    assert (jobs["scheduled_date"].iloc[0], jobs["technician"].iloc[0]) == (date(2026, 12, 7), "王师傅")  # Monday
    with store.begin() as conn:
        assert record_result(conn, jobs["job_no"].iloc[0], "done", local(2026, 12, 7, 16))["orders_completed"] == 1
    assert order_state(store, "YD-SVC") == "delivered"
    with store.begin() as conn:  # the installation waits for the goods, then is booked
        conn.execute(shipments.insert().values(shipment_no="S-MIX", order_id=int(jobs["order_id"].iloc[1]),
                                               carrier="shunfeng", idempotency_key="k-mix", status="delivered",
                                               delivered_at=local(2026, 12, 8, 10)))  # fmt: skip
        assert schedule_jobs(conn, get_settings(), local(2026, 12, 8, 18)) == 1
    with store.connect() as conn:
        day = conn.execute(select(service_jobs.c.scheduled_date).where(service_jobs.c.job_no == jobs["job_no"].iloc[1]))
        assert day.scalar_one() == date(2026, 12, 9)
        templates = read_frame(conn, select(notification_outbox.c.template))["template"].tolist()
    assert templates.count("service_appointment") == 4  # two appointments, SMS and mail each


def test_technicians_capacity_per_working_day_is_respected():
    policy = get_settings().service
    jobs = pd.DataFrame({"id": range(1, 10), "region": "chongqing", "ready_on": None})
    plan = plan_appointments(jobs, pd.DataFrame(), date(2026, 12, 4), policy)
    assert plan.groupby("scheduled_date").size().to_dict() == {date(2026, 12, 7): 8, date(2026, 12, 8): 1}


def test_survey_replies_land_against_the_right_case(store):
    for no in ("YD-S1", "YD-S2"):
        add_order(store, no, {"SKU-0009": 1}, delivered=local(2026, 12, 2), state="delivered")
        request(store, no, "return", local(2026, 12, 20))  # outside seven days: rejected, so the case closes
    assess(store, local(2026, 12, 20, 11))
    with store.begin() as conn:
        sent = send_surveys(conn, get_settings().model_copy(update={"service": get_settings().service.model_copy(
            update={"survey_after": ["case"]})}), local(2026, 12, 20, 12))  # fmt: skip
    assert sent == 0  # rejected cases are not closed ones
    with store.begin() as conn:  # delivered on 2 Dec: too long ago to ask on 20 Dec (survey_within_days = 7)
        only_delivery = get_settings().model_copy(update={"service": get_settings().service.model_copy(
            update={"survey_after": ["delivery"]})})  # fmt: skip
        assert send_surveys(conn, only_delivery, local(2026, 12, 20, 12)) == 0
        assert send_surveys(conn, only_delivery, local(2026, 12, 6, 12)) == 2
    with store.begin() as conn:
        conn.execute(surveys.delete())
        from yidi.schema_aftersales import aftersales_cases

        conn.execute(aftersales_cases.update().values(status="closed"))
        only_cases = get_settings().model_copy(update={"service": get_settings().service.model_copy(
            update={"survey_after": ["case"]})})  # fmt: skip
        assert send_surveys(conn, only_cases, local(2026, 12, 20, 12)) == 2
        assert send_surveys(conn, only_cases, local(2026, 12, 20, 13)) == 0
        codes = read_frame(conn, select(surveys.c.code, surveys.c.case_id))
    code_of = dict(zip(codes["case_id"], codes["code"], strict=True))
    first, second = int(case_of(store, "YD-S1")["id"]), int(case_of(store, "YD-S2")["id"])
    replies = [("sms-1", {"from": "13900000000", "text": f"{code_of[second]} 2 处理太慢", "message_id": "sms-1"}),
               ("sms-2", {"from": "13900000000", "text": f"{code_of[first].lower()} 5分 满意", "message_id": "sms-2"}),
               ("sms-3", {"from": "13900000000", "text": "好的", "message_id": "sms-3"}),
               ("sms-4", {"from": "13900000000", "text": "ZZZZZZ 4", "message_id": "sms-4"})]
    with store.begin() as conn:
        counts = land_survey_replies(conn, "sms", replies, local(2026, 12, 21))
    with store.begin() as conn:
        again = land_survey_replies(conn, "sms", replies, local(2026, 12, 21, 1))
    assert counts == {"landed": 2, "duplicates": 0, "quarantined": 2} and again["duplicates"] == 4
    with store.connect() as conn:
        scored = read_frame(conn, select(surveys.c.case_id, surveys.c.score, surveys.c.reply_text))
        raw = read_frame(conn, select(aftersales_inbox.c.status, aftersales_inbox.c.reason).where(
            aftersales_inbox.c.kind == "survey_reply").order_by(aftersales_inbox.c.id))  # fmt: skip
    assert sorted(scored.itertuples(index=False, name=None)) == sorted([(first, 5, "满意"), (second, 2, "处理太慢")])
    assert raw["status"].tolist() == ["landed", "landed", "quarantined", "quarantined"]
    assert "unknown survey code ZZZZZZ" in raw["reason"].iloc[3]


def test_the_technicians_form_records_results_through_the_ui_input_path(prefect_server, sqlite_engine, monkeypatch):
    """The `record-service-result` run pauses with the day's jobs; resuming it as the UI's form does records the
    result, and the service-only order is delivered."""
    import threading
    import time
    from uuid import UUID

    from prefect import get_client
    from prefect.flow_runs import resume_flow_run

    from flows.aftersales import record_service_results
    from yidi.db import init_db

    monkeypatch.setenv("YIDI_DATABASE_URL", str(sqlite_engine.url))
    init_db()
    build_reference(sqlite_engine)
    add_order(sqlite_engine, "YD-FORM", {"SV-REPAIR": 1}, state="approved", delivered=None)
    with sqlite_engine.begin() as conn:
        create_jobs(conn, get_settings(), local(2026, 12, 4, 15))
        schedule_jobs(conn, get_settings(), local(2026, 12, 4, 15))
        job_no = conn.execute(select(service_jobs.c.job_no)).scalar_one()
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.update(r=record_service_results(day="2026-12-07",
                                                                                     poll_interval=1)))
    thread.start()
    deadline, paused = time.monotonic() + 60, None
    with get_client(sync_client=True) as client:  # wait (polling the server) until the form is open and saved
        from prefect.client.schemas.filters import FlowFilter, FlowFilterName
        from prefect.input.run_input import keyset_from_paused_state

        while paused is None and time.monotonic() < deadline:
            runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["record-service-result"])))
            run = next((r for r in runs if r.state and r.state.is_paused()), None)
            try:
                if run is not None and client.read_flow_run_input(run.id, keyset_from_paused_state(run.state)["schema"]):
                    paused = run
            except Exception:  # noqa: BLE001 - saved just after the pause
                pass
            time.sleep(0.3)
    assert paused is not None, "the form did not open"
    resume_flow_run(UUID(str(paused.id)), run_input={"technician": "王师傅", "results": [
        {"job_no": job_no, "result": "done", "note": "已修复"}]})  # fmt: skip
    thread.join(60)
    assert outcome["r"]["recorded"] == [{"job_no": job_no, "status": "done", "orders_completed": 1}]
    assert order_state(sqlite_engine, "YD-FORM") == "delivered"


def test_an_order_with_goods_and_services_settles_only_when_both_are_done(store):
    """S2: the goods were delivered and paid, but the installation is still booked: the order waits."""
    from tasks.settlement.payments import settle_paid_orders
    from yidi.schema import orders

    oid = add_order(store, "YD-BOTH", {"SKU-0001": 1, "SV-INSTALL": 1}, state="delivered",
                    delivered=local(2026, 12, 2))  # fmt: skip
    with store.begin() as conn:
        conn.execute(orders.update().where(orders.c.id == oid).values(payment_state="paid"))
        create_jobs(conn, get_settings(), local(2026, 12, 2, 12))
        schedule_jobs(conn, get_settings(), local(2026, 12, 2, 12))
        assert settle_paid_orders(conn, actor="test")["settled"] == 0
        job_no = conn.execute(select(service_jobs.c.job_no)).scalar_one()
        record_result(conn, job_no, "done", local(2026, 12, 3, 16))
        assert settle_paid_orders(conn, actor="test")["settled"] == 1
    assert order_state(store, "YD-BOTH") == "settled"
