"""V2 product or service information against the catalog / service standard: code, status, kind, name,
specification, model, quantity.

The catalog comparison is computed per line first (``tasks/review/columns.py``: a vectorised join with the
catalog) and summed per order into ``*_lines`` counts; Great Expectations checks the counts. Which lines failed is
kept beside the findings.
"""

from __future__ import annotations

import great_expectations.expectations as gxe

from expectations._tag import tagged

SUITE = "review_v2_product"
COUNT_RULES = [
    ("V2.item.known", "ITEM_UNKNOWN", "unknown_item_lines"),
    ("V2.item.active", "ITEM_INACTIVE", "inactive_item_lines"),
    ("V2.item.kind", "ITEM_KIND_MISMATCH", "kind_mismatch_lines"),
    ("V2.item.name", "ITEM_NAME_MISMATCH", "name_mismatch_lines"),
    ("V2.item.spec", "ITEM_SPEC_MISMATCH", "spec_mismatch_lines"),
    ("V2.item.model", "ITEM_MODEL_MISMATCH", "model_mismatch_lines"),
    ("V2.quantity.valid", "QUANTITY_INVALID", "bad_quantity_lines"),
    ("V2.quantity.limits", "QUANTITY_OUT_OF_LIMITS", "quantity_limit_lines"),
]
COLUMNS = ["line_count", *(column for _, _, column in COUNT_RULES)]


def build(settings) -> list:
    return [
        tagged(gxe.ExpectColumnValuesToBeBetween, "V2.lines.present", "ORDER_NO_LINES", settings,
               column="line_count", min_value=1),
        *(tagged(gxe.ExpectColumnValuesToBeBetween, rule, code, settings, column=column, max_value=0)
          for rule, code, column in COUNT_RULES),
    ]  # fmt: skip
