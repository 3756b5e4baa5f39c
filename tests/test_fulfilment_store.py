"""Fulfilment against the real store (SQLite and PostgreSQL) and the stand-ins over HTTP: allocation, the
database-level guarantee against double allocation under concurrent runs, exceptions that keep orders where
they are, waybills created exactly once, documents, notices."""

from __future__ import annotations

import json
import threading
from datetime import date

import pandas as pd
import pytest
from fulfilment_data import NOW, add_orders, add_stock, add_supplier_prices, seed_reference
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from connectors.carrier_shipping import CarrierShippingClient
from demo.standins import carrier_shipping
from tasks.fulfilment.allocation_run import allocate_orders
from tasks.fulfilment.stock import InsufficientStock, apply_movements, ledger_mismatches, stock_position
from tasks.fulfilment.waybills import create_waybills
from yidi.bulk import read_frame
from yidi.db import init_db, make_engine
from yidi.schema import notification_outbox, order_events, orders, shipments
from yidi.schema_fulfilment import allocations, backorders, shipment_requests


def states(conn) -> dict[int, str]:
    return dict(conn.execute(select(orders.c.id, orders.c.state)).all())


def available(conn, item: str) -> float:
    frame = stock_position(conn, item_codes=[item])
    return float(frame["available"].sum())


@pytest.fixture
def carrier():
    handle = carrier_shipping.start()
    yield handle
    handle.stop()


def carrier_client(handle, attempts=3) -> CarrierShippingClient:
    return CarrierShippingClient(handle.url, timeout=2.0, attempts=attempts, backoff_seconds=0.01)


def test_allocation_to_waybills_end_to_end(engine, carrier):
    with engine.begin() as conn:
        seed_reference(conn)
        add_stock(conn, [("CQ-XY", "A-STOCK", 5, "B1"), ("CQ-LJ", "A-STOCK", 3), ("CQ-XY", "B-STOCK", 10)])
        full, partial, whole, unserved = add_orders(
            conn,
            [
                {"lines": [("A-STOCK", 2), ("B-STOCK", 1), ("SV-INSTALL", 1)]},
                {"lines": [("A-STOCK", 3), ("P-BUY", 1)], "customer": "C-PARTIAL"},
                {"lines": [("A-STOCK", 1), ("M-MADE", 1)], "customer": "C-WHOLE"},
                {"lines": [("A-STOCK", 1)], "province": "台湾省"},
            ],
        )
    result = allocate_orders(engine, now=NOW)
    assert (result.allocated, result.partial, result.backordered, result.exceptions) == (2, 1, 1, 1)
    with engine.connect() as conn:
        assert states(conn) == {full: "allocated", partial: "allocated", whole: "in_production", unserved: "approved"}
        assert ledger_mismatches(conn).empty
        assert available(conn, "A-STOCK") == 3.0  # 8 on hand - 2 - 3; the whole-only order reserved nothing
        open_backorders = read_frame(conn, select(backorders).where(backorders.c.status == "open"))
        assert set(open_backorders["order_id"]) == {partial, whole}
        plans = read_frame(conn, select(shipment_requests))
        assert set(plans["order_id"]) == {full, partial} and (plans["status"] == "pending").all()
        assert plans["choice_reason"].str.contains("cheapest").all()
        assert all(len(json.loads(a)) == 7 for a in plans["alternatives"])  # every carrier priced
    # The carrier creates the first waybill but the answer is lost: the retry gets the same one back.
    carrier.fail_next("lost")
    waybills = create_waybills(engine, carrier_client(carrier), now=NOW)
    assert waybills.created == len(plans) and waybills.replayed == 1 and waybills.failed == 0
    assert len(carrier.created) == len(plans)  # one waybill per shipment at the carrier
    with engine.connect() as conn:
        shipped = read_frame(conn, select(shipments))
        assert len(shipped) == len(plans) and shipped["waybill_no"].notna().all()
        assert set(shipped["waybill_no"]) == {w["waybill_no"] for w in carrier.created.values()}
        assert (shipped["status"] == "info_received").all() and shipped["expected_delivery_date"].notna().all()
        assert states(conn)[full] == "shipped" and states(conn)[partial] == "shipped"
        assert ledger_mismatches(conn).empty
        position = stock_position(conn).set_index(["warehouse", "item_code"])
        assert position["reserved"].sum() == 0 and position.loc[("CQ-XY", "B-STOCK"), "on_hand"] == 9.0
        notices = read_frame(conn, select(notification_outbox).where(notification_outbox.c.template == "fulfilment_shipped"))
        context = json.loads(notices["context"].iloc[0])
        assert context["waybill_no"] in set(shipped["waybill_no"]) and context["expected_delivery_date"]
        events = read_frame(conn, select(order_events).where(order_events.c.order_id == unserved))
        assert events["reason"].tolist() == ["exception: no carrier serves 台湾省"]
    docs = [p for p in waybills.documents]
    assert len(docs) == len(plans)
    for doc in docs:  # both shipments leave 西永 (A-STOCK 2+3 of its 5, B-STOCK there only)
        html = open(doc, encoding="utf-8").read()
        assert "人民南路四段1号" in html, doc  # ship-to (F5)
        assert "西永微电园 1 号仓" in html, doc  # ship-from
    assert any(p.endswith(".xlsx") for p in waybills.pick_lists)
    from yidi.schema_access import personal_data_access

    with engine.connect() as conn:  # issue 20: documents with full addresses are recorded
        trail = read_frame(conn, select(personal_data_access))
    assert trail["action"].tolist() == ["document"] and trail["subject"].iloc[0].startswith(f"{len(docs)} shipping")
    assert trail["people"].iloc[0] == len({(p["customer_name"], p["customer_phone"], p["ship_detail"])
                                          for p in order_frame_rows(engine, shipped["order_id"])})
    # Nothing left to do: a second pass creates nothing and allocates nothing twice.
    assert create_waybills(engine, carrier_client(carrier), now=NOW).created == 0
    again = allocate_orders(engine, now=NOW)
    assert again.shipments_planned == 0
    with engine.connect() as conn:
        events = read_frame(conn, select(order_events).where(order_events.c.order_id == unserved))
        assert len(events) == 1  # the exception is recorded once, not every 15 minutes


def _race_store(conn) -> None:
    seed_reference(conn)
    add_stock(conn, [("CQ-XY", "A-STOCK", 10), ("CQ-LJ", "B-STOCK", 4)])
    add_orders(conn, [{"lines": [("A-STOCK", 1 + i % 2), ("B-STOCK", i % 2)] if i % 2 else [("A-STOCK", 1)]}
                      for i in range(16)])  # fmt: skip


def test_concurrent_allocation_runs_never_allocate_the_same_stock_twice(engine, tmp_path):
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite admits one writer at a time, so two allocation runs cannot interleave there; "
                    "the race is tested on PostgreSQL")
    with engine.begin() as conn:
        _race_store(conn)
    # Both runs read and plan from the same stock, then meet here before either reserves: a real race. (Runs
    # take turns through an advisory lock, ``serial=False`` lifts it: the database alone must still refuse.)
    barrier = threading.Barrier(2, timeout=30)
    met = []

    def line_up(attempt: int) -> None:
        if attempt == 1:
            barrier.wait()
            met.append(attempt)

    results, errors = [], []

    def run():
        try:
            results.append(allocate_orders(engine, now=NOW, after_plan=line_up, serial=False))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(results) == 2 and len(met) == 2  # both planned before either reserved
    with engine.connect() as conn:
        position = stock_position(conn).set_index("item_code")
        assert (position["reserved"] <= position["on_hand"]).all()
        assert position.loc["A-STOCK", "reserved"] == 10.0 and position.loc["B-STOCK", "reserved"] == 4.0
        allocated = read_frame(conn, select(allocations.c.order_line_id, allocations.c.quantity))
        assert not allocated["order_line_id"].duplicated().any()  # no line allocated by both runs
        assert ledger_mismatches(conn).empty
        raced = states(conn)
    assert sum(state == "allocated" for state in raced.values()) == sum(r.allocated for r in results)
    # The race ends where one run alone ends on the same store (a fresh SQLite copy): same state per order.
    alone = make_engine(f"sqlite:///{tmp_path / 'alone.db'}")
    init_db(alone)
    with alone.begin() as conn:
        _race_store(conn)
    allocate_orders(alone, now=NOW)
    with alone.connect() as conn:
        assert sorted(raced.values()) == sorted(states(conn).values())
    alone.dispose()


def test_the_database_refuses_over_allocation_whatever_the_code_does(engine):
    with engine.begin() as conn:
        seed_reference(conn)
        add_stock(conn, [("CQ-XY", "A-STOCK", 3)])
    with pytest.raises(InsufficientStock, match="available 3"), engine.begin() as conn:
        apply_movements(conn, pd.DataFrame([{"warehouse": "CQ-XY", "item_code": "A-STOCK", "kind": "reservation",
                                             "reserved_delta": 4.0}]))  # fmt: skip
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(text("UPDATE stock_levels SET reserved = on_hand + 1 WHERE item_code = 'A-STOCK'"))
    with engine.connect() as conn:
        assert available(conn, "A-STOCK") == 3.0 and ledger_mismatches(conn).empty


def test_orders_no_carrier_can_take_stay_approved_with_a_clear_exception(sqlite_engine):
    with sqlite_engine.begin() as conn:
        seed_reference(conn)
        add_stock(conn, [("CQ-XY", "A-STOCK", 10), ("CQ-XY", "N-NOWEIGHT", 10), ("CQ-XY", "H-HEAVY", 10)])
        ids = add_orders(
            conn,
            [
                {"lines": [("A-STOCK", 1)], "province": "台湾省"},
                {"lines": [("N-NOWEIGHT", 1)]},
                {"lines": [("UNKNOWN-SKU", 1)]},
                # 10 desks = 580 kg: over every carrier's limit (Deppon takes 500 kg).
                {"lines": [("H-HEAVY", 10)], "province": "广东省"},
                {"lines": [("A-STOCK", 1)], "province": "新疆维吾尔自治区", "payment_method": "cod"},
            ],
        )
    result = allocate_orders(sqlite_engine, now=NOW)
    reasons = {r["order_id"]: r["exception"] for r in result.exception_rows}
    assert reasons[ids[0]] == "no carrier serves 台湾省"
    assert "N-NOWEIGHT has no weight" in reasons[ids[1]]
    assert "UNKNOWN-SKU is not in the catalog" in reasons[ids[2]]
    assert reasons[ids[3]].startswith("no eligible carrier (") and "over weight limit" in reasons[ids[3]]
    assert ids[4] not in reasons  # COD to Xinjiang: insured, a COD carrier serves it
    with sqlite_engine.connect() as conn:
        now_states = states(conn)
        assert [now_states[i] for i in ids[:4]] == ["approved"] * 4 and now_states[ids[4]] == "allocated"
        assert available(conn, "H-HEAVY") == 10.0 and available(conn, "N-NOWEIGHT") == 10.0  # nothing held
    allocate_orders(sqlite_engine, now=NOW)
    with sqlite_engine.connect() as conn:
        events = read_frame(conn, select(order_events.c.order_id, order_events.c.reason)
                            .where(order_events.c.reason.like("exception:%")))  # fmt: skip
    assert events["order_id"].value_counts().max() == 1  # once per order and reason


def test_carrier_outage_is_retried_with_the_same_key_in_the_next_run(sqlite_engine, carrier):
    with sqlite_engine.begin() as conn:
        seed_reference(conn)
        add_stock(conn, [("CQ-XY", "A-STOCK", 10)])
        first, second = add_orders(conn, [{"lines": [("A-STOCK", 1)]}, {"lines": [("A-STOCK", 2)]}])
    allocate_orders(sqlite_engine, now=NOW)
    carrier.fail_next("5xx", times=6)  # every try of both shipments in this run
    outage = create_waybills(sqlite_engine, carrier_client(carrier, attempts=3), now=NOW)
    assert (outage.created, outage.failed) == (0, 2)
    with sqlite_engine.connect() as conn:
        pending = read_frame(conn, select(shipment_requests).order_by(shipment_requests.c.id))
        assert (pending["status"] == "pending").all() and pending["last_error"].str.contains("503").all()
        assert pending["attempts"].tolist() == [3, 3]
        assert states(conn)[first] == "allocated"
    recovered = create_waybills(sqlite_engine, carrier_client(carrier), now=NOW)
    assert (recovered.created, recovered.failed) == (2, 0)
    with sqlite_engine.connect() as conn:
        assert len(read_frame(conn, select(shipments))) == 2
        assert states(conn) == {first: "shipped", second: "shipped"}
        assert read_frame(conn, select(shipment_requests))["attempts"].tolist() == [4, 4]
        outage_events = read_frame(conn, select(order_events).where(order_events.c.reason.like("waybill for%")))
        assert len(outage_events) == 2  # one event per shipment for the outage, not one per try
    assert len(carrier.created) == 2


def test_a_restarted_run_gets_the_same_waybill_and_records_the_shipment_once(sqlite_engine, carrier):
    from tasks.fulfilment.waybills import pending_shipment_requests, shipment_goods, waybill_request_body

    with sqlite_engine.begin() as conn:
        seed_reference(conn)
        add_stock(conn, [("CQ-XY", "A-STOCK", 10)])
        (order,) = add_orders(conn, [{"lines": [("A-STOCK", 1)]}])
    allocate_orders(sqlite_engine, now=NOW)
    with sqlite_engine.connect() as conn:
        row = pending_shipment_requests(conn).iloc[0].to_dict()
        goods = shipment_goods(conn, [row["id"]]).to_dict("records")
    # A previous process got the waybill (exact same request) and crashed before its commit.
    first = carrier_client(carrier).create_waybill(waybill_request_body(row, goods), row["idempotency_key"])
    # Two runs now race to record it.
    outcomes = []
    threads = [threading.Thread(target=lambda: outcomes.append(create_waybills(sqlite_engine, carrier_client(carrier), now=NOW)))
               for _ in range(2)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sum(o.created for o in outcomes) == 1
    with sqlite_engine.connect() as conn:
        made = read_frame(conn, select(shipments))
        assert made["waybill_no"].tolist() == [first.waybill_no]
        assert states(conn)[order] == "shipped"
        assert stock_position(conn)["on_hand"].sum() == 9.0  # issued once
        assert ledger_mismatches(conn).empty
    assert len(carrier.created) == 1


def test_make_to_order_and_bought_in_items_flow_through_requests_and_back(sqlite_engine, carrier):
    from connectors.supplier import SupplierClient
    from demo.standins import supplier
    from tasks.fulfilment.purchasing import send_purchase_orders
    from tasks.fulfilment.receipts import (
        receive_purchase_order,
        record_production_output,
        record_quality_check,
    )
    from yidi.schema_fulfilment import production_requests, purchase_requests

    with sqlite_engine.begin() as conn:
        seed_reference(conn)
        add_supplier_prices(conn, [("SUP-1", "P-BUY", 4200, 5, 20), ("SUP-2", "P-BUY", 4000, 3, 20),
                                   ("SUP-3", "P-BUY", 3000, 30)])  # fmt: skip
        made, bought = add_orders(
            conn,
            [{"lines": [("M-MADE", 2)], "customer": "C-WHOLE", "promised_date": date(2027, 1, 29)},
             {"lines": [("P-BUY", 1)], "customer": "C-WHOLE", "promised_date": date(2026, 12, 9)}],
        )  # fmt: skip
    result = allocate_orders(sqlite_engine, now=NOW)
    assert (result.production_requests, result.purchase_requests, result.decisions_offered) == (1, 1, 0)
    with sqlite_engine.connect() as conn:
        assert states(conn) == {made: "in_production", bought: "in_procurement"}
        mo = read_frame(conn, select(production_requests)).iloc[0]
        assert mo["planned_date"] == date(2026, 12, 11) and mo["available_date"] == date(2026, 12, 14)
        pr = read_frame(conn, select(purchase_requests)).iloc[0]
        # SUP-3 is cheapest but arrives too late; SUP-2 beats preferred SUP-1 by more than 3%.
        assert pr["supplier_code"] == "SUP-2" and pr["status"] == "draft"
        assert {a["supplier"] for a in json.loads(pr["alternatives"])} == {"SUP-1", "SUP-2", "SUP-3"}
    assert allocate_orders(sqlite_engine, now=NOW).production_requests == 0  # no duplicate requests
    with supplier.start() as handle, SupplierClient(handle.url, backoff_seconds=0.01) as client:
        sent = send_purchase_orders(sqlite_engine, client)
    assert sent.sent == 1 and len(handle.created) == 1
    with sqlite_engine.begin() as conn:
        record_production_output(conn, mo["request_no"], 2)
    with sqlite_engine.connect() as conn:
        position = stock_position(conn, item_codes=["M-MADE"]).iloc[0]
        assert position["on_hand"] == 2 and position["available"] == 0  # quarantined until QC
    with sqlite_engine.begin() as conn:
        record_quality_check(conn, mo["request_no"], 2, 0, inspector="质检员王")
        receive_purchase_order(conn, pr["po_no"])
    rerun = allocate_orders(sqlite_engine, now=NOW)
    assert rerun.allocated == 2
    with sqlite_engine.connect() as conn:
        assert states(conn) == {made: "allocated", bought: "allocated"}
        assert read_frame(conn, select(backorders))["status"].eq("filled").all()
        assert ledger_mismatches(conn).empty


def test_short_orders_ask_the_customer_and_the_choice_is_recorded(sqlite_engine):
    from tasks.fulfilment.decisions import record_customer_decision
    from yidi.schema_fulfilment import customer_decisions

    with sqlite_engine.begin() as conn:
        seed_reference(conn)
        add_stock(conn, [("CQ-XY", "A-STOCK", 1)])
        partial_ok, cancel_me = add_orders(
            conn,
            [{"lines": [("A-STOCK", 1), ("M-MADE", 1)], "customer": "C-WHOLE", "promised_date": date(2026, 12, 2)},
             {"lines": [("M-MADE", 1)], "customer": "C-WHOLE", "promised_date": date(2026, 12, 2)}],
        )  # fmt: skip
    result = allocate_orders(sqlite_engine, now=NOW)
    assert result.decisions_offered == 2
    with sqlite_engine.connect() as conn:
        offers = read_frame(conn, select(customer_decisions)).set_index("order_id")
        assert offers.loc[partial_ok, "partial_possible"] and not offers.loc[cancel_me, "partial_possible"]
        assert offers.loc[partial_ok, "earliest_date"] > date(2026, 12, 2)
        notice = read_frame(conn, select(notification_outbox).where(notification_outbox.c.order_id == partial_ok))
        assert set(notice["medium"]) == {"sms", "email"}
        assert "partial" in json.loads(notice["context"].iloc[0])["options"]
    with sqlite_engine.begin() as conn:
        record_customer_decision(conn, partial_ok, "partial", note="电话确认", actor="user:客服")
        record_customer_decision(conn, cancel_me, "cancel", actor="user:客服")
    allocate_orders(sqlite_engine, now=NOW)
    with sqlite_engine.connect() as conn:
        assert states(conn) == {partial_ok: "allocated", cancel_me: "cancelled"}
        assert available(conn, "A-STOCK") == 0.0
        from yidi.schema_fulfilment import production_requests

        assert read_frame(conn, select(production_requests).where(production_requests.c.order_id == cancel_me))[
            "status"
        ].tolist() == ["cancelled"]


def test_partial_shipment_then_the_backordered_rest_ships_when_stock_arrives(sqlite_engine, carrier):
    with sqlite_engine.begin() as conn:
        seed_reference(conn)
        add_stock(conn, [("CQ-XY", "A-STOCK", 2)])
        (order,) = add_orders(conn, [{"lines": [("A-STOCK", 5), ("B-STOCK", 1)], "customer": "C-PARTIAL"}])
    assert allocate_orders(sqlite_engine, now=NOW).partial == 1
    first = create_waybills(sqlite_engine, carrier_client(carrier), now=NOW)
    assert first.created == 1
    with sqlite_engine.begin() as conn:
        assert states(conn)[order] == "shipped"
        notice = read_frame(conn, select(notification_outbox.c.context))
        assert "其余商品到货后将另行发出" in notice["context"].iloc[0]
        add_stock(conn, [("CQ-LJ", "A-STOCK", 10), ("CQ-LJ", "B-STOCK", 1)])
    follow_up = allocate_orders(sqlite_engine, now=NOW)
    assert follow_up.allocated == 1 and follow_up.shipments_planned == 1
    second = create_waybills(sqlite_engine, carrier_client(carrier), now=NOW)
    assert second.created == 1
    with sqlite_engine.connect() as conn:
        assert states(conn)[order] == "shipped"  # the order's state follows its first shipment
        made = read_frame(conn, select(shipments.c.shipment_no, shipments.c.warehouse).order_by(shipments.c.id))
        assert made["shipment_no"].str.endswith(("-1", "-2")).all() and made["warehouse"].tolist() == ["CQ-XY", "CQ-LJ"]
        assert read_frame(conn, select(backorders))["status"].eq("filled").all()
        assert read_frame(conn, select(allocations.c.quantity))["quantity"].sum() == 6.0  # 5 + 1, nothing twice
    assert allocate_orders(sqlite_engine, now=NOW).considered == 0


def order_frame_rows(engine, order_ids) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(orders.c.customer_name, orders.c.customer_phone, orders.c.ship_detail)
                                              .where(orders.c.id.in_([int(i) for i in order_ids]))).mappings()]
