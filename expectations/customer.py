"""V1 customer information: name, contact phone, delivery address, remote classification, credit check.

Checked on the order-level review frame. ``phone_kind`` (mobile / landline / service / invalid; empty when there
is no phone) comes from ``yidi.phone``; ``credit_headroom_fen`` and ``credit_overdue_fen`` are filled only for
orders that get a credit check (important customers, large orders) and are empty otherwise, which Great
Expectations skips.
"""

from __future__ import annotations

import re

import great_expectations.expectations as gxe

from expectations._tag import tagged

SUITE = "review_v1_customer"
COLUMNS = ["customer_name", "customer_phone", "phone_kind", "ship_province", "ship_city", "ship_district",
           "ship_detail", "region", "credit_headroom_fen", "credit_overdue_fen"]  # fmt: skip

NAME_CHARS = r"\u3400-\u9fffA-Za-z"


def plausible_name_regex(placeholders: list[str]) -> str:
    """A person's or company's name: 2-60 characters of CJK/Latin letters (digits and company punctuation
    allowed), at least two letters, not one character repeated, not a placeholder such as 测试 or test1."""
    words = "|".join(re.escape(w) for w in sorted(placeholders, key=len, reverse=True)) or "(?!)"
    return (
        rf"(?i)^(?!\s*(?:{words})\s*\d*\s*$)(?!\s*(.)\1*\s*$)"
        rf"(?=(?:.*[{NAME_CHARS}]){{2}})[{NAME_CHARS}0-9·•.\s（）()&\-]{{2,60}}$"
    )


def build(settings) -> list:
    review = settings.review
    return [
        tagged(gxe.ExpectColumnValuesToNotBeNull, "V1.name.present", "CUSTOMER_NAME_MISSING", settings,
               column="customer_name"),
        tagged(gxe.ExpectColumnValuesToMatchRegex, "V1.name.plausible", "CUSTOMER_NAME_IMPLAUSIBLE", settings,
               column="customer_name", regex=plausible_name_regex(review.name_placeholders)),
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
    ]  # fmt: skip
