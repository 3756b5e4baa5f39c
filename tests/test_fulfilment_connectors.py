"""Carrier e-waybill and supplier purchase-order connectors against their stand-ins over real HTTP: retries on
transient faults, exactly one resource per idempotency key even when the answer is lost, refusals not retried."""

from __future__ import annotations

import pytest

from connectors.carrier_shipping import CarrierRejected, CarrierShippingClient, CarrierUnavailable
from connectors.supplier import SupplierClient, SupplierRejected
from demo.standins import carrier_shipping, supplier

REQUEST = {
    "carrier": "shunfeng",
    "service": "顺丰标快",
    "order_ref": "YD0001-1",
    "sender": {"name": "西永仓", "phone": "023-65000001", "province": "重庆市", "address": "西永微电园 1 号仓"},
    "recipient": {"name": "张三", "phone": "13812348000", "province": "四川省", "address": "人民南路四段1号"},
    "parcel": {"weight_kg": 1.4, "volume_m3": 0.02, "pieces": 1},
    "goods": [{"name": "摩托车头盔", "quantity": 1, "unit": "顶"}],
    "declared_value": "189.00",
    "insured": False,
    "cod_amount": "0.00",
}


@pytest.fixture
def carrier():
    handle = carrier_shipping.start(token="s3cret")
    yield handle
    handle.stop()


def client(url, **kw) -> CarrierShippingClient:
    return CarrierShippingClient(url, token="s3cret", timeout=kw.pop("timeout", 2.0), attempts=kw.pop("attempts", 4),
                                 backoff_seconds=0.01, **kw)  # fmt: skip


def test_waybill_created_with_the_carriers_number_shape(carrier):
    with client(carrier.url) as c:
        waybill = c.create_waybill(REQUEST, "key-1")
    assert waybill.waybill_no.startswith("SF") and len(waybill.waybill_no) == 15
    assert not waybill.replayed and waybill.attempts == 1
    assert carrier.created["key-1"]["waybill_no"] == waybill.waybill_no


def test_lost_answer_after_creation_gives_back_the_same_waybill_once(carrier):
    carrier.fail_next("lost")
    with client(carrier.url) as c:
        waybill = c.create_waybill(REQUEST, "key-lost")
    assert waybill.replayed and waybill.attempts == 2
    assert len(carrier.created) == 1  # created exactly once
    outcomes = [r["outcome"] for r in carrier.requests]
    assert outcomes == ["lost after 201", "replay"]
    assert carrier.created["key-lost"]["waybill_no"] == waybill.waybill_no


def test_5xx_429_and_timeouts_are_retried_with_the_same_key(carrier):
    carrier.fail_next("5xx")
    carrier.fail_next("429")
    carrier.fail_next("timeout", delay=0.6)
    with client(carrier.url, timeout=0.3, attempts=4) as c:
        waybill = c.create_waybill(REQUEST, "key-flaky")
    assert waybill.attempts == 4 and not waybill.replayed
    assert {r["key"] for r in carrier.requests} == {"key-flaky"}
    assert len(carrier.created) == 1


def test_carrier_down_for_every_try_is_unavailable_and_nothing_is_created(carrier):
    carrier.fail_next("5xx", times=3)
    with client(carrier.url, attempts=3) as c, pytest.raises(CarrierUnavailable, match="3 tries failed"):
        c.create_waybill(REQUEST, "key-down")
    assert carrier.created == {}


def test_refusals_are_not_retried(carrier):
    with client(carrier.url) as c:
        with pytest.raises(CarrierRejected, match="422"):
            c.create_waybill(REQUEST | {"carrier": "nosuch"}, "key-bad")
        c.create_waybill(REQUEST, "key-reuse")
        with pytest.raises(CarrierRejected, match="idempotency_key_reused"):
            c.create_waybill(REQUEST | {"order_ref": "other"}, "key-reuse")
    with CarrierShippingClient(carrier.url, token="wrong", backoff_seconds=0.01) as c, pytest.raises(
        CarrierRejected, match="401"
    ):
        c.create_waybill(REQUEST, "key-auth")
    assert [r["outcome"] for r in carrier.requests].count("422") == 1  # one try only


def test_purchase_order_sent_once_even_when_the_answer_is_lost():
    with supplier.start(known_items={"P-BUY"}) as handle, SupplierClient(handle.url, backoff_seconds=0.01) as c:
        order = {"po_no": "PO-1", "supplier_code": "SUP-1",
                 "lines": [{"line_no": 1, "item_code": "P-BUY", "quantity": 2, "unit_price": "4200.00",
                            "required_date": "2026-12-04"}]}  # fmt: skip
        handle.fail_next("lost")
        ack = c.send_purchase_order(order)
        assert ack.replayed and ack.status == "accepted" and ack.supplier_order_id.startswith("SO-SUP-1-")
        assert len(handle.created) == 1
        with pytest.raises(SupplierRejected, match="unknown_item"):
            c.send_purchase_order(order | {"po_no": "PO-2", "lines": [{"line_no": 1, "item_code": "X", "quantity": 1}]})
