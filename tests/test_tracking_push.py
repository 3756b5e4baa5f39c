"""The push receiver (`yidi tracking callbacks`): real HTTP pushes from the stand-in and hand-made bad ones."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pytest
import requests
from sqlalchemy import func, select

from app.callbacks import push_receiver
from connectors.kuaidi100 import PUSH_OK, Credentials, push_sign
from demo.standins.kuaidi100 import start
from demo.standins.parcel_routes import SimClock
from demo.tracking import make_shipped_orders, standin_registrations
from flows.compose import in_process
from flows.tracking import poll_cycle
from tasks.tracking.polling import make_client, make_pacer
from yidi.schema import shipments
from yidi.schema_tracking import tracking_events, tracking_push_receipts, tracking_shipment_state
from yidi.settings import get_settings

T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
SALT = "push-salt"


@pytest.fixture
def setup(engine):
    """On SQLite and PostgreSQL."""
    yield from _setup(engine)


@pytest.fixture
def ssetup(sqlite_engine):
    """SQLite only (rejections happen before the store is touched)."""
    yield from _setup(sqlite_engine)


def _setup(engine):
    policy = get_settings().tracking.model_copy(
        update={"callback_port": 0, "retry_backoff_seconds": 0.01, "requests_per_second": 1000}
    )
    clock = SimClock(T0)
    with engine.begin() as conn:
        ships = make_shipped_orders(conn, 2, shipped_at=T0, carriers=["yunda"])
        regs = standin_registrations(conn)
    with (
        start(clock=clock) as carrier,
        push_receiver(engine, policy, SALT, port=0, clock=clock.now) as receiver,
    ):
        carrier.register_many(regs)
        creds = Credentials("standin-customer", "standin-key", SALT)
        with make_client(policy, pacer=make_pacer(policy, shared_limit=False), credentials=creds,
                         query_url=carrier.query_url, subscribe_url=carrier.subscribe_url) as client:  # fmt: skip
            for num in ships["waybill_no"]:
                assert client.subscribe("yunda", num, receiver.url).accepted
            yield {"engine": engine, "carrier": carrier, "receiver": receiver, "client": client, "policy": policy,
                   "clock": clock, "ships": ships}  # fmt: skip


def count(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar()


def test_signed_push_is_landed_applied_and_answered_as_published(setup):
    engine, carrier, clock = setup["engine"], setup["carrier"], setup["clock"]
    clock.advance(hours=30)
    pushes = carrier.push_updates()
    assert [p["answer"] for p in pushes] == [PUSH_OK, PUSH_OK]
    assert count(engine, tracking_push_receipts) == 2
    assert setup["receiver"].apply_pending() == 2  # what the receiver does in batches after landing
    events = count(engine, tracking_events)
    # One tracking event per checkpoint the carrier had published for the two waybills by then, no more.
    state = carrier.state
    visible = {num: state.visible(state.waybills[num], clock.now()) for num in setup["ships"]["waybill_no"]}
    published = sum(len(seen) for seen in visible.values())
    assert published >= 2 and events == published
    # Each shipment's status is its newest checkpoint's Kuaidi100 state (published codes: 0 在途, 1 揽收, 3 签收,
    # 5 派件).
    kuaidi100_state = {0: "in_transit", 1: "picked_up", 3: "delivered", 5: "out_for_delivery"}
    with engine.connect() as conn:
        assert set(conn.execute(select(tracking_push_receipts.c.status)).scalars()) == {"applied"}
        stored = dict(conn.execute(select(shipments.c.waybill_no, shipments.c.status)).all())
    assert stored == {num: kuaidi100_state[seen[-1].state] for num, seen in visible.items()}
    with engine.connect() as conn:
        sub = set(conn.execute(select(tracking_shipment_state.c.subscription_status)).scalars())
    assert sub == {"active"}
    # A poll of the same waybills later brings the same checkpoints: still one row each.
    clock.advance(minutes=31)
    summary = poll_cycle(in_process, engine=engine, client=setup["client"], policy=setup["policy"], now=clock.now(),
                         actor="test")  # fmt: skip
    assert summary["due"] == 2 and summary["new_events"] == 0
    assert count(engine, tracking_events) == events


def test_pushed_waybills_are_not_polled_inside_the_interval(ssetup):
    engine, carrier, clock = ssetup["engine"], ssetup["carrier"], ssetup["clock"]
    clock.advance(hours=30)
    carrier.push_updates()
    ssetup["receiver"].apply_pending()
    clock.advance(minutes=10)
    summary = poll_cycle(in_process, engine=engine, client=ssetup["client"], policy=ssetup["policy"], now=clock.now(),
                         actor="test")  # fmt: skip
    assert summary["due"] == 0


def test_duplicate_push_is_one_receipt(setup):
    engine, carrier, clock = setup["engine"], setup["carrier"], setup["clock"]
    clock.advance(hours=30)
    num = setup["ships"]["waybill_no"][0]
    first, again = carrier.push(num), carrier.push(num)
    assert first["accepted"] and again["accepted"]
    assert count(engine, tracking_push_receipts) == 1
    assert setup["receiver"].counts["duplicate"] == 1


def _post(receiver, data, **kw):
    return requests.post(receiver.url, data=data, timeout=5, **kw)


@pytest.mark.parametrize(
    "form",
    [
        pytest.param(lambda p: {"param": p}, id="unsigned"),
        pytest.param(lambda p: {"param": p, "sign": "0" * 32}, id="wrong-sign"),
        pytest.param(lambda p: {"param": p, "sign": push_sign(p, "other-salt")}, id="other-salt"),
        pytest.param(lambda p: {"param": "{oops", "sign": push_sign("{oops", SALT)}, id="not-json"),
        pytest.param(
            lambda p: {"param": (q := json.dumps({"status": "polling"})), "sign": push_sign(q, SALT)},
            id="no-lastResult",
        ),
        pytest.param(
            lambda p: {
                "param": (
                    q := json.dumps({"status": "polling", "lastResult": {"nu": "A", "data": [{"x": 1}]}})
                ),
                "sign": push_sign(q, SALT),
            },
            id="checkpoint-without-time",
        ),  # fmt: skip
        pytest.param(lambda p: {"sign": push_sign(p, SALT)}, id="no-param"),
    ],
)
def test_malformed_or_unsigned_pushes_are_rejected_logged_and_not_stored(ssetup, form, caplog):
    engine, carrier, clock = ssetup["engine"], ssetup["carrier"], ssetup["clock"]
    clock.advance(hours=30)
    _, param, _ = carrier.state.push_payload(ssetup["ships"]["waybill_no"][0])
    caplog.set_level(logging.WARNING, logger="yidi.callbacks")
    response = _post(ssetup["receiver"], form(param))
    assert response.status_code == 400
    body = response.json()
    assert body["result"] is False and body["returnCode"] == "400"
    assert "rejected push" in caplog.text
    assert "13" not in caplog.text.split("rejected push", 1)[1]  # no phone numbers or payload in the log line
    assert count(engine, tracking_push_receipts) == 0
    assert count(engine, tracking_events) == 0


def test_garbage_bodies_are_rejected(ssetup):
    receiver = ssetup["receiver"]
    assert requests.post(receiver.url, data=b"\xff\xfe\x00", timeout=5).status_code == 400
    assert requests.post(receiver.url, timeout=5).status_code == 400
    assert (
        requests.post(
            receiver.url.replace("/kuaidi100/callback", "/elsewhere"), data={"a": 1}, timeout=5
        ).status_code
        == 404
    )
    assert count(ssetup["engine"], tracking_push_receipts) == 0


def test_abort_push_ends_the_subscription_and_polling_takes_over(ssetup):
    engine, carrier, clock = ssetup["engine"], ssetup["carrier"], ssetup["clock"]
    clock.advance(hours=30)
    num = ssetup["ships"]["waybill_no"][0]
    answer = carrier.push(num, status="abort", message="3天查询无记录")
    assert answer["accepted"]
    ssetup["receiver"].apply_pending()
    with engine.connect() as conn:
        assert "aborted" in set(conn.execute(select(tracking_shipment_state.c.subscription_status)).scalars())


def test_push_for_a_waybill_we_do_not_ship_is_kept_as_unmatched(ssetup):
    engine = ssetup["engine"]
    param = json.dumps(
        {"status": "polling", "lastResult": {"nu": "ZZ999", "com": "ems", "state": "0",
                                             "data": [{"time": "2026-03-02 10:00:00", "context": "已揽收"}]}},
        ensure_ascii=False,
    )  # fmt: skip
    response = _post(ssetup["receiver"], {"param": param, "sign": push_sign(param, SALT)})
    assert response.json() == PUSH_OK
    ssetup["receiver"].apply_pending()
    with engine.connect() as conn:
        assert conn.execute(select(tracking_push_receipts.c.status)).scalar() == "unmatched"
    assert count(engine, tracking_events) == 0
