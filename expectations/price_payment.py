"""V3 price and payment: unit prices within the pricing tolerance of the list or promotion price, totals that add
up, an allowed payment method, and the strict checks of cash on delivery and installments (which always go to a
person as well).

``max_price_deviation_pct`` is the largest absolute deviation of an order's lines from their expected price
(promotion applied; lines explained by a promotion claim are judged by the V4 promotion rules instead).
``cod_amount_fen`` / ``installment_count`` / ``first_installment_ratio`` are empty unless the order pays that way.
"""

from __future__ import annotations

import great_expectations.expectations as gxe

from expectations._tag import tagged

SUITE = "review_v3_price_payment"
COLUMNS = ["max_price_deviation_pct", "line_total_mismatch_lines", "total_diff_fen", "currency",
           "payment_method", "cod_amount_fen", "installment_count", "first_installment_ratio"]  # fmt: skip


def build(settings) -> list:
    payment, pricing = settings.payment, settings.pricing
    return [
        tagged(gxe.ExpectColumnValuesToBeBetween, "V3.price.tolerance", "PRICE_OUT_OF_TOLERANCE", settings,
               column="max_price_deviation_pct", max_value=float(pricing.tolerance_pct)),
        tagged(gxe.ExpectColumnValuesToBeBetween, "V3.total.lines", "LINE_TOTAL_MISMATCH", settings,
               column="line_total_mismatch_lines", max_value=0),
        tagged(gxe.ExpectColumnValuesToBeBetween, "V3.total.order", "ORDER_TOTAL_MISMATCH", settings,
               column="total_diff_fen", max_value=int(pricing.rounding_tolerance_fen)),
        tagged(gxe.ExpectColumnValuesToBeInSet, "V3.currency", "CURRENCY_UNSUPPORTED", settings,
               column="currency", value_set=[settings.general.currency]),
        tagged(gxe.ExpectColumnValuesToBeInSet, "V3.payment.allowed", "PAYMENT_METHOD_NOT_ALLOWED", settings,
               column="payment_method", value_set=list(payment.allowed_methods)),
        tagged(gxe.ExpectColumnValuesToNotBeInSet, "V3.payment.special", "PAYMENT_SPECIAL_REVIEW", settings,
               column="payment_method", value_set=list(payment.special_methods)),
        tagged(gxe.ExpectColumnValuesToBeBetween, "V3.cod.limit", "COD_OVER_LIMIT", settings,
               column="cod_amount_fen", max_value=float(payment.cod_limit_yuan * 100)),
        tagged(gxe.ExpectColumnValuesToBeBetween, "V3.installments.count", "INSTALLMENTS_OVER_MAX", settings,
               column="installment_count", min_value=1.0, max_value=float(payment.max_installments)),
        tagged(gxe.ExpectColumnValuesToBeBetween, "V3.installments.first_payment", "INSTALLMENT_FIRST_PAYMENT_LOW",
               settings, column="first_installment_ratio", min_value=float(payment.min_first_installment_ratio)),
    ]  # fmt: skip
