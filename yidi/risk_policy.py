"""The risk, credit, KPI and audit sections of the policy file (``[risk]``, ``[credit]``, ``[kpi]``, ``[audit]``).

Kept in its own module (like ``yidi.settlement_policy``) so ``yidi.settings`` stays one page; each key is
documented with its default in ``yidi/defaults.toml``. Money in yuan (``Decimal``); code converts to fen.
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field, field_validator, model_validator

from yidi.policy_base import Section

GRADES = ("A", "B", "C", "D", "E")  # best to worst
CREDIT_FACTORS = (
    "days_past_due", "overdue_yuan", "dunning_step", "payment_cases", "cod_refusals", "return_rate_pct",
    "refund_rate_pct", "rejection_rate_pct", "tenure_years", "orders_last_year",
)  # fmt: skip


class CreditFactor(Section):
    """A factor's contribution to the score is ``weight × min(value, cap)`` points (negative weight: a risk)."""

    weight: float
    cap: float = Field(gt=0)


class GradeMeasures(Section):
    """What a grade requires of the customer's new orders (K1, V1/V3)."""

    min_score: float = Field(ge=0, le=100, description="Lowest score that still earns this grade")
    credit_limit_yuan: Decimal = Field(ge=0, description="Credit limit (a lower limit on the customer wins)")
    prepayment_ratio: float = Field(0, ge=0, le=1, description="Share of an order to be paid before shipment")
    guarantee_required: bool = False
    cod_allowed: bool = True
    installments_allowed: bool = True
    manual_review: bool = Field(False, description="Every order of the customer goes to a reviewer")


def _default_factors() -> dict[str, CreditFactor]:
    return {
        "days_past_due": CreditFactor(weight=-0.5, cap=60),
        "overdue_yuan": CreditFactor(weight=-0.002, cap=10000),
        "dunning_step": CreditFactor(weight=-5, cap=5),
        "payment_cases": CreditFactor(weight=-5, cap=4),
        "cod_refusals": CreditFactor(weight=-8, cap=3),
        "return_rate_pct": CreditFactor(weight=-0.3, cap=50),
        "refund_rate_pct": CreditFactor(weight=-0.2, cap=50),
        "rejection_rate_pct": CreditFactor(weight=-0.2, cap=50),
        "tenure_years": CreditFactor(weight=3, cap=5),
        "orders_last_year": CreditFactor(weight=0.5, cap=30),
    }


def _default_grades() -> dict[str, GradeMeasures]:
    return {
        "A": GradeMeasures(min_score=85, credit_limit_yuan=Decimal(200000)),
        "B": GradeMeasures(min_score=70, credit_limit_yuan=Decimal(100000)),
        "C": GradeMeasures(min_score=55, credit_limit_yuan=Decimal(30000), prepayment_ratio=0.3,
                           installments_allowed=False),
        "D": GradeMeasures(min_score=40, credit_limit_yuan=Decimal(5000), prepayment_ratio=0.5,
                           guarantee_required=True, cod_allowed=False, installments_allowed=False,
                           manual_review=True),
        "E": GradeMeasures(min_score=0, credit_limit_yuan=Decimal(0), prepayment_ratio=1.0,
                           guarantee_required=True, cod_allowed=False, installments_allowed=False,
                           manual_review=True),
    }  # fmt: skip


class CreditPolicy(Section):
    base_score: float = Field(70, ge=0, le=100, description="A customer with no history scores this")
    history_days: int = Field(365, ge=30, description="Rates and volume count orders of this many days")
    factors: dict[str, CreditFactor] = Field(default_factory=_default_factors)
    grades: dict[str, GradeMeasures] = Field(default_factory=_default_grades)
    downgrade_contacts: list[str] = Field(["sales@example.com", "finance@example.com"])
    override_max_days: int = Field(
        90, ge=1, description="A manager's grade override expires after at most this"
    )

    @field_validator("factors")
    @classmethod
    def _known_factors(cls, value: dict) -> dict:
        unknown = sorted(set(value) - set(CREDIT_FACTORS))
        if unknown:
            raise ValueError(f"unknown credit factors {unknown}; known: {list(CREDIT_FACTORS)}")
        return value

    @model_validator(mode="after")
    def _grades_complete(self) -> CreditPolicy:
        if sorted(self.grades) != sorted(GRADES):
            raise ValueError(f"credit.grades must define exactly {list(GRADES)}, got {sorted(self.grades)}")
        floors = [self.grades[g].min_score for g in GRADES]
        if floors != sorted(floors, reverse=True) or floors[-1] != 0:
            raise ValueError("credit.grades min_score must fall from A to E, and E's must be 0")
        return self


class CarrierThresholds(Section):
    min_shipments: int = Field(5, ge=1, description="Routes with fewer shipments in the month are not judged")
    on_time_penalise_below: float = Field(0.90, ge=0, le=1)
    on_time_exclude_below: float = Field(0.70, ge=0, le=1)
    damage_loss_penalise_above: float = Field(0.02, ge=0, le=1)
    damage_loss_exclude_above: float = Field(0.05, ge=0, le=1)
    penalty_points: float = Field(
        20, ge=0, description="Added to the carrier's cost rank on a penalised route"
    )


class RiskPolicy(Section):
    report_dir: str = Field("reports/risk", description="xlsx workbooks (under YIDI_HOME)")
    trend_periods: int = Field(6, ge=2, le=24, description="Periods shown in trends and sparklines")
    top_customers: int = Field(5, ge=1, description="Receivables concentration: share of the top N")
    high_value_yuan: Decimal = Field(Decimal(5000), ge=0, description="Shipments worth this are insured (K3)")
    carrier: CarrierThresholds = CarrierThresholds()
    finding_owners: dict[str, str] = Field(
        {"default": "ops-lead@example.com", "credit": "finance@example.com", "carrier": "logistics@example.com",
         "legal": "legal@example.com"},
    )  # fmt: skip
    finding_due_working_days: dict[str, int] = Field({"high": 3, "medium": 10, "low": 20})
    retention_days: int = Field(
        1095, ge=30, description="PIPL art. 19: personal fields of closed orders kept"
    )
    return_window_days: int = Field(7, ge=1, description="CPL art. 25: no-reason return window")
    refund_days: int = Field(7, ge=1, description="CPL art. 25: refund within this after the return arrives")
    invoice_days: int = Field(30, ge=1, description="E-Commerce Law art. 14: invoice issued within")


class KpiTarget(Section):
    target: float
    amber: float = Field(description="Between target and this is amber; beyond it red")
    higher_is_better: bool = True


class KpiPolicy(Section):
    targets: dict[str, KpiTarget] = Field(default_factory=dict)
    dimensions: list[str] = Field(["channel", "province", "carrier"])


class AuditPolicy(Section):
    sample_size: int = Field(30, ge=1, description="Orders re-derived from their raw record per audit")
    sample_seed: int = Field(
        20240101, description="The sample is reproducible: same seed, same period, same set"
    )
    amount_bands_yuan: list[Decimal] = Field([Decimal(500), Decimal(5000)])
    owner: str = "audit@example.com"
