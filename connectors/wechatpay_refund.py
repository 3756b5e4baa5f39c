"""WeChat Pay refunds: API v3 申请退款, ``POST /v3/refund/domestic/refunds``.

Request (JSON): ``out_trade_no`` (our order number), ``out_refund_no`` (our refund's idempotency key: the same
number is refunded once, however often it is sent), ``reason``, ``amount``: ``{"refund": fen, "total": fen,
"currency": "CNY"}``. Answer (JSON): ``refund_id``, ``out_refund_no``, ``status`` (SUCCESS | PROCESSING | ABNORMAL |
CLOSED), ``amount.refund`` in fen…; errors are HTTP 4xx/5xx with ``{"code", "message"}`` (``SYSTEM_ERROR`` and 5xx
are transient). Shape confirmed by ``tests/data/formats/wechatpay_v3_refund_response.json``.

Signing (``connectors.provider_signing``): every request carries ``Authorization: WECHATPAY2-SHA256-RSA2048
mchid="…",nonce_str="…",signature="…",timestamp="…",serial_no="…"``, the merchant key's SHA256withRSA over
``POST\n/v3/refund/domestic/refunds\nTIMESTAMP\nNONCE\nBODY\n`` (BODY the exact bytes sent). A refused signature is
HTTP 401 ``{"code": "SIGN_ERROR", …}`` (``tests/data/formats/wechatpay/refund-sign-error.json``): a configuration
problem, left pending (same ``out_refund_no``) until fixed. Answers are checked with the platform public key
(``Wechatpay-Timestamp``/``-Nonce``/``-Signature`` over ``TIMESTAMP\nNONCE\nBODY\n``); one that does not verify is
treated as no answer. Without a configured merchant key nothing is sent.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable

import requests

from connectors.provider_signing import (
    sha256_rsa_sign,
    sha256_rsa_verify,
    wechatpay_answer_message,
    wechatpay_authorization,
    wechatpay_request_message,
)
from connectors.refund_api import RefundAnswer, RefundRejected, RefundUnavailable

PATH = "/v3/refund/domestic/refunds"


class WechatPayRefundClient:
    def __init__(self, base_url: str, *, mchid: str = "", serial_no: str = "", private_key=None,
                 platform_public_key=None, timeout: float = 10.0, session: requests.Session | None = None,
                 clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        """``private_key``: the merchant API key (signs requests, ``serial_no`` names its certificate);
        ``platform_public_key``: WeChat Pay's (checks answers). ``clock`` gives the signature's Unix time."""
        self.url = base_url.rstrip("/") + PATH
        self.mchid, self.serial_no, self.timeout, self.clock = mchid, serial_no, timeout, clock
        self.private_key, self.platform_public_key = private_key, platform_public_key
        self.session = session or requests.Session()

    def authorization(self, method: str, url_path: str, body: str) -> str:
        timestamp, nonce = str(int(self.clock())), secrets.token_hex(16).upper()
        signature = sha256_rsa_sign(wechatpay_request_message(method, url_path, timestamp, nonce, body),
                                    self.private_key)  # fmt: skip
        return wechatpay_authorization(mchid=self.mchid, serial_no=self.serial_no, nonce=nonce, timestamp=timestamp,
                                       signature=signature)  # fmt: skip

    def refund(self, *, order_no: str, request_no: str, amount_fen: int, total_fen: int, reason: str) -> RefundAnswer:
        if self.private_key is None or not (self.mchid and self.serial_no):
            raise RefundUnavailable("WeChat Pay refunds are not configured: [aftersales] wechatpay_mchid, "
                                    "wechatpay_serial_no and wechatpay_private_key_path are needed to sign")  # fmt: skip
        body = json.dumps({"out_trade_no": order_no, "out_refund_no": request_no, "reason": reason[:80],
                           "amount": {"refund": int(amount_fen), "total": int(total_fen), "currency": "CNY"}},
                          ensure_ascii=False, separators=(",", ":"))  # fmt: skip
        headers = {"Accept": "application/json", "Content-Type": "application/json; charset=utf-8",
                   "Authorization": self.authorization("POST", PATH, body)}  # fmt: skip
        try:
            response = self.session.post(self.url, data=body.encode("utf-8"), headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            raise RefundUnavailable(f"WeChat Pay did not answer ({type(exc).__name__})") from exc
        if self.platform_public_key is not None and response.status_code < 300:
            check_answer_signature(response.headers, response.text, self.platform_public_key)
        return parse_refund_answer(response.status_code, response.text)


def check_answer_signature(headers, text: str, platform_public_key) -> None:
    """Raise ``RefundUnavailable`` unless the answer's ``Wechatpay-Signature`` verifies (then it is ignored and
    the refund asked again with the same ``out_refund_no``)."""
    timestamp, nonce = headers.get("Wechatpay-Timestamp", ""), headers.get("Wechatpay-Nonce", "")
    signature = headers.get("Wechatpay-Signature", "")
    if not (timestamp and nonce and signature) or not sha256_rsa_verify(
            wechatpay_answer_message(timestamp, nonce, text), signature, platform_public_key):
        raise RefundUnavailable("WeChat Pay answer's signature is missing or does not verify with the platform "
                                "public key: ignored, asked again with the same out_refund_no")  # fmt: skip


def parse_refund_answer(status: int, text: str) -> RefundAnswer:
    try:
        body = json.loads(text)
    except ValueError:
        raise RefundUnavailable(f"WeChat Pay HTTP {status} with a body that is not JSON") from None
    if status >= 500 or (status >= 400 and body.get("code") in ("SYSTEM_ERROR", "FREQUENCY_LIMITED", "SIGN_ERROR")):
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
