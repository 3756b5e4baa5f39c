"""Review reason codes (V1–V4): stable codes, their area, default severity, and Chinese and English messages.

The codes are an interface: findings in the store, the customer notices and the KPI reports refer to them, so a
code is never renamed or reused. The severity a code carries comes from the policy file (``[review.severity]``);
the default here applies only when the policy omits the code. Chinese messages are written for the customer
(they appear in rejection notices); English ones for operators and logs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["reject", "needs_review", "note"]
SEVERITIES: tuple[Severity, ...] = ("reject", "needs_review", "note")


@dataclass(frozen=True)
class Reason:
    code: str
    area: str  # V1 customer, V2 product/service, V3 price & payment, V4 validity
    default_severity: Severity
    zh: str
    en: str


_REASONS = [
    # V1 customer
    Reason("CUSTOMER_NAME_MISSING", "V1", "reject", "订单缺少收货人姓名", "customer name missing"),
    Reason("CUSTOMER_NAME_IMPLAUSIBLE", "V1", "needs_review", "收货人姓名不像真实姓名或单位名称",
           "customer name is not a plausible person or company name"),
    Reason("PHONE_MISSING", "V1", "reject", "订单缺少联系电话", "contact phone missing"),
    Reason("PHONE_INVALID", "V1", "reject", "联系电话无效（须为有效的手机号码或固定电话）",
           "contact phone is not a valid mainland mobile or landline number"),
    Reason("PHONE_SERVICE_NUMBER", "V1", "needs_review", "联系电话为400/800客服号码，无法联系到收货人",
           "contact phone is a 400/800 service number"),
    Reason("ADDRESS_INCOMPLETE", "V1", "reject", "收货地址不完整（须包含省、市、区县和详细地址）",
           "delivery address incomplete (province, city, district and street detail required)"),
    Reason("REGION_UNKNOWN", "V1", "needs_review", "无法确定收货地址是否在重庆市外",
           "remote/local classification unknown"),
    Reason("REGION_LOCAL", "V1", "note", "收货地址在重庆市内（非异地订单）", "delivery inside Chongqing (not remote)"),
    Reason("CREDIT_LIMIT_EXCEEDED", "V1", "needs_review", "客户信用额度不足",
           "credit exposure (open orders + receivables) above the credit limit"),
    Reason("CREDIT_OVERDUE", "V1", "needs_review", "客户存在逾期未付款项", "customer has overdue amounts"),
    Reason("CREDIT_GRADE_REVIEW", "V1", "needs_review", "客户信用等级要求每单人工审核",
           "the customer's credit grade requires manual review of every order"),
    Reason("CREDIT_GUARANTEE_REQUIRED", "V1", "needs_review", "客户信用等级要求提供担保",
           "the customer's credit grade requires a guarantee"),
    Reason("CREDIT_GRADE_COD_REFUSED", "V1", "reject", "根据您的信用等级，暂不支持货到付款，请选择其他付款方式",
           "cash on delivery not allowed for the customer's credit grade"),
    Reason("CREDIT_GRADE_INSTALLMENTS_REFUSED", "V1", "reject", "根据您的信用等级，暂不支持分期付款，请选择其他付款方式",
           "installments not allowed for the customer's credit grade"),
    Reason("CREDIT_PREPAYMENT_REQUIRED", "V1", "needs_review", "根据信用等级，发货前须按比例预付货款",
           "the customer's credit grade requires a prepayment before shipment"),
    # V2 product or service
    Reason("ORDER_NO_LINES", "V2", "reject", "订单没有商品或服务明细", "order has no lines"),
    Reason("ITEM_UNKNOWN", "V2", "reject", "商品或服务编码在目录中不存在", "item code not in the catalog"),
    Reason("ITEM_INACTIVE", "V2", "reject", "商品或服务已停售", "item is no longer sold"),
    Reason("ITEM_KIND_MISMATCH", "V2", "needs_review", "商品/服务类型与目录不一致",
           "product/service kind differs from the catalog"),
    Reason("ITEM_NAME_MISMATCH", "V2", "needs_review", "商品名称与目录不一致", "item name differs from the catalog"),
    Reason("ITEM_SPEC_MISMATCH", "V2", "needs_review", "商品规格与目录不一致",
           "item specification differs from the catalog"),
    Reason("ITEM_MODEL_MISMATCH", "V2", "needs_review", "商品型号与目录不一致", "item model differs from the catalog"),
    Reason("QUANTITY_INVALID", "V2", "reject", "购买数量无效（须为正数，按件计的商品须为整数）",
           "quantity not positive, or a fraction of a countable unit"),
    Reason("QUANTITY_OUT_OF_LIMITS", "V2", "reject", "购买数量超出该商品的起订量或单笔最大量",
           "quantity outside the item's minimum/maximum order quantity"),
    # V3 price and payment
    Reason("PRICE_OUT_OF_TOLERANCE", "V3", "needs_review", "商品单价与价格政策不符",
           "unit price outside the pricing tolerance of the list/promotion price"),
    Reason("LINE_TOTAL_MISMATCH", "V3", "reject", "商品小计与数量、单价、优惠不一致",
           "line total differs from quantity x unit price - discount"),
    Reason("ORDER_TOTAL_MISMATCH", "V3", "reject", "订单金额与明细、优惠、运费合计不一致",
           "order totals do not add up (lines, discount, freight)"),
    Reason("CURRENCY_UNSUPPORTED", "V3", "reject", "不支持该结算币种", "currency not supported"),
    Reason("PAYMENT_METHOD_NOT_ALLOWED", "V3", "reject", "付款方式不在允许范围内", "payment method not allowed"),
    Reason("PAYMENT_SPECIAL_REVIEW", "V3", "needs_review", "货到付款或分期付款订单须人工审核",
           "cash on delivery / installments: manual review required"),
    Reason("COD_OVER_LIMIT", "V3", "reject", "货到付款金额超过单笔限额", "cash on delivery above the per-order limit"),
    Reason("INSTALLMENTS_OVER_MAX", "V3", "reject", "分期期数超过允许的最大期数",
           "more installments than allowed"),
    Reason("INSTALLMENT_FIRST_PAYMENT_LOW", "V3", "reject", "分期首付比例低于规定",
           "first installment below the required share of the total"),
    # V4 validity
    Reason("CUSTOMER_BLOCKED", "V4", "reject", "该客户账户已被冻结，暂不能下单", "customer is blocked"),
    Reason("PURCHASE_LIMIT_EXCEEDED", "V4", "reject", "超过该商品的限购数量", "purchase limit exceeded"),
    Reason("PROMOTION_OUTSIDE_WINDOW", "V4", "reject", "促销价不在促销活动时间内",
           "promotion price claimed outside the promotion's dates"),
    Reason("PROMOTION_ITEM_INELIGIBLE", "V4", "reject", "该商品不参加此促销活动",
           "promotion price claimed for an item the promotion excludes"),
    Reason("TEXT_IS_FORMULA", "V4", "needs_review", "订单中的姓名、地址或商品名称是电子表格公式（以“=”开头），请人工核对",
           "a name, address or item text is a spreadsheet formula (begins with '='): check what was meant"),
]  # fmt: skip

REASONS: dict[str, Reason] = {reason.code: reason for reason in _REASONS}


def severity_of(code: str, overrides: dict[str, str]) -> Severity:
    return overrides.get(code, REASONS[code].default_severity)  # type: ignore[return-value]


def check_policy_codes(overrides: dict[str, str]) -> None:
    """A severity for an unknown code is a typo in the policy file: refuse it, naming the key."""
    from yidi.settings import SettingsError

    unknown = sorted(set(overrides) - set(REASONS))
    if unknown:
        raise SettingsError(f"review.severity: unknown reason codes {unknown}; known: {sorted(REASONS)}")
