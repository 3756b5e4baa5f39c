"""The website's refunds: WooCommerce REST v3 ``GET /wp-json/wc/v3/orders/<id>/refunds`` mapped to after-sales
requests, as ``connectors/taobao_refunds.py`` does for the platform. Shape confirmed by
``tests/data/formats/woocommerce/order-refunds.json`` (the order-refunds page of the WooCommerce REST docs).

A refund names its order by the URL (``<id>``: our ``channel_order_id`` on channel ``website``); returned
goods are its ``line_items`` (negative quantities, ``sku`` our item code): with lines it is a return, without a
refund only. ``date_created_gmt`` is UTC without a zone. Its ``id`` is the request's identity, so the same refund
read again is the same request. The refund as the shop sent it is kept inside the record (``raw``).
"""

from __future__ import annotations

import json

import requests

from connectors.taobao_refunds import QUALITY_WORDS
from connectors.woocommerce import ORDERS_PATH


def refund_requests(wc_order_id: int | str, answer: object) -> list[tuple[str | None, object]]:
    """(source key, request) per refund in the answer for one order; anything unreadable is handed on as is, to be
    quarantined with its reason."""
    if not isinstance(answer, list):
        return [(f"order:{wc_order_id}:unreadable", answer)]
    out: list[tuple[str | None, object]] = []
    for n, refund in enumerate(answer):
        if not isinstance(refund, dict) or not refund.get("id"):
            out.append((f"order:{wc_order_id}:unreadable#{n}", refund))
            continue
        lines = [i for i in refund.get("line_items") or [] if isinstance(i, dict)]
        items = [{"item_code": str(i["sku"]), "quantity": abs(float(i.get("quantity") or 0))}
                 for i in lines if i.get("sku") and float(i.get("quantity") or 0)]  # fmt: skip
        reason = str(refund.get("reason") or "").strip()
        created = str(refund.get("date_created_gmt") or "").strip()
        out.append((f"refund:{refund['id']}", {
            "source_id": f"refund:{refund['id']}", "order_channel": "website",
            "channel_order_id": str(wc_order_id), "kind": "return" if items else "refund_only", "items": items,
            "quality_problem": any(w in reason for w in QUALITY_WORDS), "description": reason or "网站退款",
            "requested_at": f"{created}+00:00" if created else None, "raw": refund,
        }))  # fmt: skip
    return out


class WooRefundsClient:
    """Reads one order's refunds over HTTP (Basic auth with the consumer key and secret, as the orders API)."""

    def __init__(self, url: str, key: str, secret: str, *, timeout: float = 20.0) -> None:
        self.base = url.rstrip("/") + ORDERS_PATH
        self.session = requests.Session()
        self.session.auth = (key, secret)
        self.timeout = timeout

    def order_refunds(self, wc_order_id: int | str) -> object:
        """The decoded answer; an answer that is not JSON comes back as its text (kept and quarantined)."""
        response = self.session.get(f"{self.base}/{wc_order_id}/refunds", timeout=self.timeout)
        response.raise_for_status()
        try:
            return response.json()
        except json.JSONDecodeError:
            return response.text

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> WooRefundsClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
