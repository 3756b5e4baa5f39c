"""After-sales rules without a database: the seven-day no-reason return (第二十五条) on its calendar boundary and
for each statutory exception, quality problems inside and outside seven days (第二十四条), warranty repairs."""

from __future__ import annotations

from datetime import date

import pytest

from tasks.aftersales.rules import add_months, assess, refund_due_date, warranty_months
from yidi.aftersales_policy import AftersalesPolicy
from yidi.settings import get_settings

RECEIVED = date(2026, 12, 1)


def policy(**overrides) -> AftersalesPolicy:
    base = get_settings().aftersales.model_dump()
    for key, value in overrides.items():  # dict sections are extended, as an operator's yidi.toml would
        base[key] = {**base[key], **value} if isinstance(value, dict) else value
    return AftersalesPolicy.model_validate(base)


def decide(asked: date, items=("SKU-0009",), *, kind="return", quality=False, opened=False, customer="consumer",
           channel="website", repairs=0, received=RECEIVED, pol=None):  # fmt: skip
    return assess(kind=kind, quality_problem=quality, goods_opened=opened, asked_on=asked, received_on=received,
                  item_codes=list(items), customer_kind=customer, channel=channel, failed_repairs=repairs,
                  policy=pol or get_settings().aftersales)  # fmt: skip


def test_no_reason_return_counts_seven_calendar_days_from_the_day_after_receipt():
    last_day = decide(date(2026, 12, 8))
    assert (last_day.decision, last_day.rule, last_day.freight_payer) == ("return", "NO_REASON_RETURN_7D", "customer")
    assert "第二十五条" in last_day.citation
    late = decide(date(2026, 12, 9))
    assert (late.decision, late.rule) == ("reject", "NO_REASON_WINDOW_PASSED")
    assert "第二十五条" in late.citation and "第 8 天" in late.text


@pytest.mark.parametrize(
    ("items", "opened", "extra", "rule", "clause"),
    [
        (["SKU-0012"], False, {}, "NO_REASON_EXCEPTION_MADE_TO_ORDER", "第（一）项"),
        (["SKU-0004"], False, {}, "NO_REASON_EXCEPTION_FRESH_PERISHABLE", "第（二）项"),
        (["SKU-0099"], True, {"categories": {"software": ["SKU-0099"]},
                              "statutory_exceptions": {"digital_unsealed": ["software"]}},
         "NO_REASON_EXCEPTION_DIGITAL_UNSEALED", "第（三）项"),
        (["SKU-0098"], False, {"categories": {"magazines": ["SKU-0098"]},
                               "statutory_exceptions": {"periodicals": ["magazines"]}},
         "NO_REASON_EXCEPTION_PERIODICALS", "第（四）项"),
        (["SKU-0009"], False, {"confirmed_non_returnable_items": ["SKU-0009"]},
         "NO_REASON_EXCEPTION_CONFIRMED_NON_RETURNABLE", "第二款"),
    ],
)  # fmt: skip
def test_each_statutory_exception_refuses_the_no_reason_return_inside_seven_days(items, opened, extra, rule, clause):
    pol = policy(**extra) if extra else None
    d = decide(date(2026, 12, 3), items, opened=opened, pol=pol)
    assert (d.decision, d.rule) == ("reject", rule)
    assert clause in d.citation


def test_sealed_digital_goods_are_still_returnable():
    pol = policy(categories={"software": ["SKU-0099"]}, statutory_exceptions={"digital_unsealed": ["software"]})
    assert decide(date(2026, 12, 3), ["SKU-0099"], opened=False, pol=pol).rule == "NO_REASON_RETURN_7D"


def test_the_no_reason_right_is_for_consumers_buying_at_a_distance():
    assert decide(date(2026, 12, 3), customer="business").rule == "NO_REASON_NOT_APPLICABLE"
    # 第二十五条: online (the platform, the website), phone and mail-order sales, by the channel intake stores.
    for channel in ("taobao", "website", "phone", "fax", "email"):
        assert decide(date(2026, 12, 3), channel=channel).rule == "NO_REASON_RETURN_7D", channel
    assert decide(date(2026, 12, 3), channel="aftersales").rule == "NO_REASON_NOT_APPLICABLE"  # a replacement


def test_distance_channels_name_channels_orders_really_have():
    """The policy speaks of orders.channel values; connector names (woocommerce, spreadsheet, form) never match."""
    from connectors.registry import ORDER_CHANNELS

    stored = {"taobao", "website", "phone", "fax", "email"}  # what intake writes to orders.channel
    assert set(policy().distance_channels) == stored
    assert not set(policy().distance_channels) & (set(ORDER_CHANNELS) - stored)


def test_a_quality_problem_inside_seven_days_is_returned_at_the_companys_cost():
    d = decide(date(2026, 12, 8), ["SKU-0004"], quality=True)  # even perishable goods: quality is not no-reason
    assert (d.decision, d.rule, d.freight_payer) == ("return", "QUALITY_RETURN_7D", "company")
    assert "第二十四条" in d.citation


def test_a_quality_problem_after_seven_days_is_repaired_or_replaced_unless_the_contract_can_be_ended():
    assert decide(date(2026, 12, 20), ["SKU-0001"], quality=True).rule == "QUALITY_REPAIR"
    assert decide(date(2026, 12, 20), ["SKU-0001"], kind="exchange", quality=True).rule == "QUALITY_REPLACE"
    ended = decide(date(2026, 12, 20), ["SKU-0001"], quality=True, repairs=2)
    assert (ended.decision, ended.rule) == ("return", "QUALITY_RETURN_TERMINATION")
    assert decide(date(2028, 1, 5), ["SKU-0001"], quality=True).rule == "QUALITY_OUT_OF_WARRANTY"


def test_warranty_months_come_from_the_category_and_repairs_inside_are_free():
    assert warranty_months(["SKU-0001"], get_settings().aftersales) == 12
    assert warranty_months(["SKU-0002"], get_settings().aftersales) == 6
    assert decide(date(2027, 5, 31), ["SKU-0002"], kind="repair").rule == "WARRANTY_REPAIR"
    assert decide(date(2027, 6, 2), ["SKU-0002"], kind="repair").rule == "PAID_REPAIR"
    assert add_months(date(2026, 8, 31), 6) == date(2027, 2, 28)


def test_refund_is_due_seven_days_after_the_goods_come_back():
    assert refund_due_date(date(2026, 12, 10), get_settings().aftersales) == date(2026, 12, 17)


def test_the_policy_cannot_shorten_the_statutory_seven_days():
    with pytest.raises(ValueError, match="no_reason_return_days"):
        policy(no_reason_return_days=5)
