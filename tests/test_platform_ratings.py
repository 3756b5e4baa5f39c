"""The platform's buyer messages through its API (both databases, real HTTP to the TOP stand-in): buyers' ratings
(``taobao.traderates.get``, the published answer shape) land in the feedback queue against the trade's order,
classified by the policy's keywords; raw records kept, an unreadable one quarantined, re-reads stored once."""

from __future__ import annotations

import json
from pathlib import Path

from aftersales_support import add_order, build_reference, local
from sqlalchemy import select, update

from connectors.taobao import TopClient
from connectors.taobao_rates import rate_feedback_record, rate_records
from demo.standins.taobao import TaobaoStandin
from flows.aftersales import after_sales_cycle
from flows.compose import in_process
from yidi.bulk import read_frame
from yidi.schema import orders
from yidi.schema_aftersales import aftersales_inbox, feedback_items

SAMPLE = Path(__file__).parent / "data" / "formats" / "taobao" / "traderates-get.json"


def _sample() -> dict:
    return json.loads(SAMPLE.read_text(encoding="utf-8"))


def test_the_published_traderates_answer_reads_to_keyed_ratings():
    records, has_next = rate_records(_sample())
    assert has_next is False
    assert [k for k, _ in records] == ["rate:3948201774512083:3948201774512083:2026-12-06 20:15:33",
                                       "rate:3948201774512099:3948201774512100:2026-12-06 21:02:10"]
    assert rate_feedback_record(records[0][1]) == {
        "body": "杯子收到就坏了，盖子拧不紧，漏水", "contact": None, "name": "t**3",
        "subject": "淘宝差评：不锈钢保温杯 500ml", "received_at": "2026-12-06T20:15:33+08:00",
        "order_channel": "taobao", "channel_order_id": "3948201774512083"}


def test_buyer_ratings_land_once_against_their_orders(engine):
    build_reference(engine)
    add_order(engine, "YD-TB1", {"SKU-0009": 1}, delivered=local(2026, 12, 5), channel="taobao")
    with engine.begin() as conn:
        conn.execute(update(orders).where(orders.c.order_no == "YD-TB1").values(channel_order_id="3948201774512083"))
    blank = {"tid": 3948201774512555, "oid": 3948201774512555, "role": "buyer", "nick": "a**b", "result": "neutral",
             "created": "2026-12-06 22:00:00", "rated_nick": "重庆示例实业旗舰店", "content": ""}
    with TaobaoStandin(app_key="k", app_secret="s", session="sess") as top:
        for rate in [*_sample()["traderates_get_response"]["trade_rates"]["trade_rate"], blank]:
            top.add_rate(rate)
        client = TopClient(url=top.url, app_key="k", app_secret="s", session="sess", attempts=1)
        runs = [after_sales_cycle(in_process, engine=engine, now=local(2026, 12, 7, 10 + n), inbox=Path("/nonexistent"),
                                  clients={}, platform=client, actor="test")["platform_ratings"] for n in (0, 1)]
    assert runs == [{"landed": 2, "duplicates": 0, "quarantined": 1}, {"landed": 0, "duplicates": 3, "quarantined": 0}]
    with engine.connect() as conn:
        items = read_frame(conn, select(feedback_items.c.channel, feedback_items.c.subject, feedback_items.c.category,
                                        orders.c.order_no)
                           .outerjoin(orders, orders.c.id == feedback_items.c.order_id)
                           .order_by(feedback_items.c.received_at))  # fmt: skip
        inbox = read_frame(conn, select(aftersales_inbox.c.status, aftersales_inbox.c.reason)
                           .where(aftersales_inbox.c.kind == "feedback").order_by(aftersales_inbox.c.id))
    assert items.values.tolist() == [["platform", "淘宝差评：不锈钢保温杯 500ml", "complaint", "YD-TB1"],
                                     ["platform", "淘宝好评：火锅底料 400g", "praise", None]]
    assert sorted(inbox.values.tolist(), key=str) == [["landed", None], ["landed", None],
                                                      ["quarantined", "feedback without a message body"]]
