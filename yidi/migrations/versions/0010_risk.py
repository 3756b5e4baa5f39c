"""risk: credit evaluations, current grade and overrides, carrier route scores, findings and their history, KPI
values, assessment runs (issue 13)

Revision ID: 0010_risk
Revises: 0009_month_end
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_risk"
down_revision = "0009_month_end"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "carrier_route_scores",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("carrier", sa.String(length=32), nullable=False),
        sa.Column("province", sa.String(length=32), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("shipments", sa.Integer(), nullable=False),
        sa.Column("delivered", sa.Integer(), nullable=False),
        sa.Column("on_time_rate", sa.Float(), nullable=True),
        sa.Column("damage_rate", sa.Float(), nullable=False),
        sa.Column("loss_rate", sa.Float(), nullable=False),
        sa.Column("refusal_rate", sa.Float(), nullable=False),
        sa.Column("return_rate", sa.Float(), nullable=False),
        sa.Column("claims_filed", sa.Integer(), nullable=False),
        sa.Column("claims_paid", sa.Integer(), nullable=False),
        sa.Column("claims_overdue", sa.Integer(), nullable=False),
        sa.Column("avg_transit_days", sa.Float(), nullable=True),
        sa.Column("avg_quoted_days", sa.Float(), nullable=True),
        sa.Column("uninsured_high_value", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("reasons", sa.Text(), nullable=True),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_carrier_route_scores")),
        sa.UniqueConstraint("carrier", "province", "month", name="uq_carrier_route_scores_route_month"),
    )
    op.create_table(
        "credit_evaluations",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("run_key", sa.String(length=64), nullable=False),
        sa.Column("evaluated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("grade", sa.String(length=2), nullable=False),
        sa.Column("previous_grade", sa.String(length=2), nullable=True),
        sa.Column("factors", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_evaluations")),
        sa.UniqueConstraint("customer_id", "run_key", name="uq_credit_evaluations_customer_run"),
    )
    op.create_index(
        "ix_credit_evaluations_customer", "credit_evaluations", ["customer_id", "evaluated_at"], unique=False
    )
    op.create_table(
        "credit_overrides",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("grade", sa.String(length=2), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_overrides")),
    )
    op.create_index(
        "ix_credit_overrides_customer", "credit_overrides", ["customer_id", "expires_at"], unique=False
    )
    op.create_table(
        "customer_credit",
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("grade", sa.String(length=2), nullable=False),
        sa.Column("evaluation_id", sa.BigInteger(), nullable=False),
        sa.Column("evaluated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_customer_credit")),
    )
    op.create_table(
        "kpi_values",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("period", sa.String(length=10), nullable=False),
        sa.Column("kpi", sa.String(length=40), nullable=False),
        sa.Column("dimension", sa.String(length=16), nullable=False),
        sa.Column("dimension_value", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("numerator", sa.Float(), nullable=True),
        sa.Column("denominator", sa.Float(), nullable=True),
        sa.Column("target", sa.Float(), nullable=True),
        sa.Column("status", sa.String(length=6), nullable=True),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kpi_values")),
        sa.UniqueConstraint(
            "period", "kpi", "dimension", "dimension_value", name="uq_kpi_values_period_kpi_dim"
        ),
    )
    op.create_table(
        "risk_finding_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("finding_id", sa.BigInteger(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("from_state", sa.String(length=12), nullable=True),
        sa.Column("to_state", sa.String(length=12), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_finding_events")),
    )
    op.create_index(
        "ix_risk_finding_events_finding", "risk_finding_events", ["finding_id", "id"], unique=False
    )
    op.create_table(
        "risk_findings",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("finding_key", sa.String(length=200), nullable=False),
        sa.Column("source", sa.String(length=12), nullable=False),
        sa.Column("check_code", sa.String(length=48), nullable=False),
        sa.Column("severity", sa.String(length=8), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=True),
        sa.Column("customer_id", sa.BigInteger(), nullable=True),
        sa.Column("carrier", sa.String(length=32), nullable=True),
        sa.Column("period", sa.String(length=10), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("details", sa.Text(), nullable=True),
        sa.Column("state", sa.String(length=12), server_default="open", nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("rechecked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("recheck_result", sa.String(length=16), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_findings")),
        sa.UniqueConstraint("finding_key", name=op.f("uq_risk_findings_finding_key")),
    )
    op.create_index("ix_risk_findings_state", "risk_findings", ["state", "source"], unique=False)
    op.create_table(
        "risk_runs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("period", sa.String(length=10), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dry_run", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("workbook", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_runs")),
    )


def downgrade() -> None:
    op.drop_table("risk_runs")
    op.drop_table("risk_findings")
    op.drop_table("risk_finding_events")
    op.drop_table("kpi_values")
    op.drop_table("customer_credit")
    op.drop_table("credit_overrides")
    op.drop_table("credit_evaluations")
    op.drop_table("carrier_route_scores")
