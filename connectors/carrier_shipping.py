"""Carrier shipment creation (e-waybill, 电子面单) over HTTP JSON, exactly once per shipment.

Format (the gateway every carrier is reached through; the stand-in speaks exactly this):

``POST {base}/v1/waybills`` with headers ``Authorization: Bearer <token>`` (``YIDI_CARRIER_API_TOKEN``),
``Idempotency-Key: <key>`` (required, ≤ 100 chars; ours is derived from the shipment number) and a JSON body::

    {
      "carrier": "shunfeng",                 # Kuaidi100 carrier code
      "service": "顺丰标快",
      "order_ref": "YD0000000123-1",         # our shipment number
      "sender":    {"name", "phone", "province", "city", "district", "address"},
      "recipient": {"name", "phone", "province", "city", "district", "address", "postcode"},
      "parcel":    {"weight_kg": 3.5, "volume_m3": 0.02, "pieces": 1},
      "goods":     [{"name": "摩托车头盔", "quantity": 2, "unit": "顶"}],
      "declared_value": "378.00",            # yuan as a decimal string
      "insured": true,
      "cod_amount": "0.00",                  # yuan; cash to collect on delivery
      "remark": "…"
    }

Answers:

- ``201`` ``{"waybill_no", "carrier", "order_ref", "sort_code", "created_at"}`` — created;
- ``200`` with ``Idempotent-Replayed: true`` — the key was seen with the same body: the *same* waybill again;
- ``409`` ``{"error": "idempotency_key_reused"}`` — the key was used with a different body;
- ``401``/``422`` ``{"error", "message"}`` — refused (bad token, invalid request): not retried;
- ``429`` (``Retry-After``) and ``5xx`` — transient: retried with the same key, as are timeouts and connections
  dropped before the answer (the carrier may have created the waybill; the replay returns it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from connectors.idempotent_post import (
    IdempotentJsonClient,
    ProviderRejected,
    ProviderUnavailable,
    post_idempotent,
)

__all__ = ["CarrierRejected", "CarrierShippingClient", "CarrierUnavailable", "Waybill"]

CarrierRejected = ProviderRejected
CarrierUnavailable = ProviderUnavailable
TOKEN_ENV = "YIDI_CARRIER_API_TOKEN"


@dataclass(frozen=True)
class Waybill:
    waybill_no: str
    carrier: str
    created_at: datetime | None
    sort_code: str | None
    attempts: int
    replayed: bool


class CarrierShippingClient(IdempotentJsonClient):
    token_env = TOKEN_ENV

    def create_waybill(self, request: dict, idempotency_key: str) -> Waybill:
        """Create (or get back) the waybill for this shipment; raises CarrierRejected / CarrierUnavailable."""
        result = post_idempotent(
            self.session,
            f"{self.base_url}/v1/waybills",
            request,
            idempotency_key=idempotency_key,
            token=self.token,
            timeout=self.timeout,
            attempts=self.attempts,
            backoff_seconds=self.backoff_seconds,
        )
        body = result.body
        waybill = str(body.get("waybill_no") or "").strip()
        if not waybill:
            raise CarrierRejected(result.status, "no_waybill", "the answer carries no waybill_no")
        created = body.get("created_at")
        return Waybill(
            waybill_no=waybill,
            carrier=str(body.get("carrier") or request.get("carrier")),
            created_at=datetime.fromisoformat(created.replace("Z", "+00:00")) if created else None,
            sort_code=body.get("sort_code"),
            attempts=result.attempts,
            replayed=result.replayed,
        )
