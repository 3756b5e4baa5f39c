"""Stand-in for a WooCommerce shop's REST API v3: ``GET /wp-json/wc/v3/orders`` over real HTTP.

Checks the consumer key/secret (HTTP Basic or ``consumer_key``/``consumer_secret`` query parameters), filters by
``modified_after``/``modified_before``/``after``/``before``/``status``, orders by ``id``/``date``/``modified``, pages
with ``X-WP-Total``, ``X-WP-TotalPages`` and ``Link`` (rel next/prev), and fails on demand (``throttle`` = HTTP 429,
``duplicate`` repeats the next page's first order). ``modify()``, ``refund()`` and ``add_order()`` change the shop.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit

from connectors.woocommerce import CN_STATES, ORDERS_PATH
from demo.standins._http import QuietHandler, StandinServer

PRODUCTS_PATH = "/wp-json/wc/v3/products"
NOTES_RE = re.compile(r"^/wp-json/wc/v3/orders/(\d+)/notes$")
ORDER_RE = re.compile(r"^/wp-json/wc/v3/orders/(\d+)$")
STATE_BY_PROVINCE = {name: code for code, name in CN_STATES.items()}
METHOD_IDS = {"alipay": "alipay", "wechatpay": "wechatpay", "bank_transfer": "bacs", "cod": "cod",
              "installment": "installment"}
STATUS_BY_NEUTRAL = {"paid": "processing", "unpaid": "pending", "cancelled": "cancelled"}


def _yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    fen = abs(int(fen))
    return f"{sign}{fen // 100}.{fen % 100:02d}"


def _gmt(stamp: datetime) -> str:
    return stamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _local(stamp: datetime) -> str:
    return (stamp.astimezone(UTC) + timedelta(hours=8)).strftime("%Y-%m-%dT%H:%M:%S")


def order_from_neutral(order: dict, order_id: int) -> dict:
    """A WooCommerce order (the published field names) from a neutral demo order."""
    name = order["customer_name"]
    last, first = (name[:1], name[1:]) if len(name) <= 4 else ("", name)
    country = order.get("country") or "CN"
    state = STATE_BY_PROVINCE.get(order["province"], order["province"]) if country == "CN" else order["province"]
    address_1 = f"{order['district']}{order['detail']}" if country == "CN" else order["detail"]
    items = []
    for n, line in enumerate(order["lines"], start=1):
        total = line["qty"] * line["price_fen"]
        items.append(
            {
                "id": order_id * 100 + n,
                "name": line["name"],
                "product_id": 1000 + n,
                "variation_id": 0,
                "quantity": line["qty"],
                "subtotal": _yuan(total),
                "total": _yuan(total),
                "sku": line["code"],
                "price": line["price_fen"] / 100,
                "meta_data": [],
            }
        )
    address = {"first_name": first, "last_name": last, "company": "", "address_1": address_1, "address_2": "",
               "city": order["city"], "state": state, "postcode": order.get("postcode") or "", "country": country}
    total = order["goods_fen"] - order["discount_fen"] + order["freight_fen"]
    return {
        "id": order_id,
        "number": str(order_id),
        "order_key": f"wc_order_{order_id:08x}",
        "status": STATUS_BY_NEUTRAL.get(order.get("status", "paid"), "processing"),
        "currency": "CNY",
        "date_created": _local(order["order_time"]),
        "date_created_gmt": _gmt(order["order_time"]),
        "date_modified": _local(order["modified"]),
        "date_modified_gmt": _gmt(order["modified"]),
        "date_paid": _local(order["order_time"]),
        "date_paid_gmt": _gmt(order["order_time"]),
        "discount_total": _yuan(order["discount_fen"]),
        "shipping_total": _yuan(order["freight_fen"]),
        "total": _yuan(total),
        "total_tax": "0.00",
        "customer_id": 0,
        "customer_note": order.get("note") or "",
        "billing": {**address, "email": order.get("email") or "", "phone": order["phone"]},
        "shipping": {**address, "phone": order["phone"]},
        "payment_method": METHOD_IDS.get(order["payment_method"], order["payment_method"]),
        "payment_method_title": order["payment_method"],
        "transaction_id": "",
        "meta_data": [],
        "line_items": items,
        "shipping_lines": [{"id": 1, "method_title": "快递", "total": _yuan(order["freight_fen"])}],
        "fee_lines": [],
        "coupon_lines": [],
        "refunds": [],
    }


def _parse_time(text: str) -> datetime:
    stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def _refunds_route(path: str) -> int | None:
    """The order id of ``/wp-json/wc/v3/orders/<id>/refunds``, else None."""
    head, _, rest = path.partition(ORDERS_PATH + "/")
    order_id, _, tail = rest.partition("/")
    return int(order_id) if not head and tail == "refunds" and order_id.isdigit() else None


class _Handler(QuietHandler):
    def do_GET(self):  # noqa: N802
        standin: WooCommerceStandin = self.server.standin  # type: ignore[attr-defined]
        standin.requests += 1
        parts = urlsplit(self.path)
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        refunds_of = _refunds_route(parts.path)
        if refunds_of is None and (parts.path.startswith(ORDERS_PATH + "/") or parts.path.startswith(PRODUCTS_PATH)):
            self._write("GET", parts.path, params)
            return
        if parts.path != ORDERS_PATH and refunds_of is None:
            self.send_body(404, b'{"code":"rest_no_route","message":"No route was found","data":{"status":404}}')
            return
        if not standin.authorised(self.headers.get("Authorization"), params):
            self.send_body(401, json.dumps({"code": "woocommerce_rest_cannot_view",
                                            "message": "Sorry, you cannot list resources.",
                                            "data": {"status": 401}}).encode())
            return
        if refunds_of is not None:
            status, body = standin.list_refunds(refunds_of)
            self.send_body(status, body)
            return
        fault = standin.faults.take(params)
        if fault and fault.kind != "duplicate" and self.apply_fault(
            fault, b'{"code":"too_many_requests","message":"Too many requests"}', 429
        ):
            return
        status, body, headers = standin.list_orders(params, self.headers.get("Host") or "",
                                                    duplicate=bool(fault and fault.kind == "duplicate"))
        self.send_body(status, body, headers=headers)


    # --- writes (issue 18): order notes, order status, products batch --------------------------------------------
    def do_POST(self):  # noqa: N802
        parts = urlsplit(self.path)
        self._write("POST", parts.path, dict(parse_qsl(parts.query, keep_blank_values=True)))

    def do_PUT(self):  # noqa: N802
        parts = urlsplit(self.path)
        self._write("PUT", parts.path, dict(parse_qsl(parts.query, keep_blank_values=True)))

    def _write(self, method: str, path: str, params: dict) -> None:
        standin: WooCommerceStandin = self.server.standin  # type: ignore[attr-defined]
        standin.requests += 1
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not standin.authorised(self.headers.get("Authorization"), params):
            self.send_body(401, b'{"code":"woocommerce_rest_cannot_create","message":"Sorry, you are not allowed '
                                b'to create resources.","data":{"status":401}}')
            return
        fault = standin.faults.take({"method": method, "path": path, **params})
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            self.send_body(400, b'{"code":"rest_invalid_json","message":"Invalid JSON body passed.","data":{"status":400}}')
            return
        if fault and fault.kind == "lost":  # done, but the answer never arrives
            standin.write(method, path, body, params)
            self.close_connection = True
            self.connection.close()
            return
        if fault and self.apply_fault(fault, b'{"code":"too_many_requests","message":"Too many requests"}', 429):
            return
        status, answer = standin.write(method, path, body, params)
        self.send_body(status, json.dumps(answer, ensure_ascii=False).encode())


class WooCommerceStandin(StandinServer):
    handler_class = _Handler

    def __init__(self, *, consumer_key: str, consumer_secret: str, orders: list[dict] | None = None,
                 first_id: int = 5000) -> None:
        super().__init__()
        self.consumer_key, self.consumer_secret = consumer_key, consumer_secret
        self._lock = threading.Lock()
        self.orders: dict[int, dict] = {}
        # Writes (issue 18): notes per order, products' stock, the time of every write on ``clock`` (tests pass a
        # simulated clock) against ``write_rate`` requests per second (above it: HTTP 429).
        self.notes: dict[int, list[dict]] = {}
        self.products: dict[int, dict] = {}
        self.clock = time.monotonic
        self.write_rate: float | None = None
        self.write_times: list[float] = []
        self.order_refunds: dict[int, list] = {}  # newest first, as the API lists them
        for i, order in enumerate(orders or []):
            self.orders[first_id + i] = order_from_neutral(order, first_id + i)

    def authorised(self, header: str | None, params: dict) -> bool:
        if header and header.startswith("Basic "):
            try:
                key, _, secret = base64.b64decode(header[6:]).decode().partition(":")
            except ValueError:
                return False
            return key == self.consumer_key and secret == self.consumer_secret
        return params.get("consumer_key") == self.consumer_key and params.get("consumer_secret") == \
            self.consumer_secret

    # --- controls ---------------------------------------------------------------------------------------------
    def add_order(self, order: dict) -> None:
        with self._lock:
            self.orders[int(order["id"])] = order

    def modify(self, order_id: int, *, modified: datetime | None = None, **fields) -> dict:
        """Change an order; ``modified`` in the past makes it a late-arriving change."""
        stamp = modified or datetime.now(UTC)
        with self._lock:
            order = json.loads(json.dumps(self.orders[int(order_id)]))
            order.update(fields)
            order["date_modified_gmt"], order["date_modified"] = _gmt(stamp), _local(stamp)
            self.orders[int(order_id)] = order
            return order

    def refund(self, order_id: int, amount_fen: int, reason: str = "", full: bool = False,
               items: list[tuple[str, float, int]] | None = None, at: datetime | None = None) -> dict:
        """A refund made in the shop: on the order (``refunds``) and in ``orders/<id>/refunds`` in the published
        shape, ``items`` (sku, quantity, unit price fen) being the goods returned."""
        stamp = at or datetime.now(UTC)
        with self._lock:
            order = self.orders[int(order_id)]
            refund_id = 900 + sum(len(r) for r in self.order_refunds.values()) + len(order.get("refunds", []))
            refunds = [*order.get("refunds", []), {"id": refund_id, "reason": reason, "total": _yuan(-amount_fen)}]
            self.order_refunds.setdefault(int(order_id), []).insert(0, {
                "id": refund_id, "date_created": _local(stamp), "date_created_gmt": _gmt(stamp),
                "amount": _yuan(amount_fen), "reason": reason, "refunded_by": 1, "refunded_payment": False,
                "meta_data": [], "shipping_lines": [], "tax_lines": [], "fee_lines": [],
                "line_items": [{"id": refund_id * 10 + n, "name": sku, "product_id": 1000 + n, "variation_id": 0,
                                "quantity": -qty, "subtotal": _yuan(-round(qty * fen)), "total": _yuan(-round(qty * fen)),
                                "sku": sku, "price": -fen / 100, "meta_data": []}
                               for n, (sku, qty, fen) in enumerate(items or [], start=1)],
            })  # fmt: skip
        fields = {"refunds": refunds}
        if full:
            fields["status"] = "refunded"
        return self.modify(order_id, **fields)

    # --- the API ----------------------------------------------------------------------------------------------
    def list_refunds(self, order_id: int) -> tuple[int, bytes]:
        with self._lock:
            if order_id not in self.orders:
                return 404, json.dumps({"code": "woocommerce_rest_invalid_order_id", "message": "Invalid order ID.",
                                        "data": {"status": 404}}).encode()  # fmt: skip
            return 200, json.dumps(self.order_refunds.get(order_id, []), ensure_ascii=False).encode()

    def list_orders(self, params: dict, host: str, duplicate: bool = False) -> tuple[int, bytes, dict]:
        try:
            per_page = int(params.get("per_page", 10))
            page = int(params.get("page", 1))
        except ValueError:
            return 400, b'{"code":"rest_invalid_param","message":"Invalid parameter(s): page"}', {}
        if not 1 <= per_page <= 100 or page < 1:
            return 400, json.dumps({"code": "rest_invalid_param",
                                    "message": "Invalid parameter(s): per_page",
                                    "data": {"status": 400}}).encode(), {}
        gmt = params.get("dates_are_gmt") in ("true", "1")
        with self._lock:
            selected = list(self.orders.values())
        for key, field_name, after in (("modified_after", "date_modified", True),
                                       ("modified_before", "date_modified", False),
                                       ("after", "date_created", True), ("before", "date_created", False)):
            if params.get(key):
                bound = _parse_time(params[key])
                if not gmt:
                    bound = bound - timedelta(hours=8) if params[key][-1] != "Z" else bound
                selected = [
                    o for o in selected
                    if (_parse_time(o[field_name + "_gmt"]) > bound if after else
                        _parse_time(o[field_name + "_gmt"]) < bound)
                ]
        status = params.get("status", "any")
        if status != "any":
            wanted = set(status.split(","))
            selected = [o for o in selected if o["status"] in wanted]
        else:
            selected = [o for o in selected if o["status"] != "trash"]
        orderby = params.get("orderby", "date")
        sort_key = {"id": lambda o: o["id"], "modified": lambda o: (o["date_modified_gmt"], o["id"])}.get(
            orderby, lambda o: (o["date_created_gmt"], o["id"])
        )
        selected.sort(key=sort_key, reverse=params.get("order", "desc") == "desc")
        total = len(selected)
        pages = max((total + per_page - 1) // per_page, 1) if total else 0
        offset = (page - 1) * per_page
        chunk = selected[offset : offset + per_page]
        if duplicate and offset + per_page < total:
            chunk = [*chunk, selected[offset + per_page]]
        base = f"http://{host}{ORDERS_PATH}"
        links = []
        for rel, number in (("prev", page - 1), ("next", page + 1)):
            if 1 <= number <= pages:
                query = {k: v for k, v in params.items() if k not in ("consumer_key", "consumer_secret")}
                query["page"] = str(number)
                links.append(f'<{base}?{urlencode(query)}>; rel="{rel}"')
        headers = {"X-WP-Total": str(total), "X-WP-TotalPages": str(pages)}
        if links:
            headers["Link"] = ", ".join(links)
        return 200, json.dumps(chunk, ensure_ascii=False).encode(), headers

    # --- writes (issue 18) ----------------------------------------------------------------------------------------
    def add_product(self, product_id: int, sku: str, stock_quantity: int | None = None) -> None:
        with self._lock:
            self.products[int(product_id)] = {"id": int(product_id), "sku": sku, "manage_stock": True,
                                              "stock_quantity": stock_quantity}

    def write(self, method: str, path: str, body, params: dict) -> tuple[int, object]:
        with self._lock:
            now = self.clock()
            if method != "GET":
                self.write_times.append(now)
                if self.write_rate is not None and \
                        sum(1 for t in self.write_times if now - t < 1.0) > self.write_rate:
                    return 429, {"code": "too_many_requests", "message": "Too many requests", "data": {"status": 429}}
            notes, order = NOTES_RE.match(path), ORDER_RE.match(path)
            if notes:
                return self._notes(method, int(notes.group(1)), body, params)
            if order and method == "PUT":
                return self._update_order(int(order.group(1)), body)
            if path == PRODUCTS_PATH + "/batch" and method == "POST":
                return self._products_batch(body)
        return 404, {"code": "rest_no_route", "message": "No route was found matching the URL and request method.",
                     "data": {"status": 404}}

    def _notes(self, method: str, order_id: int, body, params: dict) -> tuple[int, object]:
        if order_id not in self.orders:
            return 404, {"code": "woocommerce_rest_shop_order_invalid_id", "message": "Invalid ID.",
                         "data": {"status": 404}}
        notes = self.notes.setdefault(order_id, [])
        if method == "GET":
            kind = params.get("type", "any")
            return 200, [n for n in reversed(notes)
                         if kind == "any" or (kind == "customer") == bool(n["customer_note"])]
        if not isinstance(body, dict) or not str(body.get("note") or "").strip():
            return 400, {"code": "rest_missing_callback_param", "message": "Missing parameter(s): note",
                         "data": {"status": 400}}
        stamp = datetime.now(UTC)
        note = {"id": 300 + sum(len(v) for v in self.notes.values()), "author": "system",
                "date_created": _local(stamp), "date_created_gmt": _gmt(stamp), "note": body["note"],
                "customer_note": bool(body.get("customer_note"))}
        notes.append(note)
        return 201, note

    def _update_order(self, order_id: int, body) -> tuple[int, object]:
        if order_id not in self.orders:
            return 404, {"code": "woocommerce_rest_shop_order_invalid_id", "message": "Invalid ID.",
                         "data": {"status": 404}}
        order = self.orders[order_id]
        if isinstance(body, dict) and body.get("status"):
            order["status"] = body["status"]
        return 200, order

    def _products_batch(self, body) -> tuple[int, object]:
        updates = (body or {}).get("update") or [] if isinstance(body, dict) else []
        if len(updates) > 100:
            return 413, {"code": "woocommerce_rest_request_entity_too_large",
                         "message": "Unable to accept more than 100 items for this request.", "data": {"status": 413}}
        answered = []
        for item in updates:
            product = self.products.get(int(item.get("id", 0)))
            if product is None:
                answered.append({"id": item.get("id"), "error": {"code": "woocommerce_rest_product_invalid_id",
                                                                 "message": "Invalid ID.", "data": {"status": 400}}})
                continue
            if "stock_quantity" in item:
                product["stock_quantity"] = int(item["stock_quantity"])
            answered.append(dict(product))
        return 200, {"update": answered}
