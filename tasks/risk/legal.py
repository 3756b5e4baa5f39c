"""Legal and compliance rules (K4, P1): the catalogue, each rule with a code, a plain description and its legal
basis, and pure checks over frames the store loads (``legal_store``). A violation becomes a finding.

The Contract Law the measures mention was replaced by the Civil Code on 2021-01-01; carriage is cited from the
Civil Code (《中华人民共和国民法典》第八百三十二条).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import pandas as pd

from yidi.risk_policy import RiskPolicy


@dataclass(frozen=True)
class LegalRule:
    code: str
    title: str
    description: str
    citation: str
    severity: str = "high"


RULES = [
    LegalRule("CPL25_REFUND_7D", "退货后七日内退款",
              "Goods returned under the no-reason return right are refunded within 7 days of the seller receiving "
              "them.", "《中华人民共和国消费者权益保护法》第二十五条"),
    LegalRule("ECL20_DELIVERY_PROMISED", "按承诺的时限交付",
              "Goods are delivered in the way and within the time promised to the consumer.",
              "《中华人民共和国电子商务法》第二十条", "medium"),
    LegalRule("ECL20_TRANSPORT_RISK", "运输风险由经营者承担",
              "Loss or damage in transit is the seller's risk unless the consumer chose the carrier: the customer "
              "gets an after-sales remedy.", "《中华人民共和国电子商务法》第二十条"),
    LegalRule("ECL14_INVOICE", "出具发票等购货凭证",
              "An invoice or other purchase voucher is issued for every paid order.",
              "《中华人民共和国电子商务法》第十四条", "medium"),
    LegalRule("CC832_CARRIER_CLAIM", "承运人对运输中的毁损、灭失承担赔偿责任",
              "Loss or damage in transit is claimed from the carrier, who is liable for it.",
              "《中华人民共和国民法典》第八百三十二条", "medium"),
    LegalRule("PIPL19_RETENTION", "个人信息保存期限为实现处理目的所必要的最短时间",
              "Personal fields of finished orders are not kept beyond the retention period (anonymised).",
              "《中华人民共和国个人信息保护法》第十九条"),
]  # fmt: skip
RULES_BY_CODE = {rule.code: rule for rule in RULES}
VIOLATION_COLUMNS = ["rule", "order_id", "summary"]
FINISHED_STATES = ("closed", "settled", "cancelled", "rejected", "auto_rejected")


def _violations(code: str, order_ids, summaries) -> pd.DataFrame:
    return pd.DataFrame({"rule": code, "order_id": list(order_ids), "summary": list(summaries)})


def refund_late(returns: pd.DataFrame, now: datetime, policy: RiskPolicy) -> pd.DataFrame:
    """``returns``: order_id, goods_back_at (first inspection of returned goods), refunded_at (NaT if none yet)."""
    limit = pd.to_timedelta(policy.refund_days, unit="D")
    back = pd.to_datetime(returns["goods_back_at"], utc=True)
    refunded = pd.to_datetime(returns["refunded_at"], utc=True)
    late = (refunded - back > limit) | (refunded.isna() & (pd.Timestamp(now) - back > limit))
    hit = returns[late.fillna(False)]
    return _violations("CPL25_REFUND_7D", hit["order_id"],
                       [f"goods back {b:%Y-%m-%d}, refund {'not yet' if pd.isna(r) else f'{r:%Y-%m-%d}'}"
                        for b, r in zip(back[late.fillna(False)], refunded[late.fillna(False)], strict=True)])  # fmt: skip


def delivery_late(orders: pd.DataFrame, today: date) -> pd.DataFrame:
    """``orders``: order_id, promised_date, delivered_day (business date or NaT), shipped (bool)."""
    promised = pd.to_datetime(orders["promised_date"])
    delivered = pd.to_datetime(orders["delivered_day"])
    late = (delivered > promised) | (
        delivered.isna() & orders["shipped"].astype(bool) & (promised < pd.Timestamp(today))
    )
    late = late.fillna(False) & promised.notna()
    hit = orders[late]
    return _violations("ECL20_DELIVERY_PROMISED", hit["order_id"],
                       [f"promised {p:%Y-%m-%d}, delivered {'not yet' if pd.isna(d) else f'{d:%Y-%m-%d}'}"
                        for p, d in zip(promised[late], delivered[late], strict=True)])  # fmt: skip


def transport_risk(incidents: pd.DataFrame, now: datetime, grace_days: int = 7) -> pd.DataFrame:
    """``incidents``: order_id, incident_type (lost|damaged), opened_at, has_case (an after-sales case on the
    order), customer_chose_carrier. Without a remedy after ``grace_days`` the seller is not carrying the risk."""
    old = pd.to_datetime(incidents["opened_at"], utc=True) < pd.Timestamp(now) - timedelta(days=grace_days)
    hit = incidents[
        old & ~incidents["has_case"].astype(bool) & ~incidents["customer_chose_carrier"].astype(bool)
    ]
    return _violations(
        "ECL20_TRANSPORT_RISK",
        hit["order_id"],
        [f"{t} in transit, no after-sales remedy for the customer" for t in hit["incident_type"]],
    )


def carrier_claim_missing(incidents: pd.DataFrame, now: datetime, grace_days: int = 7) -> pd.DataFrame:
    """``incidents`` as above with ``has_claim`` (a liability claim on the shipment)."""
    old = pd.to_datetime(incidents["opened_at"], utc=True) < pd.Timestamp(now) - timedelta(days=grace_days)
    hit = incidents[old & ~incidents["has_claim"].astype(bool)]
    return _violations(
        "CC832_CARRIER_CLAIM",
        hit["order_id"],
        [f"{t} in transit, no claim against the carrier" for t in hit["incident_type"]],
    )


def invoice_missing(paid: pd.DataFrame, now: datetime, policy: RiskPolicy) -> pd.DataFrame:
    """``paid``: order_id, paid_since (when the order became paid or was delivered), has_invoice."""
    old = pd.to_datetime(paid["paid_since"], utc=True) < pd.Timestamp(now) - timedelta(
        days=policy.invoice_days
    )
    hit = paid[old.fillna(False) & ~paid["has_invoice"].astype(bool)]
    return _violations(
        "ECL14_INVOICE",
        hit["order_id"],
        [f"paid/delivered more than {policy.invoice_days} days ago, no invoice"] * len(hit),
    )


def retention_exceeded(finished: pd.DataFrame, now: datetime, policy: RiskPolicy) -> pd.DataFrame:
    """``finished``: order_id, finished_at, has_personal (name, phone, email or street still stored)."""
    old = pd.to_datetime(finished["finished_at"], utc=True) < pd.Timestamp(now) - timedelta(
        days=policy.retention_days
    )
    hit = finished[old.fillna(False) & finished["has_personal"].astype(bool)]
    return _violations(
        "PIPL19_RETENTION",
        hit["order_id"],
        [f"personal fields kept beyond {policy.retention_days} days"] * len(hit),
    )
