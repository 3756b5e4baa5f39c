"""Risk, audit and KPI tables (issue 13): credit evaluations and the current grade, managers' grade overrides,
the carrier scorecard per route and month, findings (credit, carrier, legal, audit) with their history, KPI values
per period and dimension, and assessment runs.

Other areas read two of these through the core: review reads the effective grade (``customer_credit`` and
``credit_overrides``, via ``yidi.credit``), fulfilment's carrier choice reads ``carrier_route_scores``.
Idempotency lives in the keys: an evaluation once per customer and run key, a scorecard row per
(carrier, province, month), a finding per ``finding_key`` (source, check, subject, period), a KPI value per
(period, kpi, dimension, value).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from yidi.schema import Id, metadata
from yidi.types import UTCDateTime

credit_evaluations = Table(
    "credit_evaluations",
    metadata,
    Column("id", Id, primary_key=True),
    Column("customer_id", BigInteger, nullable=False),
    Column(
        "run_key", String(64), nullable=False
    ),  # one evaluation per customer per run (re-runs add nothing)
    Column("evaluated_at", UTCDateTime, nullable=False),
    Column("score", Float, nullable=False),
    Column("grade", String(2), nullable=False),
    Column("previous_grade", String(2)),
    Column("factors", Text, nullable=False),  # JSON: factor -> {value, contribution}
    UniqueConstraint("customer_id", "run_key", name="uq_credit_evaluations_customer_run"),
    Index("ix_credit_evaluations_customer", "customer_id", "evaluated_at"),
)

customer_credit = Table(
    "customer_credit",
    metadata,
    Column("customer_id", BigInteger, primary_key=True),
    Column("score", Float, nullable=False),
    Column("grade", String(2), nullable=False),  # the latest scored grade (an override is applied on reading)
    Column("evaluation_id", BigInteger, nullable=False),
    Column("evaluated_at", UTCDateTime, nullable=False),
)

credit_overrides = Table(
    "credit_overrides",
    metadata,
    Column("id", Id, primary_key=True),
    Column("customer_id", BigInteger, nullable=False),
    Column("grade", String(2), nullable=False),
    Column("reason", Text, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime),
    Index("ix_credit_overrides_customer", "customer_id", "expires_at"),
)

carrier_route_scores = Table(
    "carrier_route_scores",
    metadata,
    Column("id", Id, primary_key=True),
    Column("carrier", String(32), nullable=False),
    Column("province", String(32), nullable=False),
    Column("month", String(7), nullable=False),  # YYYY-MM (business time zone) of shipment
    Column("shipments", Integer, nullable=False),
    Column("delivered", Integer, nullable=False),
    Column("on_time_rate", Float),
    Column("damage_rate", Float, nullable=False),
    Column("loss_rate", Float, nullable=False),
    Column("refusal_rate", Float, nullable=False),
    Column("return_rate", Float, nullable=False),
    Column("claims_filed", Integer, nullable=False),
    Column("claims_paid", Integer, nullable=False),
    Column("claims_overdue", Integer, nullable=False),
    Column("avg_transit_days", Float),
    Column("avg_quoted_days", Float),
    Column("uninsured_high_value", Integer, nullable=False),
    Column("status", String(10), nullable=False),  # ok | penalised | excluded | too_few
    Column("reasons", Text),
    Column("computed_at", UTCDateTime, nullable=False),
    UniqueConstraint("carrier", "province", "month", name="uq_carrier_route_scores_route_month"),
)

risk_findings = Table(
    "risk_findings",
    metadata,
    Column("id", Id, primary_key=True),
    Column("finding_key", String(200), nullable=False, unique=True),
    Column("source", String(12), nullable=False),  # audit | legal | carrier | credit | data
    Column("check_code", String(48), nullable=False),
    Column("severity", String(8), nullable=False),  # high | medium | low
    Column("owner", String(200), nullable=False),
    Column("order_id", BigInteger),
    Column("customer_id", BigInteger),
    Column("carrier", String(32)),
    Column("period", String(10), nullable=False),
    Column("summary", Text, nullable=False),
    Column("details", Text),
    Column("state", String(12), nullable=False, server_default="open"),  # open|rectifying|verified|closed
    Column("opened_at", UTCDateTime, nullable=False),
    Column("due_date", Date, nullable=False),
    Column("rechecked_at", UTCDateTime),
    Column("recheck_result", String(16)),  # still_failing | passes
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_risk_findings_state", "state", "source"),
)

risk_finding_events = Table(
    "risk_finding_events",
    metadata,
    Column("id", Id, primary_key=True),
    Column("finding_id", BigInteger, nullable=False),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(16), nullable=False),  # opened | rectifying | rechecked | verified | closed
    Column("from_state", String(12)),
    Column("to_state", String(12)),
    Column("note", Text),
    Index("ix_risk_finding_events_finding", "finding_id", "id"),
)

kpi_values = Table(
    "kpi_values",
    metadata,
    Column("id", Id, primary_key=True),
    Column("period", String(10), nullable=False),  # 2026-11 | 2026-W48 | 2026-11-30
    Column("kpi", String(40), nullable=False),
    Column("dimension", String(16), nullable=False),  # all | channel | province | carrier | kind
    Column("dimension_value", String(64), nullable=False),
    Column("value", Float),
    Column("numerator", Float),
    Column("denominator", Float),
    Column("target", Float),
    Column("status", String(6)),  # green | amber | red | none
    Column("computed_at", UTCDateTime, nullable=False),
    UniqueConstraint("period", "kpi", "dimension", "dimension_value", name="uq_kpi_values_period_kpi_dim"),
)

risk_runs = Table(
    "risk_runs",
    metadata,
    Column("id", Id, primary_key=True),
    Column("kind", String(16), nullable=False),  # assessment | audit | anonymise
    Column("period", String(10), nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    Column("dry_run", Boolean, nullable=False, server_default="0"),
    Column("summary", Text),  # JSON headline figures
    Column("workbook", Text),
)
