"""Shipping deadlines on the working calendar and stock sync within the channel's rate (issue 18), both databases."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest
from sqlalchemy import select

from connectors.taobao import TopClient
from connectors.woocommerce_writeback import WooWriter
from demo.standins.taobao import TaobaoStandin
from demo.standins.woocommerce import WooCommerceStandin
from tasks.channels.confirmations import ChannelWriters
from tasks.channels.deadlines import check_deadlines
from tasks.channels.stock_sync import make_pacers, sync_stock
from tests.channels_data import add_channel_order
from tests.fulfilment_data import add_stock, seed_reference
from yidi.bulk import insert_rows
from yidi.schema import order_events
from yidi.schema_channels import channel_listings
from yidi.settings import get_settings
from yidi.workdays import BUSINESS_TZ


def _local(*args) -> datetime:
    return datetime(*args, tzinfo=BUSINESS_TZ)


@pytest.fixture
def working_hours_policy(tmp_path, monkeypatch):
    policy = tmp_path / "yidi.toml"
    policy.write_text('[channels]\nworking_hours_channels = ["phone"]\nwarn_before_hours = 6.0\n'
                      'escalate_before_hours = 2.0\n[channels.ship_within_hours]\nphone = 8.0\ndefault = 72.0\n')
    monkeypatch.setenv("YIDI_CONFIG", str(policy))
    get_settings.cache_clear()


def test_a_deadline_in_working_hours_skips_the_weekend(engine, working_hours_policy):
    # Paid Friday 2026-11-27 16:00: two working hours that day, six on Monday -> due Monday 2026-11-30 15:00.
    with engine.begin() as conn:
        add_channel_order(conn, "phone", "P-9", [("A-STOCK", 1)], state="approved", paid_at=_local(2026, 11, 27, 16, 0))
    assert check_deadlines(engine, _local(2026, 11, 27, 17, 59))["orders"] == []  # wall clock would say 14 min left
    at_opening = check_deadlines(engine, _local(2026, 11, 30, 9, 0))
    assert [(o["level"], o["deadline"], o["hours_left"]) for o in at_opening["orders"]] == [
        ("warning", "2026-11-30 15:00", 6.0)]
    escalated = check_deadlines(engine, _local(2026, 11, 30, 13, 30))
    assert (escalated["escalated"], escalated["new_escalations"]) == (1, 1)
    assert check_deadlines(engine, _local(2026, 11, 30, 13, 45))["new_escalations"] == 0  # once
    missed = check_deadlines(engine, _local(2026, 11, 30, 15, 1))
    assert (missed["missed"], missed["new_missed"]) == (1, 1)
    with engine.connect() as conn:
        kinds = conn.execute(select(order_events.c.kind, order_events.c.reason).order_by(order_events.c.id)).all()
    assert [k.kind for k in kinds] == ["deadline_escalated", "deadline_missed"]
    assert "2026-11-30 15:00 (Asia/Shanghai) passed" in kinds[1].reason


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


def _per_second_peak(times: list[float]) -> int:
    return max((sum(1 for u in times if t <= u < t + 1.0) for t in times), default=0)


def test_stock_is_pushed_only_when_changed_and_never_above_the_rate(engine):
    clock = FakeClock()
    items = ["A-STOCK", "B-STOCK", "H-HEAVY", "N-NOWEIGHT"]
    with TaobaoStandin(app_key="k", app_secret="s", session="x") as top, \
            WooCommerceStandin(consumer_key="ck", consumer_secret="cs") as woo:
        top.clock, top.write_rate = clock.now, 3
        woo.clock, woo.write_rate = clock.now, 1
        for n, _code in enumerate(items[:3], start=1):
            top.add_listing(100 + n)
            woo.add_product(700 + n, _code)
        with engine.begin() as conn:
            seed_reference(conn)
            add_stock(conn, [("CQ-XY", "A-STOCK", 10), ("CQ-XY", "B-STOCK", 4), ("CQ-XY", "H-HEAVY", 2)])
            insert_rows(conn, channel_listings, pd.DataFrame(
                [{"channel": "taobao", "item_code": c, "listing_id": str(100 + n)} for n, c in enumerate(items, 1)]
                + [{"channel": "website", "item_code": c, "listing_id": str(700 + n)} for n, c in enumerate(items, 1)]))
        settings = get_settings()
        settings.channels.rate_per_second.update({"taobao": 3.0, "website": 1.0})
        settings.channels.woocommerce_batch_size = 2
        settings.channels.push_workers = 1  # one thread: the simulated clock advances only as that thread waits
        writers = ChannelWriters(TopClient(url=top.url, app_key="k", app_secret="s", session="x", attempts=1),
                                 WooWriter(woo.url, "ck", "cs"))

        pacers = make_pacers(settings, ["taobao", "website"], clock.now, clock.sleep)  # one process, many runs

        def run():
            return sync_stock(engine, writers, settings=settings, pacers=pacers)

        first = run()
        # N-NOWEIGHT is listed on both channels but unknown there: refused, reported once.
        assert (first.changed, first.pushed, first.refused, first.failed) == (8, 6, 2, 0)
        assert {i: v["num"] for i, v in top.items.items()} == {101: 10, 102: 4, 103: 2}
        assert {i: p["stock_quantity"] for i, p in woo.products.items()} == {701: 10, 702: 4, 703: 2}
        assert sorted(r["item_code"] for r in first.refusals) == ["N-NOWEIGHT", "N-NOWEIGHT"]
        assert _per_second_peak(top.write_times) <= 3 and _per_second_peak(woo.write_times) <= 1
        assert len(top.write_times) == 4 and len(woo.write_times) == 2  # 4 items; 4 products in batches of 2
        calls = len(top.write_times)
        assert run().changed == 0  # nothing changed, the refusal not retried: no request at all
        assert len(top.write_times) == calls
        with engine.begin() as conn:  # one more desk received: only its figure changes, on both channels
            add_stock(conn, [("CQ-XY", "H-HEAVY", 1)])
        third = run()
        assert (third.changed, third.pushed) == (2, 2)
        assert top.items[103]["num"] == 3 and woo.products[703]["stock_quantity"] == 3
        assert _per_second_peak(top.write_times) <= 3


def test_reserved_stock_and_safety_stock_are_held_back():
    from tasks.channels.rules import available_stock

    policy = get_settings().channels.model_copy(update={"safety_stock": 1.0, "safety_stock_items": {"B": 5.0}})
    levels = pd.DataFrame({"item_code": ["A", "A", "B", "C"], "on_hand": [10.0, 5.0, 4.0, 3.5],
                           "reserved": [3.0, 0.0, 0.0, 0.0], "damaged": [1.0, 0.0, 0.0, 0.0],
                           "quarantined": [0.0, 1.0, 0.0, 0.0]})
    assert available_stock(levels, policy).set_index("item_code")["available"].to_dict() == {"A": 9, "B": 0, "C": 2}
