"""V4 validity against sales policy: blocked customers, purchase limits per customer and item over a rolling
window (counting the orders already in the store), promotion windows and eligible items.

The store-dependent parts (history, promotions) are computed first (``tasks/review/columns.py``) into per-order
counts; Great Expectations checks them.
"""

from __future__ import annotations

import great_expectations.expectations as gxe

from expectations._tag import tagged

SUITE = "review_v4_validity"
COUNT_RULES = [
    ("V4.customer.blocked", "CUSTOMER_BLOCKED", "customer_blocked"),
    ("V4.purchase_limit", "PURCHASE_LIMIT_EXCEEDED", "limit_exceeded_lines"),
    ("V4.promotion.window", "PROMOTION_OUTSIDE_WINDOW", "promo_window_lines"),
    ("V4.promotion.items", "PROMOTION_ITEM_INELIGIBLE", "promo_ineligible_lines"),
    ("V4.text.formula", "TEXT_IS_FORMULA", "formula_text_fields"),
]
COLUMNS = [column for _, _, column in COUNT_RULES]


def build(settings) -> list:
    return [tagged(gxe.ExpectColumnValuesToBeBetween, rule, code, settings, column=column, max_value=0)
            for rule, code, column in COUNT_RULES]  # fmt: skip
