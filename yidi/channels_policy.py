"""The ``[channels]`` section of the policy file (issue 18): writing back to the order channels.

Kept in its own module (like ``yidi.settlement_policy``); every key is documented with its default in
``yidi/defaults.toml``.
"""

from __future__ import annotations

from pydantic import Field

from yidi.policy_base import Section


class ChannelsPolicy(Section):
    # orders.channel -> the API that confirms shipment there ("top" | "woocommerce"); other channels (phone,
    # fax, email, spreadsheet, form) have no API: their customer is told instead.
    confirm_api: dict[str, str] = {"taobao": "top", "website": "woocommerce"}
    split_confirm_channels: list[str] = ["taobao"]  # channels that accept a parcel's sub-orders (TOP sub_tid)
    # yidi carrier code -> TOP logistics company code (taobao.logistics.companies.get)
    top_company_codes: dict[str, str] = {
        "shunfeng": "SF", "jd": "JD", "zhongtong": "ZTO", "yuantong": "YTO", "yunda": "YUNDA", "ems": "EMS",
        "debangwuliu": "DBL",
    }  # fmt: skip
    carrier_names: dict[str, str] = {
        "shunfeng": "顺丰速运", "jd": "京东物流", "zhongtong": "中通快递", "yuantong": "圆通速递", "yunda": "韵达快递",
        "ems": "EMS", "debangwuliu": "德邦物流",
    }  # fmt: skip
    woocommerce_done_status: str = "completed"  # the website order's status once every parcel is confirmed
    notice_media: list[str] = ["sms", "email"]  # channels without an API: the customer is told by these
    confirm_max_attempts: int = Field(12, ge=1)  # transient failures before a confirmation needs a person
    confirm_chunk: int = Field(200, ge=1)  # confirmations recorded per transaction

    # Shipping deadline: hours after payment each channel promises shipment within ("default" for the rest).
    ship_within_hours: dict[str, float] = {"taobao": 48.0, "website": 72.0, "default": 72.0}
    working_hours_channels: list[str] = []  # channels whose window counts working hours (workday calendar)
    workday_start: str = "09:00"  # Asia/Shanghai, for channels counted in working hours
    workday_end: str = "18:00"
    warn_before_hours: float = Field(6.0, ge=0)  # flagged in the artifact this long before the deadline
    escalate_before_hours: float = Field(2.0, ge=0)  # escalated (an event for the team) this long before it

    # Stock sync: available = on hand - reserved - damaged - quarantined - safety stock, never below 0.
    safety_stock: float = Field(0.0, ge=0)  # units held back from every channel, per item
    safety_stock_items: dict[str, float] = {}  # item code -> units held back (overrides safety_stock)
    rate_per_second: dict[str, float] = {"taobao": 10.0, "website": 2.0}  # requests per second per channel
    woocommerce_batch_size: int = Field(100, ge=1, le=100)  # products per batch request (the API's maximum)
    push_workers: int = Field(8, ge=1, le=64)  # TOP calls in flight at once (the pacer still holds the rate)
    top_update_type: int = Field(1, ge=1, le=2)  # taobao.item.quantity.update type: 1 full, 2 incremental
