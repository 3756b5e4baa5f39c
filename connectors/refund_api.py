"""What a payment provider's refund interface answers, in yidi's terms, shared by ``connectors.alipay_refund`` and
``connectors.wechatpay_refund`` (one module per provider; this is only their common vocabulary)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RefundAnswer:
    provider_refund_id: str  # Alipay trade_no + out_request_no / WeChat Pay refund_id
    amount_fen: int  # what this refund returns to the customer
    status: str  # succeeded | processing
    raw: dict


class RefundRejected(RuntimeError):
    """The provider refused the refund (wrong trade, amount too high…): retrying the same request cannot help."""


class RefundUnavailable(RuntimeError):
    """No answer or a transient failure: try again later with the SAME request number (never a new one)."""
