"""Interception (拦截, issue 18, item 5) on SQLite and PostgreSQL, against the carrier and Kuaidi100 stand-ins over
HTTP: a parcel whose order is cancelled after its waybill exists is stopped and comes back into stock (the order
closed, the customer told); one asked for too late is delivered anyway and goes to after-sales; a parcel whose
order changed at the source comes back and waits for a person; a status-only change stops nothing."""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest
from fulfilment_data import NOW, add_orders, add_stock, seed_reference
from sqlalchemy import select, update

from connectors.carrier_shipping import CarrierShippingClient
from connectors.kuaidi100 import Credentials
from connectors.kuaidi100_intercept import InterceptClient, InterceptCredentials, read_answer, sign
from demo.standins import carrier_shipping
from demo.standins.kuaidi100 import start as start_kuaidi100
from demo.standins.parcel_routes import SimClock
from demo.tracking import standin_registrations
from flows.compose import in_process
from flows.tracking import interception_cycle, poll_cycle
from tasks.fulfilment.allocation_run import allocate_orders
from tasks.fulfilment.waybills import create_waybills
from tasks.tracking.polling import make_client, make_pacer
from yidi.bulk import read_frame
from yidi.lifecycle import record_events
from yidi.schema import notification_outbox, order_events, orders, shipments
from yidi.schema_fulfilment import stock_levels
from yidi.schema_tracking import carrier_interceptions, tracking_incidents
from yidi.settings import get_settings

SAMPLE = "tests/data/formats/kuaidi100/intercept-order.json"


def test_the_published_answers_read_as_the_carrier_meant_them():
    answers = json.loads(open(SAMPLE, encoding="utf-8").read())["answers"]
    read = {name: read_answer(a) for name, a in answers.items()}
    assert (read["accepted"].status, read["accepted"].task_id) == ("accepted", "A1B2C3D4E5F6")
    assert read["duplicate"].status == "accepted"  # 501 重复提交: the carrier has our request already
    assert (read["too_late"].status, read["too_late"].code) == ("too_late", "500")
    assert read["bad_signature"].status == "refused"
    assert read["server_error"].status == "failed"  # asked again next run
    # sign = upper(MD5(param + t + key + secret)), as published
    assert sign("{}", "1576123932000", "k", "s") == hashlib.md5(b"{}1576123932000ks").hexdigest().upper()


@pytest.fixture
def world(engine):
    clock = SimClock(NOW)
    with carrier_shipping.start() as carrier, start_kuaidi100(clock=clock) as kuaidi100:
        yield engine, carrier, kuaidi100, clock


def _poll(engine, kuaidi100, clock):
    policy = get_settings().tracking.model_copy(update={"requests_per_second": 1000, "http_workers": 4})
    with make_client(policy, pacer=make_pacer(policy, shared_limit=False),
                     credentials=Credentials("standin-customer", "standin-key", "salt"),
                     query_url=kuaidi100.query_url) as client:  # fmt: skip
        poll_cycle(in_process, engine=engine, client=client, policy=policy, now=clock.now(), actor="test")


def _intercept(engine, kuaidi100, clock) -> dict:
    client = InterceptClient(kuaidi100.intercept_url, InterceptCredentials("standin-key", "standin-secret", "P-1"))
    with client:
        return interception_cycle(in_process, engine=engine, client=client, now=clock.now(), actor="test")


def _change(engine, order_id, fields: dict, when, **stored) -> None:
    """What intake writes when the source changed an order: the new values and a ``change`` event."""
    with engine.begin() as conn:
        if stored:
            conn.execute(update(orders).where(orders.c.id == order_id).values(**stored))
        record_events(conn, pd.DataFrame([{"order_id": order_id, "kind": "change", "occurred_at": when,
                                           "reason": "changed at the source", "details": fields}]), actor="intake")


def _frame(engine, stmt):
    with engine.connect() as conn:
        return read_frame(conn, stmt)


def _state(engine, order_id) -> str:
    return _frame(engine, select(orders.c.state).where(orders.c.id == order_id)).iloc[0, 0]


def _status(engine, order_id) -> str:
    return _frame(engine, select(shipments.c.status).where(shipments.c.order_id == order_id)).iloc[0, 0]


def test_an_interception_that_succeeds_and_one_that_is_too_late(world):
    engine, carrier, kuaidi100, clock = world
    with engine.begin() as conn:
        seed_reference(conn)
        add_stock(conn, [("CQ-XY", "A-STOCK", 10)])
        cancelled, refunded, changed, progressed = add_orders(
            conn, [{"lines": [("A-STOCK", 1)], "city": c} for c in ("成都市", "绵阳市", "德阳市", "乐山市")])
    allocate_orders(engine, now=NOW)
    client = CarrierShippingClient(carrier.url, timeout=2.0, attempts=3, backoff_seconds=0.01)
    assert create_waybills(engine, client, now=NOW).created == 4
    with engine.connect() as conn:
        kuaidi100.register_many(standin_registrations(conn, scenarios={}))

    # Three hours after shipping: one order cancelled at the source, one changed (address), one only progressed.
    clock.advance(hours=3)
    _poll(engine, kuaidi100, clock)
    _change(engine, cancelled, {"source_status": ["WAIT_SELLER_SEND_GOODS", "TRADE_CLOSED"]}, clock.now(),
            source_status="TRADE_CLOSED")
    _change(engine, changed, {"ship_detail": ["人民南路四段1号", "人民南路四段9号"]}, clock.now())
    _change(engine, progressed, {"source_status": ["WAIT_SELLER_SEND_GOODS", "WAIT_BUYER_CONFIRM_GOODS"]},
            clock.now(), source_status="WAIT_BUYER_CONFIRM_GOODS")
    first = _intercept(engine, kuaidi100, clock)
    assert (first["found"], first["requested"], first["too_late"]) == (2, 2, 0)  # not the status-only change
    assert {r["trigger"] for r in first["asked"]} == {"cancelled", "changed"}
    assert len(kuaidi100.state.interceptions) == 2
    assert _intercept(engine, kuaidi100, clock)["found"] == 0  # asked once

    # The refunded order's parcel is out for delivery before the refund arrives: too late.
    for _ in range(80):
        if _status(engine, refunded) == "out_for_delivery":
            break
        clock.advance(hours=1)
        _poll(engine, kuaidi100, clock)
    assert _status(engine, refunded) == "out_for_delivery"
    _change(engine, refunded, {"source_status": ["processing", "refunded"]}, clock.now(), source_status="refunded")
    late = _intercept(engine, kuaidi100, clock)
    assert (late["found"], late["requested"], late["too_late"]) == (1, 0, 1)

    # Two days on: the intercepted parcels are back, the late one was delivered anyway.
    for _ in range(8):
        clock.advance(hours=6)
        _poll(engine, kuaidi100, clock)
        _intercept(engine, kuaidi100, clock)
    rows = _frame(engine, select(carrier_interceptions.c.order_id, carrier_interceptions.c.status,
                                 carrier_interceptions.c.outcome, carrier_interceptions.c.restocked_at))  # fmt: skip
    outcome = {int(r["order_id"]): (r["status"], r["outcome"], pd.notna(r["restocked_at"]))
               for r in rows.to_dict("records")}
    assert outcome == {cancelled: ("requested", "returned", True), changed: ("requested", "returned", True),
                       refunded: ("too_late", "delivered", False)}
    assert _state(engine, cancelled) == "closed"  # cancelled: goods back, nothing to deliver or bill
    assert _state(engine, changed) == "returned"  # changed: back, waiting for a person to ship it again
    assert _state(engine, refunded) == "after_sales"  # delivered anyway
    assert _state(engine, progressed) == "delivered"
    on_hand = _frame(engine, select(stock_levels.c.on_hand).where(stock_levels.c.warehouse == "CQ-XY",
                                                                  stock_levels.c.item_code == "A-STOCK"))
    assert float(on_hand.iloc[0, 0]) == 10 - 4 + 2  # the two returned parcels' helmets are sellable again
    incidents = _frame(engine, select(tracking_incidents.c.order_id, tracking_incidents.c.incident_type))
    assert incidents[incidents["incident_type"] == "returned"].empty  # an asked-for return is no incident
    told = _frame(engine, select(notification_outbox.c.order_id, notification_outbox.c.template)
                  .where(notification_outbox.c.template.like("interception%"), notification_outbox.c.medium == "sms"))
    assert sorted(map(tuple, told.to_numpy().tolist())) == sorted([
        (cancelled, "interception_requested"), (cancelled, "interception_returned"),
        (changed, "interception_requested"), (changed, "interception_returned"),
        (refunded, "interception_too_late")])
    events = _frame(engine, select(order_events.c.reason).where(order_events.c.order_id == refunded,
                                                                order_events.c.kind == "interception"))
    assert any("can no longer stop it" in r for r in events["reason"])
    assert any("delivered before the interception took effect: after-sales" in r for r in events["reason"])


def test_cli_intercept_without_an_account_finds_parcels_and_says_it_asked_none(monkeypatch):
    from typer.testing import CliRunner

    from app.cli.main import cli
    from yidi.db import get_engine, init_db

    for name in ("YIDI_KUAIDI100_KEY", "YIDI_KUAIDI100_SECRET"):
        monkeypatch.delenv(name, raising=False)
    init_db()
    engine = get_engine()
    with carrier_shipping.start() as carrier:
        with engine.begin() as conn:
            seed_reference(conn)
            add_stock(conn, [("CQ-XY", "A-STOCK", 10)])
            (order,) = add_orders(conn, [{"lines": [("A-STOCK", 1)]}])
        allocate_orders(engine, now=NOW)
        create_waybills(engine, CarrierShippingClient(carrier.url, timeout=2.0, attempts=3), now=NOW)
    _change(engine, order, {"source_status": ["WAIT_SELLER_SEND_GOODS", "TRADE_CLOSED"]}, NOW,
            source_status="TRADE_CLOSED")
    result = CliRunner().invoke(cli, ["tracking", "intercept", "--no-prefect"])
    assert result.exit_code == 0, result.output
    assert "kuaidi100 interception: not configured, skipped (parcels found, none asked)" in result.output
    assert "interceptions: 1 new; asked: 0 intercepted, 0 too late, 0 refused, 0 to ask" in result.output
    assert all(len(line) <= 80 for line in result.output.splitlines())
    with engine.connect() as conn:
        assert conn.execute(select(carrier_interceptions.c.status)).scalars().all() == ["pending"]
