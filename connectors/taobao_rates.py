"""The platform's buyer messages: TOP ``taobao.traderates.get`` (搜索评价信息) with ``rate_type=get``,
``role=buyer`` — what buyers wrote about their trades (good, neutral or bad, with their words), read into the
feedback queue. Shape confirmed by ``tests/data/formats/taobao/traderates-get.json`` (fields of ``TradeRate`` as
``bububa/opentaobao`` ``model/traderate/TradeRate.go`` lists them: tid, oid, role, nick, result, created,
rated_nick, item_title, item_price, content, reply, num_iid, valid_score).

A rating's identity is its trade, sub-order and time (``rate:<tid>:<oid>:<created>``): read again by the next
window, it is the same message; a follow-up review (追评) has another time and is a new one. The trade (``tid``) is
our ``channel_order_id`` on channel ``taobao``. Pages are read with ``use_has_next`` (TOP: at most 150 a page).
"""

from __future__ import annotations

from datetime import datetime

from yidi.workdays import BUSINESS_TZ

METHOD = "taobao.traderates.get"
FIELDS = "tid,oid,role,nick,result,created,rated_nick,item_title,item_price,content,reply,num_iid,valid_score"
RESULT_TEXT = {"good": "好评", "neutral": "中评", "bad": "差评"}


def rate_records(answer: dict) -> tuple[list[tuple[str | None, object]], bool]:
    """(source key, raw rating) per rating in a ``traderates_get_response`` (or its inner object), and has_next.
    A rating without a trade or words is handed on as is, to be quarantined with its reason."""
    body = answer.get("traderates_get_response", answer) if isinstance(answer, dict) else {}
    rates = (body.get("trade_rates") or {}).get("trade_rate") or []
    if isinstance(rates, dict):
        rates = [rates]
    out: list[tuple[str | None, object]] = []
    for rate in rates:
        if isinstance(rate, dict) and rate.get("tid") and rate.get("created"):
            out.append((f"rate:{rate['tid']}:{rate.get('oid') or rate['tid']}:{rate['created']}", rate))
        else:
            out.append((None, rate))
    return out, bool(body.get("has_next"))


def is_rate(record: dict) -> bool:
    return "rated_nick" in record or ("tid" in record and "result" in record and "content" in record)


def rate_feedback_record(rate: dict) -> dict:
    """A rating as a feedback record: the buyer's words, a subject naming the verdict and the item, the trade."""
    created = str(rate.get("created") or "").strip()
    verdict = RESULT_TEXT.get(str(rate.get("result") or ""), str(rate.get("result") or ""))
    return {"body": str(rate.get("content") or "").strip(), "contact": None, "name": rate.get("nick"),
            "subject": f"淘宝{verdict}：{rate.get('item_title') or ''}".strip("："),
            "received_at": f"{created.replace(' ', 'T')}+08:00" if created else None,
            "order_channel": "taobao", "channel_order_id": str(rate["tid"]) if rate.get("tid") else None}


def fetch_rates(client, start: datetime, end: datetime, *, page_size: int = 150, max_pages: int = 200
                ) -> list[tuple[str | None, object]]:  # fmt: skip
    """Every buyer rating created in [start, end] (Beijing time on the wire), page by page."""
    fmt = "%Y-%m-%d %H:%M:%S"
    records: list[tuple[str | None, object]] = []
    for page_no in range(1, max_pages + 1):
        answer = client.call(METHOD, fields=FIELDS, rate_type="get", role="buyer", page_no=page_no,
                             page_size=page_size, use_has_next="true",
                             start_date=start.astimezone(BUSINESS_TZ).strftime(fmt),
                             end_date=end.astimezone(BUSINESS_TZ).strftime(fmt))  # fmt: skip
        page, has_next = rate_records(answer)
        records.extend(page)
        if not has_next:
            break
    return records
