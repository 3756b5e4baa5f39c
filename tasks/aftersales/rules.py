"""After-sales rules (A3, P1) as pure functions: the assessment of a request against the policy and the law, and
the working-day/working-hour arithmetic of refunds. No database, no clock: the caller passes ``today``.

The law (《中华人民共和国消费者权益保护法》):

- 第二十五条 no-reason return: goods bought online, by phone or by mail may be returned within seven days of
  receipt without a reason, except goods made to order, fresh and perishable goods, digital goods downloaded or
  unsealed, newspapers and periodicals, and goods the customer confirmed as non-returnable at purchase; the goods
  come back in good condition, the consumer pays the return freight unless agreed otherwise, and the price is
  refunded within seven days of receiving the returned goods. The seven days count from the day after receipt
  (《网络购买商品七日无理由退货暂行办法》第七条), on the calendar in Asia/Shanghai: delivered on the 1st, the 8th is
  the last day.
- 第二十四条 quality: goods that do not meet quality requirements may be returned within seven days of receipt;
  after that, returned where the conditions for ending the contract are met (here: the policy's number of failed
  repairs), otherwise replaced or repaired; the company pays transport and other necessary costs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import pandas as pd

from yidi.aftersales_policy import AftersalesPolicy

KINDS = ("return", "exchange", "repair", "refund_only", "installation_problem")
KIND_WORDS = {
    "return": "return", "退货": "return", "退货退款": "return", "exchange": "exchange", "换货": "exchange",
    "repair": "repair", "维修": "repair", "返修": "repair", "refund_only": "refund_only", "仅退款": "refund_only",
    "refund": "refund_only", "退款": "refund_only", "installation_problem": "installation_problem",
    "安装问题": "installation_problem", "调试问题": "installation_problem", "安装调试": "installation_problem",
}  # fmt: skip

LAW = "《中华人民共和国消费者权益保护法》"
ART24 = (
    f"{LAW}第二十四条：商品不符合质量要求的，没有国家规定和当事人约定的，消费者可以自收到商品之日起七日内退货；"
    "七日后符合法定解除合同条件的，消费者可以及时退货，不符合法定解除合同条件的，可以要求经营者履行更换、修理等义务。"
    "进行退货、更换、修理的，经营者应当承担运输等必要费用。"
)
ART25 = (
    f"{LAW}第二十五条：经营者采用网络、电视、电话、邮购等方式销售商品，消费者有权自收到商品之日起七日内退货，"
    "且无需说明理由；消费者退货的商品应当完好；经营者应当自收到退回商品之日起七日内返还消费者支付的商品价款；"
    "退回商品的运费由消费者承担，经营者和消费者另有约定的，按照约定。"
)
ART25_EXCEPTIONS = {
    "made_to_order": f"{LAW}第二十五条第一款第（一）项：消费者定作的商品不适用七日无理由退货。",
    "fresh_perishable": f"{LAW}第二十五条第一款第（二）项：鲜活易腐的商品不适用七日无理由退货。",
    "digital_unsealed": f"{LAW}第二十五条第一款第（三）项：在线下载或者消费者拆封的音像制品、计算机软件等数字化商品"
    "不适用七日无理由退货。",
    "periodicals": f"{LAW}第二十五条第一款第（四）项：交付的报纸、期刊不适用七日无理由退货。",
    "confirmed_non_returnable": f"{LAW}第二十五条第二款：根据商品性质并经消费者在购买时确认不宜退货的商品，"
    "不适用无理由退货。",
}
POLICY = "公司售后服务政策（yidi 政策文件 [aftersales]）"
EXCEPTION_NAMES = {
    "made_to_order": "定作商品", "fresh_perishable": "鲜活易腐商品", "digital_unsealed": "已下载或拆封的数字化商品",
    "periodicals": "报纸、期刊", "confirmed_non_returnable": "购买时已确认不宜退货的商品",
}  # fmt: skip
DECISION_NAMES = {"return": "退货退款", "exchange": "换货", "repair": "维修", "refund": "退款", "reject": "不予受理"}


@dataclass(frozen=True)
class Decision:
    decision: str  # return | exchange | repair | refund | reject
    rule: str  # stable code, e.g. NO_REASON_RETURN_7D
    citation: str
    text: str  # what the customer reads
    freight_payer: str | None  # customer | company | None (nothing travels)


def normalise_kind(value) -> str | None:
    """A request type in our spelling, from ours or the channels' words (退货, 仅退款, …); None when unknown."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    return KIND_WORDS.get(str(value).strip().lower()) or KIND_WORDS.get(str(value).strip())


def item_categories(item_codes: list[str], policy: AftersalesPolicy) -> set[str]:
    by_item = {code: cat for cat, codes in policy.categories.items() for code in codes}
    return {by_item[c] for c in item_codes if c in by_item}


def warranty_months(item_codes: list[str], policy: AftersalesPolicy) -> int:
    """The shortest warranty among the items concerned (a case is decided for all its lines together)."""
    months = [policy.warranty_months.get(cat, policy.default_warranty_months)
              for cat in item_categories(item_codes, policy)]  # fmt: skip
    uncategorised = [c for c in item_codes if not item_categories([c], policy)]
    if uncategorised:
        months.append(policy.default_warranty_months)
    return min(months) if months else policy.default_warranty_months


def add_months(day: date, months: int) -> date:
    year, month = divmod(day.month - 1 + months, 12)
    year, month = day.year + year, month + 1
    for last in (31, 30, 29, 28):
        try:
            return date(year, month, min(day.day, last))
        except ValueError:
            continue
    raise ValueError(day)  # pragma: no cover - some day of every month exists


def statutory_exception(
    item_codes: list[str], goods_opened: bool, policy: AftersalesPolicy
) -> str | None:
    """The first statutory exception (第二十五条) that covers any of the items, or None."""
    cats = item_categories(item_codes, policy)
    for code in ("made_to_order", "fresh_perishable", "digital_unsealed", "periodicals"):
        covered = set(policy.statutory_exceptions.get(code, [])) & cats
        if covered and (code != "digital_unsealed" or goods_opened):
            return code
    if set(item_codes) & set(policy.confirmed_non_returnable_items):
        return "confirmed_non_returnable"
    return None


def days_since_receipt(received: date | None, asked: date) -> int | None:
    """Calendar days from receipt to the request: the day after receipt is day 1 (暂行办法第七条)."""
    return None if received is None else (asked - received).days


def assess(
    *,
    kind: str,
    quality_problem: bool,
    goods_opened: bool,
    asked_on: date,
    received_on: date | None,
    item_codes: list[str],
    customer_kind: str | None,
    channel: str,
    failed_repairs: int,
    policy: AftersalesPolicy,
) -> Decision:
    """Decide one request. ``asked_on`` and ``received_on`` are Asia/Shanghai calendar dates."""
    days = days_since_receipt(received_on, asked_on)
    warranty = warranty_months(item_codes, policy)
    in_warranty = received_on is not None and asked_on <= add_months(received_on, warranty)
    if kind == "installation_problem":
        return Decision("repair", "INSTALLATION_REVISIT", POLICY,
                        "安装或调试问题：安排技术人员免费上门处理。", None)  # fmt: skip
    if received_on is None:
        if kind == "refund_only":
            return Decision("refund", "REFUND_BEFORE_RECEIPT", POLICY,
                            "商品尚未签收：取消发货并全额退款。", None)  # fmt: skip
        return Decision("reject", "NOT_RECEIVED", POLICY,
                        "商品尚未签收，暂不能办理退换货或维修；如不再需要可申请仅退款。", None)  # fmt: skip
    if kind == "repair":
        if in_warranty:
            return Decision("repair", "WARRANTY_REPAIR", f"{ART24}（保修期 {warranty} 个月）",
                            f"在保修期（{warranty} 个月）内：免费维修，往返运费由我方承担。", "company")  # fmt: skip
        return Decision("repair", "PAID_REPAIR", f"{POLICY}（保修期 {warranty} 个月已过）",
                        f"已超过保修期（{warranty} 个月）：可提供有偿维修，费用确认后安排。", "customer")  # fmt: skip
    if quality_problem:
        if days <= policy.quality_return_days:
            if kind == "exchange":
                return Decision("exchange", "QUALITY_EXCHANGE_7D", ART24,
                                f"质量问题，签收后第 {days} 天申请：为您换货，运费由我方承担。", "company")  # fmt: skip
            return Decision("return", "QUALITY_RETURN_7D", ART24,
                            f"质量问题，签收后第 {days} 天申请（{policy.quality_return_days} 天内）：可退货退款，"
                            "运费由我方承担。", "company")  # fmt: skip
        if failed_repairs >= policy.termination_after_failed_repairs:
            return Decision("return", "QUALITY_RETURN_TERMINATION", ART24,
                            f"质量问题，已维修 {failed_repairs} 次仍未解决，符合解除合同条件：可退货退款，"
                            "运费由我方承担。", "company")  # fmt: skip
        if not in_warranty:
            return Decision("reject", "QUALITY_OUT_OF_WARRANTY", f"{POLICY}（保修期 {warranty} 个月）",
                            f"签收已超过 {policy.quality_return_days} 天且超过保修期（{warranty} 个月），"
                            "可提供有偿维修。", None)  # fmt: skip
        if kind == "exchange":
            return Decision("exchange", "QUALITY_REPLACE", ART24,
                            f"质量问题，签收后第 {days} 天申请（已超过 {policy.quality_return_days} 天）："
                            "为您更换，运费由我方承担。", "company")  # fmt: skip
        return Decision("repair", "QUALITY_REPAIR", ART24,
                        f"质量问题，签收后第 {days} 天申请（已超过 {policy.quality_return_days} 天，"
                        "不符合解除合同条件）：为您免费维修，运费由我方承担。", "company")  # fmt: skip
    # no quality problem: the no-reason return is the only way back
    if customer_kind not in policy.no_reason_customer_kinds or channel not in policy.distance_channels:
        return Decision("reject", "NO_REASON_NOT_APPLICABLE", ART25,
                        "七日无理由退货仅适用于消费者通过网络、电话、邮购等方式购买的商品；本单按合同约定处理。",
                        None)  # fmt: skip
    exception = statutory_exception(item_codes, goods_opened, policy)
    if exception is not None:
        return Decision("reject", f"NO_REASON_EXCEPTION_{exception.upper()}", ART25_EXCEPTIONS[exception],
                        f"{EXCEPTION_NAMES[exception]}不适用七日无理由退货；如有质量问题请说明，我们按质量问题处理。",
                        None)  # fmt: skip
    if days > policy.no_reason_return_days:
        return Decision("reject", "NO_REASON_WINDOW_PASSED", ART25,
                        f"签收后第 {days} 天申请，已超过 {policy.no_reason_return_days} 天无理由退货期限；"
                        "如有质量问题请说明。", None)  # fmt: skip
    payer = policy.no_reason_freight_payer
    payer_text = "退回运费由您承担" if payer == "customer" else "退回运费由我方承担"
    decided = "exchange" if kind == "exchange" else "return"
    return Decision(decided, "NO_REASON_RETURN_7D", ART25,
                    f"签收后第 {days} 天申请（{policy.no_reason_return_days} 天内）：可无理由"
                    f"{'换货' if decided == 'exchange' else '退货'}，商品应完好，{payer_text}。", payer)  # fmt: skip


def refund_due_date(received_back: date, policy: AftersalesPolicy) -> date:
    """第二十五条: the price goes back within seven (calendar) days of receiving the returned goods."""
    return received_back + timedelta(days=policy.refund_within_days)


def refund_route(payment_method: str | None, policy: AftersalesPolicy) -> str:
    return policy.refund_routes.get(str(payment_method or ""), "bank_transfer")
