"""Alipay refunds: ``alipay.trade.refund`` (统一收单交易退款接口) on the open API gateway.

Request: a form POST to the gateway (``https://openapi.alipay.com/gateway.do``) with the common parameters
(``app_id``, ``method=alipay.trade.refund``, ``format=JSON``, ``charset=utf-8``, ``sign_type=RSA2``, ``timestamp``,
``version=1.0``, ``sign``) and ``biz_content``, a JSON object: ``out_trade_no`` (our order number), ``refund_amount``
(yuan, two decimals), ``refund_reason``, ``out_request_no`` (our refund's idempotency key: Alipay refunds a trade at
most once per request number, and answers a repeated number with the first refund).

Answer: ``{"alipay_trade_refund_response": {"code": "10000", "msg": "Success", "trade_no", "out_trade_no",
"fund_change": "Y"|"N", "refund_fee": "<total refunded, yuan>", ...}, "sign": "..."}``; a failure has another
``code`` with ``sub_code``/``sub_msg`` (``ACQ.SYSTEM_ERROR`` and code 20000 are transient). Shape confirmed by
``tests/data/formats/alipay_trade_refund_response.json``.

Signing: the RSA2 signature needs the merchant's private key (``YIDI_ALIPAY_PRIVATE_KEY`` path in production); this
module sends ``sign`` empty when no key is configured, which is what the offline stand-in accepts.
"""

from __future__ import annotations

import json
from datetime import datetime

import requests

from connectors.refund_api import RefundAnswer, RefundRejected, RefundUnavailable
from yidi.money import fen_to_yuan, yuan_to_fen
from yidi.workdays import BUSINESS_TZ

TRANSIENT_SUB_CODES = {"ACQ.SYSTEM_ERROR", "isp.unknow-error", "aop.ACQ.SYSTEM_ERROR"}


class AlipayRefundClient:
    def __init__(self, gateway_url: str, *, app_id: str = "", timeout: float = 10.0,
                 session: requests.Session | None = None) -> None:  # fmt: skip
        self.url = gateway_url.rstrip("/") + ("" if gateway_url.endswith("gateway.do") else "/gateway.do")
        self.app_id, self.timeout = app_id, timeout
        self.session = session or requests.Session()

    def refund(self, *, order_no: str, request_no: str, amount_fen: int, reason: str, now: datetime) -> RefundAnswer:
        biz = {"out_trade_no": order_no, "refund_amount": fen_to_yuan(amount_fen), "refund_reason": reason[:256],
               "out_request_no": request_no}  # fmt: skip
        form = {"app_id": self.app_id, "method": "alipay.trade.refund", "format": "JSON", "charset": "utf-8",
                "sign_type": "RSA2", "timestamp": now.astimezone(BUSINESS_TZ).strftime("%Y-%m-%d %H:%M:%S"),
                "version": "1.0", "sign": "", "biz_content": json.dumps(biz, ensure_ascii=False)}  # fmt: skip
        try:
            response = self.session.post(self.url, data=form, timeout=self.timeout)
        except requests.RequestException as exc:
            raise RefundUnavailable(f"Alipay did not answer ({type(exc).__name__})") from exc
        if response.status_code >= 500:
            raise RefundUnavailable(f"Alipay answered HTTP {response.status_code}")
        return parse_refund_answer(response.text, request_no, amount_fen)


def parse_refund_answer(text: str, request_no: str, amount_fen: int) -> RefundAnswer:
    """Read an ``alipay.trade.refund`` answer; ``amount_fen`` is what this request asked to refund."""
    try:
        inner = json.loads(text)["alipay_trade_refund_response"]
        code = str(inner["code"])
    except (ValueError, KeyError, TypeError):
        raise RefundUnavailable(f"Alipay answer is not an alipay_trade_refund_response: {text[:200]!r}") from None
    if code == "10000":
        return RefundAnswer(f"{inner.get('trade_no', '')}:{request_no}", amount_fen, "succeeded", inner)
    sub = str(inner.get("sub_code", ""))
    message = f"Alipay {code} {sub}: {inner.get('sub_msg') or inner.get('msg')}"
    if code == "20000" or sub in TRANSIENT_SUB_CODES:
        raise RefundUnavailable(message)
    raise RefundRejected(message)


def refunded_total_fen(inner: dict) -> int | None:
    """``refund_fee``: the total refunded on the trade so far, in fen."""
    return yuan_to_fen(inner.get("refund_fee"), "refund_fee")
