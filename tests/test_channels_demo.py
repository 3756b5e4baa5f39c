"""The channels stage of ``make demo`` (issue 18) on a small store: confirmations once, a lost answer recovered,
stock pushed once."""

from __future__ import annotations

from demo.channels import channels_demo
from tests.channels_data import add_channel_order, add_parcel, top_trade
from tests.fulfilment_data import add_stock, seed_reference
from yidi.db import get_engine, init_db


def test_channels_demo_confirms_each_parcel_once_and_pushes_stock(prefect_server):
    init_db()
    engine = get_engine()
    tids = [3_900_000_000_000_000_501, 3_900_000_000_000_000_502]
    with engine.begin() as conn:
        seed_reference(conn)
        add_stock(conn, [("CQ-XY", "A-STOCK", 5), ("CQ-XY", "B-STOCK", 2)])
        for tid in tids:
            order = add_channel_order(conn, "taobao", str(tid), [("A-STOCK", 1)], raw=top_trade(tid, [tid * 10 + 1]))
            add_parcel(conn, order, [1], waybill_no=f"ZT{tid % 1000}")
        website = add_channel_order(conn, "website", "5001", [("A-STOCK", 1)],
                                    raw={"id": 5001, "status": "processing"})
        add_parcel(conn, website, [1], carrier="shunfeng", waybill_no="SF5001")
        phone = add_channel_order(conn, "phone", "P-1", [("A-STOCK", 1)])
        add_parcel(conn, phone, [1], carrier="ems", waybill_no="EMS5001")
        # a second phone order of the same customer travelling in the same parcel (merged by fulfilment)
        second = add_channel_order(conn, "phone", "P-2", [("B-STOCK", 1)])
        add_parcel(conn, second, [1], carrier="ems", waybill_no="EMS5001")
    result = channels_demo()
    assert (result["confirmed"], result["already_shipped"], result["customers_told"], result["still_pending"]) == \
        (2, 1, 2, 0)  # two trades + the website order; the lost answer's trade is "already shipped"; both phone
    # orders' customers told, each of its own order, and the one parcel carrying both counted as merged
    assert result["merged_parcels_confirmed"] == 1
    assert (result["platform_confirmations"], result["website_notes"]) == (2, 1)
    assert (result["stock_pushed"], result["stock_pushed_again"]) == (4, 0)  # 2 items on 2 channels, then nothing
