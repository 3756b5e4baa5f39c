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

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

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


class FulfilmentPolicy(Section):
    ship_from: str = "重庆市沙坪坝区西永微电园 1 号仓"


class TrackingPolicy(Section):
    pass


class SettlementPolicy(Section):
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
