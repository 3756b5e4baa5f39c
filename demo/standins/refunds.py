"""Local stand-ins of the payment providers' refund interfaces, for the demo and tests: Alipay's gateway answering
``alipay.trade.refund`` and WeChat Pay's ``POST /v3/refund/domestic/refunds``, in the shapes of
``tests/data/formats/alipay_trade_refund_response.json`` and ``wechatpay_v3_refund_response.json``.

Both refund a request number (``out_request_no`` / ``out_refund_no``) once: a repeat gets the first refund back
(Alipay with ``fund_change: "N"``), never a second one. ``refunds`` holds what was actually refunded. Faults
(``server.faults.add(kind)``): ``http500``, ``http503``, ``reset``, and ``lost``: the refund is made, then the
connection is dropped before the answer, as when a network fails after the provider acted.
"""

from __future__ import annotations

import json
import threading
import uuid
from decimal import Decimal
from urllib.parse import parse_qs

from demo.standins._http import QuietHandler, StandinServer


class _RefundHandler(QuietHandler):
    protocol_version = "HTTP/1.0"

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _answer(self, status: int, payload: dict) -> None:
        self.send_body(status, json.dumps(payload, ensure_ascii=False).encode("utf-8"))

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

    def __init__(self) -> None:
        super().__init__()
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

    def handle(self, path: str, raw: bytes, headers) -> tuple[int, dict]:
        if path.split("?", 1)[0].endswith("/v3/refund/domestic/refunds"):
            return self._wechat(raw)
        return self._alipay(raw)

    def _alipay(self, raw: bytes) -> tuple[int, dict]:
        form = {k: v[0] for k, v in parse_qs(raw.decode("utf-8")).items()}
        if form.get("method") != "alipay.trade.refund":
            return 200, {"error_response": {"code": "40001", "msg": "Missing Required Arguments",
                                            "sub_code": "isv.missing-method"}}  # fmt: skip
        try:
            biz = json.loads(form["biz_content"])
            fen = int(Decimal(str(biz["refund_amount"])) * 100)
            number, trade = str(biz.get("out_request_no") or biz["out_trade_no"]), str(biz["out_trade_no"])
        except (KeyError, ValueError, ArithmeticError):
            return 200, {"alipay_trade_refund_response": {"code": "40002", "msg": "Invalid Arguments",
                                                          "sub_code": "isv.invalid-parameter"}, "sign": ""}  # fmt: skip
        made, fresh = self._refund_once(number, trade, fen)
        inner = {"code": "10000", "msg": "Success", "trade_no": f"2026{made['id']}", "out_trade_no": trade,
                 "buyer_logon_id": "138******00", "fund_change": "Y" if fresh else "N",
                 "refund_fee": f"{Decimal(self.trade_totals_fen[trade]) / 100:.2f}",
                 "gmt_refund_pay": "2026-12-05 10:00:00", "send_back_fee": f"{Decimal(fen) / 100:.2f}"}  # fmt: skip
        return 200, {"alipay_trade_refund_response": inner, "sign": ""}

    def _wechat(self, raw: bytes) -> tuple[int, dict]:
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


def start() -> RefundStandIn:
    return RefundStandIn().start()
