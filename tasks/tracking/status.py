"""One canonical tracking status set across carriers (F6, T1), mapped from Kuaidi100 states and checkpoint text.

The canonical set follows the industry sets (AfterShip, 17TRACK) named in EXTERNAL-SYSTEMS.md:

============== ====================================== =========================================
canonical      AfterShip / 17TRACK                    Kuaidi100 ``state`` (sub-codes with resultv2)
============== ====================================== =========================================
info_received  InfoReceived                           1 with 101/102 (下单, 待揽收)
picked_up      InTransit (first scan)                 1 揽收 (103)
in_transit     InTransit                              0 在途, 7 转投, 8/10/11/12 清关
out_for_deliv. OutForDelivery, AvailableForPickup     5 派件 (501 投柜或驿站)
delivery_fail. AttemptFail, DeliveryFailure           14 拒签, 204 派件异常, 206 无法联系
delivered      Delivered                              3 签收 (301-304)
returning      Exception/Returning                    6 退回
returned       Exception/Returned                     4 退签
exception      Exception (+ sub-reason)               2 疑难 (201-210), 13 清关异常
expired        Expired                                (no carrier update for the policy's days)
============== ====================================== =========================================

Each checkpoint gets a status and, when the data shows trouble, a ``reason``: delayed, stale, problem,
refused, returning, damaged, lost, invalid_address, held, customs, cancelled. Carriers often report damage or
loss only in the checkpoint text (``破损``, ``丢失``, ``遗失``) under an ordinary "in transit" state, so the text
is read too; boilerplate such as "如有破损请拒收" (refuse the parcel if damaged) is ignored first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache


class TrackingStatus(StrEnum):
    INFO_RECEIVED = "info_received"
    PICKED_UP = "picked_up"
    IN_TRANSIT = "in_transit"
    OUT_FOR_DELIVERY = "out_for_delivery"
    DELIVERY_FAILED = "delivery_failed"
    DELIVERED = "delivered"
    RETURNING = "returning"
    RETURNED = "returned"
    EXCEPTION = "exception"
    EXPIRED = "expired"


class Reason(StrEnum):
    """Why a checkpoint is a problem (17TRACK-style sub-status)."""

    DELAYED = "delayed"
    STALE = "stale"
    PROBLEM = "problem"
    REFUSED = "refused"
    RETURNING = "returning"
    DAMAGED = "damaged"
    LOST = "lost"
    INVALID_ADDRESS = "invalid_address"
    HELD = "held"
    CUSTOMS = "customs"
    CANCELLED = "cancelled"


T, R = TrackingStatus, Reason

# No more polling once a shipment is in one of these.
FINAL_STATUSES = frozenset({T.DELIVERED, T.RETURNED, T.EXPIRED})

STATUS_LABELS_ZH = {
    T.INFO_RECEIVED: "已下单待揽收",
    T.PICKED_UP: "已揽收",
    T.IN_TRANSIT: "运输中",
    T.OUT_FOR_DELIVERY: "派送中",
    T.DELIVERY_FAILED: "投递失败",
    T.DELIVERED: "已签收",
    T.RETURNING: "退回中",
    T.RETURNED: "已退回",
    T.EXCEPTION: "异常",
    T.EXPIRED: "长期无更新",
}

# Kuaidi100 main ``state`` codes.
STATE_CODES: dict[int, tuple[TrackingStatus, Reason | None]] = {
    0: (T.IN_TRANSIT, None),  # 在途
    1: (T.PICKED_UP, None),  # 揽收
    2: (T.EXCEPTION, R.PROBLEM),  # 疑难
    3: (T.DELIVERED, None),  # 签收
    4: (T.RETURNED, None),  # 退签
    5: (T.OUT_FOR_DELIVERY, None),  # 派件
    6: (T.RETURNING, R.RETURNING),  # 退回
    7: (T.IN_TRANSIT, None),  # 转投 (redirected, still moving)
    8: (T.IN_TRANSIT, None),  # 清关
    10: (T.IN_TRANSIT, None),  # 待清关
    11: (T.IN_TRANSIT, None),  # 清关中
    12: (T.IN_TRANSIT, None),  # 已清关
    13: (T.EXCEPTION, R.CUSTOMS),  # 清关异常
    14: (T.DELIVERY_FAILED, R.REFUSED),  # 拒签
}

# Sub-codes returned with resultv2 (data[].statusCode); more precise than the main state.
SUB_CODES: dict[int, tuple[TrackingStatus, Reason | None]] = {
    101: (T.INFO_RECEIVED, None),  # 已下单
    102: (T.INFO_RECEIVED, None),  # 待揽收
    103: (T.PICKED_UP, None),  # 已揽收
    1001: (T.IN_TRANSIT, None),  # 到达派件城市
    1002: (T.IN_TRANSIT, None),  # 干线
    1003: (T.IN_TRANSIT, None),  # 转递
    501: (T.OUT_FOR_DELIVERY, None),  # 投柜或驿站 (available for pickup)
    301: (T.DELIVERED, None),  # 本人签收
    302: (T.DELIVERED, None),  # 派件异常后签收
    303: (T.DELIVERED, None),  # 代签
    304: (T.DELIVERED, None),  # 投柜或站签收
    401: (T.RETURNED, None),  # 已销单
    201: (T.EXCEPTION, R.DELAYED),  # 超时未签收
    202: (T.EXCEPTION, R.STALE),  # 超时未更新
    203: (T.DELIVERY_FAILED, R.REFUSED),  # 拒收 (退件)
    204: (T.DELIVERY_FAILED, None),  # 派件异常
    205: (T.EXCEPTION, R.HELD),  # 柜或驿站超时未取
    206: (T.DELIVERY_FAILED, None),  # 无法联系
    207: (T.EXCEPTION, R.INVALID_ADDRESS),  # 超区
    208: (T.EXCEPTION, R.HELD),  # 滞留
    209: (T.EXCEPTION, R.DAMAGED),  # 破损
    210: (T.EXCEPTION, R.CANCELLED),  # 销单
}

# data[].status texts (resultv2=1) -> main state code.
STATUS_TEXTS: dict[str, int] = {
    "在途": 0,
    "揽收": 1,
    "疑难": 2,
    "签收": 3,
    "退签": 4,
    "派件": 5,
    "退回": 6,
    "转投": 7,
    "清关": 8,
    "待清关": 10,
    "清关中": 11,
    "已清关": 12,
    "清关异常": 13,
    "拒签": 14,
}


@dataclass(frozen=True)
class Keywords:
    """Checkpoint-text keywords (the policy file's ``[tracking.keywords]`` overrides these defaults)."""

    damaged: tuple[str, ...] = ("破损", "损坏", "受损", "外包装破")
    lost: tuple[str, ...] = ("丢失", "遗失", "丢件", "下落不明")
    refused: tuple[str, ...] = ("拒收", "拒签")
    returning: tuple[str, ...] = ("退回", "退件", "返回寄件人", "原路返回")
    problem: tuple[str, ...] = ("问题件", "疑难件", "异常件")
    invalid_address: tuple[str, ...] = ("地址不详", "地址错误", "超区", "地址不存在")
    held: tuple[str, ...] = ("滞留",)
    delivered: tuple[str, ...] = ("已签收", "签收人", "已妥投", "妥投")
    out_for_delivery: tuple[str, ...] = ("派件", "派送", "投递中", "驿站", "快递柜")
    picked_up: tuple[str, ...] = ("已揽收", "已揽件", "已收件", "揽收成功")
    # Boilerplate that mentions trouble without reporting any; removed before matching.
    ignore: tuple[str, ...] = (
        "如有破损",
        "若有破损",
        "如发现破损",
        "如外包装破损",
        "防止丢失",
        "以防丢失",
        "请当面验货",
        "请拒收",
        "可拒收",
        "未签收",
        "如有疑问",
    )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Iterable[str]] | None) -> Keywords:
        if not values:
            return cls()
        return cls(**{k: tuple(v) for k, v in values.items()})


DEFAULT_KEYWORDS = Keywords()

# Order of precedence when one text carries several signals: the costliest problem wins.
_REASON_ORDER = (
    ("lost", R.LOST),
    ("damaged", R.DAMAGED),
    ("refused", R.REFUSED),
    ("returning", R.RETURNING),
    ("invalid_address", R.INVALID_ADDRESS),
    ("problem", R.PROBLEM),
    ("held", R.HELD),
)


def _clean(text: str, keywords: Keywords) -> str:
    cleaned = text or ""
    for phrase in keywords.ignore:
        cleaned = cleaned.replace(phrase, " ")
    return cleaned


def text_reason(context: str, keywords: Keywords = DEFAULT_KEYWORDS) -> Reason | None:
    """The problem a checkpoint's text reports, if any."""
    cleaned = _clean(context, keywords)
    for attr, reason in _REASON_ORDER:
        if any(word in cleaned for word in getattr(keywords, attr)):
            return reason
    return None


def text_progress(context: str, keywords: Keywords = DEFAULT_KEYWORDS) -> TrackingStatus:
    """A plain progress status from the text alone (when the carrier gave no per-checkpoint code)."""
    cleaned = _clean(context, keywords)
    if any(word in cleaned for word in keywords.delivered):
        return T.DELIVERED
    if any(word in cleaned for word in keywords.out_for_delivery):
        return T.OUT_FOR_DELIVERY
    if any(word in cleaned for word in keywords.picked_up):
        return T.PICKED_UP
    return T.IN_TRANSIT


_DIGITS = re.compile(r"^\s*-?\d+\s*$")


def parse_code(value) -> int | None:
    """Kuaidi100 sends codes as strings or ints; anything else is no code."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _DIGITS.match(value):
        return int(value)
    return None


def from_code(code: int | None) -> tuple[TrackingStatus, Reason | None] | None:
    """Status for a Kuaidi100 main state or sub-code; None when the code is unknown."""
    if code is None:
        return None
    if code in SUB_CODES:
        return SUB_CODES[code]
    if code in STATE_CODES:
        return STATE_CODES[code]
    # Unlisted sub-codes: 3-digit codes carry their main state in the first digit; 10xx are in transit.
    if 100 <= code < 1000 and code // 100 in STATE_CODES:
        return STATE_CODES[code // 100]
    if 1000 <= code < 1100:
        return (T.IN_TRANSIT, None)
    return None


@lru_cache(maxsize=100_000)  # carriers repeat their phrases; a cycle classifies the same texts many times
def classify_checkpoint(
    context: str,
    *,
    status_text: str | None = None,
    status_code=None,
    fallback_state=None,
    keywords: Keywords = DEFAULT_KEYWORDS,
) -> tuple[TrackingStatus, Reason | None]:
    """Canonical status and problem reason of one checkpoint.

    The most specific evidence wins: the per-checkpoint sub-code, then the per-checkpoint status text, then the
    result-level ``state`` (only passed for the newest checkpoint), then the text. A problem named in the text
    (damage, loss…) is added even under an ordinary state. Delivered and returned stay so: they are facts, and
    damage found at delivery still opens an incident through the reason.
    """
    mapped = from_code(parse_code(status_code))
    if mapped is None and status_text:
        mapped = from_code(STATUS_TEXTS.get(status_text.strip()))
    if mapped is None:
        mapped = from_code(parse_code(fallback_state))
    status, reason = mapped if mapped is not None else (text_progress(context, keywords), None)

    found = text_reason(context, keywords)
    if found is not None and (reason is None or _rank(found) < _rank(reason)):
        reason = found
    if reason is None or status in (T.DELIVERED, T.RETURNED):
        return status, reason
    if reason is R.REFUSED:
        return T.DELIVERY_FAILED, reason
    if reason is R.RETURNING:
        return T.RETURNING, reason
    return T.EXCEPTION, reason


def _rank(reason: Reason) -> int:
    order = [r for _, r in _REASON_ORDER]
    return order.index(reason) if reason in order else len(order)
