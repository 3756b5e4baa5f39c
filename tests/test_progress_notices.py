"""Progress notices across the whole lifecycle (issue 14 Build 7, T2, P2): every customer-facing outcome produces
one notice per medium the customer has a contact for, and running the step that produces it again sends nothing
more. ``LIFECYCLE_OUTCOMES`` is the enumeration; each test below drives one stretch of the lifecycle twice, and the
last one checks that every customer template in yidi/templates is enumerated (a new outcome must be added here).
The after-sales outcomes are driven by ``test_each_customer_facing_outcome_produces_one_notice_sent_once``."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from fulfilment_data import NOW, add_orders, add_supplier_prices, seed_reference
from intake_support import neutral
from review_data import build_store, run_auto_review
from sqlalchemy import select
from test_aftersales_flow_cli import CUSTOMER_OUTCOMES
from test_tracking_cycle import _world, incidents

from connectors.carrier_shipping import CarrierShippingClient
from connectors.spreadsheet_orders import SpreadsheetConnector
from demo.standins import carrier_shipping
from demo.standins.spreadsheets import template_frame, write_csv
from tasks.fulfilment.allocation_run import allocate_orders
from tasks.fulfilment.waybills import create_waybills
from tasks.intake.landing import run_channel
from tasks.review.decisions import apply_decision
from tasks.tracking.incidents import resolve_incident
from yidi.bulk import read_frame
from yidi.schema import notification_outbox, orders

# outcome -> template the customer receives
LIFECYCLE_OUTCOMES = {
    "received": "order_received",
    "auto-rejected with the reasons": "order_auto_rejected",
    "rejected by a reviewer with the reason": "order_review_rejected",
    "approved": "order_approved",
    "waiting for production or procurement, with the expected date": "fulfilment_waiting",
    "promised date cannot be met: choose wait, partial or cancel": "fulfilment_delay_options",
    "the customer's choice recorded": "fulfilment_decision",
    "shipped, with the expected delivery date": "fulfilment_shipped",
    # the same outcome for a parcel confirmed on a channel without an API: it shares fulfilment_shipped's dedupe key,
    # so the customer is told once either way (tasks/channels/confirmations.py, tested with the channels)
    "shipped, told by the channel confirmation": "channels_shipped",
    "out for delivery": "tracking_out_for_delivery",
    "delayed, with a revised delivery date": "tracking_delay",
    "delivered": "tracking_delivered",
    "exception: damaged": "tracking_damaged",
    "exception: lost": "tracking_lost",
    "exception: refused": "tracking_refused",
    "exception: returned to the sender": "tracking_returned",
    "exception: a carrier problem": "tracking_problem",
    "exception resolved": "tracking_resolved",
    # issue 18 (拦截), tested in tests/test_interception.py
    "cancelled, refunded or changed after shipping: the parcel is being stopped": "interception_requested",
    "the parcel could not be stopped: refuse it or return it through after-sales": "interception_too_late",
    "the stopped parcel is back: cancelled and refunded, or shipped again": "interception_returned",
    **{f"after-sales: {k}": t for k, (t, _) in CUSTOMER_OUTCOMES.items()},
}
# Templates that go to staff, or to customers for matters outside the order's progress (dunning, credit, feedback
# follow-ups to staff), each tested in its own area.
NOT_PROGRESS = {"review_reminder", "review_escalation", "feedback_reminder", "feedback_escalation",
                "settlement_reminder", "settlement_second_notice", "settlement_final_notice", "settlement_escalation",
                "credit_downgrade", "tracking_stale", "tracking_unknown_waybill"}  # fmt: skip


def outbox(engine) -> pd.DataFrame:
    with engine.connect() as conn:
        return read_frame(conn, select(notification_outbox.c.order_id, notification_outbox.c.template,
                                       notification_outbox.c.medium, notification_outbox.c.context))  # fmt: skip


def once_each(sent: pd.DataFrame, template: str) -> pd.DataFrame:
    """The notices of ``template``, after asserting none was queued twice for an order and medium."""
    rows = sent[sent["template"] == template]
    assert not rows.empty, f"no {template} notice"
    doubled = rows.groupby(["order_id", "medium"]).size()
    assert (doubled == 1).all(), f"{template} queued twice: {doubled[doubled > 1].to_dict()}"
    return rows


def test_received_rejected_and_approved_once_each(engine, tmp_path):
    inbox = tmp_path / "inbox"
    sample = neutral(3)
    for name in ("drop.csv", "again.csv"):  # the same orders dropped twice: received once
        write_csv(template_frame(sample, prefix="R"), inbox / name, "utf-8")
        run_channel(engine, SpreadsheetConnector("spreadsheet", {"inbox_dir": str(inbox), "settle_seconds": 0}))
    sent = outbox(engine)
    received = once_each(sent, "order_received")
    with engine.connect() as conn:
        landed = read_frame(conn, select(orders.c.id, orders.c.customer_email))
    assert set(received["order_id"]) == set(landed["id"]) and len(landed) == 3
    assert (received["medium"] == "email").sum() == landed["customer_email"].notna().sum()

    with engine.begin() as conn:
        ids = build_store(conn)
    run_auto_review(engine, list(ids.values()))
    run_auto_review(engine, list(ids.values()))  # a re-run: no second rejection notice
    for _ in range(2):
        apply_decision(engine, ids["clean"], "approve", "审核员甲")
        apply_decision(engine, ids["name_placeholder"], "reject", "审核员甲", reason="收货人姓名不真实",
                       proposed_solution="请提供真实姓名后重新下单")  # fmt: skip
    sent = outbox(engine)
    rejected = once_each(sent, "order_auto_rejected")
    assert ids["phone_missing"] in set(rejected["order_id"])
    assert set(rejected[rejected["order_id"] == ids["phone_missing"]]["medium"]) == {"email"}  # no phone, no SMS
    assert set(once_each(sent, "order_approved")["order_id"]) == {ids["clean"]}
    manual = once_each(sent, "order_review_rejected")
    assert set(manual["order_id"]) == {ids["name_placeholder"]}
    assert "收货人姓名不真实" in manual["context"].iloc[0]


def test_waiting_for_production_or_procurement_once_each_with_the_ready_date(engine):
    carrier = carrier_shipping.start()
    try:
        with engine.begin() as conn:
            seed_reference(conn)
            add_supplier_prices(conn, [("SUP-2", "P-BUY", 4000, 3, 20)])
            made, bought = add_orders(conn, [
                {"lines": [("M-MADE", 2)], "customer": "C-WHOLE", "promised_date": date(2027, 1, 29)},
                {"lines": [("P-BUY", 1)], "customer": "C-WHOLE", "promised_date": date(2027, 1, 29)},
            ])  # fmt: skip
        allocate_orders(engine, now=NOW)
        allocate_orders(engine, now=NOW)  # the next run: nothing new to tell
        with CarrierShippingClient(carrier.url, backoff_seconds=0.01) as client:
            create_waybills(engine, client, now=NOW)
            create_waybills(engine, client, now=NOW)
    finally:
        carrier.stop()
    sent = outbox(engine)
    waiting = once_each(sent, "fulfilment_waiting")
    assert set(waiting["order_id"]) == {made, bought}
    context = {int(o): json.loads(c) for o, c in zip(waiting["order_id"], waiting["context"], strict=True)}
    # the made-to-order items are available 2026-12-14 (see the make-to-order fulfilment test)
    assert context[made]["ready_date"] == "2026-12-14" and context[made]["waiting_for"] == "安排生产"
    assert context[bought]["waiting_for"] == "向供应商采购"


def test_a_promise_that_cannot_be_kept_asks_once_and_the_choice_is_confirmed_once(engine):
    from tasks.fulfilment.decisions import record_customer_decision

    with engine.begin() as conn:
        seed_reference(conn)
        (late,) = add_orders(conn, [{"lines": [("M-MADE", 1)], "customer": "C-WHOLE",
                                     "promised_date": date(2026, 12, 2)}])  # fmt: skip
    allocate_orders(engine, now=NOW)
    allocate_orders(engine, now=NOW)
    for _ in range(2):  # the same answer recorded twice (a retried command): one decision, one notice
        with engine.begin() as conn:
            recorded = record_customer_decision(conn, late, "wait", actor="user:客服")
    assert recorded.get("repeated") is True
    sent = outbox(engine)
    assert set(once_each(sent, "fulfilment_delay_options")["order_id"]) == {late}
    assert set(once_each(sent, "fulfilment_decision")["order_id"]) == {late}


def test_shipped_once_with_the_expected_delivery_date(engine):
    from fulfilment_data import add_stock

    carrier = carrier_shipping.start()
    try:
        with engine.begin() as conn:
            seed_reference(conn)
            add_stock(conn, [("CQ-XY", "A-STOCK", 5, "B1")])
            (oid,) = add_orders(conn, [{"lines": [("A-STOCK", 1)]}])
        allocate_orders(engine, now=NOW)
        with CarrierShippingClient(carrier.url, backoff_seconds=0.01) as client:
            carrier.fail_next("lost")  # the answer is lost: asked again, one waybill, one notice
            create_waybills(engine, client, now=NOW)
            create_waybills(engine, client, now=NOW)
    finally:
        carrier.stop()
    shipped = once_each(outbox(engine), "fulfilment_shipped")
    assert set(shipped["order_id"]) == {oid}
    assert all(json.loads(c)["expected_delivery_date"] >= "2026-11-27" for c in shipped["context"])


@pytest.fixture
def world(engine):
    yield from _world(engine)


def test_tracking_outcomes_once_each_and_the_delay_gives_a_revised_date(world):
    from datetime import UTC, datetime

    from tasks.tracking.incidents import detect_time_exceptions

    delivered = world.add(1, "normal", prefix="N")
    damaged = world.add(1, "damaged", prefix="D", insured_every=1)
    lost = world.add(1, "lost", prefix="L")
    refused = world.add(1, "refused", prefix="F", carriers=["yuantong"])
    returned = world.add(1, "returned", prefix="B")
    problem = world.add(1, "problem", prefix="P")
    world.run_until(hours=150, step=8)  # every poll re-reads the whole route: nothing may notify twice
    late = world.add(1, register=False, prefix="Y", expected_delivery_date=date(2026, 3, 6))
    monday = datetime(2026, 3, 9, 2, 0, tzinfo=UTC)  # Monday 10:00 in Beijing; Friday's delivery did not come
    for _ in range(2):
        with world.engine.begin() as conn:
            detect_time_exceptions(conn, monday, world.policy, actor="test")
    damage = incidents(world).query("incident_type == 'damaged'").iloc[0]
    for _ in range(2):
        with world.engine.begin() as conn:
            try:
                resolve_incident(conn, int(damage["id"]), "已补发新货", actor="user:test", policy=world.policy)
            except ValueError:
                pass  # already resolved: the second try is refused, it notifies nothing
    sent = outbox(world.engine)
    order_of = {name: int(frame["order_id"][0]) for name, frame in
                {"delivered": delivered, "damaged": damaged, "lost": lost, "refused": refused, "late": late,
                 "returned": returned, "problem": problem}.items()}  # fmt: skip
    assert order_of["delivered"] in set(once_each(sent, "tracking_delivered")["order_id"])
    once_each(sent, "tracking_out_for_delivery")  # seen only when a poll falls between the scans
    assert set(once_each(sent, "tracking_damaged")["order_id"]) == {order_of["damaged"]}
    assert order_of["lost"] in set(once_each(sent, "tracking_lost")["order_id"])
    assert set(once_each(sent, "tracking_refused")["order_id"]) == {order_of["refused"]}
    assert order_of["returned"] in set(once_each(sent, "tracking_returned")["order_id"])
    assert order_of["problem"] in set(once_each(sent, "tracking_problem")["order_id"])
    assert set(once_each(sent, "tracking_resolved")["order_id"]) == {order_of["damaged"]}
    delay = once_each(sent, "tracking_delay")
    late_notice = json.loads(delay[delay["order_id"] == order_of["late"]]["context"].iloc[0])
    # found Monday 2026-03-09: one working day later is Tuesday 2026-03-10 (policy delay_revised_working_days = 1)
    assert late_notice["expected_delivery_date"] == "2026-03-06"
    assert late_notice["revised_delivery_date"] == "2026-03-10"


def test_every_customer_template_is_an_enumerated_outcome():
    templates = {p.name.removesuffix(".zh.txt") for p in (Path(__file__).parents[1] / "yidi" / "templates").glob("*.zh.txt")}
    assert templates - NOT_PROGRESS == set(LIFECYCLE_OUTCOMES.values())
