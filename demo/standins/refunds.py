"""Local stand-ins of the payment providers' refund interfaces, for the demo and tests: Alipay's gateway answering
``alipay.trade.refund`` and WeChat Pay's ``POST /v3/refund/domestic/refunds``, in the shapes of
``tests/data/formats/alipay_trade_refund_response.json`` and ``wechatpay_v3_refund_response.json``.

Both check the request's signature as the providers publish it (``connectors/provider_signing.py``) with the
merchant's public key and refuse a bad one in the provider's error shape (Alipay ``40002 isv.invalid-signature``,
WeChat Pay HTTP 401 ``SIGN_ERROR``), and sign their answers with the provider's own key. ``TestKeys`` makes the
four key pairs (generated once per process, test-only, never configured in production) and writes the PEM files
and the ``[aftersales]`` settings that point at them.

Both refund a request number (``out_request_no`` / ``out_refund_no``) once: a repeat gets the first refund back
(Alipay with ``fund_change: "N"``), never a second one. ``refunds`` holds what was actually refunded. Faults
(``server.faults.add(kind)``): ``http500``, ``http503``, ``reset``, and ``lost``: the refund is made, then the
connection is dropped before the answer, as when a network fails after the provider acted.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from urllib.parse import parse_qs

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors.provider_signing import (
    alipay_sign_content,
    parse_wechatpay_authorization,
    sha256_rsa_sign,
    sha256_rsa_verify,
    wechatpay_answer_message,
    wechatpay_request_message,
)
from demo.standins._http import QuietHandler, StandinServer

ALIPAY_APP_ID = "2021000000000001"
WECHATPAY_MCHID, WECHATPAY_SERIAL = "1900000001", "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"


@cache
def _generated_keys() -> dict[str, rsa.RSAPrivateKey]:
    return {name: rsa.generate_private_key(public_exponent=65537, key_size=2048)
            for name in ("alipay_app", "alipay", "wechatpay_merchant", "wechatpay_platform")}  # fmt: skip


@dataclass(frozen=True)
class TestKeys:
    """Test-only key pairs: the merchant's (ours, signing requests) and the providers' (signing answers)."""

    alipay_app: rsa.RSAPrivateKey
    alipay: rsa.RSAPrivateKey
    wechatpay_merchant: rsa.RSAPrivateKey
    wechatpay_platform: rsa.RSAPrivateKey

    @classmethod
    def make(cls) -> TestKeys:
        return cls(**_generated_keys())

    def write(self, folder: Path) -> dict[str, str]:
        """Write the PEM files yidi reads into ``folder``; returns the ``[aftersales]`` settings naming them."""
        folder.mkdir(parents=True, exist_ok=True)
        files = {"alipay_private_key_path": ("alipay_app_private.pem", self.alipay_app, True),
                 "alipay_public_key_path": ("alipay_public.pem", self.alipay, False),
                 "wechatpay_private_key_path": ("wechatpay_apiclient_key.pem", self.wechatpay_merchant, True),
                 "wechatpay_platform_public_key_path": ("wechatpay_platform_public.pem", self.wechatpay_platform,
                                                        False)}  # fmt: skip
        settings = {"alipay_app_id": ALIPAY_APP_ID, "wechatpay_mchid": WECHATPAY_MCHID,
                    "wechatpay_serial_no": WECHATPAY_SERIAL}  # fmt: skip
        for setting, (name, key, private) in files.items():
            pem = (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()) if private else
                   key.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo))  # fmt: skip
            (folder / name).write_bytes(pem)
            settings[setting] = str(folder / name)
        return settings


class _RefundHandler(QuietHandler):
    protocol_version = "HTTP/1.0"

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _answer(self, status: int, payload: dict | bytes, headers: dict | None = None) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_body(status, body, headers=headers)

    def do_POST(self):  # noqa: N802 - stdlib hook name
        server: RefundStandIn = self.server.standin  # type: ignore[attr-defined]
        raw = self._body()
        server.requests += 1
        fault = server.faults.take({})
        if fault is not None and fault.kind != "lost" and self.apply_fault(fault):
            return None
        made = server.handle(self.path, raw, self.headers)
        if fault is not None and fault.kind == "lost":
            self.close_connection = True
            self.connection.close()
            return None
        return self._answer(*made)


class RefundStandIn(StandinServer):
    handler_class = _RefundHandler

    def __init__(self, keys: TestKeys | None = None) -> None:
        super().__init__()
        self.keys = keys or TestKeys.make()
        self.refused_signatures = 0  # requests refused for a missing or wrong signature
        self.tamper_answers = False  # sign answers with a wrong key (the client must not believe them)
        self.lock = threading.Lock()
        self.refunds: list[dict] = []  # one per refund actually made
        self._by_number: dict[str, dict] = {}
        self.trade_totals_fen: dict[str, int] = {}  # out_trade_no -> refunded so far

    def _refund_once(self, number: str, trade: str, fen: int) -> tuple[dict, bool]:
        with self.lock:
            known = self._by_number.get(number)
            if known is not None:
                return known, False
            self.trade_totals_fen[trade] = self.trade_totals_fen.get(trade, 0) + fen
            made = {"number": number, "trade": trade, "amount_fen": fen, "id": uuid.uuid4().hex[:20]}
            self._by_number[number] = made
            self.refunds.append(made)
            return made, True

    def handle(self, path: str, raw: bytes, headers) -> tuple:
        if path.split("?", 1)[0].endswith("/v3/refund/domestic/refunds"):
            return self._wechat(path, raw, headers)
        return self._alipay(raw)

    def _answer_key(self, genuine: rsa.RSAPrivateKey) -> rsa.RSAPrivateKey:
        return self.keys.alipay_app if self.tamper_answers else genuine  # any key but the provider's

    def _alipay_signed(self, inner: dict) -> bytes:
        """The answer as Alipay writes it: ``sign`` over the exact ``alipay_trade_refund_response`` text."""
        text = json.dumps(inner, ensure_ascii=False, separators=(",", ":"))
        sign = sha256_rsa_sign(text, self._answer_key(self.keys.alipay))
        return f'{{"alipay_trade_refund_response":{text},"sign":"{sign}"}}'.encode()

    def _alipay(self, raw: bytes) -> tuple:
        form = {k: v[0] for k, v in parse_qs(raw.decode("utf-8"), keep_blank_values=True).items()}
        if not sha256_rsa_verify(alipay_sign_content(form), form.get("sign", ""), self.keys.alipay_app.public_key()) \
                or form.get("app_id") != ALIPAY_APP_ID or form.get("sign_type") != "RSA2":
            with self.lock:
                self.refused_signatures += 1
            return 200, self._alipay_signed({"code": "40002", "msg": "Invalid Arguments",
                                             "sub_code": "isv.invalid-signature", "sub_msg": "无效签名"})  # fmt: skip
        if form.get("method") != "alipay.trade.refund":
            return 200, {"error_response": {"code": "40001", "msg": "Missing Required Arguments",
                                            "sub_code": "isv.missing-method"}}  # fmt: skip
        try:
            biz = json.loads(form["biz_content"])
            fen = int(Decimal(str(biz["refund_amount"])) * 100)
            number, trade = str(biz.get("out_request_no") or biz["out_trade_no"]), str(biz["out_trade_no"])
        except (KeyError, ValueError, ArithmeticError):
            return 200, self._alipay_signed({"code": "40002", "msg": "Invalid Arguments",
                                             "sub_code": "isv.invalid-parameter"})  # fmt: skip
        made, fresh = self._refund_once(number, trade, fen)
        inner = {"code": "10000", "msg": "Success", "trade_no": f"2026{made['id']}", "out_trade_no": trade,
                 "buyer_logon_id": "138******00", "fund_change": "Y" if fresh else "N",
                 "refund_fee": f"{Decimal(self.trade_totals_fen[trade]) / 100:.2f}",
                 "gmt_refund_pay": "2026-12-05 10:00:00", "send_back_fee": f"{Decimal(fen) / 100:.2f}"}  # fmt: skip
        return 200, self._alipay_signed(inner)

    def _wechat(self, path: str, raw: bytes, headers) -> tuple:
        auth = parse_wechatpay_authorization(headers.get("Authorization", ""))
        if auth is None or auth["mchid"] != WECHATPAY_MCHID or auth["serial_no"] != WECHATPAY_SERIAL or \
                not sha256_rsa_verify(wechatpay_request_message("POST", path, auth["timestamp"], auth["nonce_str"],
                                                                raw.decode("utf-8", "replace")),
                                      auth["signature"], self.keys.wechatpay_merchant.public_key()):  # fmt: skip
            with self.lock:
                self.refused_signatures += 1
            return 401, {"code": "SIGN_ERROR", "message": "签名错误"}
        status, payload = self._wechat_refund(raw)
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        timestamp, nonce = "1764900000", uuid.uuid4().hex.upper()
        signature = sha256_rsa_sign(wechatpay_answer_message(timestamp, nonce, body.decode("utf-8")),
                                    self._answer_key(self.keys.wechatpay_platform))  # fmt: skip
        return status, body, {"Wechatpay-Timestamp": timestamp, "Wechatpay-Nonce": nonce,
                              "Wechatpay-Signature": signature, "Wechatpay-Serial": "PUB_KEY_ID_0119000000"}

    def _wechat_refund(self, raw: bytes) -> tuple[int, dict]:
        try:
            body = json.loads(raw.decode("utf-8"))
            number, trade = str(body["out_refund_no"]), str(body["out_trade_no"])
            fen, total = int(body["amount"]["refund"]), int(body["amount"]["total"])
        except (KeyError, ValueError, TypeError):
            return 400, {"code": "PARAM_ERROR", "message": "out_refund_no, out_trade_no, amount required"}
        if fen > total:
            return 403, {"code": "NOT_ENOUGH", "message": "refund exceeds the order total"}
        made, _ = self._refund_once(number, trade, fen)
        return 200, {"refund_id": f"5000{made['id']}", "out_refund_no": number, "transaction_id": f"4200{made['id']}",
                     "out_trade_no": trade, "channel": "ORIGINAL", "user_received_account": "支付用户零钱",
                     "success_time": "2026-12-05T10:00:00+08:00", "create_time": "2026-12-05T10:00:00+08:00",
                     "status": "SUCCESS", "funds_account": "AVAILABLE",
                     "amount": {"total": total, "refund": fen, "payer_total": total, "payer_refund": fen,
                                "settlement_refund": fen, "settlement_total": total, "discount_refund": 0,
                                "currency": "CNY"}}  # fmt: skip


def start(keys: TestKeys | None = None) -> RefundStandIn:
    return RefundStandIn(keys).start()
