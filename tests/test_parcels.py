"""Merging and splitting parcels (issue 18, item 4) on SQLite and PostgreSQL, against the stand-ins over HTTP:
two orders of one customer to one address ship as one parcel with one waybill, are tracked, confirmed and
settled each on its own; a merge is undone before the waybill; an order from two warehouses ships as two
parcels, confirmed per parcel by sub-order on the platform."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from fulfilment_data import NOW, add_orders, add_stock, seed_reference
from sqlalchemy import select, update
from typer.testing import CliRunner

from connectors.carrier_shipping import CarrierShippingClient
from connectors.kuaidi100 import Credentials
from demo.standins import carrier_shipping
from demo.standins.kuaidi100 import start as start_kuaidi100
from demo.standins.parcel_routes import SimClock
from demo.standins.payment_files import write_alipay_bill
from demo.tracking import standin_registrations
from flows.compose import in_process
from flows.settlement import reconciliation
from flows.tracking import poll_cycle
from tasks.channels.confirmations import plan_confirmations
from tasks.fulfilment.allocation_run import allocate_orders
from tasks.fulfilment.parcel_rules import split_fen
from tasks.fulfilment.parcels import ParcelNotUndoable, merge_parcels, undo_merge
from tasks.fulfilment.waybills import create_waybills
from tasks.tracking.polling import make_client, make_pacer
from yidi.bulk import read_frame
from yidi.schema import order_events, orders, shipments
from yidi.schema_channels import channel_confirmations
from yidi.schema_fulfilment import parcels, shipment_requests
from yidi.settings import get_settings

HOLD = timedelta(minutes=15)  # [fulfilment.parcels] hold_minutes


@pytest.fixture
def carrier():
    handle = carrier_shipping.start()
    yield handle
    handle.stop()


def carrier_client(handle) -> CarrierShippingClient:
    return CarrierShippingClient(handle.url, timeout=2.0, attempts=3, backoff_seconds=0.01)


def _state(engine, order_id) -> tuple[str, str]:
    with engine.connect() as conn:
        row = conn.execute(select(orders.c.state, orders.c.payment_state).where(orders.c.id == order_id)).one()
    return row.state, row.payment_state


def _frame(engine, stmt) -> pd.DataFrame:
    with engine.connect() as conn:
        return read_frame(conn, stmt)


def test_two_orders_merged_into_one_parcel_then_tracked_confirmed_and_settled_separately(engine, carrier, tmp_path):
    with engine.begin() as conn:
        seed_reference(conn)
        add_stock(conn, [("CQ-XY", "A-STOCK", 10), ("CQ-XY", "B-STOCK", 10)])
        first, second, other_customer, cod, later = add_orders(conn, [
            {"lines": [("A-STOCK", 1)], "order_time": NOW - timedelta(hours=5)},
            {"lines": [("B-STOCK", 2)], "order_time": NOW - timedelta(hours=2)},  # 3 h later: inside 24 h
            {"lines": [("A-STOCK", 1)], "customer": "C-WHOLE", "order_time": NOW - timedelta(hours=4)},
            {"lines": [("A-STOCK", 1)], "payment_method": "cod", "order_time": NOW - timedelta(hours=3)},
            {"lines": [("B-STOCK", 1)], "order_time": NOW + timedelta(hours=20)},  # 25 h after the first
        ])  # fmt: skip
        conn.execute(update(orders).values(payment_state="unpaid"))
        numbers = dict(conn.execute(select(orders.c.id, orders.c.order_no)).all())
    allocation = allocate_orders(engine, now=NOW)
    assert allocation.allocated == 5 and allocation.shipments_planned == 5

    merged = merge_parcels(engine, now=NOW)
    assert (merged.parcels, merged.orders, merged.no_carrier) == (1, 2, 0)
    parcel_no = merged.rows[0]["parcel_no"]
    assert merged.rows[0]["orders"] == [numbers[first], numbers[second]]
    assert merge_parcels(engine, now=NOW).parcels == 0  # a re-run merges nothing twice
    parcel = _frame(engine, select(parcels)).iloc[0]
    assert parcel["weight_kg"] == pytest.approx(1.4 + 2 * 0.55)  # a helmet and two packs of hot-pot base
    assert int(parcel["declared_value_fen"]) == 18900 + 2 * 4000
    assert (parcel["status"], int(parcel["orders"])) == ("planned", 2)
    alone = _frame(engine, select(shipment_requests.c.order_id, shipment_requests.c.freight_fen)
                   .where(shipment_requests.c.order_id.in_([first, second])))  # fmt: skip
    assert int(parcel["freight_fen"]) < int(alone["freight_fen"].sum())  # one first-weight charge, not two

    # Within the hold the parcel waits (the operator may still undo it); the others get their waybills.
    now_waybills = create_waybills(engine, carrier_client(carrier), now=NOW)
    assert now_waybills.created == 3 and len(carrier.created) == 3
    assert _state(engine, first)[0] == "allocated" and _state(engine, second)[0] == "allocated"
    later_waybills = create_waybills(engine, carrier_client(carrier), now=NOW + HOLD)
    assert later_waybills.created == 2 and len(carrier.created) == 4  # one carrier call for the parcel
    assert len(later_waybills.documents) == 1  # one shipping document follows the parcel
    doc = json.loads(Path(later_waybills.documents[0]).with_suffix(".json").read_text(encoding="utf-8"))
    assert doc["shipment_no"] == parcel_no and doc["order_no"] == f"{numbers[first]}、{numbers[second]}"
    assert [(g["order_no"], g["item_code"], g["quantity"]) for g in doc["goods"]] == [
        (numbers[first], "A-STOCK", 1.0), (numbers[second], "B-STOCK", 2.0)]
    shipped = _frame(engine, select(shipments).where(shipments.c.order_id.in_([first, second]))
                     .order_by(shipments.c.order_id))  # fmt: skip
    assert shipped["waybill_no"].nunique() == 1 and shipped["shipment_no"].nunique() == 2
    parcel = _frame(engine, select(parcels)).iloc[0]
    assert (parcel["status"], parcel["waybill_no"]) == ("created", shipped["waybill_no"].iloc[0])
    # Each order carries its share of the parcel's freight, by weight; the shares add up to the parcel's.
    assert shipped["freight_fen"].astype(int).tolist() == split_fen(int(parcel["freight_fen"]), [1.4, 1.1])
    assert (shipped["carrier"] == parcel["carrier"]).all()
    assert _state(engine, first)[0] == "shipped" and _state(engine, second)[0] == "shipped"

    # Each order is confirmed on its own (phone orders: the customer notice), with the parcel's waybill.
    plan_confirmations(engine)
    confirms = _frame(engine, select(channel_confirmations).where(channel_confirmations.c.order_id.in_([first, second])))
    assert sorted(confirms["order_id"]) == sorted([first, second])
    assert set(confirms["waybill_no"]) == {parcel["waybill_no"]}

    # Tracking asks the carrier once per waybill and moves both orders.
    clock = SimClock(NOW + HOLD)
    policy = get_settings().tracking.model_copy(update={"requests_per_second": 1000, "http_workers": 4})
    with start_kuaidi100(clock=clock) as kuaidi100:
        with engine.connect() as conn:
            kuaidi100.register_many(standin_registrations(conn, scenarios={}))
        for _ in range(16):  # four days in six-hour steps
            clock.advance(hours=6)
            with make_client(policy, pacer=make_pacer(policy, shared_limit=False),
                             credentials=Credentials("standin-customer", "standin-key", "salt"),
                             query_url=kuaidi100.query_url) as client:  # fmt: skip
                poll_cycle(in_process, engine=engine, client=client, policy=policy, now=clock.now(), actor="test")
        assert kuaidi100.stats()["too_frequent"] == 0
    assert _state(engine, first) == ("delivered", "unpaid") and _state(engine, second) == ("delivered", "unpaid")

    # Settled separately: the first order's payment settles the first order only.
    now = clock.now()
    bill = write_alipay_bill(pd.DataFrame([{"merchant_order_no": numbers[first], "kind": "payment",
                                            "amount_fen": 18900, "txn_time": now - timedelta(hours=1)}]),
                             tmp_path / "inbox" / "alipay" / "a1.csv", day=(now - timedelta(hours=1)).date())
    reconciliation(in_process, engine=engine, files=[bill], now=now, actor="test")
    assert _state(engine, first) == ("settled", "paid") and _state(engine, second) == ("delivered", "unpaid")
    bill = write_alipay_bill(pd.DataFrame([{"merchant_order_no": numbers[second], "kind": "payment",
                                            "amount_fen": 8000, "txn_time": now + timedelta(hours=1)}]),
                             tmp_path / "inbox" / "alipay" / "a2.csv", day=(now + timedelta(hours=1)).date())
    reconciliation(in_process, engine=engine, files=[bill], now=now + timedelta(hours=2), actor="test")
    assert _state(engine, second) == ("settled", "paid")
    for oid, other in ((first, second), (second, first)):
        events = _frame(engine, select(order_events.c.kind, order_events.c.reason)
                        .where(order_events.c.order_id == oid))  # fmt: skip
        assert f"ships in parcel {parcel_no} with order(s) {numbers[other]}" in events["reason"].tolist()
        assert (events["kind"] == "payment").sum() == 1  # its own payment, not the other order's
    assert [_state(engine, o) for o in (later, cod, other_customer)] == [("delivered", "unpaid")] * 3


def test_a_merge_is_undone_before_its_waybill_and_never_merged_again(engine, carrier):
    with engine.begin() as conn:
        seed_reference(conn)
        add_stock(conn, [("CQ-XY", "A-STOCK", 10)])
        first, second = add_orders(conn, [{"lines": [("A-STOCK", 1)], "order_time": NOW - timedelta(hours=2)},
                                          {"lines": [("A-STOCK", 1)], "order_time": NOW - timedelta(hours=1)}])
    allocate_orders(engine, now=NOW)
    parcel_no = merge_parcels(engine, now=NOW).rows[0]["parcel_no"]
    members = undo_merge(engine, parcel_no, now=NOW + timedelta(minutes=5), actor="ops@example.com",
                         reason="customer asked for two parcels")
    assert len(members) == 2
    with pytest.raises(ParcelNotUndoable, match="it is undone"):
        undo_merge(engine, parcel_no)
    assert merge_parcels(engine, now=NOW + timedelta(minutes=6)).parcels == 0  # never merged again
    result = create_waybills(engine, carrier_client(carrier), now=NOW + timedelta(minutes=6))
    assert result.created == 2 and len(carrier.created) == 2 and len(result.documents) == 2
    shipped = _frame(engine, select(shipments.c.waybill_no))
    assert shipped["waybill_no"].nunique() == 2
    events = _frame(engine, select(order_events.c.reason, order_events.c.actor).where(order_events.c.order_id == first))
    undone = events[events["reason"].str.startswith(f"merge into parcel {parcel_no} undone")]
    assert undone["actor"].tolist() == ["ops@example.com"]
    assert "(customer asked for two parcels)" in undone["reason"].iloc[0]


def test_a_merge_cannot_be_undone_once_its_waybill_was_asked_for(engine, carrier):
    with engine.begin() as conn:
        seed_reference(conn)
        add_stock(conn, [("CQ-XY", "A-STOCK", 10)])
        add_orders(conn, [{"lines": [("A-STOCK", 1)]}, {"lines": [("A-STOCK", 1)]}])
    allocate_orders(engine, now=NOW)
    parcel_no = merge_parcels(engine, now=NOW).rows[0]["parcel_no"]
    create_waybills(engine, carrier_client(carrier), now=NOW + HOLD)
    waybill = _frame(engine, select(parcels.c.waybill_no)).iloc[0, 0]
    with pytest.raises(ParcelNotUndoable, match=f"its waybill {waybill} exists"):
        undo_merge(engine, parcel_no)


def test_cli_lists_parcels_and_undoes_a_merge(carrier):
    from app.cli.main import cli
    from yidi.db import get_engine, init_db

    init_db()
    engine = get_engine()
    with engine.begin() as conn:
        seed_reference(conn)
        add_stock(conn, [("CQ-XY", "A-STOCK", 10)])
        first, second = add_orders(conn, [{"lines": [("A-STOCK", 1)]}, {"lines": [("A-STOCK", 1)]}])
        numbers = dict(conn.execute(select(orders.c.id, orders.c.order_no)).all())
    allocate_orders(engine, now=NOW)
    parcel_no = merge_parcels(engine, now=NOW).rows[0]["parcel_no"]
    runner = CliRunner()
    listed = runner.invoke(cli, ["fulfilment", "parcels"])
    assert listed.exit_code == 0, listed.output
    assert f"{parcel_no}  planned  CQ-XY" in listed.output
    assert "  held until 11-27 10:15 (Asia/Shanghai); can be undone" in listed.output  # NOW: 10:00 in Chongqing
    assert f"  orders: {numbers[first]}, {numbers[second]}" in listed.output
    undone = runner.invoke(cli, ["fulfilment", "unmerge", parcel_no, "--reason", "two addresses after all"])
    assert undone.exit_code == 0, undone.output
    assert f"{parcel_no} split:" in undone.output and "ship on their own" in undone.output
    again = runner.invoke(cli, ["fulfilment", "unmerge", parcel_no])
    assert again.exit_code == 1 and "cannot be split: it is undone" in again.output
    assert all(len(line) <= 80 for line in (listed.output + undone.output).splitlines())


def test_an_order_from_two_warehouses_ships_as_two_parcels_confirmed_per_parcel_by_sub_order(engine, carrier):
    from connectors.taobao import TopClient
    from demo.standins.taobao import TaobaoStandin
    from tasks.channels.confirmations import ChannelWriters, send_confirmations
    from tests.channels_data import add_channel_order, top_trade

    tid = 3_900_000_000_000_000_818
    oids = [tid * 10 + 1, tid * 10 + 2]
    with engine.begin() as conn:
        seed_reference(conn)
        add_stock(conn, [("CQ-XY", "A-STOCK", 5), ("CQ-LJ", "B-STOCK", 5)])  # each item in one warehouse only
        order_id = add_channel_order(conn, "taobao", str(tid), [("A-STOCK", 1), ("B-STOCK", 1)],
                                     raw=top_trade(tid, oids), state="approved")
    assert allocate_orders(engine, now=NOW).shipments_planned == 2
    assert merge_parcels(engine, now=NOW).parcels == 0  # one order's two warehouses never merge back
    result = create_waybills(engine, carrier_client(carrier), now=NOW)
    assert result.created == 2 and len(result.documents) == 2
    shipped = _frame(engine, select(shipments.c.warehouse, shipments.c.waybill_no).order_by(shipments.c.warehouse))
    assert shipped["warehouse"].tolist() == ["CQ-LJ", "CQ-XY"] and shipped["waybill_no"].nunique() == 2
    with TaobaoStandin(app_key="k", app_secret="s", session="x") as top:
        top.add_trade(top_trade(tid, oids))
        client = TopClient(url=top.url, app_key="k", app_secret="s", session="x", attempts=1, backoff=0.0)
        assert plan_confirmations(engine) == 2
        sent = send_confirmations(engine, ChannelWriters(client, None))
        assert sent.confirmed == 2
        by_sub = {tuple(c["sub_tid"]): c["out_sid"] for c in top.confirmations}
        waybill_of = dict(zip(shipped["warehouse"], shipped["waybill_no"], strict=True))
        assert by_sub == {(oids[0],): waybill_of["CQ-XY"], (oids[1],): waybill_of["CQ-LJ"]}
        assert top.trades[tid]["status"] == "WAIT_BUYER_CONFIRM_GOODS"
    assert _state(engine, order_id)[0] == "shipped"


def test_a_parcel_whose_order_is_cancelled_while_held_is_dissolved_and_the_rest_merged_again(engine, carrier):
    from tasks.fulfilment.decisions import cancel_fulfilment

    with engine.begin() as conn:
        seed_reference(conn)
        add_stock(conn, [("CQ-XY", "A-STOCK", 10), ("CQ-XY", "B-STOCK", 10)])
        first, second, third = add_orders(conn, [
            {"lines": [("A-STOCK", 1)], "order_time": NOW - timedelta(hours=3)},
            {"lines": [("B-STOCK", 1)], "order_time": NOW - timedelta(hours=2)},
            {"lines": [("B-STOCK", 2)], "order_time": NOW - timedelta(hours=1)},
        ])  # fmt: skip
    allocate_orders(engine, now=NOW)
    old = merge_parcels(engine, now=NOW).rows[0]["parcel_no"]
    with engine.begin() as conn:
        cancel_fulfilment(conn, first, reason="customer cancelled", actor="test", now=NOW + timedelta(minutes=5))
    result = create_waybills(engine, carrier_client(carrier), now=NOW + HOLD)
    assert result.created == 0 and carrier.created == {}  # the parcel's figures no longer hold: nothing asked
    assert _frame(engine, select(parcels.c.status).where(parcels.c.parcel_no == old)).iloc[0, 0] == "undone"
    again = merge_parcels(engine, now=NOW + HOLD)
    assert len(again.rows[0]["orders"]) == 2 and again.rows[0]["parcel_no"] != old  # led by the second order now
    fresh = _frame(engine, select(parcels).where(parcels.c.status == "planned")).iloc[0]
    assert fresh["weight_kg"] == pytest.approx(3 * 0.55) and int(fresh["declared_value_fen"]) == 3 * 4000
    shipped = create_waybills(engine, carrier_client(carrier), now=NOW + 2 * HOLD)
    assert shipped.created == 2 and len(carrier.created) == 1
    assert _state(engine, first)[0] == "cancelled"
    assert _state(engine, second)[0] == "shipped" and _state(engine, third)[0] == "shipped"
