"""The after-sales, feedback and service sections of the policy file (``[aftersales]``, ``[feedback]``,
``[service]``): return windows, warranty per catalog category, who pays return freight, refund routes; feedback
classification keywords and response limits in working hours; service regions, technicians and capacity.

Kept in its own module (like ``yidi.settlement_policy``) so ``yidi.settings`` stays one screenful per section.
The statutory minimums (seven days, 《消费者权益保护法》第二十四条、第二十五条) are validated: a policy may be more
generous to the customer, never less. Defaults with a comment per key are in ``yidi/defaults.toml``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from yidi.policy_base import Section

# The statutory exceptions to the seven-day no-reason return (第二十五条第一款), by their stable codes.
STATUTORY_EXCEPTIONS = ("made_to_order", "fresh_perishable", "digital_unsealed", "periodicals")


class AftersalesPolicy(Section):
    no_reason_return_days: int = Field(
        7, ge=7, le=90, description="第二十五条: no-reason return within N days of receipt (law: at least 7)"
    )
    no_reason_customer_kinds: list[str] = Field(
        ["consumer"], description="Customer kinds the no-reason right applies to (the law protects consumers)"
    )
    distance_channels: list[str] = Field(
        ["taobao", "website", "phone", "fax", "email"],
        description="Order channels (orders.channel, as intake stores them) that are online, phone or mail sales "
        "(第二十五条 applies to these)",
    )
    quality_return_days: int = Field(
        7, ge=7, le=90, description="第二十四条: goods not meeting quality requirements returnable within N days"
    )
    refund_within_days: int = Field(
        7, ge=1, le=7, description="第二十五条: refund within N days of receiving the returned goods (law: 7)"
    )
    termination_after_failed_repairs: int = Field(
        2, ge=1, description="Contract-termination condition: return allowed once this many repairs failed"
    )
    default_warranty_months: int = Field(12, ge=0, description="Warranty for items of no listed category")
    categories: dict[str, list[str]] = Field(
        {}, description="Catalog category -> item codes (the catalog has no category column of its own)"
    )
    warranty_months: dict[str, int] = Field({}, description="Warranty months per category")
    statutory_exceptions: dict[str, list[str]] = Field(
        {}, description="Statutory exception code -> categories it covers (made_to_order, fresh_perishable…)"
    )
    confirmed_non_returnable_items: list[str] = Field(
        [], description="Item codes the customer confirms as non-returnable at purchase (第二十五条第二款)"
    )
    no_reason_freight_payer: Literal["customer", "company"] = Field(
        "customer", description="第二十五条: the consumer pays return freight unless agreed otherwise"
    )
    refund_routes: dict[str, Literal["alipay", "wechatpay", "bank_transfer"]] = Field(
        {"alipay": "alipay", "wechatpay": "wechatpay", "wechat": "wechatpay"},
        description="Order payment method -> refund route; methods not listed are refunded by bank transfer",
    )
    return_carrier: str = Field("shunfeng", description="Carrier code used for return waybills")
    return_warehouse: str = Field("CQ-XY", description="Warehouse returned goods are received into")
    return_tracking_interval_minutes: int = Field(
        60, ge=30, le=1440, description="Ask Kuaidi100 about a return parcel at most this often (it refuses a "
        "waybill asked again within 30 minutes)")
    website_refund_lookback_days: int = Field(
        60, ge=1, le=366, description="The website's refunds are read for its orders placed within this many days")
    alipay_url: str = Field("http://127.0.0.1:8041", description="Alipay open API gateway (stand-in in the demo)")
    wechatpay_url: str = Field("http://127.0.0.1:8042", description="WeChat Pay API v3 base URL")
    # Signing keys (PEM files; a relative path is under YIDI_HOME). Production keys live only there, never in git.
    alipay_app_id: str = Field("", description="Alipay application id (app_id) that signs refund requests")
    alipay_private_key_path: str = Field("", description="The application's RSA2 private key (PEM) signing requests")
    alipay_public_key_path: str = Field("", description="Alipay's public key (PEM) checking the answers' sign")
    wechatpay_mchid: str = Field("", description="WeChat Pay merchant id (mchid)")
    wechatpay_serial_no: str = Field("", description="Serial number of the merchant API certificate (serial_no)")
    wechatpay_private_key_path: str = Field("", description="Merchant API private key (apiclient_key.pem)")
    wechatpay_platform_public_key_path: str = Field(
        "", description="WeChat Pay platform public key or certificate (PEM) checking the answers' signatures")
    refund_timeout_seconds: float = Field(10.0, gt=0)
    refund_attempts: int = Field(3, ge=1, le=10, description="Tries per refund per run (same idempotency key)")
    notice_media: list[str] = Field(["sms", "email"], description="How customers hear about their case")

    @model_validator(mode="after")
    def _known_categories(self):
        for code, cats in self.statutory_exceptions.items():
            if code not in STATUTORY_EXCEPTIONS:
                raise ValueError(f"statutory_exceptions.{code}: not one of {', '.join(STATUTORY_EXCEPTIONS)}")
            unknown = [c for c in cats if c not in self.categories]
            if unknown:
                raise ValueError(f"statutory_exceptions.{code}: unknown categories {unknown}")
        unknown = [c for c in self.warranty_months if c not in self.categories]
        if unknown:
            raise ValueError(f"warranty_months: unknown categories {unknown}")
        return self


class ServiceMailbox(Section):
    """The service mailbox (feedback and survey replies by email) read over IMAP; off while ``host`` is empty."""

    host: str = Field("", description="IMAP server; empty = no service mailbox (the cycle skips it, logged)")
    port: int = Field(143, ge=1, le=65535, description="IMAP port (993 with ssl)")
    ssl: bool = Field(False, description="IMAP over TLS")
    user_env: str = Field("YIDI_SERVICE_MAIL_USER", description="Environment variable holding the login")
    password_env: str = Field("YIDI_SERVICE_MAIL_PASSWORD", description="Environment variable holding the password")
    folder: str = Field("INBOX", min_length=1, description="The mailbox folder read")
    processed_flag: str = Field("\\Seen", min_length=1, description="Set on a message once its record is committed")
    timeout_seconds: float = Field(30, gt=0, description="Connection timeout")
    max_message_mb: float = Field(30, gt=0, description="A larger message is not downloaded: quarantined by headers")
    batch_messages: int = Field(500, ge=1, description="Messages landed per transaction (then marked)")


class FeedbackPolicy(Section):
    keywords: dict[Literal["complaint", "praise", "suggestion", "inquiry"], list[str]] = Field(
        {
            "complaint": ["投诉", "差评", "太差", "不满", "欺骗", "质量问题", "坏了", "破损", "态度差", "退钱"],
            "praise": ["表扬", "感谢", "谢谢", "满意", "好评", "点赞", "很好"],
            "suggestion": ["建议", "希望", "能否", "最好"],
            "inquiry": ["请问", "咨询", "什么时候", "多久", "是否", "吗", "？", "?"],
        },
        description="First matching class in this order wins; no match is an inquiry",
    )
    working_hours: tuple[str, str] = Field(("09:00", "18:00"), description="Working hours on working days")
    first_response_hours: float = Field(4, gt=0, description="First response within N working hours")
    resolution_hours: dict[str, float] = Field(
        {"complaint": 16, "inquiry": 8, "suggestion": 24, "praise": 24},
        description="Resolution within N working hours, per class",
    )
    reminder_hours_before: float = Field(1, ge=0, description="Remind the owner this many working hours before")
    default_owner: str = Field("service@example.com", description="Who owns new feedback")
    escalation_contact: str = Field("ops-lead@example.com", description="Who hears about overdue feedback")
    cause_categories: list[str] = Field(
        ["product_quality", "logistics", "service", "billing", "other"], description="Complaint cause categories"
    )
    platform_rating_lookback_days: int = Field(
        7, ge=1, le=180, description="Buyers' platform ratings (taobao.traderates.get) re-read over this many days "
        "each cycle (stored once; TOP keeps 180 days)")
    inbound_host: str = Field("127.0.0.1", description="`yidi feedback receive` listens here (SMS replies, form)")
    inbound_port: int = Field(8044, ge=1, le=65535, description="and on this port")
    mailbox: ServiceMailbox = ServiceMailbox()


class ServiceRegion(Section):
    cities: list[str] = Field(min_length=1, description="Cities (or provinces) the region covers")
    technicians: dict[str, int] = Field(
        min_length=1, description="Technician or partner firm -> jobs per working day"
    )


class ServicePolicy(Section):
    item_kinds: dict[str, Literal["installation", "commissioning", "maintenance", "repair"]] = Field(
        {"SV-INSTALL": "installation", "SV-COMMISSION": "commissioning", "SV-MAINT-12": "maintenance",
         "SV-REPAIR": "repair"},
        description="Service item code -> kind of job",
    )  # fmt: skip
    needs_goods: list[str] = Field(
        ["installation", "commissioning"], description="Job kinds that wait until the order's goods are delivered"
    )
    lead_working_days: int = Field(1, ge=0, description="Earliest appointment: N working days after ready")
    horizon_working_days: int = Field(20, ge=1, description="Look this far ahead for free capacity")
    regions: dict[str, ServiceRegion] = Field(
        {"chongqing": ServiceRegion(cities=["重庆市"], technicians={"王师傅": 4, "李师傅": 4})},
        description="Service regions with their technicians",
    )
    survey_after: list[str] = Field(
        ["delivery", "service", "case", "complaint"], description="Send a satisfaction survey after these"
    )
    survey_medium: Literal["sms", "email"] = "sms"
    survey_within_days: int = Field(
        7, ge=1, description="Survey only what finished this recently (never a flood for old orders on first run)"
    )
