"""The after-sales demo (`make demo`): customers of delivered orders ask for returns (inside and outside the seven
days, one for perishable goods), an exchange, a repair and an installation problem; complaints, praise and a
question arrive by email, a buyer's rating is read from the platform (TOP stand-in) and a suggestion is posted
through the website's contact form to the service inbox receiver (real HTTP over loopback); the real
`after-sales` flow decides; the first return parcel is tracked on the Kuaidi100 stand-in until it is signed for
at the return warehouse, then inspected; the warehouse receives the other returned goods (one damaged); refunds
go to the Alipay/WeChat Pay stand-ins once; customers answer the surveys by SMS, pushed by the Aliyun 上行 stand-in
to the receiver (pushed twice: stored once); and the provider's refund bill reconciles in settlement against the
cases (no refund-without-return discrepancy).

Time: the stage starts on the clock and then moves on a simulated clock (as the tracking demo does) to an hour
after the tracked parcel arrives, so the cycle after it is not refused as asked too soon.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
from prefect import flow
from sqlalchemy import select

from connectors.taobao import TopClient
from demo.standins import carrier_shipping, kuaidi100
from demo.standins.parcel_routes import SimClock
from demo.standins.payment_files import write_alipay_bill, write_wechatpay_bill
from demo.standins.refunds import RefundStandIn
from demo.standins.service_senders import push_sms_replies, sms_up_message, submit_contact_form
from demo.standins.taobao import TaobaoStandin
from flows.aftersales import after_sales, inbox_dir, platform_ratings_task
from flows.service_inbound import inbound_receiver
from flows.settlement import reconcile_settlements
from tasks.aftersales.returns import receive_returns
from tasks.fulfilment.returns import restock_returns
from tasks.settlement.files import inbox_dir as settlement_inbox
from yidi import schema
from yidi.bulk import read_frame, utc_now
from yidi.db import get_engine
from yidi.schema_aftersales import aftersales_cases, refund_requests, surveys
from yidi.settings import get_settings, reload_settings, yidi_home
from yidi.workdays import BUSINESS_TZ

SCRIPT = [  # (request type, days after receipt, quality problem, what the customer wrote, which goods)
    ("退货", 3, False, "尺寸不合适，七天无理由退货", "plain"),
    ("退货", 4, False, "不想要了", "plain"),
    ("退货", 12, False, "不想要了", "plain"),
    ("退货", 2, False, "口味不喜欢", "perishable"),
    ("退货", 20, True, "使用两周后无法启动", "plain"),
    ("换货", 2, True, "外壳有裂纹，要求换货", "plain"),
    ("维修", 40, False, "保修期内异响，申请维修", "plain"),
    ("安装问题", 1, False, "安装后设备无法调试", "any"),
]
MAILS = [
    ("投诉：送货太慢", "订单 {order_no} 等了十天才到，包装还破损了，很不满意。"),
    ("表扬安装师傅", "王师傅安装很专业，谢谢！订单 {order_no}"),
    ("咨询发票", "请问订单 {order_no} 的发票什么时候开？"),
]


def _write(path: Path, payload) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, ensure_ascii=False, indent=1, default=str), encoding="utf-8")


def _mail(order_no: str, n: int, subject: str, body: str, sender: str) -> bytes:
    from email.message import EmailMessage
    from email.utils import format_datetime

    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, "service@example.com", subject
    message["Message-ID"] = f"<demo-feedback-{n}-{order_no}@example.com>"
    message["Date"] = format_datetime(utc_now())
    message.set_content(body.format(order_no=order_no))
    return message.as_bytes()


def write_demo_requests(inbox: Path, delivered: pd.DataFrame, perishable: set[str]) -> int:
    """Requests and feedback for delivered orders, as the channels would drop them. ``delivered``: one row per
    goods line (order_no, customer_email, delivered_at, item_code, customer_kind: the no-reason returns are
    consumers'); ``perishable``: item codes of that kind."""
    orders = delivered.drop_duplicates("order_no")
    used: set[str] = set()
    requests = []
    for kind, days, quality, text, goods in SCRIPT:
        is_perishable = delivered["item_code"].isin(perishable)
        pool = delivered[~delivered["order_no"].isin(used)]
        pool = pool[~is_perishable[pool.index]] if goods == "plain" else (
            pool[is_perishable[pool.index]] if goods == "perishable" else pool)  # fmt: skip
        if kind == "退货" and not quality and "customer_kind" in pool:  # the no-reason right is consumers' (§25)
            pool = pool[pool["customer_kind"].fillna("consumer") == "consumer"]
        if pool.empty:
            continue
        line = pool.iloc[0]
        used.add(line["order_no"])
        asked = pd.Timestamp(line["delivered_at"]).tz_convert(BUSINESS_TZ) + timedelta(days=days)
        requests.append({"source_id": f"demo-{line['order_no']}", "order_no": line["order_no"], "kind": kind,
                         "items": [] if goods == "any" else [{"item_code": line["item_code"]}],
                         "quality_problem": quality, "description": text, "requested_at": asked.isoformat()})
    _write(inbox / "requests" / "form" / "demo-requests.json", requests)
    _write(inbox / "requests" / "form" / "unreadable.json", [{"order_no": "YD-UNKNOWN", "kind": "退货"}])
    rest = orders[~orders["order_no"].isin(used)].to_dict("records") or orders.to_dict("records")
    for n, ((subject, body), order) in enumerate(zip(MAILS, rest, strict=False)):
        path = inbox / "feedback" / "email" / f"mail-{n}.eml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_mail(order["order_no"], n, subject, body, order["customer_email"] or "buyer@example.com"))
    return len(requests)


@flow(name="aftersales-demo", log_prints=True)
def aftersales_demo() -> dict:
    o, s, ol = schema.orders.c, schema.shipments.c, schema.order_lines.c
    engine = get_engine()
    with engine.connect() as conn:
        first = select(o.id).where(o.state.in_(["delivered", "settled"])).order_by(o.id).limit(300)
        delivered = read_frame(conn, select(o.order_no, o.customer_email, s.delivered_at, ol.item_code,
                                            schema.customers.c.kind.label("customer_kind"))
                               .join(schema.shipments, s.order_id == o.id)
                               .join(schema.order_lines, ol.order_id == o.id)
                               .outerjoin(schema.customers, schema.customers.c.id == o.customer_id)
                               .where(o.id.in_(first), s.delivered_at.is_not(None), ol.item_kind != "service")
                               .order_by(o.id, ol.line_no))  # fmt: skip
    if delivered.empty:
        print("no delivered orders: nothing to return")
        return {}
    inbox = inbox_dir()
    policy_now = get_settings().aftersales
    perishable = {code for cat in policy_now.statutory_exceptions.get("fresh_perishable", [])
                  for code in policy_now.categories.get(cat, [])}  # fmt: skip
    made = write_demo_requests(inbox, delivered.drop_duplicates(["order_no", "item_code"]).reset_index(drop=True),
                               perishable)  # fmt: skip
    print(f"stand-ins dropped {made} after-sales requests and some feedback into {inbox}")
    result: dict = {}
    start = utc_now().replace(microsecond=0)
    carrier = carrier_shipping.start()
    with RefundStandIn() as provider, _return_tracker(start) as tracker:
        _point_policy_at(provider)
        result["platform_rating"] = _platform_rating(engine, start)
        result["first"] = after_sales(now=start, carrier_api_url=carrier.url, tracking_query_url=tracker.query_url)
        later = _hand_over_first_return(engine, tracker)  # the customer sends it; it is signed for at the warehouse
        result["second"] = after_sales(now=later, carrier_api_url=carrier.url, tracking_query_url=tracker.query_url)
        result["received"] = _warehouse_receives(engine, later)
        result["third"] = after_sales(now=later + timedelta(minutes=5), carrier_api_url=carrier.url,
                                      tracking_query_url=tracker.query_url)  # fmt: skip
        result["refunds_made"] = len(provider.refunds)
    carrier.stop()
    result["inbound"] = _customers_answer(engine, later + timedelta(minutes=30))
    result["settlement"] = _refund_bill_reconciles(engine)
    return result


def _point_policy_at(provider: RefundStandIn) -> None:
    """The demo's policy file sends refunds to the Alipay/WeChat Pay stand-in, signed with test-only keys."""
    policy = Path(os.environ.get("YIDI_CONFIG", "")) if os.environ.get("YIDI_CONFIG") else None
    if policy and policy.is_file():
        keys = provider.keys.write(yidi_home() / "demo-keys")  # test-only keys: the stand-in checks signatures
        policy.write_text(policy.read_text(encoding="utf-8") + f'\n[aftersales]\nalipay_url = "{provider.url}"\n'
                          f'wechatpay_url = "{provider.url}"\n'
                          + "".join(f'{k} = "{v}"\n' for k, v in keys.items()), encoding="utf-8")  # fmt: skip
        reload_settings()


@contextmanager
def _return_tracker(start: datetime) -> Iterator:
    """The Kuaidi100 stand-in on a simulated clock, with the demo's account (what the tracking demo uses)."""
    policy = get_settings().tracking
    for env, value in ((policy.customer_env, "demo-customer"), (policy.key_env, "demo-key"),
                       (policy.salt_env, "demo-salt")):  # fmt: skip
        os.environ.setdefault(env, value)
    with kuaidi100.start(customer=os.environ[policy.customer_env], key=os.environ[policy.key_env],
                         clock=SimClock(start)) as tracker:  # fmt: skip
        yield tracker


def _hand_over_first_return(engine, tracker) -> datetime:
    """The first return waybill's parcel travels to the return warehouse on the stand-in; returns an hour after it
    was signed for there (when the next cycle asks)."""
    warehouse_code = get_settings().aftersales.return_warehouse
    warehouse = next(w for w in get_settings().fulfilment.warehouses if w.code == warehouse_code)
    with engine.connect() as conn:
        case = read_frame(conn, select(aftersales_cases.c.return_carrier, aftersales_cases.c.return_waybill_no,
                                       schema.orders.c.customer_phone)
                          .join(schema.orders, schema.orders.c.id == aftersales_cases.c.order_id)
                          .where(aftersales_cases.c.return_waybill_no.is_not(None))
                          .order_by(aftersales_cases.c.id).limit(1))  # fmt: skip
    clock = tracker.clock
    if case.empty:
        return clock.now() + timedelta(hours=1)
    row = case.iloc[0]
    parcel = tracker.register(row["return_carrier"], row["return_waybill_no"], shipped_at=clock.now(),
                              phone=row["customer_phone"], city=warehouse.city, district=warehouse.district)
    clock.set(parcel.route[-1].at + timedelta(hours=1))
    print(f"return parcel {row['return_waybill_no']} handed over, signed for {parcel.route[-1].at:%m-%d %H:%M} UTC")
    return clock.now()


def _warehouse_receives(engine, now: datetime) -> dict:
    """The warehouse inspects what came back: the tracked parcel that arrived, and the others handed in at the
    counter; the second is damaged."""
    with engine.begin() as conn:
        waiting = read_frame(conn, select(aftersales_cases.c.case_no).where(
            aftersales_cases.c.status.in_(["awaiting_return", "return_arrived"])).order_by(aftersales_cases.c.id)
                             )["case_no"].tolist()  # fmt: skip
        if not waiting:
            return {}
        receipts = pd.DataFrame({"case_no": waiting, "inspection": ["damaged" if i == 1 else "good"
                                                                   for i in range(len(waiting))],
                                 "reason": ["外壳碎裂" if i == 1 else None for i in range(len(waiting))]})  # fmt: skip
        received = receive_returns(conn, receipts, get_settings(), now)
        restock_returns(conn, now)
    return received


RATING = {"oid": 0, "role": "buyer", "nick": "z**8", "result": "good", "rated_nick": "重庆示例实业旗舰店",
          "content": "质量很好，安装师傅也专业，好评！"}  # fmt: skip


def _platform_rating(engine, now: datetime) -> dict:
    """A buyer's rating of a platform order, read from the TOP stand-in (``taobao.traderates.get``) by the
    after-sales step that reads ratings."""
    with engine.connect() as conn:
        tid = conn.execute(select(schema.orders.c.channel_order_id).where(schema.orders.c.channel == "taobao")
                           .order_by(schema.orders.c.id).limit(1)).scalar()  # fmt: skip
    tid = int(tid) if tid and str(tid).isdigit() else 3948201774512083
    created = (now - timedelta(hours=2)).astimezone(BUSINESS_TZ).strftime("%Y-%m-%d %H:%M:%S")
    with TaobaoStandin(app_key="demo-app", app_secret="demo-secret", session="demo-session") as top:
        top.add_rate({**RATING, "tid": tid, "oid": tid, "created": created})
        client = TopClient(url=top.url, app_key="demo-app", app_secret="demo-secret", session="demo-session")
        return platform_ratings_task(engine, client, now)


def _customers_answer(engine, now: datetime) -> dict:
    """Customers answer their SMS surveys (Aliyun pushes the replies, and pushes the batch again as if our first
    answer were lost: stored once) and a visitor posts the website's contact form, both to the service inbox
    receiver (``yidi feedback receive``) over loopback."""
    with engine.connect() as conn:
        sent = read_frame(conn, select(surveys.c.code, surveys.c.recipient).where(surveys.c.medium == "sms")
                          .order_by(surveys.c.id).limit(3))  # fmt: skip
    replies = [sms_up_message(phone, f"{code} {score} {text}", now)
               for (code, phone), (score, text) in zip(zip(sent["code"], sent["recipient"], strict=True),
                                                       SURVEY_ANSWERS, strict=False)]  # fmt: skip
    with inbound_receiver(engine, host="127.0.0.1", port=0, clock=lambda: now) as receiver:
        pushes = [push_sms_replies(receiver.url, replies) for _ in range(2)] if replies else []
        form = submit_contact_form(receiver.url, 7, {"your-name": "李女士", "your-email": "li@example.com",
                                                     "your-subject": "网站建议",
                                                     "your-message": "建议网站增加物流查询入口"})  # fmt: skip
        counts = dict(receiver.counts)
    return {"sms_pushes": [answer for _, answer in pushes], "contact_form": form[1].get("status"), "counts": counts}


SURVEY_ANSWERS = [(5, "送货快，满意"), (4, "还不错"), (2, "安装等了好几天")]


def _refund_bill_reconciles(engine) -> dict:
    """The providers' bills now show the refunds: settlement matches them to their cases."""
    with engine.connect() as conn:
        done = read_frame(conn, select(refund_requests.c.route, refund_requests.c.amount_fen, refund_requests.c.sent_at,
                                       schema.orders.c.order_no).join(schema.orders, schema.orders.c.id ==
                                                                      refund_requests.c.order_id)
                          .where(refund_requests.c.status == "succeeded"))  # fmt: skip
    files = []
    for route, writer in (("alipay", write_alipay_bill), ("wechatpay", write_wechatpay_bill)):
        part = done[done["route"] == route]
        if len(part):
            lines = pd.DataFrame({"merchant_order_no": part["order_no"], "kind": "refund",
                                  "amount_fen": -part["amount_fen"].astype("int64"), "txn_time": part["sent_at"]})
            name = f"{route}-aftersales-refunds.{'zip' if route == 'alipay' else 'csv'}"
            files.append(writer(lines, settlement_inbox() / route / name))
    if not files:
        return {"refund_files": 0}
    days = pd.to_datetime(done["sent_at"], utc=True).dt.tz_convert(BUSINESS_TZ).dt.date
    period = f"{days.min()}..{days.max()}"
    return {"refund_files": len(files), "reconciliation": reconcile_settlements(period=period)["report"]}
