"""The website's refunds (WooCommerce REST v3 ``orders/<id>/refunds``) become after-sales requests over real
loopback HTTP: the published sample parses to exact requests, each refund lands once with its raw record, an
unreadable refund is quarantined, a re-read adds nothing, and an order whose answer fails does not stop others."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from aftersales_support import add_order, build_reference, local
from sqlalchemy import select, update

from connectors.woocommerce_refunds import WooRefundsClient, refund_requests
from demo.standins.woocommerce import WooCommerceStandin
from tasks.aftersales.web_refunds import website_refunds
from yidi.bulk import read_frame
from yidi.schema import orders
from yidi.schema_aftersales import aftersales_case_lines, aftersales_cases, aftersales_inbox
from yidi.settings import get_settings

SAMPLE = Path(__file__).parent / "data" / "formats" / "woocommerce" / "order-refunds.json"
KEYS = {"consumer_key": "ck_test", "consumer_secret": "cs_test"}


def test_the_published_refund_list_maps_to_requests():
    records = refund_requests(723, json.loads(SAMPLE.read_text(encoding="utf-8")))
    assert [key for key, _ in records] == ["refund:726", "refund:724"]
    returned, amount_only = (r for _, r in records)
    assert returned["kind"] == "return" and returned["items"] == [{"item_code": "SKU-0009", "quantity": 1.0}]
    assert returned["quality_problem"] is True  # 破损
    assert returned["requested_at"] == "2026-12-05T02:07:11+00:00"  # date_created_gmt is UTC
    assert (returned["order_channel"], returned["channel_order_id"]) == ("website", "723")
    assert amount_only["kind"] == "refund_only" and amount_only["items"] == []
    assert refund_requests(723, {"code": "oops"}) == [("order:723:unreadable", {"code": "oops"})]


def test_website_refunds_land_once_over_http_and_bad_ones_are_quarantined(engine):
    build_reference(engine)
    ids = {no: add_order(engine, no, {"SKU-0009": 1}, channel="website", delivered=local(2026, 12, 2))
           for no in ("YD-W1", "YD-W2", "YD-W3")}  # fmt: skip
    with engine.begin() as conn:
        for n, oid in enumerate(ids.values()):
            conn.execute(update(orders).where(orders.c.id == oid).values(channel_order_id=str(5000 + n)))
    with WooCommerceStandin(**KEYS) as shop:
        for n in range(3):
            shop.add_order({"id": 5000 + n, "status": "completed"})
        shop.refund(5000, 7900, "杯盖破损", items=[("SKU-0009", 1, 7900)], at=datetime(2026, 12, 5, 2, tzinfo=UTC))
        shop.refund(5001, 1000, "运费补偿", at=datetime(2026, 12, 5, 3, tzinfo=UTC))
        shop.order_refunds[5002] = [{"amount": "1.00"}]  # no id: cannot be a request, kept and quarantined
        del shop.orders[5001]  # the shop answers 404 for this one this time
        with WooRefundsClient(shop.url, KEYS["consumer_key"], KEYS["consumer_secret"]) as client:
            first = website_refunds(engine, client, get_settings(), local(2026, 12, 5, 12), actor="test")
            shop.add_order({"id": 5001, "status": "completed"})  # back: its refund is read next cycle
            second = website_refunds(engine, client, get_settings(), local(2026, 12, 5, 13), actor="test")
            third = website_refunds(engine, client, get_settings(), local(2026, 12, 5, 14), actor="test")
    assert first == {"landed": 1, "duplicates": 0, "quarantined": 1, "orders_asked": 3, "failed": 1}
    assert second == {"landed": 1, "duplicates": 2, "quarantined": 0, "orders_asked": 3, "failed": 0}
    assert third == {"landed": 0, "duplicates": 3, "quarantined": 0, "orders_asked": 3, "failed": 0}
    with engine.connect() as conn:
        cases = read_frame(conn, select(aftersales_cases.c.order_id, aftersales_cases.c.kind,
                                        aftersales_cases.c.quality_problem).order_by(aftersales_cases.c.id))
        lines = read_frame(conn, select(aftersales_case_lines.c.item_code))
        inbox = read_frame(conn, select(aftersales_inbox.c.status, aftersales_inbox.c.reason,
                                        aftersales_inbox.c.content).order_by(aftersales_inbox.c.id))
    assert cases.to_dict("records") == [
        {"order_id": ids["YD-W1"], "kind": "return", "quality_problem": 1},
        {"order_id": ids["YD-W2"], "kind": "refund_only", "quality_problem": 0}]
    assert set(lines["item_code"]) == {"SKU-0009"}
    assert list(inbox["status"]) == ["landed", "quarantined", "landed"]
    assert '"date_created_gmt": "2026-12-05T02:00:00"' in inbox["content"][0]  # the shop's refund kept as sent
