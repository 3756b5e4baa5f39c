"""Writing back to the WooCommerce website (REST API v3, issue 18): shipment confirmation and stock figures.

- Confirmation: a customer-visible order note (``POST /wp-json/wc/v3/orders/<id>/notes`` with ``note`` and
  ``customer_note: true``; WooCommerce mails it to the customer) naming the carrier and the waybill, then, once
  every parcel of the order has its waybill, ``PUT /wp-json/wc/v3/orders/<id>`` with ``status: completed``.
  Creating a note is not idempotent, so the order's customer notes are read first (``GET …/notes?type=customer``)
  and a note already naming this waybill (an earlier call whose answer was lost) is not written again.
- Stock: ``POST /wp-json/wc/v3/products/batch`` with ``update: [{id, stock_quantity, manage_stock}]`` (at most
  100 per request); the answer's ``update[]`` holds each product, or ``{id, error: {code, message}}`` for one it
  refused.

Shapes: ``woocommerce/woocommerce-rest-api-docs`` ``source/includes/wp-api-v3/_order-notes.md``, ``_orders.md``
(update an order) and ``_products.md`` (batch update); samples under ``tests/data/formats/woocommerce/``.
"""

from __future__ import annotations

import requests

from connectors.base import ChannelError, TransientChannelError
from connectors.taobao_writeback import WriteOutcome

API = "/wp-json/wc/v3"


class WooWriter:
    def __init__(self, url: str, consumer_key: str, consumer_secret: str, timeout: float = 20.0, pacer=None):
        self.base = url.rstrip("/") + API
        self.session = requests.Session()
        self.session.auth = (consumer_key, consumer_secret)
        self.timeout = timeout
        self.pacer = pacer  # called before every request (the channel's rate limit)

    def _request(self, method: str, path: str, **kwargs):
        if self.pacer is not None:
            self.pacer()
        try:
            response = self.session.request(method, self.base + path, timeout=self.timeout, **kwargs)
        except (requests.Timeout, requests.ConnectionError) as exc:
            raise TransientChannelError(f"woocommerce unreachable or slow: {type(exc).__name__}") from None
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientChannelError(f"woocommerce answered HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            raise TransientChannelError(f"woocommerce sent malformed JSON (HTTP {response.status_code})") from None
        if response.status_code >= 400:
            message = body.get("message") if isinstance(body, dict) else str(body)[:200]
            raise ChannelError(f"woocommerce answered HTTP {response.status_code}: {message}")
        return body

    def confirm_shipped(self, order_id: str, note: str, waybill_no: str, complete_status: str | None) -> WriteOutcome:
        """The customer note (once per waybill) and, when ``complete_status``, the order's new status."""
        try:
            notes = self._request("GET", f"/orders/{order_id}/notes", params={"type": "customer"})
            already = any(waybill_no in str(n.get("note", "")) for n in notes if isinstance(n, dict))
            answer = {"note": None, "order_status": None}
            if not already:
                answer["note"] = self._request("POST", f"/orders/{order_id}/notes",
                                               json={"note": note, "customer_note": True})
            if complete_status:
                order = self._request("PUT", f"/orders/{order_id}", json={"status": complete_status})
                answer["order_status"] = order.get("status") if isinstance(order, dict) else None
        except TransientChannelError as exc:
            return WriteOutcome("failed", error=str(exc))
        except ChannelError as exc:
            return WriteOutcome("refused", error=str(exc))
        return WriteOutcome("already" if already else "confirmed", answer)

    def update_stock(self, items: list[tuple[str, int]]) -> dict[str, WriteOutcome]:
        """One batch request (≤ 100 products): product id -> outcome."""
        body = {"update": [{"id": int(pid), "stock_quantity": int(qty), "manage_stock": True} for pid, qty in items]}
        try:
            answer = self._request("POST", "/products/batch", json=body)
        except TransientChannelError as exc:
            return {pid: WriteOutcome("failed", error=str(exc)) for pid, _ in items}
        except ChannelError as exc:
            return {pid: WriteOutcome("refused", error=str(exc)) for pid, _ in items}
        out: dict[str, WriteOutcome] = {}
        for product in (answer or {}).get("update") or []:
            pid = str(product.get("id"))
            error = product.get("error")
            out[pid] = (WriteOutcome("refused", error=f"{error.get('code')}: {error.get('message')}") if error
                        else WriteOutcome("confirmed", {"stock_quantity": product.get("stock_quantity")}))
        for pid, _ in items:
            out.setdefault(str(pid), WriteOutcome("failed", error="not in the batch answer; tried again next run"))
        return out

    def close(self) -> None:
        self.session.close()
