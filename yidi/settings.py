"""The policy file: every business rule that managers change, with documented defaults.

Defaults ship in ``yidi/defaults.toml`` (each key commented there). An operator's ``yidi.toml`` (path from
``YIDI_CONFIG``; ``./yidi.toml`` when present) overrides any subset. Everything is validated at start-up:
a bad value raises ``SettingsError`` naming the key and the problem.
The larger areas' sections have modules of their own (``yidi/*_policy.py``); this one stays the schema's index.
"""

from __future__ import annotations

import os
import tomllib
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

# After-sales, feedback and service (issue 14) have their own module: yidi/aftersales_policy.py.
from yidi.aftersales_policy import AftersalesPolicy, FeedbackPolicy, ServicePolicy
from yidi.channels_policy import ChannelsPolicy
from yidi.parcels_policy import ParcelPolicy
from yidi.policy_base import Section
from yidi.redact import shown_input

# The settlement section is a schema of its own (bank templates, dunning ladder): yidi/settlement_policy.py.
from yidi.risk_policy import AuditPolicy, CreditPolicy, KpiPolicy, RiskPolicy
from yidi.runtime_policy import RuntimePolicy  # issue 17: how chunks run side by side when scaling out
from yidi.settlement_policy import SettlementPolicy
from yidi.staff import StaffPolicy  # issue 20: who may decide what
from yidi.tracking_policy import TrackingPolicy
from yidi.workdays import CalendarPolicy  # a year's official holidays before chinesecalendar has them

DEFAULTS_PATH = Path(__file__).with_name("defaults.toml")


class SettingsError(ValueError):
    """The policy file has a bad value; the message names the key and the problem."""


class GeneralPolicy(Section):
    company_name: str = "重庆示例实业有限公司"
    timezone: str = "Asia/Shanghai"
    home_province: str = "重庆市"
    currency: str = "CNY"


class ReviewPolicy(Section):
    deadline_working_days: int = Field(
        2, ge=1, le=30, description="Manual review deadline (V6) in working days"
    )
    reminder_hours_before: int = Field(
        4, ge=0, description="Remind reviewers this many hours before the deadline"
    )
    escalation_contact: str = Field("ops-lead@example.com", description="Who hears about overdue reviews")
    reviewer_contacts: list[str] = Field(
        ["reviewers@example.com"], description="Who gets deadline reminders (email addresses or mobile numbers)"
    )
    severity: dict[str, Literal["reject", "needs_review", "note"]] = Field(
        {}, description="Severity per reason code (V5); codes not listed keep the default in expectations/"
    )
    chunk_size: int = Field(200_000, ge=100, description="Orders per automated-review task")
    ui_batch_size: int = Field(10, ge=1, le=100, description="Orders shown per review form in the Prefect UI")
    pause_timeout_hours: float = Field(8, gt=0, description="A review form waits this long for a decision")
    name_placeholders: list[str] = Field(
        ["测试", "test", "xxx", "未知", "匿名", "无名", "客户", "null", "none", "n/a"],
        description="Names that are placeholders, not a person or company",
    )
    min_address_detail_chars: int = Field(4, ge=1, description="Shorter street/house details are incomplete")
    name_similarity_min: float = Field(
        80, ge=0, le=100, description="Line item name vs catalog name: lower similarity is a mismatch (0-100)"
    )
    build_data_docs: bool = Field(True, description="Render Great Expectations Data Docs after each review run")
    auto_approve_clean: bool = Field(
        False, description="Approve an order that passed every automated check (notes only) without a person (V5 "
        "as specified: off, every such order waits for manual review)"
    )  # fmt: skip


class OrdersPolicy(Section):
    large_order_threshold_yuan: Decimal = Field(
        Decimal("50000"), gt=0, description="Large orders get a credit check"
    )
    fractional_units: list[str] = Field(
        ["米", "千克", "公斤", "克", "吨", "升", "小时", "m", "kg", "g", "t", "l", "h"],
        description="Units sold in fractions; every other unit needs a whole-number quantity",
    )
    credit_open_states: list[str] = Field(
        ["pending_review", "approved", "allocated", "backordered", "in_production", "in_procurement",
         "shipped", "in_transit", "exception"],
        description="Unpaid orders in these states count towards a customer's credit exposure",
    )  # fmt: skip
    receivable_states: list[str] = Field(
        ["delivered", "after_sales", "returned"],
        description="Unpaid orders in these states are receivables (until the settlement ledger supplies them)",
    )


class PaymentPolicy(Section):
    allowed_methods: list[str] = ["alipay", "wechatpay", "bank_transfer", "cod", "installment"]
    special_methods: list[str] = ["cod", "installment"]
    cod_limit_yuan: Decimal = Field(Decimal("5000"), gt=0)
    max_installments: int = Field(12, ge=1)
    min_first_installment_ratio: float = Field(0.2, gt=0, le=1)

    @field_validator("special_methods")
    @classmethod
    def _special_subset(cls, value: list[str], info: Any) -> list[str]:
        allowed = set(info.data.get("allowed_methods", []))
        unknown = [m for m in value if m not in allowed]
        if unknown:
            raise ValueError(f"special methods {unknown} are not in payment.allowed_methods")
        return value


class PricingPolicy(Section):
    tolerance_pct: float = Field(
        5.0, ge=0, le=100, description="Allowed deviation of unit price from list price"
    )
    rounding_tolerance_fen: int = Field(
        1, ge=0, description="Line and order totals may differ from their parts by this much (rounding)"
    )


class PurchaseLimit(Section):
    item_code: str
    max_quantity: float = Field(gt=0)
    window_days: int = Field(30, ge=1)


class LimitsPolicy(Section):
    purchase_limits: list[PurchaseLimit] = []


class Promotion(Section):
    code: str
    item_codes: list[str]
    discount_pct: float = Field(gt=0, lt=100)
    starts: str
    ends: str


class PromotionsPolicy(Section):
    active: list[Promotion] = []


class NotificationsPolicy(Section):
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(8025, ge=1, le=65535)
    mail_from: str = "orders@example.com"
    sms_gateway_url: str = "http://127.0.0.1:8026/sms/send"
    smtp_starttls: bool = Field(False, description="Upgrade the SMTP connection with STARTTLS")
    smtp_timeout_seconds: float = Field(10.0, gt=0)
    smtp_user_env: str = Field("YIDI_SMTP_USER", description="Env var with the SMTP login (none: no login)")
    smtp_password_env: str = Field("YIDI_SMTP_PASSWORD", description="Env var with the SMTP password")
    sms_token_env: str = Field("YIDI_SMS_TOKEN", description="Env var with the SMS gateway bearer token")
    sms_sign: str = Field("重庆示例实业", description="SMS signature shown as 【sign】 (registered with the gateway)")
    sms_timeout_seconds: float = Field(10.0, gt=0)
    customer_media: list[Literal["sms", "email"]] = Field(
        ["sms", "email"], description="Customer notices go out on each medium the order has a contact for"
    )
    notify_on_approval: bool = Field(True, description="Tell the customer when a reviewer approves the order")
    notify_on_receipt: bool = Field(True, description="Tell the customer a new order was received (P2, T2)")
    service_contact: str = Field("023-6000 0000", description="Where customers reach us (printed in notices)")
    send_batch_size: int = Field(200, ge=1, le=10_000, description="Outbox rows claimed per sending pass")
    max_attempts: int = Field(8, ge=1, le=100, description="Give up (status failed, no retry) after this many")
    retry_base_seconds: float = Field(60, ge=0, description="First retry delay; doubles per attempt")
    retry_max_seconds: float = Field(3600, ge=0, description="Longest delay between retries")
    claim_lease_seconds: float = Field(
        600, gt=0, description="A claimed row not marked within this time is retried (crashed sender)"
    )


class TaobaoChannel(Section):
    enabled: bool = Field(False, description="Pull orders from the platform's TOP gateway")
    url: str = Field("http://127.0.0.1:8701/router/rest", description="TOP gateway URL (…/router/rest)")
    app_key_env: str = Field("YIDI_TAOBAO_APP_KEY", description="Env var holding the app key")
    app_secret_env: str = Field("YIDI_TAOBAO_APP_SECRET", description="Env var holding the app secret")
    session_env: str = Field("YIDI_TAOBAO_SESSION", description="Env var holding the seller session key")
    sign_method: Literal["md5", "hmac", "hmac-sha256"] = Field("md5", description="TOP signing method")
    window_minutes: int = Field(30, ge=1, le=1440, description="Modification-time window per query (≤ 1 day)")
    overlap_minutes: int = Field(5, ge=0, le=1440, description="Each run re-reads this much before the cursor")
    page_size: int = Field(100, ge=1, le=100, description="Trades per page (TOP maximum 100)")
    initial_lookback_hours: int = Field(72, ge=1, description="First run (no cursor) starts this far back")
    lag_seconds: int = Field(60, ge=0, description="Windows end this long before now (platform index lag)")
    timeout_seconds: float = Field(20.0, gt=0, description="HTTP timeout per call")
    attempts: int = Field(4, ge=1, le=10, description="Tries per call on transient errors (5xx, throttling)")
    backoff_seconds: float = Field(0.5, ge=0, description="First retry wait; doubled per attempt")
    batch_records: int = Field(1000, ge=1, description="Pages are committed together up to this many records")


class WooCommerceChannel(Section):
    enabled: bool = Field(False, description="Pull orders from the company website (WooCommerce REST v3)")
    url: str = Field("http://127.0.0.1:8702", description="Site root; /wp-json/wc/v3/orders is appended")
    consumer_key_env: str = Field("YIDI_WC_CONSUMER_KEY", description="Env var holding the ck_… key")
    consumer_secret_env: str = Field("YIDI_WC_CONSUMER_SECRET", description="Env var holding the cs_… secret")
    auth: Literal["basic", "query"] = Field("basic", description="HTTP Basic (HTTPS sites) or query parameters")
    per_page: int = Field(100, ge=1, le=100, description="Orders per page (WooCommerce maximum 100)")
    overlap_minutes: int = Field(10, ge=0, le=1440, description="Each run re-reads this much before the cursor")
    initial_lookback_hours: int = Field(72, ge=1, description="First run (no cursor) starts this far back")
    timeout_seconds: float = Field(20.0, gt=0, description="HTTP timeout per call")
    attempts: int = Field(4, ge=1, le=10, description="Tries per call on transient errors")
    backoff_seconds: float = Field(0.5, ge=0, description="First retry wait; doubled per attempt")
    batch_records: int = Field(1000, ge=1, description="Pages are committed together up to this many records")
    payment_methods: dict[str, str] = Field(
        default_factory=lambda: {"bacs": "bank_transfer", "cheque": "bank_transfer", "cod": "cod",
                                 "alipay": "alipay", "wechatpay": "wechatpay", "wxpay": "wechatpay"},
        description="WooCommerce payment gateway id -> our payment method",
    )


class EmailChannel(Section):
    enabled: bool = Field(False, description="Read order emails")
    source: Literal["maildir", "imap"] = Field("maildir", description="Where the mail is")
    maildir: str = Field("inbox/mail", description="Maildir folder (relative to YIDI_HOME)")
    host: str = Field("127.0.0.1", description="IMAP server")
    port: int = Field(143, ge=1, le=65535, description="IMAP port (993 with ssl)")
    ssl: bool = Field(False, description="IMAP over TLS")
    mailbox: str = Field("INBOX", description="IMAP mailbox")
    user_env: str = Field("YIDI_MAIL_USER", description="Env var holding the IMAP user")
    password_env: str = Field("YIDI_MAIL_PASSWORD", description="Env var holding the IMAP password")
    imap_processed_flag: str = Field("\\Seen", description="Flag set on processed messages (or a keyword)")
    maildir_processed_flag: str = Field("S", min_length=1, max_length=1, description="Maildir info flag letter")
    max_message_mb: float = Field(30.0, gt=0, description="Larger messages are quarantined, not downloaded")
    batch_records: int = Field(2000, ge=1, description="Records per committed batch")


class SpreadsheetChannel(Section):
    enabled: bool = Field(True, description="Read phone/fax order templates dropped into the inbox folder")
    inbox_dir: str = Field("inbox/orders", description="Inbox folder (relative to YIDI_HOME)")
    default_channel: Literal["phone", "fax"] = Field("phone", description="Channel when the 渠道 column is empty")
    chunk_rows: int = Field(50_000, ge=100, description="Rows per committed batch and raw chunk record (bounds memory)")
    settle_seconds: float = Field(2.0, ge=0, description="Files younger than this may still be being written")


class IntakePolicy(Section):
    task_retries: int = Field(3, ge=0, le=10, description="Prefect retries of a channel task (transient errors)")
    retry_delay_seconds: float = Field(10.0, ge=0, description="First channel retry delay; grows exponentially")
    taobao: TaobaoChannel = TaobaoChannel()
    woocommerce: WooCommerceChannel = WooCommerceChannel()
    email: EmailChannel = EmailChannel()
    spreadsheet: SpreadsheetChannel = SpreadsheetChannel()


# --- fulfilment (issue 5): warehouses, rate cards, insurance, sourcing, stocktakes ---------------------------

# Province short names (the store keeps what the channel wrote: "四川省", "广西壮族自治区", "重庆"...).
PROVINCE_SHORT_NAMES = (
    "北京", "天津", "河北", "山西", "内蒙古", "辽宁", "吉林", "黑龙江", "上海", "江苏", "浙江", "安徽", "福建",
    "江西", "山东", "河南", "湖北", "湖南", "广东", "广西", "海南", "重庆", "四川", "贵州", "云南", "西藏",
    "陕西", "甘肃", "青海", "宁夏", "新疆", "台湾", "香港", "澳门",
)  # fmt: skip
_PROVINCE_SUFFIXES = ("壮族自治区", "回族自治区", "维吾尔自治区", "特别行政区", "自治区", "省", "市")


def province_short_name(name: str | None) -> str | None:
    """``"广西壮族自治区"`` -> ``"广西"``; ``"重庆市"`` -> ``"重庆"``; unknown names come back stripped."""
    if name is None:
        return None
    text = str(name).strip()
    for suffix in _PROVINCE_SUFFIXES:
        if text.endswith(suffix) and text.removesuffix(suffix) in PROVINCE_SHORT_NAMES:
            return text.removesuffix(suffix)
    return text or None


class Warehouse(Section):
    code: str = Field(min_length=1, max_length=32, description="Warehouse code used in stock files")
    name: str = Field(description="Name printed on pick lists and shipping documents")
    province: str = "重庆市"
    city: str = "重庆市"
    district: str = ""
    address: str = Field(description="Street address (ship-from on shipping documents)")
    contact: str = Field("", description="Shipping contact printed on documents")
    phone: str = Field("", description="Shipping contact phone")
    priority: int = Field(1, ge=1, description="Lower ships first when several warehouses hold the goods")


class ZoneRate(Section):
    destinations: list[str] = Field(min_length=1, description="Province short names or region names")
    first_weight_kg: float = Field(1.0, gt=0, description="Weight covered by the first-weight price")
    first_weight_yuan: Decimal = Field(ge=0, description="Price of the first weight")
    additional_kg_yuan: Decimal = Field(ge=0, description="Price per additional kg (charged per weight step)")
    transit_days: int = Field(ge=0, le=30, description="Working days from dispatch to delivery")


class RateCard(Section):
    name: str = Field(description="Carrier name as printed (顺丰速运 …)")
    service: str = Field("standard", description="Service product under the carrier agreement")
    volumetric_divisor: int = Field(
        8000, gt=0, description="cm³ per kg: volumetric weight = length×width×height(cm) / divisor"
    )
    max_weight_kg: float = Field(50.0, gt=0, description="Heaviest chargeable weight per shipment")
    weight_step_kg: float = Field(1.0, gt=0, description="Chargeable weight is rounded up to this step")
    cod: bool = Field(False, description="Collects cash on delivery under the agreement")
    cod_fee_pct: float = Field(1.0, ge=0, description="COD service fee, % of the collected amount")
    cod_min_yuan: Decimal = Field(Decimal("2"), ge=0)
    insurance: bool = Field(True, description="Offers declared-value cargo insurance (保价)")
    insurance_rate_pct: float = Field(0.5, ge=0, description="Insurance premium, % of declared value")
    insurance_min_yuan: Decimal = Field(Decimal("1"), ge=0)
    liability: str = Field("", description="Duties under the carrier agreement: loss, damage, delay (F4, K3)")
    zones: list[ZoneRate] = Field(min_length=1, description="Destination zones from Chongqing with prices")


class FulfilmentPolicy(Section):
    ship_from: str = "重庆市沙坪坝区西永微电园 1 号仓"
    warehouses: list[Warehouse] = Field(
        default_factory=lambda: [
            Warehouse(code="CQ-XY", name="西永仓", district="沙坪坝区", address="西永微电园 1 号仓",
                      contact="仓库发货组", phone="023-65000001", priority=1),
            Warehouse(code="CQ-LJ", name="两江仓", district="两江新区", address="空港大道 66 号",
                      contact="仓库发货组", phone="023-67000002", priority=2),
        ],
        description="Shipping warehouses (synchronised into the warehouses table on every run)",
    )
    regions: dict[str, list[str]] = Field(
        default_factory=dict, description="Named province groups that rate-card zones may reference"
    )
    rate_cards: dict[str, RateCard] = Field(
        default_factory=dict, description="Per Kuaidi100 carrier code: the agreed rate card"
    )
    rate_card_dir: str = Field(
        "", description="Optional folder of <carrier>.csv/xlsx zone tables replacing the zones above"
    )
    dispatch_cutoff: str = Field(
        "16:00", pattern=r"^\d{2}:\d{2}$", description="Allocated after this (Asia/Shanghai) ships next working day"
    )
    calendar_fallback_weekdays: bool = Field(
        True, description="Past the installed holiday calendar, estimate dates on Mon-Fri (flagged) instead of failing"
    )
    insurance_threshold_yuan: Decimal = Field(
        Decimal("2000"), ge=0, description="K3: insure shipments declared at or above this value"
    )
    insurance_route_provinces: list[str] = Field(
        default_factory=lambda: ["西藏", "新疆", "青海"],
        description="K3: always insure shipments to these provinces (risky routes)",
    )
    preferred_supplier_premium_pct: float = Field(
        3.0, ge=0, description="F2: the preferred supplier wins when within this % of the cheapest landed cost"
    )
    receiving_working_days: int = Field(1, ge=0, description="Goods received -> sellable (inspection, put-away)")
    production_qc_working_days: int = Field(1, ge=0, description="F1: quality check after production")
    decision_reply_working_days: int = Field(
        3, ge=1, description="Customer has this long to choose wait/partial/cancel before we ask again"
    )
    slow_moving_days: int = Field(90, ge=1, description="F3: stock with no movement this long is slow-moving")
    expiry_warning_days: int = Field(30, ge=0, description="F3: batches expiring within this many days are flagged")
    carrier_api_url: str = Field("http://127.0.0.1:8031", description="Carrier e-waybill gateway (token: env)")
    carrier_api_timeout_seconds: float = Field(10.0, gt=0)
    carrier_api_attempts: int = Field(4, ge=1, le=10, description="Tries per shipment per run (same idempotency key)")
    carrier_api_concurrency: int = Field(4, ge=1, le=32, description="Waybill requests in flight at once")
    supplier_api_url: str = Field("http://127.0.0.1:8032", description="Supplier purchase-order gateway")
    supplier_api_timeout_seconds: float = Field(10.0, gt=0)
    supplier_api_attempts: int = Field(4, ge=1, le=10)
    notice_media: list[str] = Field(
        default_factory=lambda: ["sms", "email"], description="P2/T2: how customers hear about shipments and delays"
    )
    parcels: ParcelPolicy = ParcelPolicy()  # issue 18: orders merged into one parcel

    @model_validator(mode="after")
    def _known_destinations(self):
        for region, provinces in self.regions.items():
            unknown = [p for p in provinces if province_short_name(p) not in PROVINCE_SHORT_NAMES]
            if unknown:
                raise ValueError(f"regions.{region}: unknown provinces {unknown}")
        for carrier, card in self.rate_cards.items():
            seen: dict[str, int] = {}
            for index, zone in enumerate(card.zones):
                for destination in zone.destinations:
                    if destination in self.regions:
                        provinces = [province_short_name(p) for p in self.regions[destination]]
                    elif province_short_name(destination) in PROVINCE_SHORT_NAMES:
                        provinces = [province_short_name(destination)]
                    else:
                        raise ValueError(
                            f"rate_cards.{carrier}.zones[{index}]: {destination!r} is neither a region nor a province"
                        )
                    for province in provinces:
                        if province in seen:
                            raise ValueError(
                                f"rate_cards.{carrier}: {province} is in zones[{seen[province]}] and zones[{index}]"
                            )
                        seen[province] = index
        unknown_routes = [p for p in self.insurance_route_provinces if province_short_name(p) not in PROVINCE_SHORT_NAMES]
        if unknown_routes:
            raise ValueError(f"insurance_route_provinces: unknown provinces {unknown_routes}")
        codes = [w.code for w in self.warehouses]
        if len(set(codes)) != len(codes) or not codes:
            raise ValueError(f"warehouses: codes must be unique and at least one given (got {codes})")
        return self


class Settings(Section):
    general: GeneralPolicy = GeneralPolicy()
    review: ReviewPolicy = ReviewPolicy()
    orders: OrdersPolicy = OrdersPolicy()
    payment: PaymentPolicy = PaymentPolicy()
    pricing: PricingPolicy = PricingPolicy()
    limits: LimitsPolicy = LimitsPolicy()
    promotions: PromotionsPolicy = PromotionsPolicy()
    notifications: NotificationsPolicy = NotificationsPolicy()
    intake: IntakePolicy = IntakePolicy()
    fulfilment: FulfilmentPolicy = FulfilmentPolicy()
    tracking: TrackingPolicy = TrackingPolicy()
    settlement: SettlementPolicy = SettlementPolicy()
    risk: RiskPolicy = RiskPolicy()
    aftersales: AftersalesPolicy = AftersalesPolicy()
    feedback: FeedbackPolicy = FeedbackPolicy()
    service: ServicePolicy = ServicePolicy()
    credit: CreditPolicy = CreditPolicy()
    kpi: KpiPolicy = KpiPolicy()
    audit: AuditPolicy = AuditPolicy()
    channels: ChannelsPolicy = ChannelsPolicy()
    staff: StaffPolicy = StaffPolicy()
    runtime: RuntimePolicy = RuntimePolicy()
    calendar: CalendarPolicy = CalendarPolicy()


def yidi_home() -> Path:
    """Where the embedded database, documents and reports live (``YIDI_HOME``, default ``./.yidi``)."""
    home = Path(os.environ.get("YIDI_HOME", ".yidi")).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True, mode=0o700)  # personal data: created readable by its owner only
    return home


def policy_file_path() -> Path | None:
    explicit = os.environ.get("YIDI_CONFIG")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise SettingsError(f"YIDI_CONFIG points to {path}, which is not a file")
        return path
    local = Path("yidi.toml")
    return local if local.is_file() else None


# Tables whose entries the policy file replaces whole instead of merging into: a file layout is one description,
# and a shipped template's columns and patterns must not survive an operator's own version of it (issue 12).
REPLACED_WHOLE = {("settlement", "bank_templates"), ("settlement", "cod_templates")}


def _merge(base: dict, override: dict, path: tuple[str, ...] = ()) -> dict:
    merged = dict(base)
    for key, value in override.items():
        if path in REPLACED_WHOLE:
            merged[key] = value
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value, (*path, key))
        else:
            merged[key] = value
    return merged


def _read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML: {exc}") from exc
    except (UnicodeDecodeError, OSError) as exc:  # a GBK-saved file, a directory, no permission: exit 3, no traceback
        problem = f"not UTF-8 text (byte {exc.start})" if isinstance(exc, UnicodeDecodeError) else exc.strerror
        raise SettingsError(f"{path}: cannot be read: {problem}; save the policy file as UTF-8 text") from None


def load_settings(path: Path | str | None = None) -> Settings:
    """Defaults overridden by the operator's policy file, validated; errors name the key."""
    data = _read_toml(DEFAULTS_PATH)
    override_path = Path(path) if path else policy_file_path()
    if override_path is not None:
        data = _merge(data, _read_toml(override_path))
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(part) for part in err["loc"])
            problems.append(f"{key}: {err['msg']} ({shown_input(key, err)})")
        source = override_path or DEFAULTS_PATH
        raise SettingsError(f"invalid policy in {source}:\n  " + "\n  ".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()


def reload_settings() -> Settings:
    get_settings.cache_clear()
    return get_settings()
