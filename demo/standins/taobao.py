"""Stand-in for the TOP gateway (``/router/rest``): ``taobao.trades.sold.increment.get`` over real HTTP.

It checks app key, session, timestamp (±10 min), signature (md5 / hmac / hmac-sha256) and the window (≤ 1 day),
serves trades newest-modified first with ``total_results`` paging, answers errors as ``error_response``, and fails on
demand (see ``demo.standins._http``; ``throttle`` answers code 7 "App Call Limited", ``duplicate`` repeats a
trade of the next page). ``modify()`` changes a trade (optionally with a modified time in the past: a late-arriving
change), ``add_trade()`` adds one.

    with TaobaoStandin(app_key="k", app_secret="s", session="x", orders=demo_neutral_orders(500)) as top:
        top.url  # http://127.0.0.1:PORT/router/rest
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

from connectors.base import SHANGHAI
from connectors.taobao import METHOD, RESPONSE_KEY, TIME_FORMAT, sign_params
from connectors.taobao_writeback import OFFLINE_SEND, QUANTITY_UPDATE
from demo.standins._http import QuietHandler, StandinServer

WRITE_METHODS = (OFFLINE_SEND, QUANTITY_UPDATE)
ALREADY_SHIPPED = ("isv.logistics-offline-service-error:B04", "订单状态不对该物流订单已经发货或者已关闭，不能重复发货")
STATUS_BY_NEUTRAL = {"paid": "WAIT_SELLER_SEND_GOODS", "unpaid": "WAIT_BUYER_PAY", "cancelled": "TRADE_CLOSED"}


def _yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    fen = abs(int(fen))
    return f"{sign}{fen // 100}.{fen % 100:02d}"


def _t(stamp: datetime) -> str:
    return stamp.astimezone(SHANGHAI).strftime(TIME_FORMAT)


def trade_from_neutral(order: dict, tid: int) -> dict:
    """A TOP trade (the published field names) from a neutral demo order."""
    sub_orders = []
    for n, line in enumerate(order["lines"], start=1):
        total = line["qty"] * line["price_fen"]
        sub_orders.append(
            {
                "oid": tid * 10 + n,
                "outer_iid": line["code"],
                "outer_sku_id": line["code"],
                "title": line["name"],
                "sku_properties_name": line.get("spec") or "",
                "num": line["qty"],
                "price": _yuan(line["price_fen"]),
                "payment": _yuan(total),
                "total_fee": _yuan(total),
            }
        )
    payment = order["goods_fen"] - order["discount_fen"] + order["freight_fen"]
    mobile = order["phone"] if str(order["phone"]).startswith("1") else ""
    return {
        "tid": tid,
        "status": STATUS_BY_NEUTRAL.get(order.get("status", "paid"), "WAIT_SELLER_SEND_GOODS"),
        "payment": _yuan(payment),
        "post_fee": _yuan(order["freight_fen"]),
        "total_fee": _yuan(order["goods_fen"]),
        "discount_fee": _yuan(order["discount_fen"]),
        "created": _t(order["order_time"]),
        "pay_time": _t(order["order_time"] + timedelta(minutes=1)),
        "modified": _t(order["modified"]),
        "buyer_message": order.get("note") or "",
        "receiver_name": order["customer_name"],
        "receiver_state": order["province"],
        "receiver_city": order["city"],
        "receiver_district": order["district"],
        "receiver_town": "",
        "receiver_address": order["detail"],
        "receiver_zip": order.get("postcode") or "",
        "receiver_mobile": mobile,
        "receiver_phone": "" if mobile else order["phone"],
        "orders": {"order": sub_orders},
    }


def _error(code: int, msg: str, sub_code: str | None = None, sub_msg: str | None = None) -> bytes:
    body = {"code": code, "msg": msg, "request_id": "standin"}
    if sub_code:
        body["sub_code"] = sub_code
    if sub_msg:
        body["sub_msg"] = sub_msg
    return json.dumps({"error_response": body}, ensure_ascii=False).encode()




def throttle_body(seconds: int) -> bytes:
    return _error(7, "App Call Limited", "accesscontrol.limited-by-app-access-count",
                  f"This ban will last for {seconds} more seconds")


class _Handler(QuietHandler):
    def do_GET(self):  # noqa: N802
        self._handle(dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True)))

    def do_POST(self):  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8")
        params = dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))
        params.update(dict(parse_qsl(body, keep_blank_values=True)))
        self._handle(params)

    def _handle(self, params: dict) -> None:
        standin: TaobaoStandin = self.server.standin  # type: ignore[attr-defined]
        standin.requests += 1
        if urlsplit(self.path).path != "/router/rest":
            self.send_body(404, b'{"error":"not found"}')
            return
        fault = standin.faults.take(params)
        if fault and fault.kind == "lost":  # the call is done, its answer never arrives (issue 18)
            standin.answer(params)
            self.close_connection = True
            self.connection.close()
            return
        if fault and fault.kind != "duplicate" and self.apply_fault(fault, throttle_body(standin.ban_seconds)):
            return
        status, body = standin.answer(params, duplicate=bool(fault and fault.kind == "duplicate"))
        self.send_body(status, body)


class TaobaoStandin(StandinServer):
    handler_class = _Handler

    def __init__(self, *, app_key: str, app_secret: str, session: str | None = None,
                 orders: list[dict] | None = None, first_tid: int = 3_900_000_000_000_000_000,
                 trades: list[dict] | None = None) -> None:
        super().__init__()
        self.app_key, self.app_secret, self.session = app_key, app_secret, session
        self._lock = threading.Lock()
        self.trades: dict[int, dict] = {}
        for i, order in enumerate(orders or []):
            self.trades[first_tid + i] = trade_from_neutral(order, first_tid + i)
        for trade in trades or []:
            self.trades[int(trade["tid"])] = trade
        self.calls: list[dict] = []  # API parameters of every accepted call (for tests)
        self.ban_seconds = 1  # what a throttling answer says the ban lasts
        # Writes (issue 18): shipped sub-orders per trade, accepted confirmations, listings' stock figures, and
        # the time of every write call on ``clock`` (tests pass a simulated clock) against ``write_rate``.
        self.shipped: dict[int, set[int]] = {}
        self.confirmations: list[dict] = []
        self.items: dict[int, dict] = {}  # num_iid -> {"num": int, "skus": {sku_id: int}}
        self.refuse_items: set[int] = set()  # num_iids whose update the platform refuses
        self.clock = time.monotonic
        self.write_rate: float | None = None  # calls per second allowed; above it: code 7 App Call Limited
        self.write_times: list[float] = []
        self._recent: deque[float] = deque()  # write times in the trailing second
        self.max_writes_in_any_second = 0
        self.throttled = 0
        self.rates: list[dict] = []  # buyers' ratings served by taobao.traderates.get (TradeRate objects)

    @property
    def url(self) -> str:  # the gateway URL
        return super().url + "/router/rest"

    # --- test and demo controls -------------------------------------------------------------------------------
    def add_rate(self, rate: dict) -> None:
        """A buyer's rating (a ``TradeRate``: tid, oid, role, nick, result, created, content…)."""
        with self._lock:
            self.rates.append(rate)

    def _traderates(self, params: dict) -> tuple[int, bytes]:
        """``taobao.traderates.get`` (rate_type=get, role=buyer): ratings created in [start_date, end_date], newest
        first, ``use_has_next`` paging (page_size ≤ 150)."""
        try:
            start = datetime.strptime(params["start_date"], TIME_FORMAT)
            end = datetime.strptime(params["end_date"], TIME_FORMAT)
            page_no, page_size = int(params.get("page_no", 1)), int(params.get("page_size", 40))
        except (KeyError, ValueError):
            return 200, _error(41, "Invalid Arguments", "isv.invalid-parameter", "start_date/end_date, page_no")
        if page_size > 150 or page_size < 1 or page_no < 1 or params.get("rate_type") != "get" \
                or params.get("role") != "buyer":  # fmt: skip
            return 200, _error(41, "Invalid Arguments", "isv.invalid-parameter")
        with self._lock:
            found = sorted((r for r in self.rates if start <= datetime.strptime(r["created"], TIME_FORMAT) <= end),
                           key=lambda r: r["created"], reverse=True)  # fmt: skip
        page = found[(page_no - 1) * page_size: page_no * page_size]
        body = {"trade_rates": {"trade_rate": page}, "has_next": page_no * page_size < len(found)}
        return 200, json.dumps({"traderates_get_response": body}, ensure_ascii=False).encode()

    def add_trade(self, trade: dict) -> None:
        with self._lock:
            self.trades[int(trade["tid"])] = trade

    def modify(self, tid: int, *, modified: datetime | None = None, **fields) -> dict:
        """Change a trade at the source; ``modified`` in the past makes it a late-arriving change."""
        with self._lock:
            trade = dict(self.trades[int(tid)])
            trade.update(fields)
            trade["modified"] = _t(modified or datetime.now(UTC))
            self.trades[int(tid)] = trade
            return trade

    # --- the API ----------------------------------------------------------------------------------------------
    def answer(self, params: dict, duplicate: bool = False) -> tuple[int, bytes]:
        if params.get("app_key") != self.app_key:
            return 200, _error(29, "Invalid App Key")
        sign_method = params.get("sign_method", "md5")
        if sign_method not in ("md5", "hmac", "hmac-sha256"):
            return 200, _error(50, "Invalid Sign Method")
        if not params.get("sign"):
            return 200, _error(24, "Missing Signature")
        if params["sign"] != sign_params(params, self.app_secret, sign_method):
            return 200, _error(25, "Invalid Signature")
        try:
            stamp = datetime.strptime(params.get("timestamp", ""), TIME_FORMAT).replace(tzinfo=SHANGHAI)
        except ValueError:
            return 200, _error(31, "Invalid Timestamp", "isv.invalid-parameter:timestamp")
        if abs((datetime.now(UTC) - stamp).total_seconds()) > 600:
            return 200, _error(31, "Invalid Timestamp", "isv.invalid-parameter:timestamp",
                               "timestamp must be within 10 minutes of the server time")
        if self.session is not None and params.get("session") != self.session:
            return 200, _error(27, "Invalid session", "invalid-sessionkey")
        if params.get("method") in WRITE_METHODS:
            return self.write(params)
        if params.get("method") == "taobao.traderates.get":
            return self._traderates(params)
        if params.get("method") != METHOD:
            return 200, _error(22, "Invalid Method")
        self.calls.append({k: v for k, v in params.items() if k not in ("sign", "timestamp")})
        try:
            start = datetime.strptime(params["start_modified"], TIME_FORMAT).replace(tzinfo=SHANGHAI)
            end = datetime.strptime(params["end_modified"], TIME_FORMAT).replace(tzinfo=SHANGHAI)
            page_no = int(params.get("page_no", 1))
            page_size = int(params.get("page_size", 40))
        except (KeyError, ValueError):
            return 200, _error(41, "Invalid Arguments", "isv.invalid-parameter",
                               "start_modified/end_modified (yyyy-MM-dd HH:mm:ss), page_no, page_size")
        if end < start or end - start > timedelta(days=1):
            return 200, _error(41, "Invalid Arguments", "isv.invalid-parameter:time-range",
                               "end_modified - start_modified must be within one day")
        if page_size > 100 or page_size < 1 or page_no < 1:
            return 200, _error(41, "Invalid Arguments", "isv.invalid-parameter:page_size")
        with self._lock:
            matching = [
                t for t in self.trades.values()
                if start <= datetime.strptime(t["modified"], TIME_FORMAT).replace(tzinfo=SHANGHAI) <= end
            ]
        matching.sort(key=lambda t: (t["modified"], t["tid"]), reverse=True)  # newest first
        offset = (page_no - 1) * page_size
        page = matching[offset : offset + page_size]
        if duplicate and offset + page_size < len(matching):
            page = [*page, matching[offset + page_size]]
        body: dict = {"trades": {"trade": page}}
        if params.get("use_has_next") == "true":
            body["has_next"] = offset + page_size < len(matching)
        else:
            body["total_results"] = len(matching)
        return 200, json.dumps({RESPONSE_KEY: body}, ensure_ascii=False).encode()

    # --- writes (issue 18): taobao.logistics.offline.send, taobao.item.quantity.update ---------------------------
    def add_listing(self, num_iid: int, num: int = 0) -> None:
        with self._lock:
            self.items[int(num_iid)] = {"num": int(num), "skus": {}}

    def write(self, params: dict) -> tuple[int, bytes]:
        with self._lock:
            now = self.clock()
            self.write_times.append(now)
            while self._recent and now - self._recent[0] >= 1.0:
                self._recent.popleft()
            self._recent.append(now)
            self.max_writes_in_any_second = max(self.max_writes_in_any_second, len(self._recent))
            if self.write_rate is not None and len(self._recent) > self.write_rate:
                self.throttled += 1
                return 200, throttle_body(self.ban_seconds)
            if params["method"] == OFFLINE_SEND:
                return self._offline_send(params)
            return self._quantity_update(params)

    def _offline_send(self, params: dict) -> tuple[int, bytes]:
        try:
            tid = int(params["tid"])
            out_sid, company = params["out_sid"], params["company_code"]
        except (KeyError, ValueError):
            return 200, _error(41, "Invalid Arguments", "isv.missing-parameter", "tid, out_sid, company_code")
        trade = self.trades.get(tid)
        if trade is None:
            return 200, _error(15, "Remote service error", "isv.logistics-offline-service-error:B01", "订单不存在")
        oids = {int(o["oid"]) for o in trade["orders"]["order"]}
        done = self.shipped.setdefault(tid, set())
        wanted = {int(x) for x in params.get("sub_tid", "").split(",") if x.strip()} if params.get("is_split") == "1" \
            else oids
        if not wanted <= oids:
            return 200, _error(15, "Remote service error", "isv.logistics-offline-service-error:P38", "拆单校验未通过")
        if trade["status"] != "WAIT_SELLER_SEND_GOODS" or wanted <= done or (params.get("is_split") != "1" and done):
            return 200, _error(15, "Remote service error", *ALREADY_SHIPPED)
        done |= wanted
        if done == oids:
            trade["status"] = "WAIT_BUYER_CONFIRM_GOODS"
        self.confirmations.append({"tid": tid, "out_sid": out_sid, "company_code": company,
                                   "sub_tid": sorted(wanted) if params.get("is_split") == "1" else None})
        body = {"logistics_offline_send_response": {"shipping": {"is_success": True}, "request_id": "standin"}}
        return 200, json.dumps(body).encode()

    def _quantity_update(self, params: dict) -> tuple[int, bytes]:
        try:
            num_iid, quantity = int(params["num_iid"]), int(params["quantity"])
        except (KeyError, ValueError):
            return 200, _error(41, "Invalid Arguments", "isv.missing-parameter", "num_iid, quantity")
        item = self.items.get(num_iid)
        if item is None or num_iid in self.refuse_items:
            return 200, _error(15, "Remote service error", "isv.item-not-exist", f"宝贝 {num_iid} 不存在或已删除")
        if params.get("type", "1") == "1" and quantity < 0:
            return 200, _error(41, "Invalid Arguments", "isv.invalid-parameter:quantity", "全量更新库存不能小于0")
        item["num"] = quantity if params.get("type", "1") == "1" else item["num"] + quantity
        body = {"item_quantity_update_response": {"item": {"num_iid": num_iid, "num": item["num"],
                                                           "modified": _t(datetime.now(UTC))}}}
        return 200, json.dumps(body, ensure_ascii=False).encode()
