"""The return parcel is tracked like an outbound one (both databases, real HTTP over loopback): the carrier gateway
stand-in issues the return waybill, the Kuaidi100 stand-in (simulated clock) reports the parcel's scans, the
after-sales cycle polls it at most every ``return_tracking_interval_minutes`` and moves the case to
``return_arrived`` when it is signed for; receipt inspection then takes it."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest
from aftersales_support import add_order, assess, build_reference, case_of, local, request
from sqlalchemy import select

from connectors.carrier_shipping import CarrierShippingClient
from connectors.kuaidi100 import Credentials
from demo.standins import carrier_shipping, kuaidi100
from demo.standins.parcel_routes import SimClock
from flows.aftersales import after_sales_cycle
from flows.compose import in_process
from tasks.aftersales.returns import receive_returns
from tasks.tracking.polling import make_client
from yidi.schema_aftersales import aftersales_cases
from yidi.settings import get_settings

CREDS = Credentials("standin-customer", "standin-key", "salt")
NO_PUSH = {"applied": 0, "arrived": 0}


@pytest.fixture
def world(engine, tmp_path):
    build_reference(engine)
    add_order(engine, "YD-RT", {"SKU-0009": 2}, delivered=local(2026, 12, 2, 0, 30))
    request(engine, "YD-RT", "return", local(2026, 12, 4))
    assess(engine, local(2026, 12, 4, 11))
    clock = SimClock(local(2026, 12, 4, 12))
    gateway, tracker = carrier_shipping.start(), kuaidi100.start(clock=clock)
    yield engine, gateway, tracker, clock, tmp_path / "inbox"
    gateway.stop()
    tracker.stop()


def _cycle(world):
    engine, gateway, tracker, clock, inbox = world
    with CarrierShippingClient(gateway.url, backoff_seconds=0.01) as waybills, \
            make_client(get_settings().tracking, credentials=CREDS, query_url=tracker.query_url) as k100:  # fmt: skip
        return after_sales_cycle(in_process, engine=engine, now=clock.now(), inbox=inbox, clients={},
                                 carrier=waybills, tracker=k100, actor="test")  # fmt: skip


def test_the_return_parcel_is_polled_until_it_arrives_then_inspected(world):
    engine, gateway, tracker, clock, _ = world
    first = _cycle(world)
    case = case_of(engine, "YD-RT")
    assert first["return_waybills"] == {"issued": 1, "waiting": 0, "refused": 0}
    assert case["return_waybill_no"].startswith("SF") and case["status"] == "awaiting_return"
    # Not handed over yet: Kuaidi100 knows nothing about the waybill.
    assert first["return_parcels"] == {"pushes": NO_PUSH, "asked": 1, "arrived": 0, "no_scan_yet": 1, "failed": 0}
    # The customer hands the parcel over at 14:00; it travels to the return warehouse (CQ-XY, Chongqing).
    parcel = tracker.register("shunfeng", case["return_waybill_no"], shipped_at=local(2026, 12, 4, 14),
                              phone="13900000000", city="重庆市", district="沙坪坝区")  # fmt: skip
    clock.advance(minutes=30)  # inside the 60-minute interval: not asked again
    assert _cycle(world)["return_parcels"] == {"pushes": NO_PUSH, "asked": 0, "arrived": 0, "no_scan_yet": 0, "failed": 0}
    clock.set(parcel.route[2].at + timedelta(minutes=5))  # collected and on its way
    assert _cycle(world)["return_parcels"] == {"pushes": NO_PUSH, "asked": 1, "arrived": 0, "no_scan_yet": 0, "failed": 0}
    case = case_of(engine, "YD-RT")
    assert (case["status"], case["return_parcel_state"]) == ("awaiting_return", "in_transit")
    assert case["return_last_event"].endswith(parcel.route[2].context)
    clock.set(parcel.route[-1].at + timedelta(hours=1))  # signed for at the warehouse
    assert _cycle(world)["return_parcels"] == {"pushes": NO_PUSH, "asked": 1, "arrived": 1, "no_scan_yet": 0, "failed": 0}
    case = case_of(engine, "YD-RT")
    assert (case["status"], case["return_parcel_state"]) == ("return_arrived", "arrived")
    assert case["return_arrived_at"] == parcel.route[-1].at.replace(microsecond=0)
    assert "签收" in case["return_last_event"]
    clock.advance(hours=2)  # an arrived parcel is not asked about again
    assert _cycle(world)["return_parcels"] == {"pushes": NO_PUSH, "asked": 0, "arrived": 0, "no_scan_yet": 0, "failed": 0}
    with engine.begin() as conn:  # the warehouse inspects what arrived
        counts = receive_returns(conn, pd.DataFrame({"case_no": [case["case_no"]], "inspection": ["good"]}),
                                 get_settings(), clock.now())  # fmt: skip
    assert (counts["restocked"], counts["refunds"]) == (1, 1)
    assert case_of(engine, "YD-RT")["status"] == "refund_pending"


def test_without_a_kuaidi100_account_the_step_is_skipped(engine, tmp_path, monkeypatch):
    build_reference(engine)
    policy = get_settings().tracking
    monkeypatch.delenv(policy.customer_env, raising=False)
    result = after_sales_cycle(in_process, engine=engine, now=local(2026, 12, 4, 12), inbox=tmp_path / "inbox",
                               clients={}, carrier=None, actor="test")  # fmt: skip
    assert result["return_parcels"] == {"pushes": NO_PUSH,
                                        "skipped": "no Kuaidi100 account ([tracking] customer_env/key_env not set)"}


def test_a_pushed_arrival_moves_the_case_without_another_poll(world):
    """With pushes on, the return waybill is subscribed when first asked about; Kuaidi100's push reaches the
    tracking receiver (kept there as no outbound shipment's) and the after-sales cycle applies it to the case."""
    from app.callbacks import push_receiver
    from tasks.aftersales.return_tracking import apply_return_pushes, track_returns
    from yidi.schema_tracking import tracking_push_receipts

    engine, gateway, tracker, clock, _ = world
    _cycle(world)  # the waybill is issued (and asked about once: no scan yet)
    case = case_of(engine, "YD-RT")
    parcel = tracker.register("shunfeng", case["return_waybill_no"], shipped_at=local(2026, 12, 4, 14),
                              phone="13900000000", city="重庆市", district="沙坪坝区")  # fmt: skip
    settings = get_settings()
    with push_receiver(engine, settings.tracking, "salt", host="127.0.0.1", port=0, clock=clock.now,
                       apply_every=0.05) as receiver:  # fmt: skip
        pushing = settings.model_copy(update={"tracking": settings.tracking.model_copy(
            update={"push_enabled": True, "callback_public_url": receiver.url})})
        with engine.begin() as conn:  # a fresh case: the first ask subscribes it
            conn.execute(aftersales_cases.update().values(return_tracked_at=None))
        clock.set(parcel.route[1].at + timedelta(minutes=5))
        with make_client(settings.tracking, credentials=CREDS, query_url=tracker.query_url,
                         subscribe_url=tracker.subscribe_url) as k100, engine.begin() as conn:  # fmt: skip
            asked = track_returns(conn, k100, pushing, clock.now())
        assert (asked["subscribed"], asked["asked"], asked["arrived"]) == (1, 1, 0)
        clock.set(parcel.route[-1].at + timedelta(minutes=10))  # signed for: Kuaidi100 pushes
        sent = tracker.push(case["return_waybill_no"], status="shutdown")
        assert sent["accepted"] is True
    with engine.begin() as conn:
        stored = conn.execute(select(tracking_push_receipts.c.waybill_no, tracking_push_receipts.c.status)).all()
        assert [tuple(r) for r in stored] == [(case["return_waybill_no"], "unmatched")]  # not an outbound parcel
        assert apply_return_pushes(conn, clock.now() + timedelta(minutes=1)) == {"applied": 1, "arrived": 1}
    arrived = case_of(engine, "YD-RT")
    assert (arrived["status"], arrived["return_parcel_state"]) == ("return_arrived", "arrived")
    assert arrived["return_arrived_at"] == parcel.route[-1].at.replace(microsecond=0)
    with engine.begin() as conn:  # applied once: the same push is not applied again
        assert apply_return_pushes(conn, clock.now() + timedelta(minutes=2)) == {"applied": 0, "arrived": 0}


def test_a_failed_subscription_is_asked_again_on_the_next_cycle_and_an_accepted_one_never(world):
    """Kuaidi100's subscription endpoint is unreachable when the return waybill is first asked about: polling goes
    on, and the next due cycle subscribes it; once accepted it is not subscribed again (one subscription there)."""
    from tasks.aftersales.return_tracking import track_returns

    engine, gateway, tracker, clock, _ = world
    _cycle(world)  # the waybill is issued and asked about once (pushes off: not subscribed)
    settings = get_settings()
    pushing = settings.model_copy(update={"tracking": settings.tracking.model_copy(
        update={"push_enabled": True, "callback_public_url": "http://127.0.0.1:9/kuaidi100/push"})})
    once = settings.tracking.model_copy(update={"max_attempts": 1})  # no waiting between tries

    def ask(at, subscribe_url):
        clock.set(at)
        with make_client(once, credentials=CREDS, query_url=tracker.query_url, subscribe_url=subscribe_url) as k100, \
                engine.begin() as conn:  # fmt: skip
            return track_returns(conn, k100, pushing, at)

    unreachable = ask(local(2026, 12, 4, 13, 30), "http://127.0.0.1:9/poll")  # nothing listens on port 9
    assert (unreachable["subscribed"], unreachable["asked"], unreachable["no_scan_yet"]) == (0, 1, 1)
    assert pd.isna(case_of(engine, "YD-RT")["return_subscribed_at"])
    retried = ask(local(2026, 12, 4, 14, 31), tracker.subscribe_url)  # the next due cycle (60-minute interval)
    assert (retried["subscribed"], retried["asked"]) == (1, 1)
    assert case_of(engine, "YD-RT")["return_subscribed_at"] == local(2026, 12, 4, 14, 31)
    after = ask(local(2026, 12, 4, 15, 32), tracker.subscribe_url)  # asked about, not subscribed again
    assert (after["subscribed"], after["asked"]) == (0, 1)
    assert tracker.stats()["subscriptions"] == 1
