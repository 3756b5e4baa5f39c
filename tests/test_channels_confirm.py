"""Shipment confirmation (发货回传, issue 18) through the TOP and WooCommerce stand-ins, on both databases."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from connectors.taobao import TopClient
from connectors.taobao_writeback import OFFLINE_SEND
from connectors.woocommerce_writeback import WooWriter
from demo.standins.taobao import TaobaoStandin
from demo.standins.woocommerce import WooCommerceStandin
from tasks.channels.confirmations import ChannelWriters, plan_confirmations, send_confirmations
from tests.channels_data import add_channel_order, add_parcel, give_waybill, top_trade
from yidi.schema import notification_outbox, order_events
from yidi.schema_channels import channel_confirmations

TID = 3_900_000_000_000_000_777


@pytest.fixture
def top():
    with TaobaoStandin(app_key="k", app_secret="s", session="x") as standin:
        yield standin


@pytest.fixture
def woo():
    with WooCommerceStandin(consumer_key="ck", consumer_secret="cs") as standin:
        yield standin


def _writers(top=None, woo=None, attempts=1):
    client = TopClient(url=top.url, app_key="k", app_secret="s", session="x", attempts=attempts, backoff=0.0) \
        if top else None
    writer = WooWriter(woo.url, "ck", "cs") if woo else None
    return ChannelWriters(client, writer)


def _run(engine, writers):
    planned = plan_confirmations(engine)
    result = send_confirmations(engine, writers)
    result.planned = planned
    return result


def _rows(engine):
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(channel_confirmations).order_by(channel_confirmations.c.id))]


def _events(engine, kind):
    with engine.connect() as conn:
        return conn.execute(select(order_events.c.reason).where(order_events.c.kind == kind)).scalars().all()


def test_a_lost_answer_retried_confirms_the_trade_once(engine, top):
    top.add_trade(top_trade(TID, [TID * 10 + 1]))
    with engine.begin() as conn:
        order_id = add_channel_order(conn, "taobao", str(TID), [("SKU-1", 1)], raw=top_trade(TID, [TID * 10 + 1]))
        add_parcel(conn, order_id, [1], carrier="zhongtong", waybill_no="ZT7001")
    top.faults.add("lost", match={"method": OFFLINE_SEND})
    first = _run(engine, _writers(top))
    assert (first.confirmed, first.already, first.failed, first.pending) == (0, 0, 1, 1)  # the answer never came
    assert len(top.confirmations) == 1  # ... but the platform did it
    second = _run(engine, _writers(top))
    assert (second.confirmed, second.already, second.pending) == (0, 1, 0)  # B04: already shipped, counted as done
    assert top.confirmations == [{"tid": TID, "out_sid": "ZT7001", "company_code": "ZTO", "sub_tid": None}]
    [row] = _rows(engine)
    assert (row["status"], row["attempts"], row["medium"]) == ("already", 2, "api")
    assert "B04" in json.loads(row["answer"])["sub_code"]
    assert len(_events(engine, "channel_confirmed")) == 1
    third = _run(engine, _writers(top))  # nothing left to do: no call at all
    assert (third.planned, third.confirmed, third.already) == (0, 0, 0)
    assert len(top.confirmations) == 1


def test_already_shipped_by_a_person_counts_as_done(engine, top):
    top.add_trade(top_trade(TID, [TID * 10 + 1]))
    top.shipped[TID] = {TID * 10 + 1}  # shipped by hand in the seller centre
    top.trades[TID]["status"] = "WAIT_BUYER_CONFIRM_GOODS"
    with engine.begin() as conn:
        order_id = add_channel_order(conn, "taobao", str(TID), [("SKU-1", 1)])
        add_parcel(conn, order_id, [1], waybill_no="ZT7002")
    result = _run(engine, _writers(top))
    assert (result.already, result.refused, result.pending) == (1, 0, 0)
    assert top.confirmations == []


def test_a_split_trade_is_confirmed_per_parcel_by_sub_order(engine, top):
    oids = [TID * 10 + 1, TID * 10 + 2]
    top.add_trade(top_trade(TID, oids))
    with engine.begin() as conn:
        order_id = add_channel_order(conn, "taobao", str(TID), [("SKU-1", 1), ("SKU-2", 1)], raw=top_trade(TID, oids))
        add_parcel(conn, order_id, [1], waybill_no="ZT8001", warehouse="CQ")
        second = add_parcel(conn, order_id, [2], warehouse="CD")  # no waybill yet
    first = _run(engine, _writers(top))
    assert first.confirmed == 1
    assert top.confirmations == [{"tid": TID, "out_sid": "ZT8001", "company_code": "ZTO", "sub_tid": [oids[0]]}]
    assert top.trades[TID]["status"] == "WAIT_SELLER_SEND_GOODS"  # one sub-order still to ship
    with engine.begin() as conn:
        give_waybill(conn, second, order_id, "YT8002", carrier="yuantong")
    later = _run(engine, _writers(top))
    assert (later.planned, later.confirmed) == (1, 1)
    assert top.confirmations[1] == {"tid": TID, "out_sid": "YT8002", "company_code": "YTO", "sub_tid": [oids[1]]}
    assert top.trades[TID]["status"] == "WAIT_BUYER_CONFIRM_GOODS"
    assert [r["sub_ids"] for r in _rows(engine)] == [str(oids[0]), str(oids[1])]


def test_website_order_gets_one_customer_note_and_completes_after_its_last_parcel(engine, woo):
    woo.add_order({"id": 5001, "status": "processing"})
    with engine.begin() as conn:
        order_id = add_channel_order(conn, "website", "5001", [("SKU-1", 1), ("SKU-2", 1)])
        add_parcel(conn, order_id, [1], carrier="shunfeng", waybill_no="SF1001")
        second = add_parcel(conn, order_id, [2])
    woo.faults.add("lost", match={"method": "POST"})  # the note is written, its answer lost
    first = _run(engine, _writers(woo=woo))
    assert (first.failed, first.pending) == (1, 1)
    again = _run(engine, _writers(woo=woo))
    assert again.already == 1  # its own note found: not written twice
    assert [n["note"] for n in woo.notes[5001]] == [
        "您的订单已发货：顺丰速运，运单号 SF1001。Your order has shipped: 顺丰速运, tracking number SF1001."]
    assert woo.notes[5001][0]["customer_note"] is True
    assert woo.orders[5001]["status"] == "processing"  # a parcel is still waiting for its waybill
    with engine.begin() as conn:
        give_waybill(conn, second, order_id, "SF1002", carrier="shunfeng")
    last = _run(engine, _writers(woo=woo))
    assert last.confirmed == 1
    assert len(woo.notes[5001]) == 2
    assert woo.orders[5001]["status"] == "completed"


def test_a_phone_order_gets_the_customer_notice_once(engine):
    with engine.begin() as conn:
        order_id = add_channel_order(conn, "phone", "P-1", [("SKU-1", 1)], phone="13900001111")
        add_parcel(conn, order_id, [1], carrier="ems", waybill_no="EMS0001")
    result = _run(engine, ChannelWriters())
    assert (result.notified, result.pending) == (1, 0)
    _run(engine, ChannelWriters())
    with engine.connect() as conn:
        queued = conn.execute(select(notification_outbox.c.recipient, notification_outbox.c.template,
                                     notification_outbox.c.context)).all()
    assert [(q.recipient, q.template) for q in queued] == [("13900001111", "channels_shipped")]
    assert json.loads(queued[0].context)["waybill_no"] == "EMS0001"
    assert _rows(engine)[0]["status"] == "notified"


def test_a_refusal_is_reported_not_retried(engine, top):
    with engine.begin() as conn:  # the platform does not know this trade (B01)
        order_id = add_channel_order(conn, "taobao", "123", [("SKU-1", 1)])
        add_parcel(conn, order_id, [1], waybill_no="ZT9001")
    result = _run(engine, _writers(top))
    assert (result.refused, result.pending) == (1, 0)
    assert "B01" in result.problems[0]["error"]
    assert _run(engine, _writers(top)).refused == 0
    assert len(_events(engine, "channel_refused")) == 1
