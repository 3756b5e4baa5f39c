"""The platform's refund requests: TOP ``taobao.refunds.receive.get`` (查询卖家收到的退款列表) mapped to after-sales
requests. Shape confirmed by ``tests/data/formats/taobao_refunds_receive_get_response.json``.

A refund record names the trade (``tid``: our ``channel_order_id`` on channel ``taobao``), whether the buyer
returns the goods (``has_good_return``: a return, else a refund only), the buyer's reason and words, and when the
buyer asked (``created``, Beijing time). Its ``refund_id`` is the request's identity: the same refund listed
again (the list is polled by modification time) is the same request.
"""

from __future__ import annotations

QUALITY_WORDS = ("质量", "破损", "损坏", "故障", "坏了", "划痕", "瑕疵", "不能使用", "无法使用")


def refund_requests(answer: dict) -> list[tuple[str | None, object]]:
    """(source key, request) per refund in a ``refunds_receive_get_response``; a record that is not a mapping is
    handed on as is, to be quarantined with its reason."""
    body = answer.get("refunds_receive_get_response", answer) if isinstance(answer, dict) else {}
    refunds = (body.get("refunds") or {}).get("refund") or []
    if isinstance(refunds, dict):  # one refund comes as an object, not a list, in some SDKs' JSON
        refunds = [refunds]
    out: list[tuple[str | None, object]] = []
    for n, refund in enumerate(refunds):
        if not isinstance(refund, dict) or not refund.get("refund_id") or not refund.get("tid"):
            out.append((f"unreadable#{n}", refund))
            continue
        words = f"{refund.get('reason') or ''} {refund.get('desc') or ''}"
        created = str(refund.get("created") or "").strip()
        out.append((f"refund:{refund['refund_id']}", {
            "source_id": f"refund:{refund['refund_id']}", "order_channel": "taobao",
            "channel_order_id": str(refund["tid"]),
            "kind": "return" if refund.get("has_good_return") else "refund_only",
            "quality_problem": any(w in words for w in QUALITY_WORDS),
            "description": words.strip(), "requested_at": f"{created.replace(' ', 'T')}+08:00" if created else None,
        }))  # fmt: skip
    return out
