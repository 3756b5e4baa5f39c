"""The intake part of ``make demo``: every channel's stand-in, demo orders and bad records, through real intake."""

from __future__ import annotations

from intake_support import frame

from connectors.registry import ORDER_CHANNELS
from demo.intake import intake_standins
from flows.compose import in_process
from flows.intake import order_intake


def test_demo_stand_ins_feed_every_channel_and_bad_records_end_in_quarantine(sqlite_engine, tmp_path):
    with intake_standins(60, tmp_path / "home") as options:
        summaries = order_intake(in_process, channels=list(ORDER_CHANNELS), options=options, engine=sqlite_engine)
    # The demo splits its orders 40% / 25% / 15% / 20% over the channels (demo.intake._split); Taobao also has the
    # SQL-looking trade, the spreadsheet drop loses the fax order with quantity "两箱" to quarantine.
    assert {k: s["new"] for k, s in summaries.items()} == {"taobao": 24 + 1, "woocommerce": 15, "email": 9,
                                                          "spreadsheet": 12 - 1}, summaries  # fmt: skip
    # 60 demo orders, + the SQL-looking trade (an order, stored verbatim), - the fax order with quantity "两箱"
    assert sum(s["new"] for s in summaries.values()) == 60 + 1 - 1
    quarantined = frame(sqlite_engine, "SELECT channel, count(*) n FROM intake_records WHERE status = 'quarantined' "
                                       "GROUP BY 1").set_index("channel")["n"].to_dict()
    assert quarantined == {"taobao": 2, "woocommerce": 1, "email": 2, "spreadsheet": 3}
    regions = set(frame(sqlite_engine, "SELECT DISTINCT region FROM orders")["region"])
    assert regions == {"remote", "local", "unknown"}
    channels = set(frame(sqlite_engine, "SELECT DISTINCT channel FROM orders")["channel"])
    assert channels == {"taobao", "website", "email", "phone", "fax"}
