"""V1 customer information: name, contact phone, delivery address, remote classification, credit check.

Checked on the order-level review frame. ``phone_kind`` (mobile / landline / service / invalid; empty when there
is no phone) comes from ``yidi.phone``; ``credit_headroom_fen`` and ``credit_overdue_fen`` are filled only for
orders that get a credit check (important customers, large orders) and are empty otherwise, which Great
Expectations skips. The ``credit_grade_*`` columns carry the measures of the customer's credit grade (K1) and are
empty for customers without one.
"""

from __future__ import annotations

import re

import great_expectations.expectations as gxe

from expectations._tag import tagged

SUITE = "review_v1_customer"
COLUMNS = ["customer_name", "customer_phone", "phone_kind", "ship_province", "ship_city", "ship_district",
           "ship_detail", "region", "credit_headroom_fen", "credit_overdue_fen", "credit_grade_review",
           "credit_guarantee_required", "credit_cod_refused", "credit_installments_refused",
           "credit_prepayment_due_fen"]  # fmt: skip

# Written for both regex engines pandas may use (RE2 in pyarrow: no look-arounds or back-references, so the rules
# stay vectorised on Arrow strings; Python's re as a fallback).
LETTER = "㐀-鿿A-Za-z"  # CJK unified ideographs (incl. extension A) and Latin letters
NAME_CHARS = rf"[{LETTER}0-9·•. （）()&\-]"  # a plain space: RE2's \s differs from Python's
NAME_SHAPE = rf"^{NAME_CHARS}*[{LETTER}]{NAME_CHARS}*[{LETTER}]{NAME_CHARS}*$"  # two letters at least


def placeholder_regex(placeholders: list[str]) -> str:
    """A placeholder instead of a name: 测试, test, xxx… optionally followed by digits (test1, 测试123)."""
    words = "|".join(re.escape(w) for w in sorted(placeholders, key=len, reverse=True))
    return rf"(?i)^ *(?:{words}) *[0-9]* *$" if words else "^$"


def build(settings) -> list:
    review = settings.review
    return [
        tagged(gxe.ExpectColumnValuesToNotBeNull, "V1.name.present", "CUSTOMER_NAME_MISSING", settings,
               column="customer_name"),
        tagged(gxe.ExpectColumnValuesToMatchRegex, "V1.name.shape", "CUSTOMER_NAME_IMPLAUSIBLE", settings,
               column="customer_name", regex=NAME_SHAPE, zh_detail="须为中文或英文姓名/单位名",
               en_detail="letters of a person's or company's name"),
        tagged(gxe.ExpectColumnValueLengthsToBeBetween, "V1.name.length", "CUSTOMER_NAME_IMPLAUSIBLE", settings,
               column="customer_name", min_value=2, max_value=60, zh_detail="长度须为2至60个字",
               en_detail="2-60 characters"),
        tagged(gxe.ExpectColumnValuesToNotMatchRegex, "V1.name.placeholder", "CUSTOMER_NAME_IMPLAUSIBLE", settings,
               column="customer_name", regex=placeholder_regex(review.name_placeholders),
               zh_detail="不能是“测试”等占位名称", en_detail="a placeholder such as test"),
        tagged(gxe.ExpectColumnValuesToNotBeNull, "V1.phone.present", "PHONE_MISSING", settings,
               column="customer_phone"),
        tagged(gxe.ExpectColumnValuesToNotBeInSet, "V1.phone.valid", "PHONE_INVALID", settings,
               column="phone_kind", value_set=["invalid"]),
        tagged(gxe.ExpectColumnValuesToNotBeInSet, "V1.phone.personal", "PHONE_SERVICE_NUMBER", settings,
               column="phone_kind", value_set=["service"]),
        tagged(gxe.ExpectColumnValuesToNotBeNull, "V1.address.province", "ADDRESS_INCOMPLETE", settings,
               column="ship_province", zh_detail="缺少省份", en_detail="no province"),
        tagged(gxe.ExpectColumnValuesToNotBeNull, "V1.address.city", "ADDRESS_INCOMPLETE", settings,
               column="ship_city", zh_detail="缺少城市", en_detail="no city"),
        tagged(gxe.ExpectColumnValuesToNotBeNull, "V1.address.district", "ADDRESS_INCOMPLETE", settings,
               column="ship_district", zh_detail="缺少区县", en_detail="no district"),
        tagged(gxe.ExpectColumnValuesToNotBeNull, "V1.address.detail", "ADDRESS_INCOMPLETE", settings,
               column="ship_detail", zh_detail="缺少详细地址", en_detail="no street detail"),
        tagged(gxe.ExpectColumnValueLengthsToBeBetween, "V1.address.detail_length", "ADDRESS_INCOMPLETE",
               settings, column="ship_detail", min_value=review.min_address_detail_chars,
               zh_detail="详细地址过短", en_detail="street detail too short"),
        tagged(gxe.ExpectColumnValuesToNotBeInSet, "V1.region.known", "REGION_UNKNOWN", settings,
               column="region", value_set=["unknown"]),
        tagged(gxe.ExpectColumnValuesToNotBeInSet, "V1.region.remote", "REGION_LOCAL", settings,
               column="region", value_set=["local"]),
        tagged(gxe.ExpectColumnValuesToBeBetween, "V1.credit.limit", "CREDIT_LIMIT_EXCEEDED", settings,
               column="credit_headroom_fen", min_value=0),
        tagged(gxe.ExpectColumnValuesToBeBetween, "V1.credit.overdue", "CREDIT_OVERDUE", settings,
               column="credit_overdue_fen", max_value=0),
        # K1: the measures of the customer's credit grade (empty for customers without a grade)
        tagged(gxe.ExpectColumnValuesToBeBetween, "V1.credit.grade_review", "CREDIT_GRADE_REVIEW", settings,
               column="credit_grade_review", max_value=0),
        tagged(gxe.ExpectColumnValuesToBeBetween, "V1.credit.guarantee", "CREDIT_GUARANTEE_REQUIRED", settings,
               column="credit_guarantee_required", max_value=0),
        tagged(gxe.ExpectColumnValuesToBeBetween, "V1.credit.cod", "CREDIT_GRADE_COD_REFUSED", settings,
               column="credit_cod_refused", max_value=0),
        tagged(gxe.ExpectColumnValuesToBeBetween, "V1.credit.installments", "CREDIT_GRADE_INSTALLMENTS_REFUSED",
               settings, column="credit_installments_refused", max_value=0),
        tagged(gxe.ExpectColumnValuesToBeBetween, "V1.credit.prepayment", "CREDIT_PREPAYMENT_REQUIRED", settings,
               column="credit_prepayment_due_fen", max_value=0),
    ]  # fmt: skip
