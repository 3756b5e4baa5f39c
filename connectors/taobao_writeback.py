"""Writing back to the TOP platform (issue 18): shipment confirmation and stock figures, through ``TopClient``.

- ``taobao.logistics.offline.send`` (自己联系物流发货): ``tid``, ``out_sid`` (the waybill), ``company_code``; a parcel
  carrying only some sub-orders sends ``sub_tid`` (their ``oid``, comma-separated) and ``is_split=1``. Answer
  ``logistics_offline_send_response.shipping.is_success``. The platform's "already shipped" error — code 15,
  sub_code ``isv.logistics-offline-service-error:B04`` (订单状态不对该物流订单已经发货或者已关闭，不能重复发货) — means
  an earlier call (whose answer was lost) or a person already confirmed it: done, not an error.
- ``taobao.item.quantity.update``: ``num_iid``, optional ``sku_id``, ``quantity``, ``type`` (1 full, 2 incremental);
  answer ``item_quantity_update_response.item`` (num_iid, num, modified).

Shapes: ``bububa/opentaobao`` ``model/logistic/TaobaoLogisticsOfflineSendAPIRequest.go`` / ``…Response.go`` and
``model/product/TaobaoItemQuantityUpdateAPIRequest.go``; the B04 error as public ISV code logs it
(samples under ``tests/data/formats/taobao/``).
"""

from __future__ import annotations

from dataclasses import dataclass

from connectors.base import ChannelError, TransientChannelError
from connectors.taobao import TopClient, TopError

OFFLINE_SEND = "taobao.logistics.offline.send"
QUANTITY_UPDATE = "taobao.item.quantity.update"
ALREADY_SHIPPED_SUB_CODES = frozenset({"isv.logistics-offline-service-error:B04"})


@dataclass
class WriteOutcome:
    status: str  # confirmed | already | refused (permanent: a person looks) | failed (transient: next run)
    answer: dict | None = None
    error: str | None = None


def offline_send(client: TopClient, tid: str, waybill_no: str, company_code: str,
                 sub_ids: list[str] | None = None) -> WriteOutcome:
    """Confirm one trade (or one parcel of it) shipped on the platform."""
    params = {"tid": tid, "out_sid": waybill_no, "company_code": company_code}
    if sub_ids:
        params.update(sub_tid=",".join(sub_ids), is_split=1)
    try:
        answer = client.call(OFFLINE_SEND, **params)
    except TopError as exc:
        if str(exc.sub_code or "") in ALREADY_SHIPPED_SUB_CODES:
            return WriteOutcome("already", {"sub_code": exc.sub_code, "sub_msg": exc.sub_msg})
        if isinstance(exc, TransientChannelError):
            return WriteOutcome("failed", error=str(exc))
        return WriteOutcome("refused", error=str(exc))
    except TransientChannelError as exc:
        return WriteOutcome("failed", error=str(exc))
    except ChannelError as exc:
        return WriteOutcome("refused", error=str(exc))
    shipping = (answer or {}).get("shipping") or {}
    if shipping.get("is_success") in (True, "true"):
        return WriteOutcome("confirmed", answer)
    return WriteOutcome("failed", answer, "the platform answered is_success=false; tried again next run")


def quantity_update(client: TopClient, num_iid: str, quantity: int, sku_id: str | None = None,
                    update_type: int = 1) -> WriteOutcome:
    """Set (type 1) or change (type 2) one listing's stock figure."""
    try:
        answer = client.call(QUANTITY_UPDATE, num_iid=num_iid, sku_id=sku_id, quantity=int(quantity),
                             type=update_type)
    except TransientChannelError as exc:
        return WriteOutcome("failed", error=str(exc))
    except ChannelError as exc:
        return WriteOutcome("refused", error=str(exc))
    return WriteOutcome("confirmed", answer)
