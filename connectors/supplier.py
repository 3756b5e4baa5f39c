"""Purchase orders to suppliers (F2) over HTTP JSON, exactly once per purchase order.

Format (a purchasing gateway shared by our suppliers; the stand-in speaks exactly this):

``POST {base}/v1/purchase-orders`` with ``Authorization: Bearer <token>`` (``YIDI_SUPPLIER_API_TOKEN``),
``Idempotency-Key: <po_no>`` and a JSON body::

    {
      "po_no": "PO-20261127-0001",
      "supplier_code": "SUP-01",
      "buyer": {"company", "contact", "phone"},
      "ship_to": {"warehouse", "name", "province", "city", "district", "address", "contact", "phone"},
      "currency": "CNY",
      "lines": [{"line_no": 1, "item_code": "SKU-0006", "quantity": 3, "unit_price": "4200.00",
                 "required_date": "2026-12-04"}]
    }

Answers: ``201`` ``{"po_no", "supplier_order_id", "status": "accepted", "lines": [{"line_no",
"confirmed_quantity", "confirmed_date"}]}``; a replay of the same key and body returns the same answer with
``Idempotent-Replayed: true``; ``409`` key reused with another body; ``401``/``422`` refused (not retried);
``429``/``5xx``/timeouts/dropped connections retried with the same key.
"""

from __future__ import annotations

from dataclasses import dataclass

from connectors.idempotent_post import (
    IdempotentJsonClient,
    ProviderRejected,
    ProviderUnavailable,
    post_idempotent,
)

__all__ = ["PurchaseOrderAck", "SupplierClient", "SupplierRejected", "SupplierUnavailable"]

SupplierRejected = ProviderRejected
SupplierUnavailable = ProviderUnavailable
TOKEN_ENV = "YIDI_SUPPLIER_API_TOKEN"


@dataclass(frozen=True)
class PurchaseOrderAck:
    po_no: str
    supplier_order_id: str
    status: str
    lines: list[dict]
    attempts: int
    replayed: bool


class SupplierClient(IdempotentJsonClient):
    token_env = TOKEN_ENV

    def send_purchase_order(self, purchase_order: dict) -> PurchaseOrderAck:
        result = post_idempotent(
            self.session,
            f"{self.base_url}/v1/purchase-orders",
            purchase_order,
            idempotency_key=purchase_order["po_no"],
            token=self.token,
            timeout=self.timeout,
            attempts=self.attempts,
            backoff_seconds=self.backoff_seconds,
        )
        body = result.body
        return PurchaseOrderAck(
            po_no=str(body.get("po_no") or purchase_order["po_no"]),
            supplier_order_id=str(body.get("supplier_order_id") or ""),
            status=str(body.get("status") or "accepted"),
            lines=list(body.get("lines") or []),
            attempts=result.attempts,
            replayed=result.replayed,
        )
