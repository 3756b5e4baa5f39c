"""The after-sales demo (`make demo`): customers of delivered orders ask for returns (inside and outside the seven
days, one for perishable goods), an exchange, a repair and an installation problem; complaints, praise and a
question arrive by email and the website form; the real `after-sales` flow decides, the warehouse receives the
returned goods (one damaged), refunds go to the Alipay/WeChat Pay stand-ins once, customers reply to the surveys,
and the provider's refund bill reconciles in settlement against the cases (no refund-without-return discrepancy).
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import pandas as pd
from prefect import flow
from sqlalchemy import select

from demo.standins import carrier_shipping
from demo.standins.payment_files import write_alipay_bill, write_wechatpay_bill
from demo.standins.refunds import RefundStandIn
from flows.aftersales import after_sales, inbox_dir
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
    goods line (order_no, customer_email, delivered_at, item_code); ``perishable``: item codes of that kind."""
    orders = delivered.drop_duplicates("order_no")
    used: set[str] = set()
    requests = []
    for kind, days, quality, text, goods in SCRIPT:
        is_perishable = delivered["item_code"].isin(perishable)
        pool = delivered[~delivered["order_no"].isin(used)]
        pool = pool[~is_perishable[pool.index]] if goods == "plain" else (
            pool[is_perishable[pool.index]] if goods == "perishable" else pool)  # fmt: skip
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
    _write(inbox / "feedback" / "website" / "contact-form.json",
           [{"source_id": "web-1", "contact": "13900001111", "body": "建议网站增加物流查询入口"}])  # fmt: skip
    return len(requests)


@flow(name="aftersales-demo", log_prints=True)
def aftersales_demo() -> dict:
    o, s, ol = schema.orders.c, schema.shipments.c, schema.order_lines.c
    engine = get_engine()
    with engine.connect() as conn:
        first = select(o.id).where(o.state.in_(["delivered", "settled"])).order_by(o.id).limit(60)
        delivered = read_frame(conn, select(o.order_no, o.customer_email, s.delivered_at, ol.item_code)
                               .join(schema.shipments, s.order_id == o.id)
                               .join(schema.order_lines, ol.order_id == o.id)
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
    carrier = carrier_shipping.start()
    with RefundStandIn() as provider:
        policy = Path(os.environ.get("YIDI_CONFIG", "")) if os.environ.get("YIDI_CONFIG") else None
        if policy and policy.is_file():
            keys = provider.keys.write(yidi_home() / "demo-keys")  # test-only keys: the stand-in checks signatures
            policy.write_text(policy.read_text(encoding="utf-8") + f'\n[aftersales]\nalipay_url = "{provider.url}"\n'
                              f'wechatpay_url = "{provider.url}"\n'
                              + "".join(f'{k} = "{v}"\n' for k, v in keys.items()), encoding="utf-8")  # fmt: skip
            reload_settings()
        result["first"] = after_sales(carrier_api_url=carrier.url)
        with engine.begin() as conn:  # the warehouse receives what came back: one damaged
            waiting = read_frame(conn, select(aftersales_cases.c.case_no).where(
                aftersales_cases.c.status.in_(["awaiting_return", "return_arrived"])).order_by(aftersales_cases.c.id)
                                 )["case_no"].tolist()  # fmt: skip
            receipts = pd.DataFrame({"case_no": waiting, "inspection": ["damaged" if i == 1 else "good"
                                                                       for i in range(len(waiting))],
                                     "reason": ["外壳碎裂" if i == 1 else None for i in range(len(waiting))]})  # fmt: skip
            if waiting:
                result["received"] = receive_returns(conn, receipts, get_settings(), utc_now())
                restock_returns(conn, utc_now())
        result["second"] = after_sales(carrier_api_url=carrier.url)
        result["refunds_made"] = len(provider.refunds)
    with engine.begin() as conn:  # customers answer the surveys
        sent = read_frame(conn, select(surveys.c.code, surveys.c.recipient).limit(5))
    replies = [{"message_id": f"demo-reply-{c}", "from": r, "text": f"{c} {5 - i % 3} 服务不错"}
               for i, (c, r) in enumerate(zip(sent["code"], sent["recipient"], strict=True))]  # fmt: skip
    _write(inbox / "replies" / "sms" / "replies.json", replies)
    result["third"] = after_sales(carrier_api_url=carrier.url)
    carrier.stop()
    result["settlement"] = _refund_bill_reconciles(engine)
    return result


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
