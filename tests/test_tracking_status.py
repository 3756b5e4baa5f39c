"""Canonical tracking statuses from Kuaidi100 states, sub-codes and checkpoint text."""

import pytest

from tasks.tracking.status import (
    Keywords,
    Reason,
    TrackingStatus,
    classify_checkpoint,
    from_code,
    text_reason,
)
from yidi.settings import load_settings

T, R = TrackingStatus, Reason


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (0, (T.IN_TRANSIT, None)),
        (1, (T.PICKED_UP, None)),
        (2, (T.EXCEPTION, R.PROBLEM)),
        (3, (T.DELIVERED, None)),
        (4, (T.RETURNED, None)),
        (5, (T.OUT_FOR_DELIVERY, None)),
        (6, (T.RETURNING, R.RETURNING)),
        (7, (T.IN_TRANSIT, None)),
        (8, (T.IN_TRANSIT, None)),
        (13, (T.EXCEPTION, R.CUSTOMS)),
        (14, (T.DELIVERY_FAILED, R.REFUSED)),
        (209, (T.EXCEPTION, R.DAMAGED)),
        (201, (T.EXCEPTION, R.DELAYED)),
        (501, (T.OUT_FOR_DELIVERY, None)),
        (102, (T.INFO_RECEIVED, None)),
        (1001, (T.IN_TRANSIT, None)),
        (299, (T.EXCEPTION, R.PROBLEM)),  # unlisted sub-code falls back to its main state
    ],
)
def test_state_and_sub_codes(state, expected):
    assert from_code(state) == expected


def test_codes_arrive_as_strings_and_unknown_codes_fall_back_to_text():
    assert classify_checkpoint("快件已签收", status_code="3") == (T.DELIVERED, None)
    assert classify_checkpoint("快件已签收，签收人：本人", status_code="x") == (T.DELIVERED, None)
    assert classify_checkpoint("快件到达【成都转运中心】") == (T.IN_TRANSIT, None)
    assert classify_checkpoint("快递员正在派件") == (T.OUT_FOR_DELIVERY, None)


def test_status_text_used_when_no_code():
    assert classify_checkpoint("包裹状态更新", status_text="拒签") == (T.DELIVERY_FAILED, R.REFUSED)


@pytest.mark.parametrize(
    ("context", "reason"),
    [
        ("【成都转运中心】快件外包装破损，已加固", R.DAMAGED),
        ("快件在运输途中丢失，已登记理赔", R.LOST),
        ("快件遗失", R.LOST),
        ("收件人拒收", R.REFUSED),
        ("快件退回寄件人", R.RETURNING),
        ("收件地址不详，问题件处理中", R.INVALID_ADDRESS),
        # Boilerplate mentioning trouble is not trouble.
        ("快件已到达营业部，请当面验货，如有破损请拒收", None),
        ("派件中，如有疑问请联系快递员", None),
    ],
)
def test_text_reasons(context, reason):
    assert text_reason(context) == reason


def test_damage_in_text_under_ordinary_state_is_an_exception():
    status, reason = classify_checkpoint("快件外包装破损，已重新包装后继续转运", status_code="1002")
    assert (status, reason) == (T.EXCEPTION, R.DAMAGED)


def test_delivered_stays_delivered_but_keeps_damage_reason():
    assert classify_checkpoint("快件已签收，外包装破损", status_code="301") == (T.DELIVERED, R.DAMAGED)


def test_not_signed_is_not_delivered():
    # 超时未签收 says the parcel is late and still on its way: in transit, no exception reason of its own.
    assert classify_checkpoint("快件超时未签收") == (T.IN_TRANSIT, None)


def test_fallback_state_applies_when_checkpoint_has_no_code():
    assert classify_checkpoint("快件正在处理", fallback_state="5") == (T.OUT_FOR_DELIVERY, None)
    assert classify_checkpoint("快件正在处理", status_code="0", fallback_state="5") == (T.IN_TRANSIT, None)


def test_keywords_come_from_the_policy_file(tmp_path):
    policy = tmp_path / "yidi.toml"
    policy.write_text('[tracking.keywords]\ndamaged = ["压坏"]\n', encoding="utf-8")
    keywords = Keywords.from_mapping(load_settings(policy).tracking.keywords.model_dump())
    assert text_reason("快件被压坏", keywords) is R.DAMAGED
    assert text_reason("快件破损", keywords) is None  # the manager replaced the list


def test_carrier_text_is_masked_for_artifacts():
    from tasks.tracking.report import mask_text

    assert (
        mask_text("快件已签收，签收人：张三丰，派件员电话：13912345678")
        == "快件已签收，签收人：张**，派件员电话：139****5678"
    )
    assert mask_text("快件已签收，签收人：本人签收") == "快件已签收，签收人：本人签收"
    assert mask_text("收件人拒收") == "收件人拒收"


def test_tracking_defaults_file_matches_the_model():
    from yidi.tracking_policy import TrackingPolicy

    assert load_settings().tracking == TrackingPolicy()
    limits = TrackingPolicy().global_limits
    assert limits == {
        "kuaidi100-query": {"limit": 10, "slot_decay_per_second": 10.0},
        "kuaidi100-query-cycle": {"limit": 1, "slot_decay_per_second": 0.0},
    }


def test_bad_tracking_policy_names_the_key(tmp_path):
    from yidi.settings import SettingsError

    policy = tmp_path / "yidi.toml"
    policy.write_text('[tracking]\nmin_poll_interval_minutes = 5\n[tracking.incident_owners]\nbroken = "x"\n')
    with pytest.raises(SettingsError) as err:
        load_settings(policy)
    assert "tracking.min_poll_interval_minutes" in str(err.value)
    assert "tracking.incident_owners" in str(err.value)
