"""review: validation runs, checks and findings, reviewer decisions, deadline alerts

Revision ID: 0003_review
Revises: 0001_foundation
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_review"
down_revision = "0001_foundation"
branch_labels = ("review",)
depends_on = None


def _id():
    return sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False)


def upgrade() -> None:
    op.create_table(
        "review_runs",
        _id(),
        sa.Column("run_key", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), server_default="auto", nullable=False),
        sa.Column("flow_run_id", sa.String(length=64), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=12), server_default="running", nullable=False),
        sa.Column("orders_checked", sa.Integer(), server_default="0", nullable=False),
        sa.Column("auto_rejected", sa.Integer(), server_default="0", nullable=False),
        sa.Column("pending_review", sa.Integer(), server_default="0", nullable=False),
        sa.Column("findings", sa.Integer(), server_default="0", nullable=False),
        sa.Column("stats", sa.Text(), nullable=True),
        sa.Column("data_docs", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_runs")),
        sa.UniqueConstraint("run_key", name=op.f("uq_review_runs_run_key")),
    )
    op.create_table(
        "review_checks",
        _id(),
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("order_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("content_key", sa.String(length=80), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reject_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("review_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("note_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("credit", sa.Text(), nullable=True),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["review_runs.id"], name=op.f("fk_review_checks_run_id_review_runs")),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_review_checks_order_id_orders")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_checks")),
        sa.UniqueConstraint("order_id", "content_key", name="uq_review_checks_order_content"),
    )
    op.create_index("ix_review_checks_run_id", "review_checks", ["run_id"])
    op.create_table(
        "review_findings",
        _id(),
        sa.Column("check_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("order_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("reason_code", sa.String(length=48), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("area", sa.String(length=4), nullable=False),
        sa.Column("message_zh", sa.Text(), nullable=False),
        sa.Column("message_en", sa.Text(), nullable=False),
        sa.Column("details", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["check_id"], ["review_checks.id"],
                                name=op.f("fk_review_findings_check_id_review_checks")),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_review_findings_order_id_orders")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_findings")),
        sa.UniqueConstraint("check_id", "rule", name="uq_review_findings_check_rule"),
    )
    op.create_index("ix_review_findings_order_id", "review_findings", ["order_id"])
    op.create_index("ix_review_findings_reason_code", "review_findings", ["reason_code"])
    op.create_table(
        "review_decisions",
        _id(),
        sa.Column("order_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("order_version", sa.Integer(), nullable=False),
        sa.Column("decision", sa.String(length=8), nullable=False),
        sa.Column("reviewer", sa.String(length=100), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("proposed_solution", sa.Text(), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("flow_run_id", sa.String(length=64), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_review_decisions_order_id_orders")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_decisions")),
        sa.UniqueConstraint("order_id", "order_version", name="uq_review_decisions_order_version"),
    )
    op.create_table(
        "review_deadline_alerts",
        _id(),
        sa.Column("order_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("(CURRENT_TIMESTAMP)"),
                  nullable=False),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"],
                                name=op.f("fk_review_deadline_alerts_order_id_orders")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_deadline_alerts")),
        sa.UniqueConstraint("order_id", "kind", "due_at", name="uq_review_deadline_alerts_once"),
    )


def downgrade() -> None:
    for table in ("review_deadline_alerts", "review_decisions", "review_findings", "review_checks", "review_runs"):
        op.drop_table(table)
