"""WeChat Pay refunds: API v3 申请退款, ``POST /v3/refund/domestic/refunds``.

Request (JSON): ``out_trade_no`` (our order number), ``out_refund_no`` (our refund's idempotency key: the same
number is refunded once, however often it is sent), ``reason``, ``amount``: ``{"refund": fen, "total": fen,
"currency": "CNY"}``. Answer (JSON): ``refund_id``, ``out_refund_no``, ``status`` (SUCCESS | PROCESSING | ABNORMAL |
CLOSED), ``amount.refund`` in fen…; errors are HTTP 4xx/5xx with ``{"code", "message"}`` (``SYSTEM_ERROR`` and 5xx
are transient). Shape confirmed by ``tests/data/formats/wechatpay_v3_refund_response.json``.

Signing: production requests carry ``Authorization: WECHATPAY2-SHA256-RSA2048 …`` made with the merchant key; this
module sends a bearer token from the caller when given one (the offline stand-in checks that), and no signature.
"""

from __future__ import annotations

import json

import requests

from connectors.refund_api import RefundAnswer, RefundRejected, RefundUnavailable

PATH = "/v3/refund/domestic/refunds"


class WechatPayRefundClient:
    def __init__(self, base_url: str, *, token: str | None = None, timeout: float = 10.0,
                 session: requests.Session | None = None) -> None:  # fmt: skip
        self.url = base_url.rstrip("/") + PATH
        self.token, self.timeout = token, timeout
        self.session = session or requests.Session()

    def refund(self, *, order_no: str, request_no: str, amount_fen: int, total_fen: int, reason: str) -> RefundAnswer:
        body = {"out_trade_no": order_no, "out_refund_no": request_no, "reason": reason[:80],
                "amount": {"refund": int(amount_fen), "total": int(total_fen), "currency": "CNY"}}  # fmt: skip
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            response = self.session.post(self.url, json=body, headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            raise RefundUnavailable(f"WeChat Pay did not answer ({type(exc).__name__})") from exc
        return parse_refund_answer(response.status_code, response.text)


def parse_refund_answer(status: int, text: str) -> RefundAnswer:
    try:
        body = json.loads(text)
    except ValueError:
        raise RefundUnavailable(f"WeChat Pay HTTP {status} with a body that is not JSON") from None
    if status >= 500 or (status >= 400 and body.get("code") in ("SYSTEM_ERROR", "FREQUENCY_LIMITED")):
        raise RefundUnavailable(f"WeChat Pay HTTP {status} {body.get('code')}: {body.get('message')}")
    if status >= 400:
        raise RefundRejected(f"WeChat Pay HTTP {status} {body.get('code')}: {body.get('message')}")
    try:
        state, refund_id, fen = body["status"], body["refund_id"], int(body["amount"]["refund"])
    except (KeyError, TypeError, ValueError):
        raise RefundUnavailable(f"WeChat Pay answer lacks status/refund_id/amount: {text[:200]!r}") from None
    if state in ("ABNORMAL", "CLOSED"):
        raise RefundRejected(f"WeChat Pay refund {refund_id} is {state}")
    return RefundAnswer(refund_id, fen, "succeeded" if state == "SUCCESS" else "processing", body)
