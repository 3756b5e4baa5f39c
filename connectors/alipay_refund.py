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

Signing (``connectors.provider_signing``): ``sign`` is RSA2 (SHA256withRSA) with the application's private key over the
sorted parameter string; the answer's ``sign`` is checked with Alipay's public key over the exact
``alipay_trade_refund_response`` text. A bad request signature is answered ``40002 isv.invalid-signature``
(``tests/data/formats/alipay/refund-invalid-signature.json``): a configuration problem, so the refund stays pending
(same number) until the operator fixes the key, instead of failing the case.
An answer whose signature does not verify is treated as no answer (the refund is asked again with the same
``out_request_no``, so it is still made once). Without a configured private key nothing is sent.
"""

from __future__ import annotations

import json
from datetime import datetime

import requests

from connectors.provider_signing import (
    alipay_answer_signed_text,
    alipay_sign_content,
    sha256_rsa_sign,
    sha256_rsa_verify,
)
from connectors.refund_api import RefundAnswer, RefundRejected, RefundUnavailable
from yidi.money import fen_to_yuan, yuan_to_fen
from yidi.workdays import BUSINESS_TZ

TRANSIENT_SUB_CODES = {"ACQ.SYSTEM_ERROR", "isp.unknow-error", "aop.ACQ.SYSTEM_ERROR",
                       # our key or app id is wrong: pending until the configuration is fixed, then sent again
                       "isv.invalid-signature", "isv.missing-signature", "isv.invalid-app-id"}


class AlipayRefundClient:
    def __init__(self, gateway_url: str, *, app_id: str = "", private_key=None, alipay_public_key=None,
                 timeout: float = 10.0, session: requests.Session | None = None) -> None:  # fmt: skip
        """``private_key``: the application's RSA key (signs requests); ``alipay_public_key``: Alipay's (checks
        answers). Both ``cryptography`` RSA keys, loaded from the files the policy names."""
        self.url = gateway_url.rstrip("/") + ("" if gateway_url.endswith("gateway.do") else "/gateway.do")
        self.app_id, self.timeout = app_id, timeout
        self.private_key, self.alipay_public_key = private_key, alipay_public_key
        self.session = session or requests.Session()

    def refund(self, *, order_no: str, request_no: str, amount_fen: int, reason: str, now: datetime) -> RefundAnswer:
        biz = {"out_trade_no": order_no, "refund_amount": fen_to_yuan(amount_fen), "refund_reason": reason[:256],
               "out_request_no": request_no}  # fmt: skip
        form = {"app_id": self.app_id, "method": "alipay.trade.refund", "format": "JSON", "charset": "utf-8",
                "sign_type": "RSA2", "timestamp": now.astimezone(BUSINESS_TZ).strftime("%Y-%m-%d %H:%M:%S"),
                "version": "1.0", "biz_content": json.dumps(biz, ensure_ascii=False)}  # fmt: skip
        if self.private_key is None or not self.app_id:
            raise RefundUnavailable("Alipay refunds are not configured: [aftersales] alipay_app_id and "
                                    "alipay_private_key_path are needed to sign the request")  # fmt: skip
        form["sign"] = sha256_rsa_sign(alipay_sign_content(form), self.private_key)
        try:
            response = self.session.post(self.url, data=form, timeout=self.timeout)
        except requests.RequestException as exc:
            raise RefundUnavailable(f"Alipay did not answer ({type(exc).__name__})") from exc
        if response.status_code >= 500:
            raise RefundUnavailable(f"Alipay answered HTTP {response.status_code}")
        return parse_refund_answer(response.text, request_no, amount_fen, alipay_public_key=self.alipay_public_key)


def parse_refund_answer(text: str, request_no: str, amount_fen: int, *, alipay_public_key=None) -> RefundAnswer:
    """Read an ``alipay.trade.refund`` answer; ``amount_fen`` is what this request asked to refund. With
    ``alipay_public_key`` a success must carry a valid ``sign`` (an error's is checked when it has one)."""
    try:
        outer = json.loads(text)
        inner = outer["alipay_trade_refund_response"]
        code = str(inner["code"])
    except (ValueError, KeyError, TypeError):
        raise RefundUnavailable(f"Alipay answer is not an alipay_trade_refund_response: {text[:200]!r}") from None
    sign = str(outer.get("sign") or "")
    if alipay_public_key is not None and (code == "10000" or sign):
        signed = alipay_answer_signed_text(text, "alipay_trade_refund_response") or ""
        if not sha256_rsa_verify(signed, sign, alipay_public_key):
            raise RefundUnavailable("Alipay answer's sign does not verify with Alipay's public key: ignored, "
                                    "asked again with the same out_request_no")  # fmt: skip
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
