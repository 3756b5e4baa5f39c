"""The policy file: every business rule that managers change, with documented defaults.

Defaults ship in ``yidi/defaults.toml`` (each key commented there). An operator's ``yidi.toml`` (path from
``YIDI_CONFIG``; ``./yidi.toml`` when present) overrides any subset. Everything is validated at start-up:
a bad value raises ``SettingsError`` naming the key and the problem.
"""

from __future__ import annotations

import os
import tomllib
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# The settlement section is a schema of its own (bank templates, dunning ladder): yidi/settlement_policy.py.
from yidi.settlement_policy import SettlementPolicy

DEFAULTS_PATH = Path(__file__).with_name("defaults.toml")


class SettingsError(ValueError):
    """The policy file has a bad value; the message names the key and the problem."""


class Section(BaseModel):
    # Unknown keys are typos in a policy file; refusing them beats silently ignoring a manager's rule.
    model_config = ConfigDict(extra="forbid")


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


class OrdersPolicy(Section):
    large_order_threshold_yuan: Decimal = Field(
        Decimal("50000"), gt=0, description="Large orders get a credit check"
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


class IntakePolicy(Section):
    pass


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
            Warehouse(code="CQ-XY", name="西永仓", district="沙坪坝区", address="西永微电园 1 号仓")
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
        default_factory=list, description="K3: always insure shipments to these provinces (risky routes)"
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
    supplier_api_url: str = Field("http://127.0.0.1:8032", description="Supplier purchase-order gateway")
    supplier_api_timeout_seconds: float = Field(10.0, gt=0)
    supplier_api_attempts: int = Field(4, ge=1, le=10)

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


class TrackingPolicy(Section):
    pass


class RiskPolicy(Section):
    pass


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


def yidi_home() -> Path:
    """Where the embedded database, documents and reports live (``YIDI_HOME``, default ``./.yidi``)."""
    home = Path(os.environ.get("YIDI_HOME", ".yidi")).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
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


def _merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML: {exc}") from exc


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
            problems.append(f"{key}: {err['msg']} (got {err.get('input')!r})")
        source = override_path or DEFAULTS_PATH
        raise SettingsError(f"invalid policy in {source}:\n  " + "\n  ".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()


def reload_settings() -> Settings:
    get_settings.cache_clear()
    return get_settings()
